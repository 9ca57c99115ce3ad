//! VXLAN tunnels (RFC 7348): ports of the forwarding plane whose far side
//! is another node's VTEP, reached over the underlay namespace's UDP. VPP
//! calls them `vxlan_tunnel<N>` (`create vxlan tunnel src A dst B vni N`)
//! and so does vtap.
//!
//! # Why a store of its own
//!
//! A tunnel owns no interface of the kernel's: it is sockets in the
//! underlay namespace ([`crate::datapath::vxlan`]), which tunnels from one
//! local address share. So tunnels live here, beside the taps' registry and
//! the uplinks, and hand the forwarding plane the same thing, a
//! [`crate::port::End`], with split-horizon group 1: a bridge never sends
//! what one tunnel brought out of another. Which tunnels a bridge floods to
//! is the bridge's business (head-end replication: each tunnel of the
//! domain gets its copy); the rules that span taps and tunnels (a tap's MTU
//! must fit the tunnels of its bridge) are the [`crate::node`]'s.
//!
//! # MTU
//!
//! At creation the kernel says what the path to the remote carries
//! (`IP_MTU` on a socket connected to it): the inner frames may be that
//! less 36 bytes over IPv4 (outer IP 20, UDP 8, VXLAN 8), 56 over IPv6;
//! an inner MTU of the underlay's less 50 (70), the outer Ethernet header
//! included as operators count it. A longer frame is dropped and counted
//! (`drop_too_big`), never fragmented. The path MTU is read once: should
//! it shrink later, the kernel refuses the longer datagrams and they are
//! counted the same way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use serde::{Deserialize, Serialize};

use crate::datapath::vxlan::{self as engine, Endpoint, EndpointCounters, TunnelKey};
use crate::datapath::{self, capture, DataPath, RxMode, SharedDataPath};
use crate::kind::ErrorKind;
use crate::netns::{self, Netns, NetnsSpec};
use crate::options;
use crate::port::store::{CaptureError, Store, Stored};
use crate::wire::vxlan;

mod request;
use request::{ns_reason, refuse};
pub use request::{Checked, VxlanOptions};

/// The first tunnel id (uplinks' are below).
pub const ID_BASE: u32 = 1 << 20;
/// Tunnels one process may have.
pub const MAX_TUNNELS: u32 = 1 << 16;
/// What a tunnel is called in `show`.
pub const KIND: &str = "vxlan";
/// The split-horizon group of every tunnel.
pub const SPLIT_HORIZON: u8 = 1;

/// A tunnel, for `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VxlanInfo {
    /// Id (from [`ID_BASE`] on).
    pub id: u32,
    /// Data-plane name (`vxlan_tunnel0`).
    pub name: String,
    /// Always `vxlan`.
    pub kind: String,
    /// Local VTEP address.
    pub src: String,
    /// Remote VTEP address.
    pub dst: String,
    /// VNI.
    pub vni: u32,
    /// UDP port.
    pub port: u16,
    /// The underlay namespace as given.
    pub underlay_ns: Option<String>,
    /// That namespace's inode.
    pub underlay_ns_inode: u64,
    /// What the path to `dst` carries, as the kernel said at creation.
    pub underlay_mtu: u32,
    /// The MTU an interface bridged with this tunnel may have: the
    /// underlay's less 50 (IPv4) or 70 (IPv6).
    pub inner_mtu: u32,
    /// The outer UDP source ports frames leave from (one per flow, by the
    /// inner flow's hash).
    pub source_ports: Vec<u16>,
    /// Segments one `sendmsg` carries (`UDP_SEGMENT`; 1: none).
    pub gso_segments: u32,
    /// Received datagrams come in GRO trains (`UDP_GRO`).
    pub gro: bool,
    /// Tunnels sharing this one's local address and port.
    pub endpoint_tunnels: u32,
    /// What that endpoint dropped before any tunnel saw it, by reason.
    pub endpoint: EndpointCounters,
    /// Frames for this tunnel another worker read and its inbox had no
    /// room for.
    pub drop_inbox_full: u64,
    /// The data path: its queue pair, counters and ledger.
    pub datapath: Option<datapath::State>,
    /// Why a saved tunnel is not made again (a restarted daemon could not;
    /// it is retried); absent when it is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<String>,
}

