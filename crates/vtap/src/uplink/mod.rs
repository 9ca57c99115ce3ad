//! Host uplinks: an existing interface of the host (a NIC, a veth, a bond)
//! as a port of vtap's forwarding plane, so taps reach the network beyond
//! the machine. VPP calls these `host-interface` (AF_PACKET) and `af_xdp`.
//!
//! # Why a store of its own
//!
//! A tap is vtap's creature: the registry makes it, configures its host side
//! over rtnetlink and undoes every step. An uplink is the host's: vtap only
//! opens sockets on it, changes nothing but its promiscuity (a membership
//! the kernel drops with the socket), and must leave it exactly as found. So
//! uplinks live here, beside the [`crate::registry`], and both hand the
//! forwarding plane the same thing, a [`crate::port::End`]; the cross-connect
//! and the bridge cannot tell them apart. The rules that span both (an
//! interface that is vtap's own tap cannot be an uplink; nothing in use is
//! deleted) are the [`crate::node`]'s.
//!
//! Ids of uplinks start at [`ID_BASE`], above every tap id, so one id space
//! serves the forwarding plane without the two stores coordinating. Names
//! are VPP's: `host-<ifname>`.
//!
//! # Offloads
//!
//! The virtio-net header carries GSO and checksum metadata in both
//! directions. Toward the uplink, the port's offload caps are the
//! interface's own (`tx-checksumming`, `tcp-segmentation-offload` as the
//! kernel reports them): where it has them, super-frames go to the kernel
//! whole; where it has not, the offload layer segments and checksums in
//! software before the socket. (The kernel would segment for us too; doing
//! it in vtap keeps one accounting of the work, shown in `offload`.)

mod kernel;
pub mod packet;
pub mod xdp;

use kernel::{open_packet, open_xdp, queues_for, Held};

use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::datapath::{self, capture, RxMode, SharedDataPath};
use crate::kind::ErrorKind;
use crate::mac::MacAddr;
use crate::netns::{self, Netns, NetnsSpec};
use crate::options;
use crate::port::store::{CaptureError, Store, Stored};
use packet::Link;

/// The first uplink id (tap ids are below, [`options::MAX_ID`] at most).
pub const ID_BASE: u32 = 1 << 16;
/// Queues an uplink may have.
pub const MAX_QUEUES: u16 = 64;
/// What a kind of uplink is called in `show`.
pub const KIND: &str = "host-interface";

/// How an uplink reaches its interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Mode {
    /// `AF_PACKET` sockets with virtio-net headers (VPP's `host-interface`).
    #[default]
    AfPacket,
    /// XDP sockets fed by vtap's XDP program (VPP's `af_xdp`).
    AfXdp,
}

/// What to create.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostInterfaceOptions {
    /// The existing interface (`eth0`).
    pub host_if_name: String,
    /// Its namespace (name, `pid:N` or a path), the daemon's if absent.
    #[serde(default)]
    pub host_ns: Option<String>,
    /// `af-packet` (the default) or `af-xdp`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Queues (1..=64): one socket each. af-packet: default 1, frames spread
    /// by flow hash. af-xdp: one per receive queue of the interface, which
    /// is the default and the only count taken.
    #[serde(default)]
    pub num_queues: Option<u16>,
    /// Rx mode of its queues (`interrupt` by default).
    #[serde(default)]
    pub rx_mode: Option<RxMode>,
    /// Reuse this id (restores after a restart).
    #[serde(default)]
    pub id: Option<u32>,
}

