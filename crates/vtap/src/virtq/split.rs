//! The driver side of a virtio split virtqueue (virtio 1.x, section 2.7).
//!
//! # Why our own
//!
//! rust-vmm has the *device* side (`virtio-queue`; its driver side is a test
//! mock) and `virtio-drivers` is a `no_std` guest driver with a static HAL
//! over borrowed slices. vtap is the driver of a queue whose device is the
//! kernel's vhost-net (or vtap's own userspace thread), in ordinary process
//! memory, so it needs a small driver of its own. It is tested against
//! `virtio-queue`'s device side in one process, and against the real kernel
//! vhost-net in a QEMU guest.
//!
//! # Layout
//!
//! ```text
//!  desc table  16 B x size   { addr u64, len u32, flags u16, next u16 }   (driver writes)
//!  avail ring  flags u16, idx u16, ring[size] u16, used_event u16           (driver writes)
//!  used ring   flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16 (device writes)
//! ```
//!
//! Each part sits on its own 4 KiB page of the [`Arena`]. Free descriptors are
//! a singly linked list through `next`; a chain taken from it is returned to
//! it when the device reports its head in the used ring. The links the driver
//! follows are its own copy (`next`), never read back from the table: the
//! table is memory the device can write, and a device scribbling on a `next`
//! field once sent the free list outside the ring (found by the `device`
//! fuzz target). What the driver does read from shared memory — used
//! entries, indices, event fields — is validated or only steers
//! notifications. With
//! `VIRTIO_RING_F_INDIRECT_DESC`, a multi-segment chain costs one ring slot: its
//! descriptors go into a per-head indirect table allocated at set-up.
//!
//! # Memory ordering
//!
//! The device runs concurrently on another CPU (a vhost kernel thread or a
//! vtap thread). Four orderings matter; each is commented where it happens:
//! 1. publish: descriptor and `avail.ring` writes before the `avail.idx` store
//!    (release);
//! 2. kick decision: the `avail.idx` store before the load of
//!    `used.flags`/`avail_event` (full fence) — without it the driver can read
//!    a stale "don't notify" and the device sleeps on work it never saw: the
//!    tx stall VPP's tap driver had for years;
//! 3. reap: the `used.idx` load before reading the used elements and the
//!    buffers they cover (acquire);
//! 4. re-enabling interrupts: the `used_event`/flags store before re-reading
//!    `used.idx` (full fence), so a completion racing with the re-enable is
//!    seen now instead of never signalled.
//!
//! Indices are `Wrapping<u16>` and only reduced modulo `size` when used as a
//! slot number.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use vm_memory::{Address, Bytes, GuestAddress};

use super::arena::{self, Arena};

/// `VRING_DESC_F_NEXT`.
pub const DESC_F_NEXT: u16 = 1;
/// `VRING_DESC_F_WRITE`: device writes this buffer.
pub const DESC_F_WRITE: u16 = 2;
/// `VRING_DESC_F_INDIRECT`: the buffer is a table of descriptors.
pub const DESC_F_INDIRECT: u16 = 4;
/// `VRING_AVAIL_F_NO_INTERRUPT`.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VRING_USED_F_NO_NOTIFY`.
pub const USED_F_NO_NOTIFY: u16 = 1;
/// Largest queue size the split ring allows.
pub const MAX_SIZE: u16 = 32768;
/// Descriptors per indirect table (a 64 KiB super-frame in 2 KiB buffers
/// plus the header needs 33).
pub const MAX_INDIRECT: usize = 64;

const DESC_SIZE: u64 = 16;

