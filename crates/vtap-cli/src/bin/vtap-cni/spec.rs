//! The CNI contract as this plugin speaks it: versions, the error object
//! and its codes, the network configuration (every field checked by name:
//! an unknown or ill-typed one is a code-7 error naming it), and the
//! result. Spec: <https://github.com/containernetworking/cni/blob/main/SPEC.md>.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

/// The spec versions this plugin speaks (0.4.0's result differs only in
/// `ips[].version`).
pub const VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

/// Error codes of the spec.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Invalid or missing environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_CONFIG: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: the plugin is not available.
    pub const NOT_AVAILABLE: u32 = 50;
    /// vtap's own (100 and up are the plugin's): vtapd refused the change.
    pub const VTAPD_REFUSED: u32 = 100;
    /// vtap's own: CHECK found the live state drifted from `prevResult`.
    pub const DRIFT: u32 = 101;
    /// vtap's own: an attachment with this key exists already.
    pub const EXISTS: u32 = 102;
}

/// The spec's error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The code (see [`code`]).
    pub code: u32,
    /// One line.
    pub msg: String,
    /// More, if any.
    pub details: String,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// A code-7 error naming `field`.
    pub fn config(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID_CONFIG, format!("{field}: {reason}"))
    }

    /// The object printed on stdout.
    pub fn to_json(&self, version: &str) -> Value {
        json!({"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details})
    }
}

/// `runtimeConfig.bandwidth` (the `bandwidth` capability): rates in bits
/// per second, bursts in bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// Into the pod.
    pub ingress_rate: Option<u64>,
    /// Into the pod, burst.
    pub ingress_burst: Option<u64>,
    /// Out of the pod.
    pub egress_rate: Option<u64>,
    /// Out of the pod, burst.
    pub egress_burst: Option<u64>,
}

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Attachment {
    /// `containerID`.
    pub container_id: String,
    /// `ifname`.
    pub ifname: String,
}

/// The network configuration for this plugin, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion`.
    pub version: String,
    /// `name`: the network.
    pub name: String,
    /// `socket`: vtapd's.
    pub socket: PathBuf,
    /// `bridge`: the vtap bridge domain.
    pub bridge: String,
    /// `mtu`.
    pub mtu: Option<u32>,
    /// `gso`.
    pub gso: bool,
    /// `gro_coalesce`.
    pub gro_coalesce: bool,
    /// `queues`: rx and tx queues of each tap.
    pub queues: Option<u16>,
    /// `mac_limit` of the bridge domain (when this plugin creates it).
    pub mac_limit: Option<usize>,
    /// `ipam`: the delegated plugin's `type`, if any.
    pub ipam_type: Option<String>,
    /// `dns`, passed through when IPAM gives none.
    pub dns: Option<Value>,
    /// `runtimeConfig.bandwidth`.
    pub bandwidth: Option<Bandwidth>,
    /// `prevResult` (CHECK, DEL).
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (GC).
    pub valid_attachments: Option<Vec<Attachment>>,
    /// The whole configuration as given (what IPAM gets on stdin).
    pub raw: Value,
}

/// vtapd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/vtap/vtap.sock";

/// Keys the runtime or the spec put in a plugin's configuration that this
/// plugin takes but gives no meaning: `type`, `capabilities`, `args`.
const PASSED: &[&str] = &["type", "capabilities", "args"];

fn want_str<'a>(field: &str, v: &'a Value) -> Result<&'a str, CniError> {
    v.as_str()
        .ok_or_else(|| CniError::config(field, "must be a string"))
}

fn want_bool(field: &str, v: &Value) -> Result<bool, CniError> {
    v.as_bool()
        .ok_or_else(|| CniError::config(field, "must be true or false"))
}

/// A whole number in `0..=max` that fits `T`.
fn want_uint<T: TryFrom<u64>>(field: &str, v: &Value, max: u64) -> Result<T, CniError> {
    v.as_u64()
        .filter(|n| *n <= max)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| CniError::config(field, format!("must be an integer in 0..={max}")))
}

/// Checks a network name as libcni does (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`);
/// it also names the plugin's lock file.
fn check_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !first_ok || !rest_ok || name.len() > 128 {
        return Err(CniError::config(
            "name",
            "must be 1..=128 of [a-zA-Z0-9_.-], starting with a letter or digit",
        ));
    }
    Ok(())
}

