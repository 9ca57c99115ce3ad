//! The plugin's commands over [`Daemon`], [`Ipam`] and [`Live`]: what
//! ADD, DEL, CHECK, GC and STATUS do, in what order, and what each undoes
//! when a later step fails.
//!
//! An attachment is a tap labelled with its key: network name, container
//! ID and interface name (`cni.vtap.io/*`), so that DEL, CHECK and GC find
//! it in vtapd by that key, across restarts of vtapd (labels are saved
//! with the interface).

use std::net::IpAddr;

use serde_json::{json, Value};
use vtap::options::RouteOption;
use vtap::{CreateOptions, TapInfo};

use crate::daemon::{Daemon, Live};
use crate::ipam::Ipam;
use crate::spec::{code, Attachment, CniError, NetConf};

/// Label: the network's name.
pub const LABEL_NETWORK: &str = "cni.vtap.io/network";
/// Label: the container ID.
pub const LABEL_CONTAINER: &str = "cni.vtap.io/container-id";
/// Label: the interface name in the container.
pub const LABEL_IFNAME: &str = "cni.vtap.io/ifname";

/// The runtime's environment for one call.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// `CNI_CONTAINERID`.
    pub container_id: Option<String>,
    /// `CNI_NETNS`.
    pub netns: Option<String>,
    /// `CNI_IFNAME`.
    pub ifname: Option<String>,
}

/// One call: the configuration, the environment and what it talks to.
pub struct Ctx<'a, D, I, L> {
    /// The network configuration.
    pub conf: &'a NetConf,
    /// The environment.
    pub env: &'a Env,
    /// vtapd.
    pub daemon: &'a D,
    /// The IPAM plugin, when the network has one.
    pub ipam: Option<&'a I>,
    /// The namespaces' kernel.
    pub live: &'a L,
}

fn required<'a>(v: &'a Option<String>, var: &str) -> Result<&'a str, CniError> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(CniError::new(code::INVALID_ENV, format!("{var}: missing"))),
    }
}

/// Checks `CNI_CONTAINERID` as the spec has it (alphanumeric, `_.-`).
fn container_id(env: &Env) -> Result<&str, CniError> {
    let id = required(&env.container_id, "CNI_CONTAINERID")?;
    let ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok || id.len() > 256 {
        return Err(CniError::new(
            code::INVALID_ENV,
            "CNI_CONTAINERID: must be 1..=256 of [a-zA-Z0-9_.-]",
        ));
    }
    Ok(id)
}

fn is_of(t: &TapInfo, network: &str) -> bool {
    t.labels.get(LABEL_NETWORK).map(String::as_str) == Some(network)
}

fn key_of(t: &TapInfo) -> Option<Attachment> {
    Some(Attachment {
        container_id: t.labels.get(LABEL_CONTAINER)?.clone(),
        ifname: t.labels.get(LABEL_IFNAME)?.clone(),
    })
}

