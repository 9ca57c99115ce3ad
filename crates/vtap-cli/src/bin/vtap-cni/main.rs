//! `vtap-cni`: a CNI plugin that plugs pods into vtap, driven exactly as
//! container runtimes drive plugins (CNI 0.4.0, 1.0.0, 1.1.0): the command
//! and the container in the environment, the network configuration on
//! stdin, the result (or the spec's error object) on stdout.
//!
//! As Calico/VPP does for VPP, the plugin is thin: it asks the IPAM plugin
//! for addresses, then vtapd (over its socket) for a tap in the pod's
//! namespace, addressed, routed and made a port of the network's bridge
//! domain in one create that vtapd rolls back whole if a step fails. Calls
//! on one network are serialised by a lock file beside vtapd's socket, so
//! that an ADD and a DEL of one container never interleave (IPAM and vtapd
//! each stay consistent by themselves; the lock keeps them consistent with
//! each other).

mod bandwidth;
mod daemon;
mod ipam;
mod plugin;
mod spec;

use std::io::Read;
use std::process::ExitCode;

use serde_json::json;

use crate::daemon::{Kernel, Vtapd};
use crate::plugin::{Ctx, Env};
use crate::spec::{code, CniError, NetConf, VERSIONS};

/// The version to answer in: the configuration's if it says one we speak.
fn answer_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(String::from))
        .filter(|v| VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| VERSIONS[VERSIONS.len() - 1].to_string())
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Holds the network's lock file (`cni-<network>.lock` beside the socket)
/// until dropped. No directory (no vtapd): no lock, and the call fails on
/// the socket anyway.
fn lock(conf: &NetConf) -> Result<Option<std::fs::File>, CniError> {
    let Some(dir) = conf.socket.parent().filter(|d| d.is_dir()) else {
        return Ok(None);
    };
    let path = dir.join(format!("cni-{}.lock", conf.name));
    let io = |e: std::io::Error| CniError::new(code::IO, format!("lock {}: {e}", path.display()));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    f.lock().map_err(io)?;
    Ok(Some(f))
}

fn run(command: &str, stdin: &[u8]) -> Result<Option<serde_json::Value>, CniError> {
    let conf = NetConf::parse(stdin)?;
    let env = Env {
        container_id: var("CNI_CONTAINERID"),
        netns: var("CNI_NETNS"),
        ifname: var("CNI_IFNAME"),
    };
    let ipam = conf.ipam_type.as_ref().map(|name| ipam::Exec {
        name: name.clone(),
        path: ipam::split_path(&std::env::var("CNI_PATH").unwrap_or_default()),
    });
    let daemon = Vtapd::new(&conf.socket)?;
    let ctx = Ctx {
        conf: &conf,
        env: &env,
        daemon: &daemon,
        ipam: ipam.as_ref(),
        live: &Kernel,
    };
    if matches!(command, "GC" | "STATUS") && !conf.at_least("1.1.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "{command} needs cniVersion 1.1.0 (the config says {})",
                conf.version
            ),
        ));
    }
    if command == "STATUS" {
        return ctx.status().map(|()| None);
    }
    let _lock = lock(&conf)?;
    match command {
        "ADD" => ctx.add().map(Some),
        "DEL" => ctx.del().map(|()| None),
        "CHECK" => ctx.check().map(|()| None),
        "GC" => ctx.gc().map(|()| None),
        other => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_COMMAND: unknown command '{other}'"),
        )),
    }
}

fn main() -> ExitCode {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let version = answer_version(&stdin);
    let outcome = match (var("CNI_COMMAND").as_deref(), read) {
        (_, Err(e)) => Err(CniError::new(code::IO, format!("reading stdin: {e}"))),
        (None, _) => Err(CniError::new(code::INVALID_ENV, "CNI_COMMAND: missing")),
        (Some("VERSION"), _) => Ok(Some(
            json!({"cniVersion": version, "supportedVersions": VERSIONS}),
        )),
        (Some(command), _) => run(command, &stdin),
    };
    match outcome {
        Ok(Some(v)) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version));
            ExitCode::FAILURE
        }
    }
}
