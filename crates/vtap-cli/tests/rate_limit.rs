//! Rate limits against the real kernel: iperf3 through a vtap
//! cross-connect measures within 10 % of the configured rate, rx and tx,
//! bytes and packets, side by side with the kernel's TBF at the same
//! setting on a veth pair; the counters say what was delayed and dropped;
//! a limit survives a `kill -9` of the daemon; bad limits are refused
//! naming the field. Rates are far below what the path carries, so the
//! limit, not the machine, sets them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Daemon;
use serde_json::Value;
use vtap_testkit::{ifname, wait_until, TestNs};

/// 50 Mbit/s, as bytes.
const RATE: u64 = 6_250_000;
/// The bursts both sides get (20 ms of the rate).
const BURST: u64 = 125_000;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// iperf3 from `client` to `server`'s `addr` for 3 s: the receiver's bits/s.
fn iperf(client: &TestNs, server: &TestNs, addr: &str, extra: &[&str]) -> f64 {
    let srv = Server(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &server.name,
                "iperf3",
                "-s",
                "-1",
                "-B",
                addr,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 -s"),
    );
    let mut args = vec!["-c", addr, "-t", "3", "-J"];
    args.extend_from_slice(extra);
    // The server needs a moment to listen: retry a refused connection.
    let mut v = Value::Null;
    for _ in 0..30 {
        let out = client.exec("iperf3", &args);
        v = serde_json::from_slice(&out.stdout).expect("iperf3 -J");
        if v.get("error").is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(srv);
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no result: {v}"))
}

fn within(got: f64, want: f64, what: &str) {
    let ratio = got / want;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{what}: {got:.0} bit/s is {ratio:.3}x of {want:.0}"
    );
}

fn limit(d: &Daemon, iface: &str, dir: &str) -> Value {
    let all = d.show();
    let t = all.iter().find(|t| t["name"] == iface);
    let t = t.unwrap_or_else(|| panic!("no {iface} in {all:?}"));
    t["datapath"]["rate_limit"][dir].clone()
}

