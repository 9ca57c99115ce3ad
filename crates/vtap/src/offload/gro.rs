//! GRO coalescing toward the kernel: consecutive TCP segments of one flow in
//! a burst are merged into one super-frame (`GSO_TCPV4/6`, checksum partial),
//! so the receiving stack walks one frame instead of dozens; toward an
//! interface whose kernel takes USO (`TUN_F_USO4/6`, Linux >= 6.2), UDP
//! datagrams of one flow are merged into one `GSO_UDP_L4` super-frame the
//! same way (the kernel cuts it back into the same datagrams for a socket
//! without `UDP_GRO`, as its own UDP GRO does).
//!
//! The rules are the kernel's own (`tcp_gro_receive`, `inet_gro_receive`,
//! `ipv6_gro_receive`), so that a merged frame, once the kernel segments it
//! again, gives back the original segments:
//! - same Ethernet header (and VLAN tags), same IP header except length,
//!   identification and checksum (IPv4 without options, IPv6 without
//!   extension headers), IPv4 identification consecutive (or fixed with DF);
//! - same ports, acknowledgment number, header length and TCP options
//!   (byte for byte, so timestamps must match), flags equal except PSH;
//!   SYN, FIN, RST, URG and CWR segments are never merged;
//! - the next segment's sequence number continues the run; every segment
//!   but the last carries exactly `gso_size` bytes (the first one's size);
//!   a shorter segment or one with PSH ends the run;
//! - at most 64 KiB of IP packet;
//! - UDP: same ports, every datagram but the last exactly `gso_size` bytes
//!   of payload (the first one's), a shorter one ends the run, at most
//!   [`MAX_UDP_SEGMENTS`] datagrams.
//!
//! A segment is only merged when its checksum is known good: it came
//! checksum-partial (locally generated), with `DATA_VALID` (already
//! verified), or we verify it here. Merging an unverified segment would
//! give corrupt data a fresh, valid checksum.
//!
//! Flush is at the end of the burst: frames are never held across bursts,
//! so coalescing adds no latency (the kernel's GRO flushes at the end of a
//! NAPI poll for the same reason). Up to [`MAX_FLOWS`] flows are coalesced
//! at once; frames of different flows may be reordered relative to each
//! other, never within a flow.

use super::csum;
use super::parse::{self, Ip, Layout, PROTO_TCP, PROTO_UDP};
use super::{Caps, Egress, Frame, Slot, Stats};
use crate::wire::vnet;

/// Flows coalesced at once.
pub const MAX_FLOWS: usize = 8;
/// Largest IP length field.
const MAX_IP: usize = 65_535;
/// Most datagrams in one UDP super-frame. Linux refuses a `GSO_UDP_L4`
/// frame of more than `UDP_MAX_SEGMENTS` segments with `EINVAL`
/// (`virtio_net_hdr_to_skb`, since 6.11); that limit is 128 today and was
/// 64 before 6.5, so 64 is safe on every kernel. Small datagrams hit it
/// long before 64 KiB: 256 64-byte frames in one burst did.
pub const MAX_UDP_SEGMENTS: usize = 64;

use crate::wire::tcp::{
    ACK as TCP_ACK, CWR as TCP_CWR, FIN as TCP_FIN, PSH as TCP_PSH, RST as TCP_RST, SYN as TCP_SYN,
    URG as TCP_URG,
};

/// A segment that may join a run.
#[derive(Clone, Copy, Debug)]
struct Segment {
    lay: Layout,
    seq: u32,
    len: usize,
    flags: u8,
    id: u16,
}

/// An open run: where it sits in the output, and what the next segment
/// must look like.
#[derive(Clone, Copy, Debug)]
struct Run {
    /// Index into the output list.
    pos: usize,
    /// The first segment's layout (the merged frame keeps its headers).
    lay: Layout,
    next_seq: u32,
    last_id: u16,
    mss: usize,
    /// IP length so far.
    ip_len: usize,
    segments: usize,
    psh: bool,
}

/// TCP flags byte.
fn flags(frame: &[u8], lay: &Layout) -> u8 {
    frame[lay.l4 + 13]
}

fn seq(frame: &[u8], lay: &Layout) -> u32 {
    let s = &frame[lay.l4 + 4..lay.l4 + 8];
    u32::from_be_bytes([s[0], s[1], s[2], s[3]])
}

