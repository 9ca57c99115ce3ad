//! Offloads done in software where the egress interface cannot take them:
//! what the virtio-net header of a frame asks for (`NEEDS_CSUM`, `gso_type`)
//! is checked against what the interface it leaves through accepts
//! ([`Caps`], from its `TUNSETOFFLOAD` mask), and the gap is closed here
//! instead of dropping the frame, as VPP does:
//!
//! | the frame carries         | egress takes it  | egress does not          |
//! |---------------------------|------------------|--------------------------|
//! | GSO super-frame (TCP/UDP) | passed whole     | segmented ([`gso`])      |
//! | partial checksum          | passed partial   | checksum computed        |
//! | complete checksum         | passed           | passed                   |
//!
//! and, toward an interface with `gro-coalesce`, runs of TCP segments are
//! merged into super-frames ([`gro`]). `DATA_VALID` from the kernel is kept
//! on frames that pass and lets coalescing skip verifying the checksum.
//!
//! Frames with offload metadata are parsed ([`parse`]) and checked first: a
//! header that contradicts the frame (a TCPv4 super-frame that is not TCP
//! over IPv4, a checksum offset outside the frame, a zero `gso_size`, a
//! fragment) is counted in [`Stats::drop_bad_header`] and dropped, never
//! passed to the kernel or allowed to panic. Frames without metadata are not
//! parsed at all unless coalescing is on: the common case costs nothing.
//!
//! All of this is pure functions over byte slices, tested against frames
//! built and verified by an independent implementation (etherparse), by
//! property tests, and by a fuzz target (`fuzz/`).

pub mod csum;
pub mod gro;
pub mod gso;
pub mod parse;

use serde::{Deserialize, Serialize};

use crate::tun::offload as mask;
use crate::wire::vnet::{self, VnetHdr};
use crate::wire::TxFrame;

/// What an egress interface accepts, from its offload mask and settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Caps {
    /// Ethernet frames (TAP); bare IP packets otherwise (TUN).
    pub l2: bool,
    /// Checksum-partial frames (`TUN_F_CSUM`).
    pub csum: bool,
    /// TCP/IPv4 super-frames (`TUN_F_TSO4`).
    pub tso4: bool,
    /// TCP/IPv6 super-frames (`TUN_F_TSO6`).
    pub tso6: bool,
    /// UDP/IPv4 super-frames (`TUN_F_USO4`).
    pub uso4: bool,
    /// UDP/IPv6 super-frames (`TUN_F_USO6`).
    pub uso6: bool,
    /// Coalesce TCP runs into super-frames toward this interface.
    pub gro: bool,
}

impl Caps {
    /// From the offload mask the kernel accepted for the interface.
    pub fn from_mask(offload_mask: u32, gro_coalesce: bool, tun: bool) -> Self {
        let has = |bit: u32| offload_mask & bit != 0;
        Self {
            l2: !tun,
            csum: has(mask::CSUM),
            tso4: has(mask::CSUM) && has(mask::TSO4),
            tso6: has(mask::CSUM) && has(mask::TSO6),
            uso4: has(mask::CSUM) && has(mask::USO4),
            uso6: has(mask::CSUM) && has(mask::USO6),
            // Merged frames are TCP super-frames with a partial checksum.
            gro: gro_coalesce && has(mask::CSUM) && has(mask::TSO4) && has(mask::TSO6),
        }
    }

    /// Whether a super-frame of `gso_type` over IPv6 (`v6`) may pass.
    fn takes(&self, gso_type: u8, v6: bool) -> bool {
        match gso_type {
            vnet::GSO_TCPV4 => self.tso4,
            vnet::GSO_TCPV6 => self.tso6,
            vnet::GSO_UDP_L4 if v6 => self.uso6,
            vnet::GSO_UDP_L4 => self.uso4,
            _ => false,
        }
    }
}

/// Offload work and drops, per egress interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    /// Super-frames segmented in software.
    pub segmented: u64,
    /// Segments they were cut into.
    pub segments: u64,
    /// Checksum-partial frames whose checksum was computed in software.
    pub csum_completed: u64,
    /// Segments merged into a preceding one (GRO).
    pub coalesced: u64,
    /// Super-frames built by merging.
    pub coalesced_frames: u64,
    /// Segments whose checksum was verified in software before merging.
    pub csum_verified: u64,
    /// Segments not merged because their checksum was wrong (passed on
    /// untouched, for the receiver to drop).
    pub csum_bad: u64,
    /// Frames dropped: the virtio-net header contradicts the frame.
    pub drop_bad_header: u64,
}

