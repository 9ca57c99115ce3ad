//! Shared by the data-path tests: set-up helpers, a data-plane responder,
//! and a hashed TCP transfer between namespaces.
// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};

use vtap::datapath::{self, vnet, DataPath, TxFrame, VnetHdr};
use vtap::registry::{Backend, Registry, Settings};
use vtap_testkit::packet::{tcp4_frame, tcp4_gso_hdr, PacketSocket, PACKET_OUTGOING};

/// A registry whose interfaces get no data path: the test starts its own
/// (to choose EVENT_IDX, indirect chains and the backend).
pub fn bare_registry() -> Registry {
    Registry::new(Settings {
        datapath: false,
        ..Settings::default()
    })
    .expect("registry")
}

/// One queue pair of 256-entry rings.
pub fn one_pair(backend: Backend, event_idx: bool, indirect: bool) -> datapath::Config {
    datapath::Config {
        rx_ring_size: 256,
        tx_ring_size: 256,
        num_rx_queues: 1,
        num_tx_queues: 1,
        event_idx,
        indirect,
        backend,
    }
}

/// What the data-plane responder saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub frames: u64,
    pub max_num_buffers: u16,
    pub answered: u64,
    /// Frames that arrived checksum-partial (`NEEDS_CSUM`).
    pub partial_csum: u64,
}

/// One burst on queue `q`: answers what is addressed to `ip`, on the tx queue
/// of the same number. A checksum-partial request gets a checksum-partial
/// reply (the responder only swaps addresses and ports, which keeps the
/// partial sum valid), so the kernel completes the checksum. Returns the
/// frames received.
fn answer_burst(
    dp: &mut DataPath,
    q: usize,
    wait: bool,
    mac: [u8; 6],
    ip: [u8; 4],
    seen: &mut Seen,
) -> usize {
    let mut replies = vec![];
    let mut on_frame = |f: vtap::datapath::RxFrame<'_>| {
        seen.frames += 1;
        seen.max_num_buffers = seen.max_num_buffers.max(f.hdr.num_buffers);
        let partial = f.hdr.flags & vnet::F_NEEDS_CSUM != 0;
        seen.partial_csum += u64::from(partial);
        if let Some(r) = vtap_testkit::responder::answer(&f.to_vec(), mac, ip) {
            let hdr = VnetHdr {
                flags: f.hdr.flags & vnet::F_NEEDS_CSUM,
                csum_start: f.hdr.csum_start,
                csum_offset: f.hdr.csum_offset,
                ..VnetHdr::default()
            };
            replies.push((hdr, r));
        }
    };
    let n = if wait {
        dp.rx_burst_wait(q, 64, 50, &mut on_frame)
    } else {
        dp.rx_burst(q, 64, &mut on_frame)
    }
    .expect("rx_burst");
    let frames: Vec<TxFrame<'_>> = replies
        .iter()
        .map(|(hdr, r)| TxFrame { hdr: *hdr, data: r })
        .collect();
    seen.answered += dp.tx_burst(q, &frames).expect("tx_burst") as u64;
    n
}

/// Answers ARP/ICMP/UDP on queue 0 of `dp` until `stop`, waiting in the
/// queue's rx mode.
pub fn respond(dp: &mut DataPath, mac: [u8; 6], ip: [u8; 4], stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        answer_burst(dp, 0, true, mac, ip, &mut seen);
    }
    seen
}

