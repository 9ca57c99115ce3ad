//! Host uplinks through the CLI and the daemon: `vtap host-interface
//! create`, and the uplink's name in show, bridge, xconnect, capture,
//! rx-mode and delete; a `[[host_interface]]` declaration; a `kill -9` and
//! a restart that opens the uplink again where it was. The kernel's state
//! is read back with `ip -j`. A veth pair stands in for the NIC.
//! Addresses: 198.18.86.0/24 only.

mod common;

use std::time::Duration;

use common::Daemon;
use serde_json::Value;
use vtap_testkit::{wait_until, TestNs};

/// Pod and LAN namespaces joined by nothing yet; `up0` in node, `lan0`
/// (198.18.86.2) in lan.
struct Lan {
    pod: TestNs,
    node_ns: TestNs,
    lan: TestNs,
}

impl Lan {
    fn new(tag: &str) -> Self {
        let (pod, node_ns, lan) = (
            TestNs::new(&format!("{tag}p")),
            TestNs::new(&format!("{tag}n")),
            TestNs::new(&format!("{tag}l")),
        );
        node_ns.ip(&[
            "link", "add", "up0", "type", "veth", "peer", "name", "lan0", "netns", &lan.name,
        ]);
        node_ns.ip(&["link", "set", "up0", "up"]);
        lan.ip(&["addr", "add", "198.18.86.2/24", "dev", "lan0"]);
        lan.ip(&["link", "set", "lan0", "up"]);
        Self { pod, node_ns, lan }
    }

    fn ping_lan(&self) -> bool {
        let args = ["-c", "1", "-W", "1", "198.18.86.2"];
        self.pod.exec("ping", &args).status.success()
    }

    /// `up0`'s XDP program id as `ip -d -j link` shows it, if any.
    fn xdp_prog(&self) -> Option<u64> {
        self.node_ns.ip_json(&["-d", "link", "show", "up0"])[0]["xdp"]["prog"]["id"].as_u64()
    }

    fn promiscuity(&self) -> u64 {
        self.node_ns.ip_json(&["-d", "link", "show", "up0"])[0]["promiscuity"]
            .as_u64()
            .expect("promiscuity")
    }
}

fn uplink(show: &[Value]) -> Value {
    show.iter()
        .find(|v| v["kind"] == "host-interface")
        .cloned()
        .expect("an uplink in show --json")
}

