//! An L2 bridge domain end to end: three namespaces, a tap in each, one vtap
//! bridge. Every pair pings (ARP broadcasts are flooded, replies learned),
//! and the MAC table holds each host-side MAC on its own interface.
//! Addresses: 198.18.4.0/24 only.

mod common;

use vtap::forward::Forwarder;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_namespaces_on_one_bridge_reach_each_other() {
    let nss = [TestNs::new("b1"), TestNs::new("b2"), TestNs::new("b3")];
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let mut taps = vec![];
    for (i, ns) in nss.iter().enumerate() {
        let info = reg
            .create(&CreateOptions {
                host_ns: Some(ns.name.clone()),
                host_ip4_addr: Some(format!("198.18.4.{}/24", i + 1)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        taps.push(info);
    }
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.bridge_create("bd1").expect("create");
    for (t, want) in [("bd 1", "a name is"), ("bd1", "already exists")] {
        let e = fwd.bridge_create(t).expect_err(want);
        assert!(e.to_string().contains(want), "{e}");
    }
    for t in &taps {
        fwd.bridge_add("bd1", reg.end(&t.name).expect("end"))
            .expect("add");
    }
    let e = fwd
        .xconnect(reg.end("tap0").expect("end"), reg.end("tap1").expect("end"))
        .expect_err("busy");
    assert!(e.to_string().contains("bridge bd1"), "{e}");
    assert_eq!(
        fwd.bridge("bd1").expect("show").interfaces,
        ["tap0", "tap1", "tap2"]
    );

    // Watch what the bridge sends to tap2 while ns0 first talks to ns1:
    // the ARP broadcast must be flooded there, the unicast echo (to a MAC
    // learned on tap1 by then) must not.
    let dir = std::env::temp_dir().join(format!("vtap-bd-{}", vtap_testkit::unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pcap = dir.join("tap2.pcap");
    reg.start_capture("tap2", &pcap, vtap::datapath::capture::Direction::Tx, None)
        .expect("capture");
    let out = nss[0].exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "198.18.4.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    reg.stop_capture("tap2").expect("stop");
    let dump = vtap_testkit::run_ok("tcpdump", &["-nr", pcap.to_str().expect("utf8")]);
    assert!(
        dump.contains("ARP, Request who-has 198.18.4.2"),
        "broadcast flooded: {dump}"
    );
    assert!(
        !dump.contains("ICMP echo"),
        "learned unicast not flooded: {dump}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // nss[i] holds 198.18.4.(i+1).
    for (from, to) in [(0, 2), (0, 3), (1, 3), (2, 1)] {
        let out = nss[from].exec(
            "ping",
            &["-c", "2", "-i", "0.2", "-W", "2", &format!("198.18.4.{to}")],
        );
        assert!(
            out.status.success(),
            "ns {from} -> .{to}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let bd = fwd.bridge("bd1").expect("show");
    for t in &taps {
        let mac = t.host_mac_addr.expect("mac").to_string();
        let entry = bd
            .macs
            .iter()
            .find(|e| e.mac == mac)
            .unwrap_or_else(|| panic!("{mac} learned: {bd:?}"));
        assert_eq!(entry.iface, t.name, "learned on its own port");
    }

    // A hashed TCP transfer across the bridge.
    common::hashed_transfer(&nss[0], &nss[2], "198.18.4.3", 16 << 20);

    let e = fwd.bridge_delete("bd1").expect_err("not empty");
    assert!(e.to_string().contains("remove them first"), "{e}");
    fwd.bridge_remove("bd1", taps[2].id, &taps[2].name)
        .expect("remove");
    let out = nss[0].exec("ping", &["-c", "1", "-W", "1", "198.18.4.3"]);
    assert!(!out.status.success(), "removed port is cut off");
    for t in &taps[..2] {
        fwd.bridge_remove("bd1", t.id, &t.name).expect("remove");
    }
    fwd.bridge_delete("bd1").expect("delete");
    assert!(fwd.bridges().is_empty());
    drop(fwd);
    for t in &taps {
        reg.delete(&t.name).await.expect("delete");
    }
}