/// Like [`respond`], on every queue, polling them in turn.
pub fn respond_all(dp: &mut DataPath, mac: [u8; 6], ip: [u8; 4], stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let queues = dp.state().rx.len();
    while !stop.load(Ordering::Relaxed) {
        let got: usize = (0..queues)
            .map(|q| answer_burst(dp, q, false, mac, ip, &mut seen))
            .sum();
        if got == 0 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    seen
}

/// With a responder on `dp` (answering for `dp_ip`): three pings from the
/// namespace, then UDP datagrams of 64, 1400 and 8000 bytes echoed intact
/// (from `host_ip`, an address of the namespace). Returns what it saw.
pub fn ping_and_udp_echo(
    ns: &vtap_testkit::TestNs,
    dp: &mut DataPath,
    mac: [u8; 6],
    dp_ip: [u8; 4],
    host_ip: &str,
) -> Seen {
    let stop = AtomicBool::new(false);
    let target = std::net::Ipv4Addr::from(dp_ip).to_string();
    std::thread::scope(|s| {
        let worker = s.spawn(|| respond(dp, mac, dp_ip, &stop));
        let ping = ns.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", &target]);
        let ok = ping.status.success();
        let mut udp = Ok(());
        if ok {
            udp = udp_echo(ns, host_ip, &target);
        }
        stop.store(true, Ordering::Relaxed);
        let seen = worker.join().expect("responder");
        assert!(
            ok,
            "ping: {}{}",
            String::from_utf8_lossy(&ping.stdout),
            String::from_utf8_lossy(&ping.stderr)
        );
        udp.unwrap_or_else(|e| panic!("{e}"));
        seen
    })
}

/// UDP datagrams of 64, 1400 and 8000 bytes from `host_ip` (in `ns`) to
/// `target:7777`, each echoed back intact.
fn udp_echo(ns: &vtap_testkit::TestNs, host_ip: &str, target: &str) -> Result<(), String> {
    use std::time::Duration;
    use vtap::netns::{Netns, NetnsSpec};
    // A socket opened inside the namespace keeps it.
    let netns = Netns::open(&NetnsSpec::Name(ns.name.clone())).map_err(|e| e.to_string())?;
    let sock = netns
        .run_in(|| std::net::UdpSocket::bind((host_ip, 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    for size in [64usize, 1400, 8000] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
        sock.send_to(&payload, (target, 7777))
            .map_err(|e| e.to_string())?;
        let mut back = vec![0u8; 9000];
        let (n, _) = sock
            .recv_from(&mut back)
            .map_err(|e| format!("{size} bytes: no echo: {e}"))?;
        if back[..n] != payload[..] {
            return Err(format!("{size} bytes: echo differs"));
        }
    }
    Ok(())
}

/// Sends a 20 KB TCPv4 super-frame each way between the host side (`sock`,
/// an `AF_PACKET` socket with `PACKET_VNET_HDR` on the tap) and rx/tx queue 0
/// of `dp`, and checks each arrives whole, as one GSO frame, bytes intact.
pub fn gso_both_ways(dp: &mut DataPath, info: &vtap::TapInfo, sock: &PacketSocket) {
    let dp_mac = info.hw_addr.expect("mac").octets();
    let host_mac = info.host_mac_addr.expect("mac").octets();
    let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 251).to_le_bytes()[0]).collect();

    // Host -> data plane: one 20 KB TCP super-frame (TSO), over merged buffers.
    let to_dp = tcp4_frame(dp_mac, host_mac, [198, 18, 3, 1], [198, 18, 3, 2], &payload);
    sock.send(&tcp4_gso_hdr(1448), &to_dp).expect("inject");
    let mut got = None;
    for _ in 0..100 {
        dp.rx_burst_wait(0, 64, 50, |f| {
            if f.len() == to_dp.len() {
                got = Some((f.hdr, f.to_vec()));
            }
        })
        .expect("rx");
        if got.is_some() {
            break;
        }
    }
    let (hdr, frame) = got.expect("the super-frame reaches the data plane whole");
    assert_eq!((hdr.gso_type, hdr.gso_size), (1, 1448), "{hdr:?}");
    assert_eq!(
        (hdr.flags & 1, hdr.csum_start, hdr.csum_offset),
        (1, 34, 16),
        "{hdr:?}"
    );
    if dp.state().rx[0].ring.is_some() {
        assert!(
            hdr.num_buffers >= 10,
            "spread over merged rx buffers: {hdr:?}"
        );
    }
    assert_eq!(frame, to_dp, "bytes intact");

    // Data plane -> host: one super-frame out through vhost-net.
    let to_host = tcp4_frame(host_mac, dp_mac, [198, 18, 3, 2], [198, 18, 3, 1], &payload);
    let gso = VnetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    let sent = dp
        .tx_burst(
            0,
            &[TxFrame {
                hdr: gso,
                data: &to_host,
            }],
        )
        .expect("tx");
    assert_eq!(sent, 1);
    let mut seen = None;
    for _ in 0..20 {
        let (kind, h, f) = sock.recv().expect("capture on the host side");
        if kind != PACKET_OUTGOING && f[6..12] == dp_mac {
            seen = Some((h, f));
            break;
        }
    }
    let (h, f) = seen.expect("the super-frame reaches the host side");
    assert_eq!(f, to_host, "bytes intact");
    assert_eq!(h[1], 1, "still one TCPv4 GSO frame: {h:?}");
    assert_eq!(
        u16::from_le_bytes([h[4], h[5]]),
        1448,
        "gso_size kept: {h:?}"
    );
}

/// FNV-1a, 64 bit: enough to catch a corrupted or reordered byte.
fn fnv1a(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= u64::from(b);
        *h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// Sends `total` pseudo-random bytes over TCP from namespace `src` to
/// `dst_ip:5201` in namespace `dst`, hashing both ends, and asserts every byte
/// arrived intact and in order. (TCP alone would not notice corruption of
/// checksum-partial frames: the receiving kernel never verifies them.)
pub fn hashed_transfer(
    src: &vtap_testkit::TestNs,
    dst: &vtap_testkit::TestNs,
    dst_ip: &str,
    total: usize,
) {
    use std::io::{Read, Write};
    use vtap::netns::{Netns, NetnsSpec};
    let open =
        |ns: &vtap_testkit::TestNs| Netns::open(&NetnsSpec::Name(ns.name.clone())).expect("netns");
    let addr: std::net::SocketAddr = format!("{dst_ip}:5201").parse().expect("addr");
    let listener = open(dst)
        .run_in(|| std::net::TcpListener::bind(addr))
        .expect("enter")
        .expect("listen");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0usize;
        loop {
            let n = s.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            fnv1a(&mut h, &buf[..n]);
            got += n;
        }
        (got, h)
    });
    let mut client = open(src)
        .run_in(|| std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)))
        .expect("enter")
        .expect("connect");
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut chunk = vec![0u8; 1 << 16];
    let mut x = 0x1234_5678u32;
    for _ in 0..total / chunk.len() {
        for byte in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *byte = x.to_le_bytes()[0];
        }
        fnv1a(&mut h, &chunk);
        client.write_all(&chunk).expect("write");
    }
    drop(client);
    let (got, server_hash) = server.join().expect("server");
    assert_eq!(got, total / chunk.len() * chunk.len(), "every byte arrived");
    assert_eq!(server_hash, h, "bytes intact and in order");
}