/// Whether `f`'s checksum may be trusted; verifies it when nothing says so.
fn checksum_known_good(f: &Frame, lay: &Layout, stats: &mut Stats) -> bool {
    let partial = f.hdr.flags & vnet::F_NEEDS_CSUM != 0;
    if partial {
        return usize::from(f.hdr.csum_start) == lay.l4
            && usize::from(f.hdr.csum_offset) == super::gso::csum_offset(lay.proto);
    }
    if f.hdr.flags & vnet::F_DATA_VALID != 0 {
        return true;
    }
    // UDP over IPv4 without a checksum (0): nothing to verify.
    if lay.proto == PROTO_UDP && !lay.is_v6() && csum::get16(&f.data, lay.l4 + 6) == 0 {
        return true;
    }
    let (src, dst) = lay.addrs(&f.data);
    let good = csum::l4_valid(src, dst, lay.proto, &f.data[lay.l4..lay.end]);
    if good {
        stats.csum_verified += 1;
    } else {
        stats.csum_bad += 1;
    }
    good
}

/// The segment `f` is, if it may be coalesced toward `caps` at all.
fn candidate(f: &Frame, caps: &Caps, stats: &mut Stats) -> Option<Segment> {
    if f.hdr.gso_type != vnet::GSO_NONE {
        return None;
    }
    let lay = parse::parse(&f.data, caps.l2).ok()?;
    let plain_ip = matches!(lay.ip, Ip::V4 { ihl: 20 } | Ip::V6 { ext: 0 });
    let uso = if lay.is_v6() { caps.uso6 } else { caps.uso4 };
    let wanted = lay.proto == PROTO_TCP || (lay.proto == PROTO_UDP && uso);
    if !wanted || lay.fragment || !plain_ip {
        return None;
    }
    let len = lay.end - lay.payload();
    let fl = if lay.proto == PROTO_TCP {
        flags(&f.data, &lay)
    } else {
        TCP_ACK
    };
    let refused = TCP_SYN | TCP_FIN | TCP_RST | TCP_URG | TCP_CWR;
    if len == 0 || fl & refused != 0 || fl & TCP_ACK == 0 {
        return None;
    }
    if !checksum_known_good(f, &lay, stats) {
        return None;
    }
    let id = match lay.ip {
        Ip::V4 { .. } => csum::get16(&f.data, lay.l3 + 4),
        Ip::V6 { .. } => 0,
    };
    Some(Segment {
        lay,
        seq: if lay.proto == PROTO_TCP {
            seq(&f.data, &lay)
        } else {
            0
        },
        len,
        flags: fl,
        id,
    })
}

/// Protocol, source/destination addresses and ports: the flow.
fn same_flow(a: &[u8], la: &Layout, b: &[u8], lb: &Layout) -> bool {
    la.proto == lb.proto
        && la.is_v6() == lb.is_v6()
        && la.addrs(a) == lb.addrs(b)
        && a[la.l4..la.l4 + 4] == b[lb.l4..lb.l4 + 4]
}

/// Whether segment `s` (in `b`) continues run `r` (whose first frame is `a`).
fn continues(r: &Run, a: &[u8], s: &Segment, b: &[u8]) -> bool {
    let (la, lb) = (&r.lay, &s.lay);
    if la.l3 != lb.l3 || la.payload() != lb.payload() || a[..la.l3] != b[..lb.l3] {
        return false;
    }
    let ip_same = match la.ip {
        Ip::V4 { .. } => {
            let df = a[la.l3 + 6] & 0x40 != 0;
            let id_ok = s.id == r.last_id.wrapping_add(1) || (df && s.id == r.last_id);
            a[la.l3 + 1] == b[lb.l3 + 1]             // TOS
                && a[la.l3 + 6] & 0x40 == b[lb.l3 + 6] & 0x40 // DF
                && a[la.l3 + 8..la.l3 + 10] == b[lb.l3 + 8..lb.l3 + 10] // TTL, protocol
                && id_ok
        }
        Ip::V6 { .. } => {
            a[la.l3..la.l3 + 4] == b[lb.l3..lb.l3 + 4]   // version, class, flow label
                && a[la.l3 + 6..la.l3 + 8] == b[lb.l3 + 6..lb.l3 + 8] // next header, hop limit
        }
    };
    let l4_same = if la.proto == PROTO_TCP {
        a[la.l4 + 8..la.l4 + 12] == b[lb.l4 + 8..lb.l4 + 12] // ack
            && (a[la.l4 + 13] ^ s.flags) & !TCP_PSH == 0
            && a[la.l4 + 20..la.payload()] == b[lb.l4 + 20..lb.payload()] // options
            && s.seq == r.next_seq
    } else {
        true // UDP: ports (the flow) and sizes are all there is
    };
    let room = la.proto == PROTO_TCP || r.segments < MAX_UDP_SEGMENTS;
    ip_same
        && same_flow(a, la, b, lb)
        && l4_same
        && room
        && s.len <= r.mss
        && r.ip_len + s.len <= MAX_IP
}

