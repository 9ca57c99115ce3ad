//! The `AF_XDP` part of [`super`]: the UMEM (an anonymous mapping with
//! bounds-checked copies in and out, registered through `xdpilone`), the
//! socket statistics, the transmit kick, and `FD_CLOEXEC` for the sockets
//! `xdpilone` opens without it.

use std::io;
use std::os::fd::RawFd;

use super::{cvt, socklen};

/// Sets `FD_CLOEXEC` on an fd a crate opened without it.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD takes an integer argument, no pointer.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(drop)
}

/// `SO_SNDBUFFORCE` on a socket a crate opened (an XDP socket).
pub fn set_sndbuf_force(fd: RawFd, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: `bytes` is a live local `int` whose size is passed; the kernel
    // only reads it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&raw const bytes).cast(),
            socklen::<libc::c_int>(),
        )
    })
    .map(drop)
}

/// `getsockopt(SOL_XDP, XDP_STATISTICS)`: what an `AF_XDP` socket's kernel
/// side dropped, cumulative since it was opened.
pub fn xdp_statistics(fd: RawFd) -> io::Result<libc::xdp_statistics> {
    // SAFETY: `xdp_statistics` is plain integers; all zeroes is valid.
    let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = socklen::<libc::xdp_statistics>();
    // SAFETY: `st` is a live local of `len` bytes; the kernel writes at most
    // `len` bytes there (fewer on old kernels, the rest stays zero).
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&raw mut st).cast(),
            &mut len,
        )
    })?;
    Ok(st)
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: an `AF_XDP` socket's transmit kick.
/// In copy mode the kernel transmits from the ring inside this call.
pub fn xsk_kick_tx(fd: RawFd) -> io::Result<()> {
    // SAFETY: a zero-length send with no buffer and no address.
    let sent = unsafe {
        libc::sendto(
            fd,
            std::ptr::null(),
            0,
            libc::MSG_DONTWAIT,
            std::ptr::null(),
            0,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An anonymous, private, read-write mapping (an `AF_XDP` UMEM), unmapped
/// on drop. It hands out copies in and out by offset, bounds-checked, and
/// never a reference: the kernel writes into other parts of it at any time.
#[derive(Debug)]
pub struct AnonMap {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; access goes
// through `append_out`/`copy_in`, whose callers own the ranges they touch
// (a UMEM chunk belongs to one queue half at a time).
unsafe impl Send for AnonMap {}
// SAFETY: as above: shared use touches disjoint ranges only.
unsafe impl Sync for AnonMap {}

impl AnonMap {
    /// Maps `len` bytes (page-aligned by the kernel).
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous mapping at an address the kernel picks; no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<u8>()).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(Self { ptr, len })
    }

    /// The whole mapping, for registering it with the kernel.
    pub fn as_raw(&self) -> std::ptr::NonNull<[u8]> {
        std::ptr::NonNull::slice_from_raw_parts(self.ptr, self.len)
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: a mapping has at least a page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `len` bytes at `off` to `dst`; `false` (and `dst`
    /// untouched) when the range is outside the mapping.
    pub fn append_out(&self, off: usize, len: usize, dst: &mut Vec<u8>) -> bool {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return false;
        }
        let at = dst.len();
        dst.reserve(len);
        // SAFETY: `off..off+len` is inside the mapping (checked above) and
        // `dst` has room for `len` bytes after its first `at` (reserved);
        // the two cannot overlap (`dst` is heap memory of its own).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().wrapping_add(off),
                dst.as_mut_ptr().wrapping_add(at),
                len,
            )
        };
        // SAFETY: the `len` bytes after the first `at` were just written.
        unsafe { dst.set_len(at + len) };
        true
    }

    /// Writes `src` at `off`; `false` when it does not fit.
    pub fn copy_in(&self, off: usize, src: &[u8]) -> bool {
        if off.checked_add(src.len()).is_none_or(|end| end > self.len) {
            return false;
        }
        // SAFETY: the range is inside the mapping (checked above), which
        // `src` (caller memory) cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                self.ptr.as_ptr().wrapping_add(off),
                src.len(),
            )
        };
        true
    }
}

/// Registers `map` as the UMEM of a new XDP socket (`xdpilone` makes the
/// socket and the `XDP_UMEM_REG` call).
pub fn register_umem(
    map: &AnonMap,
    cfg: xdpilone::UmemConfig,
) -> Result<xdpilone::Umem, xdpilone::Errno> {
    // SAFETY: `xdpilone` asks for a page-aligned area valid for its length
    // (an mmap, `AnonMap`) that the caller keeps alive. The kernel pins the
    // registered pages, so its writes never land elsewhere even if the
    // mapping went first; and vtap's own reads and writes go through
    // `AnonMap`'s bounds-checked copies, which the holder of the mapping
    // makes while it lives.
    unsafe { xdpilone::Umem::new(cfg, map.as_raw()) }
}

impl Drop for AnonMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; nothing refers to
        // it any more (the rings and sockets using it are dropped first by
        // their owners).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
