//! Entry points for the cargo-fuzz targets in `fuzz/` (and for the corpus
//! replay that `cargo test` runs on stable): each takes arbitrary bytes and
//! must never panic, loop for ever, or break an invariant it asserts.
//!
//! * [`vnet_header`]: the 12-byte virtio-net header alone, and the checks a
//!   header must pass against its frame before anything acts on it.
//! * [`device`]: a hostile *device* on the other side of vtap's rings — used
//!   entries for chains it never got, twice, with lengths that lie, a
//!   `num_buffers` that lies, scribbles over the descriptor table and the
//!   rings — against the driver side's rx and tx queues. vhost-net is
//!   trusted in practice; a driver that a buggy device can crash or lead to
//!   read outside its buffers is still a bug.

use vm_memory::{Bytes, GuestAddress};

use super::queue::{RxQueue, TxQueue, BUF_SIZE};
use crate::offload::{self, Action, Caps};
use crate::tun::offload as mask;
use crate::virtq::Arena;
use crate::wire::vnet::{self, VnetHdr};
use crate::wire::TxFrame;

/// Ring size of the fuzzed queues (small, so that ids and wrap-around are hit).
const SIZE: u16 = 8;

/// Parses a header, checks it survives a round trip byte for byte, and
/// classifies it against the rest of the input as a frame for every kind of
/// egress interface: whatever is accepted is consistent.
pub fn vnet_header(data: &[u8]) {
    let Some((raw, frame)) = data.split_first_chunk::<{ vnet::LEN }>() else {
        return;
    };
    let hdr = VnetHdr::parse(raw);
    assert_eq!(&hdr.to_bytes(), raw, "round trip");
    for m in [0, mask::CSUM, u32::MAX] {
        for tun in [false, true] {
            let caps = Caps::from_mask(m, false, tun);
            match offload::classify(&caps, &hdr, frame) {
                Action::Drop(_) => {}
                Action::Pass | Action::Complete => {
                    if hdr.flags & vnet::F_NEEDS_CSUM != 0 {
                        let end = usize::from(hdr.csum_start) + usize::from(hdr.csum_offset) + 2;
                        assert!(end <= frame.len(), "{hdr:?}");
                    }
                }
                Action::Segment(lay, mss) => {
                    assert!(mss > 0 && lay.end <= frame.len(), "{hdr:?} {lay:?}");
                }
            }
        }
    }
}

/// Reads little-endian integers off the fuzz input, zero past its end.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
}

/// Plays a hostile device against one rx and one tx queue, following the
/// operations `data` encodes, and checks the driver's invariants after each.
pub fn device(data: &[u8]) {
    let mut inp = Input(data);
    let flags = inp.u8();
    let Ok(arena) = Arena::new(1 << 20) else {
        return;
    };
    let event_idx = flags & 1 != 0;
    let (Ok(mut rx), Ok(mut tx)) = (
        RxQueue::new(&arena, SIZE, event_idx),
        TxQueue::new(&arena, SIZE, flags & 2 != 0, event_idx),
    ) else {
        return;
    };
    let mem = arena.mem();
    let frame: Vec<u8> = (0..6000u32).map(|i| i.to_le_bytes()[0]).collect();
    // Used indices as the device writes them.
    let mut used_idx = [0u16; 2];
    for _ in 0..256 {
        if inp.0.is_empty() {
            break;
        }
        let op = inp.u8();
        let which = usize::from(op >> 7);
        let addrs = if which == 0 {
            rx.device_side().ring.addrs()
        } else {
            tx.device_side().ring.addrs()
        };
        match op & 7 {
            // A used entry: any id, any length.
            0 => {
                let (id, len) = (inp.u32(), inp.u32());
                let slot = used_idx[which] % SIZE;
                let elem = addrs.used.0 + 4 + 8 * u64::from(slot);
                let _ = mem.write_obj(id.to_le(), GuestAddress(elem));
                let _ = mem.write_obj(len.to_le(), GuestAddress(elem + 4));
                used_idx[which] = used_idx[which].wrapping_add(1);
                let _ = mem.write_obj(used_idx[which].to_le(), GuestAddress(addrs.used.0 + 2));
            }
            // Scribbles over the descriptor table, avail or used ring.
            1 => {
                let region = [addrs.desc, addrs.avail, addrs.used][usize::from(inp.u8() % 3)];
                let at = u64::from(inp.u16() % (16 * SIZE));
                let _ = mem.write_slice(&inp.bytes::<8>(), GuestAddress(region.0 + at));
            }
            // Writes a header (a lying num_buffers) into the buffer the
            // driver posted under descriptor `d`, wherever it now points.
            2 => {
                let d = u64::from(u16::from(inp.u8()) % SIZE);
                let addr: u64 = mem
                    .read_obj(GuestAddress(addrs.desc.0 + 16 * d))
                    .unwrap_or(0);
                let _ = mem.write_slice(&inp.bytes::<{ vnet::LEN }>(), GuestAddress(addr));
            }
            3 => {
                let max = usize::from(inp.u8());
                let _ = rx.rx_burst(max, |f| {
                    // A frame is at most what the buffers it took can hold.
                    assert!(f.len() <= usize::from(SIZE) * BUF_SIZE as usize);
                    let _ = f.to_vec();
                });
            }
            4 => {
                let len = usize::from(inp.u16()) % frame.len();
                let f = TxFrame {
                    hdr: VnetHdr::default(),
                    data: &frame[..len],
                };
                let _ = tx.try_send(&[f, f]);
            }
            5 => {
                let _ = tx.reap();
            }
            6 => {
                let _ = rx.set_interrupts(inp.u8() & 1 != 0);
            }
            _ => {
                let _ = rx.arm();
            }
        }
        for st in [rx.state(), tx.state()] {
            assert!(st.free <= st.size && st.in_flight <= st.size, "{st:?}");
        }
    }
}
