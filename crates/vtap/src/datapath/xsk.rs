//! The `AF_XDP` engine: a queue served through an XDP socket's rings.
//!
//! # Why an engine of its own
//!
//! An `AF_PACKET` socket reads and writes what a tap fd does (a header and
//! a frame per call), so the direct engine drives both. An XDP socket has no
//! `read` or `write` at all: the kernel and the process share four rings and
//! a block of memory (the UMEM), divided into 4 KiB chunks.
//!
//! * **rx**: the process gives the kernel empty chunks on the *fill* ring;
//!   the XDP program redirects a frame to the socket, the kernel copies it
//!   into a chunk and posts (address, length) on the *rx* ring.
//! * **tx**: the process copies a frame into a free chunk and posts it on
//!   the *tx* ring; the kernel sends it and hands the chunk back on the
//!   *completion* ring.
//!
//! The ring protocol (producer and consumer indices, their acquire and
//! release ordering, `need_wakeup`) is `xdpilone`'s, a pure-Rust crate
//! without libbpf; nothing here touches an index or writes a fence. What is
//! here is vtap's side: which chunks belong to whom, copies in and out, the
//! kick, and the counters.
//!
//! # Chunks
//!
//! Each queue has its own UMEM: [`RX_CHUNKS`] chunks that live on the fill
//! and rx rings (owned by [`XskRx`]) and [`TX_CHUNKS`] that live in
//! [`XskTx`]'s free list and on the tx and completion rings. The halves
//! never trade chunks, so the rx half and the tx half can run on different
//! workers without a lock: each touches only its own rings and chunks.
//!
//! # What it costs and gives up
//!
//! With a driver that has no zero-copy (veth, and any driver in generic
//! mode) the kernel copies each frame into the UMEM and out of it; vtap then
//! copies it once more into its own frame (rx) or from it (tx), as the
//! forwarder's frames outlive a chunk's turn on a ring. Frames carry no
//! virtio-net header: the kernel hands over complete frames and takes only
//! complete ones, so the port's offload caps are none and the offload layer
//! segments and checksums toward it in software.
//!
//! # Frames larger than a chunk
//!
//! Where the kernel has multi-buffer XDP sockets (`XDP_USE_SG`, Linux 6.6+)
//! a frame longer than a chunk comes as several descriptors, each but the
//! last flagged `XDP_PKT_CONTD`, and goes out the same way: jumbo frames
//! cross (up to [`MAX_TX_DESCS`] chunks). Without it a frame must fit one
//! chunk ([`MAX_FRAME`] bytes received, a whole chunk sent) and the uplink
//! refuses an MTU above that.
//!
//! # Faults
//!
//! A link that goes down makes the kick answer `ENETDOWN` (counted once per
//! outage in `link_down_events`). From then on each burst first asks again
//! with an empty kick (which answers at once) and, while the link is still
//! down, counts its frames as `drop_io_error` instead of parking them on
//! the ring, as a packet socket's refused writes are counted. Frames that
//! were already on the ring go when the link is back. An interface deleted
//! under the socket unbinds it: the kick answers `ENXIO` for ever, every
//! frame is counted as `drop_io_error`, and `poll` reports nothing more, so
//! a sleeping worker does not spin.

use std::num::NonZeroU32;
use std::os::fd::RawFd;
use std::sync::Arc;

use xdpilone::xdp::XdpDesc;
use xdpilone::{
    CompletionQueue, FillQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, UmemConfig,
};

use super::queue::{Counters, RxFrame, Sent, MAX_BURST};
use crate::sys::{self, AnonMap};
use crate::wire::vnet::VnetHdr;
use crate::wire::TxFrame;

