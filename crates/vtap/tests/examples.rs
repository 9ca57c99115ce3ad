//! The library users' example programs, driven from namespaces as a user
//! would: `examples/l2_filter.rs` forwards IPv4 (and ARP) between two
//! namespaces but drops IPv6, and counts what it dropped;
//! `examples/responder.rs` answers ARP and ping for an address no kernel
//! owns. Addresses: 198.18.20.0/24, 198.18.21.0/24, 2001:db8:20::/64.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use vtap_testkit::TestNs;

/// The example binary `cargo test` built beside this test.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join("examples").join(name);
    assert!(p.exists(), "{} not built", p.display());
    p
}

/// Starts an example and waits for its "ready" line.
fn start(name: &str, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    vtap_testkit::require_root();
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn example");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "{name}: {line}");
    (child, out)
}

/// Waits for the example to end and returns its JSON counters.
fn finish(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> Value {
    let mut line = String::new();
    out.read_line(&mut line).expect("counters");
    assert!(child.wait().expect("wait").success());
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn the_l2_filter_example_forwards_ipv4_and_drops_ipv6() {
    let (a, b) = (TestNs::new("exa"), TestNs::new("exb"));
    let (child, out) = start(
        "l2_filter",
        &[
            &a.name,
            &b.name,
            "198.18.20.1/24",
            "198.18.20.2/24",
            "0x86dd",
            "6",
        ],
    );
    for (ns, addr) in [(&a, "2001:db8:20::1/64"), (&b, "2001:db8:20::2/64")] {
        let link = ns
            .links()
            .into_iter()
            .find(|l| l["linkinfo"]["info_kind"] == "tun");
        let name = link.expect("the example's tap")["ifname"]
            .as_str()
            .expect("name")
            .to_string();
        ns.ip(&["addr", "add", addr, "dev", &name, "nodad"]);
    }
    let v4 = a.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.20.2"]);
    assert!(
        v4.status.success(),
        "IPv4 crosses: {}",
        String::from_utf8_lossy(&v4.stdout)
    );
    let v6 = a.exec(
        "ping",
        &["-6", "-c", "2", "-i", "0.2", "-W", "1", "2001:db8:20::2"],
    );
    assert!(!v6.status.success(), "IPv6 is dropped");
    let counters = finish(child, out);
    assert!(
        counters["dropped"].as_u64().is_some_and(|n| n >= 2),
        "{counters}"
    );
    assert!(
        counters["forwarded"].as_u64().is_some_and(|n| n >= 6),
        "{counters}"
    );
    assert_eq!(counters["ethertype"], "0x86dd");
    assert!(
        a.links()
            .iter()
            .all(|l| l["linkinfo"]["info_kind"] != "tun"),
        "tap removed"
    );
}

#[test]
fn the_responder_example_answers_arp_and_ping() {
    let ns = TestNs::new("exr");
    let (child, out) = start(
        "responder",
        &[&ns.name, "198.18.21.1/24", "198.18.21.2", "5"],
    );
    let ping = ns.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.21.2"]);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(text.contains("3 packets transmitted, 3 received"), "{text}");
    let neigh = ns.ip(&["neigh", "show", "198.18.21.2"]);
    assert!(neigh.contains("lladdr"), "ARP answered: {neigh}");
    let counters = finish(child, out);
    assert!(
        counters["answered"].as_u64().is_some_and(|n| n >= 4),
        "ARP + 3 echoes: {counters}"
    );
}
