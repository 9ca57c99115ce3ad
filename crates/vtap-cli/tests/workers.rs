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

/// `GET /v1/info` of the daemon on `socket`.
fn info(socket: &std::path::Path) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(socket)
        .arg("http://localhost/v1/info")
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).expect("json")
}

/// (worker of each rx queue, frames read on each rx queue) of every
/// interface `show` lists, read from the daemon.
fn queues(d: &Daemon) -> Vec<Vec<(Option<u64>, u64)>> {
    d.show()
        .iter()
        .map(|t| {
            t["datapath"]["rx"]
                .as_array()
                .expect("rx queues")
                .iter()
                .map(|q| {
                    (
                        q["worker"].as_u64(),
                        q["counters"]["packets"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .collect()
}

/// Two 2-queue taps cross-connected on a 2-worker daemon: queue pair q on
/// worker q (`show` says so, and each worker's frame count is exactly what
/// its queues read); `vtap set IF rx-placement` moves a pair, after which
/// the other worker reads nothing; the placement survives `kill -9`; bad
/// placements are refused naming the field.
#[test]
fn rx_placement_spreads_queue_pairs_over_workers_and_moves_them() {
    use vtap_testkit::{ifname, TestNs};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vtap.toml");
    std::fs::write(&config, "[forwarding]\nworkers = 2\n").expect("config");
    let socket = dir.path().join("vtap.sock");
    let mut d = Daemon::start(&socket, Some(&config));
    let (na, nb) = (TestNs::new("rpa"), TestNs::new("rpb"));
    let (ha, hb) = (ifname("rpa"), ifname("rpb"));
    for (ns, host, ip) in [(&na, &ha, "198.18.47.1/24"), (&nb, &hb, "198.18.47.2/24")] {
        d.ok(&[
            "create",
            "--host-ns",
            &ns.name,
            "--host-if-name",
            host,
            "--host-ip4-addr",
            ip,
            "--num-rx-queues",
            "2",
            "--num-tx-queues",
            "2",
            "--persist",
        ]);
    }
    d.ok(&["xconnect", "tap0", "tap1"]);
    let ping = |n: &str| {
        let out = na.exec("ping", &["-c", n, "-i", "0.05", "-W", "2", "198.18.47.2"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.contains(&format!("{n} received")), "{text}");
    };
    ping("20");
    // Placed by load: pair 0 on worker 0, pair 1 on worker 1, and each
    // worker read exactly what its queues read.
    let q = queues(&d);
    assert_eq!(
        q.iter()
            .map(|t| t.iter().map(|x| x.0).collect::<Vec<_>>())
            .collect::<Vec<_>>(),
        [[Some(0), Some(1)], [Some(0), Some(1)]]
    );
    let read_on = |q: &[Vec<(Option<u64>, u64)>], w: u64| -> u64 {
        q.iter()
            .flatten()
            .filter(|x| x.0 == Some(w))
            .map(|x| x.1)
            .sum()
    };
    // The host sides send frames of their own now and then (IPv6 ND):
    // compare counts read with nothing moving in between.
    let mut tries = 0;
    let (frames, q) = loop {
        let before = info(&socket)["worker_frames"].clone();
        let q = queues(&d);
        let quiet = info(&socket)["worker_frames"] == before;
        let sums = serde_json::json!([read_on(&q, 0), read_on(&q, 1)]);
        tries += 1;
        if (quiet && before == sums) || tries == 50 {
            break (before, q);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        frames,
        serde_json::json!([read_on(&q, 0), read_on(&q, 1)]),
        "{q:?}"
    );
    assert!(read_on(&q, 0) + read_on(&q, 1) >= 40, "{q:?}");

    // Pair 1 to worker 0: from now on worker 1 reads nothing.
    let out = d.ok(&["set", "tap0", "rx-placement", "1", "0"]);
    assert!(out.contains("tap1 queue 1 worker 0 (set)"), "{out}");
    let q = queues(&d);
    assert!(q.iter().flatten().all(|x| x.0 == Some(0)), "{q:?}");
    let before = info(&socket)["worker_frames"].clone();
    ping("20");
    let after = info(&socket)["worker_frames"].clone();
    assert_eq!(after[1], before[1], "worker 1 read nothing more");
    assert!(
        after[0].as_u64() >= before[0].as_u64().map(|n| n + 40),
        "{before} {after}"
    );

    // Refusals name the field.
    for (args, want) in [
        (
            ["set", "tap0", "rx-placement", "0", "2"],
            "worker 2: the forwarder has 2 worker(s)",
        ),
        (
            ["set", "tap0", "rx-placement", "2", "0"],
            "queue 2: tap0 has 2 rx queue(s)",
        ),
    ] {
        let err = d.refused(&args);
        assert!(err.contains(want), "{err}");
    }

    // Kept across a kill -9: queue pair 1 stays on worker 0, marked set.
    d.kill9();
    let d = Daemon::start(&socket, Some(&config));
    let x: serde_json::Value = serde_json::from_str(&d.ok(&["xconnect", "--list"])).expect("json");
    let placed: Vec<(String, u64, u64, bool)> = x[0]["rx_placement"]
        .as_array()
        .expect("placement")
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (
                s("iface"),
                p["queue"].as_u64().unwrap_or(9),
                p["worker"].as_u64().unwrap_or(9),
                p["set"] == true,
            )
        })
        .collect();
    let row = |i: &str, q, w, set| (i.to_string(), q, w, set);
    assert_eq!(
        placed,
        [
            row("tap0", 0, 0, false),
            row("tap0", 1, 0, true),
            row("tap1", 0, 0, false),
            row("tap1", 1, 0, true)
        ]
    );
    ping("5");
    d.ok(&["xconnect", "tap0", "--delete"]);
    d.ok(&["delete", "tap0"]);
    d.ok(&["delete", "tap1"]);
}
