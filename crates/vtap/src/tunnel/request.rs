//! What a tunnel is asked to be, and the checks that need no kernel.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::MAX_TUNNELS;
use crate::datapath::RxMode;
use crate::netns::{self, NetnsSpec};
use crate::options;
use crate::wire::vxlan::{self, Vni};

/// What to create (`vtap vxlan create`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VxlanOptions {
    /// The local VTEP address: an address of the underlay namespace.
    pub src: String,
    /// The remote VTEP address (same family).
    pub dst: String,
    /// The VXLAN network identifier, 0..=16777215.
    pub vni: u64,
    /// The UDP port, local and remote (4789, the IANA port, by default).
    #[serde(default)]
    pub port: Option<u16>,
    /// The namespace whose UDP carries the tunnel (name, `pid:N` or a
    /// path); the daemon's if absent.
    #[serde(default)]
    pub underlay_ns: Option<String>,
    /// Its number N in `vxlan_tunnelN` (restores after a restart); the
    /// lowest free if absent.
    #[serde(default)]
    pub instance: Option<u32>,
    /// Rx mode of its queue (`interrupt` by default).
    #[serde(default)]
    pub rx_mode: Option<RxMode>,
}

/// Options as checked: addresses, VNI, port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// The VNI.
    pub vni: Vni,
}

pub(super) fn refuse(
    field: &'static str,
    value: impl ToString,
    reason: impl Into<String>,
) -> options::Error {
    options::Error {
        field,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl VxlanOptions {
    /// Checks what needs no kernel.
    pub fn validate(&self) -> Result<Checked, options::Error> {
        let src: IpAddr = self
            .src
            .parse()
            .map_err(|_| refuse("src", &self.src, "not an IPv4 or IPv6 address"))?;
        let dst: IpAddr = self
            .dst
            .parse()
            .map_err(|_| refuse("dst", &self.dst, "not an IPv4 or IPv6 address"))?;
        let vni = Vni::try_from(self.vni)
            .map_err(|_| refuse("vni", self.vni, "must be in 0..=16777215"))?;
        let port = self.port.unwrap_or(vxlan::PORT);
        if port == 0 {
            return Err(refuse("port", port, "must be in 1..=65535"));
        }
        for (field, ip) in [("src", src), ("dst", dst)] {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return Err(refuse(
                    field,
                    ip,
                    "must be a unicast address of a VTEP (not unspecified, multicast or loopback)",
                ));
            }
        }
        if let IpAddr::V4(v4) = dst {
            if v4.is_broadcast() {
                return Err(refuse("dst", dst, "is a broadcast address"));
            }
        }
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(refuse(
                "dst",
                dst,
                format!("is not of src's family ({src})"),
            ));
        }
        if src == dst {
            return Err(refuse("dst", dst, "equals src: a tunnel needs two ends"));
        }
        if let Some(i) = self.instance.filter(|i| *i >= MAX_TUNNELS) {
            return Err(refuse(
                "instance",
                i,
                format!("must be below {MAX_TUNNELS}"),
            ));
        }
        if let Some(ns) = &self.underlay_ns {
            ns.parse::<NetnsSpec>()
                .map_err(|e| refuse("underlay-ns", ns, ns_reason(&e)))?;
        }
        Ok(Checked {
            local: SocketAddr::new(src, port),
            remote: SocketAddr::new(dst, port),
            vni,
        })
    }
}

/// A namespace error's reason, without the field the namespace module
/// names (it says `host-ns`; here the field is `underlay-ns`).
pub(super) fn ns_reason(e: &netns::Error) -> String {
    let full = e.to_string();
    let reason = full.split_once("': ").map_or(full.as_str(), |(_, r)| r);
    match std::error::Error::source(e) {
        Some(s) => format!("{reason}: {s}"),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> VxlanOptions {
        VxlanOptions {
            src: "198.18.0.1".into(),
            dst: "198.18.0.2".into(),
            vni: 42,
            ..Default::default()
        }
    }

    #[test]
    fn options_are_checked_before_the_kernel() {
        let c = ok().validate().expect("valid");
        assert_eq!(c.local, "198.18.0.1:4789".parse().expect("addr"));
        assert_eq!(c.remote, "198.18.0.2:4789".parse().expect("addr"));
        assert_eq!(c.vni.get(), 42);
        let v6 = VxlanOptions {
            src: "2001:db8::1".into(),
            dst: "2001:db8::2".into(),
            port: Some(8472),
            ..ok()
        };
        assert_eq!(v6.validate().expect("v6").remote.port(), 8472);
        let max = VxlanOptions {
            vni: u64::from(vxlan::MAX_VNI),
            ..ok()
        };
        assert!(max.validate().is_ok());
        let cases: Vec<(VxlanOptions, &str)> = vec![
            (
                VxlanOptions {
                    src: "x".into(),
                    ..ok()
                },
                "src 'x': not an IPv4",
            ),
            (
                VxlanOptions {
                    dst: "1.2.3".into(),
                    ..ok()
                },
                "dst '1.2.3'",
            ),
            (
                VxlanOptions {
                    vni: 16_777_216,
                    ..ok()
                },
                "vni '16777216': must be in 0..=16777215",
            ),
            (
                VxlanOptions {
                    dst: "198.18.0.1".into(),
                    ..ok()
                },
                "dst '198.18.0.1': equals src",
            ),
            (
                VxlanOptions {
                    dst: "2001:db8::2".into(),
                    ..ok()
                },
                "not of src's family",
            ),
            (
                VxlanOptions {
                    dst: "239.1.1.1".into(),
                    ..ok()
                },
                "dst '239.1.1.1': must be a unicast",
            ),
            (
                VxlanOptions {
                    src: "0.0.0.0".into(),
                    ..ok()
                },
                "src '0.0.0.0'",
            ),
            (
                VxlanOptions {
                    dst: "255.255.255.255".into(),
                    ..ok()
                },
                "broadcast",
            ),
            (
                VxlanOptions {
                    port: Some(0),
                    ..ok()
                },
                "port '0'",
            ),
            (
                VxlanOptions {
                    instance: Some(MAX_TUNNELS),
                    ..ok()
                },
                "instance",
            ),
            (
                VxlanOptions {
                    underlay_ns: Some("a/b".into()),
                    ..ok()
                },
                "underlay-ns 'a/b'",
            ),
        ];
        for (o, frag) in cases {
            let e = o.validate().expect_err("refused").to_string();
            assert!(e.contains(frag), "{o:?}: {e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<VxlanOptions>(
            r#"{"src":"198.18.0.1","dst":"198.18.0.2","vni":1,"ttl":3}"#,
        )
        .expect_err("unknown");
        assert!(e.to_string().contains("ttl"), "{e}");
    }
}
