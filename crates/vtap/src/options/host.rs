//! More of the host side than VPP's one address and one gateway per
//! family: further addresses, routes, and labels.
//!
//! A CNI IPAM plugin may hand a pod several addresses of one family and
//! routes to several prefixes (`host-local` with two ranges, a static
//! route to a service network); `host_addrs` and `host_routes` carry them
//! through the same named, rolled-back creation steps as the first
//! address. Labels are the caller's key/value tags (the CNI plugin's
//! attachment key: container, interface and network), kept with the
//! interface and in the daemon's state file; vtap itself gives them no
//! meaning.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{check_ip4_unicast, check_ip6_unicast, parse_prefix, refuse, Error, Prefix};

/// Most further addresses one interface takes.
pub const MAX_ADDRS: usize = 64;
/// Most routes one interface takes.
pub const MAX_ROUTES: usize = 64;
/// Most labels one interface carries.
pub const MAX_LABELS: usize = 16;
/// Longest label key.
pub const MAX_LABEL_KEY: usize = 128;
/// Longest label value.
pub const MAX_LABEL_VALUE: usize = 256;

/// Labels: the caller's tags, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// A route out of the host side, as users give it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RouteOption {
    /// Destination prefix `NETWORK/LEN` (`0.0.0.0/0`, `::/0`: default).
    pub dst: String,
    /// Next hop, of the destination's family; none: on link.
    #[serde(default)]
    pub gw: Option<String>,
}

/// A checked route: destination network and optional next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Destination network (host bits clear).
    pub dst: IpAddr,
    /// Destination prefix length (0: default route).
    pub len: u8,
    /// Next hop; `None`: on link.
    pub gw: Option<IpAddr>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dst, self.len)?;
        match self.gw {
            Some(g) => write!(f, " via {g}"),
            None => f.write_str(" on link"),
        }
    }
}

impl Route {
    /// The wire form of this route.
    pub fn to_option(&self) -> RouteOption {
        RouteOption {
            dst: format!("{}/{}", self.dst, self.len),
            gw: self.gw.map(|g| g.to_string()),
        }
    }
}

fn check_unicast(field: &'static str, s: &str, a: IpAddr) -> Result<(), Error> {
    match a {
        IpAddr::V4(v4) => check_ip4_unicast(field, s, v4),
        IpAddr::V6(v6) => check_ip6_unicast(field, s, v6),
    }
}

/// Checks further host addresses (`A/L`, either family): unicast, each
/// once, none equal to `first` (the `host_ip4_addr`/`host_ip6_addr`).
pub(super) fn check_addrs(v: &[String], first: &[IpAddr]) -> Result<Vec<Prefix<IpAddr>>, Error> {
    const FIELD: &str = "host-addrs";
    if v.len() > MAX_ADDRS {
        return Err(refuse(FIELD, v.len(), format!("at most {MAX_ADDRS}")));
    }
    let mut out: Vec<Prefix<IpAddr>> = Vec::with_capacity(v.len());
    for s in v {
        let p = match s.split_once('/').map(|(a, _)| a.parse::<IpAddr>()) {
            Some(Ok(IpAddr::V6(_))) => parse_prefix::<IpAddr>(FIELD, s, 128)?,
            _ => parse_prefix::<IpAddr>(FIELD, s, 32)?,
        };
        check_unicast(FIELD, s, p.addr)?;
        if first.contains(&p.addr) || out.iter().any(|o| o.addr == p.addr) {
            return Err(refuse(FIELD, s, "given twice"));
        }
        out.push(p);
    }
    Ok(out)
}

