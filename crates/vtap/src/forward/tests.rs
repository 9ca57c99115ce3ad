//! The forwarding plane without root: workers, cross-connects and bridges
//! over in-memory ports ([`crate::port::fake::FakePort`]), with the ledger
//! checked after each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::port::fake::FakePort;

const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const BCAST: [u8; 6] = [0xff; 6];

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5, tag]);
    f.resize(60, tag);
    f
}

type Fake = Arc<Mutex<FakePort>>;

fn port(id: u32) -> (Fake, End) {
    let (fake, port) = FakePort::shared();
    let end = End {
        id,
        name: format!("fake{id}"),
        tun: false,
        datapath: Some(port),
        split_horizon: 0,
    };
    (fake, end)
}

fn f(p: &Fake) -> std::sync::MutexGuard<'_, FakePort> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until `cond` holds on the fakes (a worker runs on its own thread).
fn until(cond: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !cond() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn balanced(p: &Fake) {
    let acc = f(p).accounting();
    assert!(acc.rx_balanced && acc.tx_balanced, "{acc:?}");
}

/// On one worker, and with its two directions on two workers (each
/// locking the ports per burst only).
#[test]
fn a_cross_connect_moves_frames_both_ways_and_accounts_for_each() {
    for workers in [1, 2] {
        a_cross_connect_on(workers);
    }
}

fn a_cross_connect_on(workers: usize) {
    let mut fwd = Forwarder::new(workers).expect("forwarder");
    fwd.set_split_directions(true);
    let ((fa, a), (fb, b)) = (port(1), port(2));
    let x = fwd.xconnect(a, b).expect("xconnect");
    assert_eq!((x.worker, x.reverse_worker), (0, workers - 1));
    for i in 0..10 {
        f(&fa).push_rx(frame(B, A, i));
    }
    until(|| f(&fb).sent.len() == 10);
    for i in 0..5 {
        f(&fb).push_rx(frame(A, B, i));
    }
    until(|| f(&fa).sent.len() == 5);
    let tags: Vec<u8> = f(&fb).sent.iter().map(|(_, d)| d[14]).collect();
    assert_eq!(tags, (0..10).collect::<Vec<u8>>(), "in order, whole");
    let l = f(&fa).ledger();
    assert_eq!((l.rx.received, l.rx.forwarded, l.tx.offered), (10, 10, 5));
    balanced(&fa);
    balanced(&fb);
    fwd.remove(1, "fake1").expect("remove");
}

#[test]
fn a_full_egress_drops_what_does_not_fit_and_counts_it() {
    let mut fwd = Forwarder::new(1).expect("forwarder");
    let ((fa, a), (fb, b)) = (port(1), port(2));
    f(&fb).set_room(Some(3));
    fwd.xconnect(a, b).expect("xconnect");
    for i in 0..10 {
        f(&fa).push_rx(frame(B, A, i));
    }
    // (one lock per look: a guard lives to the end of its statement)
    let tx = || {
        let p = f(&fb);
        (p.tx.packets, p.tx.drop_no_free_slots)
    };
    until(|| tx().0 + tx().1 == 10);
    assert_eq!(tx(), (3, 7));
    balanced(&fa);
    balanced(&fb);
}

#[test]
fn a_bridge_floods_learns_forwards_filters_and_counts_runts() {
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.bridge_create("bd").expect("bridge");
    let ((fa, a), (fb, b), (fc, c)) = (port(1), port(2), port(3));
    for e in [a, b, c] {
        fwd.bridge_add("bd", e).expect("add");
    }
    // A broadcast from A: flooded to B and C, never back to A.
    f(&fa).push_rx(frame(BCAST, A, 1));
    until(|| f(&fb).sent.len() == 1 && f(&fc).sent.len() == 1);
    // B answers A (learned on port 0): to A only.
    f(&fb).push_rx(frame(A, B, 2));
    until(|| f(&fa).sent.len() == 1);
    // A to B (learned now): to B only; C sees nothing more.
    f(&fa).push_rx(frame(B, A, 3));
    until(|| f(&fb).sent.len() == 2);
    // A frame to a MAC learned on its own port is filtered; a runt dropped.
    f(&fa).push_rx(frame(A, C, 4));
    f(&fa).push_rx(vec![2; 10]);
    until(|| {
        let l = f(&fa).ledger().rx;
        l.drop_filtered + l.drop_runt == 2
    });
    assert_eq!(f(&fc).sent.len(), 1, "learned unicast is not flooded");
    let l = f(&fa).ledger().rx;
    assert_eq!(
        (l.received, l.forwarded, l.drop_filtered, l.drop_runt),
        (4, 2, 1, 1)
    );
    for p in [&fa, &fb, &fc] {
        balanced(p);
    }
    let bd = fwd.bridge("bd").expect("show");
    let learned: Vec<(String, String)> = bd
        .macs
        .iter()
        .map(|m| (m.mac.clone(), m.iface.clone()))
        .collect();
    assert_eq!(
        learned,
        [
            ("02:00:00:00:00:0a".to_string(), "fake1".to_string()),
            ("02:00:00:00:00:0b".to_string(), "fake2".to_string()),
            ("02:00:00:00:00:0c".to_string(), "fake1".to_string()),
        ]
    );
}

#[test]
fn a_bridge_of_one_port_drops_floods_as_no_port() {
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.bridge_create("solo").expect("bridge");
    let (fa, a) = port(1);
    fwd.bridge_add("solo", a).expect("add");
    f(&fa).push_rx(frame(BCAST, A, 1));
    until(|| f(&fa).ledger().rx.drop_no_port == 1);
    balanced(&fa);
}

/// Tunnels (split-horizon group 1) in a bridge with a local port: what a
/// tunnel brings is flooded to local ports only, never to the other
/// tunnels (each remote node floods to all the others itself: head-end
/// replication); what a local port floods goes to every tunnel; a unicast
/// from one tunnel to a MAC learned on another is dropped and counted.
#[test]
fn split_horizon_keeps_tunnels_from_feeding_each_other() {
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.bridge_create("bd").expect("bridge");
    let (fa, a) = port(1);
    let tunnel = |id| {
        let (fake, end) = port(id);
        (
            fake,
            End {
                split_horizon: 1,
                ..end
            },
        )
    };
    let ((ft1, t1), (ft2, t2)) = (tunnel(2), tunnel(3));
    for e in [a, t1, t2] {
        fwd.bridge_add("bd", e).expect("add");
    }
    // B's broadcast from tunnel 1: to the local port only.
    f(&ft1).push_rx(frame(BCAST, B, 1));
    until(|| f(&fa).sent.len() == 1);
    // A's broadcast: head-end replicated to both tunnels.
    f(&fa).push_rx(frame(BCAST, A, 2));
    until(|| f(&ft1).sent.len() == 1 && f(&ft2).sent.len() == 1);
    // C behind tunnel 2 sends to B (learned on tunnel 1): split horizon.
    f(&ft2).push_rx(frame(B, C, 3));
    until(|| f(&ft2).ledger().rx.drop_split_horizon == 1);
    // C's broadcast from tunnel 2: local port only, tunnel 1 sees nothing.
    f(&ft2).push_rx(frame(BCAST, C, 4));
    until(|| f(&fa).sent.len() == 2);
    assert_eq!(f(&ft1).sent.len(), 1, "nothing crossed between tunnels");
    assert_eq!(f(&ft2).sent.len(), 1);
    for p in [&fa, &ft1, &ft2] {
        balanced(p);
    }
}

#[test]
fn split_horizon_groups_table() {
    // (from, to, allowed)
    for (from, to, ok) in [
        (0, 0, true),
        (0, 1, true),
        (1, 0, true),
        (1, 1, false),
        (1, 2, true),
    ] {
        assert_eq!(split_horizon_allows(from, to), ok, "{from} -> {to}");
    }
}

/// A cross-connect goes to the least-loaded worker; with split directions
/// its two directions go to the two least-loaded (one worker: both there);
/// a bridge counts as two directions.
#[test]
fn work_is_placed_on_the_least_loaded_worker() {
    let place = |workers: usize, split: bool, xcs: u32| {
        let mut fwd = Forwarder::new(workers).expect("forwarder");
        fwd.set_split_directions(split);
        (0..xcs)
            .map(|i| {
                let ((_, a), (_, b)) = (port(10 * i + 1), port(10 * i + 2));
                let x = fwd.xconnect(a, b).expect("xconnect");
                (x.worker, x.reverse_worker)
            })
            .collect::<Vec<_>>()
    };
    // (workers, split, cross-connects, (worker, reverse worker) of each)
    type Row = (usize, bool, u32, &'static [(usize, usize)]);
    let table: [Row; 5] = [
        (1, true, 2, &[(0, 0), (0, 0)]),
        (2, true, 2, &[(0, 1), (0, 1)]),
        (3, true, 3, &[(0, 1), (2, 0), (1, 2)]),
        (2, false, 3, &[(0, 0), (1, 1), (0, 0)]),
        (3, false, 2, &[(0, 0), (1, 1)]),
    ];
    for (workers, split, xcs, want) in table {
        assert_eq!(
            place(workers, split, xcs),
            want,
            "{workers} workers, split {split}"
        );
    }
    let mut fwd = Forwarder::new(2).expect("forwarder");
    fwd.set_split_directions(true);
    let ((_, a), (_, b)) = (port(1), port(2));
    fwd.xconnect(a, b).expect("xconnect");
    assert_eq!(
        fwd.bridge_create("bd").expect("bridge").worker,
        0,
        "tie: lowest"
    );
    let ((_, c), (_, d)) = (port(3), port(4));
    let x = fwd.xconnect(c, d).expect("xconnect");
    assert_eq!(
        (x.worker, x.reverse_worker),
        (1, 0),
        "a bridge counts as load too"
    );
}

#[test]
fn refusals_and_their_classes() {
    use crate::kind::ErrorKind as K;
    let mut fwd = Forwarder::new(1).expect("forwarder");
    let ((_, a), (_, b), (_, c)) = (port(1), port(2), port(3));
    let same = fwd.xconnect(a.clone(), a.clone()).expect_err("self");
    let tun = End {
        tun: true,
        ..c.clone()
    };
    let mismatch = fwd
        .xconnect(b.clone(), tun.clone())
        .expect_err("L2 with L3");
    fwd.xconnect(a.clone(), b.clone()).expect("xconnect");
    let busy = fwd.xconnect(a.clone(), c.clone()).expect_err("busy");
    let none = fwd.remove(3, "fake3").expect_err("not connected");
    let name = fwd.bridge_create("a b").expect_err("bad name");
    let limit = fwd.bridge_create_with("bd", Some(0)).expect_err("limit 0");
    fwd.bridge_create("bd").expect("bridge");
    let exists = fwd.bridge_create("bd").expect_err("exists");
    let in_xc = fwd.bridge_add("bd", a).expect_err("cross-connected");
    let l3 = fwd.bridge_add("bd", tun).expect_err("tun");
    let missing = fwd.bridge_add("nobd", c).expect_err("no bridge");
    let window = fwd
        .set_poll_window(Duration::from_micros(10_001))
        .expect_err("window too long");
    assert_eq!(
        fwd.poll_window(),
        DEFAULT_POLL_WINDOW,
        "unchanged when refused"
    );
    fwd.set_poll_window(Duration::ZERO)
        .expect("zero: sleep at once");
    assert_eq!(fwd.poll_window(), Duration::ZERO);
    // (error, class, words)
    let table: Vec<(Error, K, &str)> = vec![
        (same, K::Invalid, "with itself"),
        (mismatch, K::Invalid, "cannot be cross-connected"),
        (busy, K::Conflict, "already cross-connected"),
        (none, K::NotFound, "not cross-connected"),
        (name, K::Invalid, "a name is"),
        (limit, K::Invalid, "mac-limit '0'"),
        (exists, K::Conflict, "already exists"),
        (in_xc, K::Conflict, "remove the xconnect first"),
        (l3, K::Invalid, "TUN"),
        (missing, K::NotFound, "no such bridge"),
        (window, K::Invalid, "poll-window-us '10001'"),
    ];
    for (e, kind, words) in table {
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
}

/// Frames 2 ms apart, as a request/response would come: with no poll
/// window the worker goes to sleep (arms its ports) after every one; with a
/// 10 ms window it keeps polling and sleeps only once they stop.
#[test]
fn the_poll_window_saves_the_sleep_between_frames() {
    let sleeps = |window: Duration| {
        let mut fwd = Forwarder::new(1).expect("forwarder");
        fwd.set_poll_window(window).expect("window");
        let ((fa, a), (fb, b)) = (port(1), port(2));
        fwd.xconnect(a, b).expect("xconnect");
        until(|| f(&fa).arms > 0);
        let before = f(&fa).arms;
        for i in 0..20u8 {
            f(&fa).push_rx(frame(B, A, i));
            until(|| f(&fb).sent.len() == usize::from(i) + 1);
            std::thread::sleep(Duration::from_millis(2));
        }
        let during = f(&fa).arms - before;
        // Once the frames stop, the worker sleeps again (no spinning when idle).
        let settled = f(&fa).arms;
        until(|| f(&fa).arms > settled);
        balanced(&fa);
        during
    };
    let without = sleeps(Duration::ZERO);
    let with = sleeps(Duration::from_millis(10));
    assert!(without >= 15, "a sleep after nearly every frame: {without}");
    assert!(with <= 2, "no sleep between frames: {with}");
}

/// `[forwarding] cpus`: each worker runs on its CPU only, as the kernel
/// says (`Cpus_allowed_list` of the thread); a CPU the process may not use
/// is refused, naming the worker and the CPU.
#[test]
fn pinned_workers_run_where_they_are_told() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let last = cpus - 1;
    let fwd = Forwarder::pinned(&[last]).expect("pinned");
    assert_eq!(fwd.cpus(), [last]);
    let allowed: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "vtap-fwd0")
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .filter_map(|st| {
            st.lines().find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_string())
            })
        })
        .collect();
    assert!(allowed.contains(&last.to_string()), "{allowed:?}");
    drop(fwd);
    let e = Forwarder::pinned(&[last, 4000]).expect_err("no such CPU");
    assert!(
        e.to_string().contains("worker 1 cannot run on CPU 4000"),
        "{e}"
    );
    assert_eq!(e.kind(), crate::kind::ErrorKind::Invalid);
}