impl Stats {
    /// Adds `o` to these.
    pub fn add(&mut self, o: &Stats) {
        self.segmented += o.segmented;
        self.segments += o.segments;
        self.csum_completed += o.csum_completed;
        self.coalesced += o.coalesced;
        self.coalesced_frames += o.coalesced_frames;
        self.csum_verified += o.csum_verified;
        self.csum_bad += o.csum_bad;
        self.drop_bad_header += o.drop_bad_header;
    }
}

/// A frame with its virtio-net header, owned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub hdr: VnetHdr,
    /// The frame from its Ethernet (TAP) or IP (TUN) header on.
    pub data: Vec<u8>,
}

/// Frames built here (segments, completed and merged frames), reused across
/// bursts so that a warm pool allocates nothing.
#[derive(Debug, Default)]
pub struct Pool {
    frames: Vec<Frame>,
    used: usize,
}

impl Pool {
    /// Forgets the frames of the last burst (keeps their buffers).
    pub fn reset(&mut self) {
        self.used = 0;
    }

    /// Frames in use.
    pub fn len(&self) -> usize {
        self.used
    }

    /// Whether no frame is in use.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// A cleared frame at index [`Pool::len`] before the call.
    pub fn alloc(&mut self) -> &mut Frame {
        if self.used == self.frames.len() {
            self.frames.push(Frame::default());
        }
        let f = &mut self.frames[self.used];
        self.used += 1;
        f.data.clear();
        f.hdr = VnetHdr::default();
        f
    }

    /// Frame `i`.
    pub fn get(&self, i: usize) -> &Frame {
        &self.frames[i]
    }

    fn get_mut(&mut self, i: usize) -> &mut Frame {
        &mut self.frames[i]
    }

    fn extend(&mut self, dst: usize, bytes: &[u8]) {
        self.frames[dst].data.extend_from_slice(bytes);
    }

    /// Appends `range` of frame `src` to frame `dst` (`src != dst`).
    fn extend_from_self(&mut self, dst: usize, src: usize, range: std::ops::Range<usize>) {
        let (to, from) = if dst < src {
            let (lo, hi) = self.frames.split_at_mut(src);
            (&mut lo[dst], &hi[0])
        } else {
            let (lo, hi) = self.frames.split_at_mut(dst);
            (&mut hi[0], &lo[src])
        };
        to.data.extend_from_slice(&from.data[range]);
    }
}

/// Where an outgoing frame is: untouched in the received burst, or built in
/// the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Index into the received burst.
    In(usize),
    /// Index into the [`Pool`].
    Pool(usize),
}

/// What a frame needs before it may leave through an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: pass it as it is.
    Pass,
    /// Compute its partial checksum.
    Complete,
    /// Cut it into segments of the given payload size.
    Segment(parse::Layout, usize),
    /// Drop it: the header contradicts the frame.
    Drop(BadHeader),
}

/// Why a frame's virtio-net header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadHeader {
    /// The frame itself does not parse.
    #[error(transparent)]
    Frame(#[from] parse::Error),
    /// An unknown `gso_type`.
    #[error("unknown gso_type {0}")]
    GsoType(u8),
    /// `gso_type` names another protocol or IP version than the frame's.
    #[error("gso_type {0} does not match the frame's protocol")]
    GsoMismatch(u8),
    /// A super-frame with `gso_size` 0 or no payload.
    #[error("super-frame with gso_size {gso_size} and {payload} payload bytes")]
    GsoSize {
        /// The header's `gso_size`.
        gso_size: u16,
        /// The payload after all headers.
        payload: usize,
    },
    /// A fragment cannot be segmented.
    #[error("super-frame is an IP fragment")]
    Fragment,
    /// `csum_start`/`csum_offset` outside the frame or not at L4.
    #[error("checksum at {start}+{offset} does not fit the frame")]
    CsumRange {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
    },
}

