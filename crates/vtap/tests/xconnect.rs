//! The forwarding plane end to end: two namespaces, a tap in each, one vtap
//! cross-connect between them. Ping, then a TCP transfer whose bytes are
//! hashed on both ends, with GSO on both taps (super-frames must cross as
//! one frame). Addresses: 198.18.0.0/24 only.

mod common;

use vtap::forward::Forwarder;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::{CreateOptions, TapInfo};
use vtap_testkit::TestNs;

async fn tap(reg: &mut Registry, ns: &TestNs, addr: &str) -> TapInfo {
    reg.create(&CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_ip4_addr: Some(addr.into()),
        gso: true,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_a_hashed_tcp_transfer_cross_a_vtap_xconnect() {
    let (ns_a, ns_b) = (TestNs::new("xa"), TestNs::new("xb"));
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let a = tap(&mut reg, &ns_a, "198.18.0.1/24").await;
    let b = tap(&mut reg, &ns_b, "198.18.0.2/24").await;
    let mut fwd = Forwarder::new(1).expect("forwarder");

    // Refusals first.
    let e = fwd
        .xconnect(reg.end("tap0").expect("end"), reg.end("0").expect("end"))
        .expect_err("self");
    assert!(e.to_string().contains("with itself"), "{e}");
    let x = fwd
        .xconnect(
            reg.end(&a.name).expect("end"),
            reg.end(&b.name).expect("end"),
        )
        .expect("xconnect");
    assert_eq!((x.a.as_str(), x.b.as_str()), ("tap0", "tap1"));
    let e = fwd
        .xconnect(
            reg.end(&b.name).expect("end"),
            reg.end(&a.name).expect("end"),
        )
        .expect_err("busy");
    assert!(
        e.to_string().contains("already cross-connected with tap0"),
        "{e}"
    );

    let ping = ns_a.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // Capture what tap0 receives during the transfer (pcap, read back by
    // tcpdump below): GSO super-frames must be recorded whole.
    let dir = tempfile_dir();
    let pcap = dir.join("rx.pcap");
    let writer = reg
        .start_capture(&a.name, vtap::datapath::capture::Direction::Rx, Some(40))
        .expect("capture")
        .spawn_writer(std::fs::File::create(&pcap).expect("pcap file"));

    // 64 MB over TCP, hashed on both ends.
    common::hashed_transfer(&ns_a, &ns_b, "198.18.0.2", 64 << 20);

    // GSO super-frames crossed as single frames: the data plane saw frames
    // far larger than the 1500-byte MTU.
    let st = reg.get(&a.name).expect("get").datapath.expect("state");
    let (pkts, bytes) = st.rx.iter().fold((0, 0), |(p, b), q| {
        (p + q.counters.packets, b + q.counters.bytes)
    });
    assert!(
        bytes / pkts.max(1) > 3000,
        "average frame {} bytes over {pkts} frames",
        bytes / pkts.max(1)
    );

    // The stream ended by itself once the count was reached.
    writer.join().expect("writer").expect("written");
    let dump = vtap_testkit::run_ok("tcpdump", &["-nr", pcap.to_str().expect("utf8")]);
    let lines: Vec<&str> = dump.lines().collect();
    assert_eq!(lines.len(), 40, "the count was honoured: {dump}");
    let big = lines
        .iter()
        .filter_map(|l| {
            l.rsplit_once("length ")
                .and_then(|(_, n)| n.trim().parse::<usize>().ok())
        })
        .filter(|&n| n > 1500)
        .count();
    assert!(big > 0, "super-frames recorded whole: {dump}");
    let _ = std::fs::remove_dir_all(&dir);

    // Removing the xconnect cuts the path.
    fwd.remove(a.id, &a.name).expect("remove");
    assert!(fwd.list().is_empty());
    let ping = ns_a.exec("ping", &["-c", "1", "-W", "1", "198.18.0.2"]);
    assert!(!ping.status.success(), "no path without the xconnect");
    drop(fwd);
    for t in [&a, &b] {
        reg.delete(&t.name).await.expect("delete");
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vtap-xc-{}", vtap_testkit::unique()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tun_to_tun_cross_connect_carries_ip() {
    let (ns_a, ns_b) = (TestNs::new("ta"), TestNs::new("tb"));
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let tun = |ns: &TestNs, addr: &str| CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_ip4_addr: Some(addr.into()),
        tun: true,
        ..Default::default()
    };
    let a = reg
        .create(&tun(&ns_a, "198.18.7.1/24"))
        .await
        .expect("tun a");
    let b = reg
        .create(&tun(&ns_b, "198.18.7.2/24"))
        .await
        .expect("tun b");
    let tap = reg
        .create(&CreateOptions {
            host_ns: Some(ns_a.name.clone()),
            ..Default::default()
        })
        .await
        .expect("tap");
    let mut fwd = Forwarder::new(1).expect("forwarder");
    let e = fwd
        .xconnect(
            reg.end(&a.name).expect("end"),
            reg.end(&tap.name).expect("end"),
        )
        .expect_err("L3 with L2");
    assert!(e.to_string().contains("TAP (L2) and a TUN (L3)"), "{e}");
    fwd.xconnect(
        reg.end(&a.name).expect("end"),
        reg.end(&b.name).expect("end"),
    )
    .expect("xconnect");
    // No ARP on an L3 link: IP straight across.
    let ping = ns_a.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.7.2"]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    drop(fwd);
    for t in [&a, &b, &tap] {
        reg.delete(&t.name).await.expect("delete");
    }
}

/// 200 small UDP datagrams wait in a's tap before the cross-connect exists,
/// so the worker's first burst holds them all. Toward b (USO, gro-coalesce)
/// they are merged, but never into a super-frame the kernel refuses (more
/// than `UDP_MAX_SEGMENTS` datagrams: `EINVAL`, every datagram lost; found
/// by the small-packet benchmark). Every datagram arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_small_datagrams_is_coalesced_within_the_kernels_limit() {
    use std::net::UdpSocket;
    use std::time::Duration;
    use vtap::netns::{Netns, NetnsSpec};

    let (ns_a, ns_b) = (TestNs::new("ua"), TestNs::new("ub"));
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let mut taps = vec![];
    for (ns, addr) in [(&ns_a, "198.18.7.1/24"), (&ns_b, "198.18.7.2/24")] {
        let t = reg
            .create(&CreateOptions {
                host_ns: Some(ns.name.clone()),
                host_ip4_addr: Some(addr.into()),
                gso: true,
                gro_coalesce: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        taps.push(t);
    }
    let (a, b) = (&taps[0], &taps[1]);
    // No ARP before the path exists: b's address is resolved statically.
    let b_mac = b.host_mac_addr.expect("mac").to_string();
    ns_a.ip(&[
        "neigh",
        "add",
        "198.18.7.2",
        "lladdr",
        &b_mac,
        "dev",
        &a.host_if_name,
    ]);
    let open = |ns: &TestNs, addr: &str| {
        Netns::open(&NetnsSpec::Name(ns.name.clone()))
            .expect("netns")
            .run_in(|| UdpSocket::bind(addr))
            .expect("enter")
            .expect("bind")
    };
    let rx = open(&ns_b, "198.18.7.2:6001");
    rx.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let tx = open(&ns_a, "198.18.7.1:0");
    const N: usize = 200;
    for i in 0..N {
        let mut d = [0u8; 18];
        d[..8].copy_from_slice(&(i as u64).to_le_bytes());
        tx.send_to(&d, "198.18.7.2:6001").expect("send");
    }
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.xconnect(reg.end(&a.name).expect("a"), reg.end(&b.name).expect("b"))
        .expect("xconnect");
    let mut seen = [false; N];
    let mut buf = [0u8; 64];
    while let Ok(n) = rx.recv(&mut buf) {
        assert_eq!(n, 18, "datagrams keep their size");
        let i = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        seen[usize::try_from(i).expect("index")] = true;
        if seen.iter().all(|s| *s) {
            break;
        }
    }
    let st = reg.get(&b.name).expect("b").datapath.expect("state");
    let lost = seen.iter().filter(|s| !**s).count();
    assert_eq!(
        lost, 0,
        "toward b: {:?} {:?}",
        st.offload, st.tx[0].counters
    );
    assert!(st.offload.coalesced > 0, "merged: {:?}", st.offload);
    assert_eq!(
        st.tx[0].counters.drop_io_error, 0,
        "{:?}",
        st.tx[0].counters
    );
    drop(fwd);
    for t in [a, b] {
        reg.delete(&t.name).await.expect("delete");
    }
}
