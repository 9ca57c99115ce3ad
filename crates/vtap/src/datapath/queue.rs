//! Rx and tx queues: a driver ring, its packet buffers, its eventfds, and
//! the burst operations the data plane calls.
//!
//! # Design
//!
//! **Rx.** Every rx descriptor is one 2 KiB buffer, device-writable, from a
//! fixed set carved out of the arena (one per ring slot). With
//! `VIRTIO_NET_F_MRG_RXBUF` the device puts the 12-byte header at the start of
//! the first buffer and spreads a larger frame (a 64 KiB GSO super-frame) over
//! `num_buffers` consecutive used entries. `num_buffers` is validated (1 ≤ n ≤
//! what the device has returned) before any buffer is read; a bad one is
//! counted and its buffers recycled, never trusted. Refill happens in chunks,
//! like VPP: only once at least size/8 slots are free, so the device is kicked
//! once per chunk rather than once per buffer.
//!
//! **Tx.** A frame is copied (header first) into 2 KiB buffers from a pool;
//! a frame that needs several becomes one chain, which with
//! `VIRTIO_RING_F_INDIRECT_DESC` costs a single ring slot. Completed chains are
//! reaped at the start of each burst and their buffers returned to the pool.
//! The device is kicked only when the ring says it wants it
//! (`VRING_USED_F_NO_NOTIFY` / EVENT_IDX).
//!
//! Frames handed to the rx callback are views of the arena buffers (zero
//! copy); the buffers go back to the device after the callback returns.

use std::collections::VecDeque;
use std::sync::Arc;

use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::virtq::split::{self, DriverQueue, Segment};
use crate::virtq::Arena;
use crate::wire::vnet::{self, VnetHdr};
use crate::wire::TxFrame;

/// Size of one packet buffer.
pub const BUF_SIZE: u32 = 2048;
/// Largest frame vtap accepts on tx: a 64 KiB super-frame plus its headers.
pub const MAX_FRAME: usize = 65_536 + 128;
/// Most frames per burst (VPP's vector size).
pub const MAX_BURST: usize = 256;

/// Why a queue operation failed (not per-packet drops: those are counted).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ring.
    #[error(transparent)]
    Ring(#[from] split::Error),
    /// The arena.
    #[error(transparent)]
    Arena(#[from] crate::virtq::arena::Error),
    /// Buffer memory.
    #[error("buffer memory access")]
    Memory(#[from] vm_memory::GuestMemoryError),
    /// An eventfd.
    #[error("eventfd")]
    EventFd(#[source] std::io::Error),
}

/// Per-queue counters (VPP's, by reason).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Counters {
    /// Frames delivered (rx) or queued (tx).
    pub packets: u64,
    /// Their bytes, without the virtio-net header.
    pub bytes: u64,
    /// Kicks sent to the device.
    pub kicks: u64,
    /// Rx: frames with an invalid header or `num_buffers`.
    pub drop_bad_header: u64,
    /// Rx: used entries shorter than the header.
    pub drop_truncated: u64,
    /// Tx: no free ring slot or buffer.
    pub drop_no_free_slots: u64,
    /// Tx: frame larger than [`MAX_FRAME`].
    pub drop_too_big: u64,
    /// Tx (direct engine): frames the tap refused (interface down or gone).
    #[serde(default)]
    pub drop_io_error: u64,
}

fn eventfd() -> Result<EventFd, Error> {
    EventFd::new(EFD_NONBLOCK).map_err(Error::EventFd)
}

/// The device-facing parts of a queue: ring addresses and eventfds. The
/// eventfds are shared (`Arc`), not duplicated: a backend that keeps them
/// holds the same fds, so an interface costs no extra descriptors.
#[derive(Debug)]
pub struct DeviceSide<'a> {
    /// The ring.
    pub ring: &'a DriverQueue,
    /// Written by the driver to wake the device.
    pub kick: &'a Arc<EventFd>,
    /// Written by the device to wake the driver.
    pub call: &'a Arc<EventFd>,
}

/// What rx and tx queues share: the ring, the eventfds, the counters.
#[derive(Debug)]
struct Core {
    ring: DriverQueue,
    kick: Arc<EventFd>,
    call: Arc<EventFd>,
    counters: Counters,
}

impl Core {
    fn new(ring: DriverQueue) -> Result<Self, Error> {
        Ok(Self {
            ring,
            kick: Arc::new(eventfd()?),
            call: Arc::new(eventfd()?),
            counters: Counters::default(),
        })
    }

    fn device_side(&self) -> DeviceSide<'_> {
        DeviceSide {
            ring: &self.ring,
            kick: &self.kick,
            call: &self.call,
        }
    }

    /// Makes what was added visible and kicks the device if it wants it.
    fn publish_and_kick(&mut self) -> Result<(), Error> {
        self.ring.publish()?;
        if self.ring.needs_kick()? {
            self.kick.write(1).map_err(Error::EventFd)?;
            self.counters.kicks += 1;
        }
        Ok(())
    }
}

