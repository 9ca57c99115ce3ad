//! Every system call vtap makes that needs `unsafe`, one per block.
//!
//! The rest of the crate never writes `unsafe`: it calls these small safe
//! wrappers, each of which converts the C return code into an
//! [`std::io::Result`] at once (through [`cvt`]). Keeping them together makes
//! the kernel surface easy to audit: the TUN ioctls of `drivers/net/tun.c`,
//! `setns(2)`, `getrandom(2)`, the adoption of a raw netlink socket, the
//! one read that fills uninitialized memory (a frame straight into a `Vec`),
//! packet sockets, and for `AF_XDP` the UMEM (an anonymous mapping with
//! bounds-checked copies in and out, registered through `xdpilone`), the
//! socket statistics and the transmit kick; batches of frames (`batch`:
//! `sendmmsg`/`recvmmsg`; `uring`: io_uring).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `IFNAMSIZ` from `<net/if.h>`: 15 bytes of name plus the NUL.
pub const IFNAMSIZ: usize = libc::IFNAMSIZ;

mod batch;
pub use batch::{recv_frames, send_frames, MMSG_BATCH};
mod uring;
pub use uring::{Uring, URING_BATCH};
mod xdp;
pub use xdp::{register_umem, set_cloexec, set_sndbuf_force, xdp_statistics, xsk_kick_tx, AnonMap};

/// Converts a C return value into `io::Result`, reading `errno` on `-1`.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A zeroed `struct ifreq` with `name` copied into `ifr_name`.
///
/// The caller has validated the name (1..=15 bytes, no NUL); a longer name is
/// an internal error and panics rather than being truncated.
fn ifreq_with_name(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is a plain C struct (arrays and a union of integers and
    // arrays) for which all-zero bytes is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    assert!(name.len() < IFNAMSIZ, "interface name validated before use");
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// Reads `ifr_name` back as a Rust string.
fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file
/// description holds the lock.
pub fn flock_exclusive(fd: &impl AsRawFd) -> io::Result<bool> {
    // SAFETY: flock takes no pointers; the fd is open for the call.
    match cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// `kill(getpid(), SIGKILL)`: the process ends at once, as after `kill -9`
/// (fault injection: a crash at a chosen step).
pub fn kill_self() -> ! {
    if let Ok(me) = libc::pid_t::try_from(std::process::id()) {
        // SAFETY: kill takes no pointers; signalling ourselves is allowed.
        unsafe { libc::kill(me, libc::SIGKILL) };
    }
    // SIGKILL cannot be caught or ignored; should delivery lag, stop anyway.
    std::process::abort()
}

/// `open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)`.
///
/// The TUN character device records the network namespace of the opening
/// thread: a later `TUNSETIFF` creates the interface in that namespace.
pub fn open_tun(path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string; open has no other
    // memory effects.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `TUNGETFEATURES`: the `IFF_*` flags this kernel's TUN driver supports.
pub fn tun_get_features(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut features: libc::c_uint = 0;
    // SAFETY: TUNGETFEATURES writes one `unsigned int` through the pointer,
    // which points to a live local of that type.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETFEATURES, &mut features) })?;
    Ok(features)
}

/// `TUNSETIFF`: creates (or attaches to) the TUN/TAP interface `name` with
/// `flags`. Returns the name the kernel reports back.
pub fn tun_set_iff(fd: BorrowedFd<'_>, name: &str, flags: u16) -> io::Result<String> {
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_flags = libc::c_short::from_ne_bytes(flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `ifr` is a live,
    // initialised local of that type.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) })?;
    Ok(ifreq_name(&ifr))
}

/// `TUNGETIFF`: the name and `IFF_*` flags of the interface `fd` is attached to.
pub fn tun_get_iff(fd: BorrowedFd<'_>) -> io::Result<(String, u16)> {
    let mut ifr = ifreq_with_name("");
    // SAFETY: TUNGETIFF writes a `struct ifreq`; `ifr` is a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut ifr) })?;
    // SAFETY: the kernel filled `ifru_flags` for TUNGETIFF; the union member
    // is a plain integer, valid for any bit pattern.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    Ok((ifreq_name(&ifr), u16::from_ne_bytes(flags.to_ne_bytes())))
}

/// `TUNSETVNETHDRSZ`: the size of the virtio-net header in front of every frame.
pub fn tun_set_vnet_hdr_sz(fd: BorrowedFd<'_>, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) })?;
    Ok(())
}

/// `TUNSETSNDBUF`: the socket send buffer of the queue (VPP uses `INT_MAX`).
pub fn tun_set_sndbuf(fd: BorrowedFd<'_>, bytes: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETSNDBUF reads one `int` through the pointer to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETSNDBUF, &bytes) })?;
    Ok(())
}

/// `readv(2)` of one frame from a tap queue with a virtio-net header: the
/// header into `hdr`, the frame into `buf`, which is cleared, given room for
/// `max` bytes, and afterwards holds exactly the frame. Returns the bytes read,
/// header included (tun never splits a frame over two reads).
pub fn read_frame(
    fd: BorrowedFd<'_>,
    hdr: &mut [u8],
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    buf.clear();
    buf.reserve(max);
    let spare = buf.spare_capacity_mut();
    let iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        },
    ];
    // SAFETY: both iovecs describe memory the caller lends us mutably for the
    // call (`hdr`, and `buf`'s spare capacity) with its exact length; readv
    // writes at most that much, and only there.
    let n = unsafe { libc::readv(fd.as_raw_fd(), iov.as_ptr(), 2) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let body = n.saturating_sub(hdr.len()).min(spare.len());
    // SAFETY: readv filled `hdr` first, then initialized the first `body`
    // bytes of the spare capacity, which `body` does not exceed.
    unsafe { buf.set_len(body) };
    Ok(n)
}

/// `TUNSETOFFLOAD`: the `TUN_F_*` offloads the data plane accepts from the
/// kernel. The argument is the mask itself, not a pointer.
pub fn tun_set_offload(fd: BorrowedFd<'_>, mask: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is touched.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(mask),
        )
    })?;
    Ok(())
}

/// `TUNSETPERSIST`: keep (or stop keeping) the interface when its last fd closes.
pub fn tun_set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    let arg = libc::c_ulong::from(persist);
    // SAFETY: TUNSETPERSIST takes its argument by value; no memory is touched.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, arg) })?;
    Ok(())
}

