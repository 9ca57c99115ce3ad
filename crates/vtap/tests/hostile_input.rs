//! Hostile input from the host side: raw AF_PACKET frames (with a
//! virtio-net header, so the kernel passes GSO and checksum metadata on)
//! sent into the host side of a tap that is cross-connected to a tap
//! without offloads, so every frame goes through vtap's offload decisions,
//! software segmentation and checksum completion. Runts, bad IP and TCP
//! headers, lies about lengths, truncated VLAN tags and IPv6 extension
//! headers, wrong checksums with offload on, absurd GSO sizes: vtap must not
//! crash, must not wedge a queue, and must count what it drops. Afterwards
//! the path still carries a ping. Addresses: 198.18.5.0/24 only.

use vtap::forward::Forwarder;
use vtap::netns::{Netns, NetnsSpec};
use vtap::registry::{error_chain, Registry, Settings};
use vtap::{CreateOptions, TapInfo};
use vtap_testkit::packet::{tcp4_frame, tcp4_gso_hdr, PacketSocket, VNET_HDR_LEN};
use vtap_testkit::TestNs;

const NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];
const A: [u8; 4] = [198, 18, 5, 1];
const B: [u8; 4] = [198, 18, 5, 2];

async fn tap(reg: &mut Registry, ns: &TestNs, addr: &str, gso: bool) -> TapInfo {
    reg.create(&CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_ip4_addr: Some(addr.into()),
        gso,
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

/// A vnet header: flags, gso type, hdr_len, gso_size, csum_start, csum_offset.
fn hdr(flags: u8, gso: u8, hdr_len: u16, size: u16, start: u16, off: u16) -> [u8; VNET_HDR_LEN] {
    let mut h = [0u8; VNET_HDR_LEN];
    h[0] = flags;
    h[1] = gso;
    h[2..4].copy_from_slice(&hdr_len.to_le_bytes());
    h[4..6].copy_from_slice(&size.to_le_bytes());
    h[6..8].copy_from_slice(&start.to_le_bytes());
    h[8..10].copy_from_slice(&off.to_le_bytes());
    h
}

fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

/// The cases: name, header, frame.
fn cases(dst: [u8; 6], src: [u8; 6]) -> Vec<(&'static str, [u8; VNET_HDR_LEN], Vec<u8>)> {
    // Within the MTU for plain frames; a GSO super-frame may be larger.
    let small = tcp4_frame(dst, src, A, B, &[0x5a; 1000]);
    let tcp = tcp4_frame(dst, src, A, B, &[0x5a; 3000]);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = small.clone();
        f(&mut t);
        t
    };
    let gso_with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = tcp.clone();
        f(&mut t);
        t
    };
    let v6_hbh_runs_off = {
        // IPv6, next header hop-by-hop, whose length claims 2 KB.
        let mut ip = vec![0x60, 0, 0, 0, 0, 16, 0, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&[6, 255, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        eth(dst, src, 0x86dd, &ip)
    };
    let v6_ext_chain = {
        // 40 destination-options headers in a row, then nothing.
        let mut ip = vec![0x60, 0, 0, 0, 0x01, 0x40, 60, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        for _ in 0..40 {
            ip.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        eth(dst, src, 0x86dd, &ip)
    };
    let gso = tcp4_gso_hdr(1448);
    vec![
        (
            "runt: an Ethernet header only",
            NONE,
            eth(dst, src, 0x0800, &[]),
        ),
        (
            "runt: 3 bytes of IPv4",
            NONE,
            eth(dst, src, 0x0800, &[0x45, 0, 0]),
        ),
        ("IPv4 IHL 3", NONE, with(&|t| t[14] = 0x43)),
        ("IPv4 version 7", NONE, with(&|t| t[14] = 0x75)),
        (
            "IPv4 total length past the frame",
            NONE,
            with(&|t| t[16..18].copy_from_slice(&60000u16.to_be_bytes())),
        ),
        ("TCP data offset 2", NONE, with(&|t| t[46] = 0x20)),
        (
            "TCP data offset 15 past the frame",
            NONE,
            eth(
                dst,
                src,
                0x0800,
                &tcp[14..54]
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| if i == 32 { 0xf0 } else { b })
                    .collect::<Vec<_>>(),
            ),
        ),
        ("truncated VLAN tag", NONE, eth(dst, src, 0x8100, &[0x00])),
        (
            "two VLAN tags then 2 bytes",
            NONE,
            eth(dst, src, 0x88a8, &[0, 1, 0x81, 0, 0, 2, 0x08, 0, 0x45, 0]),
        ),
        ("IPv6 hop-by-hop past the frame", NONE, v6_hbh_runs_off),
        ("IPv6 40 extension headers", NONE, v6_ext_chain),
        (
            "wrong TCP checksum, NEEDS_CSUM",
            hdr(1, 0, 0, 0, 34, 16),
            with(&|t| t[50] ^= 0xff),
        ),
        (
            "NEEDS_CSUM at the last byte",
            hdr(1, 0, 0, 0, u16::try_from(small.len() - 2).unwrap_or(0), 0),
            small.clone(),
        ),
        (
            "NEEDS_CSUM offset into the IP header",
            hdr(1, 0, 0, 0, 14, 10),
            small.clone(),
        ),
        (
            "GSO TCPv4 on a UDP frame",
            hdr(1, 1, 42, 100, 34, 6),
            gso_with(&|t| t[23] = 17),
        ),
        (
            "GSO TCPv4, gso_size 1",
            hdr(1, 1, 54, 1, 34, 16),
            tcp.clone(),
        ),
        (
            "GSO TCPv4, checksum not at L4",
            hdr(1, 1, 54, 1448, 20, 4),
            tcp.clone(),
        ),
        (
            "GSO TCPv6 on IPv4",
            hdr(1, 4, 54, 1448, 34, 16),
            tcp.clone(),
        ),
        ("GSO type 0x7f", hdr(1, 0x7f, 54, 1448, 34, 16), tcp.clone()),
        ("GSO ECN only", hdr(1, 0x80, 54, 1448, 34, 16), tcp.clone()),
        ("GSO on a truncated TCP header", gso, tcp[..60].to_vec()),
        ("GSO on an IPv4 fragment", gso, gso_with(&|t| t[20] = 0x20)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_from_the_host_side_are_counted_and_never_wedge_a_queue() {
    let (ns_a, ns_b) = (TestNs::new("ha"), TestNs::new("hb"));
    let mut reg = Registry::new(Settings::default()).expect("registry");
    // A takes GSO and checksum offload from its host side; B takes neither,
    // so everything crossing toward B is checked, segmented or completed.
    let a = tap(&mut reg, &ns_a, "198.18.5.1/24", true).await;
    let b = tap(&mut reg, &ns_b, "198.18.5.2/24", false).await;
    let mut fwd = Forwarder::new(1).expect("forwarder");
    fwd.xconnect(
        reg.end(&a.name).expect("end"),
        reg.end(&b.name).expect("end"),
    )
    .expect("xconnect");
    // A case may leave a burst of work behind (3000 segments per frame, and
    // B's answers to them): the path must carry a ping again within 10 s.
    let ping = |what: &str| {
        let ok = vtap_testkit::wait_until(std::time::Duration::from_secs(10), || {
            ns_a.exec("ping", &["-c", "1", "-W", "1", "198.18.5.2"])
                .status
                .success()
        });
        assert!(ok, "{what}: the path no longer carries a ping");
    };
    ping("before");

    let netns = Netns::open(&NetnsSpec::Name(ns_a.name.clone())).expect("netns");
    let sock = netns
        .run_in(|| PacketSocket::bind(a.host_ifindex))
        .expect("enter")
        .expect("packet socket");
    let mac = |s: &str| -> [u8; 6] {
        let v: Vec<u8> = s
            .split(':')
            .map(|x| u8::from_str_radix(x, 16).expect("hex"))
            .collect();
        v.try_into().expect("6 bytes")
    };
    let link_b = ns_b.link(&b.host_if_name).expect("b");
    let dst = mac(link_b["address"].as_str().expect("mac"));
    let src = a.host_mac_addr.expect("a TAP has a MAC").0;
    let mut reached = vec![];
    let all = cases(dst, src);
    for (name, h, frame) in &all {
        // The kernel refuses some outright (EINVAL: its own header checks);
        // what it lets through reaches vtap.
        let sent = (0..20).filter(|_| sock.send(h, frame).is_ok()).count();
        if sent > 0 {
            reached.push(*name);
        }
        // After every case the path still works: no queue is wedged.
        ping(name);
    }
    assert!(
        reached.len() >= all.len() / 3,
        "too few cases got past the kernel to test vtap: {reached:?}"
    );

    // What vtap could not make sense of was counted as dropped for a bad
    // header, on the egress side (toward B).
    let st = reg.get(&b.name).expect("get").datapath.expect("state");
    assert!(
        st.offload.drop_bad_header > 0,
        "bad headers counted: {:?}",
        st.offload
    );
    // The interfaces are intact and answer as before.
    assert_eq!(reg.list().len(), 2);
    drop(fwd);
    for t in [&a, &b] {
        reg.delete(&t.name).await.expect("delete");
    }
}
