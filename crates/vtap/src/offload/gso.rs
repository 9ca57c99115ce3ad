//! Software segmentation: a TCP (TSO) or UDP (USO) super-frame cut into
//! frames that each carry at most `gso_size` bytes of payload, for an
//! egress interface that cannot take the super-frame (VPP drops it and
//! counts `GSO_PACKET_DROP`; we do what the kernel's `skb_segment` does).
//!
//! Per segment, as Linux's `tcp_gso_segment`/`__udp_gso_segment` and
//! `inet_gso_segment` write them:
//! - IPv4: total length, identification incremented per segment, header
//!   checksum; IPv6: payload length (extension headers copied as they are).
//! - TCP: sequence number advanced by the payload before it; FIN and PSH
//!   only on the last segment, CWR only on the first.
//! - UDP: each segment its own datagram with its own length.
//! - L4 checksum: complete, or left partial (pseudo-header sum in the
//!   field, `NEEDS_CSUM`) when the egress interface takes partial checksums.

use super::csum;
use super::parse::{Ip, Layout, PROTO_TCP};
use super::{Frame, Pool};
use crate::wire::vnet::{self, VnetHdr};

use crate::wire::tcp::{CWR as TCP_CWR, FIN as TCP_FIN, PSH as TCP_PSH};

/// Cuts `frame` (laid out as `lay`, TCP or UDP, not a fragment) into
/// segments of at most `mss` payload bytes, appended to `out`. Returns the
/// number of segments. `partial` leaves L4 checksums for the receiver.
pub fn segment(frame: &[u8], lay: &Layout, mss: usize, partial: bool, out: &mut Pool) -> usize {
    let hdrs = &frame[..lay.payload()];
    let payload = &frame[lay.payload()..lay.end];
    let mut n = 0;
    for (i, chunk) in payload.chunks(mss.max(1)).enumerate() {
        let last = (i + 1) * mss >= payload.len();
        let f = out.alloc();
        f.data.extend_from_slice(hdrs);
        f.data.extend_from_slice(chunk);
        fix_ip(&mut f.data, lay, i);
        if lay.proto == PROTO_TCP {
            fix_tcp(&mut f.data, lay.l4, i, mss, last);
        } else {
            let ulen = u16::try_from(f.data.len() - lay.l4).unwrap_or(u16::MAX);
            csum::put16(&mut f.data, lay.l4 + 4, ulen);
        }
        f.hdr = l4_checksum(f, lay, partial);
        n += 1;
    }
    n
}

/// Lengths (and the IPv4 identification and header checksum) for a packet
/// that is now `buf.len()` bytes; `index` is the segment number.
pub fn fix_ip(buf: &mut [u8], lay: &Layout, index: usize) {
    let l3_len = buf.len() - lay.l3;
    match lay.ip {
        Ip::V4 { ihl } => {
            csum::put16(buf, lay.l3 + 2, u16::try_from(l3_len).unwrap_or(u16::MAX));
            // IDs wrap, as the kernel's do; the low 16 bits are the id.
            let step = u16::try_from(index & 0xffff).unwrap_or(0);
            let id = csum::get16(buf, lay.l3 + 4).wrapping_add(step);
            csum::put16(buf, lay.l3 + 4, id);
            csum::ipv4_header(buf, lay.l3, ihl);
        }
        Ip::V6 { .. } => {
            let plen = u16::try_from(l3_len - 40).unwrap_or(u16::MAX);
            csum::put16(buf, lay.l3 + 4, plen);
        }
    }
}

fn fix_tcp(buf: &mut [u8], l4: usize, index: usize, mss: usize, last: bool) {
    let seq = u32::from_be_bytes([buf[l4 + 4], buf[l4 + 5], buf[l4 + 6], buf[l4 + 7]]);
    // Sequence numbers are modulo 2^32 (RFC 9293); so is the offset.
    let offset = u32::try_from((index * mss) & 0xffff_ffff).unwrap_or(0);
    buf[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
    if !last {
        buf[l4 + 13] &= !(TCP_FIN | TCP_PSH);
    }
    if index > 0 {
        buf[l4 + 13] &= !TCP_CWR;
    }
}

/// Where the L4 checksum field is, from the L4 header.
pub fn csum_offset(proto: u8) -> usize {
    if proto == PROTO_TCP {
        16
    } else {
        6
    }
}

/// Writes the L4 checksum of the packet in `f` (complete, or partial with
/// the pseudo-header sum) and returns the header that describes it.
pub fn l4_checksum(f: &mut Frame, lay: &Layout, partial: bool) -> VnetHdr {
    let at = lay.l4 + csum_offset(lay.proto);
    let l4_len = u32::try_from(f.data.len() - lay.l4).unwrap_or(u32::MAX);
    let (src, dst) = lay.addrs(&f.data);
    let pseudo = csum::pseudo(src, dst, lay.proto, l4_len);
    let to_u16 = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    if partial {
        csum::put16(&mut f.data, at, csum::fold(pseudo));
        VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: to_u16(lay.l4),
            csum_offset: to_u16(at - lay.l4),
            ..VnetHdr::default()
        }
    } else {
        csum::put16(&mut f.data, at, 0);
        let sum = csum::add(pseudo, &f.data[lay.l4..]);
        csum::put16(&mut f.data, at, csum::l4_field(sum));
        VnetHdr::default()
    }
}
