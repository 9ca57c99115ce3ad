//! VXLAN tunnels through the CLI and two daemons: two vtap nodes (each its
//! own daemon, socket, underlay namespace and pods) and a Linux node in one
//! VNI, joined by a Linux bridge in a "fabric" namespace. Node A is driven
//! by `vtap vxlan create` and `bridge add`; node B declares its tunnels and
//! bridge in `[[vxlan]]` and `[[bridge]]`. All pods reach all; node B's
//! daemon is killed with -9 and restarted: A and the Linux node keep
//! talking meanwhile, B makes its tunnels again from its state file and
//! traffic resumes. Addresses: 198.18.94.0/24 (pods), 198.18.95.0/24
//! (underlay) only.

mod common;

use std::time::Duration;

use common::Daemon;
use serde_json::Value;
use vtap_testkit::{wait_until, TestNs};

use vtap_testkit::vxlan::{underlay_ip as under, Fabric};

struct Pod {
    ns: TestNs,
    ip: String,
}

impl Pod {
    fn new(tag: &str, host: u8) -> Self {
        Self {
            ns: TestNs::new(tag),
            ip: format!("198.18.94.{host}"),
        }
    }

    fn reaches(&self, to: &Pod) -> bool {
        let out = self.ns.exec("ping", &["-c", "1", "-W", "2", &to.ip]);
        out.status.success()
    }
}

/// A persistent tap for `pod` on daemon `d`, created into bridge `bd`
/// (`create --bridge`) with no MTU given: it gets what the bridge's tunnels
/// carry, 1450, as the kernel shows.
fn pod_tap(d: &Daemon, pod: &Pod, bd: &str) -> String {
    let tap = d.ok(&[
        "create",
        "--host-ns",
        &pod.ns.name,
        "--host-ip4-addr",
        &format!("{}/24", pod.ip),
        "--bridge",
        bd,
        "--persist",
    ]);
    let mtus: Vec<u64> = pod
        .ns
        .links()
        .iter()
        .filter(|l| l["ifname"] != "lo")
        .filter_map(|l| l["mtu"].as_u64())
        .collect();
    assert_eq!(mtus, [1450], "the tap's MTU fits the tunnels");
    tap.trim().to_string()
}

fn tunnels(d: &Daemon) -> Vec<Value> {
    d.show()
        .into_iter()
        .filter(|v| v["kind"] == "vxlan")
        .collect()
}