/// `VHOST_SET_FORK_FROM_OWNER` (`include/uapi/linux/vhost.h`, kernels with
/// `CONFIG_VHOST_ENABLE_FORK_OWNER_CONTROL`): how vhost creates its workers.
/// Not in the `vhost` crate yet.
pub const VHOST_SET_FORK_FROM_OWNER: libc::Ioctl = libc::_IOW::<u8>(0xaf, 0x84);
/// `VHOST_FORK_OWNER_KTHREAD`: workers are kernel threads (as before 6.4).
pub const VHOST_FORK_OWNER_KTHREAD: u8 = 0;

/// `VHOST_SET_FORK_FROM_OWNER` on a vhost fd; must precede `VHOST_SET_OWNER`.
pub fn vhost_set_fork_from_owner(fd: &impl AsRawFd, mode: u8) -> io::Result<()> {
    // SAFETY: the ioctl reads one byte through the pointer to a live local.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), VHOST_SET_FORK_FROM_OWNER, &mode) })?;
    Ok(())
}

/// `setns(fd, CLONE_NEWNET)`: moves the calling thread into a network namespace.
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns only reads the fd number; it changes the calling thread's
    // namespace, which callers confine to a thread they own.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// `unshare(CLONE_NEWNET)`: gives the calling thread a new network namespace.
pub fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare takes no pointers; it changes only the calling thread,
    // which callers confine to a thread they own.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    Ok(())
}

/// `mount(src, dst, NULL, MS_BIND, NULL)`.
pub fn bind_mount(src: &CStr, dst: &CStr) -> io::Result<()> {
    // SAFETY: both paths are valid NUL-terminated strings; the null pointers
    // are allowed for a bind mount.
    cvt(unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })?;
    Ok(())
}

