//! What a user asks for when creating a tap, and its validation.
//!
//! [`CreateOptions`] is the wire form (REST body, CLI flags, config file):
//! field names are VPP's, values are strings where users type text, so that a
//! bad value is reported as *this field, this value, this reason* rather than
//! as a serde type error. [`CreateOptions::validate`] turns it into a
//! [`TapConfig`] in which every value is checked and typed; nothing is
//! truncated, defaulted silently, or "fixed up": input that would need it is
//! refused. Validation has no side effects.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::netns::NetnsSpec;
use crate::tun::{Mode, OffloadMode};

mod host;
pub use host::{check_labels, Labels, Route, RouteOption};

/// Highest interface id (VPP today: 8192 ids).
pub const MAX_ID: u32 = 8191;
/// Default ring size (VPP's).
pub const DEFAULT_RING_SIZE: u32 = 256;
/// Largest split-ring size the virtio spec allows.
pub const MAX_RING_SIZE: u32 = 32768;
/// `MAX_TAP_QUEUES` in `drivers/net/tun.c`.
pub const MAX_QUEUES: u16 = 256;
/// The MTU range the kernel allows on a TUN/TAP interface.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65521;
/// IPv6 needs an MTU of at least this (RFC 8200); below it the kernel
/// disables IPv6 on the link and drops its addresses.
pub const IPV6_MIN_MTU: u32 = 1280;

/// A refused option: which field, the value given, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} '{value}': {reason}")]
pub struct Error {
    /// The option's name as users write it (`host-if-name`).
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

fn refuse(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Error {
    Error {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Which backend serves the interface's queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendRequest {
    /// Kernel vhost-net where `/dev/vhost-net` opens, else direct.
    #[default]
    Auto,
    /// Kernel vhost-net; an error if unavailable.
    VhostNet,
    /// A userspace thread serves the rings from the tap fd.
    Userspace,
    /// No rings: the data plane reads and writes the tap fd itself.
    Direct,
    /// The direct engine, reads and writes batched through io_uring.
    IoUring,
}

impl FromStr for BackendRequest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(Self::Auto),
            "vhost-net" => Ok(Self::VhostNet),
            "userspace" => Ok(Self::Userspace),
            "direct" => Ok(Self::Direct),
            "io-uring" => Ok(Self::IoUring),
            _ => Err(refuse(
                "backend",
                s,
                "expected one of auto, vhost-net, userspace, direct, io-uring",
            )),
        }
    }
}

/// An interface address with its prefix length (`A/L`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix<A> {
    /// The address.
    pub addr: A,
    /// The prefix length.
    pub len: u8,
}

impl<A: fmt::Display> fmt::Display for Prefix<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<A: Into<IpAddr> + Copy> Prefix<A> {
    /// As a generic IP address.
    pub fn ip(&self) -> IpAddr {
        self.addr.into()
    }
}

fn parse_prefix<A: FromStr>(field: &'static str, s: &str, max_len: u8) -> Result<Prefix<A>, Error> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| refuse(field, s, "expected ADDRESS/PREFIX-LENGTH"))?;
    let addr = a
        .parse::<A>()
        .map_err(|_| refuse(field, s, format!("'{a}' is not a valid address")))?;
    let len = l
        .parse::<u8>()
        .ok()
        .filter(|&n| (1..=max_len).contains(&n))
        .ok_or_else(|| refuse(field, s, format!("prefix length must be 1..={max_len}")))?;
    Ok(Prefix { addr, len })
}

fn check_ip4_unicast(field: &'static str, s: &str, a: Ipv4Addr) -> Result<(), Error> {
    if a.is_unspecified() || a.is_multicast() || a.is_broadcast() {
        return Err(refuse(field, s, "not a unicast address"));
    }
    Ok(())
}

fn check_ip6_unicast(field: &'static str, s: &str, a: Ipv6Addr) -> Result<(), Error> {
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
        return Err(refuse(field, s, "not a unicast address"));
    }
    Ok(())
}

/// Checks a Linux interface name the way the kernel's `dev_valid_name` does,
/// refusing what it would refuse instead of truncating (VPP cuts silently).
pub fn check_ifname(field: &'static str, name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() >= crate::sys::IFNAMSIZ {
        "longer than 15 bytes (Linux IFNAMSIZ)"
    } else if name == "." || name == ".." {
        "'.' and '..' are not interface names"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains(':') {
        "contains ':' (reserved for aliases)"
    } else if name.chars().any(|c| c.is_whitespace()) {
        "contains white space"
    } else if name.contains('\0') || name.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(refuse(field, name, reason))
}