/// A received frame: its header and its bytes, still where the queue put
/// them (zero copy until the consumer decides).
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// The virtio-net header.
    pub hdr: VnetHdr,
    body: Body<'a>,
    len: usize,
}

/// Where a received frame's bytes are.
#[derive(Debug)]
enum Body<'a> {
    /// Pieces of ring buffers in the arena (ring engines).
    Arena {
        segs: &'a [(GuestAddress, u32)],
        arena: &'a Arena,
    },
    /// One buffer the frame was read into whole (direct engine), which the
    /// consumer may take over.
    Owned(&'a mut Vec<u8>),
}

impl<'a> RxFrame<'a> {
    /// A frame read whole into `buf`, which the consumer may take over (the
    /// direct engine; any port kind that reads frames whole; fakes).
    pub fn owned(hdr: VnetHdr, buf: &'a mut Vec<u8>) -> Self {
        Self {
            hdr,
            len: buf.len(),
            body: Body::Owned(buf),
        }
    }

    /// Frame length (without the virtio-net header).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the frame into `out`, reusing its allocation.
    pub fn copy_into(&self, out: &mut Vec<u8>) {
        out.clear();
        match &self.body {
            Body::Owned(buf) => out.extend_from_slice(buf),
            Body::Arena { segs, arena } => {
                out.resize(self.len, 0);
                let mut at = 0;
                for &(a, l) in *segs {
                    let l = l as usize;
                    if arena.mem().read_slice(&mut out[at..at + l], a).is_err() {
                        out.truncate(at);
                        return;
                    }
                    at += l;
                }
            }
        }
    }

    /// Puts the frame into `out`: by swapping buffers when the frame has one
    /// of its own (no copy; the queue reads its next frame into `out`'s old
    /// allocation), else by copying.
    pub fn into_vec(self, out: &mut Vec<u8>) {
        match self.body {
            Body::Owned(buf) => std::mem::swap(buf, out),
            Body::Arena { .. } => self.copy_into(out),
        }
    }

    /// Copies the frame out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        self.copy_into(&mut out);
        out
    }
}

/// How the consumer of an rx queue waits for frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RxMode {
    /// Never sleep; the device is asked not to interrupt
    /// (`VRING_AVAIL_F_NO_INTERRUPT`), saving it an eventfd write per batch.
    Polling,
    /// Sleep on the call eventfd whenever a burst comes back empty.
    #[default]
    Interrupt,
    /// Poll while frames keep coming; after [`ADAPTIVE_IDLE_BURSTS`] empty
    /// bursts in a row, sleep as in interrupt mode.
    Adaptive,
}

/// Empty bursts before an adaptive queue goes to sleep.
pub const ADAPTIVE_IDLE_BURSTS: u32 = 64;

/// An rx queue.
#[derive(Debug)]
pub struct RxQueue {
    arena: Arena,
    core: Core,
    /// Buffer of each in-flight head.
    buf_of_head: Vec<GuestAddress>,
    free_bufs: Vec<GuestAddress>,
    /// Reaped used entries not yet consumed as a whole frame: each entry's
    /// *buffer* and length. Not its head: reaping returns the descriptor to
    /// the free list, and a refill may reuse that head (and its
    /// `buf_of_head` slot) before the rest of a merged frame arrives.
    pending: VecDeque<(GuestAddress, u32)>,
}

impl RxQueue {
    /// A queue of `size` slots with `size` buffers, filled and published.
    pub fn new(arena: &Arena, size: u16, event_idx: bool) -> Result<Self, Error> {
        let ring = DriverQueue::new(arena, size, false, event_idx)?;
        let n = usize::from(size);
        let base = arena.alloc(n * BUF_SIZE as usize, 4096)?;
        let free_bufs = (0..n)
            .rev()
            .map(|i| base.unchecked_add(i as u64 * u64::from(BUF_SIZE)))
            .collect();
        let mut q = Self {
            arena: arena.clone(),
            core: Core::new(ring)?,
            buf_of_head: vec![GuestAddress(0); n],
            free_bufs,
            pending: VecDeque::new(),
        };
        q.refill(true)?;
        Ok(q)
    }