/// `umount2(path, MNT_DETACH)`.
pub fn umount_detach(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    cvt(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) })?;
    Ok(())
}

/// Fills `buf` from the kernel's random pool (`getrandom(2)`).
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe the writable slice `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        } else {
            filled += n.unsigned_abs();
        }
    }
    Ok(())
}

/// `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)`.
///
/// The socket acts in the network namespace of the calling thread, forever.
pub fn netlink_route_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `poll(2)` one fd for readability; `Ok(false)` on timeout or EINTR.
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is a live pollfd and the count is 1; poll only reads the
    // fd number, which `fd` keeps open for the call.
    match cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// `poll(2)` on several fds; `fds` holds `(fd, events)` and gets `revents`
/// back in `revents`. Returns the number ready (0 on timeout or EINTR).
pub fn poll(
    fds: &[(RawFd, libc::c_short)],
    revents: &mut [libc::c_short],
    timeout_ms: libc::c_int,
) -> io::Result<usize> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let n = libc::nfds_t::try_from(p.len()).unwrap_or(0);
    // SAFETY: `p` is a live array of `n` pollfds; poll writes only their
    // `revents` fields.
    let ready = match cvt(unsafe { libc::poll(p.as_mut_ptr(), n, timeout_ms) }) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
        Err(e) => return Err(e),
    };
    for (r, pf) in revents.iter_mut().zip(&p) {
        *r = pf.revents;
    }
    Ok(usize::try_from(ready).unwrap_or(0))
}

/// Wraps an owned netlink socket in tokio's reactor.
///
/// Must be called inside a tokio runtime. The socket keeps the network
/// namespace it was opened in, whatever thread uses it later.
pub fn tokio_netlink_socket(fd: OwnedFd) -> netlink_sys::TokioSocket {
    let raw: RawFd = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: `raw` comes from an `OwnedFd` whose ownership moves here, and it
    // is a netlink socket (the only caller opens it with `netlink_route_socket`).
    unsafe { netlink_sys::TokioSocket::from_raw_fd(raw) }
}

/// Wraps an owned netlink socket for blocking use.
pub fn blocking_netlink_socket(fd: OwnedFd) -> netlink_sys::Socket {
    let raw: RawFd = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: `raw` comes from an `OwnedFd` whose ownership moves here, and it
    // is a netlink socket (the only caller opens it with `netlink_route_socket`).
    unsafe { netlink_sys::Socket::from_raw_fd(raw) }
}

/// `NSFS_MAGIC`: the filesystem of namespace files (`/proc/N/ns/*` and
/// their bind mounts under `/var/run/netns`).
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

/// `statfs(2)`: the filesystem type of `path`, without opening it.
pub fn statfs_type(path: &CStr) -> io::Result<i64> {
    // SAFETY: `statfs` is a plain C struct; all-zero bytes is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` a live statfs the call fills.
    cvt(unsafe { libc::statfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_type)
}

/// `fstatfs(2)`: the filesystem type of an open file.
pub fn fstatfs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: `statfs` is a plain C struct; all-zero bytes is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a live statfs the call fills; the fd is open.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type)
}

/// `sched_setaffinity(2)` of the calling thread to one CPU.
pub fn pin_thread_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit array; all-zero bytes is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: CPU_SET writes one bit of the live local `set`, `cpu` checked
    // to be within it.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t of the size passed; pid 0 is the
    // calling thread; the kernel only reads the set.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

// ---- AF_PACKET and interface queries (host uplinks) -------------------------

/// `sizeof(T)` as a `socklen_t` (every type passed is a few bytes).
fn socklen<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// `AF_PACKET` as `sockaddr_ll` stores it.
const AF_PACKET_U16: u16 = 17;
const _: () = assert!(AF_PACKET_U16 as libc::c_int == libc::AF_PACKET);
/// `ETH_P_ALL` as `sockaddr_ll` stores it (before byte order).
const ETH_P_ALL_U16: u16 = 0x0003;
const _: () = assert!(ETH_P_ALL_U16 as libc::c_int == libc::ETH_P_ALL);
/// `PACKET_MR_PROMISC` as `packet_mreq` stores it.
const PACKET_MR_PROMISC_U16: u16 = 1;
const _: () = assert!(PACKET_MR_PROMISC_U16 as libc::c_int == libc::PACKET_MR_PROMISC);

/// `socket(AF_PACKET, SOCK_RAW)` that receives nothing until it is bound
/// (protocol 0), non-blocking, close-on-exec.
pub fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt(2)` of one `int`.
pub fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = socklen::<libc::c_int>();
    // SAFETY: the option value is a live local `int` of exactly `len` bytes,
    // which the kernel only reads.
    cvt(unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) })?;
    Ok(())
}

/// `bind(2)` of a packet socket to every EtherType on interface `ifindex`.
pub fn packet_bind(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    // SAFETY: `sockaddr_ll` is a plain C struct; all-zero bytes is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = AF_PACKET_U16;
    sll.sll_protocol = ETH_P_ALL_U16.to_be();
    sll.sll_ifindex =
        i32::try_from(ifindex).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    let len = socklen::<libc::sockaddr_ll>();
    // SAFETY: `sll` is a live sockaddr_ll of `len` bytes, only read.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), len) })?;
    Ok(())
}

/// `PACKET_ADD_MEMBERSHIP` of `PACKET_MR_PROMISC` on `ifindex`: the
/// interface is promiscuous while the socket lives (the kernel counts the
/// membership and drops it when the socket closes).
pub fn packet_add_promisc(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let mreq = libc::packet_mreq {
        mr_ifindex: i32::try_from(ifindex)
            .map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?,
        mr_type: PACKET_MR_PROMISC_U16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    let len = socklen::<libc::packet_mreq>();
    // SAFETY: `mreq` is a live packet_mreq of `len` bytes, only read.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&raw const mreq).cast(),
            len,
        )
    })?;
    Ok(())
}

/// `PACKET_STATISTICS`: frames the socket received and dropped since the
/// last call (the kernel resets them on every read).
pub fn packet_statistics(fd: BorrowedFd<'_>) -> io::Result<(u32, u32)> {
    let mut st = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = socklen::<libc::tpacket_stats>();
    // SAFETY: `st` is a live tpacket_stats and `len` its size; the kernel
    // writes at most `len` bytes there and stores the length written.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut st).cast(),
            &mut len,
        )
    })?;
    Ok((st.tp_packets, st.tp_drops))
}

/// `SIOCGIFINDEX`: the index of interface `name` in `fd`'s namespace.
pub fn if_index(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ifr = ifreq_with_name(name);
    // SAFETY: SIOCGIFINDEX reads the name from and writes the index into the
    // live `ifr`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut ifr) })?;
    // SAFETY: SIOCGIFINDEX filled the union's `ifru_ifindex` member.
    let index = unsafe { ifr.ifr_ifru.ifru_ifindex };
    u32::try_from(index).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))
}

/// `SIOCGIFNAME`: the name of interface `index` in `fd`'s namespace.
pub fn if_name(fd: BorrowedFd<'_>, index: u32) -> io::Result<String> {
    // SAFETY: `ifreq` is a plain C struct; all-zero bytes is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_ifru.ifru_ifindex =
        i32::try_from(index).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: SIOCGIFNAME reads the index from and writes the name into the
    // live `ifr`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFNAME, &mut ifr) })?;
    Ok(ifreq_name(&ifr))
}

/// `SIOCGIFFLAGS`: interface `name`'s `IFF_*` flags.
pub fn if_flags(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ifr = ifreq_with_name(name);
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into the
    // live `ifr`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) })?;
    // SAFETY: SIOCGIFFLAGS filled the union's `ifru_flags` member.
    Ok(u32::from(u16::from_ne_bytes(
        unsafe { ifr.ifr_ifru.ifru_flags }.to_ne_bytes(),
    )))
}

/// `SIOCGIFMTU`: interface `name`'s MTU.
pub fn if_mtu(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ifr = ifreq_with_name(name);
    // SAFETY: SIOCGIFMTU reads the name from and writes the MTU into the
    // live `ifr`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) })?;
    // SAFETY: SIOCGIFMTU filled the union's `ifru_mtu` member.
    Ok(u32::try_from(unsafe { ifr.ifr_ifru.ifru_mtu }).unwrap_or(0))
}

/// `SIOCGIFHWADDR`: interface `name`'s link-layer address (the first six
/// bytes).
pub fn if_hwaddr(fd: BorrowedFd<'_>, name: &str) -> io::Result<[u8; 6]> {
    let mut ifr = ifreq_with_name(name);
    // SAFETY: SIOCGIFHWADDR reads the name from and writes a sockaddr into
    // the live `ifr`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) })?;
    // SAFETY: SIOCGIFHWADDR filled the union's `ifru_hwaddr` member.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr }.sa_data;
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = d.to_ne_bytes()[0];
    }
    Ok(mac)
}

/// `struct ethtool_value` of `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// `SIOCETHTOOL` with a legacy get command (`ETHTOOL_GTXCSUM`,
/// `ETHTOOL_GTSO`, ...): the one value it answers.
pub fn ethtool_get(fd: BorrowedFd<'_>, name: &str, cmd: u32) -> io::Result<u32> {
    let mut val = EthtoolValue { cmd, data: 0 };
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_data = (&raw mut val).cast();
    // SAFETY: SIOCETHTOOL reads the command from and writes the answer into
    // `val`, a live `ethtool_value` that `ifr` points to for the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    Ok(val.data)
}

/// `struct ethtool_drvinfo` of `<linux/ethtool.h>`.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    rest: [u8; 160],
}

/// `SIOCETHTOOL` `ETHTOOL_GDRVINFO`: the name of interface `name`'s driver
/// (`tun`, `veth`, `virtio_net`...).
pub fn ethtool_driver(fd: BorrowedFd<'_>, name: &str) -> io::Result<String> {
    let mut info = EthtoolDrvinfo {
        cmd: 0x3, // ETHTOOL_GDRVINFO
        driver: [0; 32],
        rest: [0; 160],
    };
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_data = (&raw mut info).cast();
    // SAFETY: SIOCETHTOOL GDRVINFO writes a `struct ethtool_drvinfo` (196
    // bytes, the size of `info`) into `info`, which `ifr` points to for the
    // call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Ok(String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// `getsockopt(2)` of one `int`.
pub fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = socklen::<libc::c_int>();
    // SAFETY: `value` is a live local `int` and `len` its size; the kernel
    // writes at most `len` bytes there and stores the length written.
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `struct ethtool_channels` of `<linux/ethtool.h>`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// `SIOCETHTOOL` `ETHTOOL_GCHANNELS`: the receive queues of interface
/// `name` in use (dedicated rx plus combined channels).
pub fn ethtool_rx_channels(fd: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut ch = EthtoolChannels {
        cmd: 0x3c, // ETHTOOL_GCHANNELS
        ..EthtoolChannels::default()
    };
    let mut ifr = ifreq_with_name(name);
    ifr.ifr_ifru.ifru_data = (&raw mut ch).cast();
    // SAFETY: SIOCETHTOOL GCHANNELS writes a `struct ethtool_channels` (36
    // bytes, the size of `ch`) into `ch`, which `ifr` points to for the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) })?;
    Ok(ch.rx_count + ch.combined_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_fork_ioctl_number_matches_the_kernel_header() {
        // _IOW(VHOST_VIRTIO=0xAF, 0x84, __u8): write, size 1.
        assert_eq!(VHOST_SET_FORK_FROM_OWNER, 0x4001_af84);
    }

    #[test]
    fn ifreq_round_trips_names() {
        for name in ["", "a", "tap0", "exactly15bytes_"] {
            assert_eq!(ifreq_name(&ifreq_with_name(name)), name);
        }
    }

    #[test]
    fn random_fills_every_byte_eventually() {
        let mut seen = [0u8; 64];
        for _ in 0..8 {
            let mut buf = [0u8; 64];
            fill_random(&mut buf).expect("getrandom");
            for (s, b) in seen.iter_mut().zip(buf) {
                *s |= b;
            }
        }
        assert!(seen.iter().filter(|&&b| b != 0).count() > 56);
    }
}
