//! The userspace backend: a vtap thread serves the rings from the tap fd,
//! as vhost-net would, for kernels without `/dev/vhost-net`.
//!
//! # Design
//!
//! One worker thread per queue pair plays the device: rust-vmm's
//! `virtio-queue` (device side) walks the same rings in the same arena that
//! the driver side fills, so `RxQueue`/`TxQueue` cannot tell this backend
//! from the kernel's. It offers what vhost-net offers and vtap needs
//! (`MRG_RXBUF`, `INDIRECT_DESC`, `VERSION_1`, `EVENT_IDX`).
//!
//! * **tx**: pop a chain, gather its buffers (header + frame) into one
//!   `write(2)` on the tap (`IFF_VNET_HDR`: the kernel takes the header). On
//!   `EAGAIN` the frame is kept, the tap is polled for `POLLOUT`, and the chain
//!   is completed only once written — no frame is lost and no chain wedged.
//!   A malformed chain (a device-writable buffer, or shorter than the header)
//!   is completed with length 0 and counted, so the driver gets its slot back.
//! * **rx**: `read(2)` a frame (header + up to 64 KiB) from the tap, then
//!   scatter it over as many rx chains as it needs, writing `num_buffers` into
//!   the header (`MRG_RXBUF`). Without enough posted buffers the frame is
//!   held, chains popped so far are kept, and the tap is *not* polled for
//!   input until the driver posts more: no 100 % CPU spin on a readable tap
//!   (cloud-hypervisor #208), no dropped frame. Each wake-up drains the tap
//!   until `EAGAIN` or the budget (cloud-hypervisor #2807).
//! * **notifications**: before sleeping the worker re-enables kicks and
//!   re-checks the rings (`enable_notification` returns whether work arrived
//!   meanwhile); it signals the driver's call eventfd only when the driver
//!   wants it — with EVENT_IDX through `needs_notification`, otherwise by
//!   reading `VRING_AVAIL_F_NO_INTERRUPT` itself, since virtio-queue does not
//!   implement that flag.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use virtio_queue::{Queue, QueueT};

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, WriteVolatile};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::queue::DeviceSide;
use super::vhost::{F_EVENT_IDX, REQUIRED};
use crate::virtq::split::AVAIL_F_NO_INTERRUPT;
use crate::virtq::Arena;
use crate::wire::vnet;

/// What this backend offers.
pub const OFFERED: u64 = REQUIRED | F_EVENT_IDX;

