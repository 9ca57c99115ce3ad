//! The direct backend on this machine's kernel: the data plane reads and
//! writes the tap fds itself, no ring in between. Frames both ways in every
//! rx mode, GSO super-frames whole, an idle forwarder asleep, a tap deleted
//! under it neither spun on nor fatal, and fewer fds than the ring backends.
//! Addresses: 198.18.0.0/15 only.

mod common;

use std::time::Duration;

use vtap::datapath::RxMode;
use vtap::forward::Forwarder;
use vtap::registry::{error_chain, Backend, Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

/// One test counts this whole process's fds: every test here holds this
/// lock, so that no other opens or closes fds while it counts.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arp_icmp_and_jumbo_udp_through_the_direct_backend() {
    let _one = ONE_AT_A_TIME.lock().await;
    // (rx mode, checksum offload on the tap); the body is the one every
    // backend runs (common::echo_through).
    for (mode, csum) in [
        (RxMode::Interrupt, false),
        (RxMode::Adaptive, true),
        (RxMode::Polling, true),
    ] {
        let run = common::echo_through(Backend::Direct, true, true, mode, csum).await;
        let st = &run.state;
        assert_eq!(
            run.seen.max_num_buffers, 1,
            "a frame is read whole: {:?}",
            run.seen
        );
        assert_eq!((st.features_offered, st.features_negotiated), (0, 0));
        assert!(
            st.rx[0].ring.is_none() && st.tx[0].ring.is_none(),
            "no rings"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_gso_super_frames_both_ways_through_the_direct_backend() {
    let _one = ONE_AT_A_TIME.lock().await;
    common::gso_through(Backend::Direct, true).await;
}

/// The io-uring backend (the direct engine, reads and writes batched
/// through io_uring) carries the same traffic on this kernel: a tap read
/// with `RWF_NOWAIT` ends a batch with EAGAIN rather than waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_traffic_through_the_io_uring_backend() {
    let _one = ONE_AT_A_TIME.lock().await;
    for (mode, csum) in [(RxMode::Interrupt, false), (RxMode::Polling, true)] {
        let run = common::echo_through(Backend::IoUring, true, true, mode, csum).await;
        assert_eq!(run.state.backend, Backend::IoUring);
        assert_eq!(run.seen.max_num_buffers, 1, "{:?}", run.seen);
    }
    common::gso_through(Backend::IoUring, true).await;
}

/// Open fds of this process, once background tasks settled.
fn fds() -> usize {
    std::thread::sleep(Duration::from_millis(100));
    std::fs::read_dir("/proc/self/fd").expect("fds").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_tap_costs_fewer_fds_than_a_ring_backend() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNs::new("dfd");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    // The first tap in a namespace also opens what the namespace needs (its
    // netlink sockets); it stays while the others are measured.
    let warm = reg
        .create(&CreateOptions {
            host_ns: Some(ns.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let mut cost = vec![];
    for backend in ["userspace", "direct", "userspace", "direct"] {
        let before = fds();
        let info = reg
            .create(&CreateOptions {
                host_ns: Some(ns.name.clone()),
                backend: Some(backend.into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        cost.push(fds() - before);
        reg.delete(&info.name).await.expect("delete");
    }
    reg.delete(&warm.name).await.expect("delete");
    eprintln!("fds per tap (userspace, direct, twice): {cost:?}");
    // The rings' four eventfds (kick and call, rx and tx), the backend
    // thread's copy of the tap fd and the data path's duplicate are gone.
    let (user, direct) = (cost[0].min(cost[2]), cost[1].max(cost[3]));
    assert!(direct + 5 <= user, "{cost:?}");
    // A direct tap is its queue fd, shared by the registry and the data
    // path (its named namespace is opened again when needed): at most two
    // even with another test's fd landing in between.
    assert!(direct <= 2, "{cost:?}");
}

/// Whether this process holds an fd on the namespace file of `ns`.
fn holds_namespace(ns: &TestNs) -> bool {
    let inode = format!("net:[{}]", ns.inode());
    std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .any(|l| {
            let l = l.to_string_lossy();
            l == inode || l.ends_with(&format!("/netns/{}", ns.name))
        })
}

/// A tap in a named namespace keeps no handle on the namespace file (a
/// bind mount keeps the namespace, and with a namespace per pod that is an
/// fd per interface saved): a change opens it again by name and checks it
/// is the same namespace; one made anew under the name is refused, naming
/// why; the tap can still be deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_holds_no_handle_on_its_named_namespace_and_follows_it() {
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = TestNs::new("dnh");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let info = reg
        .create(&CreateOptions {
            host_ns: Some(ns.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert!(!holds_namespace(&ns), "no fd on the namespace file");
    reg.set_mtu(&info.name, 1400)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let link = ns.link(&info.host_if_name).expect("link");
    assert_eq!(link["mtu"], 1400, "set in the namespace, read back");
    assert!(!holds_namespace(&ns), "the handle closed again");

    // The name now names another namespace.
    vtap_testkit::run_ok("ip", &["netns", "del", &ns.name]);
    vtap_testkit::run_ok("ip", &["netns", "add", &ns.name]);
    let err = reg.set_mtu(&info.name, 1300).await.expect_err("replaced");
    let text = error_chain(&err);
    assert!(text.contains("no longer the namespace"), "{text}");
    reg.delete(&info.name)
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert!(reg.list().is_empty());
}

/// Clock ticks the forwarding workers use in one second.
fn ticks_in_a_second() -> u64 {
    vtap_testkit::thread_ticks_in_a_second("vtap-fwd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_on_direct_taps_sleeps_when_idle_and_survives_a_deleted_tap() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (ns_a, ns_b) = (TestNs::new("dia"), TestNs::new("dib"));
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let mut taps = vec![];
    for (ns, addr) in [(&ns_a, "198.18.4.1/24"), (&ns_b, "198.18.4.2/24")] {
        let info = reg
            .create(&CreateOptions {
                host_ns: Some(ns.name.clone()),
                host_ip4_addr: Some(addr.into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        assert_eq!(info.backend, Backend::Direct, "auto without vhost-net");
        taps.push(info);
    }
    let (a, b) = (&taps[0], &taps[1]);
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.xconnect(reg.end(&a.name).expect("a"), reg.end(&b.name).expect("b"))
        .expect("xconnect");
    let ping = ns_a.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.4.2"]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // Idle: the worker sleeps in poll(2) on the tap fds.
    let used = ticks_in_a_second();
    assert!(used <= 2, "idle forwarder used {used} ticks in 1 s");

    // b's interface deleted behind vtap's back: its fd now answers every
    // poll with POLLERR and every read with EBADFD. The worker must neither
    // spin on it nor stop serving; what a sends toward b is counted as a
    // write error, not lost silently.
    ns_b.ip(&["link", "del", &b.host_if_name]);
    assert!(
        ns_b.link(&b.host_if_name).is_none(),
        "the kernel deleted it"
    );
    let used = ticks_in_a_second();
    assert!(
        used <= 2,
        "forwarder with a deleted tap used {used} ticks in 1 s"
    );
    let lost = ns_a.exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", "198.18.4.2"]);
    assert!(!lost.status.success(), "nothing answers any more");
    let st = reg.get(&b.name).expect("b").datapath.expect("state");
    assert!(
        st.tx[0].counters.drop_io_error > 0,
        "frames toward the deleted tap are counted: {:?}",
        st.tx[0].counters
    );
    let used = ticks_in_a_second();
    assert!(used <= 2, "after the failed writes: {used} ticks in 1 s");

    drop(fwd);
    reg.delete(&a.name).await.expect("delete a");
    reg.delete(&b.name)
        .await
        .expect("delete tolerates a gone link");
}
