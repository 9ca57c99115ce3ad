//! `vtap-cni` driven exactly as a runtime drives it (environment + stdin,
//! result or error object on stdout), over spec versions 1.0.0 and 1.1.0,
//! against a real vtapd and Debian's `host-local` as the delegated IPAM:
//! every command, the error paths, pods that reach each other across the
//! bridge, and nothing left afterwards (taps, IPs in host-local's data
//! directory). Needs root and `containernetworking-plugins`.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::Daemon;
use serde_json::{json, Value};
use vtap_testkit::{unique, TestNs};

const PLUGIN: &str = env!("CARGO_BIN_EXE_vtap-cni");
const IPAM_DIR: &str = "/usr/lib/cni";

/// One network: vtapd, a host-local data directory, its configuration.
struct Net {
    daemon: Daemon,
    dir: tempfile::TempDir,
    name: String,
    conf: Value,
}

impl Net {
    fn new(version: &str, subnet4: &str, subnet6: &str) -> Self {
        assert!(
            Path::new(IPAM_DIR).join("host-local").exists(),
            "host-local is missing: run scripts/setup.sh (containernetworking-plugins)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let daemon = Daemon::start(&dir.path().join("vtap.sock"), None);
        let name = format!("net-{}", unique());
        let gw4 = subnet4.replace(".0/24", ".1");
        let conf = json!({
            "cniVersion": version, "name": name, "type": "vtap-cni",
            "socket": daemon.socket, "bridge": format!("bd{}", unique()), "mtu": 1400,
            "ipam": {
                "type": "host-local",
                "dataDir": dir.path().join("ipam"),
                "ranges": [[{"subnet": subnet4, "gateway": gw4}], [{"subnet": subnet6}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.19.128.0/17"}],
            },
            "dns": {"nameservers": ["198.18.0.53"]},
        });
        Self {
            daemon,
            dir,
            name,
            conf,
        }
    }

    /// The addresses host-local holds for this network (its files, one per IP).
    fn held(&self) -> Vec<String> {
        let d = self.dir.path().join("ipam").join(&self.name);
        let mut v: Vec<String> = std::fs::read_dir(&d)
            .map(|r| {
                r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.retain(|f| f.parse::<std::net::IpAddr>().is_ok());
        v.sort();
        v
    }
}

/// Runs the plugin: `(success, stdout as JSON or Null)`.
fn cni(command: &str, conf: &Value, container: &str, netns: &str, ifname: &str) -> (bool, Value) {
    let mut child = Command::new(PLUGIN)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", format!("/nonexistent:{IPAM_DIR}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vtap-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.to_string().as_bytes())
        .expect("write conf");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON on stdout")
    };
    (out.status.success(), v)
}

fn ok(command: &str, conf: &Value, container: &str, netns: &str) -> Value {
    let (good, v) = cni(command, conf, container, netns, "eth0");
    assert!(good, "{command} {container}: {v}");
    v
}

fn err(command: &str, conf: &Value, container: &str, netns: &str) -> Value {
    let (good, v) = cni(command, conf, container, netns, "eth0");
    assert!(!good, "{command} {container} should fail: {v}");
    assert!(
        v["code"].is_u64() && v["msg"].is_string(),
        "the spec's error object: {v}"
    );
    v
}

fn with(conf: &Value, k: &str, v: Value) -> Value {
    let mut c = conf.clone();
    c[k] = v;
    c
}

fn ping(ns: &TestNs, dst: &str) -> bool {
    ns.exec("ping", &["-c", "1", "-W", "2", dst])
        .status
        .success()
}

/// `A/L` of the pod's eth0.
fn addrs(ns: &TestNs) -> Vec<String> {
    let mut a = ns.addrs("eth0");
    a.sort();
    a
}

fn protocol(version: &str, subnet4: &str, subnet6: &str) {
    let net = Net::new(version, subnet4, subnet6);
    let (a, b) = (TestNs::new("cnia"), TestNs::new("cnib"));
    let v = ok("VERSION", &net.conf, "", "");
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));

    let ra = ok("ADD", &net.conf, "ca", &a.path());
    let rb = ok("ADD", &net.conf, "cb", &b.path());
    assert_eq!(ra["cniVersion"], version);
    for (r, ns) in [(&ra, &a), (&rb, &b)] {
        let i = &r["interfaces"][0];
        assert_eq!(
            (i["name"].as_str(), i["sandbox"].as_str()),
            (Some("eth0"), Some(ns.path().as_str()))
        );
        let link = ns.link("eth0").expect("eth0 in the pod");
        assert_eq!(
            link["address"], i["mac"],
            "the result's MAC is the kernel's"
        );
        assert_eq!(
            (link["mtu"].as_u64(), i["mtu"].as_u64()),
            (Some(1400), Some(1400))
        );
        let mut want: Vec<String> = r["ips"]
            .as_array()
            .expect("ips")
            .iter()
            .map(|i| i["address"].as_str().expect("a").to_string())
            .collect();
        want.sort();
        assert_eq!(addrs(ns), want, "every IPAM address is on eth0");
        assert_eq!(want.len(), 2);
        let gw4 = subnet4.replace(".0/24", ".1");
        assert_eq!(
            ns.routes("eth0"),
            [
                format!("0.0.0.0/0 via {gw4}"),
                format!("198.19.128.0/17 via {gw4}")
            ]
        );
        assert_eq!(r["dns"]["nameservers"][0], "198.18.0.53");
    }
    assert_eq!(net.held().len(), 4, "two addresses per pod held");
    let b4 = rb["ips"][0]["address"]
        .as_str()
        .expect("ip")
        .split('/')
        .next()
        .expect("ip")
        .to_string();
    let b6 = rb["ips"][1]["address"]
        .as_str()
        .expect("ip")
        .split('/')
        .next()
        .expect("ip")
        .to_string();
    assert!(
        ping(&a, &b4),
        "pod a reaches pod b over IPv4 through vtap's bridge"
    );
    let v6 = vtap_testkit::wait_until(std::time::Duration::from_secs(10), || ping(&a, &b6));
    assert!(v6, "and over IPv6 (once DAD is done)");

    // CHECK: in step, then drifted.
    let check = with(&net.conf, "prevResult", ra.clone());
    ok("CHECK", &check, "ca", &a.path());
    let a4 = ra["ips"][0]["address"].as_str().expect("ip");
    a.ip(&["addr", "del", a4, "dev", "eth0"]);
    let e = err("CHECK", &check, "ca", &a.path());
    assert_eq!(e["code"], 101);
    assert!(
        e["msg"]
            .as_str()
            .expect("msg")
            .contains(&format!("address {a4} is missing")),
        "{e}"
    );

    // DEL: the tap and the IPs go; again is fine; a container vtapd never saw is fine.
    ok("DEL", &check, "ca", &a.path());
    assert!(a.link("eth0").is_none());
    assert_eq!(net.held().len(), 2);
    ok("DEL", &check, "ca", &a.path());
    ok("DEL", &net.conf, "never-seen", &a.path());
    // The namespace gone first (the kernel takes the tap with it).
    let b_path = b.path();
    drop(b);
    ok("DEL", &net.conf, "cb", &b_path);
    assert!(net.held().is_empty(), "{:?}", net.held());

    // Errors: named, and nothing held or made.
    let bad = [
        (
            with(&net.conf, "colour", json!("blue")),
            7,
            "colour: unknown field",
        ),
        (
            with(&net.conf, "mtu", json!("big")),
            7,
            "mtu: must be an integer",
        ),
        (
            with(&net.conf, "ipam", json!({"type": "no-such-ipam"})),
            7,
            "no plugin 'no-such-ipam' in CNI_PATH",
        ),
        (with(&net.conf, "mtu", json!(70000)), 100, "host-mtu-size"),
        (
            with(&net.conf, "cniVersion", json!("0.2.0")),
            1,
            "cniVersion 0.2.0",
        ),
    ];
    for (conf, code, why) in bad {
        let e = err("ADD", &conf, "cbad", &a.path());
        assert_eq!(e["code"], code, "{e}");
        assert!(e["msg"].as_str().expect("msg").contains(why), "{e} / {why}");
        assert!(
            a.link("eth0").is_none() && net.held().is_empty(),
            "nothing left after {why}"
        );
    }
    let e = err("ADD", &net.conf, "cbad", "/var/run/netns/no-such-ns");
    assert_eq!(e["code"], 100, "{e}");
    assert!(
        net.held().is_empty(),
        "the address was released: {:?}",
        net.held()
    );

    if version == "1.1.0" {
        ok("STATUS", &net.conf, "", "");
        let gone = with(
            &net.conf,
            "socket",
            json!("/run/vtap-test-nothing/vtap.sock"),
        );
        let e = err("STATUS", &gone, "", "");
        assert_eq!(e["code"], 50);
        assert!(
            e["msg"]
                .as_str()
                .expect("msg")
                .contains("/run/vtap-test-nothing/vtap.sock"),
            "{e}"
        );
        // GC: c2 is not valid any more.
        let (c, d) = (TestNs::new("cnic"), TestNs::new("cnid"));
        ok("ADD", &net.conf, "c1", &c.path());
        ok("ADD", &net.conf, "c2", &d.path());
        let gc = with(
            &net.conf,
            "cni.dev/valid-attachments",
            json!([{"containerID": "c1", "ifname": "eth0"}]),
        );
        ok("GC", &gc, "", "");
        assert!(
            c.link("eth0").is_some() && d.link("eth0").is_none(),
            "only the stale one went"
        );
        assert_eq!(
            net.held().len(),
            2,
            "its addresses released: {:?}",
            net.held()
        );
        ok("DEL", &net.conf, "c1", &c.path());
        // The bandwidth capability: bits into the pod are vtap's tx, out rx.
        let bw = json!({"bandwidth": {"ingressRate": 80_000_000, "ingressBurst": 800_000, "egressRate": 40_000_000}});
        ok(
            "ADD",
            &with(&net.conf, "runtimeConfig", bw),
            "cbw",
            &c.path(),
        );
        let taps = net.daemon.show();
        let rl = &taps[0]["datapath"]["rate_limit"];
        assert_eq!(rl["tx"]["limit"]["bytes_per_sec"], 10_000_000, "{rl}");
        assert_eq!(rl["tx"]["limit"]["burst"], 100_000, "{rl}");
        assert_eq!(rl["rx"]["limit"]["bytes_per_sec"], 5_000_000, "{rl}");
        ok("DEL", &net.conf, "cbw", &c.path());
    } else {
        let e = err("GC", &net.conf, "", "");
        assert_eq!(e["code"], 1, "GC needs 1.1.0: {e}");
    }
    assert!(net.held().is_empty());
    let left = net.daemon.show();
    assert!(left.is_empty(), "no tap left in vtapd: {left:?}");
}

#[test]
fn the_protocol_at_1_0_0() {
    protocol("1.0.0", "198.18.110.0/24", "2001:db8:110::/64");
}

#[test]
fn the_protocol_at_1_1_0() {
    protocol("1.1.0", "198.18.111.0/24", "2001:db8:111::/64");
}

/// 50 ADDs at once on one network all succeed with distinct addresses;
/// ADD and DEL of one container racing end consistent (a tap and its
/// address, or neither).
#[test]
fn fifty_adds_at_once_and_add_del_races() {
    let net = Net::new("1.1.0", "198.18.112.0/24", "2001:db8:112::/64");
    let pods: Vec<TestNs> = (0..50).map(|_| TestNs::new("cnip")).collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let conf = &net.conf;
                s.spawn(move || ok("ADD", conf, &format!("p{i}"), &ns.path()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut v4: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().expect("ip"))
        .collect();
    v4.sort();
    v4.dedup();
    assert_eq!(v4.len(), 50, "distinct addresses");
    for ns in &pods {
        assert!(ns.link("eth0").is_some());
    }
    assert!(ping(
        &pods[0],
        &results[49]["ips"][0]["address"]
            .as_str()
            .expect("ip")
            .replace("/24", "")
    ));
    std::thread::scope(|s| {
        for (i, ns) in pods.iter().enumerate() {
            let conf = &net.conf;
            s.spawn(move || ok("DEL", conf, &format!("p{i}"), &ns.path()));
        }
    });
    assert!(net.held().is_empty());

    for (round, ns) in pods.iter().enumerate().take(6) {
        let id = format!("race{round}");
        std::thread::scope(|s| {
            let conf = &net.conf;
            let id = &id;
            s.spawn(move || cni("ADD", conf, id, &ns.path(), "eth0"));
            s.spawn(move || cni("DEL", conf, id, &ns.path(), "eth0"));
        });
        let tap = ns.link("eth0").is_some();
        let held = net.held().len();
        assert!(
            (tap && held == 2) || (!tap && held == 0),
            "round {round}: tap {tap}, {held} addresses held"
        );
        ok("DEL", &net.conf, &id, &ns.path());
        assert!(ns.link("eth0").is_none() && net.held().is_empty());
    }
}