    /// Asks the device to signal completions (`on`) or not to
    /// (`VRING_AVAIL_F_NO_INTERRUPT`, for a polled queue). Returns whether
    /// completions are already waiting.
    pub fn set_interrupts(&mut self, on: bool) -> Result<bool, Error> {
        if on {
            Ok(self.core.ring.enable_interrupts()?)
        } else {
            self.core.ring.disable_interrupts()?;
            Ok(false)
        }
    }

    /// The device-facing parts.
    pub fn device_side(&self) -> DeviceSide<'_> {
        self.core.device_side()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.core.counters
    }

    /// Ring state.
    pub fn state(&self) -> split::RingState {
        self.core.ring.state()
    }

    /// Posts free buffers: all of them if `force`, else only once at least
    /// size/8 are free (VPP's chunked refill). Kicks if the device wants it.
    fn refill(&mut self, force: bool) -> Result<(), Error> {
        let free = usize::from(self.core.ring.num_free());
        let chunk = (usize::from(self.core.ring.size()) / 8).max(1);
        if free == 0 || (!force && free < chunk) {
            return Ok(());
        }
        while let Some(buf) = self.free_bufs.pop() {
            let seg = Segment {
                addr: buf,
                len: BUF_SIZE,
                device_writes: true,
            };
            match self.core.ring.add(&[seg]) {
                Ok(head) => self.buf_of_head[usize::from(head)] = buf,
                Err(split::Error::Full { .. }) => {
                    self.free_bufs.push(buf);
                    break;
                }
                Err(e) => {
                    self.free_bufs.push(buf);
                    return Err(e.into());
                }
            }
        }
        self.core.publish_and_kick()
    }

    /// Receives up to `max` frames, calling `f` on each; returns how many.
    pub fn rx_burst(&mut self, max: usize, mut f: impl FnMut(RxFrame<'_>)) -> Result<usize, Error> {
        let mut done = 0;
        let mut segs: Vec<(GuestAddress, u32)> = Vec::with_capacity(4);
        while done < max.min(MAX_BURST) {
            while let Some((head, len)) = self.core.ring.pop_used()? {
                self.pending
                    .push_back((self.buf_of_head[usize::from(head)], len));
            }
            let Some(&(buf, len)) = self.pending.front() else {
                break;
            };
            if (len as usize) < vnet::LEN {
                self.pending.pop_front();
                self.free_bufs.push(buf);
                self.core.counters.drop_truncated += 1;
                continue;
            }
            let mut raw = [0u8; vnet::LEN];
            self.arena.mem().read_slice(&mut raw, buf)?;
            let hdr = VnetHdr::parse(&raw);
            let n = usize::from(hdr.num_buffers);
            if n == 0 || n > usize::from(self.core.ring.size()) {
                self.pending.pop_front();
                self.free_bufs.push(buf);
                self.core.counters.drop_bad_header += 1;
                continue;
            }
            if self.pending.len() < n {
                // The rest has not been returned yet (vhost returns a merged
                // frame's entries together; a partial one is a device bug).
                if usize::from(self.core.ring.in_flight()) == 0 {
                    self.pending.pop_front();
                    self.free_bufs.push(buf);
                    self.core.counters.drop_bad_header += 1;
                    continue;
                }
                break;
            }
            segs.clear();
            let mut total = 0usize;
            for (i, (b, l)) in self.pending.drain(..n).enumerate() {
                // A device cannot make a buffer longer than it was posted.
                let l = l.min(BUF_SIZE);
                let (a, l) = if i == 0 {
                    (b.unchecked_add(u64::from(vnet::LEN_U32)), l - vnet::LEN_U32)
                } else {
                    (b, l)
                };
                segs.push((a, l));
                total += l as usize;
                self.free_bufs.push(b);
            }
            f(RxFrame {
                hdr,
                body: Body::Arena {
                    segs: &segs,
                    arena: &self.arena,
                },
                len: total,
            });
            self.core.counters.packets += 1;
            self.core.counters.bytes += total as u64;
            done += 1;
        }
        self.refill(false)?;
        Ok(done)
    }

    /// Asks the device to signal the next completion; returns `true` if
    /// frames are already waiting (then don't sleep). For waiting on many
    /// queues at once with [`RxQueue::call_fd`].
    pub fn arm(&mut self) -> Result<bool, Error> {
        Ok(self.core.ring.enable_interrupts()? || !self.pending.is_empty())
    }

    /// The eventfd the device signals (readable after a completion).
    pub fn call_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.core.call.as_raw_fd()
    }

    /// Clears a signal on the call eventfd.
    pub fn ack(&self) {
        let _ = self.core.call.read();
    }

    /// Blocks until the device signals (interrupt mode), after re-enabling
    /// interrupts; returns at once if completions are already waiting.
    pub fn wait(&mut self, timeout_ms: i32) -> Result<(), Error> {
        if self.core.ring.enable_interrupts()? || !self.pending.is_empty() {
            return Ok(());
        }
        wait_readable(&self.core.call, timeout_ms).map_err(Error::EventFd)?;
        let _ = self.core.call.read();
        Ok(())
    }
}