/// What one run of [`echo_through`] saw, for a backend's own assertions.
#[allow(dead_code)] // each test file uses what its backend needs
pub struct EchoRun {
    /// The frames the responder saw and answered.
    pub seen: Seen,
    /// The data path's state afterwards.
    pub state: datapath::State,
}

/// One behaviour, one body, every backend: a tap in a namespace of its own
/// (MTU 9000, checksum offload as `csum`), its data path on `backend` in rx
/// mode `mode`, answering ARP, ping and an 8000-byte UDP echo. Checks what
/// holds on every backend — counters equal to what the responder saw and to
/// the kernel's own, checksum-partial frames exactly when asked for, the rx
/// mode honoured — and returns the rest for the caller.
#[allow(dead_code)] // not every test file uses every helper
pub async fn echo_through(
    backend: Backend,
    event_idx: bool,
    indirect: bool,
    mode: datapath::RxMode,
    csum: bool,
) -> EchoRun {
    use vtap::registry::error_chain;
    let ns = vtap_testkit::TestNs::new("echo");
    let mut reg = bare_registry();
    let info = reg
        .create(&vtap::CreateOptions {
            host_ns: Some(ns.name.clone()),
            host_ip4_addr: Some("198.18.0.1/24".into()),
            host_mtu_size: Some(9000),
            csum_offload: csum,
            backend: Some(backend.to_string()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(info.backend, backend);
    let taps = reg.dup_queues(&info.name).expect("queues");
    let mut dp = DataPath::start(&one_pair(backend, event_idx, indirect), &taps)
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    dp.set_rx_mode(0, mode).expect("mode");
    let mac = info.hw_addr.expect("mac").octets();
    let seen = ping_and_udp_echo(&ns, &mut dp, mac, [198, 18, 0, 2], "198.18.0.1");
    let what = format!("{backend} {mode:?} csum={csum}");
    assert_eq!(
        seen.partial_csum > 0,
        csum,
        "{what}: checksum-partial frames: {seen:?}"
    );
    let state = dp.state();
    assert_eq!(state.backend, backend);
    assert_eq!(state.rx[0].mode, Some(mode), "{what}");
    assert_eq!(state.rx[0].counters.packets, seen.frames, "{what}");
    assert_eq!(state.tx[0].counters.packets, seen.answered, "{what}");
    assert_eq!(state.rx[0].counters.drop_bad_header, 0, "{what}");
    // The kernel counted the same frames on the host side.
    drop(dp);
    let link = ns.ip_json(&["-s", "link", "show", "dev", &info.host_if_name]);
    let stats = &link[0]["stats64"];
    assert_eq!(
        stats["tx"]["packets"].as_u64(),
        Some(seen.frames),
        "{what}: {link}"
    );
    assert_eq!(
        stats["rx"]["packets"].as_u64(),
        Some(seen.answered),
        "{what}: {link}"
    );
    reg.delete(&info.name).await.expect("delete");
    EchoRun { seen, state }
}

/// One behaviour, one body, every backend: 20 KB TCP super-frames cross a
/// GSO tap whole in both directions ([`gso_both_ways`]), the tap in a
/// namespace of its own (or, `None`, in this one: the QEMU guest has none).
#[allow(dead_code)] // not every test file uses every helper
pub async fn gso_through(backend: Backend, in_namespace: bool) {
    use vtap::netns::{Netns, NetnsSpec};
    use vtap::registry::error_chain;
    let ns = in_namespace.then(|| vtap_testkit::TestNs::new("gso"));
    let mut reg = bare_registry();
    let info = reg
        .create(&vtap::CreateOptions {
            host_ns: ns.as_ref().map(|n| n.name.clone()),
            host_ip4_addr: Some("198.18.3.1/24".into()),
            gso: true,
            backend: Some(backend.to_string()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let taps = reg.dup_queues(&info.name).expect("queues");
    let mut dp = DataPath::start(&one_pair(backend, true, true), &taps)
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    dp.set_rx_mode(0, datapath::RxMode::Interrupt)
        .expect("mode");
    let index = info.host_ifindex;
    let sock = match &ns {
        Some(n) => Netns::open(&NetnsSpec::Name(n.name.clone()))
            .expect("netns")
            .run_in(|| PacketSocket::bind(index))
            .expect("enter"),
        None => PacketSocket::bind(index),
    }
    .expect("AF_PACKET socket");
    gso_both_ways(&mut dp, &info, &sock);
    drop(dp);
    reg.delete(&info.name).await.expect("delete");
}