/// Bytes per UMEM chunk: a page, the unit the kernel copies into.
pub const CHUNK: u32 = 4096;
/// Chunks on the rx side (fill and rx rings).
pub const RX_CHUNKS: u32 = 2048;
/// Chunks on the tx side (free list, tx and completion rings).
pub const TX_CHUNKS: u32 = 1024;
/// Room the kernel keeps before a received frame in copy mode
/// (`XDP_PACKET_HEADROOM`).
const KERNEL_HEADROOM: u32 = 256;
/// The longest frame a queue receives or sends: a chunk less the kernel's
/// headroom.
pub const MAX_FRAME: usize = MAX_FRAME_U32 as usize;
/// [`MAX_FRAME`] as the kernel counts lengths.
pub const MAX_FRAME_U32: u32 = CHUNK - KERNEL_HEADROOM;
/// `XDP_USE_SG`: frames may span several chunks.
const XDP_USE_SG: u16 = 1 << 4;
/// Descriptor option: more chunks of the same frame follow.
const XDP_PKT_CONTD: u32 = 1;
/// Chunks a frame may span on transmit (the kernel takes at most
/// `MAX_SKB_FRAGS + 1`, 18); 16 carry 64 KiB.
pub const MAX_TX_DESCS: usize = 16;
/// The longest frame vtap assembles from received chunks.
const MAX_PACKET: usize = crate::wire::MAX_READ;
/// Kicks per burst at most: in copy mode one kick sends up to 32
/// descriptors (the kernel's `TX_BATCH_SIZE`) and answers `EAGAIN` while
/// more wait, so a full tx ring takes `TX_CHUNKS / 32` kicks.
const MAX_KICKS: usize = TX_CHUNKS as usize / 32 + 1;
/// Send buffer of a socket: in copy mode the kernel charges each frame in
/// flight to it (a page per extra chunk), and a full one makes the kick
/// answer `EAGAIN` with frames left on the ring. Room for every tx chunk.
const SNDBUF: i32 = 2 * (TX_CHUNKS * CHUNK) as i32;

/// A step of opening a queue that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct Error {
    /// What was being done (`UMEM`, `bind`...).
    pub step: &'static str,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

fn step(step: &'static str) -> impl FnOnce(xdpilone::Errno) -> Error {
    move |e| Error {
        step,
        // Some paths report a negative errno.
        source: std::io::Error::from_raw_os_error(e.get_raw().abs()),
    }
}

/// The UMEM of one queue: the memory its chunks live in, shared by the two
/// halves and unmapped after both are gone.
#[derive(Debug)]
struct Area {
    map: AnonMap,
}

impl Area {
    /// Offset of chunk `i`.
    fn chunk(i: u32) -> u64 {
        u64::from(i) * u64::from(CHUNK)
    }
}

/// What the uplink keeps of an open queue besides its two halves.
#[derive(Debug)]
pub struct Opened {
    /// The rx half.
    pub rx: XskRx,
    /// The tx half.
    pub tx: XskTx,
    /// The socket's fd, to put in the XDP program's map (owned by the
    /// halves; valid while they live).
    pub fd: RawFd,
}