/// Options for creating (or attaching to) a tap, as users give them.
///
/// Every field is optional; absent means the documented default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateOptions {
    /// Interface id, 0..=8191; the lowest free one if absent.
    pub id: Option<u32>,
    /// Host-side interface name; `tap<id>` (`tun<id>`) if absent.
    pub host_if_name: Option<String>,
    /// Host namespace: `NAME`, `/path`, or `pid:N`; the daemon's own if absent.
    pub host_ns: Option<String>,
    /// Host-side MAC; random locally administered if absent.
    pub host_mac_addr: Option<String>,
    /// Data-plane MAC; random locally administered if absent.
    pub hw_addr: Option<String>,
    /// Bridge in the host namespace to enslave the tap to.
    pub host_bridge: Option<String>,
    /// Host IPv4 address `A/L`.
    pub host_ip4_addr: Option<String>,
    /// IPv4 default gateway for the host namespace.
    pub host_ip4_gw: Option<String>,
    /// Host IPv6 address `A/L`.
    pub host_ip6_addr: Option<String>,
    /// IPv6 default gateway for the host namespace.
    pub host_ip6_gw: Option<String>,
    /// More host addresses `A/L`, either family, after the two above.
    pub host_addrs: Vec<String>,
    /// Routes out of the host side (a default one only for a family
    /// without `host_ip4_gw`/`host_ip6_gw`).
    pub host_routes: Vec<RouteOption>,
    /// The caller's tags, kept with the interface and saved (see
    /// [`check_labels`]); vtap gives them no meaning.
    pub labels: Labels,
    /// Rate limits of the data path ([`crate::datapath::limit`]).
    pub rate_limit: Option<crate::datapath::limit::RateLimits>,
    /// Host-side MTU, 68..=65521; the daemon default, else the kernel's.
    pub host_mtu_size: Option<u32>,
    /// Rx ring size, a power of two 1..=32768 (default 256).
    pub rx_ring_size: Option<u32>,
    /// Tx ring size, a power of two 1..=32768 (default 256).
    pub tx_ring_size: Option<u32>,
    /// Rx queues (tap fds), 1..=256 (default 1).
    pub num_rx_queues: Option<u16>,
    /// Tx queues, 1..=256 (default 1).
    pub num_tx_queues: Option<u16>,
    /// Checksum and segmentation offload (TSO4/6, USO4/6 where the kernel has it).
    pub gso: bool,
    /// Checksum offload only.
    pub csum_offload: bool,
    /// Coalesce frames toward the kernel (needs `gso`).
    pub gro_coalesce: bool,
    /// L3 TUN instead of L2 TAP.
    pub tun: bool,
    /// Keep the interface when vtap exits.
    pub persist: bool,
    /// Attach to an existing persistent interface named `host_if_name`.
    pub attach: bool,
    /// `auto`, `vhost-net` or `userspace` (default `auto`).
    pub backend: Option<String>,
    /// A bridge domain of vtap's to make the new tap a port of at once (not
    /// `host_bridge`, the kernel's). With VXLAN tunnels in it and no
    /// `host_mtu_size`, the host MTU is the least they carry. Taken by
    /// [`crate::node::Node::create`] and the daemon; a registry alone has
    /// no bridges and refuses it.
    pub bridge: Option<String>,
}

/// Validated, typed options. Built only by [`CreateOptions::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// Requested id.
    pub id: Option<u32>,
    /// Requested host name (the default needs the id, resolved at creation).
    pub host_if_name: Option<String>,
    /// Host namespace.
    pub host_ns: Option<NetnsSpec>,
    /// Host MAC.
    pub host_mac_addr: Option<MacAddr>,
    /// Data-plane MAC.
    pub hw_addr: Option<MacAddr>,
    /// Host bridge.
    pub host_bridge: Option<String>,
    /// Host IPv4 address.
    pub host_ip4_addr: Option<Prefix<Ipv4Addr>>,
    /// IPv4 gateway.
    pub host_ip4_gw: Option<Ipv4Addr>,
    /// Host IPv6 address.
    pub host_ip6_addr: Option<Prefix<Ipv6Addr>>,
    /// IPv6 gateway.
    pub host_ip6_gw: Option<Ipv6Addr>,
    /// Further host addresses.
    pub host_addrs: Vec<Prefix<IpAddr>>,
    /// Routes.
    pub host_routes: Vec<Route>,
    /// Labels.
    pub labels: Labels,
    /// Rate limits.
    pub rate_limit: Option<crate::datapath::limit::RateLimits>,
    /// Host MTU.
    pub host_mtu_size: Option<u32>,
    /// Rx ring size.
    pub rx_ring_size: u32,
    /// Tx ring size.
    pub tx_ring_size: u32,
    /// Rx queues.
    pub num_rx_queues: u16,
    /// Tx queues.
    pub num_tx_queues: u16,
    /// Offload mode.
    pub offload: OffloadMode,
    /// GRO coalescing.
    pub gro_coalesce: bool,
    /// TAP or TUN.
    pub mode: Mode,
    /// Persistent.
    pub persist: bool,
    /// Attach to an existing interface.
    pub attach: bool,
    /// Backend.
    pub backend: BackendRequest,
}

