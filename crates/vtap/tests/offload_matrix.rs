//! The VPP interface-test matrix, end to end: two namespaces, a vtap tap in
//! each, one cross-connect between them, and
//! MTU {9000, 1500, 512} × IPv4/IPv6 × {gso on both, gso on one side only,
//! csum-offload only, no offload} × gro-coalesce on/off, on the direct
//! backend (the default without vhost-net), and at 1500 on rings too.
//!
//! Each case moves TCP both ways with every byte hashed on both ends (iperf3
//! would not notice corruption: the receiving kernel never verifies
//! checksum-partial frames), and UDP super-datagrams (`UDP_SEGMENT`) both
//! ways, every datagram checked. The host side keeps its offloads on (VPP's tests
//! turn them off). The offload counters prove which software path ran:
//! segmentation toward a side without GSO, coalescing toward a side with
//! gro-coalesce, nothing where both sides take the same thing.
//!
//! IPv6 needs an MTU of at least 1280 (RFC 8200): at 512 only IPv4 runs.
//! Addresses: 198.18.0.0/15 and 2001:db8::/32 only.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use vtap::forward::Forwarder;
use vtap::netns::{Netns, NetnsSpec};
use vtap::offload::Stats;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::{CreateOptions, TapInfo};
use vtap_testkit::TestNs;

/// One side's offloads.
#[derive(Clone, Copy, Debug)]
struct Side {
    gso: bool,
    csum: bool,
    gro: bool,
}

const GSO: Side = Side {
    gso: true,
    csum: false,
    gro: false,
};
const GSO_GRO: Side = Side {
    gso: true,
    csum: false,
    gro: true,
};
const CSUM: Side = Side {
    gso: false,
    csum: true,
    gro: false,
};
const NONE: Side = Side {
    gso: false,
    csum: false,
    gro: false,
};

/// (name, side a, side b). gro-coalesce needs gso, so it varies where gso is.
const CASES: [(&str, Side, Side); 6] = [
    ("gso both", GSO, GSO),
    ("gso both + gro", GSO_GRO, GSO_GRO),
    ("gso on a only", GSO, NONE),
    ("gso + gro on a only", GSO_GRO, NONE),
    ("csum-offload only", CSUM, CSUM),
    ("no offload", NONE, NONE),
];

/// Where the matrix runs: MTU, the /24 it uses, the backend.
#[derive(Clone, Copy)]
struct Setup {
    mtu: u32,
    net: u8,
    backend: &'static str,
}

async fn tap(reg: &mut Registry, ns: &TestNs, side: Side, at: Setup, host: u8) -> TapInfo {
    let Setup { mtu, net, backend } = at;
    // No DAD: the addresses are usable at once (the namespaces are ours).
    let sysctl = "net.ipv6.conf.default.accept_dad=0";
    assert!(ns.exec("sysctl", &["-qw", sysctl]).status.success());
    reg.create(&CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_ip4_addr: Some(format!("198.18.{net}.{host}/24")),
        host_ip6_addr: (mtu >= 1280).then(|| format!("2001:db8:{net}::{host}/64")),
        host_mtu_size: Some(mtu),
        gso: side.gso,
        csum_offload: side.csum,
        gro_coalesce: side.gro,
        backend: Some(backend.into()),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
}

fn offload_stats(reg: &Registry, name: &str) -> Stats {
    reg.get(name)
        .expect("get")
        .datapath
        .expect("data path")
        .offload
}

/// Sends `bundles` UDP super-datagrams of `per` segments of `seg` bytes
/// from namespace `src` to `dst_ip:6000` in `dst`; every datagram must
/// arrive once, whole, with its own bytes.
fn udp_gso_transfer(src: &TestNs, dst: &TestNs, dst_ip: &str, seg: usize, per: usize) {
    let open = |ns: &TestNs| Netns::open(&NetnsSpec::Name(ns.name.clone())).expect("netns");
    let to: std::net::SocketAddr = format!("{dst_ip}:6000").parse().expect("addr");
    let any = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
    let rx = open(dst)
        .run_in(|| UdpSocket::bind(to))
        .expect("enter")
        .expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let tx = open(src)
        .run_in(|| UdpSocket::bind(any))
        .expect("enter")
        .expect("bind");
    vtap_testkit::udp_gso::set_segment(&tx, u16::try_from(seg).expect("seg")).expect("UDP_SEGMENT");
    let bundles = 20;
    let body = |i: usize| -> Vec<u8> {
        let mut d = vec![0u8; seg];
        d[..4].copy_from_slice(&u32::try_from(i).expect("i").to_be_bytes());
        for (k, b) in d.iter_mut().enumerate().skip(4) {
            *b = u8::try_from((i * 7 + k) % 251).expect("byte");
        }
        d
    };
    let mut seen = vec![false; bundles * per];
    let expected = seen.len();
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        // Until all arrived, or nothing came for the read timeout.
        while got.len() < expected {
            let Ok(n) = rx.recv(&mut buf) else { break };
            got.push(buf[..n].to_vec());
        }
        got
    });
    for b in 0..bundles {
        let mut msg = Vec::new();
        for i in b * per..(b + 1) * per {
            msg.extend_from_slice(&body(i));
        }
        tx.send_to(&msg, to).expect("send");
        std::thread::sleep(Duration::from_millis(2));
    }
    for d in receiver.join().expect("receiver") {
        let i = usize::try_from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])).expect("index");
        assert!(
            i < seen.len() && !seen[i],
            "datagram {i} unexpected or twice"
        );
        assert_eq!(d, body(i), "datagram {i} intact");
        seen[i] = true;
    }
    let lost = seen.iter().filter(|s| !**s).count();
    assert_eq!(lost, 0, "every datagram arrived");
}

