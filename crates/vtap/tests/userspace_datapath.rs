//! The userspace backend on this machine's kernel (no vhost-net): frames
//! both ways between a namespace's host stack and a data-plane responder,
//! through vtap's rings served by the userspace device thread.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use vtap::datapath::{self, RxMode};
use vtap::registry::{error_chain, Backend, Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arp_icmp_and_jumbo_udp_through_the_userspace_backend() {
    // (EVENT_IDX, indirect, rx mode, checksum offload on the tap); the body
    // is the one every backend runs (common::echo_through).
    for (event_idx, indirect, mode, csum) in [
        (true, true, RxMode::Interrupt, false),
        (false, false, RxMode::Adaptive, true),
        (true, false, RxMode::Polling, true),
    ] {
        let run = common::echo_through(Backend::Userspace, event_idx, indirect, mode, csum).await;
        assert!(
            run.seen.max_num_buffers >= 4,
            "merged rx buffers: {:?}",
            run.seen
        );
        assert_eq!(
            run.state.features_negotiated & datapath::vhost::F_EVENT_IDX != 0,
            event_idx
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_runs_a_data_path_per_interface_and_shows_it() {
    let ns = TestNs::new("reg");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let info = reg
        .create(&CreateOptions {
            host_ns: Some(ns.name.clone()),
            host_ip4_addr: Some("198.18.1.1/24".into()),
            rx_ring_size: Some(512),
            tx_ring_size: Some(128),
            num_rx_queues: Some(2),
            num_tx_queues: Some(2),
            backend: Some("userspace".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let st = info.datapath.clone().expect("data path state in show");
    assert_eq!(st.backend, Backend::Userspace);
    assert_eq!((st.rx.len(), st.tx.len()), (2, 2));
    for q in &st.rx {
        let ring = q.ring.as_ref().expect("a ring");
        assert_eq!(ring.size, 512);
        assert_eq!(ring.avail_idx, 512, "rx ring filled at start");
        assert_eq!(ring.in_flight, 512);
    }
    assert!(st
        .tx
        .iter()
        .filter_map(|q| q.ring.as_ref())
        .all(|r| r.size == 128 && r.in_flight == 0));
    assert_eq!(
        st.features_negotiated & datapath::vhost::REQUIRED,
        datapath::vhost::REQUIRED
    );

    // The registry's own data path answers a ping (whichever rx queue the
    // kernel picks for the flow), and show counts it.
    let mac = info.hw_addr.expect("mac").octets();
    let shared = reg.datapath(&info.name).expect("tap").expect("running");
    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            common::respond_all(
                &mut vtap::registry::lock(&shared),
                mac,
                [198, 18, 1, 2],
                &stop,
            )
        });
        let ping = ns.exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "198.18.1.2"]);
        stop.store(true, Ordering::Relaxed);
        let seen = worker.join().expect("responder");
        assert!(
            ping.status.success(),
            "ping: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
        seen
    });
    let st = reg.get(&info.name).expect("get").datapath.expect("state");
    let rx: u64 = st.rx.iter().map(|q| q.counters.packets).sum();
    let tx: u64 = st.tx.iter().map(|q| q.counters.packets).sum();
    assert_eq!((rx, tx), (seen.frames, seen.answered));
    assert!(tx >= 3, "ARP + 2 echo replies: {seen:?}");

    // An idle data path sleeps: its backend threads use no CPU.
    let used = vtap_testkit::thread_ticks_in_a_second("vtap-user");
    // Clock ticks are 10 ms: a busy loop would show ~100 per thread.
    assert!(used <= 2, "idle backend used {used} ticks in 1 s");

    // The interface deleted behind vtap's back: the tap fd now answers
    // every poll with POLLERR, and the backend must not spin on it.
    ns.ip(&["link", "del", &info.host_if_name]);
    let used = vtap_testkit::thread_ticks_in_a_second("vtap-user");
    assert!(
        used <= 2,
        "backend of a deleted tap used {used} ticks in 1 s"
    );
    reg.delete(&info.name)
        .await
        .expect("delete tolerates a gone link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_gso_super_frames_both_ways_through_the_userspace_backend() {
    common::gso_through(Backend::Userspace, true).await;
}