/// Coalesces `eg.out` in place for an interface accepting `caps`. `input`
/// is the burst the `Slot::In` entries point into.
pub fn coalesce(input: &[Frame], caps: &Caps, eg: &mut Egress) {
    let l2 = caps.l2;
    let slots = eg.take_out();
    let mut runs: Vec<Run> = Vec::with_capacity(MAX_FLOWS);
    let mut verify = Stats::default();
    for slot in slots.iter().copied() {
        let seg = candidate(eg.frame(input, slot), caps, &mut verify);
        let Some(s) = seg else {
            close_flow(input, l2, eg, &mut runs, slot);
            eg.out.push(slot);
            continue;
        };
        let data = &eg.frame(input, slot).data;
        let found = runs
            .iter()
            .position(|r| same_flow(&eg.frame(input, eg.out[r.pos]).data, &r.lay, data, &s.lay));
        if let Some(i) = found {
            let r = runs[i];
            if continues(&r, &eg.frame(input, eg.out[r.pos]).data, &s, data) {
                append(input, eg, &mut runs[i], slot, &s);
                if s.len < r.mss || s.flags & TCP_PSH != 0 {
                    finish(eg, runs.swap_remove(i));
                }
                continue;
            }
            finish(eg, runs.swap_remove(i));
        }
        let pos = eg.out.len();
        eg.out.push(slot);
        if s.flags & TCP_PSH != 0 {
            continue;
        }
        if runs.len() == MAX_FLOWS {
            finish(eg, runs.remove(0));
        }
        runs.push(Run {
            pos,
            lay: s.lay,
            next_seq: s.seq.wrapping_add(u32::try_from(s.len).unwrap_or(0)),
            last_id: s.id,
            mss: s.len,
            ip_len: s.lay.end - s.lay.l3,
            segments: 1,
            psh: false,
        });
    }
    for r in runs {
        finish(eg, r);
    }
    eg.stats.add(&verify);
    eg.spare_slots(slots);
}

/// A frame that cannot join a run ends its flow's run, so that it is not
/// overtaken by later segments of its own flow.
fn close_flow(input: &[Frame], l2: bool, eg: &mut Egress, runs: &mut Vec<Run>, slot: Slot) {
    if runs.is_empty() {
        return;
    }
    let data = &eg.frame(input, slot).data;
    let Ok(lay) = parse::parse(data, l2) else {
        return;
    };
    if lay.fragment || lay.l4_len == 0 {
        return;
    }
    let hit = runs
        .iter()
        .position(|r| same_flow(&eg.frame(input, eg.out[r.pos]).data, &r.lay, data, &lay));
    if let Some(i) = hit {
        finish(eg, runs.swap_remove(i));
    }
}

/// Appends segment `s` (at `slot`) to run `r`; the run's frame moves into
/// the pool on its first merge.
fn append(input: &[Frame], eg: &mut Egress, r: &mut Run, slot: Slot, s: &Segment) {
    if r.segments == 1 {
        eg.own(input, r.pos, r.lay.end);
    }
    let Slot::Pool(dst) = eg.out[r.pos] else {
        return;
    };
    let payload = s.lay.payload()..s.lay.end;
    match slot {
        Slot::In(k) => eg.pool.extend(dst, &input[k].data[payload]),
        Slot::Pool(k) => eg.pool.extend_from_self(dst, k, payload),
    }
    r.segments += 1;
    r.ip_len += s.len;
    r.next_seq = s.seq.wrapping_add(u32::try_from(s.len).unwrap_or(0));
    r.last_id = s.id;
    r.psh |= s.flags & TCP_PSH != 0;
    eg.stats.coalesced += 1;
}

/// Writes the merged frame's headers: lengths, IPv4 checksum, PSH, the
/// partial TCP checksum and the virtio-net header that describes it.
fn finish(eg: &mut Egress, r: Run) {
    if r.segments < 2 {
        return;
    }
    let Slot::Pool(i) = eg.out[r.pos] else {
        return;
    };
    let f = eg.pool.get_mut(i);
    super::gso::fix_ip(&mut f.data, &r.lay, 0);
    if r.lay.proto == PROTO_UDP {
        let ulen = u16::try_from(f.data.len() - r.lay.l4).unwrap_or(u16::MAX);
        csum::put16(&mut f.data, r.lay.l4 + 4, ulen);
    }
    if r.psh {
        f.data[r.lay.l4 + 13] |= TCP_PSH;
    }
    let mut hdr = super::gso::l4_checksum(f, &r.lay, true);
    hdr.gso_type = match (r.lay.proto, r.lay.is_v6()) {
        (PROTO_UDP, _) => vnet::GSO_UDP_L4,
        (_, true) => vnet::GSO_TCPV6,
        (_, false) => vnet::GSO_TCPV4,
    };
    hdr.gso_size = u16::try_from(r.mss).unwrap_or(u16::MAX);
    hdr.hdr_len = u16::try_from(r.lay.payload()).unwrap_or(u16::MAX);
    f.hdr = hdr;
    eg.stats.coalesced_frames += 1;
}
