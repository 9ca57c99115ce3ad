//! The CNI `bandwidth` capability onto vtap's per-interface rate limits.

use vtap::CreateOptions;

use crate::spec::{code, Bandwidth, CniError};

/// Puts `bw` into the create request.
pub fn apply(bw: &Bandwidth, _opts: &mut CreateOptions) -> Result<(), CniError> {
    if *bw == Bandwidth::default() {
        return Ok(());
    }
    Err(CniError::new(
        code::INVALID_CONFIG,
        "runtimeConfig.bandwidth: not yet supported",
    ))
}