/// The network of `a/len` (host bits cleared).
fn network(a: IpAddr, len: u8) -> IpAddr {
    match a {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

fn check_route(r: &RouteOption) -> Result<Route, Error> {
    const FIELD: &str = "host-routes";
    let shown = match &r.gw {
        Some(g) => format!("{} via {g}", r.dst),
        None => r.dst.clone(),
    };
    let (a, l) = r
        .dst
        .split_once('/')
        .ok_or_else(|| refuse(FIELD, &shown, "dst: expected NETWORK/PREFIX-LENGTH"))?;
    let dst: IpAddr = a
        .parse()
        .map_err(|_| refuse(FIELD, &shown, format!("dst: '{a}' is not an address")))?;
    let max = if dst.is_ipv6() { 128 } else { 32 };
    let len = l.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(|| {
        refuse(
            FIELD,
            &shown,
            format!("dst: prefix length must be 0..={max}"),
        )
    })?;
    let net = network(dst, len);
    if net != dst {
        return Err(refuse(
            FIELD,
            &shown,
            format!("dst: host bits set (the network is {net}/{len})"),
        ));
    }
    let gw = match &r.gw {
        None => None,
        Some(g) => {
            let gw: IpAddr = g
                .parse()
                .map_err(|_| refuse(FIELD, &shown, format!("gw: '{g}' is not an address")))?;
            if gw.is_ipv6() != dst.is_ipv6() {
                return Err(refuse(FIELD, &shown, "gw: not of the destination's family"));
            }
            check_unicast(FIELD, &shown, gw)?;
            Some(gw)
        }
    };
    Ok(Route { dst, len, gw })
}

/// Checks routes: each well formed and given once; a default route not
/// also given as `host_ip4_gw`/`host_ip6_gw` (`gw_families`: v6 or not).
pub(super) fn check_routes(v: &[RouteOption], gw_families: &[bool]) -> Result<Vec<Route>, Error> {
    if v.len() > MAX_ROUTES {
        return Err(refuse(
            "host-routes",
            v.len(),
            format!("at most {MAX_ROUTES}"),
        ));
    }
    let mut out: Vec<Route> = Vec::with_capacity(v.len());
    for r in v {
        let route = check_route(r)?;
        if route.len == 0 && gw_families.contains(&route.dst.is_ipv6()) {
            return Err(refuse(
                "host-routes",
                route,
                "a default route of this family is host-ip4-gw/host-ip6-gw's already",
            ));
        }
        if out.iter().any(|o| (o.dst, o.len) == (route.dst, route.len)) {
            return Err(refuse("host-routes", route, "destination given twice"));
        }
        out.push(route);
    }
    Ok(out)
}

/// Checks labels: at most [`MAX_LABELS`], keys of `[A-Za-z0-9._/-]`,
/// values without control characters.
pub fn check_labels(l: &Labels) -> Result<(), Error> {
    if l.len() > MAX_LABELS {
        return Err(refuse("labels", l.len(), format!("at most {MAX_LABELS}")));
    }
    for (k, v) in l {
        let key_ok = |c: char| c.is_ascii_alphanumeric() || "._/-".contains(c);
        if k.is_empty() || k.len() > MAX_LABEL_KEY || !k.chars().all(key_ok) {
            return Err(refuse(
                "labels",
                k,
                format!("a key is 1..={MAX_LABEL_KEY} of A-Z a-z 0-9 . _ / -"),
            ));
        }
        if v.len() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
            return Err(refuse(
                "labels",
                format!("{k}={v:?}"),
                format!("a value is at most {MAX_LABEL_VALUE} bytes, no control characters"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, gw: Option<&str>) -> RouteOption {
        RouteOption {
            dst: dst.into(),
            gw: gw.map(Into::into),
        }
    }

    #[test]
    fn routes_table() {
        let good = [
            (
                route("0.0.0.0/0", Some("198.18.0.1")),
                "0.0.0.0/0 via 198.18.0.1",
            ),
            (route("198.18.64.0/18", None), "198.18.64.0/18 on link"),
            (route("::/0", Some("2001:db8::1")), "::/0 via 2001:db8::1"),
            (
                route("2001:db8:5::/48", Some("fe80::1")),
                "2001:db8:5::/48 via fe80::1",
            ),
        ];
        for (r, shown) in good {
            let got = check_routes(std::slice::from_ref(&r), &[]).expect(shown);
            assert_eq!(got[0].to_string(), shown);
            assert_eq!(
                check_route(&got[0].to_option()).expect("round trip"),
                got[0]
            );
        }
        let bad = [
            (route("198.18.0.0", None), "expected NETWORK/PREFIX-LENGTH"),
            (route("x/8", None), "'x' is not an address"),
            (route("198.18.0.0/33", None), "prefix length must be 0..=32"),
            (
                route("198.18.0.1/16", None),
                "host bits set (the network is 198.18.0.0/16)",
            ),
            (
                route("198.18.0.0/16", Some("2001:db8::1")),
                "not of the destination's family",
            ),
            (
                route("198.18.0.0/16", Some("224.0.0.1")),
                "not a unicast address",
            ),
            (
                route("198.18.0.0/16", Some("nope")),
                "'nope' is not an address",
            ),
        ];
        for (r, why) in bad {
            let e = check_routes(&[r], &[]).expect_err(why).to_string();
            assert!(
                e.starts_with("host-routes") && e.contains(why),
                "{e} / {why}"
            );
        }
        let twice = [
            route("198.18.0.0/16", None),
            route("198.18.0.0/16", Some("198.18.0.1")),
        ];
        assert!(check_routes(&twice, &[]).is_err());
        let default = [route("0.0.0.0/0", Some("198.18.0.1"))];
        let e = check_routes(&default, &[false]).expect_err("gw given");
        assert!(e.to_string().contains("host-ip4-gw"), "{e}");
        assert!(check_routes(&default, &[true]).is_ok(), "other family's gw");
    }

    #[test]
    fn addrs_table() {
        let first: [IpAddr; 1] = ["198.18.1.1".parse().expect("ip")];
        let ok = check_addrs(&["198.18.2.1/24".into(), "2001:db8::5/64".into()], &first);
        assert_eq!(ok.expect("valid").len(), 2);
        for (v, why) in [
            ("198.18.1.1/24", "given twice"),
            ("198.18.2.1", "expected ADDRESS/PREFIX-LENGTH"),
            ("198.18.2.1/40", "prefix length must be 1..=32"),
            ("2001:db8::5/129", "prefix length must be 1..=128"),
            ("224.0.0.5/24", "not a unicast address"),
        ] {
            let e = check_addrs(&[v.into()], &first).expect_err(v).to_string();
            assert!(
                e.starts_with("host-addrs") && e.contains(why),
                "{e} / {why}"
            );
        }
    }

    #[test]
    fn labels_table() {
        let l = |k: &str, v: &str| Labels::from([(k.to_string(), v.to_string())]);
        assert!(check_labels(&l("cni.vtap.io/attachment", "net/abc/eth0")).is_ok());
        assert!(check_labels(&l("", "x")).is_err());
        assert!(check_labels(&l("a b", "x")).is_err());
        assert!(check_labels(&l("k", "line\nbreak")).is_err());
        assert!(check_labels(&l("k", &"x".repeat(MAX_LABEL_VALUE + 1))).is_err());
        let many: Labels = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(check_labels(&many).is_err());
    }
}