impl<D: Daemon, I: Ipam, L: Live> Ctx<'_, D, I, L> {
    fn key(&self) -> Result<Attachment, CniError> {
        Ok(Attachment {
            container_id: container_id(self.env)?.to_string(),
            ifname: required(&self.env.ifname, "CNI_IFNAME")?.to_string(),
        })
    }

    /// This call's attachment in vtapd, if any.
    fn find(&self, key: &Attachment) -> Result<Option<TapInfo>, CniError> {
        Ok(self
            .daemon
            .taps()?
            .into_iter()
            .find(|t| is_of(t, &self.conf.name) && key_of(t).as_ref() == Some(key)))
    }

    /// ADD: IPAM first (its addresses go into the create), then one create
    /// in vtapd that makes the tap, its addresses and routes and its
    /// bridge port or nothing; a failure after IPAM releases the IP.
    pub fn add(&self) -> Result<Value, CniError> {
        let key = self.key()?;
        let netns = required(&self.env.netns, "CNI_NETNS")?;
        if self.find(&key)?.is_some() {
            return Err(CniError::new(
                code::EXISTS,
                format!(
                    "container {} has {} on network {} already (DEL it first)",
                    key.container_id, key.ifname, self.conf.name
                ),
            ));
        }
        let ipam_result = match self.ipam {
            Some(i) => i.call("ADD", &self.conf.raw, None)?.unwrap_or(Value::Null),
            None => Value::Null,
        };
        let made = create_options(self.conf, &key, netns, &ipam_result).and_then(|opts| {
            self.daemon
                .ensure_bridge(&self.conf.bridge, self.conf.mac_limit)?;
            self.daemon.create(&opts)
        });
        match made {
            Ok(info) => Ok(result(self.conf, &key, netns, &info, &ipam_result)),
            Err(e) => {
                if let Some(i) = self.ipam {
                    if let Err(de) = i.call("DEL", &self.conf.raw, None) {
                        return Err(CniError {
                            details: format!("and releasing the address failed: {}", de.msg),
                            ..e
                        });
                    }
                }
                Err(e)
            }
        }
    }

    /// DEL: idempotent; the tap goes if vtapd has it, the IP is released.
    pub fn del(&self) -> Result<(), CniError> {
        let key = self.key()?;
        if let Some(t) = self.find(&key)? {
            self.daemon.delete(&self.conf.bridge, &t.name)?;
        }
        if let Some(i) = self.ipam {
            i.call("DEL", &self.conf.raw, None)?;
        }
        Ok(())
    }

    /// CHECK: the live interface against `prevResult`, then IPAM's CHECK.
    pub fn check(&self) -> Result<(), CniError> {
        let key = self.key()?;
        let netns = required(&self.env.netns, "CNI_NETNS")?;
        let prev = self
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::config("prevResult", "missing (CHECK needs it)"))?;
        let drift = |what: String| CniError::new(code::DRIFT, what);
        let t = self.find(&key)?.ok_or_else(|| {
            drift(format!(
                "vtapd has no attachment for container {} {}",
                key.container_id, key.ifname
            ))
        })?;
        if !self
            .daemon
            .bridge_members(&self.conf.bridge)?
            .contains(&t.name)
        {
            return Err(drift(format!(
                "{} is not in bridge {}",
                t.name, self.conf.bridge
            )));
        }
        let live = self
            .live
            .read(netns, &key.ifname)?
            .ok_or_else(|| drift(format!("no interface {} in {netns}", key.ifname)))?;
        for i in prev["interfaces"].as_array().into_iter().flatten() {
            let mac = i["mac"].as_str().unwrap_or("").to_ascii_lowercase();
            if i["name"] == key.ifname.as_str() && !mac.is_empty() && mac != live.mac {
                return Err(drift(format!(
                    "{}: MAC {} is not prevResult's {mac}",
                    key.ifname, live.mac
                )));
            }
        }
        for ip in prev["ips"].as_array().into_iter().flatten() {
            let a = ip["address"].as_str().unwrap_or("");
            if !live.addrs.iter().any(|l| l == a) {
                return Err(drift(format!("{}: address {a} is missing", key.ifname)));
            }
        }
        for r in routes(prev) {
            let shown = match &r.gw {
                Some(g) => format!("{} via {g}", r.dst),
                None => r.dst.clone(),
            };
            if !live.routes.contains(&shown) {
                return Err(drift(format!("{}: route {shown} is missing", key.ifname)));
            }
        }
        if let Some(i) = self.ipam {
            i.call("CHECK", &self.conf.raw, None)?;
        }
        Ok(())
    }

    /// GC: every attachment of this network not in
    /// `cni.dev/valid-attachments` goes, and its IP with it (IPAM GC where
    /// the IPAM plugin speaks 1.1.0, else IPAM DEL per attachment).
    pub fn gc(&self) -> Result<(), CniError> {
        let valid = self.conf.valid_attachments.as_ref().ok_or_else(|| {
            CniError::config("cni.dev/valid-attachments", "missing (GC needs it)")
        })?;
        let stale: Vec<(TapInfo, Attachment)> = self
            .daemon
            .taps()?
            .into_iter()
            .filter(|t| is_of(t, &self.conf.name))
            .filter_map(|t| key_of(&t).map(|k| (t, k)))
            .filter(|(_, k)| !valid.contains(k))
            .collect();
        for (t, _) in &stale {
            self.daemon.delete(&self.conf.bridge, &t.name)?;
        }
        if let Some(i) = self.ipam {
            if i.speaks(&self.conf.raw, "1.1.0")? {
                i.call("GC", &self.conf.raw, None)?;
            } else {
                for (_, k) in &stale {
                    i.call("DEL", &self.conf.raw, Some(k))?;
                }
            }
        }
        Ok(())
    }

    /// STATUS: vtapd answers; then IPAM's, where it speaks 1.1.0.
    pub fn status(&self) -> Result<(), CniError> {
        self.daemon.ping()?;
        if let Some(i) = self.ipam {
            if i.speaks(&self.conf.raw, "1.1.0")? {
                i.call("STATUS", &self.conf.raw, None)?;
            }
        }
        Ok(())
    }
}

