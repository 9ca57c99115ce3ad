//! Why a registry operation failed, its class (for HTTP status and exit
//! codes, mapped once), and how errors and interface keys are read.

use super::*;

/// What failed inside a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A TUN ioctl.
    #[error(transparent)]
    Tun(#[from] tun::Error),
    /// A netlink request.
    #[error(transparent)]
    Host(#[from] host::Error),
    /// The namespace.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// Another OS error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The data path (rings, backend).
    #[error(transparent)]
    DataPath(#[from] datapath::Error),
    /// The fault-injection seam.
    #[error("injected fault")]
    Injected(#[source] io::Error),
}

/// Why an operation on the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is invalid.
    #[error(transparent)]
    Invalid(#[from] options::Error),
    /// The namespace could not be opened.
    #[error(transparent)]
    Namespace(netns::Error),
    /// The id asked for is taken.
    #[error("id '{0}': already in use")]
    IdTaken(u32),
    /// Every id is taken.
    #[error("id: no free interface id (0..={MAX_ID} are all in use)")]
    NoFreeId,
    /// No interface matches.
    #[error("interface '{0}': no such interface (give tap<id>, tun<id> or the id)")]
    NotFound(String),
    /// The same interface twice in one batch.
    #[error("interface '{0}': given twice")]
    Duplicate(String),
    /// The host name is taken in the target namespace.
    #[error("host-if-name '{name}': an interface of that name already exists in {ns}")]
    NameTaken {
        /// The name.
        name: String,
        /// The namespace, in words.
        ns: String,
    },
    /// Attach: nothing to attach to.
    #[error("host-if-name '{name}': no interface of that name in {ns} to attach to")]
    AttachMissing {
        /// The name.
        name: String,
        /// The namespace, in words.
        ns: String,
    },
    /// Attach: the interface is not what was asked for.
    #[error("host-if-name '{name}': cannot attach: {reason}")]
    AttachMismatch {
        /// The name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// The bridge does not exist.
    #[error("host-bridge '{name}': no such interface in {ns}")]
    BridgeMissing {
        /// The bridge name.
        name: String,
        /// The namespace, in words.
        ns: String,
    },
    /// The bridge is something else.
    #[error("host-bridge '{name}': is a {kind} interface, not a bridge")]
    NotBridge {
        /// The name.
        name: String,
        /// What it is.
        kind: String,
    },
    /// vhost-net asked for but missing.
    #[error("backend vhost-net: cannot open {path}")]
    VhostUnavailable {
        /// The device.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The gateway is not reachable through the tap.
    #[error("{field} '{gw}': gateway unreachable (not on-link through {name}; add an address in its subnet)")]
    GatewayUnreachable {
        /// `host-ip4-gw` or `host-ip6-gw`.
        field: &'static str,
        /// The gateway.
        gw: IpAddr,
        /// The host interface.
        name: String,
    },
    /// A default route exists already.
    #[error("{field} '{gw}': the namespace already has a default route")]
    RouteExists {
        /// `host-ip4-gw` or `host-ip6-gw`.
        field: &'static str,
        /// The gateway.
        gw: IpAddr,
    },
    /// One of `host_routes` was refused by the kernel.
    #[error("host-routes '{route}': {reason}")]
    RouteRefused {
        /// The route.
        route: String,
        /// Why.
        reason: String,
    },
    /// A run-time offload change is refused.
    #[error("offload {action}: {reason}")]
    Offload {
        /// The action, as typed.
        action: String,
        /// Why.
        reason: String,
    },
    /// A run-time change to a data path failed.
    #[error("data path")]
    DataPath(#[from] datapath::Error),
    /// The interface runs no data path (or no capture, to stop).
    #[error("interface '{iface}': {reason}")]
    NoDataPath {
        /// The interface.
        iface: String,
        /// What is missing.
        reason: &'static str,
    },
    /// A capture is already recording on the interface.
    #[error("interface '{iface}': a capture is already running ({captured} frames so far); stop it first")]
    CaptureRunning {
        /// The interface.
        iface: String,
        /// Frames the running capture has recorded.
        captured: u64,
    },
    /// The caller could not record the intent (its state file): nothing
    /// was done.
    #[error("{0}")]
    NotDurable(String),
    /// A step failed in the kernel (or by injection).
    #[error("step {step} failed")]
    Step {
        /// The step.
        step: Step,
        /// What failed.
        #[source]
        source: StepError,
    },
}

impl Error {
    /// This error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Namespace(netns::Error::Permission { .. }) => ErrorKind::Permission,
            Error::Invalid(_)
            | Error::Namespace(_)
            | Error::BridgeMissing { .. }
            | Error::NotBridge { .. }
            | Error::GatewayUnreachable { .. }
            | Error::RouteRefused { .. }
            | Error::Offload { .. }
            | Error::AttachMissing { .. }
            | Error::AttachMismatch { .. }
            | Error::Duplicate(_) => ErrorKind::Invalid,
            Error::NoDataPath { .. } => ErrorKind::NotFound,
            Error::DataPath(_) => ErrorKind::Internal,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::IdTaken(_) | Error::NoFreeId | Error::NameTaken { .. } => ErrorKind::Conflict,
            Error::RouteExists { .. } | Error::CaptureRunning { .. } => ErrorKind::Conflict,
            Error::VhostUnavailable { .. } | Error::NotDurable(_) => ErrorKind::Unavailable,
            Error::Step { source, .. } => match source {
                StepError::Tun(tun::Error::Permission { .. }) => ErrorKind::Permission,
                StepError::Tun(tun::Error::Open { .. } | tun::Error::Feature(_)) => {
                    ErrorKind::Unavailable
                }
                StepError::Tun(tun::Error::Busy { .. } | tun::Error::Mismatch { .. }) => {
                    ErrorKind::Conflict
                }
                StepError::Host(h) if h.errno() == Some(libc::EPERM) => ErrorKind::Permission,
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// Reads an interface key: `tap<id>` (TAP), `tun<id>` (TUN) or the bare id
/// (either); `None` when it is none of these.
pub fn parse_key(key: &str) -> Option<(Option<bool>, u32)> {
    let (tun, digits) = if let Some(d) = key.strip_prefix("tap") {
        (Some(false), d)
    } else if let Some(d) = key.strip_prefix("tun") {
        (Some(true), d)
    } else {
        (None, key)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((tun, digits.parse().ok()?))
}

/// Formats an error and all its sources on one line: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}
