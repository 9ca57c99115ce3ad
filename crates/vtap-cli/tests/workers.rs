//! The forwarding workers as configured: `[forwarding] cpus` pins worker
//! `i` to CPU `cpus[i]` (read back from the kernel: the thread's
//! `Cpus_allowed_list`), `/v1/info` says so, and a CPU the daemon may not
//! use stops the start with the key named.

mod common;

use std::process::Command;

use common::{Daemon, VTAP};

/// `Cpus_allowed_list` of each thread of `pid` named `vtap-fwd*`.
fn worker_cpus(pid: u32) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let comm = comm.trim().to_string();
            if !comm.starts_with("vtap-fwd") {
                return None;
            }
            let st = std::fs::read_to_string(t.path().join("status")).ok()?;
            let cpus = st
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
                .trim()
                .to_string();
            Some((comm, cpus))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn workers_run_on_the_cpus_the_config_names() {
    let last = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vtap.toml");
    std::fs::write(
        &config,
        format!("[forwarding]\ncpus = [{last}]\npoll_window_us = 20\n"),
    )
    .expect("config");
    let socket = dir.path().join("vtap.sock");
    let d = Daemon::start(&socket, Some(&config));
    assert_eq!(
        worker_cpus(d.pid()),
        [("vtap-fwd0".to_string(), last.to_string())]
    );
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&socket)
        .arg("http://localhost/v1/info")
        .output()
        .expect("curl");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(info["worker_cpus"], serde_json::json!([last]), "{info}");
    assert_eq!(info["poll_window_us"], 20, "{info}");
    drop(d);

    // A CPU that does not exist: the daemon does not start, and says why.
    std::fs::write(&config, "[forwarding]\ncpus = [4000]\n").expect("config");
    let out = Command::new(VTAP)
        .arg("--socket")
        .arg(dir.path().join("other.sock"))
        .args(["daemon", "--config"])
        .arg(&config)
        .output()
        .expect("daemon");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("worker 0 cannot run on CPU 4000"), "{err}");
}