#[test]
fn the_cli_drives_an_uplink_and_a_restart_opens_it_again() {
    let lan = Lan::new("cu");
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("vtap.sock");
    let mut d = Daemon::start(&socket, None);

    // Refusals: one line naming the field, nothing opened.
    let e = d.refused(&[
        "host-interface",
        "create",
        "nope0",
        "--host-ns",
        &lan.node_ns.name,
    ]);
    assert!(e.contains("host-if-name 'nope0': no such interface"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let e = d.refused(&[
        "host-interface",
        "create",
        "up0",
        "--host-ns",
        &lan.node_ns.name,
        "--mode",
        "af-dpdk",
    ]);
    assert!(e.contains("af-dpdk"), "{e}");
    assert_eq!(lan.promiscuity(), 0);

    let name = d.ok(&[
        "host-interface",
        "create",
        "up0",
        "--host-ns",
        &lan.node_ns.name,
        "--num-queues",
        "2",
    ]);
    assert_eq!(name.trim(), "host-up0");
    assert_eq!(lan.promiscuity(), 1);
    let tap = d.ok(&[
        "create",
        "--host-ns",
        &lan.pod.name,
        "--host-ip4-addr",
        "198.18.86.1/24",
        "--gso",
        "--persist",
    ]);
    let tap = tap.trim();
    d.ok(&["bridge", "create", "bdc"]);
    d.ok(&["bridge", "add", "bdc", tap]);
    d.ok(&["bridge", "add", "bdc", "host-up0"]);
    assert!(lan.ping_lan(), "pod -> lan through the bridge");

    let up = uplink(&d.show());
    assert_eq!(up["name"], "host-up0");
    assert_eq!(up["num_queues"], 2);
    assert_eq!(up["link"], "up");
    assert_eq!(up["driver"], "veth");
    let human = d.ok(&["show", "host-up0"]);
    assert!(human.contains("host-up0  host-if-name up0"), "{human}");

    d.ok(&["set", "host-up0", "rx-mode", "polling"]);
    let up = uplink(&d.show());
    assert_eq!(up["datapath"]["rx"][0]["mode"], "polling", "{up}");
    let e = d.refused(&["set", "host-up0", "mtu", "9000"]);
    assert!(e.contains("keeps the host's own"), "{e}");

    // A capture of the uplink: two frames of a ping.
    let pcap = dir.path().join("up.pcap");
    let pcap_s = pcap.display().to_string();
    let socket_s = socket.display().to_string();
    let cap = std::thread::spawn(move || {
        common::vtap(
            std::path::Path::new(&socket_s),
            &[
                "capture", "host-up0", "both", "--file", &pcap_s, "--count", "2",
            ],
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(wait_until(Duration::from_secs(10), || {
        lan.ping_lan();
        cap.is_finished()
    }));
    assert!(cap.join().expect("capture").status.success());
    let read = vtap_testkit::run_ok("tcpdump", &["-nr", &pcap.display().to_string()]);
    assert_eq!(read.lines().count(), 2, "{read}");

    let e = d.refused(&["delete", "host-up0"]);
    assert!(e.contains("bridge bdc"), "in use: {e}");

    // kill -9: the sockets die with the daemon, and the promiscuity with
    // them; a restart opens the uplink again, in its bridge, rx mode kept.
    d.kill9();
    assert_eq!(lan.promiscuity(), 0, "the kernel dropped the membership");
    d = Daemon::start(&socket, None);
    let up = uplink(&d.show());
    assert_eq!(
        (up["name"].as_str(), up["num_queues"].as_u64()),
        (Some("host-up0"), Some(2))
    );
    assert_eq!(up["datapath"]["rx"][0]["mode"], "polling", "{up}");
    assert_eq!(lan.promiscuity(), 1);
    let bd: Value = serde_json::from_str(&d.ok(&["bridge", "show", "bdc"])).expect("json");
    let mut members: Vec<&str> = bd["interfaces"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["host-up0", tap], "{bd}");
    assert!(
        wait_until(Duration::from_secs(5), || lan.ping_lan()),
        "pod -> lan after the restart"
    );

    d.ok(&["bridge", "remove", "bdc", "host-up0"]);
    d.ok(&["delete", "host-up0"]);
    assert_eq!(lan.promiscuity(), 0);
    let left: Vec<Value> = d
        .show()
        .into_iter()
        .filter(|v| v["kind"] == "host-interface")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    d.ok(&["bridge", "remove", "bdc", tap]);
    d.ok(&["delete", tap]);
}

#[test]
fn a_declared_host_interface_is_opened_at_start() {
    let lan = Lan::new("cd");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("vtap.toml");
    std::fs::write(
        &config,
        format!(
            "[[host_interface]]\nhost_if_name = \"up0\"\nhost_ns = \"{}\"\nrx_mode = \"adaptive\"\n\n\
             [[bridge]]\nname = \"bdd\"\ninterfaces = [\"host-up0\"]\n",
            lan.node_ns.name
        ),
    )
    .expect("config");
    let d = Daemon::start(&dir.path().join("vtap.sock"), Some(&config));
    let up = uplink(&d.show());
    assert_eq!(up["datapath"]["rx"][0]["mode"], "adaptive", "{up}");
    let bd: Value = serde_json::from_str(&d.ok(&["bridge", "show", "bdd"])).expect("json");
    assert_eq!(bd["interfaces"], serde_json::json!(["host-up0"]));
    assert_eq!(lan.promiscuity(), 1);
    drop(d);
    assert_eq!(lan.promiscuity(), 0, "the daemon's exit closes the sockets");
    let _ = &lan.pod;
    let _ = &lan.lan;
}

/// An af-xdp uplink through the CLI: its program shown by `show` and by
/// `ip link` alike; `kill -9` leaves neither program nor promiscuity (a
/// bpf_link dies with its fd); a restart attaches again and traffic
/// resumes; delete leaves `up0` as found.
#[test]
fn an_af_xdp_uplink_leaves_nothing_after_kill_9_and_comes_back() {
    let lan = Lan::new("cx");
    // A veth peer hands over checksum-partial frames, which XDP cannot
    // flag; a wire (and a peer without tx offload) delivers complete ones.
    lan.lan.exec("ethtool", &["-K", "lan0", "tx", "off"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("vtap.sock");
    let mut d = Daemon::start(&socket, None);
    let name = d.ok(&[
        "host-interface",
        "create",
        "up0",
        "--host-ns",
        &lan.node_ns.name,
        "--mode",
        "af-xdp",
    ]);
    assert_eq!(name.trim(), "host-up0");
    let up = uplink(&d.show());
    assert_eq!(
        (up["mode"].as_str(), up["xdp"]["attach"].as_str()),
        (Some("af-xdp"), Some("native")),
        "{up}"
    );
    assert_eq!(up["xdp"]["prog_id"].as_u64(), lan.xdp_prog(), "{up}");
    assert_eq!(up["datapath"]["backend"], "af-xdp", "{up}");
    let human = d.ok(&["show", "host-up0"]);
    assert!(
        human.contains("mode af-xdp") && human.contains("xdp prog-id"),
        "{human}"
    );
    let tap = d.ok(&[
        "create",
        "--host-ns",
        &lan.pod.name,
        "--host-ip4-addr",
        "198.18.86.1/24",
        "--persist",
    ]);
    let tap = tap.trim();
    d.ok(&["xconnect", tap, "host-up0"]);
    assert!(lan.ping_lan(), "pod -> lan");

    d.kill9();
    assert_eq!(lan.xdp_prog(), None, "the program died with the daemon");
    assert_eq!(lan.promiscuity(), 0);
    d = Daemon::start(&socket, None);
    let up = uplink(&d.show());
    assert_eq!(up["mode"], "af-xdp", "{up}");
    assert!(lan.xdp_prog().is_some(), "attached again");
    assert!(
        wait_until(Duration::from_secs(5), || lan.ping_lan()),
        "pod -> lan after the restart"
    );
    d.ok(&["xconnect", tap, "--delete"]);
    d.ok(&["delete", "host-up0"]);
    assert_eq!((lan.xdp_prog(), lan.promiscuity()), (None, 0));
    d.ok(&["delete", tap]);
}