/// Why a ring operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The size is not a power of two in 1..=32768.
    #[error("ring size {0}: must be a power of two in 1..=32768")]
    Size(u32),
    /// Not enough free descriptors (or ring slots) for the chain.
    #[error("ring full: {want} descriptors needed, {free} free")]
    Full {
        /// Needed.
        want: usize,
        /// Free.
        free: usize,
    },
    /// An empty chain, or one longer than an indirect table.
    #[error("chain of {0} segments is empty or too long")]
    ChainLength(usize),
    /// The arena has no room for the ring.
    #[error(transparent)]
    Arena(#[from] arena::Error),
    /// A memory access outside the arena (a bug, or a corrupt ring).
    #[error("ring memory access")]
    Memory(#[from] vm_memory::GuestMemoryError),
    /// The device returned a head that is not outstanding.
    #[error("device returned descriptor {0}, which is not in flight")]
    BadUsed(u32),
    /// The free list led outside the ring (a driver bug).
    #[error("free list reached descriptor {0}, outside the ring")]
    FreeList(u16),
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Address in the arena.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
    /// Written by the device (rx) rather than read (tx).
    pub device_writes: bool,
}

/// Where the three parts of the ring live (for vhost's `SET_VRING_ADDR` and
/// virtio-queue's `set_*_address`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingAddrs {
    /// Descriptor table.
    pub desc: GuestAddress,
    /// Available ring.
    pub avail: GuestAddress,
    /// Used ring.
    pub used: GuestAddress,
}

impl RingAddrs {
    /// A device-side view of this ring (rust-vmm `virtio-queue`), as the
    /// userspace backend and the tests drive it: size, the three addresses,
    /// EVENT_IDX, ready, checked against `mem`.
    pub fn device_queue(
        &self,
        size: u16,
        event_idx: bool,
        mem: &vm_memory::GuestMemoryMmap,
    ) -> Result<virtio_queue::Queue, virtio_queue::Error> {
        use virtio_queue::QueueT;
        let mut q = virtio_queue::Queue::new(size)?;
        let lo_hi = |g: GuestAddress| {
            let [l0, l1, l2, l3, h0, h1, h2, h3] = g.0.to_le_bytes();
            (
                Some(u32::from_le_bytes([l0, l1, l2, l3])),
                Some(u32::from_le_bytes([h0, h1, h2, h3])),
            )
        };
        let (l, h) = lo_hi(self.desc);
        q.set_desc_table_address(l, h);
        let (l, h) = lo_hi(self.avail);
        q.set_avail_ring_address(l, h);
        let (l, h) = lo_hi(self.used);
        q.set_used_ring_address(l, h);
        q.set_event_idx(event_idx);
        q.set_ready(true);
        if q.is_valid(mem) {
            Ok(q)
        } else {
            Err(virtio_queue::Error::InvalidSize)
        }
    }
}

/// A snapshot of the ring's indices, for `show`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RingState {
    /// Ring size.
    pub size: u16,
    /// `avail.idx` as last published.
    pub avail_idx: u16,
    /// `used.idx` as the device last wrote it.
    pub used_idx: u16,
    /// Next used entry the driver will reap.
    pub last_used: u16,
    /// Descriptors free.
    pub free: u16,
    /// Chains in flight.
    pub in_flight: u16,
}

/// The driver side of one split virtqueue.
#[derive(Debug)]
pub struct DriverQueue {
    arena: Arena,
    addrs: RingAddrs,
    size: u16,
    event_idx: bool,
    indirect: Option<GuestAddress>,
    free_head: u16,
    num_free: u16,
    /// The driver's copy of each descriptor's `next` link.
    next: Vec<u16>,
    /// Descriptors each in-flight head holds (0 = not in flight).
    chain_len: Vec<u16>,
    /// Next `avail.idx` value (unpublished entries are beyond the last store).
    avail_idx: Wrapping<u16>,
    /// `avail.idx` as of the last kick decision.
    kicked_at: Wrapping<u16>,
    /// Next used entry to reap.
    last_used: Wrapping<u16>,
    in_flight: u16,
}