/// The routes of a result, each with its gateway made explicit: a route
/// without one goes via the gateway of the result's first address of its
/// family that has one, else on link (as the reference `bridge` plugin).
fn routes(result: &Value) -> Vec<RouteOption> {
    let gw_of = |v6: bool| {
        result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|ip| {
                let g: IpAddr = ip["gateway"].as_str()?.parse().ok()?;
                (g.is_ipv6() == v6).then(|| g.to_string())
            })
    };
    result["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?.to_string();
            let v6 = dst.contains(':');
            let gw = r["gw"].as_str().map(String::from).or_else(|| gw_of(v6));
            Some(RouteOption { dst, gw })
        })
        .collect()
}

/// The create request for an attachment: the tap in the pod's namespace,
/// named as the runtime asks, with every address and route of the IPAM
/// result, in the bridge, persistent (vtapd adopts it again after a
/// restart), labelled with its key.
pub fn create_options(
    conf: &NetConf,
    key: &Attachment,
    netns: &str,
    ipam: &Value,
) -> Result<CreateOptions, CniError> {
    let mut opts = CreateOptions {
        host_ns: Some(netns.to_string()),
        host_if_name: Some(key.ifname.clone()),
        bridge: Some(conf.bridge.clone()),
        host_mtu_size: conf.mtu,
        gso: conf.gso,
        gro_coalesce: conf.gro_coalesce,
        num_rx_queues: conf.queues,
        num_tx_queues: conf.queues,
        persist: true,
        labels: [
            (LABEL_NETWORK.to_string(), conf.name.clone()),
            (LABEL_CONTAINER.to_string(), key.container_id.clone()),
            (LABEL_IFNAME.to_string(), key.ifname.clone()),
        ]
        .into(),
        ..CreateOptions::default()
    };
    for ip in ipam["ips"].as_array().into_iter().flatten() {
        let a = ip["address"]
            .as_str()
            .ok_or_else(|| CniError::new(code::DECODE, "ipam result: an ip without an address"))?;
        let slot = if a.contains(':') {
            &mut opts.host_ip6_addr
        } else {
            &mut opts.host_ip4_addr
        };
        if slot.is_none() {
            *slot = Some(a.to_string());
        } else {
            opts.host_addrs.push(a.to_string());
        }
    }
    opts.host_routes = routes(ipam);
    if let Some(bw) = conf.bandwidth {
        crate::bandwidth::apply(&bw, &mut opts)?;
    }
    Ok(opts)
}

/// The ADD result: the pod's interface, the IPAM result's addresses (on
/// interface 0), routes and DNS (the configuration's when IPAM has none).
pub fn result(
    conf: &NetConf,
    key: &Attachment,
    netns: &str,
    info: &TapInfo,
    ipam: &Value,
) -> Value {
    let legacy = !conf.at_least("1.0.0");
    let mut iface = json!({
        "name": key.ifname,
        "mac": info.host_mac_addr.map(|m| m.to_string()).unwrap_or_default(),
        "sandbox": netns,
    });
    if !legacy {
        iface["mtu"] = json!(info.host_mtu_size);
    }
    let ips: Vec<Value> = ipam["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ip| {
            let mut ip = ip.clone();
            ip["interface"] = json!(0);
            let v6 = ip["address"].as_str().is_some_and(|a| a.contains(':'));
            match ip.as_object_mut() {
                Some(o) if legacy => {
                    o.insert("version".into(), json!(if v6 { "6" } else { "4" }));
                }
                Some(o) => {
                    o.remove("version");
                }
                None => {}
            }
            ip
        })
        .collect();
    let mut out = json!({
        "cniVersion": conf.version,
        "interfaces": [iface],
        "ips": ips,
    });
    if let Some(r) = ipam.get("routes").filter(|r| r.is_array()) {
        out["routes"] = r.clone();
    }
    let dns = ipam
        .get("dns")
        .filter(|d| d.as_object().is_some_and(|o| !o.is_empty()));
    if let Some(d) = dns.or(conf.dns.as_ref()) {
        out["dns"] = d.clone();
    }
    out
}

#[cfg(test)]
#[path = "plugin_tests.rs"]
mod tests;
