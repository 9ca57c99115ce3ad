//! Declared interfaces, cross-connects and bridge domains (`[[interface]]`,
//! `[[xconnect]]`, `[[bridge]]` in the config): at start the daemon brings
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
        let (reg, fwd) = (&mut node.registry, &mut node.forwarder);
        for name in created.iter().rev() {
            if let Ok(id) = reg.resolve(name) {
                let _ = fwd.remove(id, name);
                if let Some(bd) = fwd.bridge_of(id) {
                    let _ = fwd.bridge_remove(&bd, id, name);
                }
            }
            let _ = reg.delete(name).await;
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
    let (reg, fwd) = (&mut node.registry, &mut node.forwarder);
    for d in &cfg.interface {
        let opts = d.get_ref();
        let key = opts.id.map(|i| i.to_string()).unwrap_or_default();
        if reg.get(&key).is_ok() {
            continue;
        }
        let info = reg
            .create(opts)
            .await
            .map_err(|e| refused(path, cfg, d.span().start, "interface", error_chain(&e)))?;
        tracing::info!(iface = %info.name, "declared interface created");
        created.push(info.name);
    }
    for d in &cfg.xconnect {
        let x = d.get_ref();
        let at = d.span().start;
        let err = |m: String| refused(path, cfg, at, "xconnect", m);
        let a = reg.end(&x.a).map_err(|e| err(error_chain(&e)))?;
        let b = reg.end(&x.b).map_err(|e| err(error_chain(&e)))?;
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
        if fwd.bridge(&bd.name).is_err() {
            fwd.bridge_create_with(&bd.name, bd.mac_limit)
                .map_err(|e| err(error_chain(&e)))?;
        }
        for iface in &bd.interfaces {
            let end = reg.end(iface).map_err(|e| err(error_chain(&e)))?;
            if fwd.bridge_of(end.id).as_deref() != Some(bd.name.as_str()) {
                fwd.bridge_add(&bd.name, end)
                    .map_err(|e| err(error_chain(&e)))?;
            }
        }
    }
    Ok(())
}