/// Opens an XDP socket on queue `queue` of interface `ifindex` (of the
/// calling thread's namespace), with its UMEM, rings and a full fill ring;
/// `multi_buffer`: frames may span chunks (`XDP_USE_SG`; `bind` fails with
/// `EINVAL` where the kernel has no such thing). Frames reach it once the
/// XDP program's map points at [`Opened::fd`].
pub fn open(ifindex: u32, queue: u32, multi_buffer: bool) -> Result<Opened, Error> {
    let chunks = RX_CHUNKS + TX_CHUNKS;
    let map = AnonMap::new(chunks as usize * CHUNK as usize).map_err(|source| Error {
        step: "UMEM mmap",
        source,
    })?;
    let cfg = UmemConfig {
        fill_size: RX_CHUNKS,
        complete_size: TX_CHUNKS,
        frame_size: CHUNK,
        headroom: 0,
        flags: 0,
    };
    let umem = sys::register_umem(&map, cfg).map_err(step("UMEM"))?;
    let mut info = IfInfo::invalid();
    info.from_ifindex(ifindex).map_err(step("interface"))?;
    info.set_queue(queue);
    let sock = Socket::with_shared(&info, &umem).map_err(step("socket(AF_XDP)"))?;
    let device = umem
        .fq_cq(&sock)
        .map_err(step("fill and completion rings"))?;
    let user = umem
        .rx_tx(
            &sock,
            &SocketConfig {
                rx_size: NonZeroU32::new(RX_CHUNKS),
                tx_size: NonZeroU32::new(TX_CHUNKS),
                bind_flags: SocketConfig::XDP_BIND_NEED_WAKEUP
                    | if multi_buffer { XDP_USE_SG } else { 0 },
            },
        )
        .map_err(step("rx and tx rings"))?;
    let ring_rx = user.map_rx().map_err(step("rx ring mmap"))?;
    let ring_tx = user.map_tx().map_err(step("tx ring mmap"))?;
    let fd = ring_rx.as_raw_fd();
    sys::set_cloexec(fd).map_err(|source| Error {
        step: "FD_CLOEXEC",
        source,
    })?;
    sys::set_sndbuf_force(fd, SNDBUF).map_err(|source| Error {
        step: "SO_SNDBUFFORCE",
        source,
    })?;
    umem.bind(&user).map_err(step("bind"))?;
    let (mut fill, comp) = device.into_parts();
    let mut w = fill.fill(RX_CHUNKS);
    let filled = w.insert((0..RX_CHUNKS).map(Area::chunk));
    w.commit();
    drop(w);
    debug_assert_eq!(filled, RX_CHUNKS);
    let area = Arc::new(Area { map });
    Ok(Opened {
        rx: XskRx {
            ring: ring_rx,
            fill,
            spare: Vec::with_capacity(RX_CHUNKS as usize),
            fd,
            buf: Vec::with_capacity(MAX_FRAME),
            partial: false,
            bad: false,
            counters: Counters::default(),
            gone: false,
            area: area.clone(),
        },
        tx: XskTx {
            ring: ring_tx,
            comp,
            fd,
            free: (RX_CHUNKS..chunks).map(Area::chunk).collect(),
            max_descs: if multi_buffer { MAX_TX_DESCS } else { 1 },
            counters: Counters::default(),
            down: false,
            gone: false,
            link_down_events: 0,
            area,
        },
        fd,
    })
}

/// What the kernel dropped on a socket before vtap saw it: no chunk on the
/// fill ring or a frame too long for one (`rx_dropped`), or the rx ring
/// full (`rx_ring_full`). (`rx_fill_ring_empty_descs` counts the same
/// drops as the first, once more.)
pub fn kernel_drops(fd: RawFd) -> u64 {
    sys::xdp_statistics(fd).map_or(0, |s| s.rx_dropped + s.rx_ring_full)
}

/// Appends a received chunk's bytes to the frame being assembled in `buf`;
/// `false` when they lie outside the UMEM or make the frame too long.
fn append(area: &Area, buf: &mut Vec<u8>, addr: u64, len: u32) -> bool {
    let (Ok(off), Ok(len)) = (usize::try_from(addr), usize::try_from(len)) else {
        return false;
    };
    buf.len() + len <= MAX_PACKET && area.map.append_out(off, len, buf)
}

/// The rx half of an XDP socket queue.
pub struct XskRx {
    ring: RingRx,
    fill: FillQueue,
    /// Chunks taken off the rx ring that the fill ring had no room for yet
    /// (the kernel publishes its fill-ring consumer index lazily, so the
    /// ring can look full for a moment): given back at the next burst.
    spare: Vec<u64>,
    fd: RawFd,
    /// The frame handed to the caller (swapped out with each frame), or
    /// the first chunks of one while `partial`.
    buf: Vec<u8>,
    /// `buf` holds the start of a frame whose next chunk is still to come.
    partial: bool,
    /// The frame being assembled is dropped at its end (too long, or a
    /// descriptor outside the UMEM).
    bad: bool,
    counters: Counters,
    /// The socket was unbound (its interface deleted).
    gone: bool,
    // Last: the rings above unmap before the UMEM does.
    area: Arc<Area>,
}

impl std::fmt::Debug for XskRx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskRx")
            .field("fd", &self.fd)
            .field("available", &self.ring.available())
            .field("spare", &self.spare.len())
            .field("counters", &self.counters)
            .field("gone", &self.gone)
            .finish_non_exhaustive()
    }
}

