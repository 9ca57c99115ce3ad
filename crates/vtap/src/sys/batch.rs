//! Frames in batches: `sendmmsg(2)`/`recvmmsg(2)` of up to [`MMSG_BATCH`]
//! datagrams (AF_PACKET uplinks), and the iovecs every batched read or
//! write (these, and io_uring's in [`super::uring`]) points the kernel at.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// Most frames one [`send_frames`] or [`recv_frames`] call moves.
pub const MMSG_BATCH: usize = 32;

/// `sendmmsg(2)` of up to [`MMSG_BATCH`] frames, each its virtio-net header
/// and its bytes (one datagram each). Returns how many the kernel took; an
/// error only when it took none (the error of the first).
pub fn send_frames(fd: BorrowedFd<'_>, frames: &[(&[u8], &[u8])]) -> io::Result<usize> {
    let n = frames.len().min(MMSG_BATCH);
    let mut iov = [EMPTY_IOVEC; 2 * MMSG_BATCH];
    write_iovecs(&frames[..n], &mut iov);
    // SAFETY: `mmsghdr` is a plain C struct; all-zero bytes is valid.
    let mut msgs: [libc::mmsghdr; MMSG_BATCH] = unsafe { std::mem::zeroed() };
    for (i, m) in msgs[..n].iter_mut().enumerate() {
        m.msg_hdr.msg_iov = iov[2 * i..].as_mut_ptr();
        m.msg_hdr.msg_iovlen = 2;
    }
    let count = libc::c_uint::try_from(n).unwrap_or(0);
    // SAFETY: the first `n` mmsghdrs each point at two live iovecs that
    // describe the caller's header and frame bytes, which the kernel only
    // reads (the `*mut` is the C API's; nothing is written through it);
    // `msgs` and `iov` outlive the call.
    let sent = cvt(unsafe {
        libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), count, libc::MSG_DONTWAIT)
    })?;
    Ok(usize::try_from(sent).unwrap_or(0))
}

pub(super) const EMPTY_IOVEC: libc::iovec = libc::iovec {
    iov_base: std::ptr::null_mut(),
    iov_len: 0,
};

/// Two iovecs per frame for a batch of reads: `iov[2i]` the first
/// `hdr_len` bytes of `hdrs[i]`, `iov[2i + 1]` the spare capacity of
/// `bufs[i]`, which is cleared and given room for `max` bytes. The reads
/// that use them set each buffer's length afterwards.
pub(super) fn read_iovecs(
    hdrs: &mut [[u8; 12]],
    hdr_len: usize,
    bufs: &mut [Vec<u8>],
    max: usize,
    iov: &mut [libc::iovec],
) {
    for (i, (hdr, buf)) in hdrs.iter_mut().zip(bufs.iter_mut()).enumerate() {
        buf.clear();
        buf.reserve(max);
        let spare = buf.spare_capacity_mut();
        if let Some(pair) = iov.get_mut(2 * i..2 * i + 2) {
            pair[0] = libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr_len.min(hdr.len()),
            };
            pair[1] = libc::iovec {
                iov_base: spare.as_mut_ptr().cast(),
                iov_len: spare.len(),
            };
        }
    }
}

/// Two iovecs per frame for a batch of writes: `iov[2i]` the header of
/// `frames[i]`, `iov[2i + 1]` its bytes. The kernel only reads through
/// them (the pointers are cast to `*mut` because `iovec` has no const
/// form).
pub(super) fn write_iovecs(frames: &[(&[u8], &[u8])], iov: &mut [libc::iovec]) {
    for (pair, (hdr, data)) in iov.chunks_exact_mut(2).zip(frames) {
        pair[0] = libc::iovec {
            iov_base: hdr.as_ptr().cast_mut().cast(),
            iov_len: hdr.len(),
        };
        pair[1] = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
    }
}

/// `recvmmsg(2)` of up to `bufs.len()` (at most [`MMSG_BATCH`]) frames: the
/// header of frame `i` into `hdrs[i]` (its first `hdr_len` bytes), the frame
/// into `bufs[i]`, which is cleared, given room for `max` bytes, and
/// afterwards holds exactly the frame; `truncated[i]` says whether it was
/// longer than the room. Returns how many frames arrived (non-blocking).
pub fn recv_frames(
    fd: BorrowedFd<'_>,
    hdrs: &mut [[u8; 12]],
    hdr_len: usize,
    bufs: &mut [Vec<u8>],
    truncated: &mut [bool],
    max: usize,
) -> io::Result<usize> {
    let n = bufs
        .len()
        .min(hdrs.len())
        .min(truncated.len())
        .min(MMSG_BATCH);
    let hdr_len = hdr_len.min(12);
    let mut iov = [EMPTY_IOVEC; 2 * MMSG_BATCH];
    read_iovecs(&mut hdrs[..n], hdr_len, &mut bufs[..n], max, &mut iov);
    // SAFETY: `mmsghdr` is a plain C struct; all-zero bytes is valid.
    let mut msgs: [libc::mmsghdr; MMSG_BATCH] = unsafe { std::mem::zeroed() };
    for (i, m) in msgs[..n].iter_mut().enumerate() {
        m.msg_hdr.msg_iov = iov[2 * i..].as_mut_ptr();
        m.msg_hdr.msg_iovlen = 2;
    }
    let count = libc::c_uint::try_from(n).unwrap_or(0);
    // SAFETY: the first `n` mmsghdrs each point at two iovecs describing
    // memory lent to us mutably for the call (a header array, and a
    // buffer's spare capacity) with its exact length; the kernel writes at
    // most that, only there, and stores each datagram's length in
    // `msg_len`. No timeout pointer.
    let got = cvt(unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            count,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    })?;
    let got = usize::try_from(got).unwrap_or(0).min(n);
    for (i, m) in msgs[..got].iter().enumerate() {
        let len = usize::try_from(m.msg_len).unwrap_or(0);
        let room = bufs[i].capacity();
        let body = len.saturating_sub(hdr_len).min(room);
        truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        // SAFETY: recvmmsg filled the header, then initialized the first
        // `body` bytes of this buffer's spare capacity (the datagram's
        // length minus the header, never more than the room given).
        unsafe { bufs[i].set_len(body) };
    }
    Ok(got)
}
