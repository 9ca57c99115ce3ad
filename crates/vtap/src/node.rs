//! A node: the interface registry and the forwarding plane together, and
//! the rules that span them.
//!
//! The registry knows interfaces, the forwarder knows what connects them;
//! neither alone can say whether an interface may go. Those rules live here,
//! once, for the daemon's REST handlers, its config declarations and state
//! file, and library users alike: an interface that is cross-connected or a
//! bridge port cannot be deleted, and the refusal says what to remove first;
//! a cross-connect or bridge port is made from interfaces the registry
//! knows. Holding both in one [`Node`] behind one lock leaves no lock order
//! to get wrong.
//!
//! A node also holds the host uplinks ([`crate::uplink`]); the forwarding
//! plane is handed taps and uplinks alike, and the node decides, from both
//! stores, that a tap of vtap's own cannot also be an uplink.

use crate::forward::{self, BridgeInfo, Forwarder, Xconnect};
use crate::registry::{self, Registry, TapInfo};
use crate::uplink::{self, HostInterfaceInfo, HostInterfaceOptions, Uplinks};

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
    /// The forwarding plane refused.
    #[error(transparent)]
    Forward(#[from] forward::Error),
    /// An uplink operation refused.
    #[error(transparent)]
    Uplink(#[from] uplink::Error),
}

impl Error {
    /// This error's class (an interface in use is a conflict).
    pub fn kind(&self) -> registry::ErrorKind {
        match self {
            Error::InUse { .. } => registry::ErrorKind::Conflict,
            Error::Registry(e) => e.kind(),
            Error::Forward(e) => e.kind(),
            Error::Uplink(e) => e.kind(),
        }
    }
}

/// The registry and the forwarding plane of one process.
#[derive(Debug)]
pub struct Node {
    /// The interfaces.
    pub registry: Registry,
    /// What moves frames between them.
    pub forwarder: Forwarder,
    /// Host interfaces used as uplinks.
    pub uplinks: Uplinks,
}

impl Node {
    /// A node of these two.
    pub fn new(registry: Registry, forwarder: Forwarder) -> Self {
        Self {
            registry,
            forwarder,
            uplinks: Uplinks::new(),
        }
    }

    /// The id of interface `key`: an uplink's name or id, or a tap's.
    pub fn resolve(&self, key: &str) -> Result<u32, Error> {
        match self.uplinks.find(key) {
            Some(id) => Ok(id),
            None => Ok(self.registry.resolve(key)?),
        }
    }

    /// Interface `key` (a tap or an uplink) as the forwarding plane takes it.
    pub fn end(&self, key: &str) -> Result<crate::port::End, Error> {
        match self.uplinks.find(key) {
            Some(_) => Ok(self.uplinks.end(key)?),
            None => Ok(self.registry.end(key)?),
        }
    }

    /// Opens a host uplink. An interface that is the host side of one of
    /// vtap's own taps is refused (it would loop the tap into itself).
    pub fn host_interface_create(
        &mut self,
        opts: &HostInterfaceOptions,
    ) -> Result<HostInterfaceInfo, Error> {
        let registry = &self.registry;
        let own = |ns: u64, index: u32| registry.host_side(ns, index).map(String::from);
        Ok(self.uplinks.create(opts, own)?)
    }

    /// Closes uplink `key` unless the forwarding plane holds it.
    pub fn host_interface_delete(&mut self, key: &str) -> Result<HostInterfaceInfo, Error> {
        self.check_deletable(key)?;
        Ok(self.uplinks.delete(key)?)
    }

    /// Refuses when interface `key` is cross-connected or in a bridge.
    pub fn check_deletable(&self, key: &str) -> Result<(), Error> {
        let id = self.resolve(key)?;
        match self.forwarder.attachment(id) {
            Some(what) => Err(Error::InUse {
                iface: key.to_string(),
                what,
            }),
            None => Ok(()),
        }
    }

    /// Deletes interface `key` unless the forwarding plane holds it.
    pub async fn delete(&mut self, key: &str) -> Result<TapInfo, Error> {
        self.check_deletable(key)?;
        Ok(self.registry.delete(key).await?)
    }

    /// Cross-connects interfaces `a` and `b`.
    pub fn xconnect(&mut self, a: &str, b: &str) -> Result<Xconnect, Error> {
        let (a, b) = (self.end(a)?, self.end(b)?);
        Ok(self.forwarder.xconnect(a, b)?)
    }

    /// Removes the cross-connect interface `key` is part of.
    pub fn xconnect_remove(&mut self, key: &str) -> Result<Xconnect, Error> {
        let id = self.resolve(key)?;
        Ok(self.forwarder.remove(id, key)?)
    }

    /// Adds interface `key` to bridge `bd`.
    pub fn bridge_add(&mut self, bd: &str, key: &str) -> Result<BridgeInfo, Error> {
        let end = self.end(key)?;
        Ok(self.forwarder.bridge_add(bd, end)?)
    }

    /// Removes interface `key` from bridge `bd`.
    pub fn bridge_remove(&mut self, bd: &str, key: &str) -> Result<BridgeInfo, Error> {
        let id = self.resolve(key)?;
        Ok(self.forwarder.bridge_remove(bd, id, key)?)
    }
}