/// Waits until `fd` is readable or `timeout_ms` passes.
fn wait_readable(fd: &EventFd, timeout_ms: i32) -> std::io::Result<()> {
    crate::sys::poll_readable(fd, timeout_ms).map(drop)
}

/// A tx queue.
#[derive(Debug)]
pub struct TxQueue {
    arena: Arena,
    core: Core,
    pool: Vec<GuestAddress>,
    bufs_of_head: Vec<Vec<GuestAddress>>,
}

impl TxQueue {
    /// A queue of `size` slots with a pool of `2 * size` buffers.
    pub fn new(arena: &Arena, size: u16, indirect: bool, event_idx: bool) -> Result<Self, Error> {
        let mut ring = DriverQueue::new(arena, size, indirect, event_idx)?;
        // Tx completions are reaped at each burst: no interrupts needed.
        ring.disable_interrupts()?;
        let n = 2 * usize::from(size);
        let base = arena.alloc(n * BUF_SIZE as usize, 4096)?;
        let pool = (0..n)
            .rev()
            .map(|i| base.unchecked_add(i as u64 * u64::from(BUF_SIZE)))
            .collect();
        Ok(Self {
            arena: arena.clone(),
            core: Core::new(ring)?,
            pool,
            bufs_of_head: vec![Vec::new(); usize::from(size)],
        })
    }

    /// The device-facing parts.
    pub fn device_side(&self) -> DeviceSide<'_> {
        self.core.device_side()
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.core.counters
    }

    /// Ring state.
    pub fn state(&self) -> split::RingState {
        self.core.ring.state()
    }

    /// Returns the buffers of completed chains to the pool.
    pub fn reap(&mut self) -> Result<usize, Error> {
        let mut n = 0;
        while let Some((head, _)) = self.core.ring.pop_used()? {
            let bufs = std::mem::take(&mut self.bufs_of_head[usize::from(head)]);
            self.pool.extend(bufs);
            n += 1;
        }
        Ok(n)
    }

    /// Counts `n` frames the caller gives up on as dropped for want of room.
    pub fn count_dropped(&mut self, n: usize) {
        self.core.counters.drop_no_free_slots += n as u64;
    }

    /// Counts `n` frames lost to an I/O or ring error.
    pub fn count_io_error(&mut self, n: usize) {
        self.core.counters.drop_io_error += n as u64;
    }

    /// Queues frames in order until one does not fit (no free slot or
    /// buffer); returns how far it got. Frames too large are skipped and
    /// counted. Nothing is counted as dropped: the caller may wait for the
    /// device to complete some frames and call again with the rest.
    ///
    /// On an error every frame from the one that failed on is counted as
    /// `drop_io_error` before the error is returned: none goes uncounted.
    pub fn try_send(&mut self, frames: &[TxFrame<'_>]) -> Result<Sent, Error> {
        if let Err(e) = self.reap() {
            self.count_io_error(frames.len());
            return Err(e);
        }
        let mut sent = 0;
        let mut consumed = 0;
        let mut segs: Vec<Segment> = Vec::with_capacity(4);
        for f in frames {
            if f.data.len() > MAX_FRAME {
                self.core.counters.drop_too_big += 1;
                consumed += 1;
                continue;
            }
            let total = vnet::LEN + f.data.len();
            let nbuf = total.div_ceil(BUF_SIZE as usize);
            if nbuf > self.pool.len()
                || self.core.ring.slots_for(nbuf) > usize::from(self.core.ring.num_free())
            {
                break;
            }
            let hdr = VnetHdr {
                num_buffers: 0,
                ..f.hdr
            }
            .to_bytes();
            segs.clear();
            let mut bufs = Vec::with_capacity(nbuf);
            let mut rest = f.data;
            for i in 0..nbuf {
                let b = self.pool.pop().unwrap_or(GuestAddress(0));
                bufs.push(b);
                let mut at = 0usize;
                let mut written = Ok(());
                if i == 0 {
                    written = self.arena.mem().write_slice(&hdr, b);
                    at = vnet::LEN;
                }
                let take = rest.len().min(BUF_SIZE as usize - at);
                written = written.and_then(|()| {
                    self.arena
                        .mem()
                        .write_slice(&rest[..take], b.unchecked_add(at as u64))
                });
                if let Err(e) = written {
                    self.pool.extend(bufs);
                    self.count_io_error(frames.len() - consumed);
                    return Err(e.into());
                }
                rest = &rest[take..];
                segs.push(Segment {
                    addr: b,
                    len: u32::try_from(at + take).unwrap_or(BUF_SIZE),
                    device_writes: false,
                });
            }
            match self.core.ring.add(&segs) {
                Ok(head) => self.bufs_of_head[usize::from(head)] = bufs,
                Err(e) => {
                    self.pool.extend(bufs);
                    self.count_io_error(frames.len() - consumed);
                    return Err(e.into());
                }
            }
            self.core.counters.packets += 1;
            self.core.counters.bytes += f.data.len() as u64;
            sent += 1;
            consumed += 1;
        }
        if sent > 0 {
            // The frames are in the ring (and counted as sent) even if the
            // kick fails: the device finds them at its next look.
            self.core.publish_and_kick()?;
        }
        Ok(Sent { sent, consumed })
    }
}