/// Decides what frame `data` with header `hdr` needs to leave through an
/// interface that accepts `caps`.
pub fn classify(caps: &Caps, hdr: &VnetHdr, data: &[u8]) -> Action {
    match check(caps, hdr, data) {
        Ok(a) => a,
        Err(e) => Action::Drop(e),
    }
}

fn check(caps: &Caps, hdr: &VnetHdr, data: &[u8]) -> Result<Action, BadHeader> {
    if hdr.gso_type != vnet::GSO_NONE {
        // ECN is a modifier: alone (0x80) it is no type at all, which the
        // kernel refuses too.
        return check_gso(caps, hdr, hdr.gso_type & !vnet::GSO_ECN, data);
    }
    if hdr.flags & vnet::F_NEEDS_CSUM == 0 {
        return Ok(Action::Pass);
    }
    let (start, offset) = (usize::from(hdr.csum_start), usize::from(hdr.csum_offset));
    if start + offset + 2 > data.len() {
        return Err(BadHeader::CsumRange {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
        });
    }
    Ok(if caps.csum {
        Action::Pass
    } else {
        Action::Complete
    })
}

fn check_gso(caps: &Caps, hdr: &VnetHdr, gso: u8, data: &[u8]) -> Result<Action, BadHeader> {
    let lay = parse::parse(data, caps.l2)?;
    let fits = match gso {
        vnet::GSO_TCPV4 => lay.proto == parse::PROTO_TCP && !lay.is_v6(),
        vnet::GSO_TCPV6 => lay.proto == parse::PROTO_TCP && lay.is_v6(),
        vnet::GSO_UDP_L4 => lay.proto == parse::PROTO_UDP,
        _ => return Err(BadHeader::GsoType(hdr.gso_type)),
    };
    if !fits {
        return Err(BadHeader::GsoMismatch(hdr.gso_type));
    }
    if lay.fragment {
        return Err(BadHeader::Fragment);
    }
    let payload = lay.end - lay.payload();
    if hdr.gso_size == 0 || payload == 0 {
        return Err(BadHeader::GsoSize {
            gso_size: hdr.gso_size,
            payload,
        });
    }
    let at_l4 = usize::from(hdr.csum_start) == lay.l4
        && usize::from(hdr.csum_offset) == gso::csum_offset(lay.proto);
    if hdr.flags & vnet::F_NEEDS_CSUM != 0 && !at_l4 {
        return Err(BadHeader::CsumRange {
            start: hdr.csum_start,
            offset: hdr.csum_offset,
        });
    }
    let mss = usize::from(hdr.gso_size);
    // A "super-frame" that fits one segment is refused by the kernel as
    // GSO (virtio_net_hdr_to_skb); it leaves as a plain frame.
    if payload > mss && caps.takes(gso, lay.is_v6()) {
        Ok(Action::Pass)
    } else {
        Ok(Action::Segment(lay, mss))
    }
}

/// The egress side of a burst: which frames leave, in which form. One per
/// forwarding worker, reused across bursts.
#[derive(Debug, Default)]
pub struct Egress {
    pool: Pool,
    out: Vec<Slot>,
    spare: Vec<Slot>,
    /// What this burst's preparation did, since [`Egress::take_stats`].
    pub stats: Stats,
}

impl Egress {
    /// Prepares frames `select` of `input` for an interface accepting `caps`.
    pub fn prepare(
        &mut self,
        caps: &Caps,
        input: &[Frame],
        select: impl IntoIterator<Item = usize>,
    ) {
        self.pool.reset();
        self.out.clear();
        for i in select {
            let f = &input[i];
            match classify(caps, &f.hdr, &f.data) {
                Action::Pass => self.out.push(Slot::In(i)),
                Action::Complete => {
                    let g = self.pool.alloc();
                    g.data.extend_from_slice(&f.data);
                    csum::complete(
                        &mut g.data,
                        usize::from(f.hdr.csum_start),
                        usize::from(f.hdr.csum_offset),
                    );
                    g.hdr = VnetHdr {
                        flags: f.hdr.flags & !vnet::F_NEEDS_CSUM,
                        ..VnetHdr::default()
                    };
                    self.out.push(Slot::Pool(self.pool.len() - 1));
                    self.stats.csum_completed += 1;
                }
                Action::Segment(lay, mss) => {
                    let first = self.pool.len();
                    let n = gso::segment(&f.data, &lay, mss, caps.csum, &mut self.pool);
                    self.out.extend((first..first + n).map(Slot::Pool));
                    self.stats.segmented += 1;
                    self.stats.segments += u64::try_from(n).unwrap_or(u64::MAX);
                }
                Action::Drop(_) => self.stats.drop_bad_header += 1,
            }
        }
        if caps.gro {
            gro::coalesce(input, caps, self);
        }
    }