impl HostInterfaceOptions {
    /// Checks what needs no kernel.
    pub fn validate(&self) -> Result<(), options::Error> {
        options::check_ifname("host-if-name", &self.host_if_name)?;
        let q = self.num_queues.unwrap_or(1);
        if !(1..=MAX_QUEUES).contains(&q) {
            return Err(options::Error {
                field: "num-queues",
                value: q.to_string(),
                reason: format!("must be in 1..={MAX_QUEUES}"),
            });
        }
        if let Some(id) = self.id.filter(|id| *id < ID_BASE) {
            return Err(options::Error {
                field: "id",
                value: id.to_string(),
                reason: format!("uplink ids start at {ID_BASE}"),
            });
        }
        if let Some(ns) = &self.host_ns {
            ns.parse::<NetnsSpec>().map_err(|e| options::Error {
                field: "host-ns",
                value: ns.clone(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The data-plane name: `host-<ifname>`.
    pub fn name(&self) -> String {
        format!("host-{}", self.host_if_name)
    }
}

/// An uplink, for `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostInterfaceInfo {
    /// Id (from [`ID_BASE`] on).
    pub id: u32,
    /// Data-plane name (`host-eth0`).
    pub name: String,
    /// Always `host-interface`.
    pub kind: String,
    /// How it is reached.
    pub mode: Mode,
    /// The host interface.
    pub host_if_name: String,
    /// Its namespace as given.
    pub host_ns: Option<String>,
    /// That namespace's inode.
    pub host_ns_inode: u64,
    /// Its index there.
    pub host_ifindex: u32,
    /// Its MAC address.
    pub host_mac_addr: MacAddr,
    /// Its driver as the kernel names it.
    pub driver: String,
    /// Its link now: `up`, `down` or `gone`.
    pub link: Link,
    /// Its MTU now (as when created, once gone).
    pub mtu: u32,
    /// Queues (sockets).
    pub num_queues: u16,
    /// The fanout group spreading frames over the queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout_id: Option<u16>,
    /// Frames go to the driver without the qdisc.
    pub qdisc_bypass: bool,
    /// af-xdp: the XDP program vtap attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpState>,
    /// Bytes of virtio-net header per frame (12; 10 before Linux 6.2).
    pub vnet_hdr_len: u8,
    /// The interface is promiscuous while vtap holds it.
    pub promisc: bool,
    /// What the interface took on transmit when probed.
    pub tx_checksum: bool,
    /// Whether it segments TCP itself.
    pub tso: bool,
    /// Frames the kernel dropped before vtap read them (socket full).
    pub kernel_drops: u64,
    /// Times the link went down or away under the sockets.
    pub link_down_events: u64,
    /// The data path: queues, counters, offloads, ledger.
    pub datapath: Option<datapath::State>,
    /// Why a saved uplink is not open (a restarted daemon could not open
    /// it again; it is retried); absent when it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<String>,
}

impl HostInterfaceInfo {
    /// A saved uplink that is not open, for `show`: what it was asked to
    /// be, `link: gone`, and why.
    pub fn detached(opts: &HostInterfaceOptions, reason: String) -> Self {
        Self {
            id: opts.id.unwrap_or(ID_BASE),
            name: opts.name(),
            kind: KIND.into(),
            mode: opts.mode.unwrap_or_default(),
            host_if_name: opts.host_if_name.clone(),
            host_ns: opts.host_ns.clone(),
            host_ns_inode: 0,
            host_ifindex: 0,
            host_mac_addr: MacAddr([0; 6]),
            driver: String::new(),
            link: Link::Gone,
            mtu: 0,
            num_queues: opts.num_queues.unwrap_or(1),
            fanout_id: None,
            qdisc_bypass: false,
            xdp: None,
            vnet_hdr_len: 0,
            promisc: false,
            tx_checksum: false,
            tso: false,
            kernel_drops: 0,
            link_down_events: 0,
            datapath: None,
            detached: Some(reason),
        }
    }

    /// The options that open this uplink again, as it is (its id, queues
    /// and rx mode included).
    pub fn options(&self) -> HostInterfaceOptions {
        HostInterfaceOptions {
            host_if_name: self.host_if_name.clone(),
            host_ns: self.host_ns.clone(),
            mode: Some(self.mode),
            num_queues: Some(self.num_queues),
            rx_mode: self
                .datapath
                .as_ref()
                .and_then(|d| d.rx.first().and_then(|q| q.mode)),
            id: Some(self.id),
        }
    }
}

/// The XDP program of an af-xdp uplink, for `show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct XdpState {
    /// The kernel's id of the program (`ip link show` names it).
    pub prog_id: u32,
    /// `native` (in the driver) or `generic` (in the stack).
    pub attach: xdp::XdpAttach,
    /// Frames may span several UMEM chunks (`XDP_USE_SG`, Linux 6.6+), so
    /// jumbo frames cross; without it the MTU is at most 3 822.
    pub multi_buffer: bool,
}

/// Why an uplink operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input refused before touching the kernel.
    #[error(transparent)]
    Invalid(#[from] options::Error),
    /// The namespace.
    #[error(transparent)]
    Namespace(#[from] netns::Error),
    /// No such interface there.
    #[error("host-if-name '{name}': no such interface in {ns}")]
    NoInterface {
        /// The name.
        name: String,
        /// Where it was looked for.
        ns: String,
    },
    /// An interface that cannot be an uplink.
    #[error("host-if-name '{name}': {reason}")]
    Refused {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Already an uplink, or the name or id is taken.
    #[error("{field} '{value}': {reason}")]
    Taken {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// By what.
        reason: String,
    },
    /// No such uplink.
    #[error("host interface '{0}' not found")]
    NotFound(String),
    /// A socket step failed.
    #[error("host-if-name '{name}': {source}")]
    Socket {
        /// The name.
        name: String,
        /// The step.
        #[source]
        source: packet::StepFailed,
    },
    /// An XDP step failed (the program, its attachment, a socket).
    #[error("host-if-name '{name}': {source}")]
    Xdp {
        /// The name.
        name: String,
        /// The step.
        #[source]
        source: xdp::Error,
    },
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
            Error::Namespace(netns::Error::Permission { .. }) => ErrorKind::Permission,
            Error::Invalid(_)
            | Error::Namespace(_)
            | Error::NoInterface { .. }
            | Error::Refused { .. } => ErrorKind::Invalid,
            Error::Capture(e) => e.kind(),
            Error::Taken { .. } => ErrorKind::Conflict,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Socket { source, .. } if source.source.raw_os_error() == Some(libc::EPERM) => {
                ErrorKind::Permission
            }
            Error::Xdp { source, .. } => match source.errno() {
                Some(libc::EPERM | libc::EACCES) => ErrorKind::Permission,
                Some(libc::EBUSY | libc::EEXIST) => ErrorKind::Conflict,
                Some(libc::ERANGE | libc::ENOSPC | libc::EOPNOTSUPP | libc::EINVAL) => {
                    ErrorKind::Invalid
                }
                _ if matches!(source, xdp::Error::Attach(..)) => ErrorKind::Invalid,
                _ => ErrorKind::Internal,
            },
            Error::Socket { .. } | Error::DataPath(_) => ErrorKind::Internal,
        }
    }
}

/// One live uplink.
#[derive(Debug)]
struct Uplink {
    info: HostInterfaceInfo,
    // Declared before `held`: the data path stops before the sockets close
    // and the program detaches.
    datapath: SharedDataPath,
    held: Held,
    /// Kernel drops read so far (packet sockets reset their count on each
    /// read).
    kernel_drops: Mutex<u64>,
    _ns: Netns,
}

impl Stored for Uplink {
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

impl Uplink {
    fn snapshot(&self) -> HostInterfaceInfo {
        let (link, mtu) = self.held.query().map_or((Link::Gone, None), |s| {
            packet::link(s, self.info.host_ifindex)
        });
        let dp = datapath::lock(&self.datapath);
        let drops = self.held.kernel_drops(&self.kernel_drops);
        HostInterfaceInfo {
            link,
            mtu: mtu.unwrap_or(self.info.mtu),
            kernel_drops: drops,
            link_down_events: dp.link_down_events(),
            datapath: Some(dp.state()),
            ..self.info.clone()
        }
    }
}

/// The uplinks of one process.
#[derive(Debug, Default)]
pub struct Uplinks {
    map: Store<Uplink>,
}

impl Uplinks {
    /// No uplinks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every uplink, by id.
    pub fn list(&self) -> Vec<HostInterfaceInfo> {
        self.map.values().map(Uplink::snapshot).collect()
    }

    /// Number of uplinks.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The id `key` (a name or an id) names, if it is an uplink's.
    pub fn find(&self, key: &str) -> Option<u32> {
        self.map.find(key)
    }

    /// Uplink `key`, open.
    fn uplink(&self, key: &str) -> Result<&Uplink, Error> {
        let id = self.resolve(key)?;
        self.map.get(id).ok_or_else(|| Error::NotFound(key.into()))
    }

    /// The id `key` names.
    pub fn resolve(&self, key: &str) -> Result<u32, Error> {
        self.find(key).ok_or_else(|| Error::NotFound(key.into()))
    }

    /// One uplink.
    pub fn get(&self, key: &str) -> Result<HostInterfaceInfo, Error> {
        Ok(self.uplink(key)?.snapshot())
    }

    /// The uplink as one end of a cross-connect or a bridge port.
    pub fn end(&self, key: &str) -> Result<crate::port::End, Error> {
        let u = self.uplink(key)?;
        Ok(crate::port::End {
            id: u.info.id,
            name: u.info.name.clone(),
            tun: false,
            datapath: Some(u.datapath.clone()),
            split_horizon: 0,
        })
    }

    /// Its data path.
    pub fn datapath(&self, key: &str) -> Result<SharedDataPath, Error> {
        Ok(self.uplink(key)?.datapath.clone())
    }

    /// The lowest uplink id neither in use nor in `reserved` (ids a caller
    /// holds for uplinks this store does not serve).
    pub fn free_id(&self, reserved: &std::collections::BTreeSet<u32>) -> u32 {
        (ID_BASE..)
            .find(|id| !self.map.contains(*id) && !reserved.contains(id))
            .unwrap_or(ID_BASE)
    }

    /// Whether interface `ifindex` of namespace `ns_inode` is an uplink.
    pub fn holds(&self, ns_inode: u64, ifindex: u32) -> Option<&str> {
        self.map
            .values()
            .find(|u| u.info.host_ns_inode == ns_inode && u.info.host_ifindex == ifindex)
            .map(|u| u.info.name.as_str())
    }

    /// Opens an uplink on an existing interface. `is_own_tap` says whether
    /// an interface (namespace inode, index) is one of vtap's taps, which
    /// cannot be an uplink. On failure nothing is left: the sockets close,
    /// the kernel drops the promiscuity with them.
    pub fn create(
        &mut self,
        opts: &HostInterfaceOptions,
        is_own_tap: impl Fn(u64, u32) -> Option<String>,
    ) -> Result<HostInterfaceInfo, Error> {
        opts.validate()?;
        let name = opts.name();
        if self.find(&name).is_some() {
            return Err(Error::Taken {
                field: "host-if-name",
                value: opts.host_if_name.clone(),
                reason: format!("'{name}' exists already (one uplink per interface name)"),
            });
        }
        let id = match opts.id {
            Some(id) if self.map.contains(id) => {
                return Err(Error::Taken {
                    field: "id",
                    value: id.to_string(),
                    reason: "in use".into(),
                })
            }
            Some(id) => id,
            None => self.free_id(&std::collections::BTreeSet::new()),
        };
        let spec = opts
            .host_ns
            .as_deref()
            .map(str::parse::<NetnsSpec>)
            .transpose()?;
        let ns = match &spec {
            Some(s) => Netns::open(s)?,
            None => Netns::current()?,
        };
        let where_ = match &spec {
            Some(s) => format!("namespace '{s}'"),
            None => "the daemon's namespace".into(),
        };
        let mode = opts.mode.unwrap_or_default();
        let ifname = opts.host_if_name.clone();
        // Probe and judge before opening anything: a refused interface never
        // sees a socket (nor a moment of promiscuity).
        let probed = ns.run_in(|| probe_checked(&ifname))??;
        let probe = match probed {
            Ok(p) => p,
            Err(Refusal::Missing) => {
                return Err(Error::NoInterface {
                    name: ifname,
                    ns: where_,
                })
            }
            Err(Refusal::Not(reason)) => {
                return Err(Error::Refused {
                    name: ifname,
                    reason,
                })
            }
        };
        if let Some(tap) = is_own_tap(ns.inode(), probe.ifindex) {
            return Err(Error::Refused {
                name: ifname,
                reason: format!(
                    "is the host side of vtap's own {tap}; cross-connect or bridge the tap instead"
                ),
            });
        }
        if let Some(other) = self.holds(ns.inode(), probe.ifindex) {
            return Err(Error::Taken {
                field: "host-if-name",
                value: ifname,
                reason: format!("already the uplink {other}"),
            });
        }
        let queues = queues_for(mode, opts.num_queues, &probe, &ifname)?;
        let (mut dp, held, kernel) = match mode {
            Mode::AfPacket => open_packet(&ns, &probe, queues, &ifname)?,
            Mode::AfXdp => open_xdp(&ns, &probe, queues, &ifname)?,
        };
        let rx_mode = opts.rx_mode.unwrap_or_default();
        for q in 0..dp.num_rx() {
            dp.set_rx_mode(q, rx_mode)?;
        }
        let info = HostInterfaceInfo {
            id,
            name,
            kind: KIND.into(),
            mode,
            host_if_name: opts.host_if_name.clone(),
            host_ns: opts.host_ns.clone(),
            host_ns_inode: ns.inode(),
            host_ifindex: probe.ifindex,
            host_mac_addr: MacAddr(probe.mac),
            driver: probe.driver,
            link: Link::Up,
            mtu: probe.mtu,
            num_queues: queues,
            fanout_id: kernel.fanout_id,
            qdisc_bypass: kernel.qdisc_bypass,
            xdp: kernel.xdp,
            vnet_hdr_len: kernel.vnet_hdr_len,
            promisc: true,
            tx_checksum: probe.tx_csum,
            tso: probe.tso,
            kernel_drops: 0,
            link_down_events: 0,
            datapath: None,
            detached: None,
        };
        tracing::info!(id, name = %info.name, queues, "host interface created");
        let up = Uplink {
            info,
            datapath: Arc::new(Mutex::new(dp)),
            held,
            kernel_drops: Mutex::new(0),
            _ns: ns,
        };
        let snap = up.snapshot();
        self.map.insert(up);
        Ok(snap)
    }

    /// Closes an uplink: its sockets close, the kernel drops the
    /// promiscuity with them; the interface is as it was found.
    pub fn delete(&mut self, key: &str) -> Result<HostInterfaceInfo, Error> {
        let id = self.resolve(key)?;
        let up = self
            .map
            .remove(id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        let info = up.snapshot();
        drop(up);
        tracing::info!(id, name = %info.name, "host interface deleted");
        Ok(info)
    }

    /// Sets the rx mode of every queue.
    pub fn set_rx_mode(&mut self, key: &str, mode: RxMode) -> Result<HostInterfaceInfo, Error> {
        self.map.set_rx_mode(self.resolve(key)?, mode)?;
        self.get(key)
    }

    /// Starts a pcap capture (see [`capture`]).
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

/// An interface that cannot be an uplink, found inside its namespace.
enum Refusal {
    Missing,
    Not(String),
}

/// In the interface's namespace: probes it and refuses what cannot be an
/// uplink (from what the kernel says of it alone).
fn probe_checked(ifname: &str) -> Result<Result<packet::Probe, Refusal>, Error> {
    let socket_err = |source| Error::Socket {
        name: ifname.into(),
        source,
    };
    let query = crate::sys::packet_socket().map_err(|e| {
        socket_err(packet::StepFailed {
            step: "socket(AF_PACKET)",
            source: e,
        })
    })?;
    let probe = match packet::probe(query.as_fd(), ifname) {
        Ok(p) => p,
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(Err(Refusal::Missing)),
        Err(e) => {
            return Err(socket_err(packet::StepFailed {
                step: "SIOCGIFINDEX",
                source: e,
            }))
        }
    };
    match refusal(&probe) {
        Some(reason) => Ok(Err(Refusal::Not(reason))),
        None => Ok(Ok(probe)),
    }
}

/// Why an interface cannot be an uplink, from what the kernel says of it.
fn refusal(p: &packet::Probe) -> Option<String> {
    if p.flags & libc::IFF_LOOPBACK as u32 != 0 {
        return Some("is a loopback interface: nothing beyond it to reach".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_the_kernel() {
        let ok = HostInterfaceOptions {
            host_if_name: "eth0".into(),
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.name(), "host-eth0");
        let cases: [(HostInterfaceOptions, &str); 5] = [
            (
                HostInterfaceOptions {
                    host_if_name: "".into(),
                    ..ok.clone()
                },
                "host-if-name",
            ),
            (
                HostInterfaceOptions {
                    host_if_name: "a-very-long-name0".into(),
                    ..ok.clone()
                },
                "15 bytes",
            ),
            (
                HostInterfaceOptions {
                    num_queues: Some(0),
                    ..ok.clone()
                },
                "num-queues '0'",
            ),
            (
                HostInterfaceOptions {
                    num_queues: Some(65),
                    ..ok.clone()
                },
                "num-queues '65'",
            ),
            (
                HostInterfaceOptions {
                    id: Some(3),
                    ..ok.clone()
                },
                "id '3'",
            ),
        ];
        for (o, frag) in cases {
            let e = o.validate().expect_err("refused").to_string();
            assert!(e.contains(frag), "{o:?}: {e}");
        }
    }

    #[test]
    fn unknown_fields_and_modes_are_refused() {
        let e = serde_json::from_str::<HostInterfaceOptions>(r#"{"host_if_name":"x","mtu":9000}"#)
            .expect_err("unknown");
        assert!(e.to_string().contains("mtu"), "{e}");
        let e = serde_json::from_str::<HostInterfaceOptions>(
            r#"{"host_if_name":"x","mode":"af-dpdk"}"#,
        )
        .expect_err("no such mode");
        assert!(e.to_string().contains("af-dpdk"), "{e}");
        let o =
            serde_json::from_str::<HostInterfaceOptions>(r#"{"host_if_name":"x","mode":"af-xdp"}"#)
                .expect("af-xdp");
        assert_eq!(o.mode, Some(Mode::AfXdp));
    }

    #[test]
    fn loopback_is_refused() {
        let p = packet::Probe {
            ifindex: 1,
            driver: String::new(),
            flags: (libc::IFF_LOOPBACK | libc::IFF_UP) as u32,
            mtu: 65536,
            mac: [0; 6],
            tx_csum: true,
            tso: true,
            rx_queues: 1,
        };
        assert!(refusal(&p).is_some_and(|r| r.contains("loopback")));
        let veth = packet::Probe {
            flags: libc::IFF_UP as u32,
            driver: "veth".into(),
            ..p
        };
        assert_eq!(refusal(&veth), None);
    }
}