fn ring_size(field: &'static str, v: Option<u32>) -> Result<u32, Error> {
    let n = v.unwrap_or(DEFAULT_RING_SIZE);
    if n == 0 || n > MAX_RING_SIZE || !n.is_power_of_two() {
        return Err(refuse(
            field,
            n,
            format!("must be a power of two in 1..={MAX_RING_SIZE}"),
        ));
    }
    Ok(n)
}

fn queue_count(field: &'static str, v: Option<u16>) -> Result<u16, Error> {
    let n = v.unwrap_or(1);
    if n == 0 || n > MAX_QUEUES {
        return Err(refuse(field, n, format!("must be in 1..={MAX_QUEUES}")));
    }
    Ok(n)
}

impl CreateOptions {
    /// Checks every field and their combinations.
    pub fn validate(&self) -> Result<TapConfig, Error> {
        if let Some(bd) = &self.bridge {
            return Err(refuse(
                "bridge",
                bd,
                "a registry alone has no bridge domains (create through the node or the daemon)",
            ));
        }
        if let Some(id) = self.id {
            if id > MAX_ID {
                return Err(refuse("id", id, format!("must be in 0..={MAX_ID}")));
            }
        }
        if let Some(n) = &self.host_if_name {
            check_ifname("host-if-name", n)?;
        }
        let host_ns = self
            .host_ns
            .as_deref()
            .map(|s| {
                s.parse::<NetnsSpec>().map_err(|e| match e {
                    crate::netns::Error::Invalid { reason, .. } => refuse("host-ns", s, reason),
                    other => refuse("host-ns", s, other.to_string()),
                })
            })
            .transpose()?;
        let mac = |field: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    s.parse::<MacAddr>()
                        .map_err(|e| refuse(field, s, mac_reason(&e)))
                })
                .transpose()
        };
        let host_mac_addr = mac("host-mac-addr", &self.host_mac_addr)?;
        let hw_addr = mac("hw-addr", &self.hw_addr)?;
        if let Some(b) = &self.host_bridge {
            check_ifname("host-bridge", b)?;
        }
        let host_ip4_addr = self
            .host_ip4_addr
            .as_deref()
            .map(|s| {
                let p = parse_prefix::<Ipv4Addr>("host-ip4-addr", s, 32)?;
                check_ip4_unicast("host-ip4-addr", s, p.addr)?;
                Ok(p)
            })
            .transpose()?;
        let host_ip6_addr = self
            .host_ip6_addr
            .as_deref()
            .map(|s| {
                let p = parse_prefix::<Ipv6Addr>("host-ip6-addr", s, 128)?;
                check_ip6_unicast("host-ip6-addr", s, p.addr)?;
                Ok(p)
            })
            .transpose()?;
        let host_ip4_gw = self
            .host_ip4_gw
            .as_deref()
            .map(|s| {
                let a = s
                    .parse::<Ipv4Addr>()
                    .map_err(|_| refuse("host-ip4-gw", s, "not an IPv4 address"))?;
                check_ip4_unicast("host-ip4-gw", s, a)?;
                Ok(a)
            })
            .transpose()?;
        let host_ip6_gw = self
            .host_ip6_gw
            .as_deref()
            .map(|s| {
                let a = s
                    .parse::<Ipv6Addr>()
                    .map_err(|_| refuse("host-ip6-gw", s, "not an IPv6 address"))?;
                check_ip6_unicast("host-ip6-gw", s, a)?;
                Ok(a)
            })
            .transpose()?;
        let first: Vec<IpAddr> = [host_ip4_addr.map(|p| p.ip()), host_ip6_addr.map(|p| p.ip())]
            .into_iter()
            .flatten()
            .collect();
        let host_addrs = host::check_addrs(&self.host_addrs, &first)?;
        let gw_families: Vec<bool> = [host_ip4_gw.map(|_| false), host_ip6_gw.map(|_| true)]
            .into_iter()
            .flatten()
            .collect();
        let host_routes = host::check_routes(&self.host_routes, &gw_families)?;
        check_labels(&self.labels)?;
        if let Some(r) = &self.rate_limit {
            r.check()
                .map_err(|why| refuse("rate-limit", "(given)", why))?;
        }
        let any_v6 = host_ip6_addr.is_some()
            || host_ip6_gw.is_some()
            || host_addrs.iter().any(|p| p.addr.is_ipv6());
        if let Some(mtu) = self.host_mtu_size {
            if !MTU_RANGE.contains(&mtu) {
                return Err(refuse(
                    "host-mtu-size",
                    mtu,
                    format!(
                        "must be in {}..={} (the kernel's range for a tap)",
                        MTU_RANGE.start(),
                        MTU_RANGE.end()
                    ),
                ));
            }
            if mtu < IPV6_MIN_MTU && any_v6 {
                return Err(refuse(
                    "host-mtu-size",
                    mtu,
                    format!("IPv6 needs an MTU of at least {IPV6_MIN_MTU}"),
                ));
            }
        }
        let rx_ring_size = ring_size("rx-ring-size", self.rx_ring_size)?;
        let tx_ring_size = ring_size("tx-ring-size", self.tx_ring_size)?;
        let num_rx_queues = queue_count("num-rx-queues", self.num_rx_queues)?;
        let num_tx_queues = queue_count("num-tx-queues", self.num_tx_queues)?;
        let offload = match (self.gso, self.csum_offload) {
            (true, true) => {
                return Err(refuse(
                    "csum-offload",
                    true,
                    "give gso or csum-offload, not both (gso includes checksum offload)",
                ))
            }
            (true, false) => OffloadMode::Gso,
            (false, true) => OffloadMode::Csum,
            (false, false) => OffloadMode::None,
        };
        if self.gro_coalesce && !self.gso {
            return Err(refuse("gro-coalesce", true, "needs gso"));
        }
        let mode = if self.tun { Mode::Tun } else { Mode::Tap };
        if self.tun {
            for (field, set) in [
                ("host-mac-addr", &self.host_mac_addr),
                ("hw-addr", &self.hw_addr),
                ("host-bridge", &self.host_bridge),
            ] {
                if let Some(v) = set {
                    return Err(refuse(field, v, "a TUN (L3) interface has none"));
                }
            }
        }
        if let Some(b) = &self.host_bridge {
            if host_ip4_addr.is_some() || host_ip6_addr.is_some() || !host_addrs.is_empty() {
                return Err(refuse(
                    "host-bridge",
                    b,
                    "cannot be combined with host-ip4-addr/host-ip6-addr (put addresses on the bridge)",
                ));
            }
        }
        if self.attach {
            if self.host_if_name.is_none() {
                return Err(refuse(
                    "attach",
                    true,
                    "needs host-if-name (the interface to attach to)",
                ));
            }
            let host_side = [
                ("host-mac-addr", self.host_mac_addr.is_some()),
                ("host-bridge", self.host_bridge.is_some()),
                ("host-ip4-addr", self.host_ip4_addr.is_some()),
                ("host-ip4-gw", self.host_ip4_gw.is_some()),
                ("host-ip6-addr", self.host_ip6_addr.is_some()),
                ("host-ip6-gw", self.host_ip6_gw.is_some()),
                ("host-addrs", !self.host_addrs.is_empty()),
                ("host-routes", !self.host_routes.is_empty()),
                ("host-mtu-size", self.host_mtu_size.is_some()),
            ];
            if let Some((field, _)) = host_side.iter().find(|(_, set)| *set) {
                return Err(refuse(
                    field,
                    "(given)",
                    "cannot be used with attach: the existing interface keeps its host configuration",
                ));
            }
        }
        let backend = self
            .backend
            .as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
        Ok(TapConfig {
            id: self.id,
            host_if_name: self.host_if_name.clone(),
            host_ns,
            host_mac_addr,
            hw_addr,
            host_bridge: self.host_bridge.clone(),
            host_ip4_addr,
            host_ip4_gw,
            host_ip6_addr,
            host_ip6_gw,
            host_addrs,
            host_routes,
            labels: self.labels.clone(),
            rate_limit: self.rate_limit,
            host_mtu_size: self.host_mtu_size,
            rx_ring_size,
            tx_ring_size,
            num_rx_queues,
            num_tx_queues,
            offload,
            gro_coalesce: self.gro_coalesce,
            mode,
            persist: self.persist,
            attach: self.attach,
            backend,
        })
    }
}

fn mac_reason(e: &crate::mac::Error) -> String {
    match e {
        crate::mac::Error::Syntax(_) => "expected six hex pairs like 02:fe:12:34:56:78".into(),
        crate::mac::Error::Multicast(_) => "a multicast address cannot be an interface's".into(),
        crate::mac::Error::Zero(_) => "the all-zero address".into(),
    }
}

#[cfg(test)]
mod tests;