impl DriverQueue {
    /// Lays out a ring of `size` entries in `arena`. `indirect` reserves an
    /// indirect table per slot; `event_idx` uses `VIRTIO_RING_F_EVENT_IDX`.
    pub fn new(arena: &Arena, size: u16, indirect: bool, event_idx: bool) -> Result<Self, Error> {
        if size == 0 || size > MAX_SIZE || !size.is_power_of_two() {
            return Err(Error::Size(u32::from(size)));
        }
        let n = usize::from(size);
        let desc = arena.alloc(n * 16, 4096)?;
        let avail = arena.alloc(6 + 2 * n, 4096)?;
        let used = arena.alloc(6 + 8 * n, 4096)?;
        let indirect = if indirect {
            Some(arena.alloc(n * MAX_INDIRECT * 16, 4096)?)
        } else {
            None
        };
        let q = Self {
            arena: arena.clone(),
            addrs: RingAddrs { desc, avail, used },
            size,
            event_idx,
            indirect,
            free_head: 0,
            num_free: size,
            next: (1..=size).collect(),
            chain_len: vec![0; n],
            avail_idx: Wrapping(0),
            kicked_at: Wrapping(0),
            last_used: Wrapping(0),
            in_flight: 0,
        };
        // The free list: 0 -> 1 -> ... -> size-1.
        for i in 0..size {
            q.write_desc(q.desc_addr(i), 0, 0, 0, i.wrapping_add(1))?;
        }
        Ok(q)
    }

    /// The ring's addresses.
    pub fn addrs(&self) -> RingAddrs {
        self.addrs
    }

    /// Ring size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free descriptors.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Chains handed to the device and not yet returned.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Whether indirect tables are in use.
    pub fn indirect(&self) -> bool {
        self.indirect.is_some()
    }

    fn desc_addr(&self, i: u16) -> GuestAddress {
        self.addrs.desc.unchecked_add(u64::from(i) * DESC_SIZE)
    }

    fn write_desc(
        &self,
        at: GuestAddress,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), Error> {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        self.arena.mem().write_slice(&b, at)?;
        Ok(())
    }

    fn read_u16(&self, at: GuestAddress, order: Ordering) -> Result<u16, Error> {
        Ok(u16::from_le(self.arena.mem().load(at, order)?))
    }

    fn store_u16(&self, v: u16, at: GuestAddress, order: Ordering) -> Result<(), Error> {
        self.arena.mem().store(v.to_le(), at, order)?;
        Ok(())
    }

    fn desc_next(&self, i: u16) -> Result<u16, Error> {
        self.next
            .get(usize::from(i))
            .copied()
            .ok_or(Error::FreeList(i))
    }

    /// Slots a chain of `segs` segments needs.
    pub fn slots_for(&self, segs: usize) -> usize {
        if self.indirect.is_some() && segs > 1 {
            1
        } else {
            segs
        }
    }

    /// Writes a chain and queues its head in the avail ring (not yet visible
    /// to the device: see [`DriverQueue::publish`]). Returns the head.
    pub fn add(&mut self, segs: &[Segment]) -> Result<u16, Error> {
        let n = segs.len();
        let too_long = match self.indirect {
            Some(_) => n > MAX_INDIRECT,
            None => n > usize::from(self.size),
        };
        if n == 0 || too_long {
            return Err(Error::ChainLength(n));
        }
        let slots = self.slots_for(n);
        if slots > usize::from(self.num_free) {
            return Err(Error::Full {
                want: slots,
                free: usize::from(self.num_free),
            });
        }
        let head = self.free_head;
        match (self.indirect, n) {
            (Some(table_base), 2..) => {
                let table = table_base.unchecked_add(u64::from(head) * (MAX_INDIRECT as u64) * 16);
                for (i, s) in segs.iter().enumerate() {
                    let last = i + 1 == n;
                    let flags = if s.device_writes { DESC_F_WRITE } else { 0 }
                        | if last { 0 } else { DESC_F_NEXT };
                    let next = if last {
                        0
                    } else {
                        u16::try_from(i + 1).unwrap_or(0)
                    };
                    self.write_desc(
                        table.unchecked_add(i as u64 * DESC_SIZE),
                        s.addr.0,
                        s.len,
                        flags,
                        next,
                    )?;
                }
                self.free_head = self.desc_next(head)?;
                let table_len = u32::try_from(n * 16).unwrap_or(u32::MAX);
                self.write_desc(self.desc_addr(head), table.0, table_len, DESC_F_INDIRECT, 0)?;
            }
            _ => {
                let mut idx = head;
                for (i, s) in segs.iter().enumerate() {
                    let next = self.desc_next(idx)?;
                    let last = i + 1 == n;
                    let flags = if s.device_writes { DESC_F_WRITE } else { 0 }
                        | if last { 0 } else { DESC_F_NEXT };
                    self.write_desc(self.desc_addr(idx), s.addr.0, s.len, flags, next)?;
                    if last {
                        self.free_head = next;
                    }
                    idx = next;
                }
            }
        }
        self.num_free -= u16::try_from(slots).unwrap_or(u16::MAX);
        self.chain_len[usize::from(head)] = u16::try_from(slots).unwrap_or(u16::MAX);
        self.in_flight += 1;
        let slot = self.avail_idx.0 & (self.size - 1);
        let at = self.addrs.avail.unchecked_add(4 + 2 * u64::from(slot));
        self.store_u16(head, at, Ordering::Relaxed)?;
        self.avail_idx += 1;
        Ok(head)
    }

