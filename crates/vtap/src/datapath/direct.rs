//! The direct engine: the data plane reads and writes the tap fd itself,
//! with no ring in between.
//!
//! # Why
//!
//! Without `/dev/vhost-net` the rings have to be served by a vtap thread
//! (the `userspace` backend), which plays vhost-net's part: every frame
//! crosses two threads and is copied four times in userspace (tap → backend
//! buffer → ring buffers → the forwarder's frame, and the same way back).
//! Profiled under iperf3, that is where the forwarder's time went: memmove
//! 17.7 %, context switches 11.4 %, guest-memory translation 5.5 %. The rings
//! buy nothing there: they exist so that a *kernel* worker can serve them.
//!
//! The direct engine keeps the data plane's interface (bursts of frames with
//! their virtio-net header, rx modes, counters) and drops the rest:
//!
//! * **rx** is one `readv(2)` per frame: the header into a 12-byte array,
//!   the frame straight into a buffer that the caller then takes over by
//!   swapping `Vec`s ([`super::RxFrame::into_vec`]): no userspace copy.
//! * **tx** is one `writev(2)` per frame: header and frame from where they
//!   are, no gather copy. With the tap's send buffer at `INT_MAX` (as VPP sets
//!   it) tun never answers `EAGAIN`; if it did, the frame stays with the
//!   caller, which waits and retries ([`super::DataPath::tx_burst_wait`]).
//! * **waiting** is level-triggered `POLLIN` on the tap fd itself: nothing
//!   to arm, no eventfd, no second thread to wake.
//!
//! That is the design of the C vnet-header forwarder in `bench/peers/`, with
//! vtap's bursts, software offload fallbacks and counters on top. What it
//! gives up: ring state and virtio features (there are none to show), and
//! the kernel's half of a frame runs on the caller's thread (`write(2)` on a
//! tap hands the frame to the host stack synchronously), as with any tap
//! forwarder. Where vhost-net exists it stays the default; where it does
//! not, this is.
//!
//! Once the interface is deleted under the data path, tun answers `read`
//! with `EBADFD` and `poll` with `POLLERR` for ever; the queue then reports
//! no wait fd (-1, which `poll(2)` skips), so a sleeping worker does not spin.
//!
//! The same engine drives host uplinks ([`crate::uplink`]): an `AF_PACKET`
//! socket with `PACKET_VNET_HDR` reads and writes exactly what a tap fd
//! does, a virtio-net header and a frame, so one engine serves both. Two
//! differences are parameters here: the header is 12 bytes on a tap and
//! on a packet socket that takes `PACKET_VNET_HDR_SZ` (Linux 6.2+), 10 on
//! older kernels; and a packet socket reports its interface going down (or
//! away) once, as `ENETDOWN` on `read`, then stays quiet until it is up
//! again, which is not an error of the burst. A frame longer than the
//! uplink's MTU is refused by the kernel with `EMSGSIZE` and counted as
//! `drop_too_big`.