fn bandwidth(v: &Value) -> Result<Bandwidth, CniError> {
    let obj = v
        .as_object()
        .ok_or_else(|| CniError::config("runtimeConfig.bandwidth", "must be an object"))?;
    let mut b = Bandwidth::default();
    for (k, v) in obj {
        let field = format!("runtimeConfig.bandwidth.{k}");
        let n: u64 = want_uint(&field, v, u64::MAX)?;
        let n = (n > 0).then_some(n);
        match k.as_str() {
            "ingressRate" => b.ingress_rate = n,
            "ingressBurst" => b.ingress_burst = n,
            "egressRate" => b.egress_rate = n,
            "egressBurst" => b.egress_burst = n,
            _ => return Err(CniError::config(&field, "unknown field")),
        }
    }
    Ok(b)
}

fn runtime_config(v: &Value) -> Result<Option<Bandwidth>, CniError> {
    let obj = v
        .as_object()
        .ok_or_else(|| CniError::config("runtimeConfig", "must be an object"))?;
    let mut out = None;
    for (k, v) in obj {
        // Capabilities of other plugins in the same list are not ours.
        if k == "bandwidth" {
            out = Some(bandwidth(v)?);
        }
    }
    Ok(out)
}

fn attachments(v: &Value) -> Result<Vec<Attachment>, CniError> {
    const F: &str = "cni.dev/valid-attachments";
    let list = v
        .as_array()
        .ok_or_else(|| CniError::config(F, "must be a list"))?;
    list.iter()
        .map(|a| {
            let field = |k: &str| {
                a.get(k)
                    .and_then(Value::as_str)
                    .map(String::from)
                    .ok_or_else(|| CniError::config(F, format!("each entry needs a string {k}")))
            };
            Ok(Attachment {
                container_id: field("containerID")?,
                ifname: field("ifname")?,
            })
        })
        .collect()
}

/// The major.minor.patch of a version string, for ordering.
pub fn version_key(v: &str) -> Option<(u32, u32, u32)> {
    let mut it = v.split('.').map(|p| p.parse::<u32>().ok());
    let key = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(key)
}

impl NetConf {
    /// Parses and checks the configuration on stdin.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::new(code::DECODE, format!("network config is not JSON: {e}")))?;
        let obj: &Map<String, Value> = raw
            .as_object()
            .ok_or_else(|| CniError::config("(config)", "must be a JSON object"))?;
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        let version = want_str("cniVersion", get("cniVersion").unwrap_or(&Value::Null))?;
        if !VERSIONS.contains(&version) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "cniVersion {version}: this plugin speaks {}",
                    VERSIONS.join(", ")
                ),
            ));
        }
        let name = want_str("name", get("name").unwrap_or(&Value::Null))?.to_string();
        check_name(&name)?;
        let bridge = match get("bridge") {
            Some(v) => want_str("bridge", v)?.to_string(),
            None => {
                return Err(CniError::config(
                    "bridge",
                    "missing (the vtap bridge domain)",
                ))
            }
        };
        vtap::forward::check_bridge_name(&bridge).map_err(|e| CniError::config("bridge", e))?;
        let mut conf = NetConf {
            version: version.to_string(),
            name,
            socket: PathBuf::from(DEFAULT_SOCKET),
            bridge,
            mtu: None,
            gso: false,
            gro_coalesce: false,
            queues: None,
            mac_limit: None,
            ipam_type: None,
            dns: None,
            bandwidth: None,
            prev_result: None,
            valid_attachments: None,
            raw: raw.clone(),
        };
        for (k, v) in obj {
            if v.is_null() {
                continue;
            }
            match k.as_str() {
                "cniVersion" | "name" | "bridge" => {}
                "socket" => conf.socket = PathBuf::from(want_str(k, v)?),
                "mtu" => conf.mtu = Some(want_uint(k, v, u64::from(u32::MAX))?),
                "gso" => conf.gso = want_bool(k, v)?,
                "gro_coalesce" => conf.gro_coalesce = want_bool(k, v)?,
                "queues" => conf.queues = Some(want_uint(k, v, u64::from(u16::MAX))?),
                "mac_limit" => conf.mac_limit = Some(want_uint(k, v, u64::from(u32::MAX))?),
                "ipam" => conf.ipam_type = ipam_type(v)?,
                "dns" if v.is_object() => conf.dns = Some(v.clone()),
                "dns" => return Err(CniError::config(k, "must be an object")),
                "runtimeConfig" => conf.bandwidth = runtime_config(v)?,
                "prevResult" if v.is_object() => conf.prev_result = Some(v.clone()),
                "prevResult" => return Err(CniError::config(k, "must be an object")),
                "cni.dev/valid-attachments" => conf.valid_attachments = Some(attachments(v)?),
                k if PASSED.contains(&k) => {}
                _ => return Err(CniError::config(k, "unknown field")),
            }
        }
        if conf.socket.is_relative() {
            return Err(CniError::config("socket", "must be an absolute path"));
        }
        if conf.gro_coalesce && !conf.gso {
            return Err(CniError::config("gro_coalesce", "needs gso"));
        }
        Ok(conf)
    }

    /// Whether the configuration's version is at least `v`.
    pub fn at_least(&self, v: &str) -> bool {
        version_key(&self.version) >= version_key(v)
    }
}