    /// Makes every chain added so far visible to the device.
    pub fn publish(&mut self) -> Result<(), Error> {
        // Ordering 1: release — the descriptor-table and avail.ring writes of
        // `add` become visible before (or with) the new avail.idx; the device
        // reads the index with acquire (or a read barrier) and then the slots.
        self.store_u16(
            self.avail_idx.0,
            self.addrs.avail.unchecked_add(2),
            Ordering::Release,
        )
    }

    /// Whether the device wants a kick for what was published since the last
    /// call (`VRING_USED_F_NO_NOTIFY`, or `avail_event` with EVENT_IDX).
    pub fn needs_kick(&mut self) -> Result<bool, Error> {
        // Ordering 2: full fence — our avail.idx store (publish) must be
        // globally visible before we read the device's suppression state. A
        // device that reads a stale avail.idx and then sets NO_NOTIFY (or an
        // old avail_event) must not be missed: otherwise both sides wait.
        fence(Ordering::SeqCst);
        let old = self.kicked_at;
        let new = self.avail_idx;
        self.kicked_at = new;
        if self.event_idx {
            let at = self.addrs.used.unchecked_add(4 + 8 * u64::from(self.size));
            let event = Wrapping(self.read_u16(at, Ordering::Relaxed)?);
            Ok(need_event(event, new, old))
        } else {
            let flags = self.read_u16(self.addrs.used, Ordering::Relaxed)?;
            Ok(flags & USED_F_NO_NOTIFY == 0)
        }
    }

    /// Reaps one completed chain: `(head, bytes the device wrote)`.
    pub fn pop_used(&mut self) -> Result<Option<(u16, u32)>, Error> {
        // Ordering 3: acquire — the used.idx load happens before the loads of
        // the used element and of the buffer contents it covers.
        let used_idx =
            Wrapping(self.read_u16(self.addrs.used.unchecked_add(2), Ordering::Acquire)?);
        if used_idx == self.last_used {
            return Ok(None);
        }
        let slot = self.last_used.0 & (self.size - 1);
        let elem = self.addrs.used.unchecked_add(4 + 8 * u64::from(slot));
        let id: u32 = u32::from_le(self.arena.mem().read_obj(elem)?);
        let len: u32 = u32::from_le(self.arena.mem().read_obj(elem.unchecked_add(4))?);
        let head = u16::try_from(id)
            .ok()
            .filter(|&h| h < self.size && self.chain_len[usize::from(h)] != 0)
            .ok_or(Error::BadUsed(id))?;
        self.free_chain(head)?;
        self.last_used += 1;
        Ok(Some((head, len)))
    }

