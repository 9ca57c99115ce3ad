//! An L2 bridge domain end to end: three namespaces, a tap in each, one vtap
//! bridge. Every pair pings (ARP broadcasts are flooded, replies learned),
//! and the MAC table holds each host-side MAC on its own interface.
//! Addresses: 198.18.4.0/24 only.

mod common;

use vtap::forward::Forwarder;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

/// A tap in each namespace, the i-th with address `NET.(i+1)/24`.
async fn taps_in(reg: &mut Registry, nss: &[TestNs], net: &str) -> Vec<vtap::TapInfo> {
    let mut taps = vec![];
    for (i, ns) in nss.iter().enumerate() {
        let info = reg
            .create(&CreateOptions {
                host_ns: Some(ns.name.clone()),
                host_ip4_addr: Some(format!("{net}.{}/24", i + 1)),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        taps.push(info);
    }
    taps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_namespaces_on_one_bridge_reach_each_other() {
    let nss = [TestNs::new("b1"), TestNs::new("b2"), TestNs::new("b3")];
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let taps = taps_in(&mut reg, &nss, "198.18.4").await;
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
    let writer = reg
        .start_capture("tap2", vtap::datapath::capture::Direction::Tx, None)
        .expect("capture")
        .spawn_writer(std::fs::File::create(&pcap).expect("pcap file"));
    let out = nss[0].exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "198.18.4.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    reg.stop_capture("tap2").expect("stop");
    writer.join().expect("writer").expect("written");
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

/// A host side that sends from 40 000 source MACs cannot grow the table
/// past the bridge's limit; the refusals are counted, and the frames are
/// still flooded (they reach the other port). Learned entries age out after
/// 300 s of the bridge's clock (a clock moved by hand here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learn_limit_bounds_the_table_and_entries_age_out() {
    use std::sync::Arc;
    use std::time::Duration;
    use vtap::netns::{Netns, NetnsSpec};
    use vtap_testkit::packet::{PacketSocket, VNET_HDR_LEN};

    let nss = [TestNs::new("bl1"), TestNs::new("bl2")];
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let taps = taps_in(&mut reg, &nss, "198.18.5").await;
    let clock = Arc::new(vtap::forward::ManualClock::default());
    let mut fwd = Forwarder::with_clock(1, clock.clone()).expect("forwarder");
    let e = fwd.bridge_create_with("bdl", Some(0)).expect_err("limit 0");
    assert!(e.to_string().contains("mac-limit '0'"), "{e}");
    let info = fwd.bridge_create_with("bdl", Some(1000)).expect("create");
    assert_eq!(info.mac_limit, 1000);
    for t in &taps {
        fwd.bridge_add("bdl", reg.end(&t.name).expect("end"))
            .expect("add");
    }
    // 40 000 frames to an unknown unicast MAC, each from a new source.
    let sock = Netns::open(&NetnsSpec::Name(nss[0].name.clone()))
        .expect("netns")
        .run_in(|| PacketSocket::bind(taps[0].host_ifindex))
        .expect("enter")
        .expect("packet socket");
    const N: u32 = 40_000;
    for i in 0..N {
        let b = i.to_be_bytes();
        let mut f = vec![0x02, 0xee, 0, 0, 0, 1, 0x02, 0x77, b[0], b[1], b[2], b[3]];
        f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
        f.resize(60, 0);
        sock.send(&[0; VNET_HDR_LEN], &f).expect("send");
    }
    // The kernel may drop some of the burst before vtap reads it (the tap's
    // queue); every frame vtap did read must have been flooded.
    let counts = |reg: &Registry| {
        let rx = reg.get(&taps[0].name).expect("get").datapath.expect("dp");
        let tx = reg.get(&taps[1].name).expect("get").datapath.expect("dp");
        (
            rx.accounting,
            tx.accounting.tx.offered,
            tx.accounting.rx.received,
        )
    };
    let settled = |reg: &Registry| {
        let before = counts(reg);
        std::thread::sleep(Duration::from_millis(300));
        before == counts(reg)
    };
    assert!(vtap_testkit::wait_until(Duration::from_secs(10), || {
        settled(&reg)
    }));
    let (acc, flooded, other_received) = counts(&reg);
    assert!(acc.rx_balanced, "{acc:?}");
    assert!(acc.rx.received > 5000, "most of the burst read: {acc:?}");
    assert_eq!(acc.rx.forwarded, acc.rx.received, "all flooded: {acc:?}");
    assert_eq!(flooded, acc.rx.forwarded, "to the other port");
    let bd = fwd.bridge("bdl").expect("show");
    assert_eq!(bd.macs.len(), 1000, "the table stops at its limit");
    // Each frame is at most one learn or one refusal, whichever port it
    // came from (the other host side sends a few frames of its own, which
    // may take a slot of the table first); every frame from the first port
    // beyond the 1000 the table holds was refused (give or take that host
    // side's own few frames, which repeat one source).
    let all = acc.rx.received + other_received;
    assert!(
        bd.learn_refused + 1000 <= all && bd.learn_refused + 1000 + 10 >= acc.rx.received,
        "refusals counted: {} of {} (+{} from the other port)",
        bd.learn_refused,
        acc.rx.received,
        other_received
    );

    // Aging: 299 s on, the entries are still there; at 300 s they are gone
    // from show, and the worker's sweep removes them.
    clock.advance(Duration::from_secs(299));
    assert_eq!(fwd.bridge("bdl").expect("show").macs.len(), 1000);
    clock.advance(Duration::from_secs(1));
    assert!(fwd.bridge("bdl").expect("show").macs.is_empty(), "aged out");
    // A ping relearns both ends (and the limit no longer gets in the way).
    let out = nss[0].exec("ping", &["-c", "1", "-W", "2", "198.18.5.2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bd = fwd.bridge("bdl").expect("show");
    for t in &taps {
        let mac = t.host_mac_addr.expect("mac").to_string();
        assert!(
            bd.macs.iter().any(|e| e.mac == mac && e.iface == t.name),
            "{bd:?}"
        );
    }
    for t in &taps {
        fwd.bridge_remove("bdl", t.id, &t.name).expect("remove");
    }
    fwd.bridge_delete("bdl").expect("delete");
    drop(fwd);
    for t in &taps {
        reg.delete(&t.name).await.expect("delete");
    }
}
