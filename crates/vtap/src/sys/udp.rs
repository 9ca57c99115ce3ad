//! The UDP part of [`super`]: one `sendmsg(2)` that gathers a run of
//! datagrams from pieces (each VXLAN header and its inner frame where they
//! are, no copy into one buffer) and asks the kernel to cut it into
//! datagrams of `segment` bytes (`UDP_SEGMENT`, Linux 4.18+).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::cvt;

/// `SOL_UDP` / `UDP_SEGMENT` from `<linux/udp.h>`.
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
/// Pieces one call gathers at most (well below `IOV_MAX`, 1024).
pub const MAX_PIECES: usize = 256;

/// A control message carrying the segment size: `cmsghdr` (16 bytes on
/// 64-bit Linux, so the data starts right after it, `CMSG_ALIGN`ed) and a
/// `u16`, padded to `CMSG_SPACE(2)`.
#[repr(C)]
struct SegmentCmsg {
    hdr: libc::cmsghdr,
    size: u16,
    _pad: [u8; 6],
}

const _: () = assert!(std::mem::size_of::<libc::cmsghdr>() == 16);
const _: () = assert!(std::mem::size_of::<SegmentCmsg>() == 24);

/// Sends the concatenation of `pieces` to `to` in one `sendmsg`: one
/// datagram, or, with `segment`, datagrams of `segment` bytes (the last may
/// be shorter) cut by the kernel. Returns the bytes sent.
pub fn send_gathered(
    fd: BorrowedFd<'_>,
    to: &SocketAddr,
    pieces: &[&[u8]],
    segment: Option<u16>,
) -> io::Result<usize> {
    if pieces.len() > MAX_PIECES {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_PIECES];
    for (v, p) in iov.iter_mut().zip(pieces) {
        // The kernel only reads through these (sendmsg).
        v.iov_base = p.as_ptr().cast_mut().cast();
        v.iov_len = p.len();
    }
    let addr = socket2::SockAddr::from(*to);
    let mut cmsg = SegmentCmsg {
        hdr: libc::cmsghdr {
            cmsg_len: 16 + 2,
            cmsg_level: SOL_UDP,
            cmsg_type: UDP_SEGMENT,
        },
        size: segment.unwrap_or(0),
        _pad: [0; 6],
    };
    // SAFETY: `msghdr` is a plain C struct (pointers, lengths, flags) for
    // which all-zero bytes is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr().cast_mut().cast();
    msg.msg_namelen = addr.len();
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = pieces.len();
    if segment.is_some() {
        msg.msg_control = (&raw mut cmsg).cast();
        msg.msg_controllen = std::mem::size_of::<SegmentCmsg>();
    }
    // SAFETY: every pointer in `msg` is to a live local for the call: the
    // address (`addr`, its exact length), `pieces.len()` iovecs each
    // describing a borrowed slice the kernel only reads, and, with a
    // segment size, one control message of `msg_controllen` bytes laid out
    // as `CMSG_FIRSTHDR`/`CMSG_DATA` expect (checked sizes above).
    let n = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return cvt(-1).map(|_| 0);
    }
    Ok(usize::try_from(n).unwrap_or(0))
}