impl XskRx {
    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Takes up to `max` descriptors off the rx ring (at most
    /// [`MAX_BURST`]), calling `f` on each whole frame, and gives their
    /// chunks back on the fill ring. A frame whose last chunk is not in
    /// this burst is finished in the next.
    pub fn rx_burst(&mut self, max: usize, mut f: impl FnMut(RxFrame<'_>)) -> usize {
        let want = u32::try_from(max.min(MAX_BURST)).unwrap_or(0);
        let mut done = 0;
        {
            let mut r = self.ring.receive(want);
            while let Some(d) = r.read() {
                self.spare.push(d.addr - d.addr % u64::from(CHUNK));
                if !self.partial {
                    self.buf.clear();
                    self.bad = false;
                }
                self.bad = self.bad || !append(&self.area, &mut self.buf, d.addr, d.len);
                self.partial = d.options & XDP_PKT_CONTD != 0;
                if self.partial {
                    continue;
                }
                if self.bad {
                    self.counters.drop_truncated += 1;
                    continue;
                }
                let len = self.buf.len();
                self.counters.packets += 1;
                self.counters.bytes += len as u64;
                let hdr = VnetHdr {
                    num_buffers: 1,
                    ..VnetHdr::default()
                };
                f(RxFrame::owned(hdr, &mut self.buf));
                if self.buf.capacity() < MAX_FRAME {
                    // The caller took the buffer and left a smaller one.
                    self.buf.reserve(MAX_FRAME);
                }
                done += 1;
            }
            r.release();
        }
        self.refill();
        done
    }

    /// Gives the chunks read back on the fill ring, as many as it takes
    /// now; the rest wait in `spare` (never lost: a chunk lost here would
    /// be a frame the kernel drops later for want of one).
    fn refill(&mut self) {
        if self.spare.is_empty() {
            return;
        }
        let mut w = self
            .fill
            .fill(u32::try_from(self.spare.len()).unwrap_or(u32::MAX));
        let placed = w.insert(self.spare.iter().rev().copied()) as usize;
        w.commit();
        drop(w);
        let keep = self.spare.len() - placed;
        self.spare.truncate(keep);
    }

    /// The fd to poll for frames, or -1 once the socket is unbound.
    pub fn wait_fd(&self) -> RawFd {
        if self.gone {
            -1
        } else {
            self.fd
        }
    }

    /// Blocks until the rx ring has a frame or `timeout_ms` passes. An
    /// unbound socket reports `POLLERR` for ever: the queue is then gone.
    pub fn wait(&mut self, timeout_ms: i32) {
        let fds = [(self.wait_fd(), libc::POLLIN)];
        let mut rev = [0];
        if let Ok(1) = sys::poll(&fds, &mut rev, timeout_ms) {
            if rev[0] & (libc::POLLERR | libc::POLLHUP) != 0 && rev[0] & libc::POLLIN == 0 {
                tracing::debug!("XDP socket unbound: its interface is gone");
                self.gone = true;
            }
        }
    }
}

/// The tx half of an XDP socket queue.
pub struct XskTx {
    ring: RingTx,
    comp: CompletionQueue,
    fd: RawFd,
    /// Chunks of the tx side not on a ring.
    free: Vec<u64>,
    /// Chunks a frame may span (1 without multi-buffer sockets).
    max_descs: usize,
    counters: Counters,
    /// The last kick found the link down.
    down: bool,
    /// The socket is unbound: its interface is gone, for good.
    gone: bool,
    link_down_events: u64,
    // Last: the rings above unmap before the UMEM does.
    area: Arc<Area>,
}

impl std::fmt::Debug for XskTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskTx")
            .field("fd", &self.fd)
            .field("pending", &self.ring.pending())
            .field("free", &self.free.len())
            .field("counters", &self.counters)
            .field("down", &self.down)
            .field("gone", &self.gone)
            .finish_non_exhaustive()
    }
}

impl XskTx {
    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Times a kick found the link down (once per outage).
    pub fn link_down_events(&self) -> u64 {
        self.link_down_events
    }

    /// Counts `n` frames the caller gives up on as dropped for want of room.
    pub fn count_dropped(&mut self, n: usize) {
        self.counters.drop_no_free_slots += n as u64;
    }

    /// Takes the chunks the kernel has sent back into the free list.
    fn reclaim(&mut self) {
        let mut c = self.comp.complete(TX_CHUNKS);
        while let Some(addr) = c.read() {
            self.free.push(addr - addr % u64::from(CHUNK));
        }
        c.release();
    }

