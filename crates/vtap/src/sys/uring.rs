//! A batch of tap reads or writes in one `io_uring_enter(2)` (the
//! `io-uring` crate), for the direct engine's `io-uring` backend.
//!
//! Each batch is a chain of `IORING_OP_READV` (or `WRITEV`) entries linked
//! with `IOSQE_IO_HARDLINK`: the kernel runs them one after the other, in
//! order (a frame is never reordered), and a failed entry (`EAGAIN`: the
//! tap has no more) does not cancel the rest (a soft link would: a tap
//! read is always "short" of the buffer, which io_uring counts as a
//! failure). The call waits for every entry of the batch, so the buffers
//! the entries point at are only borrowed for the call.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, squeue, types, IoUring};

/// Most entries in one batch.
pub const URING_BATCH: usize = 32;

/// One io_uring instance (a submission and a completion ring).
pub struct Uring {
    ring: IoUring,
    /// Entering the ring failed in a way that may leave entries queued:
    /// it is not used again (they point at buffers of a finished call).
    broken: bool,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uring").finish_non_exhaustive()
    }
}

impl Uring {
    /// A ring with room for one batch.
    pub fn new() -> io::Result<Self> {
        let entries = u32::try_from(URING_BATCH).unwrap_or(32);
        Ok(Self {
            ring: IoUring::new(entries)?,
            broken: false,
        })
    }

    /// Submits `n` entries, one per `(first, second)` buffer pair of
    /// `iov` (two iovecs each), as one hard-linked chain of `op`, and
    /// waits for all; `results[i]` is entry `i`'s result (bytes, or
    /// `-errno`).
    fn run(
        &mut self,
        fd: BorrowedFd<'_>,
        iov: &[libc::iovec],
        write: bool,
        results: &mut [i32],
    ) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "io_uring: unusable after an earlier failure",
            ));
        }
        let n = (iov.len() / 2).min(results.len()).min(URING_BATCH);
        let fd = types::Fd(fd.as_raw_fd());
        for i in 0..n {
            let pair = iov[2 * i..].as_ptr();
            // RWF_NOWAIT: a read that finds the queue empty ends with
            // EAGAIN, as on a nonblocking fd, instead of waiting for a
            // frame (io_uring would otherwise arm a poll and wait).
            let entry = if write {
                opcode::Writev::new(fd, pair, 2)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
            } else {
                opcode::Readv::new(fd, pair, 2)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build()
            };
            let link = if i + 1 < n {
                squeue::Flags::IO_HARDLINK
            } else {
                squeue::Flags::empty()
            };
            let entry = entry.flags(link).user_data(i as u64);
            // SAFETY: the entry points at `iov[2i..2i+2]` and the buffers
            // they describe, which the caller lends for this whole call; we
            // return only after every entry has completed (below), so the
            // kernel never touches them after the borrow ends. The ring has
            // room for URING_BATCH entries and holds none between calls.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_err() {
                self.broken = true;
                return Err(io::Error::other("io_uring: submission queue full"));
            }
        }
        let (mut done, mut submitted) = (0, 0);
        while done < n {
            match self.ring.submit_and_wait(n - done) {
                Ok(k) => submitted += k,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) if submitted > done => {
                    // The kernel holds entries that point at buffers this
                    // call only borrows: returning would let it write into
                    // memory that is reused. No such error exists for a
                    // ring that accepted them (only EINTR, EAGAIN, EBUSY,
                    // retried above); should one appear, stop here.
                    eprintln!("vtap: io_uring wait failed with entries in flight: {e}");
                    std::process::abort();
                }
                Err(e) => {
                    // Nothing was submitted, but the entries stay queued:
                    // never enter this ring again.
                    self.broken = true;
                    return Err(e);
                }
            }
            for cqe in self.ring.completion() {
                if let Some(r) = usize::try_from(cqe.user_data())
                    .ok()
                    .and_then(|i| results.get_mut(i))
                {
                    *r = cqe.result();
                }
                done += 1;
            }
        }
        Ok(())
    }

    /// Reads up to `bufs.len()` frames (at most [`URING_BATCH`]) from
    /// `fd`: entry `i` reads the virtio-net header into `hdrs[i][..hdr_len]`
    /// and the frame into `bufs[i]`, which it fills up to `max` bytes.
    /// `results[i]` is the bytes entry `i` read (header included) or
    /// `-errno`; `bufs[i]` holds the frame's bytes after the header.
    pub fn read_frames(
        &mut self,
        fd: BorrowedFd<'_>,
        hdrs: &mut [[u8; 12]],
        hdr_len: usize,
        bufs: &mut [Vec<u8>],
        max: usize,
        results: &mut [i32],
    ) -> io::Result<()> {
        let n = bufs
            .len()
            .min(hdrs.len())
            .min(results.len())
            .min(URING_BATCH);
        let hdr_len = hdr_len.min(12);
        let mut iov = [super::batch::EMPTY_IOVEC; 2 * URING_BATCH];
        super::batch::read_iovecs(&mut hdrs[..n], hdr_len, &mut bufs[..n], max, &mut iov);
        results[..n].fill(-libc::ECANCELED);
        self.run(fd, &iov[..2 * n], false, &mut results[..n])?;
        for (buf, &r) in bufs.iter_mut().zip(results.iter()).take(n) {
            let body = usize::try_from(r)
                .unwrap_or(0)
                .saturating_sub(hdr_len)
                .min(buf.capacity());
            // SAFETY: the read filled the header first, then initialized
            // the first `body` bytes of the spare capacity (no more than it
            // was given, and `body` does not exceed the capacity).
            unsafe { buf.set_len(body) };
        }
        Ok(())
    }

    /// Writes `frames` (header bytes, frame bytes; at most [`URING_BATCH`])
    /// to `fd`, in order; `results[i]` is entry `i`'s bytes written or
    /// `-errno`.
    pub fn write_frames(
        &mut self,
        fd: BorrowedFd<'_>,
        frames: &[(&[u8], &[u8])],
        results: &mut [i32],
    ) -> io::Result<()> {
        let n = frames.len().min(results.len()).min(URING_BATCH);
        let mut iov = [super::batch::EMPTY_IOVEC; 2 * URING_BATCH];
        super::batch::write_iovecs(&frames[..n], &mut iov);
        results[..n].fill(-libc::ECANCELED);
        self.run(fd, &iov[..2 * n], true, &mut results[..n])
    }
}
