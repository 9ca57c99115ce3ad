//! vtap's driver-side split ring against an independent device side:
//! rust-vmm's `virtio-queue`, serving the same memory in this process.
//!
//! Random sequences of add / publish / device pop / device complete (in any
//! order) / reap, over plain and indirect chains, with and without EVENT_IDX,
//! at several ring sizes. After every step: descriptors are conserved (none
//! leaked, none handed out twice); every chain the device sees is exactly
//! the one the driver added (addresses, lengths, directions, bytes); every
//! completion the driver reaps is one the device made, with its length and
//! the bytes the device wrote.

// The random generator narrows u64 draws to lengths and bytes on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::collections::BTreeMap;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vtap::virtq::split::{Error as RingError, MAX_INDIRECT};
use vtap::virtq::{Arena, DriverQueue, Segment};

/// xorshift64*: a small deterministic generator, so failures replay by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const BUF: u64 = 512;

struct Chain {
    segs: Vec<Segment>,
    readable_data: Vec<Vec<u8>>,
    bufs: Vec<GuestAddress>,
}

struct Harness {
    arena: Arena,
    drv: DriverQueue,
    dev: Queue,
    free_bufs: Vec<GuestAddress>,
    /// head -> chain the driver added and has not reaped.
    outstanding: BTreeMap<u16, Chain>,
    /// Published heads the device has not popped yet, in order.
    published: Vec<u16>,
    unpublished: Vec<u16>,
    /// Popped by the device, not completed: head -> (bytes written per writable seg).
    device_holds: BTreeMap<u16, Vec<Vec<u8>>>,
    /// Completed by the device, not reaped: head -> (len, written).
    completed: BTreeMap<u16, (u32, Vec<Vec<u8>>)>,
}

impl Harness {
    fn new(size: u16, indirect: bool, event_idx: bool) -> Self {
        let arena = Arena::new(8 << 20).expect("arena");
        let drv = DriverQueue::new(&arena, size, indirect, event_idx).expect("ring");
        let dev = drv
            .addrs()
            .device_queue(size, event_idx, arena.mem())
            .expect("device accepts our layout");
        let free_bufs = (0..2048)
            .map(|_| arena.alloc(BUF as usize, 64).expect("buf"))
            .collect();
        Self {
            arena,
            drv,
            dev,
            free_bufs,
            outstanding: BTreeMap::new(),
            published: vec![],
            unpublished: vec![],
            device_holds: BTreeMap::new(),
            completed: BTreeMap::new(),
        }
    }

    fn slots_in_flight(&self) -> usize {
        self.outstanding
            .values()
            .map(|c| self.drv.slots_for(c.segs.len()))
            .sum()
    }

    fn check_conservation(&self) {
        assert_eq!(
            usize::from(self.drv.num_free()) + self.slots_in_flight(),
            usize::from(self.drv.size()),
            "descriptors conserved"
        );
        assert_eq!(usize::from(self.drv.in_flight()), self.outstanding.len());
    }

    fn add(&mut self, rng: &mut Rng) {
        let max = if self.drv.indirect() && rng.below(4) == 0 {
            MAX_INDIRECT as u64
        } else {
            4
        };
        let n = 1 + rng.below(max) as usize;
        if n > self.free_bufs.len() {
            return;
        }
        let n_read = rng.below(n as u64 + 1) as usize;
        let mut segs = vec![];
        let mut readable_data = vec![];
        let mut bufs = vec![];
        for i in 0..n {
            let addr = self.free_bufs.pop().expect("buf");
            let len = 1 + rng.below(BUF) as u32;
            let device_writes = i >= n_read;
            if !device_writes {
                let data = rng.bytes(len as usize);
                self.arena.mem().write_slice(&data, addr).expect("fill");
                readable_data.push(data);
            }
            segs.push(Segment {
                addr,
                len,
                device_writes,
            });
            bufs.push(addr);
        }
        let free_before = self.drv.num_free();
        match self.drv.add(&segs) {
            Ok(head) => {
                assert!(
                    !self.outstanding.contains_key(&head),
                    "head {head} handed out twice"
                );
                self.unpublished.push(head);
                self.outstanding.insert(
                    head,
                    Chain {
                        segs,
                        readable_data,
                        bufs,
                    },
                );
            }
            Err(RingError::Full { want, free }) => {
                assert_eq!(free, usize::from(free_before));
                assert!(want > free, "refused only when it does not fit");
                self.free_bufs.extend(bufs);
            }
            Err(RingError::ChainLength(_)) => {
                assert!(!self.drv.indirect() && n > usize::from(self.drv.size()));
                self.free_bufs.extend(bufs);
            }
            Err(e) => panic!("add: {e}"),
        }
    }

    fn publish(&mut self) {
        self.drv.publish().expect("publish");
        self.published.append(&mut self.unpublished);
    }

    fn device_pop(&mut self, rng: &mut Rng) {
        let mem = self.arena.mem();
        let Some(chain) = self.dev.pop_descriptor_chain(mem) else {
            assert!(
                self.published.is_empty(),
                "device sees every published chain"
            );
            return;
        };
        let head = chain.head_index();
        assert_eq!(self.published.first(), Some(&head), "avail order preserved");
        self.published.remove(0);
        let want = &self.outstanding[&head];
        let descs: Vec<_> = chain.collect();
        assert_eq!(descs.len(), want.segs.len(), "chain length for head {head}");
        let mut written = vec![];
        let mut r = 0;
        for (d, s) in descs.iter().zip(&want.segs) {
            assert_eq!(
                (d.addr(), d.len(), d.is_write_only()),
                (s.addr, s.len, s.device_writes)
            );
            if d.is_write_only() {
                let n = rng.below(u64::from(d.len()) + 1) as usize;
                let data = rng.bytes(n);
                mem.write_slice(&data, d.addr()).expect("device write");
                written.push(data);
            } else {
                let mut got = vec![0u8; d.len() as usize];
                mem.read_slice(&mut got, d.addr()).expect("device read");
                assert_eq!(got, want.readable_data[r], "bytes intact");
                r += 1;
            }
        }
        self.device_holds.insert(head, written);
    }