    fn free_chain(&mut self, head: u16) -> Result<(), Error> {
        let slots = std::mem::take(&mut self.chain_len[usize::from(head)]);
        // Walk to the chain's last ring descriptor and splice the chain onto
        // the front of the free list. An indirect chain holds one descriptor.
        let mut tail = head;
        for _ in 1..slots {
            tail = self.desc_next(tail)?;
        }
        let tail_at = self.desc_addr(tail);
        self.store_u16(self.free_head, tail_at.unchecked_add(14), Ordering::Relaxed)?;
        *self
            .next
            .get_mut(usize::from(tail))
            .ok_or(Error::FreeList(tail))? = self.free_head;
        self.free_head = head;
        self.num_free += slots;
        self.in_flight -= 1;
        Ok(())
    }

    /// Asks the device not to interrupt (polling mode).
    pub fn disable_interrupts(&mut self) -> Result<(), Error> {
        if !self.event_idx {
            self.store_u16(AVAIL_F_NO_INTERRUPT, self.addrs.avail, Ordering::Relaxed)?;
        }
        // With EVENT_IDX, used_event is simply not advanced: the device
        // interrupts at most once more, when it passes the old value.
        Ok(())
    }

    /// Asks the device to interrupt on the next completion. Returns `true` if
    /// completions are already waiting (reap them instead of sleeping).
    pub fn enable_interrupts(&mut self) -> Result<bool, Error> {
        if self.event_idx {
            let at = self.addrs.avail.unchecked_add(4 + 2 * u64::from(self.size));
            self.store_u16(self.last_used.0, at, Ordering::Relaxed)?;
        } else {
            self.store_u16(0, self.addrs.avail, Ordering::Relaxed)?;
        }
        // Ordering 4: full fence — the store above must be visible before we
        // re-read used.idx; a completion that landed in between would
        // otherwise neither be seen here nor signalled by the device.
        fence(Ordering::SeqCst);
        let used_idx =
            Wrapping(self.read_u16(self.addrs.used.unchecked_add(2), Ordering::Acquire)?);
        Ok(used_idx != self.last_used)
    }

    /// The indices, for `show`.
    pub fn state(&self) -> RingState {
        let used_idx = self
            .read_u16(self.addrs.used.unchecked_add(2), Ordering::Relaxed)
            .unwrap_or(0);
        RingState {
            size: self.size,
            avail_idx: self.avail_idx.0,
            used_idx,
            last_used: self.last_used.0,
            free: self.num_free,
            in_flight: self.in_flight,
        }
    }
}