impl VxlanInfo {
    /// A saved tunnel that is not live, for `show`: what it was asked to
    /// be, and why it is not.
    pub fn detached(opts: &VxlanOptions, reason: String) -> Self {
        let instance = opts.instance.unwrap_or(0);
        Self {
            id: ID_BASE + instance,
            name: format!("vxlan_tunnel{instance}"),
            kind: KIND.into(),
            src: opts.src.clone(),
            dst: opts.dst.clone(),
            vni: u32::try_from(opts.vni).unwrap_or(u32::MAX),
            port: opts.port.unwrap_or(vxlan::PORT),
            underlay_ns: opts.underlay_ns.clone(),
            underlay_ns_inode: 0,
            underlay_mtu: 0,
            inner_mtu: 0,
            source_ports: Vec::new(),
            gso_segments: 0,
            gro: false,
            endpoint_tunnels: 0,
            endpoint: EndpointCounters::default(),
            drop_inbox_full: 0,
            datapath: None,
            detached: Some(reason),
        }
    }

    /// The options that create this tunnel again as it is.
    pub fn options(&self) -> VxlanOptions {
        VxlanOptions {
            src: self.src.clone(),
            dst: self.dst.clone(),
            vni: u64::from(self.vni),
            port: Some(self.port),
            underlay_ns: self.underlay_ns.clone(),
            instance: Some(self.id - ID_BASE),
            rx_mode: self
                .datapath
                .as_ref()
                .and_then(|d| d.rx.first().and_then(|q| q.mode)),
        }
    }
}

