//! The rules that span the interface registry and the forwarding plane.
//!
//! The registry knows interfaces, the forwarder knows what connects them;
//! neither alone can say whether an interface may go. Those rules live here,
//! once, for the daemon's REST handlers, its config declarations and state
//! file, and library users alike: an interface that is cross-connected or a
//! bridge port cannot be deleted, and the refusal says what to remove first.
//! Lock order where both are shared: registry first, then forwarder.

use crate::forward::Forwarder;
use crate::registry::{self, Registry, TapInfo};

/// Why a node operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The interface is attached to the forwarding plane.
    #[error("interface '{iface}': {what}")]
    InUse {
        /// The interface as named.
        iface: String,
        /// What holds it, and what to remove first.
        what: String,
    },
    /// The registry refused.
    #[error(transparent)]
    Registry(#[from] registry::Error),
}

impl Error {
    /// This error's class (an interface in use is a conflict).
    pub fn kind(&self) -> registry::ErrorKind {
        match self {
            Error::InUse { .. } => registry::ErrorKind::Conflict,
            Error::Registry(e) => e.kind(),
        }
    }
}

/// Refuses when interface `key` is cross-connected or in a bridge.
pub fn check_deletable(reg: &Registry, fwd: &Forwarder, key: &str) -> Result<(), Error> {
    let id = reg.resolve(key)?;
    match fwd.attachment(id) {
        Some(what) => Err(Error::InUse {
            iface: key.to_string(),
            what,
        }),
        None => Ok(()),
    }
}

/// Deletes interface `key` unless the forwarding plane holds it.
pub async fn delete(reg: &mut Registry, fwd: &Forwarder, key: &str) -> Result<TapInfo, Error> {
    check_deletable(reg, fwd, key)?;
    Ok(reg.delete(key).await?)
}

/// Deletes several interfaces at once; each held by the forwarding plane,
/// unknown or failing stays, with its reason, in order.
pub async fn delete_many(
    reg: &mut Registry,
    fwd: &Forwarder,
    keys: &[&str],
) -> Vec<Result<TapInfo, Error>> {
    let mut out: Vec<Option<Result<TapInfo, Error>>> = Vec::with_capacity(keys.len());
    let mut free = Vec::new();
    for k in keys {
        match check_deletable(reg, fwd, k) {
            Err(e @ Error::InUse { .. }) => out.push(Some(Err(e))),
            _ => {
                free.push(*k);
                out.push(None);
            }
        }
    }
    let mut done = reg.delete_many(&free).await.into_iter();
    out.into_iter()
        .map(|slot| match slot {
            Some(r) => r,
            None => done
                .next()
                .unwrap_or_else(|| Err(registry::Error::NotFound(String::new())))
                .map_err(Error::from),
        })
        .collect()
}