#[test]
fn two_daemons_and_linux_share_a_vni_and_a_killed_daemon_comes_back() {
    const VNI: u32 = 5001;
    // Kept to the end (`_fabric`, not `_`: the bridge lives as long).
    let Fabric {
        fabric: _fabric,
        unders,
        linux_pod,
    } = Fabric::new("cv", 3, VNI, "198.18.94.3/24");
    let linux_pod = Pod {
        ns: linux_pod,
        ip: "198.18.94.3".into(),
    };
    let (da, db) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );

    // Node A through the CLI.
    let a = Daemon::start(&da.path().join("vtap.sock"), None);
    let (ua, ub) = (&unders[0].name, &unders[1].name);
    let e = a.refused(&[
        "vxlan",
        "create",
        "--src",
        &under(9),
        "--dst",
        &under(2),
        "--vni",
        "5001",
        "--underlay-ns",
        ua,
    ]);
    assert!(
        e.contains("src '198.18.95.9': not an address of namespace"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let e = a.refused(&[
        "vxlan",
        "create",
        "--src",
        &under(1),
        "--dst",
        &under(2),
        "--vni",
        "16777216",
    ]);
    assert!(e.contains("vni '16777216'"), "{e}");
    a.ok(&["bridge", "create", "bd"]);
    for (i, dst) in [2u8, 3].into_iter().enumerate() {
        let name = a.ok(&[
            "vxlan",
            "create",
            "--src",
            &under(1),
            "--dst",
            &under(dst),
            "--vni",
            "5001",
            "--underlay-ns",
            ua,
        ]);
        assert_eq!(name.trim(), format!("vxlan_tunnel{i}"));
        a.ok(&["bridge", "add", "bd", name.trim()]);
    }
    let human = a.ok(&["show", "vxlan_tunnel0"]);
    assert!(
        human.contains("vxlan_tunnel0  src 198.18.95.1  dst 198.18.95.2  vni 5001")
            && human.contains("inner-mtu 1450"),
        "{human}"
    );

    // Node B from its config.
    let config = db.path().join("vtap.toml");
    let mut decl = String::new();
    for dst in [1u8, 3] {
        decl += &format!(
            "[[vxlan]]\nsrc = \"{}\"\ndst = \"{}\"\nvni = {VNI}\nunderlay_ns = \"{ub}\"\n\n",
            under(2),
            under(dst)
        );
    }
    decl += "[[bridge]]\nname = \"bd\"\ninterfaces = [\"vxlan_tunnel0\", \"vxlan_tunnel1\"]\n";
    std::fs::write(&config, decl).expect("config");
    let b_socket = db.path().join("vtap.sock");
    let mut b = Daemon::start(&b_socket, Some(&config));
    assert_eq!(tunnels(&b).len(), 2, "declared tunnels made");

    let pa = [Pod::new("cva1", 11), Pod::new("cva2", 12)];
    let pb = [Pod::new("cvb1", 21), Pod::new("cvb2", 22)];
    let taps_a: Vec<String> = pa.iter().map(|p| pod_tap(&a, p, "bd")).collect();
    let taps_b: Vec<String> = pb.iter().map(|p| pod_tap(&b, p, "bd")).collect();
    let everyone: Vec<&Pod> = pa.iter().chain(&pb).chain([&linux_pod]).collect();
    for from in &everyone {
        for to in everyone.iter().filter(|t| t.ip != from.ip) {
            assert!(from.reaches(to), "{} -> {}", from.ip, to.ip);
        }
    }
    let t = &tunnels(&a)[0];
    assert!(
        t["datapath"]["tx"][0]["counters"]["packets"].as_u64() > Some(0),
        "{t}"
    );
    // Growing a tap past what its bridge's tunnels carry: made, with a
    // warning on stderr naming them; then back.
    let out = a.vtap(&["set", &taps_a[0], "mtu", "1500"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("vtap: warning: mtu:")
            && err.contains("vxlan_tunnel0")
            && err.contains("vxlan_tunnel1")
            && err.contains("drop_too_big"),
        "{err}"
    );
    let out = a.vtap(&["set", &taps_a[0], "mtu", "1450"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");

    // kill -9 node B: A and Linux keep talking; B's pods go quiet.
    b.kill9();
    assert!(pa[0].reaches(&linux_pod), "A -> Linux with B down");
    assert!(
        !pa[0].reaches(&pb[0]),
        "B's pods are not forwarded while B is down"
    );
    b = Daemon::start(&b_socket, Some(&config));
    let back = tunnels(&b);
    assert_eq!(back.len(), 2, "B made its tunnels again: {back:?}");
    assert!(back.iter().all(|t| t.get("detached").is_none()), "{back:?}");
    assert!(
        wait_until(Duration::from_secs(10), || pa[0].reaches(&pb[0])),
        "A -> B's pod after B's restart"
    );
    assert!(linux_pod.reaches(&pb[1]), "Linux -> B after the restart");

    // Cleanup through the CLI: tunnels leave their bridges, then go.
    for (d, taps) in [(&a, &taps_a), (&b, &taps_b)] {
        for t in taps {
            d.ok(&["bridge", "remove", "bd", t]);
            d.ok(&["delete", t]);
        }
        for t in ["vxlan_tunnel0", "vxlan_tunnel1"] {
            let e = d.refused(&["delete", t]);
            assert!(e.contains("bridge bd"), "{e}");
            d.ok(&["bridge", "remove", "bd", t]);
            d.ok(&["delete", t]);
        }
        assert!(tunnels(d).is_empty());
    }
    for u in &unders[..2] {
        let ss = u.exec("ss", &["-H", "-u", "-a", "-n"]);
        assert!(
            ss.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&ss.stdout)
        );
    }
}
