//! The daemon's startup configuration (TOML).
//!
//! Unknown keys are errors, and so are out-of-range values: a typo in a
//! config file must stop the daemon with the line named, not be ignored.
//! Without `--config` the embedded defaults apply.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/vtap/vtap.sock";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, unknown key, or wrong type (the message names the line).
    #[error("config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A declared interface, cross-connect or bridge is refused.
    #[error("config {} line {line}: [[{what}]]: {message}", path.display())]
    Declared {
        /// The file.
        path: PathBuf,
        /// Line of the declaration.
        line: usize,
        /// `interface`, `xconnect` or `bridge`.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A value out of range.
    #[error("config {}: {key} = {value}: {reason}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// The key, dotted.
        key: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// `[tap]`: defaults for every interface (the seed's `tap { ... }` stanza).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TapSection {
    /// Host MTU for interfaces created without `host-mtu-size`.
    pub host_mtu: Option<u32>,
    /// Allow UDP segmentation offload (the per-daemon kill switch).
    pub uso: bool,
    /// Allow offloads at all (gso, csum-offload, gro-coalesce): the
    /// per-daemon kill switch. When false, asking for one is refused.
    pub offload: bool,
}

impl Default for TapSection {
    fn default() -> Self {
        Self {
            host_mtu: None,
            uso: true,
            offload: true,
        }
    }
}

/// `[forwarding]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardingSection {
    /// Worker threads; one per CPU beyond the first if absent.
    pub workers: Option<usize>,
    /// Give each direction of a cross-connect its own worker when there are
    /// two or more (default false: on 2 vCPUs it measured slower).
    pub split_directions: bool,
    /// Pin worker `i` to CPU `cpus[i]` (VPP's `corelist-workers`); the
    /// worker count is then the list's length. Unpinned if absent.
    pub cpus: Option<Vec<usize>>,
    /// Microseconds a worker keeps polling after it last moved a frame
    /// before it sleeps (default 50; 0: sleep at once; at most 10000).
    pub poll_window_us: Option<u64>,
    /// Most MAC addresses a bridge domain learns unless it says otherwise
    /// (default 16384). It lives here because `bridge` is the key of the
    /// `[[bridge]]` declarations.
    pub mac_limit: Option<usize>,
}

/// `[log]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `vtap=debug`, ...); `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// `[debug]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct DebugSection {
    /// Expose `PUT /v1/debug/fault` (fails a chosen create/delete step once).
    pub fault_injection: bool,
    /// With `fault_injection`: a fault armed before the state is restored
    /// (`{ step = "open-queues", errno = 5 }`), to test re-attach failures.
    pub start_fault: Option<vtap::fault::Fault>,
}

/// Seconds between re-attach attempts, unless configured.
pub const DEFAULT_REATTACH_SECS: u64 = 30;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Socket path (the `--socket` flag and `VTAP_SOCKET` override it).
    pub socket: Option<PathBuf>,
    /// Where the state is saved for restarts (default: beside the socket,
    /// named after it: `vtap.sock` → `vtap.state.json`).
    pub state_file: Option<PathBuf>,
    /// Seconds between re-attach attempts of detached interfaces
    /// (default [`DEFAULT_REATTACH_SECS`]).
    pub reattach_interval_secs: Option<u64>,
    /// Interface defaults.
    pub tap: TapSection,
    /// The forwarding plane.
    pub forwarding: ForwardingSection,
    /// Logging.
    pub log: LogSection,
    /// Debugging aids.
    pub debug: DebugSection,
    /// `[[interface]]`: interfaces the daemon brings up at start (create
    /// options, with the same keys as the API's body; `id` required).
    pub interface: Vec<toml::Spanned<vtap::CreateOptions>>,
    /// `[[host_interface]]`: host uplinks opened at start (the keys of
    /// `POST /v1/host-interfaces`: `host_if_name`, `host_ns`, `num_queues`,
    /// `rx_mode`...).
    pub host_interface: Vec<toml::Spanned<vtap::uplink::HostInterfaceOptions>>,
    /// `[[vxlan]]`: VXLAN tunnels made at start (the keys of `POST
    /// /v1/vxlan-tunnels`: `src`, `dst`, `vni`, `port`, `underlay_ns`,
    /// `instance`).
    pub vxlan: Vec<toml::Spanned<vtap::tunnel::VxlanOptions>>,
    /// `[[xconnect]]`: cross-connects made at start.
    pub xconnect: Vec<toml::Spanned<XconnectDecl>>,
    /// `[[bridge]]`: bridge domains made at start, with their interfaces.
    pub bridge: Vec<toml::Spanned<BridgeDecl>>,
    /// The text, for line numbers in messages about declarations.
    #[serde(skip)]
    pub text: String,
}

/// `[[xconnect]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct XconnectDecl {
    /// One end (`tap0`, `tun1` or an id).
    pub a: String,
    /// The other end.
    pub b: String,
}

/// `[[bridge]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BridgeDecl {
    /// The bridge domain's name.
    pub name: String,
    /// Its interfaces.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// Most MAC addresses it learns (default: `[forwarding] mac_limit`).
    #[serde(default)]
    pub mac_limit: Option<usize>,
}

