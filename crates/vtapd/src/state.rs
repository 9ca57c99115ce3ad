//! Restart without losing interfaces.
//!
//! After every change made through the API the daemon writes what it serves
//! — interfaces, cross-connects, bridge domains — to a state file, atomically
//! (a temporary file in the same directory, fsync, rename, fsync of the
//! directory), so a crash at any moment leaves either the old or the new
//! state, never half of one. The file lives beside the socket by default
//! (`/run/vtap/vtapd.state.json`: like persistent taps, it does not outlive
//! a reboot) or where `state_file` in the config says.
//!
//! At start the daemon brings itself back to that state: every interface
//! created with `persist` still exists in the kernel (its link, MAC,
//! addresses and routes untouched: the host side never sees it go away), so
//! it is re-attached under the same id, with the same data-plane MAC,
//! queues, rings, offloads and rx mode; then cross-connects and bridge
//! domains are rebuilt. Interfaces created without `persist` died with the
//! old daemon's fds; they are reported and dropped from the state.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vtap::datapath::RxMode;
use vtap::forward::Xconnect;
use vtap::{CreateOptions, TapInfo};

use crate::api::AppState;

/// The state file's format version.
const VERSION: u32 = 1;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file.
    #[error("state file {}: cannot {what}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file.
    #[error("state file {}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One interface as saved: what `show` says, and its rx mode.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedTap {
    /// The interface (data-path state left out).
    pub info: TapInfo,
    /// Rx mode of its queues.
    pub rx_mode: Option<RxMode>,
}

/// A bridge domain as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedBridge {
    /// Its name.
    pub name: String,
    /// Its interfaces.
    pub interfaces: Vec<String>,
    /// Its learn limit.
    #[serde(default)]
    pub mac_limit: Option<usize>,
}

/// Everything the daemon serves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Format version.
    pub version: u32,
    /// Interfaces.
    pub taps: Vec<SavedTap>,
    /// Cross-connects.
    pub xconnects: Vec<Xconnect>,
    /// Bridge domains.
    pub bridges: Vec<SavedBridge>,
}

/// The state file for a daemon serving `socket`, unless the config names one.
pub fn default_path(socket: &Path) -> PathBuf {
    socket
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("vtapd.state.json")
}

/// Reads the state file; `None` when there is none.
pub fn load(path: &Path) -> Result<Option<Saved>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                what: "read it",
                source,
            })
        }
    };
    let saved: Saved = serde_json::from_slice(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if saved.version != VERSION {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!("version {} (this vtapd reads {VERSION})", saved.version),
        });
    }
    Ok(Some(saved))
}

/// Writes `saved` atomically: temporary file, fsync, rename, fsync the
/// directory. Mode 0600.
pub fn store(path: &Path, saved: &Saved) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let body = serde_json::to_vec_pretty(saved).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("create its temporary file"))?;
    f.write_all(&body).map_err(io("write it"))?;
    f.sync_all().map_err(io("sync it"))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io("rename it into place"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync its directory"))?;
    Ok(())
}

/// What the daemon serves now.
pub async fn snapshot(s: &AppState) -> Saved {
    let taps = s.registry.lock().await.list();
    let fwd = crate::api::forwarder(s);
    Saved {
        version: VERSION,
        taps: taps
            .into_iter()
            .map(|mut info| {
                let rx_mode = info
                    .datapath
                    .take()
                    .and_then(|d| d.rx.first().and_then(|q| q.mode));
                SavedTap { info, rx_mode }
            })
            .collect(),
        xconnects: fwd.list(),
        bridges: fwd
            .bridges()
            .into_iter()
            .map(|b| SavedBridge {
                name: b.name,
                interfaces: b.interfaces,
                mac_limit: Some(b.mac_limit),
            })
            .collect(),
    }
}

/// Saves what the daemon serves, if it has a state file. Saves are
/// serialised, and each takes its snapshot under that lock, so the last
/// write always holds every change completed before it.
pub async fn save(s: &AppState) {
    let Some(path) = &s.state_file else {
        return;
    };
    let _one_at_a_time = s.save_lock.lock().await;
    let saved = snapshot(s).await;
    if let Err(e) = store(path, &saved) {
        tracing::error!(error = %vtap::registry::error_chain(&e), "cannot save state");
    }
}

/// The options that re-attach a saved interface exactly as it was.
pub fn reattach_options(t: &TapInfo) -> CreateOptions {
    CreateOptions {
        id: Some(t.id),
        host_if_name: Some(t.host_if_name.clone()),
        host_ns: t.host_ns.clone(),
        hw_addr: t.hw_addr.map(|m| m.to_string()),
        rx_ring_size: Some(t.rx_ring_size),
        tx_ring_size: Some(t.tx_ring_size),
        num_rx_queues: Some(t.num_rx_queues),
        num_tx_queues: Some(t.num_tx_queues),
        gso: t.gso,
        csum_offload: t.csum_offload,
        gro_coalesce: t.gro_coalesce,
        tun: t.tun,
        persist: true,
        attach: true,
        backend: Some(t.backend.to_string()),
        ..CreateOptions::default()
    }
}

/// Brings the daemon back to `saved`. Each failure is logged and skipped
/// (one vanished interface must not keep the others down); returns how many
/// interfaces came back.
pub async fn restore(s: &AppState, saved: Saved) -> usize {
    let mut back = 0;
    {
        let mut reg = s.registry.lock().await;
        for t in &saved.taps {
            let name = &t.info.name;
            if !t.info.persist {
                tracing::warn!(
                    iface = %name,
                    "not restored: created without persist, it ended with the previous daemon"
                );
                continue;
            }
            match reg.create(&reattach_options(&t.info)).await {
                Ok(info) => {
                    back += 1;
                    tracing::info!(iface = %info.name, host_if_name = %info.host_if_name, "restored");
                    if let Some(mode) = t.rx_mode.filter(|m| *m != RxMode::default()) {
                        if let Err(e) = reg.set_rx_mode(name, mode) {
                            tracing::warn!(iface = %name, error = %vtap::registry::error_chain(&e), "rx mode not restored");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(iface = %name, error = %vtap::registry::error_chain(&e), "not restored");
                }
            }
        }
    }
    let reg = s.registry.lock().await;
    let mut fwd = crate::api::forwarder(s);
    for x in &saved.xconnects {
        let ends = reg.end(&x.a).and_then(|a| Ok((a, reg.end(&x.b)?)));
        let done = match ends {
            Ok((a, b)) => fwd.xconnect(a, b).map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(vtap::registry::error_chain(&e)),
        };
        if let Err(e) = done {
            tracing::error!(a = %x.a, b = %x.b, error = %e, "xconnect not restored");
        }
    }
    for b in &saved.bridges {
        if let Err(e) = fwd.bridge_create_with(&b.name, b.mac_limit) {
            tracing::error!(bridge = %b.name, error = %e, "bridge not restored");
            continue;
        }
        for iface in &b.interfaces {
            let added = reg
                .end(iface)
                .map_err(|e| vtap::registry::error_chain(&e))
                .and_then(|end| fwd.bridge_add(&b.name, end).map_err(|e| e.to_string()));
            if let Err(e) = added {
                tracing::error!(bridge = %b.name, iface = %iface, error = %e, "bridge port not restored");
            }
        }
    }
    back
}