    /// The prepared frames, in order, ready for a tx burst.
    pub fn tx_frames<'a>(&'a self, input: &'a [Frame]) -> Vec<TxFrame<'a>> {
        self.out
            .iter()
            .map(|&s| {
                let f = self.frame(input, s);
                TxFrame {
                    hdr: f.hdr,
                    data: &f.data,
                }
            })
            .collect()
    }

    /// The prepared frames as owned copies (tests, tools).
    pub fn to_frames(&self, input: &[Frame]) -> Vec<Frame> {
        self.out
            .iter()
            .map(|&s| self.frame(input, s).clone())
            .collect()
    }

    /// Returns and resets the counters.
    pub fn take_stats(&mut self) -> Stats {
        std::mem::take(&mut self.stats)
    }

    fn frame<'a>(&'a self, input: &'a [Frame], s: Slot) -> &'a Frame {
        match s {
            Slot::In(i) => &input[i],
            Slot::Pool(i) => self.pool.get(i),
        }
    }

    /// Moves output `pos` into the pool (to be grown), cut at `end`.
    fn own(&mut self, input: &[Frame], pos: usize, end: usize) {
        if let Slot::In(i) = self.out[pos] {
            let f = &input[i];
            let g = self.pool.alloc();
            g.hdr = f.hdr;
            g.data.extend_from_slice(&f.data[..end]);
            self.out[pos] = Slot::Pool(self.pool.len() - 1);
        } else if let Slot::Pool(i) = self.out[pos] {
            self.pool.get_mut(i).data.truncate(end);
        }
    }

    /// Takes the output list for rebuilding, leaving an empty one with
    /// spare capacity in its place.
    fn take_out(&mut self) -> Vec<Slot> {
        let mut fresh = std::mem::take(&mut self.spare);
        fresh.clear();
        std::mem::replace(&mut self.out, fresh)
    }

    fn spare_slots(&mut self, v: Vec<Slot>) {
        self.spare = v;
    }
}

/// One fuzz input through everything in this module: byte 0 picks the
/// framing and the egress offloads, bytes 1..13 are the virtio-net header,
/// the rest are frames separated by the byte pair `0xff 0x00` (so that runs
/// can form). Used by the `offload` cargo-fuzz target and by the corpus
/// replay in `cargo test`; it must never panic.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Some((hdr, rest)) = rest.split_first_chunk::<{ vnet::LEN }>() else {
        return;
    };
    let hdr = VnetHdr::parse(hdr);
    let offloads = [
        0,
        mask::CSUM,
        mask::CSUM | mask::TSO4 | mask::TSO6,
        u32::MAX,
    ];
    let caps = Caps::from_mask(offloads[usize::from(sel & 3)], sel & 4 != 0, sel & 8 != 0);
    let mut input = Vec::new();
    let mut start = 0;
    for i in 0..rest.len() {
        if rest[i..].starts_with(&[0xff, 0x00]) && i >= start {
            input.push(Frame {
                hdr,
                data: rest[start..i].to_vec(),
            });
            start = i + 2;
        }
    }
    input.push(Frame {
        hdr,
        data: rest.get(start..).unwrap_or_default().to_vec(),
    });
    let mut eg = Egress::default();
    eg.prepare(&caps, &input, 0..input.len());
    for f in eg.tx_frames(&input) {
        // What leaves with offload metadata is consistent: a super-frame
        // parses, and a checksum to complete lies inside the frame.
        if f.hdr.gso_type != vnet::GSO_NONE {
            assert!(parse::parse(f.data, caps.l2).is_ok(), "{:?}", f.hdr);
        }
        if f.hdr.flags & vnet::F_NEEDS_CSUM != 0 {
            let end = usize::from(f.hdr.csum_start) + usize::from(f.hdr.csum_offset) + 2;
            assert!(end <= f.data.len(), "{:?}", f.hdr);
        }
    }
}

#[cfg(test)]
mod tests;
