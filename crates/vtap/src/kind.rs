//! Broad classes of errors, shared by every layer, so that the daemon maps
//! each class to an HTTP status (and the CLI to an exit) in one place.

/// Broad classes of errors, for mapping to HTTP status codes and exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (400).
    Invalid,
    /// The interface does not exist (404).
    NotFound,
    /// The request conflicts with existing state (409).
    Conflict,
    /// Missing privileges (403).
    Permission,
    /// A kernel facility is missing (503).
    Unavailable,
    /// The kernel refused for another reason (500).
    Internal,
}
