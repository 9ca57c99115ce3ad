//! What the plugin asks of vtapd (over its REST socket) and of the pod's
//! namespace (over netlink, for CHECK), behind two small traits so that the
//! plugin's logic is tested without root ([`crate::plugin`]'s tests).

use std::path::{Path, PathBuf};

use hyper::Method;
use serde_json::{json, Value};
use vtap::{CreateOptions, TapInfo};
use vtapd::client;

use crate::spec::{code, CniError};

/// vtapd, as the plugin uses it.
pub trait Daemon {
    /// Every interface.
    fn taps(&self) -> Result<Vec<TapInfo>, CniError>;
    /// Makes bridge domain `bd` if it is not there.
    fn ensure_bridge(&self, bd: &str, mac_limit: Option<usize>) -> Result<(), CniError>;
    /// Creates a tap.
    fn create(&self, opts: &CreateOptions) -> Result<TapInfo, CniError>;
    /// Takes a tap out of bridge domain `bd` (vtapd deletes no bridge
    /// port), then deletes it; one that is gone already is no error.
    fn delete(&self, bd: &str, name: &str) -> Result<(), CniError>;
    /// The interfaces of bridge domain `bd`.
    fn bridge_members(&self, bd: &str) -> Result<Vec<String>, CniError>;
    /// Whether vtapd answers (STATUS).
    fn ping(&self) -> Result<(), CniError>;
}

/// An interface as the kernel has it in the pod's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveIf {
    /// MAC, `aa:bb:...`.
    pub mac: String,
    /// Global addresses `A/L`.
    pub addrs: Vec<String>,
    /// Routes out of it as `DST/LEN` or `DST/LEN via GW`.
    pub routes: Vec<String>,
}

/// Reads an interface of a namespace (CHECK).
pub trait Live {
    /// The interface `ifname` in namespace `netns` (a path), if there.
    fn read(&self, netns: &str, ifname: &str) -> Result<Option<LiveIf>, CniError>;
}

/// vtapd on its Unix socket.
#[derive(Debug)]
pub struct Vtapd {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl Vtapd {
    /// A client of the daemon at `socket`.
    pub fn new(socket: &Path) -> Result<Self, CniError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CniError::new(code::IO, format!("runtime: {e}")))?;
        Ok(Self {
            socket: socket.to_path_buf(),
            rt,
        })
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, client::Error> {
        self.rt
            .block_on(client::request(&self.socket, method, path, body))
            .map(|a| a.body)
    }

    fn error(&self, e: client::Error) -> CniError {
        match e {
            client::Error::Connect { .. } => CniError::new(
                code::TRY_AGAIN,
                format!(
                    "vtapd at {} is unreachable (is it running?)",
                    self.socket.display()
                ),
            ),
            client::Error::Api { message, .. } => CniError::new(code::VTAPD_REFUSED, message),
            other => CniError::new(
                code::IO,
                format!("vtapd: {}", vtap::registry::error_chain(&other)),
            ),
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CniError> {
        serde_json::from_value(v)
            .map_err(|e| CniError::new(code::DECODE, format!("vtapd's answer: {e}")))
    }
}

fn is_status(e: &client::Error, status: u16) -> bool {
    matches!(e, client::Error::Api { status: s, .. } if s.as_u16() == status)
}

impl Daemon for Vtapd {
    fn taps(&self) -> Result<Vec<TapInfo>, CniError> {
        let v = self
            .call(Method::GET, "/v1/taps", None)
            .map_err(|e| self.error(e))?;
        Self::decode(v)
    }

    fn ensure_bridge(&self, bd: &str, mac_limit: Option<usize>) -> Result<(), CniError> {
        let body = json!({"name": bd, "mac_limit": mac_limit});
        match self.call(Method::POST, "/v1/bridges", Some(body)) {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn create(&self, opts: &CreateOptions) -> Result<TapInfo, CniError> {
        let body =
            serde_json::to_value(opts).map_err(|e| CniError::new(code::IO, e.to_string()))?;
        let v = self
            .call(Method::POST, "/v1/taps", Some(body))
            .map_err(|e| self.error(e))?;
        Self::decode(v)
    }

    fn delete(&self, bd: &str, name: &str) -> Result<(), CniError> {
        let port = format!("/v1/bridges/{bd}/interfaces/{name}");
        match self.call(Method::DELETE, &port, None) {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(self.error(e)),
        }
        match self.call(Method::DELETE, &format!("/v1/taps/{name}"), None) {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn bridge_members(&self, bd: &str) -> Result<Vec<String>, CniError> {
        match self.call(Method::GET, &format!("/v1/bridges/{bd}"), None) {
            Ok(v) => Ok(v["interfaces"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()),
            Err(e) if is_status(&e, 404) => Ok(Vec::new()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn ping(&self) -> Result<(), CniError> {
        self.call(Method::GET, "/v1/info", None)
            .map(drop)
            .map_err(|e| {
                let why = vtap::registry::error_chain(&e);
                CniError::new(
                    code::NOT_AVAILABLE,
                    format!("vtapd at {} does not answer: {why}", self.socket.display()),
                )
            })
    }
}

/// The kernel, through vtap's netlink layer.
#[derive(Debug)]
pub struct Kernel;

impl Live for Kernel {
    fn read(&self, netns: &str, ifname: &str) -> Result<Option<LiveIf>, CniError> {
        let io = |e: &dyn std::error::Error| CniError::new(code::IO, format!("{netns}: {e}"));
        let spec: vtap::netns::NetnsSpec = netns.parse().map_err(|e| io(&e))?;
        let ns = vtap::netns::Netns::open(&spec).map_err(|e| io(&e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| io(&e))?;
        rt.block_on(async {
            let host = vtap::host::Host::open(&ns).map_err(|e| io(&e))?;
            let Some(link) = host.link_by_name(ifname).await.map_err(|e| io(&e))? else {
                return Ok(None);
            };
            let mac = link
                .mac
                .as_deref()
                .map(|m| {
                    m.iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<Vec<_>>()
                        .join(":")
                })
                .unwrap_or_default();
            let addrs = host.addresses(link.index).await.map_err(|e| io(&e))?;
            let routes = host.routes(link.index).await.map_err(|e| io(&e))?;
            Ok(Some(LiveIf {
                mac,
                addrs: addrs.iter().map(|(a, l)| format!("{a}/{l}")).collect(),
                routes: routes
                    .iter()
                    .map(|(d, l, g)| match g {
                        Some(g) => format!("{d}/{l} via {g}"),
                        None => format!("{d}/{l}"),
                    })
                    .collect(),
            }))
        })
    }
}