/// Runs every offload case at `at.mtu` on `at.backend`.
async fn matrix(at: Setup) {
    let Setup { mtu, net, backend } = at;
    for (name, sa, sb) in CASES {
        let (ns_a, ns_b) = (TestNs::new("ma"), TestNs::new("mb"));
        let mut reg = Registry::new(Settings::default()).expect("registry");
        let a = tap(&mut reg, &ns_a, sa, at, 1).await;
        let b = tap(&mut reg, &ns_b, sb, at, 2).await;
        let mut fwd = Forwarder::new(1).expect("forwarder");
        fwd.xconnect(reg.end(&a.name).expect("a"), reg.end(&b.name).expect("b"))
            .expect("xconnect");
        let mut families = vec![(format!("198.18.{net}.1"), format!("198.18.{net}.2"), 28)];
        if mtu >= 1280 {
            families.push((
                format!("[2001:db8:{net}::1]"),
                format!("[2001:db8:{net}::2]"),
                48,
            ));
        }
        for (ip_a, ip_b, l3l4) in &families {
            let what = format!("{backend} mtu {mtu} {name} {ip_b}");
            eprintln!("{what}");
            common::hashed_transfer(&ns_a, &ns_b, ip_b, 8 << 20);
            common::hashed_transfer(&ns_b, &ns_a, ip_a, 8 << 20);
            let seg = (mtu as usize - l3l4).min(1400);
            udp_gso_transfer(&ns_a, &ns_b, ip_b, seg, 8);
            udp_gso_transfer(&ns_b, &ns_a, ip_a, seg, 8);
        }
        let (oa, ob) = (offload_stats(&reg, &a.name), offload_stats(&reg, &b.name));
        eprintln!("mtu {mtu} {name}: toward a {oa:?}\n  toward b {ob:?}");
        for o in [&oa, &ob] {
            assert_eq!((o.drop_bad_header, o.csum_bad), (0, 0), "{name}: {o:?}");
        }
        // Which software path ran, per case.
        if sa.gso && !sb.gso {
            assert!(
                ob.segmented > 0 && ob.segments > ob.segmented,
                "{name}: {ob:?}"
            );
        } else {
            assert_eq!(ob.segmented, 0, "{name}: {ob:?}");
        }
        assert_eq!(oa.segmented, 0, "{name}: a takes what b sends: {oa:?}");
        // Coalescing happens toward a gro-coalesce side, and is needed
        // when the other side sends MTU-sized frames (a GSO sender's frames
        // are super-frames already).
        for (o, to, from) in [(&oa, sa, sb), (&ob, sb, sa)] {
            if !to.gro {
                assert_eq!(o.coalesced, 0, "{name}: {o:?}");
            } else if !from.gso {
                assert!(o.coalesced > 0 && o.coalesced_frames > 0, "{name}: {o:?}");
            }
        }
        // A side without csum offload never sees partial frames from a
        // side that has none either; csum-only sides pass them through.
        if !sa.gso && !sa.csum {
            assert_eq!(oa.csum_completed, 0, "{name}: {oa:?}");
        }
        drop(fwd);
        for t in [&a, &b] {
            reg.delete(&t.name).await.expect("delete");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_matrix_mtu_9000() {
    matrix(Setup {
        mtu: 9000,
        net: 90,
        backend: "direct",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_matrix_mtu_1500() {
    matrix(Setup {
        mtu: 1500,
        net: 15,
        backend: "direct",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_matrix_mtu_512() {
    matrix(Setup {
        mtu: 512,
        net: 5,
        backend: "direct",
    })
    .await;
}

/// The ring path (rings served by the userspace backend, as vhost-net would)
/// carries the same offloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_matrix_mtu_1500_through_rings() {
    matrix(Setup {
        mtu: 1500,
        net: 16,
        backend: "userspace",
    })
    .await;
}