    /// Copies frames into free chunks and posts them on the tx ring, in
    /// order, until chunks or ring slots run out; then kicks the kernel. A
    /// frame longer than the chunks it may span is counted (`drop_too_big`)
    /// and skipped, as is an empty one (`drop_io_error`: nothing to send).
    pub fn try_send(&mut self, frames: &[TxFrame<'_>]) -> Sent {
        if self.down && !self.gone {
            // Is it back? An empty kick answers at once.
            self.kick();
        }
        if self.down || self.gone {
            self.counters.drop_io_error += frames.len() as u64;
            return Sent {
                sent: 0,
                consumed: frames.len(),
            };
        }
        self.reclaim();
        let (mut sent, mut consumed) = (0, 0);
        {
            let want = frames.len().saturating_mul(self.max_descs);
            let room = u32::try_from(want.min(self.free.len())).unwrap_or(0);
            let mut w = self.ring.transmit(room);
            let slots = w.capacity() as usize;
            let mut used = 0;
            for f in frames {
                let descs = f.data.len().div_ceil(CHUNK as usize);
                if descs == 0 || descs > self.max_descs {
                    if descs == 0 {
                        self.counters.drop_io_error += 1;
                    } else {
                        self.counters.drop_too_big += 1;
                    }
                    consumed += 1;
                    continue;
                }
                if used + descs > slots || descs > self.free.len() {
                    break;
                }
                for (i, piece) in f.data.chunks(CHUNK as usize).enumerate() {
                    let Some(addr) = self.free.pop() else { break };
                    let copied =
                        usize::try_from(addr).is_ok_and(|off| self.area.map.copy_in(off, piece));
                    debug_assert!(copied, "tx chunks lie inside the UMEM");
                    let options = if i + 1 < descs { XDP_PKT_CONTD } else { 0 };
                    let len = u32::try_from(piece.len()).unwrap_or(0);
                    w.insert_once(XdpDesc { addr, len, options });
                }
                used += descs;
                self.counters.packets += 1;
                self.counters.bytes += f.data.len() as u64;
                sent += 1;
                consumed += 1;
            }
            w.commit();
        }
        if (sent > 0 || self.ring.pending() > 0) && self.ring.needs_wakeup() {
            self.kick();
        }
        Sent { sent, consumed }
    }

    /// Has the kernel send what is on the tx ring. In copy mode it sends
    /// inside the call, 32 descriptors at a time, and says `EAGAIN` while
    /// more wait (kicked again while each kick makes progress: a frame
    /// left on the ring would wait for the next burst, maybe for a TCP
    /// retransmission); `ENETDOWN` while the link is down (the frames stay
    /// on the ring); `ENXIO` once the socket is unbound.
    fn kick(&mut self) {
        let mut waiting = self.ring.pending();
        for _ in 0..MAX_KICKS {
            self.counters.kicks += 1;
            match sys::xsk_kick_tx(self.fd) {
                Ok(()) => {
                    self.down = false;
                    return;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EBUSY | libc::EINTR) => {
                        let now = self.ring.pending();
                        if now == 0 || now == waiting {
                            // Drained, or the device takes no more for now.
                            return;
                        }
                        waiting = now;
                    }
                    Some(errno @ (libc::ENETDOWN | libc::ENXIO)) => {
                        if !self.down {
                            self.link_down_events += 1;
                            self.down = true;
                        }
                        self.gone |= errno == libc::ENXIO;
                        return;
                    }
                    _ => {
                        tracing::debug!("AF_XDP tx kick: {e}");
                        return;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The sizes agree with each other and with the frames they carry.
    const _: () = {
        assert!(RX_CHUNKS.is_power_of_two() && TX_CHUNKS.is_power_of_two());
        // A 1500-byte MTU frame with a VLAN tag fits one chunk, a jumbo
        // frame does not.
        assert!(MAX_FRAME >= 1518 && MAX_FRAME < 9018);
        assert!(MAX_KICKS * 32 >= TX_CHUNKS as usize);
    };

    #[test]
    fn chunks_are_laid_out_back_to_back() {
        assert_eq!(Area::chunk(0), 0);
        assert_eq!(Area::chunk(RX_CHUNKS), u64::from(RX_CHUNKS) * 4096);
    }
}
