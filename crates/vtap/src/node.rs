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
//! A node also holds the host uplinks ([`crate::uplink`]) and the VXLAN
//! tunnels ([`crate::tunnel`]); the forwarding plane is handed taps,
//! uplinks and tunnels alike, and the node decides, from the stores, that a
//! tap of vtap's own cannot also be an uplink, and that a tap bridged with
//! a tunnel has an MTU the tunnel carries.

use crate::forward::{self, BridgeInfo, Forwarder, Xconnect};
use crate::registry::{self, Registry, TapInfo};
use crate::tunnel::{self, Tunnels, VxlanInfo, VxlanOptions};
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
    /// A tunnel operation refused.
    #[error(transparent)]
    Tunnel(#[from] tunnel::Error),
    /// A rate limit was refused.
    #[error("interface '{iface}': rate-limit {source}")]
    RateLimit {
        /// The interface as named.
        iface: String,
        /// Why.
        source: crate::datapath::limit::Error,
    },
    /// A tap's MTU is more than a tunnel of the bridge carries.
    #[error("mtu: {tap}'s host MTU {mtu} is more than {tunnel} carries ({inner_mtu}: underlay MTU {underlay_mtu} less {overhead}); give the tap host-mtu-size {inner_mtu} or less")]
    MtuTooBig {
        /// The tap.
        tap: String,
        /// Its host MTU.
        mtu: u32,
        /// The tunnel.
        tunnel: String,
        /// What the tunnel carries.
        inner_mtu: u32,
        /// The underlay's MTU.
        underlay_mtu: u32,
        /// The difference.
        overhead: u32,
    },
}