fn mq_port(id: u32, queues: usize) -> (Fake, End) {
    let (fake, port) = FakePort::shared_with_queues(queues);
    let end = End {
        id,
        name: format!("fake{id}"),
        tun: false,
        datapath: Some(port),
        split_horizon: 0,
    };
    (fake, end)
}

/// Which worker read how many frames, once they have all arrived.
fn frames_per_worker(fwd: &Forwarder, before: &[u64]) -> Vec<u64> {
    fwd.worker_frames()
        .iter()
        .zip(before)
        .map(|(n, b)| n - b)
        .collect()
}

/// Queue pairs of a multi-queue cross-connect are spread over the workers
/// (rx and tx queue `q` of both ends on one worker), each worker reads only
/// its queues (its frame count says so), a queue pair moves by hand, and
/// what cannot be placed is refused naming why.
#[test]
fn rx_queues_are_placed_per_worker_and_move_by_hand() {
    use crate::kind::ErrorKind as K;
    let mut fwd = Forwarder::new(2).expect("forwarder");
    let ((fa, a), (fb, b)) = (mq_port(1, 2), mq_port(2, 2));
    let x = fwd.xconnect(a, b).expect("xconnect");
    fn workers(x: &Xconnect) -> Vec<(&str, usize, usize, bool)> {
        x.rx_placement
            .iter()
            .map(|p| (p.iface.as_str(), p.queue, p.worker, p.set))
            .collect()
    }
    assert_eq!(
        workers(&x),
        [
            ("fake1", 0, 0, false),
            ("fake1", 1, 1, false),
            ("fake2", 0, 0, false),
            ("fake2", 1, 1, false)
        ]
    );
    assert_eq!(f(&fa).rx_workers, [Some(0), Some(1)]);
    assert_eq!(f(&fb).rx_workers, [Some(0), Some(1)]);

    // 10 frames on a's queue 1: worker 1 reads them, onto b's tx queue 1.
    let before = fwd.worker_frames();
    for i in 0..10 {
        f(&fa).push_rx_on(1, frame(B, A, i));
    }
    until(|| f(&fb).sent.len() == 10);
    assert_eq!(frames_per_worker(&fwd, &before), [0, 10]);
    assert!(f(&fb).sent_on.iter().all(|&q| q == 1));

    // Move the pair to worker 0: both ends' queue 1 go.
    let x = fwd.set_rx_placement(1, "fake1", 1, 0).expect("placed");
    assert_eq!(
        workers(&x),
        [
            ("fake1", 0, 0, false),
            ("fake1", 1, 0, true),
            ("fake2", 0, 0, false),
            ("fake2", 1, 0, true)
        ]
    );
    assert_eq!(f(&fb).rx_workers, [Some(0), Some(0)]);
    let before = fwd.worker_frames();
    for i in 0..7 {
        f(&fb).push_rx_on(1, frame(A, B, i));
    }
    until(|| f(&fa).sent.len() == 7);
    assert_eq!(frames_per_worker(&fwd, &before), [7, 0]);
    balanced(&fa);
    balanced(&fb);

    // Refusals, each naming the field and why.
    let (_, c) = mq_port(3, 1);
    fwd.bridge_create("bd").expect("bridge");
    fwd.bridge_add("bd", c).expect("port");
    let table: [(Error, K, &str); 4] = [
        (
            fwd.set_rx_placement(1, "fake1", 0, 2).expect_err("worker"),
            K::Invalid,
            "worker 2: the forwarder has 2 worker(s)",
        ),
        (
            fwd.set_rx_placement(1, "fake1", 2, 0).expect_err("queue"),
            K::Invalid,
            "queue 2: fake1 has 2 rx queue(s)",
        ),
        (
            fwd.set_rx_placement(3, "fake3", 0, 1).expect_err("bridge"),
            K::Conflict,
            "rx-placement fake3: in bridge bd",
        ),
        (
            fwd.set_rx_placement(9, "fake9", 0, 1).expect_err("alone"),
            K::Conflict,
            "rx-placement fake9: not cross-connected",
        ),
    ];
    for (e, kind, text) in table {
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().starts_with(text), "{e}");
    }

    // Removal lets go of every queue.
    fwd.remove(1, "fake1").expect("removed");
    assert_eq!(f(&fa).rx_workers, [None, None]);
    assert_eq!(f(&fb).rx_workers, [None, None]);
}

/// With directions split, a queue moves alone (its peer's stays).
#[test]
fn with_split_directions_a_queue_moves_alone() {
    let mut fwd = Forwarder::new(2).expect("forwarder");
    fwd.set_split_directions(true);
    let ((_, a), (_, b)) = (mq_port(1, 1), mq_port(2, 1));
    let x = fwd.xconnect(a, b).expect("xconnect");
    assert_eq!((x.worker, x.reverse_worker), (0, 1));
    let x = fwd.set_rx_placement(2, "fake2", 0, 0).expect("placed");
    assert_eq!((x.worker, x.reverse_worker), (0, 0));
    assert_eq!(
        x.rx_placement.iter().map(|p| p.set).collect::<Vec<_>>(),
        [false, true]
    );
}
