//! Every frame that enters vtap is delivered or counted under a named
//! reason, also when things go wrong under traffic. A chaos run: ping floods
//! through a cross-connect and a three-port bridge while one host side goes
//! down and up, one interface is deleted from the kernel behind vtap's back,
//! and a ring-backed interface with small rings is flooded. Afterwards, for
//! every interface:
//!
//! - vtap's ledger balances in both directions (received = forwarded + rx
//!   drops by reason; what the offload stage handed the queues = sent + tx
//!   drops by reason);
//! - and, read from the kernel, independently of vtap: every frame the host
//!   side sent into the tap (the tap's `tx_packets`, which the kernel counts
//!   when the frame is read) is one vtap took, and every frame vtap says it
//!   wrote is one the kernel received (`rx_packets`), for the taps served
//!   directly.
//!
//! Addresses: 198.18.9.0/24 and 198.18.10.0/24 only.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vtap::forward::Forwarder;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::{CreateOptions, TapInfo};
use vtap_testkit::{wait_until, TestNs};

async fn tap(reg: &mut Registry, ns: &TestNs, addr: &str, backend: &str) -> TapInfo {
    // No IPv6 in these namespaces: no router solicitations or DAD arriving
    // while the counters are compared.
    for key in [
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ] {
        let out = ns.exec("sysctl", &["-qw", key]);
        assert!(
            out.status.success(),
            "sysctl {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    reg.create(&CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_ip4_addr: Some(addr.into()),
        backend: Some(backend.into()),
        rx_ring_size: (backend == "userspace").then_some(64),
        tx_ring_size: (backend == "userspace").then_some(64),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

fn flood(ns: &TestNs, to: &str) -> Child {
    Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "ping", "-q", "-f", "-s", "1200", "-w", "3", to,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping -f")
}

/// The kernel's (tx_packets, rx_packets) of a host side.
fn kernel_counts(ns: &TestNs, ifname: &str) -> (u64, u64) {
    let v = ns.ip_json(&["-s", "link", "show", "dev", ifname]);
    let s = &v[0]["stats64"];
    let n = |d: &str| s[d]["packets"].as_u64().expect("packets");
    (n("tx"), n("rx"))
}

/// vtap's (frames read, frames written) of an interface, from its queues.
fn vtap_counts(info: &TapInfo) -> (u64, u64) {
    let dp = info.datapath.as_ref().expect("data path");
    let read = dp
        .rx
        .iter()
        .map(|q| q.counters.packets + q.counters.drop_bad_header + q.counters.drop_truncated)
        .sum();
    let written = dp.tx.iter().map(|q| q.counters.packets).sum();
    (read, written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chaos_every_frame_is_forwarded_or_counted_by_reason() {
    let nss: Vec<TestNs> = ["ca", "cb", "cc", "cd", "ce"]
        .iter()
        .map(|t| TestNs::new(t))
        .collect();
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let a = tap(&mut reg, &nss[0], "198.18.9.1/24", "direct").await;
    let b = tap(&mut reg, &nss[1], "198.18.9.2/24", "direct").await;
    let c = tap(&mut reg, &nss[2], "198.18.10.1/24", "direct").await;
    let d = tap(&mut reg, &nss[3], "198.18.10.2/24", "userspace").await;
    let e = tap(&mut reg, &nss[4], "198.18.10.3/24", "direct").await;
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.xconnect(
        reg.end(&a.name).expect("end"),
        reg.end(&b.name).expect("end"),
    )
    .expect("xconnect");
    fwd.bridge_create("chaos").expect("bridge");
    for t in [&c, &d, &e] {
        fwd.bridge_add("chaos", reg.end(&t.name).expect("end"))
            .expect("add");
    }

    let mut pings = vec![
        flood(&nss[0], "198.18.9.2"),
        flood(&nss[1], "198.18.9.1"),
        flood(&nss[2], "198.18.10.2"),
        flood(&nss[3], "198.18.10.3"),
        flood(&nss[4], "198.18.10.1"),
    ];
    std::thread::sleep(Duration::from_millis(600));
    // A link down and up under traffic: writes toward it fail meanwhile.
    nss[1].ip(&["link", "set", "dev", &b.host_if_name, "down"]);
    std::thread::sleep(Duration::from_millis(400));
    nss[1].ip(&["link", "set", "dev", &b.host_if_name, "up"]);
    // An interface deleted from the kernel behind vtap's back, still a
    // bridge port: floods toward it fail from now on.
    std::thread::sleep(Duration::from_millis(300));
    nss[4].ip(&["link", "del", "dev", &e.host_if_name]);
    for p in &mut pings {
        let _ = p.wait();
    }

    // Quiet: wait for the counters to settle, then compare.
    let settled = |reg: &Registry| {
        let before: Vec<_> = reg.list().iter().map(vtap_counts).collect();
        std::thread::sleep(Duration::from_millis(200));
        let after: Vec<_> = reg.list().iter().map(vtap_counts).collect();
        before == after
    };
    assert!(
        wait_until(Duration::from_secs(10), || settled(&reg)),
        "traffic stopped"
    );

    let mut saw_io_errors = 0;
    for (t, ns) in [
        (&a, &nss[0]),
        (&b, &nss[1]),
        (&c, &nss[2]),
        (&d, &nss[3]),
        (&e, &nss[4]),
    ] {
        let info = reg.get(&t.name).expect("get");
        let dp = info.datapath.as_ref().expect("data path");
        let acc = dp.accounting;
        assert!(acc.rx_balanced, "{}: rx ledger {acc:?}", t.name);
        assert!(acc.tx_balanced, "{}: tx ledger {acc:?}", t.name);
        let delivered: u64 = dp.rx.iter().map(|q| q.counters.packets).sum();
        assert_eq!(
            acc.rx.received, delivered,
            "{}: every delivered frame entered the ledger",
            t.name
        );
        assert!(
            acc.rx.received > 1000,
            "{}: traffic flowed: {acc:?}",
            t.name
        );
        saw_io_errors += dp.tx.iter().map(|q| q.counters.drop_io_error).sum::<u64>();
        if t.name == e.name {
            continue; // its host side no longer exists
        }
        let (k_tx, k_rx) = kernel_counts(ns, &t.host_if_name);
        let (read, written) = vtap_counts(&info);
        assert_eq!(k_tx, read, "{}: frames the kernel handed vtap", t.name);
        if info.backend == vtap::registry::Backend::Direct {
            assert_eq!(
                k_rx, written,
                "{}: frames vtap wrote, as the kernel counts them",
                t.name
            );
        }
    }
    assert!(
        saw_io_errors > 0,
        "the chaos was felt: writes toward a down or deleted link failed"
    );

    fwd.remove(a.id, &a.name).expect("unxconnect");
    for t in [&c, &d, &e] {
        fwd.bridge_remove("chaos", t.id, &t.name).expect("remove");
    }
    drop(fwd);
    for t in [&a, &b, &c, &d] {
        reg.delete(&t.name).await.expect("delete");
    }
    // E's link is gone already: deleting it from vtap must still work.
    let _ = reg.delete(&e.name).await;
}
