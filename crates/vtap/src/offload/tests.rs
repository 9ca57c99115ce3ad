//! Golden frames built and checked by an independent implementation
//! (etherparse): segmentation, checksum completion and coalescing over
//! IPv4/IPv6 × TCP/UDP × no/one/two VLAN tags × IPv6 extension headers ×
//! TAP/TUN framing, the rules of coalescing one by one, the refusals, and
//! property tests over random payloads and segment sizes.

use etherparse::{
    Ipv4HeaderSlice, NetSlice, PacketBuilder, PacketBuilderStep, SlicedPacket, TcpHeader,
    TransportSlice, VlanId,
};
use proptest::prelude::*;

use super::*;
use crate::wire::vnet::{F_DATA_VALID, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const V4_A: [u8; 4] = [198, 18, 0, 1];
const V4_B: [u8; 4] = [198, 18, 0, 2];
const V6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// How a test frame is laid out.
#[derive(Clone, Copy, Debug)]
struct Spec {
    v6: bool,
    udp: bool,
    /// VLAN tags: 0, 1 or 2.
    vlans: u8,
    /// IPv6 hop-by-hop + destination options headers.
    ext: bool,
    /// Ethernet (TAP) or bare IP (TUN).
    l2: bool,
}

/// TCP over IPv4 in a plain Ethernet frame.
const TCP4: Spec = Spec {
    v6: false,
    udp: false,
    vlans: 0,
    ext: false,
    l2: true,
};

impl Spec {
    fn all() -> Vec<Spec> {
        let mut v = Vec::new();
        for v6 in [false, true] {
            for udp in [false, true] {
                for vlans in 0..=2 {
                    for ext in [false, true] {
                        if ext && !v6 {
                            continue;
                        }
                        v.push(Spec {
                            v6,
                            udp,
                            vlans,
                            ext,
                            l2: true,
                        });
                    }
                }
                v.push(Spec {
                    v6,
                    udp,
                    vlans: 0,
                    ext: v6,
                    l2: false,
                });
            }
        }
        v
    }

    fn caps(&self, csum: bool) -> Caps {
        let m = if csum { mask::CSUM } else { 0 };
        Caps::from_mask(m, false, !self.l2)
    }

    fn gso_type(&self) -> u8 {
        match (self.udp, self.v6) {
            (true, _) => GSO_UDP_L4,
            (false, false) => GSO_TCPV4,
            (false, true) => GSO_TCPV6,
        }
    }
}

/// TCP header fields a test sets.
#[derive(Clone, Copy, Debug, Default)]
struct Tcp {
    seq: u32,
    ack: u32,
    psh: bool,
    fin: bool,
    cwr: bool,
    syn: bool,
}

fn ip_step(s: &Spec) -> PacketBuilderStep<etherparse::IpHeaders> {
    let vid = |v| VlanId::try_new(v).expect("vlan id");
    macro_rules! ip {
        ($b:expr) => {
            if s.v6 {
                $b.ipv6(V6_A, V6_B, 64)
            } else {
                $b.ipv4(V4_A, V4_B, 64)
            }
        };
    }
    match (s.l2, s.vlans) {
        (false, _) if s.v6 => PacketBuilder::ipv6(V6_A, V6_B, 64),
        (false, _) => PacketBuilder::ipv4(V4_A, V4_B, 64),
        (true, 0) => ip!(PacketBuilder::ethernet2(MAC_A, MAC_B)),
        (true, 1) => ip!(PacketBuilder::ethernet2(MAC_A, MAC_B).single_vlan(vid(100))),
        (true, _) => ip!(PacketBuilder::ethernet2(MAC_A, MAC_B).double_vlan(vid(10), vid(20))),
    }
}

/// Offset of the IP header.
fn l3_of(s: &Spec) -> usize {
    if s.l2 {
        14 + 4 * usize::from(s.vlans)
    } else {
        0
    }
}

/// A frame with complete, valid checksums (etherparse computes them).
fn build(s: &Spec, payload: &[u8], t: Tcp, ip_id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let step = ip_step(s);
    if s.udp {
        step.udp(4000, 5000).write(&mut out, payload).expect("udp");
    } else {
        let mut h = TcpHeader::new(4000, 5000, t.seq, 1000);
        h.ack = true;
        h.acknowledgment_number = t.ack;
        h.psh = t.psh;
        h.fin = t.fin;
        h.cwr = t.cwr;
        h.syn = t.syn;
        h.set_options(&[etherparse::TcpOptionElement::Timestamp(7, 9)])
            .expect("options");
        step.tcp_header(h).write(&mut out, payload).expect("tcp");
    }
    let l3 = l3_of(s);
    if s.v6 && s.ext {
        // Hop-by-hop then destination options, each 8 bytes with a PadN.
        let proto = out[l3 + 6];
        let ext = [60, 0, 1, 4, 0, 0, 0, 0, proto, 0, 1, 4, 0, 0, 0, 0];
        out.splice(l3 + 40..l3 + 40, ext);
        out[l3 + 6] = 0;
        let plen = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) + 16;
        out[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    }
    if !s.v6 {
        out[l3 + 4..l3 + 6].copy_from_slice(&ip_id.to_be_bytes());
        let h = Ipv4HeaderSlice::from_slice(&out[l3..])
            .expect("ipv4")
            .to_header();
        let c = h.calc_header_checksum();
        out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    out
}

/// Turns a built frame into what the kernel hands over for a super-frame or
/// a checksum-partial frame: pseudo-header sum in the checksum field.
fn make_partial(s: &Spec, frame: &mut [u8]) -> VnetHdr {
    let lay = parse::parse(frame, s.l2).expect("parse");
    let at = lay.l4 + gso::csum_offset(lay.proto);
    let (src, dst) = lay.addrs(frame);
    let len = u32::try_from(frame.len() - lay.l4).expect("len");
    let p = ref_fold(&[src, dst], u32::from(lay.proto) + len);
    frame[at..at + 2].copy_from_slice(&p.to_be_bytes());
    VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: u16::try_from(lay.l4).expect("l4"),
        csum_offset: u16::try_from(at - lay.l4).expect("offset"),
        ..VnetHdr::default()
    }
}

/// A reference ones' complement sum, the slow obvious way.
fn ref_fold(parts: &[&[u8]], extra: u32) -> u16 {
    let mut sum: u64 = u64::from(extra);
    for p in parts {
        for pair in p.chunks(2) {
            sum += u64::from(pair[0]) << 8 | u64::from(*pair.get(1).unwrap_or(&0));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).expect("folded")
}

/// Completes a partial checksum with the reference sum (not ours).
fn ref_complete(f: &mut Frame) {
    if f.hdr.flags & F_NEEDS_CSUM == 0 {
        return;
    }
    let start = usize::from(f.hdr.csum_start);
    let at = start + usize::from(f.hdr.csum_offset);
    // A computed 0 goes out as 0xffff (RFC 768: 0 means "no checksum" in
    // UDP; the same value in ones' complement for TCP).
    let c = match !ref_fold(&[&f.data[start..]], 0) {
        0 => 0xffff,
        c => c,
    };
    f.data[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// What etherparse reads from a frame whose checksums it has verified.
#[derive(Debug)]
struct Checked {
    payload: Vec<u8>,
    seq: u32,
    ip_id: u16,
    psh: bool,
    fin: bool,
    cwr: bool,
}

/// Parses `f` with etherparse and asserts every length and checksum.
fn verify(s: &Spec, f: &Frame) -> Checked {
    let mut f = f.clone();
    ref_complete(&mut f);
    let p = if s.l2 {
        SlicedPacket::from_ethernet(&f.data)
    } else {
        SlicedPacket::from_ip(&f.data)
    }
    .expect("etherparse parses the frame");
    let l3 = l3_of(s);
    let (src, dst, ip_id): (Vec<u8>, Vec<u8>, u16) = match p.net.as_ref().expect("ip") {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            assert_eq!(
                usize::from(h.total_len()),
                f.data.len() - l3,
                "ipv4 total length"
            );
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "ipv4 header checksum"
            );
            (
                h.source().to_vec(),
                h.destination().to_vec(),
                h.identification(),
            )
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            assert_eq!(usize::from(h.payload_length()), f.data.len() - l3 - 40);
            (h.source().to_vec(), h.destination().to_vec(), 0)
        }
        NetSlice::Arp(_) => panic!("arp"),
    };
    let (s4, d4) = (<[u8; 4]>::try_from(&src[..]), <[u8; 4]>::try_from(&dst[..]));
    let (s6, d6) = (
        <[u8; 16]>::try_from(&src[..]),
        <[u8; 16]>::try_from(&dst[..]),
    );
    match p.transport.as_ref().expect("l4") {
        TransportSlice::Tcp(t) => {
            let want = match (s4, d4, s6, d6) {
                (Ok(a), Ok(b), _, _) => t.calc_checksum_ipv4(a, b),
                (_, _, Ok(a), Ok(b)) => t.calc_checksum_ipv6(a, b),
                _ => panic!("addresses"),
            }
            .expect("checksum");
            // 0 and 0xffff are the same checksum (ones' complement zero).
            let norm = |c: u16| if c == 0xffff { 0 } else { c };
            assert_eq!(norm(t.checksum()), norm(want), "tcp checksum");
            Checked {
                payload: t.payload().to_vec(),
                seq: t.sequence_number(),
                ip_id,
                psh: t.psh(),
                fin: t.fin(),
                cwr: t.cwr(),
            }
        }
        TransportSlice::Udp(u) => {
            let h = u.to_header();
            assert_eq!(usize::from(u.length()), u.slice().len(), "udp length");
            let want = match (s4, d4, s6, d6) {
                (Ok(a), Ok(b), _, _) => h.calc_checksum_ipv4_raw(a, b, u.payload()),
                (_, _, Ok(a), Ok(b)) => h.calc_checksum_ipv6_raw(a, b, u.payload()),
                _ => panic!("addresses"),
            }
            .expect("checksum");
            assert_eq!(u.checksum(), want, "udp checksum");
            Checked {
                payload: u.payload().to_vec(),
                seq: 0,
                ip_id,
                psh: false,
                fin: false,
                cwr: false,
            }
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from(i % 251).unwrap_or(0) ^ seed)
        .collect()
}

/// A checksum-partial super-frame of `s` carrying `data`, cut at `mss`.
fn super_frame(s: &Spec, data: &[u8], mss: u16, t: Tcp) -> Frame {
    let mut f = build(s, data, t, 1000);
    let mut hdr = make_partial(s, &mut f);
    hdr.gso_type = s.gso_type();
    hdr.gso_size = mss;
    let lay = parse::parse(&f, s.l2).expect("parse");
    hdr.hdr_len = u16::try_from(lay.payload()).expect("hdr_len");
    Frame { hdr, data: f }
}

fn run(caps: &Caps, input: &[Frame]) -> (Vec<Frame>, Stats) {
    let mut eg = Egress::default();
    eg.prepare(caps, input, 0..input.len());
    let out = eg.to_frames(input);
    (out, eg.take_stats())
}

#[test]
fn segmentation_of_every_layout_is_what_the_kernel_would_send() {
    for s in Spec::all() {
        for partial_out in [false, true] {
            let data = payload(5000, 3);
            let t = Tcp {
                seq: u32::MAX - 1000, // wraps inside the super-frame
                psh: true,
                fin: true,
                cwr: true,
                ..Tcp::default()
            };
            let f = super_frame(&s, &data, 1400, t);
            let (out, st) = run(&s.caps(partial_out), std::slice::from_ref(&f));
            assert_eq!(out.len(), 4, "{s:?}");
            assert_eq!((st.segmented, st.segments), (1, 4));
            let mut joined = Vec::new();
            for (i, o) in out.iter().enumerate() {
                assert_eq!(o.hdr.gso_type, 0);
                assert_eq!(o.hdr.flags & F_NEEDS_CSUM != 0, partial_out, "{s:?}");
                let c = verify(&s, o);
                let last = i == out.len() - 1;
                if !s.udp {
                    let off = u32::try_from(i * 1400).expect("offset");
                    assert_eq!(c.seq, t.seq.wrapping_add(off), "{s:?} seq");
                    assert_eq!(
                        (c.psh, c.fin),
                        (last, last),
                        "{s:?} PSH/FIN on the last only"
                    );
                    assert_eq!(c.cwr, i == 0, "{s:?} CWR on the first only");
                }
                if !s.v6 {
                    assert_eq!(c.ip_id, 1000 + u16::try_from(i).expect("i"), "{s:?} ip id");
                }
                assert!(c.payload.len() <= 1400);
                joined.extend_from_slice(&c.payload);
            }
            assert_eq!(joined, data, "{s:?}");
        }
    }
}

#[test]
fn super_frame_passes_whole_where_the_interface_takes_it() {
    let all = mask::CSUM | mask::TSO4 | mask::TSO6 | mask::USO4 | mask::USO6;
    for s in Spec::all() {
        let f = super_frame(&s, &payload(3000, 1), 1000, Tcp::default());
        let (out, st) = run(
            &Caps::from_mask(all, false, !s.l2),
            std::slice::from_ref(&f),
        );
        assert_eq!(out, vec![f.clone()], "{s:?}");
        assert_eq!(st, Stats::default());
        // TSO but no USO: UDP super-frames are cut, TCP ones pass.
        let tso = mask::CSUM | mask::TSO4 | mask::TSO6;
        let (out, _) = run(
            &Caps::from_mask(tso, false, !s.l2),
            std::slice::from_ref(&f),
        );
        assert_eq!(out.len(), if s.udp { 3 } else { 1 }, "{s:?}");
    }
}

#[test]
fn one_segment_super_frame_leaves_as_a_plain_frame() {
    // The kernel refuses a GSO frame whose payload fits one segment.
    let s = TCP4;
    let f = super_frame(&s, &payload(500, 0), 1448, Tcp::default());
    let caps = Caps::from_mask(mask::CSUM | mask::TSO4 | mask::TSO6, false, false);
    let (out, _) = run(&caps, std::slice::from_ref(&f));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].hdr.gso_type, 0);
    assert_eq!(out[0].hdr.flags, F_NEEDS_CSUM);
    assert_eq!(verify(&s, &out[0]).payload, payload(500, 0));
}

#[test]
fn partial_checksum_is_completed_only_where_the_interface_lacks_csum() {
    for s in Spec::all() {
        let mut data = build(&s, &payload(777, 9), Tcp::default(), 5);
        let hdr = make_partial(&s, &mut data);
        let f = Frame { hdr, data };
        let (out, st) = run(&s.caps(false), std::slice::from_ref(&f));
        assert_eq!(st.csum_completed, 1);
        assert_eq!(out[0].hdr.flags & F_NEEDS_CSUM, 0);
        // Verified without the reference completion: it must be complete.
        let mut plain = out[0].clone();
        plain.hdr.flags = 0;
        assert_eq!(verify(&s, &plain).payload, payload(777, 9), "{s:?}");
        let (out, st) = run(&s.caps(true), std::slice::from_ref(&f));
        assert_eq!((out, st), (vec![f.clone()], Stats::default()));
    }
}

#[test]
fn bad_headers_are_counted_and_dropped() {
    let s = Spec { vlans: 1, ..TCP4 };
    let good = super_frame(&s, &payload(3000, 0), 1000, Tcp::default());
    let cases: Vec<(&str, Frame)> = vec![
        ("gso_size 0", {
            let mut f = good.clone();
            f.hdr.gso_size = 0;
            f
        }),
        ("TCPv6 on an IPv4 frame", {
            let mut f = good.clone();
            f.hdr.gso_type = GSO_TCPV6;
            f
        }),
        ("UDP on a TCP frame", {
            let mut f = good.clone();
            f.hdr.gso_type = GSO_UDP_L4;
            f
        }),
        ("unknown gso_type", {
            let mut f = good.clone();
            f.hdr.gso_type = 3;
            f
        }),
        ("ECN without a type (found by the fuzzer)", {
            let mut f = good.clone();
            f.hdr.gso_type = 0x80;
            f
        }),
        ("csum_start not at L4", {
            let mut f = good.clone();
            f.hdr.csum_start -= 2;
            f
        }),
        ("truncated super-frame", {
            let mut f = good.clone();
            f.data.truncate(60);
            f
        }),
        ("fragment", {
            let mut f = good.clone();
            let l3 = l3_of(&s);
            f.data[l3 + 6] |= 0x20; // MF
            f
        }),
        ("not IP", {
            let mut f = good.clone();
            f.data[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
            f
        }),
        ("csum offset outside a plain frame", {
            let mut f = good.clone();
            f.hdr.gso_type = 0;
            f.hdr.csum_offset = 9000;
            f
        }),
    ];
    for (what, f) in cases {
        for caps in [s.caps(false), Caps::from_mask(u32::MAX, true, false)] {
            let (out, st) = run(&caps, std::slice::from_ref(&f));
            assert!(out.is_empty(), "{what}: dropped");
            assert_eq!(st.drop_bad_header, 1, "{what}: counted");
        }
    }
}

fn gro_caps(l2: bool) -> Caps {
    Caps::from_mask(mask::CSUM | mask::TSO4 | mask::TSO6, true, !l2)
}

/// Coalescing toward an interface whose kernel takes TSO and USO.
fn gro_uso_caps(l2: bool) -> Caps {
    let m = mask::CSUM | mask::TSO4 | mask::TSO6 | mask::USO4 | mask::USO6;
    Caps::from_mask(m, true, !l2)
}

/// A TCP flow (or UDP datagrams) cut into segments of `mss`, each a
/// separate frame.
fn segments(s: &Spec, data: &[u8], mss: usize, seq: u32, partial: bool) -> Vec<Frame> {
    data.chunks(mss)
        .enumerate()
        .map(|(i, c)| {
            let off = u32::try_from(i * mss).expect("offset");
            let t = Tcp {
                seq: seq.wrapping_add(off),
                ..Tcp::default()
            };
            let mut d = build(s, c, t, 50 + u16::try_from(i).expect("i"));
            let hdr = if partial {
                make_partial(s, &mut d)
            } else {
                VnetHdr::default()
            };
            Frame { hdr, data: d }
        })
        .collect()
}

#[test]
fn coalesced_run_is_one_super_frame_that_splits_back_into_the_run() {
    for s in Spec::all().into_iter().filter(|s| !s.udp && !s.ext) {
        for partial in [false, true] {
            let data = payload(10_000, 5);
            let segs = segments(&s, &data, 1448, 77, partial);
            let (out, st) = run(&gro_caps(s.l2), &segs);
            assert_eq!(out.len(), 1, "{s:?}");
            assert_eq!(st.coalesced, 6);
            assert_eq!(st.coalesced_frames, 1);
            assert_eq!(st.csum_verified, if partial { 0 } else { 7 });
            let m = &out[0];
            assert_eq!(m.hdr.gso_size, 1448);
            assert_eq!(m.hdr.gso_type, if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            let c = verify(&s, m);
            assert_eq!((c.payload, c.seq), (data.clone(), 77), "{s:?}");
            // Splitting it again gives back the segments, byte for byte.
            let (again, _) = run(&s.caps(false), std::slice::from_ref(m));
            assert_eq!(again.len(), segs.len());
            for (a, b) in again.iter().zip(&segs) {
                let mut b = b.clone();
                ref_complete(&mut b);
                assert_eq!(a.data, b.data, "{s:?}");
            }
        }
    }
}

/// The rules of coalescing, one at a time: each case changes one segment of
/// a 4-segment run and says how many frames must come out.
#[test]
fn coalescing_follows_the_kernel_rules() {
    let s = TCP4;
    let base = || segments(&s, &payload(4 * 1000, 1), 1000, 1, true);
    type Edit = fn(&Spec, &mut Vec<Frame>);
    let cases: Vec<(&str, Edit, usize)> = vec![
        ("an untouched run merges", |_, _| {}, 1),
        (
            "PSH ends the run after itself",
            |s, v| v[1] = retcp(s, &v[1], |t| t.psh = true),
            2,
        ),
        (
            "a gap in sequence numbers",
            |s, v| v[2] = retcp(s, &v[2], |t| t.seq += 1),
            // v[3] continues neither run.
            3,
        ),
        (
            "another acknowledgment number",
            |s, v| v[2] = retcp(s, &v[2], |t| t.ack = 5),
            3,
        ),
        (
            "SYN is never merged",
            |s, v| v[3] = retcp(s, &v[3], |t| t.syn = true),
            2,
        ),
        (
            "CWR is never merged",
            |s, v| v[1] = retcp(s, &v[1], |t| t.cwr = true),
            3,
        ),
        (
            "a short segment ends the run",
            |s, v| {
                let short = segments(s, &payload(500, 1), 500, 1001, true);
                v[1] = short[0].clone();
                // v[0]+v[1] end there; v[2] starts a new run that v[3] joins.
            },
            2,
        ),
        (
            "another TTL",
            |_, v| {
                v[2].data[14 + 8] = 1;
            },
            3,
        ),
        (
            "a bad checksum is not merged and is counted",
            |_, v| {
                v[2].hdr = VnetHdr::default();
                let n = v[2].data.len();
                v[2].data[n - 1] ^= 0xff;
            },
            3,
        ),
        (
            "IPv4 identification not consecutive",
            |_, v| {
                v[3].data[14 + 5] ^= 0x40;
            },
            2,
        ),
        (
            "another VLAN/MAC header",
            |_, v| {
                v[1].data[0] ^= 0x04;
            },
            3,
        ),
    ];
    for (what, edit, want) in cases {
        let mut v = base();
        edit(&s, &mut v);
        let (out, st) = run(&gro_caps(true), &v);
        assert_eq!(out.len(), want, "{what}");
        let payload_bytes = |v: &[Frame]| -> usize {
            v.iter()
                .map(|f| {
                    let l = parse::parse(&f.data, true).expect("parse");
                    l.end - l.payload()
                })
                .sum()
        };
        assert_eq!(
            payload_bytes(&out),
            payload_bytes(&v),
            "{what}: no payload lost"
        );
        if what.starts_with("a bad checksum") {
            assert_eq!(st.csum_bad, 1);
        }
    }
}

/// Rebuilds a segment of the 4×1000 test run with changed TCP fields
/// (sequence number derived from its payload's position).
fn retcp(s: &Spec, f: &Frame, edit: fn(&mut Tcp)) -> Frame {
    let lay = parse::parse(&f.data, s.l2).expect("parse");
    let seq = u32::from_be_bytes(f.data[lay.l4 + 4..lay.l4 + 8].try_into().expect("seq"));
    let mut t = Tcp {
        seq,
        ..Tcp::default()
    };
    edit(&mut t);
    let id = u16::from_be_bytes([f.data[lay.l3 + 4], f.data[lay.l3 + 5]]);
    let mut d = build(s, &f.data[lay.payload()..], t, id);
    let hdr = make_partial(s, &mut d);
    Frame { hdr, data: d }
}

#[test]
fn udp_datagrams_coalesce_only_toward_uso_and_split_back() {
    for s in Spec::all().into_iter().filter(|s| s.udp && !s.ext) {
        let data = payload(8 * 1200 + 300, 4);
        let dgrams = segments(&s, &data, 1200, 0, false);
        let (out, st) = run(&gro_caps(s.l2), &dgrams);
        assert_eq!(out, dgrams, "{s:?}: no USO, nothing merged");
        assert_eq!(st.coalesced, 0);
        let (out, st) = run(&gro_uso_caps(s.l2), &dgrams);
        assert_eq!(out.len(), 1, "{s:?}");
        assert_eq!((st.coalesced, st.csum_verified), (8, 9));
        assert_eq!(out[0].hdr.gso_type, GSO_UDP_L4);
        assert_eq!(out[0].hdr.gso_size, 1200);
        assert_eq!(verify(&s, &out[0]).payload, data, "{s:?}");
        // Cut again where USO is missing: the same datagrams, byte for byte.
        let (again, _) = run(&s.caps(false), &out);
        assert_eq!(again.len(), dgrams.len());
        for (a, b) in again.iter().zip(&dgrams) {
            assert_eq!(a.data, b.data, "{s:?}");
        }
    }
}

/// A burst of 256 small datagrams (trafgen's 64-byte frames) makes super-
/// frames of at most `MAX_UDP_SEGMENTS` each: Linux refuses larger ones.
#[test]
fn udp_super_frames_stop_at_the_kernels_segment_limit() {
    let s = Spec::all()
        .into_iter()
        .find(|s| s.udp && !s.ext && !s.v6 && s.l2)
        .expect("udp4 spec");
    let data = payload(256 * 18, 5);
    let dgrams = segments(&s, &data, 18, 0, false);
    assert_eq!(dgrams.len(), 256);
    let (out, st) = run(&gro_uso_caps(true), &dgrams);
    let max = crate::offload::gro::MAX_UDP_SEGMENTS;
    assert_eq!(out.len(), 256 / max, "{st:?}");
    for f in &out {
        assert_eq!(usize::from(f.hdr.gso_size), 18);
        let v = verify(&s, f);
        assert_eq!(v.payload.len(), max * 18);
    }
    let joined: Vec<u8> = out.iter().flat_map(|f| verify(&s, f).payload).collect();
    assert_eq!(joined, data);
}

#[test]
fn interleaved_flows_coalesce_per_flow_and_keep_their_order() {
    let s = Spec { v6: true, ..TCP4 };
    let a = segments(&s, &payload(3000, 1), 1000, 10, true);
    let mut b = segments(&s, &payload(3000, 2), 1000, 90_000, true);
    for f in &mut b {
        // Another flow: another source port (the checksum stays partial).
        let lay = parse::parse(&f.data, true).expect("parse");
        f.data[lay.l4 + 1] ^= 1;
    }
    let mixed: Vec<Frame> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| [x.clone(), y.clone()])
        .collect();
    let (out, st) = run(&gro_caps(true), &mixed);
    assert_eq!(out.len(), 2);
    assert_eq!(st.coalesced_frames, 2);
    assert_eq!(verify(&s, &out[0]).payload, payload(3000, 1));
    assert_eq!(verify(&s, &out[1]).payload, payload(3000, 2));
}

#[test]
fn data_valid_is_trusted_and_passed_on() {
    let s = TCP4;
    let mut v = segments(&s, &payload(2000, 1), 1000, 1, false);
    for f in &mut v {
        f.hdr.flags = F_DATA_VALID;
    }
    let (out, st) = run(&s.caps(false), &v);
    assert_eq!(out, v, "passed untouched, DATA_VALID kept");
    let (out, st2) = run(&gro_caps(true), &v);
    assert_eq!((out.len(), st2.csum_verified, st.csum_verified), (1, 0, 0));
}

/// Independent of our checksum code: truncated headers of every kind never
/// panic and are refused.
#[test]
fn truncations_never_panic() {
    for s in Spec::all() {
        let f = super_frame(&s, &payload(2000, 0), 500, Tcp::default());
        for cut in 0..parse::parse(&f.data, s.l2).expect("parse").payload() + 1 {
            let g = Frame {
                hdr: f.hdr,
                data: f.data[..cut].to_vec(),
            };
            let (out, st) = run(&Caps::from_mask(u32::MAX, true, !s.l2), &[g]);
            assert!(out.is_empty() && st.drop_bad_header == 1, "{s:?} cut {cut}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Split then coalesce gives back the payload, for random payloads and
    /// segment sizes, over every layout.
    #[test]
    fn split_then_coalesce_round_trips(
        spec in 0usize..32,
        len in 1usize..60_000,
        mss in 64usize..9_000,
        seq in any::<u32>(),
        seed in any::<u8>(),
    ) {
        let specs = Spec::all();
        let s = specs[spec % specs.len()];
        let data = payload(len, seed);
        let f = super_frame(&s, &data, u16::try_from(mss).expect("mss"), Tcp { seq, ..Tcp::default() });
        let (segs, _) = run(&s.caps(true), std::slice::from_ref(&f));
        prop_assert_eq!(segs.len(), len.div_ceil(mss));
        for g in &segs {
            verify(&s, g);
        }
        let (merged, _) = run(&gro_uso_caps(s.l2), &segs);
        if s.ext {
            // IPv6 extension headers are not coalesced: all pass as they are.
            prop_assert_eq!(merged, segs);
        } else if s.udp {
            // UDP super-frames stop at the kernel's segment limit.
            let max = crate::offload::gro::MAX_UDP_SEGMENTS;
            prop_assert_eq!(merged.len(), segs.len().div_ceil(max));
            let joined: Vec<u8> = merged.iter().flat_map(|m| verify(&s, m).payload).collect();
            prop_assert_eq!(joined, data);
        } else {
            prop_assert_eq!(merged.len(), 1);
            let c = verify(&s, &merged[0]);
            prop_assert_eq!(c.payload, data);
            prop_assert_eq!(c.seq, seq);
        }
    }

    /// Random bytes under a random header: never a panic, and whatever
    /// leaves parses.
    #[test]
    fn random_frames_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        hdr in proptest::array::uniform12(any::<u8>()),
        l2 in any::<bool>(),
    ) {
        let f = Frame { hdr: VnetHdr::parse(&hdr), data };
        for caps in [Caps::from_mask(0, false, !l2), Caps::from_mask(u32::MAX, true, !l2)] {
            let (out, st) = run(&caps, std::slice::from_ref(&f));
            // Every frame accounted for: the identity the forwarding
            // ledger relies on.
            prop_assert_eq!(
                out.len() as u64 + st.segmented + st.coalesced + st.drop_bad_header,
                1 + st.segments,
                "{:?}", st
            );
            // What leaves needs no more work on this egress and is
            // consistent with its header.
            for o in &out {
                prop_assert!(
                    matches!(classify(&caps, &o.hdr, &o.data), Action::Pass),
                    "{:?} left as {:?}", f, o
                );
            }
        }
    }
}

/// Writes seed inputs for the `offload` fuzz target (`fuzz/corpus/offload`):
/// a super-frame of every layout and a 3-segment run, in the input format of
/// [`fuzz_one`]. Run by `scripts/fuzz.sh` before fuzzing; not a test.
#[test]
#[ignore = "writes the fuzz seed corpus; run by scripts/fuzz.sh"]
fn write_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/offload");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    for (n, s) in Spec::all().iter().enumerate() {
        let f = super_frame(s, &payload(3000, 1), 1000, Tcp::default());
        let sel = if s.l2 { 0u8 } else { 8 };
        let mut one = vec![sel];
        one.extend_from_slice(&f.hdr.to_bytes());
        one.extend_from_slice(&f.data);
        std::fs::write(dir.join(format!("seed-super-{n}")), &one).expect("write");
        if !s.udp {
            let mut run = vec![sel | 4 | 2];
            run.extend_from_slice(&make_partial_hdr(s).to_bytes());
            for (i, g) in segments(s, &payload(3000, 2), 1000, 5, true)
                .iter()
                .enumerate()
            {
                if i > 0 {
                    run.extend_from_slice(&[0xff, 0x00]);
                }
                run.extend_from_slice(&g.data);
            }
            std::fs::write(dir.join(format!("seed-run-{n}")), &run).expect("write");
        }
    }
}

/// The partial-checksum header a segment of `s` carries.
fn make_partial_hdr(s: &Spec) -> VnetHdr {
    let mut d = build(s, &payload(10, 0), Tcp::default(), 0);
    make_partial(s, &mut d)
}
