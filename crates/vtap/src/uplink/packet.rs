//! The `AF_PACKET` half of a host uplink: opening and configuring the
//! sockets, and reading the interface's state back from the kernel.
//!
//! Each queue is one `SOCK_RAW` packet socket bound to the interface, with:
//!
//! * a **virtio-net header** on every frame (`PACKET_VNET_HDR_SZ` = 12 where
//!   the kernel has it, 6.2+; else `PACKET_VNET_HDR`, 10 bytes), so GSO
//!   super-frames and checksum-partial frames cross whole both ways, exactly
//!   as through a tap: the direct engine of [`crate::datapath`] drives both;
//! * `PACKET_QDISC_BYPASS`: frames go straight to the driver, as VPP's and
//!   DPDK's AF_PACKET paths do (a full device queue is `ENOBUFS`, counted);
//! * `PACKET_IGNORE_OUTGOING`: the socket does not see frames leaving the
//!   interface, its own included (no echo back into the bridge);
//! * large socket buffers (`SO_RCVBUFFORCE`: room for super-frames);
//! * with several queues, one `PACKET_FANOUT` group (hash of the flow, the
//!   id chosen by the kernel: `PACKET_FANOUT_FLAG_UNIQUEID`), so each flow
//!   stays on one queue and in order;
//! * on the first socket, `PACKET_MR_PROMISC` membership: the interface is
//!   promiscuous for as long as the socket lives. The kernel counts such
//!   memberships and drops ours when the socket closes, whoever closes it
//!   (delete, daemon exit, `kill -9`): an uplink leaves no promiscuity
//!   behind, and a promiscuity the operator set stays.
//!
//! Nothing else in the kernel changes, so undoing a failed create is closing
//! what was opened.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::sys;

/// Receive buffer per socket: room for about 64 super-frames.
const RCVBUF: i32 = 8 << 20;
/// Send buffer per socket.
const SNDBUF: i32 = 4 << 20;

/// `ETHTOOL_GTXCSUM`.
const ETHTOOL_GTXCSUM: u32 = 0x16;
/// `ETHTOOL_GTSO`.
const ETHTOOL_GTSO: u32 = 0x1e;

/// A socket option or call that failed, by name.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
pub struct StepFailed {
    /// What was being done (`bind`, `PACKET_FANOUT`...).
    pub step: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

pub(crate) fn step(step: &'static str) -> impl FnOnce(io::Error) -> StepFailed {
    move |source| StepFailed { step, source }
}

/// An interface as the kernel describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Its index.
    pub ifindex: u32,
    /// Its driver (`veth`, `tun`, `virtio_net`...).
    pub driver: String,
    /// `IFF_*` flags.
    pub flags: u32,
    /// MTU.
    pub mtu: u32,
    /// Link-layer address.
    pub mac: [u8; 6],
    /// Checksum offload on transmit.
    pub tx_csum: bool,
    /// TCP segmentation offload.
    pub tso: bool,
    /// Receive queues in use (`ethtool -l`; 1 where the driver does not say).
    pub rx_queues: u32,
}

/// Reads interface `name` through socket `fd` (any socket of its namespace).
pub fn probe(fd: BorrowedFd<'_>, name: &str) -> io::Result<Probe> {
    let ifindex = sys::if_index(fd, name)?;
    Ok(Probe {
        ifindex,
        // Some virtual devices answer no driver info; that is no reason to
        // refuse them.
        driver: sys::ethtool_driver(fd, name).unwrap_or_default(),
        flags: sys::if_flags(fd, name)?,
        mtu: sys::if_mtu(fd, name)?,
        mac: sys::if_hwaddr(fd, name)?,
        tx_csum: sys::ethtool_get(fd, name, ETHTOOL_GTXCSUM).is_ok_and(|v| v != 0),
        tso: sys::ethtool_get(fd, name, ETHTOOL_GTSO).is_ok_and(|v| v != 0),
        rx_queues: sys::ethtool_rx_channels(fd, name)
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or(1),
    })
}

/// The link as the kernel sees it now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Link {
    /// Administratively up with carrier.
    Up,
    /// Down, or up without carrier.
    Down,
    /// The interface no longer exists.
    Gone,
}