use std::fs::File;
use std::io::{ErrorKind, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;

use super::queue::{Counters, RxFrame, Sent, MAX_BURST, MAX_FRAME};
use crate::wire::vnet::{self, VnetHdr};
use crate::wire::TxFrame;

use crate::wire::MAX_READ as READ_BUF;
/// Bytes after which a burst ends, however few frames it has. Every frame of
/// a burst is read before the first is written: 256 super-frames would be
/// 16 MiB, out of cache by the time they are written (measured: TCP through
/// an xconnect fell to half). 256 KiB is four super-frames, or a full burst
/// of small frames.
const BURST_BYTES: usize = 256 * 1024;

/// Why a direct queue operation failed (per-frame errors are counted).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No tap fd for the queue.
    #[error("direct engine: no tap fd for queue {0}")]
    NoTap(usize),
    /// The fd could not be shared.
    #[error("direct engine: cannot duplicate the tap fd")]
    Dup(#[source] std::io::Error),
    /// A read failed in a way that is neither "drained" nor "gone".
    #[error("direct engine: read from the tap")]
    Read(#[source] std::io::Error),
    /// An io_uring could not be set up or entered.
    #[error("direct engine: io_uring")]
    Uring(#[source] std::io::Error),
}

/// The tap fds of a data path, one per queue pair, shared by its rx and tx
/// queue (one fd per pair, not two).
pub fn share_taps(taps: &[File]) -> Result<Vec<Arc<File>>, Error> {
    taps.iter()
        .map(|t| t.try_clone().map(Arc::new).map_err(Error::Dup))
        .collect()
}

/// Whether a read error means the interface is gone (deleted under the data
/// path: tun answers `EBADFD` once it detached the file, `EIO` while the
/// device is unregistering).
fn is_gone(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBADFD | libc::EIO))
}

/// Buffers for reading a batch of frames with one `recvmmsg(2)`.
#[derive(Debug)]
struct RxBatch {
    bufs: Vec<Vec<u8>>,
    hdrs: Vec<[u8; vnet::LEN]>,
    truncated: Vec<bool>,
}

/// An io_uring and the buffers of one batch of tap reads through it.
#[derive(Debug)]
struct RxUring {
    ring: crate::sys::Uring,
    batch: RxBatch,
    results: [i32; crate::sys::URING_BATCH],
    /// Reads in the next batch: one more than the last batch found
    /// frames for, doubled while batches come back full (a read that
    /// finds the tap drained is work for nothing: a ping needs two reads,
    /// not 32).
    next: usize,
}

/// What a failed read means for the burst.
enum ReadFailed {
    /// Interrupted: read again.
    Retry,
    /// Drained, the link went down (counted), or the interface is gone
    /// (remembered): the burst ends here.
    EndBurst,
}

/// Sorts a read error: `EAGAIN` (drained) and `EINTR` are no errors; a
/// packet socket says `ENETDOWN` once when its interface goes down or away,
/// then stays quiet until it is up again (counted in `link_down`); tun's
/// "gone" errors mark the queue `gone`; anything else fails the burst.
fn read_failed(
    e: std::io::Error,
    link_down: &mut u64,
    gone: &mut bool,
) -> Result<ReadFailed, Error> {
    if e.kind() == ErrorKind::WouldBlock {
        Ok(ReadFailed::EndBurst)
    } else if e.kind() == ErrorKind::Interrupted {
        Ok(ReadFailed::Retry)
    } else if e.raw_os_error() == Some(libc::ENETDOWN) {
        *link_down += 1;
        Ok(ReadFailed::EndBurst)
    } else if is_gone(&e) {
        tracing::debug!("interface gone under the direct engine: {e}");
        *gone = true;
        Ok(ReadFailed::EndBurst)
    } else {
        Err(Error::Read(e))
    }
}

/// Hands one frame of a batch (its header bytes and its buffer, which the
/// caller takes over) to `f`, counted; returns its length. tun and packet
/// sockets write a frame whole: one buffer.
fn hand_over(
    counters: &mut Counters,
    hdr: &[u8; vnet::LEN],
    buf: &mut Vec<u8>,
    f: &mut impl FnMut(RxFrame<'_>),
) -> usize {
    let hdr = VnetHdr {
        num_buffers: 1,
        ..VnetHdr::parse(hdr)
    };
    let len = buf.len();
    counters.packets += 1;
    counters.bytes += len as u64;
    f(RxFrame::owned(hdr, buf));
    len
}

/// Counts a frame the kernel refused to take: longer than the uplink's MTU
/// (`EMSGSIZE`, a packet socket says so), the device's queue full
/// (`ENOBUFS`: with `PACKET_QDISC_BYPASS` there is no qdisc to wait in), or
/// anything else (the interface down or gone, a header it rejects).
fn count_refused(counters: &mut Counters, e: &std::io::Error) {
    match e.raw_os_error() {
        Some(libc::EMSGSIZE) => counters.drop_too_big += 1,
        Some(libc::ENOBUFS) => counters.drop_no_free_slots += 1,
        _ => counters.drop_io_error += 1,
    }
}

/// An rx queue read straight from a tap fd.
#[derive(Debug)]
pub struct DirectRx {
    tap: Arc<File>,
    /// Read in batches (`recvmmsg`: sockets), not one frame per `readv`.
    batch: Option<RxBatch>,
    /// Read in batches through io_uring (the `io-uring` backend).
    uring: Option<Box<RxUring>>,
    /// Bytes of virtio-net header before each frame (10 or 12).
    hdr_len: usize,
    /// Times the fd reported its interface down (`ENETDOWN`).
    link_down_events: u64,
    /// The buffer the next frame is read into (swapped out with each frame).
    buf: Vec<u8>,
    counters: Counters,
    gone: bool,
}

impl DirectRx {
    /// An rx queue on `tap`.
    pub fn new(tap: Arc<File>) -> Self {
        Self::with_hdr_len(tap, vnet::LEN)
    }

    /// An rx queue on an fd whose frames carry `hdr_len` bytes of header
    /// (10: the header without `num_buffers`; 12: with it).
    pub fn with_hdr_len(tap: Arc<File>, hdr_len: usize) -> Self {
        Self {
            tap,
            batch: None,
            uring: None,
            hdr_len: hdr_len.min(vnet::LEN),
            link_down_events: 0,
            buf: Vec::with_capacity(READ_BUF),
            counters: Counters::default(),
            gone: false,
        }
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// An rx queue on a socket, read [`crate::sys::MMSG_BATCH`] frames per
    /// `recvmmsg(2)` (a datagram socket keeps frame boundaries, as a tap
    /// does).
    pub fn batched(sock: Arc<File>, hdr_len: usize) -> Self {
        let n = crate::sys::MMSG_BATCH;
        Self {
            batch: Some(RxBatch {
                bufs: (0..n).map(|_| Vec::new()).collect(),
                hdrs: vec![[0; vnet::LEN]; n],
                truncated: vec![false; n],
            }),
            ..Self::with_hdr_len(sock, hdr_len)
        }
    }

    /// An rx queue on `tap` read [`crate::sys::URING_BATCH`] frames per
    /// `io_uring_enter(2)` (the `io-uring` backend).
    pub fn uring(tap: Arc<File>) -> Result<Self, Error> {
        let n = crate::sys::URING_BATCH;
        let ring = crate::sys::Uring::new().map_err(Error::Uring)?;
        Ok(Self {
            uring: Some(Box::new(RxUring {
                ring,
                batch: RxBatch {
                    bufs: (0..n).map(|_| Vec::new()).collect(),
                    hdrs: vec![[0; vnet::LEN]; n],
                    truncated: vec![false; n],
                },
                results: [0; crate::sys::URING_BATCH],
                next: 2,
            })),
            ..Self::new(tap)
        })
    }

    /// Times the fd reported its interface down or gone.
    pub fn link_down_events(&self) -> u64 {
        self.link_down_events
    }

    /// Reads up to `max` frames (at most [`MAX_BURST`], and no more once
    /// [`BURST_BYTES`] are read) until the tap has no more, calling `f` on
    /// each; returns how many.
    pub fn rx_burst(&mut self, max: usize, mut f: impl FnMut(RxFrame<'_>)) -> Result<usize, Error> {
        if self.batch.is_some() {
            return self.rx_burst_batched(max, f);
        }
        if self.uring.is_some() {
            return self.rx_burst_uring(max, f);
        }
        let mut done = 0;
        let mut bytes = 0;
        for _ in 0..max.min(MAX_BURST) {
            if self.gone || bytes >= BURST_BYTES {
                break;
            }
            let mut raw = [0u8; vnet::LEN];
            let n = match crate::sys::read_frame(
                self.tap.as_fd(),
                &mut raw[..self.hdr_len],
                &mut self.buf,
                READ_BUF,
            ) {
                Ok(n) => n,
                Err(e) => match read_failed(e, &mut self.link_down_events, &mut self.gone)? {
                    ReadFailed::Retry => continue,
                    ReadFailed::EndBurst => break,
                },
            };
            if n < self.hdr_len {
                self.counters.drop_truncated += 1;
                continue;
            }
            // tun writes the 10-byte header and skips the rest of the 12:
            // a frame read whole is one buffer.
            let hdr = VnetHdr {
                num_buffers: 1,
                ..VnetHdr::parse(&raw)
            };
            let len = self.buf.len();
            bytes += len;
            self.counters.packets += 1;
            self.counters.bytes += len as u64;
            f(RxFrame::owned(hdr, &mut self.buf));
            done += 1;
        }
        Ok(done)
    }

    /// [`Self::rx_burst`] with `recvmmsg(2)`: a batch per call until a call
    /// returns fewer than it asked for (drained).
    fn rx_burst_batched(
        &mut self,
        max: usize,
        mut f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, Error> {
        let Some(b) = self.batch.as_mut() else {
            return Ok(0);
        };
        let max = max.min(MAX_BURST);
        let (mut done, mut bytes) = (0, 0);
        while done < max && bytes < BURST_BYTES && !self.gone {
            let want = (max - done).min(b.bufs.len());
            let got = match crate::sys::recv_frames(
                self.tap.as_fd(),
                &mut b.hdrs[..want],
                self.hdr_len,
                &mut b.bufs[..want],
                &mut b.truncated[..want],
                READ_BUF,
            ) {
                Ok(n) => n,
                Err(e) => match read_failed(e, &mut self.link_down_events, &mut self.gone)? {
                    ReadFailed::Retry => continue,
                    ReadFailed::EndBurst => break,
                },
            };
            for i in 0..got {
                if b.truncated[i] {
                    self.counters.drop_truncated += 1;
                    continue;
                }
                bytes += hand_over(&mut self.counters, &b.hdrs[i], &mut b.bufs[i], &mut f);
                done += 1;
            }
            if got < want {
                break;
            }
        }
        Ok(done)
    }

    /// [`Self::rx_burst`] through io_uring: a batch of reads per call, in
    /// order; the burst ends with the first batch in which a read found the
    /// tap drained. A read that fails otherwise fails the burst once the
    /// frames read around it in the same batch are handed on.
    fn rx_burst_uring(
        &mut self,
        max: usize,
        mut f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, Error> {
        let Some(u) = self.uring.as_mut() else {
            return Ok(0);
        };
        let max = max.min(MAX_BURST);
        let (mut done, mut bytes) = (0, 0);
        let mut failed = None;
        while done < max && bytes < BURST_BYTES && !self.gone && failed.is_none() {
            let want = (max - done).min(u.next);
            let b = &mut u.batch;
            u.ring
                .read_frames(
                    self.tap.as_fd(),
                    &mut b.hdrs[..want],
                    self.hdr_len,
                    &mut b.bufs[..want],
                    READ_BUF,
                    &mut u.results[..want],
                )
                .map_err(Error::Uring)?;
            let mut drained = false;
            let mut got = 0;
            for i in 0..want {
                let n = match usize::try_from(u.results[i]) {
                    Ok(n) => n,
                    Err(_) => {
                        let e = std::io::Error::from_raw_os_error(-u.results[i]);
                        match read_failed(e, &mut self.link_down_events, &mut self.gone) {
                            Ok(_) => drained = true,
                            Err(e) => failed = Some(e),
                        }
                        continue;
                    }
                };
                if n < self.hdr_len {
                    self.counters.drop_truncated += 1;
                    continue;
                }
                bytes += hand_over(&mut self.counters, &b.hdrs[i], &mut b.bufs[i], &mut f);
                done += 1;
                got += 1;
            }
            u.next = if got == want {
                (2 * want).min(crate::sys::URING_BATCH)
            } else {
                (got + 1).clamp(2, crate::sys::URING_BATCH)
            };
            if drained {
                break;
            }
        }
        failed.map_or(Ok(done), Err)
    }

    /// The fd to poll for input: the tap, or -1 once it is gone.
    pub fn wait_fd(&self) -> RawFd {
        if self.gone {
            -1
        } else {
            self.tap.as_raw_fd()
        }
    }

    /// Blocks until the tap has a frame or `timeout_ms` passes.
    pub fn wait(&mut self, timeout_ms: i32) {
        let fds = [(self.wait_fd(), libc::POLLIN)];
        let mut rev = [0];
        if let Ok(1) = crate::sys::poll(&fds, &mut rev, timeout_ms) {
            if rev[0] & (libc::POLLERR | libc::POLLHUP) != 0 && rev[0] & libc::POLLIN == 0 {
                self.gone = true;
            }
        }
    }
}

/// A tx queue written straight to a tap fd.
#[derive(Debug)]
pub struct DirectTx {
    tap: Arc<File>,
    /// Write in batches (`sendmmsg`: sockets), not one frame per `writev`.
    batched: bool,
    /// Write in batches through io_uring (the `io-uring` backend).
    uring: Option<Box<crate::sys::Uring>>,
    /// Bytes of virtio-net header before each frame (10 or 12).
    hdr_len: usize,
    counters: Counters,
}

impl DirectTx {
    /// A tx queue on `tap`.
    pub fn new(tap: Arc<File>) -> Self {
        Self::with_hdr_len(tap, vnet::LEN)
    }

    /// A tx queue on an fd that takes `hdr_len` bytes of header.
    pub fn with_hdr_len(tap: Arc<File>, hdr_len: usize) -> Self {
        Self {
            tap,
            batched: false,
            uring: None,
            hdr_len: hdr_len.min(vnet::LEN),
            counters: Counters::default(),
        }
    }

    /// A tx queue on a socket, written [`crate::sys::MMSG_BATCH`] frames per
    /// `sendmmsg(2)`.
    pub fn batched(sock: Arc<File>, hdr_len: usize) -> Self {
        Self {
            batched: true,
            ..Self::with_hdr_len(sock, hdr_len)
        }
    }

    /// A tx queue on `tap` written [`crate::sys::URING_BATCH`] frames per
    /// `io_uring_enter(2)` (the `io-uring` backend).
    pub fn uring(tap: Arc<File>) -> Result<Self, Error> {
        Ok(Self {
            uring: Some(Box::new(crate::sys::Uring::new().map_err(Error::Uring)?)),
            ..Self::new(tap)
        })
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Counts `n` frames the caller gives up on as dropped for want of room.
    pub fn count_dropped(&mut self, n: usize) {
        self.counters.drop_no_free_slots += n as u64;
    }

    /// Writes frames in order until the tap pushes back (`EAGAIN`); returns
    /// how far it got. A frame the tap refuses otherwise (the interface is
    /// down or gone, a header it rejects) is counted and skipped.
    pub fn try_send(&mut self, frames: &[TxFrame<'_>]) -> Sent {
        if self.batched {
            return self.try_send_batched(frames);
        }
        if self.uring.is_some() {
            return self.try_send_uring(frames);
        }
        let mut sent = 0;
        let mut consumed = 0;
        for f in frames {
            if f.data.len() > MAX_FRAME {
                self.counters.drop_too_big += 1;
                consumed += 1;
                continue;
            }
            let hdr = VnetHdr {
                num_buffers: 0,
                ..f.hdr
            }
            .to_bytes();
            let iov = [IoSlice::new(&hdr[..self.hdr_len]), IoSlice::new(f.data)];
            match (&*self.tap).write_vectored(&iov) {
                Ok(_) => {
                    self.counters.packets += 1;
                    self.counters.bytes += f.data.len() as u64;
                    sent += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => break,
                Err(e) => count_refused(&mut self.counters, &e),
            }
            consumed += 1;
        }
        Sent { sent, consumed }
    }
}

impl DirectTx {
    /// [`Self::try_send`] with `sendmmsg(2)`: runs of frames that fit go in
    /// one call each; a call that takes none says why the first failed,
    /// which is counted and skipped as in the one-by-one path.
    fn try_send_batched(&mut self, frames: &[TxFrame<'_>]) -> Sent {
        let (mut sent, mut consumed) = (0, 0);
        let mut hdrs = [[0u8; vnet::LEN]; crate::sys::MMSG_BATCH];
        while consumed < frames.len() {
            let rest = &frames[consumed..];
            if rest[0].data.len() > MAX_FRAME {
                self.counters.drop_too_big += 1;
                consumed += 1;
                continue;
            }
            let run = rest
                .iter()
                .take(crate::sys::MMSG_BATCH)
                .take_while(|f| f.data.len() <= MAX_FRAME)
                .count();
            let mut batch = [(&[][..], &[][..]); crate::sys::MMSG_BATCH];
            for (i, f) in rest[..run].iter().enumerate() {
                hdrs[i] = VnetHdr {
                    num_buffers: 0,
                    ..f.hdr
                }
                .to_bytes();
            }
            for (i, f) in rest[..run].iter().enumerate() {
                batch[i] = (&hdrs[i][..self.hdr_len], f.data);
            }
            match crate::sys::send_frames(self.tap.as_fd(), &batch[..run]) {
                Ok(n) => {
                    for f in &rest[..n] {
                        self.counters.packets += 1;
                        self.counters.bytes += f.data.len() as u64;
                    }
                    sent += n;
                    consumed += n;
                    if n == 0 {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => break,
                Err(e) => {
                    count_refused(&mut self.counters, &e);
                    consumed += 1;
                }
            }
        }
        Sent { sent, consumed }
    }
}

impl DirectTx {
    /// [`Self::try_send`] through io_uring: runs of frames in one call
    /// each, written in order. Every entry of a run is written, so a frame
    /// the tap refuses is counted by reason and the run goes on; `EAGAIN`
    /// counts as `drop_no_free_slots` (tun, with its send buffer at
    /// `INT_MAX`, does not answer it; were it to, retrying would write the
    /// frames after it twice).
    fn try_send_uring(&mut self, frames: &[TxFrame<'_>]) -> Sent {
        let Some(ring) = self.uring.as_mut() else {
            return Sent {
                sent: 0,
                consumed: 0,
            };
        };
        const N: usize = crate::sys::URING_BATCH;
        let (mut sent, mut consumed) = (0, 0);
        let mut hdrs = [[0u8; vnet::LEN]; N];
        let mut results = [0i32; N];
        while consumed < frames.len() {
            let rest = &frames[consumed..];
            if rest[0].data.len() > MAX_FRAME {
                self.counters.drop_too_big += 1;
                consumed += 1;
                continue;
            }
            let run = rest
                .iter()
                .take(N)
                .take_while(|f| f.data.len() <= MAX_FRAME)
                .count();
            for (h, f) in hdrs.iter_mut().zip(&rest[..run]) {
                *h = VnetHdr {
                    num_buffers: 0,
                    ..f.hdr
                }
                .to_bytes();
            }
            let mut batch = [(&[][..], &[][..]); N];
            for (i, f) in rest[..run].iter().enumerate() {
                batch[i] = (&hdrs[i][..self.hdr_len], f.data);
            }
            if let Err(e) = ring.write_frames(self.tap.as_fd(), &batch[..run], &mut results[..run])
            {
                // Nothing of the run was submitted: the frames stay with
                // the caller, as on EAGAIN.
                tracing::debug!(error = %e, "io_uring write batch failed");
                break;
            }
            for (f, &r) in rest[..run].iter().zip(&results[..run]) {
                if r >= 0 {
                    self.counters.packets += 1;
                    self.counters.bytes += f.data.len() as u64;
                    sent += 1;
                } else if r == -libc::EAGAIN {
                    self.counters.drop_no_free_slots += 1;
                } else {
                    count_refused(&mut self.counters, &std::io::Error::from_raw_os_error(-r));
                }
            }
            consumed += run;
        }
        Sent { sent, consumed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_that_mean_the_interface_is_gone() {
        let cases = [
            (libc::EBADFD, true),
            (libc::EIO, true),
            (libc::EAGAIN, false),
            (libc::EINVAL, false),
            (libc::EFAULT, false),
        ];
        for (errno, gone) in cases {
            let e = std::io::Error::from_raw_os_error(errno);
            assert_eq!(is_gone(&e), gone, "errno {errno}");
        }
    }

    /// A socket pair stands in for the tap: what is read comes out whole, the
    /// caller takes the buffer over, and a drained fd ends the burst.
    #[test]
    fn a_burst_hands_over_each_frame_and_stops_when_drained() {
        // A datagram socket pair keeps frame boundaries, as a tap does.
        let (r, w) = std::os::unix::net::UnixDatagram::pair().expect("socketpair");
        r.set_nonblocking(true).expect("nonblocking");
        let mut rx = DirectRx::new(Arc::new(File::from(std::os::fd::OwnedFd::from(r))));
        let frame: Vec<u8> = (0..100u8).collect();
        let mut bytes = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        }
        .to_bytes()
        .to_vec();
        bytes.extend_from_slice(&frame);
        w.send(&bytes).expect("send");
        let mut got = vec![];
        let n = rx
            .rx_burst(8, |f| {
                let mut v = Vec::new();
                let hdr = f.hdr;
                f.into_vec(&mut v);
                got.push((hdr, v));
            })
            .expect("burst");
        assert_eq!(n, 1);
        assert_eq!(got[0].1, frame);
        assert_eq!((got[0].0.csum_start, got[0].0.num_buffers), (34, 1));
        assert_eq!(rx.counters().packets, 1);
        assert_eq!(rx.rx_burst(8, |_| {}).expect("drained"), 0);
    }

    /// A datagram socket pair, both ends non-blocking: it keeps frame
    /// boundaries and takes `readv`/`writev` as a tap does.
    fn socket_pair() -> (Arc<File>, Arc<File>) {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().expect("socketpair");
        a.set_nonblocking(true).expect("nonblocking");
        b.set_nonblocking(true).expect("nonblocking");
        let file = |s: std::os::unix::net::UnixDatagram| {
            Arc::new(File::from(std::os::fd::OwnedFd::from(s)))
        };
        (file(a), file(b))
    }

    /// Sends `n` frames of growing size (one too big inserted at
    /// `huge_at`) through `tx` and reads them through `rx`: the big one is
    /// counted and skipped, the others come back whole, in order, with
    /// their headers, and a drained fd ends the next burst.
    fn round_trip(mut tx: DirectTx, mut rx: DirectRx, n: u8, huge_at: usize) {
        let frames: Vec<Vec<u8>> = (0..n).map(|i| vec![i; 60 + usize::from(i)]).collect();
        let huge = vec![0u8; MAX_FRAME + 1];
        let hdr = VnetHdr {
            flags: vnet::F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 6,
            ..VnetHdr::default()
        };
        let mut out: Vec<TxFrame<'_>> = frames.iter().map(|d| TxFrame { hdr, data: d }).collect();
        out.insert(huge_at, TxFrame { hdr, data: &huge });
        let got = tx.try_send(&out);
        assert_eq!((got.sent, got.consumed), (frames.len(), frames.len() + 1));
        assert_eq!(tx.counters().drop_too_big, 1);
        let mut seen = vec![];
        let read = rx
            .rx_burst(256, |f| {
                let h = f.hdr;
                let mut v = Vec::new();
                f.into_vec(&mut v);
                seen.push((h, v));
            })
            .expect("burst");
        assert_eq!(read, frames.len());
        for ((h, v), want) in seen.iter().zip(&frames) {
            assert_eq!(v, want);
            assert_eq!(
                (h.flags, h.csum_start, h.csum_offset, h.num_buffers),
                (vnet::F_NEEDS_CSUM, 34, 6, 1)
            );
        }
        assert_eq!(rx.counters().packets, u64::from(n));
        assert_eq!(rx.rx_burst(64, |_| {}).expect("drained"), 0);
    }

    /// The batched path (`recvmmsg`/`sendmmsg`, host uplinks) with 10-byte
    /// headers.
    #[test]
    fn batches_keep_frames_whole_and_in_order() {
        let (a, b) = socket_pair();
        round_trip(DirectTx::batched(a, 10), DirectRx::batched(b, 10), 40, 5);
    }

    /// The io_uring path (the `io-uring` backend): more frames than one
    /// ring's batch, the read batch growing from two.
    #[test]
    fn io_uring_batches_keep_frames_whole_and_in_order() {
        let (a, b) = socket_pair();
        let tx = DirectTx::uring(a).expect("io_uring");
        let rx = DirectRx::uring(b).expect("io_uring");
        round_trip(tx, rx, 70, 33);
    }
}