/// How far [`TxQueue::try_send`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Frames queued.
    pub sent: usize,
    /// Frames dealt with (queued, or skipped as too large): the caller
    /// resumes after these.
    pub consumed: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_queue::{Queue, QueueT};

    /// A device on `rxq`'s ring, served by virtio-queue in this process.
    fn device(rxq: &RxQueue, mem: &vm_memory::GuestMemoryMmap) -> Queue {
        let ring = rxq.device_side().ring;
        ring.addrs()
            .device_queue(ring.size(), false, mem)
            .expect("device queue")
    }

    /// Writes `bytes` over `chains` popped chains; returns (head, len) each.
    fn fill(
        dev: &mut Queue,
        mem: &vm_memory::GuestMemoryMmap,
        bytes: &[u8],
        chains: usize,
    ) -> Vec<(u16, u32)> {
        let mut out = vec![];
        let mut at = 0;
        for _ in 0..chains {
            let chain = dev.pop_descriptor_chain(mem).expect("posted buffer");
            let head = chain.head_index();
            let d = chain.into_iter().next().expect("one descriptor");
            let take = (d.len() as usize).min(bytes.len() - at);
            mem.write_slice(&bytes[at..at + take], d.addr())
                .expect("write");
            at += take;
            out.push((head, u32::try_from(take).expect("fits")));
        }
        out
    }

    fn with_header(n: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = VnetHdr {
            num_buffers: n,
            ..VnetHdr::default()
        }
        .to_bytes()
        .to_vec();
        v.extend_from_slice(payload);
        v
    }

    /// The bug this guards: a merged frame split across two bursts, with a
    /// refill in between that reuses the heads of its already-reaped
    /// buffers. The frame must come out intact, and nothing else corrupt.
    #[test]
    fn a_merged_frame_split_across_bursts_survives_a_refill() {
        let arena = Arena::new(1 << 20).expect("arena");
        let mut rxq = RxQueue::new(&arena, 8, false).expect("rx queue");
        let mem = arena.mem().clone();
        let mut dev = device(&rxq, &mem);

        let small: Vec<u8> = (0..100u32).map(|i| i.to_le_bytes()[0]).collect();
        let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 1).to_le_bytes()[0]).collect();
        let s = fill(&mut dev, &mem, &with_header(1, &small), 1);
        let b = fill(&mut dev, &mem, &with_header(3, &big), 3);
        for &(h, l) in s.iter().chain(&b[..2]) {
            dev.add_used(&mem, h, l).expect("used");
        }

        let mut got = vec![];
        let n = rxq.rx_burst(8, |f| got.push(f.to_vec())).expect("burst");
        assert_eq!(
            (n, got.len()),
            (1, 1),
            "the small frame; the big one is partial"
        );
        assert_eq!(got[0], small);
        assert!(
            rxq.core.ring.num_free() < 3,
            "the refill reused freed heads"
        );

        dev.add_used(&mem, b[2].0, b[2].1).expect("used");
        let n = rxq.rx_burst(8, |f| got.push(f.to_vec())).expect("burst");
        assert_eq!(n, 1);
        assert!(got[1] == big, "merged frame corrupted across the refill");
        let c = rxq.counters();
        assert_eq!((c.drop_bad_header, c.drop_truncated), (0, 0));
    }
}