#[test]
fn limits_hold_the_rate_like_tbf_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("vtap.sock");
    let mut d = Daemon::start(&sock, None);
    let (a, b) = (TestNs::new("rla"), TestNs::new("rlb"));
    for (ns, ip) in [(&a, "198.18.130.1/24"), (&b, "198.18.130.2/24")] {
        let h = ifname("rl");
        d.ok(&[
            "create",
            "--host-ns",
            &ns.name,
            "--host-if-name",
            &h,
            "--host-ip4-addr",
            ip,
            "--gso",
            "--gro-coalesce",
            "--persist",
        ]);
    }
    d.ok(&["xconnect", "tap0", "tap1"]);
    let want = (RATE * 8) as f64;

    // The kernel's TBF at the same setting, on a veth pair.
    let (c, e) = (TestNs::new("rlc"), TestNs::new("rld"));
    let (vc, ve) = (ifname("rc"), ifname("rd"));
    c.ip(&[
        "link", "add", &vc, "type", "veth", "peer", "name", &ve, "netns", &e.name,
    ]);
    c.ip(&["addr", "add", "198.18.131.1/24", "dev", &vc]);
    e.ip(&["addr", "add", "198.18.131.2/24", "dev", &ve]);
    c.ip(&["link", "set", &vc, "up"]);
    e.ip(&["link", "set", &ve, "up"]);
    let rate = format!("{}bit", RATE * 8);
    let burst = BURST.to_string();
    c.exec(
        "tc",
        &[
            "qdisc", "add", "dev", &vc, "root", "tbf", "rate", &rate, "burst", &burst, "latency",
            "25ms",
        ],
    );
    let tbf = iperf(&c, &e, "198.18.131.2", &[]);

    // rx: vtap reads tap0 no faster than the limit.
    let rx = d.ok(&[
        "set",
        "tap0",
        "rate-limit",
        "rx",
        "--bytes-per-sec",
        &RATE.to_string(),
        "--burst",
        &burst,
    ]);
    assert!(rx.contains("rx 6250000 B/s burst 125000"), "{rx}");
    let got_rx = iperf(&a, &b, "198.18.130.2", &[]);
    let st = limit(&d, "tap0", "rx");
    assert!(st["counters"]["throttled"].as_u64() > Some(0), "{st}");
    d.ok(&["set", "tap0", "rate-limit", "rx", "--off"]);
    assert!(limit(&d, "tap0", "rx").is_null());

    // tx: vtap sends to tap1 no faster; the excess waits in the shaper.
    d.ok(&[
        "set",
        "tap1",
        "rate-limit",
        "tx",
        "--bytes-per-sec",
        &RATE.to_string(),
        "--burst",
        &burst,
    ]);
    let got_tx = iperf(&a, &b, "198.18.130.2", &[]);
    let st = limit(&d, "tap1", "tx");
    assert!(st["counters"]["delayed"].as_u64() > Some(0), "{st}");
    eprintln!("50 Mbit/s: vtap rx {got_rx:.0}, vtap tx {got_tx:.0}, kernel tbf {tbf:.0} bit/s");
    within(tbf, want, "kernel tbf");
    within(got_rx, want, "vtap rx limit");
    within(got_tx, want, "vtap tx limit");

    // UDP offered at twice the limit: the shaping queue overflows and
    // counts what it drops; what arrives is the limit (payload: 1000 of
    // every 1042 frame bytes).
    let udp = iperf(&a, &b, "198.18.130.2", &["-u", "-b", "100M", "-l", "1000"]);
    eprintln!("50 Mbit/s tx limit, UDP offered at 100 Mbit/s: {udp:.0} bit/s of payload arrive");
    within(udp, want * 1000.0 / 1042.0, "vtap tx limit, UDP payload");
    let st = limit(&d, "tap1", "tx");
    assert!(st["counters"]["drop_rate_limit"].as_u64() > Some(0), "{st}");
    let t1: Vec<Value> = d
        .show()
        .into_iter()
        .filter(|t| t["name"] == "tap1")
        .collect();
    assert_eq!(
        t1[0]["datapath"]["accounting"]["tx_balanced"], true,
        "every frame counted"
    );
    let out = Command::new("curl")
        .args(["-sf", "--unix-socket"])
        .arg(&sock)
        .arg("http://vtapd/metrics")
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let series = r#"vtap_rate_limit_total{iface="tap1",direction="tx",what="drop_rate_limit"} "#;
    let dropped = text
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(dropped > Some(0), "/metrics: {series}: {dropped:?}");

    // Packets: 2000 frames/s read from tap0 (frames as the interface
    // carries them: iperf3's UDP datagrams are one each).
    d.ok(&["set", "tap1", "rate-limit", "tx", "--off"]);
    d.ok(&[
        "set",
        "tap0",
        "rate-limit",
        "rx",
        "--packets-per-sec",
        "2000",
    ]);
    let pps = iperf(&a, &b, "198.18.130.2", &["-u", "-b", "100M", "-l", "1000"]);
    eprintln!("2000 frames/s rx limit: {pps:.0} bit/s of 1000-byte payloads arrive");
    within(pps, 2000.0 * 1000.0 * 8.0, "vtap packet limit, UDP payload");

    // Refused, naming the field; nothing changed.
    for (args, why) in [
        (
            vec!["--bytes-per-sec", "0"],
            "bytes-per-sec: must be at least 1",
        ),
        (
            vec!["--packets-per-sec", "5", "--burst", "10"],
            "burst: has no rate",
        ),
    ] {
        let mut all = vec!["set", "tap1", "rate-limit", "tx"];
        all.extend(args);
        let e = d.refused(&all);
        assert!(e.contains(why), "{e}");
    }
    assert!(d
        .refused(&["set", "tap1", "rate-limit", "up", "--off"])
        .contains("direction 'up'"));
    assert!(limit(&d, "tap1", "tx").is_null(), "nothing changed");
    assert_eq!(limit(&d, "tap0", "rx")["limit"]["packets_per_sec"], 2000);

    // kill -9: the limit is in the state file and back with the interface.
    d.kill9();
    let d = Daemon::start(&sock, None);
    let back = || {
        d.show()
            .iter()
            .any(|t| t["name"] == "tap0" && t["state"] == "attached")
    };
    assert!(
        wait_until(Duration::from_secs(10), back),
        "tap0 re-attached"
    );
    assert_eq!(limit(&d, "tap0", "rx")["limit"]["packets_per_sec"], 2000);
    d.ok(&["xconnect", "tap0", "--delete"]);
    d.ok(&["delete", "tap0", "tap1"]);
}