use crate::wire::MAX_READ as READ_BUF;
/// Frames per rx wake-up before the worker looks at tx again.
const RX_BUDGET: usize = 64;

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An eventfd or fd duplicate.
    #[error("userspace backend set-up")]
    Io(#[source] std::io::Error),
    /// virtio-queue refused the ring layout.
    #[error("userspace backend: ring rejected")]
    Queue(#[source] virtio_queue::Error),
    /// The worker thread.
    #[error("cannot start the userspace backend thread")]
    Thread(#[source] std::io::Error),
}

/// Backend-side counters (shared with the worker).
#[derive(Debug, Default)]
pub struct BackendCounters {
    /// Frames written to the tap.
    pub tx_frames: AtomicU64,
    /// Frames read from the tap.
    pub rx_frames: AtomicU64,
    /// Chains completed with length 0 because they were malformed.
    pub bad_chains: AtomicU64,
    /// Writes refused by the tap with an error other than EAGAIN.
    pub tx_errors: AtomicU64,
    /// Times a tap write hit EAGAIN (the frame was kept and retried).
    pub tx_eagain: AtomicU64,
    /// Times rx waited for buffers with a frame in hand.
    pub rx_no_buffers: AtomicU64,
}

struct DevQueue {
    q: Queue,
    kick: Arc<EventFd>,
    call: Arc<EventFd>,
    avail: GuestAddress,
    event_idx: bool,
}

impl DevQueue {
    fn new(ds: &DeviceSide<'_>, event_idx: bool, mem: &GuestMemoryMmap) -> Result<Self, Error> {
        let a = ds.ring.addrs();
        let q = a
            .device_queue(ds.ring.size(), event_idx, mem)
            .map_err(Error::Queue)?;
        Ok(Self {
            q,
            kick: ds.kick.clone(),
            call: ds.call.clone(),
            avail: a.avail,
            event_idx,
        })
    }

    /// Signals the driver if it wants to be told about new used entries.
    fn signal(&mut self, mem: &GuestMemoryMmap) {
        let wanted = if self.event_idx {
            self.q.needs_notification(mem).unwrap_or(true)
        } else {
            let flags: u16 = mem.load(self.avail, Ordering::Acquire).unwrap_or(0);
            u16::from_le(flags) & AVAIL_F_NO_INTERRUPT == 0
        };
        if wanted {
            let _ = self.call.write(1);
        }
    }

    fn has_avail(&self, mem: &GuestMemoryMmap) -> bool {
        self.q
            .avail_idx(mem, Ordering::Acquire)
            .map(|i| i.0 != self.q.next_avail())
            .unwrap_or(false)
    }
}

fn io_error(e: vm_memory::VolatileMemoryError) -> std::io::Error {
    match e {
        vm_memory::VolatileMemoryError::IOError(io) => io,
        other => std::io::Error::other(other.to_string()),
    }
}

/// An rx chain popped but not yet filled: head and writable buffers.
struct HeldChain {
    head: u16,
    bufs: Vec<(GuestAddress, u32)>,
}

struct Worker {
    mem: Arc<GuestMemoryMmap>,
    tap: File,
    rx: Option<DevQueue>,
    tx: Option<DevQueue>,
    stop: Arc<EventFd>,
    counters: Arc<BackendCounters>,
    buf: Vec<u8>,
    /// A frame read from the tap, waiting for rx buffers: its length in `rx_frame`.
    rx_frame: Vec<u8>,
    rx_len: Option<usize>,
    held: Vec<HeldChain>,
    /// A tx frame the tap refused with EAGAIN, and its chain.
    tx_blocked: Option<(u16, Vec<u8>)>,
    /// The interface was deleted under the data path: the tap fd only
    /// reports errors now, so it is no longer polled.
    tap_gone: bool,
}

/// Whether poll's answer for the tap says the interface is gone: an error
/// or hang-up without readiness (tun answers a detached fd with POLLERR).
fn tap_gone(revents: libc::c_short) -> bool {
    revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
        && revents & (libc::POLLIN | libc::POLLOUT) == 0
}

impl Worker {
    fn run(mut self) {
        loop {
            let mut progress = self.process_tx() | self.process_rx();
            if progress {
                continue;
            }
            // Going to sleep: ask for kicks again, and re-check the rings in
            // case the driver published while we were not listening. On tx,
            // anything available is work. On rx, posted buffers are work only
            // for a frame that waits for them; otherwise the tap's POLLIN is.
            let mem = self.mem.clone();
            if let Some(tx) = self.tx.as_mut() {
                progress |= tx.q.enable_notification(&*mem).unwrap_or(false);
            }
            if let Some(rx) = self.rx.as_mut() {
                let posted = rx.q.enable_notification(&*mem).unwrap_or(false);
                progress |= posted && self.rx_len.is_some();
            }
            if progress {
                continue;
            }
            if !self.sleep() {
                return;
            }
        }
    }

    /// Waits for a kick, tap readiness, or stop. Returns false on stop.
    fn sleep(&mut self) -> bool {
        // Poll the tap for input only when a frame read now could be placed:
        // no frame is waiting for buffers, and buffers are posted. Otherwise
        // the rx kick (the driver posting buffers) wakes us.
        let has_buffers =
            self.rx.as_ref().is_some_and(|r| r.has_avail(&self.mem)) || !self.held.is_empty();
        let mut tap_events: libc::c_short = 0;
        if self.rx.is_some() && self.rx_len.is_none() && has_buffers {
            tap_events |= libc::POLLIN;
        }
        if self.tx_blocked.is_some() {
            tap_events |= libc::POLLOUT;
        }
        let mut fds = vec![(self.stop.as_raw_fd(), libc::POLLIN)];
        for dq in [self.tx.as_ref(), self.rx.as_ref()].into_iter().flatten() {
            fds.push((dq.kick.as_raw_fd(), libc::POLLIN));
        }
        // A tap fd with no events still reports errors (POLLERR/POLLHUP).
        // Once the interface is gone (deleted under us: the tap then answers
        // every poll with POLLERR) it is left out, or this loop would spin
        // until the data path is stopped.
        if !self.tap_gone {
            fds.push((self.tap.as_raw_fd(), tap_events));
        }
        let mut rev = vec![0; fds.len()];
        if crate::sys::poll(&fds, &mut rev, 1000).is_err() {
            return true;
        }
        if rev[0] != 0 {
            return false;
        }
        if !self.tap_gone && tap_gone(rev[fds.len() - 1]) {
            self.tap_gone = true;
        }
        for dq in [self.tx.as_ref(), self.rx.as_ref()].into_iter().flatten() {
            let _ = dq.kick.read();
        }
        true
    }

    fn process_tx(&mut self) -> bool {
        let Some(tx) = self.tx.as_mut() else {
            return false;
        };
        let mem = &*self.mem;
        let mut done = 0usize;
        if let Some((head, frame)) = self.tx_blocked.take() {
            match (&self.tap).write(&frame) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.tx_blocked = Some((head, frame));
                    return false;
                }
                r => {
                    if r.is_err() {
                        self.counters.tx_errors.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = tx.q.add_used(mem, head, 0);
                    done += 1;
                }
            }
        }
        while let Some(chain) = tx.q.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let descs: Vec<_> = chain.collect();
            let readable = descs.iter().all(|d| !d.is_write_only());
            let total: usize = descs.iter().map(|d| d.len() as usize).sum();
            if !readable || total < vnet::LEN || total > self.buf.len() {
                self.counters.bad_chains.fetch_add(1, Ordering::Relaxed);
                let _ = tx.q.add_used(mem, head, 0);
                done += 1;
                continue;
            }
            let written = match descs.as_slice() {
                // The common case (a frame in one buffer): write(2) straight
                // from the arena, no bounce copy.
                [d] => match mem.get_slice(d.addr(), d.len() as usize) {
                    Ok(slice) => (&self.tap)
                        .write_volatile(&slice)
                        .map(drop)
                        .map_err(io_error),
                    Err(_) => Err(std::io::Error::other("descriptor outside the arena")),
                },
                // Several buffers: gather, so the tap sees one frame per write.
                _ => {
                    let mut len = 0usize;
                    let mut ok = true;
                    for d in &descs {
                        let l = d.len() as usize;
                        ok &= mem
                            .read_slice(&mut self.buf[len..len + l], d.addr())
                            .is_ok();
                        len += l;
                    }
                    if ok {
                        (&self.tap).write(&self.buf[..len]).map(drop)
                    } else {
                        Err(std::io::Error::other("descriptor outside the arena"))
                    }
                }
            };
            match written {
                Ok(()) => {
                    self.counters.tx_frames.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    // Keep the frame (gathered) and the chain; retry on POLLOUT.
                    self.counters.tx_eagain.fetch_add(1, Ordering::Relaxed);
                    let mut frame = Vec::with_capacity(total);
                    for d in &descs {
                        let mut part = vec![0u8; d.len() as usize];
                        let _ = mem.read_slice(&mut part, d.addr());
                        frame.extend_from_slice(&part);
                    }
                    self.tx_blocked = Some((head, frame));
                    break;
                }
                Err(_) => {
                    self.counters.tx_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = tx.q.add_used(mem, head, 0);
            done += 1;
        }
        if done > 0 {
            tx.signal(mem);
        }
        done > 0
    }

    /// Pops rx chains until their capacity covers `need` bytes.
    fn gather_rx_chains(&mut self, need: usize) -> bool {
        let Some(rx) = self.rx.as_mut() else {
            return false;
        };
        let mem = &*self.mem;
        let mut have: usize = self
            .held
            .iter()
            .flat_map(|c| c.bufs.iter())
            .map(|&(_, l)| l as usize)
            .sum();
        while have < need {
            let Some(chain) = rx.q.pop_descriptor_chain(mem) else {
                return false;
            };
            let head = chain.head_index();
            let bufs: Vec<_> = chain
                .filter(|d| d.is_write_only())
                .map(|d| (d.addr(), d.len()))
                .collect();
            let cap: usize = bufs.iter().map(|&(_, l)| l as usize).sum();
            if cap == 0 || (self.held.is_empty() && bufs[0].1 < vnet::LEN_U32) {
                // Unusable (no writable space, or no room for the header).
                self.counters.bad_chains.fetch_add(1, Ordering::Relaxed);
                let _ = rx.q.add_used(mem, head, 0);
                continue;
            }
            have += cap;
            self.held.push(HeldChain { head, bufs });
        }
        true
    }

    fn process_rx(&mut self) -> bool {
        if self.rx.is_none() {
            return false;
        }
        let mut delivered = 0;
        while delivered < RX_BUDGET {
            let len = match self.rx_len {
                Some(l) => l,
                None => match (&self.tap).read(&mut self.rx_frame) {
                    Ok(n) if n >= vnet::LEN => {
                        self.counters.rx_frames.fetch_add(1, Ordering::Relaxed);
                        self.rx_len = Some(n);
                        n
                    }
                    Ok(_) => continue,
                    Err(_) => break, // EAGAIN (drained) or the link went away
                },
            };
            if !self.gather_rx_chains(len) {
                self.counters.rx_no_buffers.fetch_add(1, Ordering::Relaxed);
                break;
            }
            self.deliver(len);
            self.rx_len = None;
            delivered += 1;
        }
        if delivered > 0 {
            if let Some(rx) = self.rx.as_mut() {
                rx.signal(&self.mem);
            }
        }
        delivered > 0
    }

    /// Scatters the frame in `rx_frame[..len]` over the held chains.
    fn deliver(&mut self, len: usize) {
        let Some(rx) = self.rx.as_mut() else {
            return;
        };
        let mem = &*self.mem;
        // Chains the frame will use, in order.
        let mut used_chains = 0;
        let mut cap = 0usize;
        for c in &self.held {
            used_chains += 1;
            cap += c.bufs.iter().map(|&(_, l)| l as usize).sum::<usize>();
            if cap >= len {
                break;
            }
        }
        let n = u16::try_from(used_chains).unwrap_or(u16::MAX);
        self.rx_frame[10..12].copy_from_slice(&n.to_le_bytes());
        let mut at = 0usize;
        for c in self.held.drain(..used_chains) {
            let mut written = 0u32;
            for &(addr, l) in &c.bufs {
                if at >= len {
                    break;
                }
                let take = (l as usize).min(len - at);
                let _ = mem.write_slice(&self.rx_frame[at..at + take], addr);
                at += take;
                written += u32::try_from(take).unwrap_or(0);
            }
            let _ = rx.q.add_used(mem, c.head, written);
        }
    }
}

/// A running userspace backend.
#[derive(Debug)]
pub struct UserspaceBackend {
    stop: Arc<EventFd>,
    workers: Vec<JoinHandle<()>>,
    counters: Arc<BackendCounters>,
    features: u64,
}

impl UserspaceBackend {
    /// Starts one worker per queue pair, like [`super::vhost::VhostNetBackend::start`].
    pub fn start(
        arena: &Arena,
        features: u64,
        taps: &[File],
        rx: &[DeviceSide<'_>],
        tx: &[DeviceSide<'_>],
    ) -> Result<Self, Error> {
        let event_idx = features & F_EVENT_IDX != 0;
        let stop = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(Error::Io)?);
        let counters = Arc::new(BackendCounters::default());
        let mut me = Self {
            stop,
            workers: vec![],
            counters: counters.clone(),
            features,
        };
        let mem = arena.shared_mem();
        for pair in 0..rx.len().max(tx.len()) {
            let worker = Worker {
                mem: mem.clone(),
                tap: taps[pair % taps.len()].try_clone().map_err(Error::Io)?,
                rx: rx
                    .get(pair)
                    .map(|d| DevQueue::new(d, event_idx, &mem))
                    .transpose()?,
                tx: tx
                    .get(pair)
                    .map(|d| DevQueue::new(d, event_idx, &mem))
                    .transpose()?,
                stop: me.stop.clone(),
                counters: counters.clone(),
                buf: vec![0; READ_BUF],
                rx_frame: vec![0; READ_BUF],
                rx_len: None,
                held: vec![],
                tx_blocked: None,
                tap_gone: false,
            };
            let handle = std::thread::Builder::new()
                .name(format!("vtap-user-q{pair}"))
                .spawn(move || worker.run())
                .map_err(Error::Thread)?;
            me.workers.push(handle);
        }
        Ok(me)
    }

    /// The negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The backend's counters.
    pub fn counters(&self) -> &BackendCounters {
        &self.counters
    }
}

impl Drop for UserspaceBackend {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtq::{DriverQueue, Segment};

    #[test]
    fn only_errors_without_readiness_mean_the_tap_is_gone() {
        use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
        let cases = [
            (0, false),
            (POLLIN, false),
            (POLLOUT, false),
            (POLLERR, true),
            (POLLHUP, true),
            (POLLNVAL, true),
            (POLLERR | POLLIN, false),
        ];
        for (rev, gone) in cases {
            assert_eq!(tap_gone(rev), gone, "revents {rev:#x}");
        }
    }

    #[test]
    fn malformed_tx_chains_are_completed_with_length_zero_and_counted() {
        let arena = Arena::new(1 << 20).expect("arena");
        let mut ring = DriverQueue::new(&arena, 8, false, false).expect("ring");
        let kick = Arc::new(EventFd::new(EFD_NONBLOCK).expect("eventfd"));
        let call = Arc::new(EventFd::new(EFD_NONBLOCK).expect("eventfd"));
        // /dev/null stands in for the tap: writes succeed, nothing to read.
        let sink = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .expect("/dev/null");
        let backend = UserspaceBackend::start(
            &arena,
            REQUIRED,
            &[sink],
            &[],
            &[DeviceSide {
                ring: &ring,
                kick: &kick,
                call: &call,
            }],
        )
        .expect("start");
        let buf = arena.alloc(4096, 64).expect("buf");
        let seg = |len, device_writes| Segment {
            addr: buf,
            len,
            device_writes,
        };
        let bad_direction = ring.add(&[seg(64, false), seg(64, true)]).expect("add");
        let too_short = ring.add(&[seg(4, false)]).expect("add");
        let good = ring.add(&[seg(72, false)]).expect("add");
        ring.publish().expect("publish");
        kick.write(1).expect("kick");

        let mut done = vec![];
        for _ in 0..100 {
            crate::sys::poll_readable(&call, 20).expect("poll");
            while let Some(u) = ring.pop_used().expect("pop") {
                done.push(u);
            }
            if done.len() == 3 {
                break;
            }
        }
        done.sort_unstable();
        let mut want = vec![(bad_direction, 0), (too_short, 0), (good, 0)];
        want.sort_unstable();
        assert_eq!(done, want, "every chain returned, tx chains with length 0");
        assert_eq!(ring.num_free(), 8, "no slot wedged");
        let c = backend.counters();
        assert_eq!(c.bad_chains.load(Ordering::Relaxed), 2);
        assert_eq!(c.tx_frames.load(Ordering::Relaxed), 1);
    }
}