fn ipam_type(v: &Value) -> Result<Option<String>, CniError> {
    if v.as_object().is_some_and(Map::is_empty) {
        return Ok(None);
    }
    let t = v
        .get("type")
        .ok_or_else(|| CniError::config("ipam.type", "missing"))?;
    let t = want_str("ipam.type", t)?;
    // A plugin name, never a path: it is looked up in CNI_PATH only.
    if t.is_empty() || t.contains('/') || t.starts_with('.') {
        return Err(CniError::config(
            "ipam.type",
            "must be a plugin name, not a path",
        ));
    }
    Ok(Some(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(extra: Value) -> Value {
        let mut base =
            json!({"cniVersion": "1.1.0", "name": "vnet", "type": "vtap-cni", "bridge": "bd1"});
        for (k, v) in extra.as_object().expect("object") {
            base[k] = v.clone();
        }
        base
    }

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn accepted() {
        let c = parse(conf(json!({
            "socket": "/tmp/x.sock", "mtu": 1450, "gso": true, "gro_coalesce": true,
            "queues": 2, "mac_limit": 100, "ipam": {"type": "host-local", "subnet": "198.18.0.0/24"},
            "dns": {"nameservers": ["198.18.0.53"]}, "capabilities": {"bandwidth": true},
            "runtimeConfig": {"bandwidth": {"ingressRate": 8000000, "egressBurst": 80000}, "portMappings": []},
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
        })))
        .expect("valid");
        assert_eq!(c.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(
            (c.mtu, c.queues, c.mac_limit),
            (Some(1450), Some(2), Some(100))
        );
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        let b = c.bandwidth.expect("bandwidth");
        assert_eq!(
            (b.ingress_rate, b.egress_burst, b.egress_rate),
            (Some(8_000_000), Some(80_000), None)
        );
        assert_eq!(c.valid_attachments.expect("gc").len(), 1);
        let d = parse(conf(json!({}))).expect("defaults");
        assert_eq!(d.socket, PathBuf::from(DEFAULT_SOCKET));
        assert!(d.ipam_type.is_none() && !d.gso);
    }

    #[test]
    fn refused_naming_the_field() {
        let cases = [
            (json!({"mtu": "1450"}), 7, "mtu: must be an integer"),
            (json!({"gso": 1}), 7, "gso: must be true or false"),
            (
                json!({"queues": 70000}),
                7,
                "queues: must be an integer in 0..=65535",
            ),
            (json!({"colour": "blue"}), 7, "colour: unknown field"),
            (json!({"bridge": "no spaces"}), 7, "bridge:"),
            (json!({"name": "-x"}), 7, "name: must be"),
            (json!({"cniVersion": "0.3.1"}), 1, "cniVersion 0.3.1"),
            (json!({"ipam": {"subnet": "x"}}), 7, "ipam.type: missing"),
            (
                json!({"ipam": {"type": "../../bin/sh"}}),
                7,
                "ipam.type: must be a plugin name",
            ),
            (
                json!({"socket": "rel.sock"}),
                7,
                "socket: must be an absolute path",
            ),
            (json!({"gro_coalesce": true}), 7, "gro_coalesce: needs gso"),
            (
                json!({"runtimeConfig": {"bandwidth": {"ingressRate": -1}}}),
                7,
                "runtimeConfig.bandwidth.ingressRate",
            ),
            (
                json!({"runtimeConfig": {"bandwidth": {"rate": 1}}}),
                7,
                "runtimeConfig.bandwidth.rate: unknown field",
            ),
            (
                json!({"cni.dev/valid-attachments": [{"ifname": "eth0"}]}),
                7,
                "needs a string containerID",
            ),
        ];
        for (extra, code, msg) in cases {
            let e = parse(conf(extra.clone())).expect_err(&extra.to_string());
            assert_eq!(e.code, code, "{extra}: {e:?}");
            assert!(
                e.msg.starts_with(msg) || e.msg.contains(msg),
                "{extra}: {}",
                e.msg
            );
        }
        let mut no_bridge = conf(json!({}));
        no_bridge.as_object_mut().expect("object").remove("bridge");
        assert!(parse(no_bridge)
            .expect_err("bridge")
            .msg
            .starts_with("bridge: missing"));
        assert_eq!(NetConf::parse(b"{").expect_err("json").code, code::DECODE);
    }

    #[test]
    fn versions_order() {
        assert!(version_key("1.1.0") > version_key("1.0.0"));
        assert!(version_key("0.4.0") < version_key("1.0.0"));
        assert_eq!(version_key("1.0"), None);
    }
}
