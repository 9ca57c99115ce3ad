//! Declared interfaces, uplinks, tunnels, cross-connects and bridge domains
//! (`[[interface]]`, `[[host_interface]]`, `[[vxlan]]`, `[[xconnect]]`,
//! `[[bridge]]` in the config): at start the daemon brings
//! itself to what the config declares.
//!
//! Declarations are idempotent across restarts: an interface is found again
//! by its `id` (required for that reason), and one that is already there —
//! restored from the state file — is left alone; so are cross-connects and
//! bridge ports that already exist. Anything the kernel refuses stops the
//! start with the config line named, and what this start created from the
//! config is removed again (the daemon does not run half-configured).

use std::path::Path;

use vtap::registry::error_chain;

use crate::app::AppState;
use crate::config::{self, Config};

fn refused(path: &Path, cfg: &Config, at: usize, what: &'static str, m: String) -> config::Error {
    config::Error::Declared {
        path: path.to_path_buf(),
        line: cfg.line(at),
        what,
        message: m,
    }
}

/// Applies the declarations of `cfg` (read from `path`).
pub async fn apply(s: &AppState, cfg: &Config, path: &Path) -> Result<(), config::Error> {
    let mut created: Vec<String> = Vec::new();
    let result = apply_inner(s, cfg, path, &mut created).await;
    if result.is_err() {
        let mut node = s.node.lock().await;
        let node = &mut *node;
        for name in created.iter().rev() {
            if let Ok(id) = node.resolve(name) {
                let _ = node.forwarder.remove(id, name);
                if let Some(bd) = node.forwarder.bridge_of(id) {
                    let _ = node.forwarder.bridge_remove(&bd, id, name);
                }
            }
            if node.uplinks.find(name).is_some() {
                let _ = node.uplinks.delete(name);
            } else if node.tunnels.find(name).is_some() {
                let _ = node.tunnels.delete(name);
            } else {
                let _ = node.registry.delete(name).await;
            }
        }
    }
    result
}

async fn apply_inner(
    s: &AppState,
    cfg: &Config,
    path: &Path,
    created: &mut Vec<String>,
) -> Result<(), config::Error> {
    let mut node = s.node.lock().await;
    let node = &mut *node;
    for d in &cfg.interface {
        let opts = d.get_ref();
        let key = opts.id.map(|i| i.to_string()).unwrap_or_default();
        if node.registry.get(&key).is_ok() {
            continue;
        }
        let info = node
            .registry
            .create(opts)
            .await
            .map_err(|e| refused(path, cfg, d.span().start, "interface", error_chain(&e)))?;
        tracing::info!(iface = %info.name, "declared interface created");
        created.push(info.name);
    }
    for d in &cfg.host_interface {
        let opts = d.get_ref();
        if node.uplinks.find(&opts.name()).is_some() {
            continue;
        }
        let info = node
            .host_interface_create(opts)
            .map_err(|e| refused(path, cfg, d.span().start, "host_interface", error_chain(&e)))?;
        tracing::info!(iface = %info.name, "declared host interface opened");
        created.push(info.name);
    }
    for d in &cfg.vxlan {
        let opts = d.get_ref();
        // Found again by its instance, or by what it is (a restored one).
        let present = node.tunnels.list().iter().any(|t| match opts.instance {
            Some(i) => t.id == vtap::tunnel::ID_BASE + i,
            None => {
                let o = t.options();
                (&o.src, &o.dst, o.vni, o.port, &o.underlay_ns)
                    == (
                        &opts.src,
                        &opts.dst,
                        opts.vni,
                        Some(opts.port.unwrap_or(vtap::wire::vxlan::PORT)),
                        &opts.underlay_ns,
                    )
            }
        });
        if present {
            continue;
        }
        let info = node
            .vxlan_create(opts)
            .map_err(|e| refused(path, cfg, d.span().start, "vxlan", error_chain(&e)))?;
        tracing::info!(iface = %info.name, "declared vxlan tunnel made");
        created.push(info.name);
    }
    let fwd_end = |node: &vtap::node::Node, key: &str| node.end(key);
    for d in &cfg.xconnect {
        let x = d.get_ref();
        let at = d.span().start;
        let err = |m: String| refused(path, cfg, at, "xconnect", m);
        let a = fwd_end(node, &x.a).map_err(|e| err(error_chain(&e)))?;
        let b = fwd_end(node, &x.b).map_err(|e| err(error_chain(&e)))?;
        let fwd = &mut node.forwarder;
        let present = fwd
            .involving(a.id)
            .is_some_and(|c| [&c.a, &c.b].contains(&&b.name));
        if !present {
            fwd.xconnect(a, b).map_err(|e| err(error_chain(&e)))?;
        }
    }
    for d in &cfg.bridge {
        let bd = d.get_ref();
        let err = |m: String| refused(path, cfg, d.span().start, "bridge", m);
        if node.forwarder.bridge(&bd.name).is_err() {
            node.forwarder
                .bridge_create_with(&bd.name, bd.mac_limit)
                .map_err(|e| err(error_chain(&e)))?;
        }
        for iface in &bd.interfaces {
            let end = fwd_end(node, iface).map_err(|e| err(error_chain(&e)))?;
            if node.forwarder.bridge_of(end.id).as_deref() != Some(bd.name.as_str()) {
                // Through the node: its rules (a tap's MTU must fit the
                // bridge's tunnels) hold for declarations too.
                node.bridge_add(&bd.name, iface)
                    .map_err(|e| err(error_chain(&e)))?;
            }
        }
    }
    Ok(())
}