/// `vring_need_event`: whether moving the index from `old` to `new` crossed
/// the device's `event` (it asked to be told once that entry is published).
pub fn need_event(event: Wrapping<u16>, new: Wrapping<u16>, old: Wrapping<u16>) -> bool {
    (new - event - Wrapping(1)) < (new - old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_table() {
        let w = Wrapping;
        // (event, new, old, expected)
        let cases = [
            (0, 1, 0, true),         // device waits for entry 0; we published 0
            (1, 1, 0, false),        // waits for entry 1; only 0 published
            (5, 10, 0, true),        // crossed in a batch
            (10, 10, 0, false),      // not reached
            (3, 3, 3, false),        // nothing new
            (65535, 0, 65534, true), // across the wrap
            (0, 2, 65534, true),
            (1, 0, 65534, false),
        ];
        for (e, n, o, want) in cases {
            assert_eq!(
                need_event(w(e), w(n), w(o)),
                want,
                "event {e} new {n} old {o}"
            );
        }
    }

    /// The device owns nothing in the descriptor table, but can write it:
    /// links it scribbles over must not steer the free list (the `device`
    /// fuzz target sent it outside the ring before the driver kept its own).
    #[test]
    fn a_device_scribbling_over_the_descriptor_table_cannot_break_the_free_list() {
        let a = Arena::new(1 << 20).expect("arena");
        let mut q = DriverQueue::new(&a, 8, false, false).expect("ring");
        let seg = Segment {
            addr: GuestAddress(0),
            len: 64,
            device_writes: true,
        };
        for round in 0..4u16 {
            let heads: Vec<u16> = (0..4).map(|_| q.add(&[seg, seg]).expect("add")).collect();
            q.publish().expect("publish");
            // Every `next` field (and the rest of each descriptor) garbage.
            for i in 0..8u64 {
                a.mem()
                    .write_slice(&[0xff; 16], q.addrs.desc.unchecked_add(16 * i))
                    .expect("scribble");
            }
            // The device completes the chains, in reverse.
            for (k, &h) in (0u16..).zip(heads.iter().rev()) {
                let slot = (round * 4 + k) % 8;
                let elem = q.addrs.used.unchecked_add(4 + 8 * u64::from(slot));
                a.mem().write_obj(u32::from(h), elem).expect("id");
                let idx = round * 4 + k + 1;
                a.mem()
                    .write_obj(idx, q.addrs.used.unchecked_add(2))
                    .expect("idx");
            }
            while q.pop_used().expect("pop").is_some() {}
            assert_eq!((q.num_free(), q.in_flight()), (8, 0), "round {round}");
        }
    }

    #[test]
    fn sizes_are_checked() {
        let a = Arena::new(1 << 20).expect("arena");
        for bad in [0u16, 3, 100] {
            assert!(matches!(
                DriverQueue::new(&a, bad, false, false),
                Err(Error::Size(_))
            ));
        }
        for ok in [1u16, 2, 256] {
            let q = DriverQueue::new(&a, ok, true, true).expect("ring");
            assert_eq!(q.num_free(), ok);
        }
    }

    #[test]
    fn chains_use_and_return_descriptors() {
        let a = Arena::new(1 << 20).expect("arena");
        let buf = a.alloc(4096, 64).expect("buf");
        let seg = |w| Segment {
            addr: buf,
            len: 64,
            device_writes: w,
        };
        for indirect in [false, true] {
            let mut q = DriverQueue::new(&a, 8, indirect, false).expect("ring");
            let h = q.add(&[seg(false), seg(false), seg(true)]).expect("add");
            assert_eq!(q.num_free(), if indirect { 7 } else { 5 });
            q.publish().expect("publish");
            assert_eq!(q.state().avail_idx, 1);
            let too_long = if indirect { MAX_INDIRECT + 1 } else { 9 };
            let e = q.add(&vec![seg(false); too_long]).expect_err("too long");
            assert!(matches!(e, Error::ChainLength(n) if n == too_long), "{e}");
            // Pretend to be the device: used[0] = {h, 7}; used.idx = 1.
            let used = q.addrs().used;
            a.mem()
                .write_obj(u32::from(h), used.unchecked_add(4))
                .expect("w");
            a.mem().write_obj(7u32, used.unchecked_add(8)).expect("w");
            a.mem().write_obj(1u16, used.unchecked_add(2)).expect("w");
            assert_eq!(q.pop_used().expect("pop"), Some((h, 7)));
            assert_eq!(q.pop_used().expect("pop"), None);
            assert_eq!((q.num_free(), q.in_flight()), (8, 0));
            // A head that is not in flight is refused, never freed twice.
            a.mem().write_obj(2u16, used.unchecked_add(2)).expect("w");
            a.mem()
                .write_obj(u32::from(h), used.unchecked_add(12))
                .expect("w");
            assert!(matches!(q.pop_used(), Err(Error::BadUsed(_))));
        }
    }

    #[test]
    fn full_ring_is_refused_not_overwritten() {
        let a = Arena::new(1 << 20).expect("arena");
        let buf = a.alloc(64, 64).expect("buf");
        let mut q = DriverQueue::new(&a, 4, false, false).expect("ring");
        let s = Segment {
            addr: buf,
            len: 8,
            device_writes: true,
        };
        for _ in 0..4 {
            q.add(&[s]).expect("add");
        }
        assert!(matches!(q.add(&[s]), Err(Error::Full { want: 1, free: 0 })));
    }
}