impl Config {
    /// Parses and checks a config text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        cfg.text = text.to_string();
        for d in &cfg.interface {
            let refuse = |message: String| Error::Declared {
                path: path.to_path_buf(),
                line: cfg.line(d.span().start),
                what: "interface",
                message,
            };
            if d.get_ref().id.is_none() {
                return Err(refuse(
                    "needs an id, so that a restarted daemon finds it again".into(),
                ));
            }
            d.get_ref().validate().map_err(|e| refuse(e.to_string()))?;
        }
        if let Some(mtu) = cfg.tap.host_mtu {
            if !vtap::options::MTU_RANGE.contains(&mtu) {
                return Err(Error::Value {
                    path: path.to_path_buf(),
                    key: "tap.host_mtu",
                    value: mtu.to_string(),
                    reason: "must be in 68..=65521 (the kernel's range for a tap)".into(),
                });
            }
        }
        if let Some(w) = cfg.forwarding.workers {
            if !(1..=256).contains(&w) {
                return Err(Error::Value {
                    path: path.to_path_buf(),
                    key: "forwarding.workers",
                    value: w.to_string(),
                    reason: "must be in 1..=256".into(),
                });
            }
        }
        if let Some(cpus) = &cfg.forwarding.cpus {
            let refuse = |reason: String| Error::Value {
                path: path.to_path_buf(),
                key: "forwarding.cpus",
                value: format!("{cpus:?}"),
                reason,
            };
            if cpus.is_empty() || cpus.len() > 256 {
                return Err(refuse("give 1..=256 CPUs, one per worker".into()));
            }
            let mut seen = std::collections::BTreeSet::new();
            if let Some(dup) = cpus.iter().find(|c| !seen.insert(**c)) {
                return Err(refuse(format!(
                    "CPU {dup} is given twice (one worker per CPU)"
                )));
            }
            if let Some(w) = cfg.forwarding.workers.filter(|w| *w != cpus.len()) {
                return Err(refuse(format!(
                    "{} CPUs for forwarding.workers = {w}: give one CPU per worker, or leave workers out",
                    cpus.len()
                )));
            }
        }
        if let Some(us) = cfg.forwarding.poll_window_us {
            let max = vtap::forward::MAX_POLL_WINDOW.as_micros();
            if u128::from(us) > max {
                return Err(Error::Value {
                    path: path.to_path_buf(),
                    key: "forwarding.poll_window_us",
                    value: us.to_string(),
                    reason: format!("must be in 0..={max}"),
                });
            }
        }
        if let Some(n) = cfg.reattach_interval_secs {
            if !(1..=86_400).contains(&n) {
                return Err(Error::Value {
                    path: path.to_path_buf(),
                    key: "reattach_interval_secs",
                    value: n.to_string(),
                    reason: "must be in 1..=86400".into(),
                });
            }
        }
        if let Some(n) = cfg.forwarding.mac_limit {
            if !(1..=vtap::forward::MAX_MAC_LIMIT).contains(&n) {
                return Err(Error::Value {
                    path: path.to_path_buf(),
                    key: "forwarding.mac_limit",
                    value: n.to_string(),
                    reason: format!("must be in 1..={}", vtap::forward::MAX_MAC_LIMIT),
                });
            }
        }
        Ok(cfg)
    }

    /// The 1-based line of byte offset `at` in the text.
    pub fn line(&self, at: usize) -> usize {
        self.text
            .get(..at)
            .map_or(0, |t| t.bytes().filter(|&b| b == b'\n').count())
            + 1
    }

    /// Reads `path`, or returns the defaults for `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        match path {
            None => Ok(Self::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| Error::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::parse(&text, p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, Error> {
        Config::parse(s, Path::new("t.toml"))
    }

    #[test]
    fn accepted_table() {
        let cases: &[(&str, Option<u32>, bool, LogFormat)] = &[
            ("", None, true, LogFormat::Human),
            (
                "[tap]\nhost_mtu = 9000\n",
                Some(9000),
                true,
                LogFormat::Human,
            ),
            (
                "[tap]\nuso = false\n[log]\nformat = \"json\"\n",
                None,
                false,
                LogFormat::Json,
            ),
        ];
        for (text, mtu, uso, fmt) in cases {
            let c = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                (c.tap.host_mtu, c.tap.uso, c.log.format),
                (*mtu, *uso, *fmt)
            );
            assert!(c.tap.offload, "offloads allowed by default");
        }
        assert!(
            !parse("[tap]\noffload = false\n")
                .expect("kill switch")
                .tap
                .offload
        );
    }

    #[test]
    fn the_shipped_config_parses() {
        let c = parse(include_str!("../../../dist/vtap.toml")).expect("dist/vtap.toml");
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.tap.offload && c.tap.uso);
    }

    #[test]
    fn refused_table() {
        let cases: &[(&str, &str)] = &[
            ("[tap]\nhost_mtu = 9000\nhost_mtuu = 1\n", "host_mtuu"),
            ("[tapp]\n", "tapp"),
            ("[tap]\nhost_mtu = \"big\"\n", "line 2"),
            ("[tap]\nhost_mtu = 67\n", "tap.host_mtu = 67"),
            ("[log]\nformat = \"xml\"\n", "xml"),
            ("socket = ", "line 1"),
            ("[forwarding]\ncpus = []\n", "forwarding.cpus"),
            ("[forwarding]\ncpus = [1, 1]\n", "CPU 1 is given twice"),
            (
                "[forwarding]\ncpus = [0, 1]\nworkers = 3\n",
                "2 CPUs for forwarding.workers = 3",
            ),
            (
                "[forwarding]\npoll_window_us = 10001\n",
                "forwarding.poll_window_us = 10001",
            ),
            (
                "[[host_interface]]\nhost_if_name = \"eth0\"\nmtu = 9000\n",
                "mtu",
            ),
        ];
        for (text, frag) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.starts_with("config t.toml: "), "{e}");
            assert!(e.contains(frag), "{text:?}: {e}");
        }
    }
}