impl Error {
    /// This error's class (an interface in use is a conflict).
    pub fn kind(&self) -> registry::ErrorKind {
        match self {
            Error::InUse { .. } => registry::ErrorKind::Conflict,
            Error::Registry(e) => e.kind(),
            Error::Forward(e) => e.kind(),
            Error::Uplink(e) => e.kind(),
            Error::Tunnel(e) => e.kind(),
            Error::MtuTooBig { .. } | Error::RateLimit { .. } => registry::ErrorKind::Invalid,
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
    /// VXLAN tunnels.
    pub tunnels: Tunnels,
}

impl Node {
    /// A node of these two.
    pub fn new(registry: Registry, forwarder: Forwarder) -> Self {
        Self {
            registry,
            forwarder,
            uplinks: Uplinks::new(),
            tunnels: Tunnels::new(),
        }
    }

    /// The id of interface `key`: an uplink's or a tunnel's name or id, or a
    /// tap's.
    pub fn resolve(&self, key: &str) -> Result<u32, Error> {
        if let Some(id) = self.uplinks.find(key).or_else(|| self.tunnels.find(key)) {
            return Ok(id);
        }
        Ok(self.registry.resolve(key)?)
    }

    /// Interface `key` (a tap, an uplink or a tunnel) as the forwarding
    /// plane takes it.
    pub fn end(&self, key: &str) -> Result<crate::port::End, Error> {
        if self.uplinks.find(key).is_some() {
            return Ok(self.uplinks.end(key)?);
        }
        if self.tunnels.find(key).is_some() {
            return Ok(self.tunnels.end(key)?);
        }
        Ok(self.registry.end(key)?)
    }

    /// Sets (or, with `None`, lifts) the rate limit of one direction of
    /// interface `key`: a tap, an uplink or a tunnel alike.
    pub fn set_rate_limit(
        &mut self,
        key: &str,
        dir: crate::datapath::limit::Direction,
        opts: Option<&crate::datapath::limit::LimitOptions>,
    ) -> Result<(), Error> {
        let end = self.end(key)?;
        let refused = |source| Error::RateLimit {
            iface: key.to_string(),
            source,
        };
        let Some(port) = end.datapath else {
            return Err(refused(crate::datapath::limit::Error {
                field: "rate-limit",
                reason: "the interface runs no data path".into(),
            }));
        };
        let set = crate::port::lock(&port).set_rate_limit(dir, opts);
        // The registry keeps what a state file saves of a tap; it must know.
        self.registry.touch(key);
        set.map_err(refused)
    }

    /// The rate limits of interface `key` in force, with their counters.
    pub fn rate_limit_state(
        &self,
        key: &str,
    ) -> Result<crate::datapath::limit::RateLimitState, Error> {
        let end = self.end(key)?;
        let st = end
            .datapath
            .and_then(|p| crate::port::lock(&p).rate_limit_state());
        Ok(st.unwrap_or_default())
    }

    /// Creates a tap; with `bridge`, makes it a port of that bridge domain
    /// at once (its host MTU, if not given, the least the bridge's tunnels
    /// carry). A bridge that refuses it leaves nothing: the tap is deleted
    /// again.
    pub async fn create(&mut self, opts: &crate::CreateOptions) -> Result<TapInfo, Error> {
        let (opts, bridge) = self.fit_to_bridge(opts)?;
        let info = self.registry.create(&opts).await?;
        if let Some(bd) = bridge {
            self.join_or_undo(&bd, &info).await?;
        }
        Ok(info)
    }

    /// Splits `opts` into what the registry creates and the bridge to join
    /// after: the bridge must exist, and a tap given no host MTU gets the
    /// least the bridge's tunnels carry.
    pub fn fit_to_bridge(
        &self,
        opts: &crate::CreateOptions,
    ) -> Result<(crate::CreateOptions, Option<String>), Error> {
        let mut opts = opts.clone();
        let Some(bd) = opts.bridge.take() else {
            return Ok((opts, None));
        };
        let members = self.forwarder.bridge(&bd)?.interfaces;
        if opts.host_mtu_size.is_none() {
            opts.host_mtu_size = members
                .iter()
                .filter_map(|m| {
                    self.tunnels
                        .find(m)
                        .and_then(|id| self.tunnels.inner_mtu(id))
                })
                .min();
        }
        Ok((opts, Some(bd)))
    }

    /// Makes the new tap `info` a port of bridge `bd`; if the bridge
    /// refuses, deletes the tap (an attached one is let go of) and says why.
    pub async fn join_or_undo(&mut self, bd: &str, info: &TapInfo) -> Result<(), Error> {
        let Err(e) = self.bridge_add(bd, &info.name) else {
            return Ok(());
        };
        let undone = if info.attached {
            self.registry.release(&info.name).map(drop)
        } else {
            self.registry.delete(&info.name).await.map(drop)
        };
        if let Err(u) = undone {
            tracing::error!(iface = %info.name, error = %u, "cannot undo a create its bridge refused");
        }
        Err(e)
    }

    /// Creates a VXLAN tunnel.
    pub fn vxlan_create(&mut self, opts: &VxlanOptions) -> Result<VxlanInfo, Error> {
        Ok(self.tunnels.create(opts)?)
    }

    /// Deletes tunnel `key` unless the forwarding plane holds it.
    pub fn vxlan_delete(&mut self, key: &str) -> Result<VxlanInfo, Error> {
        self.check_deletable(key)?;
        Ok(self.tunnels.delete(key)?)
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

    /// Moves rx queue `queue` of interface `key` (and, unless directions
    /// are split, its cross-connect peer's queue of that number) to
    /// forwarding worker `worker`.
    pub fn set_rx_placement(
        &mut self,
        key: &str,
        queue: usize,
        worker: usize,
    ) -> Result<Xconnect, Error> {
        let end = self.end(key)?;
        Ok(self
            .forwarder
            .set_rx_placement(end.id, &end.name, queue, worker)?)
    }

    /// Adds interface `key` to bridge `bd`.
    pub fn bridge_add(&mut self, bd: &str, key: &str) -> Result<BridgeInfo, Error> {
        let end = self.end(key)?;
        let members = self.forwarder.bridge(bd)?.interfaces;
        for other in &members {
            self.check_mtu_fits(key, other)?;
            self.check_mtu_fits(other, key)?;
        }
        Ok(self.forwarder.bridge_add(bd, end)?)
    }

    /// Sets tap `key`'s host MTU. The change is made as asked; where the
    /// tap is in a bridge with tunnels that carry less, it comes back with
    /// one warning per tunnel (frames longer than a tunnel carries are
    /// dropped there and counted `drop_too_big`, never fragmented).
    pub async fn set_mtu(&mut self, key: &str, mtu: u32) -> Result<(TapInfo, Vec<String>), Error> {
        let info = self.registry.set_mtu(key, mtu).await?;
        Ok((info, self.mtu_warnings(key, mtu)))
    }

    /// Warnings for interface `key` at MTU `mtu`: one per tunnel of its
    /// bridge that carries less.
    pub fn mtu_warnings(&self, key: &str, mtu: u32) -> Vec<String> {
        let Some(bd) = self
            .resolve(key)
            .ok()
            .and_then(|id| self.forwarder.bridge_of(id))
        else {
            return Vec::new();
        };
        let members = self
            .forwarder
            .bridge(&bd)
            .map(|b| b.interfaces)
            .unwrap_or_default();
        members
            .iter()
            .filter_map(|m| self.tunnels.get(m).ok())
            .filter(|t| t.inner_mtu < mtu)
            .map(|t| {
                format!(
                    "mtu: {key}'s host MTU {mtu} is more than {} in bridge {bd} carries ({}); longer frames are dropped there and counted drop_too_big",
                    t.name, t.inner_mtu
                )
            })
            .collect()
    }

    /// Refuses when `tap` is a tap whose host MTU is more than `tunnel`, a
    /// tunnel, carries (anything else passes).
    fn check_mtu_fits(&self, tap: &str, tunnel: &str) -> Result<(), Error> {
        let Ok(t) = self.tunnels.get(tunnel) else {
            return Ok(());
        };
        if self.uplinks.find(tap).is_some() || self.tunnels.find(tap).is_some() {
            return Ok(());
        }
        let Ok(info) = self.registry.get(tap) else {
            return Ok(());
        };
        if info.host_mtu_size > t.inner_mtu {
            return Err(Error::MtuTooBig {
                tap: info.name,
                mtu: info.host_mtu_size,
                tunnel: t.name,
                inner_mtu: t.inner_mtu,
                underlay_mtu: t.underlay_mtu,
                overhead: t.underlay_mtu - t.inner_mtu,
            });
        }
        Ok(())
    }

    /// Removes interface `key` from bridge `bd`.
    pub fn bridge_remove(&mut self, bd: &str, key: &str) -> Result<BridgeInfo, Error> {
        let id = self.resolve(key)?;
        Ok(self.forwarder.bridge_remove(bd, id, key)?)
    }
}