/// Why a tunnel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input refused (before the kernel, or as the kernel judged it).
    #[error(transparent)]
    Invalid(#[from] options::Error),
    /// Taken: the (src, dst, vni), the port, the instance.
    #[error("{field} '{value}': {reason}")]
    Taken {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// By what.
        reason: String,
    },
    /// No such tunnel.
    #[error("vxlan tunnel '{0}' not found")]
    NotFound(String),
    /// A socket step failed for another reason.
    #[error("vxlan: {0}")]
    Socket(#[source] engine::OpenFailed),
    /// The namespace could not be entered.
    #[error("vxlan: {0}")]
    Namespace(#[source] netns::Error),
    /// The data path refused.
    #[error(transparent)]
    DataPath(#[from] datapath::Error),
    /// A capture could not be started or stopped.
    #[error(transparent)]
    Capture(#[from] CaptureError),
}

impl Error {
    /// This error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Capture(e) => e.kind(),
            Error::Taken { .. } => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Namespace(netns::Error::Permission { .. }) => ErrorKind::Permission,
            Error::Socket(e) if e.source.raw_os_error() == Some(libc::EPERM) => {
                ErrorKind::Permission
            }
            Error::Socket(_) | Error::Namespace(_) | Error::DataPath(_) => ErrorKind::Internal,
        }
    }
}

/// One live tunnel.
#[derive(Debug)]
struct Tunnel {
    info: VxlanInfo,
    datapath: SharedDataPath,
    endpoint: Arc<Endpoint>,
    key: TunnelKey,
    local: SocketAddr,
    _ns: Netns,
}

impl Stored for Tunnel {
    fn id(&self) -> u32 {
        self.info.id
    }
    fn name(&self) -> &str {
        &self.info.name
    }
    fn datapath(&self) -> &SharedDataPath {
        &self.datapath
    }
}

impl Tunnel {
    fn snapshot(&self) -> VxlanInfo {
        let dp = datapath::lock(&self.datapath);
        VxlanInfo {
            endpoint_tunnels: u32::try_from(self.endpoint.tunnels()).unwrap_or(u32::MAX),
            endpoint: self.endpoint.counters(),
            drop_inbox_full: self.endpoint.inbox_drops(&self.key),
            datapath: Some(dp.state()),
            ..self.info.clone()
        }
    }
}

/// An endpoint tunnels share while any of them lives.
#[derive(Debug)]
struct Shared {
    ns_inode: u64,
    local: SocketAddr,
    endpoint: Weak<Endpoint>,
}

/// The tunnels of one process.
#[derive(Debug, Default)]
pub struct Tunnels {
    map: Store<Tunnel>,
    endpoints: Vec<Shared>,
}

/// Where a namespace is, in words.
fn where_(spec: Option<&str>) -> String {
    match spec {
        Some(s) => format!("namespace '{s}'"),
        None => "the daemon's namespace".into(),
    }
}

impl Tunnels {
    /// No tunnels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every tunnel, by id.
    pub fn list(&self) -> Vec<VxlanInfo> {
        self.map.values().map(Tunnel::snapshot).collect()
    }

    /// Number of tunnels.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The id `key` (a name or an id) names, if it is a tunnel's.
    pub fn find(&self, key: &str) -> Option<u32> {
        self.map.find(key)
    }

    /// Tunnel `key`, live.
    fn tunnel(&self, key: &str) -> Result<&Tunnel, Error> {
        let id = self.resolve(key)?;
        self.map.get(id).ok_or_else(|| Error::NotFound(key.into()))
    }

    /// The id `key` names.
    pub fn resolve(&self, key: &str) -> Result<u32, Error> {
        self.find(key).ok_or_else(|| Error::NotFound(key.into()))
    }

    /// One tunnel.
    pub fn get(&self, key: &str) -> Result<VxlanInfo, Error> {
        Ok(self.tunnel(key)?.snapshot())
    }

    /// The MTU interfaces bridged with tunnel `id` may have.
    pub fn inner_mtu(&self, id: u32) -> Option<u32> {
        self.map.get(id).map(|t| t.info.inner_mtu)
    }

    /// The tunnel as one end of a cross-connect or a bridge port.
    pub fn end(&self, key: &str) -> Result<crate::port::End, Error> {
        let t = self.tunnel(key)?;
        Ok(crate::port::End {
            id: t.info.id,
            name: t.info.name.clone(),
            tun: false,
            datapath: Some(t.datapath.clone()),
            split_horizon: SPLIT_HORIZON,
        })
    }

    /// Its data path.
    pub fn datapath(&self, key: &str) -> Result<SharedDataPath, Error> {
        Ok(self.tunnel(key)?.datapath.clone())
    }

    /// The lowest free instance.
    fn free_instance(&self) -> u32 {
        (0..MAX_TUNNELS)
            .find(|i| !self.map.contains(ID_BASE + i))
            .unwrap_or(MAX_TUNNELS)
    }

    /// A live endpoint on (namespace, local), if tunnels share one.
    fn endpoint(&mut self, ns_inode: u64, local: SocketAddr) -> Option<Arc<Endpoint>> {
        self.endpoints.retain(|s| s.endpoint.strong_count() > 0);
        self.endpoints
            .iter()
            .find(|s| s.ns_inode == ns_inode && s.local == local)
            .and_then(|s| s.endpoint.upgrade())
    }

    /// Creates a tunnel. On failure nothing is left: sockets a new
    /// endpoint opened close with it.
    pub fn create(&mut self, opts: &VxlanOptions) -> Result<VxlanInfo, Error> {
        let c = opts.validate()?;
        let instance = match opts.instance {
            Some(i) if self.map.contains(ID_BASE + i) => {
                return Err(Error::Taken {
                    field: "instance",
                    value: i.to_string(),
                    reason: format!("vxlan_tunnel{i} exists"),
                })
            }
            Some(i) => i,
            None => self.free_instance(),
        };
        if instance >= MAX_TUNNELS {
            return Err(Error::Taken {
                field: "instance",
                value: instance.to_string(),
                reason: format!("all {MAX_TUNNELS} tunnels are in use"),
            });
        }
        let spec = opts
            .underlay_ns
            .as_deref()
            .map(str::parse::<NetnsSpec>)
            .transpose()
            .map_err(|e| {
                refuse(
                    "underlay-ns",
                    opts.underlay_ns.as_deref().unwrap_or(""),
                    ns_reason(&e),
                )
            })?;
        let ns = match &spec {
            Some(s) => Netns::open(s).map_err(|e| refuse("underlay-ns", s, ns_reason(&e)))?,
            None => Netns::current().map_err(Error::Namespace)?,
        };
        let place = where_(opts.underlay_ns.as_deref());
        if let Some(t) = self.map.values().find(|t| {
            t.info.underlay_ns_inode == ns.inode()
                && t.local == c.local
                && t.key == (c.remote.ip(), c.vni)
        }) {
            return Err(Error::Taken {
                field: "vni",
                value: c.vni.get().to_string(),
                reason: format!(
                    "{} is the tunnel from {} to {} with this VNI already",
                    t.info.name, opts.src, opts.dst
                ),
            });
        }
        let mtu = ns
            .run_in(|| engine::path_mtu(c.local.ip(), c.remote))
            .map_err(Error::Namespace)?
            .map_err(|e| match e.source.raw_os_error() {
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => Error::Invalid(refuse(
                    "dst",
                    &opts.dst,
                    format!("no route to it in {place}"),
                )),
                Some(libc::EADDRNOTAVAIL) => Error::Invalid(refuse(
                    "src",
                    &opts.src,
                    format!("not an address of {place}"),
                )),
                _ => Error::Socket(e),
            })?;
        let endpoint = match self.endpoint(ns.inode(), c.local) {
            Some(ep) => ep,
            None => {
                let ep = ns
                    .run_in(|| Endpoint::open(c.local))
                    .map_err(Error::Namespace)?
                    .map_err(|e| open_refused(e, opts, &place))?;
                let ep = Arc::new(ep);
                self.endpoints.push(Shared {
                    ns_inode: ns.inode(),
                    local: c.local,
                    endpoint: Arc::downgrade(&ep),
                });
                ep
            }
        };
        let key = (c.remote.ip(), c.vni);
        let rx = endpoint
            .attach(key)
            .map_err(|source| {
                Error::Socket(engine::OpenFailed {
                    step: "eventfd and epoll",
                    source,
                })
            })?
            .ok_or_else(|| Error::Taken {
                field: "vni",
                value: c.vni.get().to_string(),
                reason: format!("a tunnel from {} to {} has it already", opts.src, opts.dst),
            })?;
        let max_frame = engine::max_inner_frame(mtu, &c.remote);
        let tx = engine::VxlanTx::new(endpoint.clone(), c.remote, c.vni, max_frame);
        // Inner frames are Ethernet and carry no offloads (the engine says
        // so): super-frames are cut and checksums finished before it.
        let mut dp = DataPath::start_vxlan(rx, tx);
        dp.set_rx_mode(0, opts.rx_mode.unwrap_or_default())?;
        let overhead = if c.remote.is_ipv4() {
            vxlan::OVERHEAD_V4
        } else {
            vxlan::OVERHEAD_V6
        };
        let id = ID_BASE + instance;
        let info = VxlanInfo {
            id,
            name: format!("vxlan_tunnel{instance}"),
            kind: KIND.into(),
            src: c.local.ip().to_string(),
            dst: c.remote.ip().to_string(),
            vni: c.vni.get(),
            port: c.local.port(),
            underlay_ns: opts.underlay_ns.clone(),
            underlay_ns_inode: ns.inode(),
            underlay_mtu: mtu,
            inner_mtu: mtu.saturating_sub(overhead),
            source_ports: endpoint.source_ports(),
            gso_segments: u32::try_from(endpoint.max_segments()).unwrap_or(1),
            gro: endpoint.gro(),
            endpoint_tunnels: 0,
            endpoint: EndpointCounters::default(),
            drop_inbox_full: 0,
            datapath: None,
            detached: None,
        };
        tracing::info!(id, name = %info.name, src = %info.src, dst = %info.dst, vni = info.vni, "vxlan tunnel created");
        let t = Tunnel {
            info,
            datapath: Arc::new(Mutex::new(dp)),
            endpoint,
            key,
            local: c.local,
            _ns: ns,
        };
        let snap = t.snapshot();
        self.map.insert(t);
        Ok(snap)
    }

    /// Deletes a tunnel: its queue leaves the endpoint, whose sockets close
    /// with the last tunnel on it.
    pub fn delete(&mut self, key: &str) -> Result<VxlanInfo, Error> {
        let id = self.resolve(key)?;
        let t = self
            .map
            .remove(id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        let info = t.snapshot();
        drop(t);
        self.endpoints.retain(|s| s.endpoint.strong_count() > 0);
        tracing::info!(id, name = %info.name, "vxlan tunnel deleted");
        Ok(info)
    }

    /// Sets the rx mode.
    pub fn set_rx_mode(&mut self, key: &str, mode: RxMode) -> Result<VxlanInfo, Error> {
        let id = self.resolve(key)?;
        self.map.set_rx_mode(id, mode)?;
        self.get(key)
    }

    /// Starts a pcap capture of the inner frames (see [`capture`]).
    pub fn start_capture(
        &self,
        key: &str,
        direction: capture::Direction,
        count: Option<u64>,
    ) -> Result<capture::Stream, Error> {
        Ok(self
            .map
            .start_capture(self.resolve(key)?, key, direction, count)?)
    }

    /// Stops the running capture.
    pub fn stop_capture(&self, key: &str) -> Result<capture::CaptureState, Error> {
        Ok(self.map.stop_capture(self.resolve(key)?, key)?)
    }
}

/// Why the kernel refused to open an endpoint, by the field it concerns.
fn open_refused(e: engine::OpenFailed, opts: &VxlanOptions, place: &str) -> Error {
    match (e.step, e.source.raw_os_error()) {
        ("bind", Some(libc::EADDRNOTAVAIL)) => Error::Invalid(refuse(
            "src",
            &opts.src,
            format!("not an address of {place}"),
        )),
        ("bind", Some(libc::EADDRINUSE)) => Error::Taken {
            field: "port",
            value: opts.port.unwrap_or(vxlan::PORT).to_string(),
            reason: format!("in use on {} in {place} by a socket not vtap's", opts.src),
        },
        _ => Error::Socket(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_gives_back_the_options_that_made_it() {
        let info = VxlanInfo {
            id: ID_BASE + 7,
            name: "vxlan_tunnel7".into(),
            kind: KIND.into(),
            src: "198.18.0.1".into(),
            dst: "198.18.0.2".into(),
            vni: 42,
            port: 4789,
            underlay_ns: Some("u".into()),
            underlay_ns_inode: 1,
            underlay_mtu: 1500,
            inner_mtu: 1450,
            source_ports: vec![],
            gso_segments: 64,
            gro: true,
            endpoint_tunnels: 1,
            endpoint: EndpointCounters::default(),
            drop_inbox_full: 0,
            datapath: None,
            detached: None,
        };
        let o = info.options();
        assert_eq!(VxlanInfo::detached(&o, "gone".into()).options(), o);
        assert_eq!((o.instance, o.port, o.vni), (Some(7), Some(4789), 42));
        assert_eq!(o.underlay_ns.as_deref(), Some("u"));
    }
}