    fn device_complete(&mut self, rng: &mut Rng) {
        if self.device_holds.is_empty() {
            return;
        }
        // Any held chain, not necessarily the oldest: out-of-order completion.
        let k = rng.below(self.device_holds.len() as u64) as usize;
        let head = *self.device_holds.keys().nth(k).expect("key");
        let written = self.device_holds.remove(&head).expect("held");
        let len: usize = written.iter().map(Vec::len).sum();
        self.dev
            .add_used(self.arena.mem(), head, len as u32)
            .expect("add_used");
        self.completed.insert(head, (len as u32, written));
    }

    fn reap(&mut self) {
        while let Some((head, len)) = self.drv.pop_used().expect("pop_used") {
            let (want_len, written) = self
                .completed
                .remove(&head)
                .unwrap_or_else(|| panic!("reaped head {head} the device did not complete"));
            assert_eq!(len, want_len);
            let chain = self.outstanding.remove(&head).expect("outstanding");
            let writable = chain.segs.iter().filter(|s| s.device_writes);
            for (s, data) in writable.zip(&written) {
                let mut got = vec![0u8; data.len()];
                self.arena.mem().read_slice(&mut got, s.addr).expect("read");
                assert_eq!(&got, data, "device's bytes reach the driver");
            }
            self.free_bufs.extend(chain.bufs);
        }
        assert!(self.completed.is_empty(), "every completion reaped");
    }

    fn drain(&mut self, rng: &mut Rng) {
        self.publish();
        while !self.published.is_empty() {
            self.device_pop(rng);
        }
        while !self.device_holds.is_empty() {
            self.device_complete(rng);
        }
        self.reap();
        assert!(self.outstanding.is_empty());
        assert_eq!(self.drv.num_free(), self.drv.size(), "no descriptor leaked");
    }
}

#[test]
fn driver_ring_agrees_with_virtio_queue_device_side() {
    let mut runs = 0;
    for size in [1u16, 4, 16, 256] {
        for indirect in [false, true] {
            for event_idx in [false, true] {
                for seed in 1..=12u64 {
                    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) + u64::from(size));
                    let mut h = Harness::new(size, indirect, event_idx);
                    for _ in 0..1500 {
                        match rng.below(10) {
                            0..=3 => h.add(&mut rng),
                            4 => h.publish(),
                            5..=6 => h.device_pop(&mut rng),
                            7..=8 => h.device_complete(&mut rng),
                            _ => h.reap(),
                        }
                        h.check_conservation();
                    }
                    h.drain(&mut rng);
                    runs += 1;
                }
            }
        }
    }
    assert_eq!(runs, 4 * 2 * 2 * 12);
}

#[test]
fn notification_suppression_is_honoured_both_ways() {
    for event_idx in [false, true] {
        let mut rng = Rng(7);
        let mut h = Harness::new(16, false, event_idx);
        let mem = h.arena.mem().clone();

        // Device asks for no notifications: publishing does not need a kick.
        h.dev.disable_notification(&mem).expect("disable");
        h.add(&mut rng);
        h.publish();
        if !event_idx {
            assert!(!h.drv.needs_kick().expect("kick?"), "NO_NOTIFY honoured");
        } else {
            let _ = h.drv.needs_kick();
        }
        // Device re-enables: it is told work is pending, drains it, and (as a
        // device going idle does) re-enables again; the next publish must kick.
        let more = h.dev.enable_notification(&mem).expect("enable");
        assert!(more, "device sees the pending chain on re-enable");
        h.device_pop(&mut rng);
        assert!(!h.dev.enable_notification(&mem).expect("enable"), "drained");
        h.add(&mut rng);
        h.publish();
        assert!(
            h.drv.needs_kick().expect("kick?"),
            "kick after re-enable ({event_idx})"
        );

        // Driver in polling mode: the device must not need to interrupt.
        h.drv.disable_interrupts().expect("disable irq");
        h.device_complete(&mut rng);
        if !event_idx {
            // virtio-queue's device side ignores VRING_AVAIL_F_NO_INTERRUPT
            // ("not supported yet"), so check the flag where vhost-net reads it.
            let flags: u16 = mem.read_obj(h.drv.addrs().avail).expect("flags");
            assert_eq!(flags, 1, "VRING_AVAIL_F_NO_INTERRUPT set");
        }
        let _ = h.dev.needs_notification(&mem);
        // Driver re-enables with a completion already waiting: it is told so.
        assert!(
            h.drv.enable_interrupts().expect("enable irq"),
            "pending completion seen"
        );
        h.reap();
        assert!(
            !h.drv.enable_interrupts().expect("enable irq"),
            "nothing pending"
        );
        h.device_pop(&mut rng);
        h.device_complete(&mut rng);
        assert!(
            h.dev.needs_notification(&mem).expect("irq?"),
            "interrupt wanted ({event_idx})"
        );
        h.drain(&mut rng);
    }
}