/// The link state and MTU of interface `ifindex`, through socket `fd`.
pub fn link(fd: BorrowedFd<'_>, ifindex: u32) -> (Link, Option<u32>) {
    let Ok(name) = sys::if_name(fd, ifindex) else {
        return (Link::Gone, None);
    };
    let up = libc::IFF_UP as u32 | libc::IFF_RUNNING as u32;
    let state = match sys::if_flags(fd, &name) {
        Ok(f) if f & up == up => Link::Up,
        Ok(_) => Link::Down,
        Err(_) => Link::Gone,
    };
    (state, sys::if_mtu(fd, &name).ok())
}

/// Sockets opened for an uplink.
#[derive(Debug)]
pub struct Opened {
    /// One per queue, in queue order.
    pub sockets: Vec<File>,
    /// Bytes of virtio-net header on each frame (10 or 12).
    pub hdr_len: usize,
    /// Whether `PACKET_QDISC_BYPASS` took.
    pub qdisc_bypass: bool,
    /// The fanout group's id (several queues only).
    pub fanout_id: Option<u16>,
}

/// Opens `queues` sockets on `ifindex` (in the calling thread's namespace)
/// and makes the interface promiscuous for as long as the first lives.
pub fn open(ifindex: u32, queues: u16) -> Result<Opened, StepFailed> {
    let mut sockets = Vec::with_capacity(usize::from(queues));
    let mut hdr_len = crate::wire::vnet::LEN;
    let mut qdisc_bypass = true;
    let mut fanout_id = None;
    for q in 0..queues {
        let s = sys::packet_socket().map_err(step("socket(AF_PACKET)"))?;
        hdr_len = vnet_header(s.as_fd())?;
        qdisc_bypass &=
            sys::setsockopt_int(s.as_fd(), libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1).is_ok();
        sys::setsockopt_int(s.as_fd(), libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)
            .map_err(step("PACKET_IGNORE_OUTGOING"))?;
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF)
            .map_err(step("SO_RCVBUFFORCE"))?;
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, SNDBUF)
            .map_err(step("SO_SNDBUFFORCE"))?;
        sys::packet_bind(s.as_fd(), ifindex).map_err(step("bind"))?;
        if queues > 1 {
            fanout_id = Some(join_fanout(s.as_fd(), fanout_id)?);
        }
        if q == 0 {
            sys::packet_add_promisc(s.as_fd(), ifindex).map_err(step("PACKET_ADD_MEMBERSHIP"))?;
        }
        sockets.push(File::from(s));
    }
    Ok(Opened {
        sockets,
        hdr_len,
        qdisc_bypass,
        fanout_id,
    })
}

/// Asks for 12-byte virtio-net headers, or the 10-byte ones of kernels
/// before 6.2; returns the length in use.
fn vnet_header(fd: BorrowedFd<'_>) -> Result<usize, StepFailed> {
    let len = crate::wire::vnet::LEN;
    let len_c = i32::try_from(crate::wire::vnet::LEN_U32).unwrap_or(12);
    match sys::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR_SZ, len_c) {
        Ok(()) => Ok(len),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOPROTOOPT | libc::EINVAL)) => {
            sys::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1)
                .map_err(step("PACKET_VNET_HDR"))?;
            Ok(10)
        }
        Err(e) => Err(step("PACKET_VNET_HDR_SZ")(e)),
    }
}

/// Joins the uplink's fanout group: the first socket has the kernel pick an
/// unused id, the others join it. Returns the id.
fn join_fanout(fd: BorrowedFd<'_>, id: Option<u16>) -> Result<u16, StepFailed> {
    let hash = libc::PACKET_FANOUT_HASH;
    let arg = match id {
        Some(id) => u32::from(id) | (hash << 16),
        None => (hash | libc::PACKET_FANOUT_FLAG_UNIQUEID) << 16,
    };
    sys::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, arg as i32)
        .map_err(step("PACKET_FANOUT"))?;
    match id {
        Some(id) => Ok(id),
        None => {
            let got = sys::getsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_FANOUT)
                .map_err(step("PACKET_FANOUT (read back)"))?;
            // The id is the low 16 bits; the type and flags are above.
            let [lo, hi, ..] = got.to_le_bytes();
            Ok(u16::from_le_bytes([lo, hi]))
        }
    }
}

/// Frames the kernel dropped on these sockets for want of room since the
/// last call (`PACKET_STATISTICS`, which the kernel resets on each read).
pub fn kernel_drops(sockets: &[std::sync::Arc<File>]) -> u64 {
    sockets
        .iter()
        .filter_map(|s| sys::packet_statistics(s.as_fd()).ok())
        .map(|(_, drops)| u64::from(drops))
        .sum()
}
