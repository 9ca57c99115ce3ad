//! The TUN/TAP character device: queue fds, their flags, and offload masks.
//!
//! # Design
//!
//! A vtap interface owns one `/dev/net/tun` fd per queue (`IFF_MULTI_QUEUE`
//! lets several fds share one interface, and vhost-net takes one as the
//! backend of each queue pair). The fds are opened by a thread inside the
//! target namespace, so `TUNSETIFF` creates the interface directly there with
//! its final name: there is no window in which a half-configured tap sits in
//! the daemon's namespace, and no rename or move that could collide.
//!
//! Every queue carries the 12-byte `virtio_net_hdr_v1` (`IFF_VNET_HDR` +
//! `TUNSETVNETHDRSZ 12`, `VIRTIO_F_VERSION_1`). `TUNSETOFFLOAD` is
//! device-wide in the kernel, but vtap sets it on every queue fd so that the
//! mask never depends on which fd the kernel looks at, and it always sets it
//! explicitly (even to 0) so that a mask left by an earlier user of a
//! persistent tap cannot leak into this one.
//!
//! USO (`TUN_F_USO4|TUN_F_USO6`, kernel >= 6.2) is probed: asked for with
//! GSO, and dropped from the mask if the kernel answers `EINVAL`. The mask the
//! kernel accepted is what vtap records and reports.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::netns::Netns;
use crate::sys;

/// The TUN character device.
pub const DEV_NET_TUN: &CStr = c"/dev/net/tun";

/// `sizeof(struct virtio_net_hdr_v1)`: what every frame on a queue starts with.
pub const VNET_HDR_LEN: i32 = 12;
// The ioctl's int and the header's length are one number.
const _: () = assert!(VNET_HDR_LEN as usize == crate::wire::vnet::LEN);

/// `TUN_F_*` offload bits (`include/uapi/linux/if_tun.h`).
pub mod offload {
    /// The data plane accepts checksum-partial frames.
    pub const CSUM: u32 = libc::TUN_F_CSUM;
    /// TCPv4 segmentation offload.
    pub const TSO4: u32 = libc::TUN_F_TSO4;
    /// TCPv6 segmentation offload.
    pub const TSO6: u32 = libc::TUN_F_TSO6;
    /// TSO with ECN.
    pub const TSO_ECN: u32 = libc::TUN_F_TSO_ECN;
    /// UDP segmentation offload over IPv4 (kernel >= 6.2).
    pub const USO4: u32 = libc::TUN_F_USO4;
    /// UDP segmentation offload over IPv6 (kernel >= 6.2).
    pub const USO6: u32 = libc::TUN_F_USO6;

    /// Names of the bits set in `mask`, for humans.
    pub fn names(mask: u32) -> Vec<&'static str> {
        [
            (CSUM, "csum"),
            (TSO4, "tso4"),
            (TSO6, "tso6"),
            (TSO_ECN, "tso-ecn"),
            (USO4, "uso4"),
            (USO6, "uso6"),
        ]
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|&(_, n)| n)
        .collect()
    }
}

/// Which offloads the data plane takes from the kernel (VPP's three modes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffloadMode {
    /// Nothing: the kernel sends complete, checksummed frames.
    #[default]
    None,
    /// Checksum-partial frames (`csum-offload`).
    Csum,
    /// Checksum-partial and segmentation-offloaded super-frames (`gso`).
    Gso,
}

impl OffloadMode {
    /// The `TUNSETOFFLOAD` masks to try, best first.
    pub fn candidates(self) -> &'static [u32] {
        use offload::*;
        match self {
            Self::None => &[0],
            Self::Csum => &[CSUM],
            Self::Gso => &[CSUM | TSO4 | TSO6 | USO4 | USO6, CSUM | TSO4 | TSO6],
        }
    }
}

/// L2 TAP or L3 TUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Ethernet frames (`IFF_TAP`).
    Tap,
    /// IP packets (`IFF_TUN`).
    Tun,
}

impl Mode {
    /// The `TUNSETIFF` flags vtap uses for this mode.
    pub fn iff_flags(self, multi_queue: bool) -> u16 {
        let kind = match self {
            Self::Tap => libc::IFF_TAP,
            Self::Tun => libc::IFF_TUN,
        };
        let mut flags = kind | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        u16::try_from(flags).unwrap_or(u16::MAX)
    }

    /// The send buffer VPP uses: `INT_MAX`, but `INT_MAX - 1` for TUN because
    /// vhost-net's batched XDP path assumes Ethernet when it sees `INT_MAX`.
    pub fn sndbuf(self) -> i32 {
        match self {
            Self::Tap => i32::MAX,
            Self::Tun => i32::MAX - 1,
        }
    }
}

/// Why a tap queue could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/dev/net/tun` is missing or cannot be opened.
    #[error("cannot open {path} (is the tun module loaded?)")]
    Open {
        /// The device path.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The TUN driver lacks a feature vtap needs.
    #[error("the kernel's TUN driver lacks {0}")]
    Feature(&'static str),
    /// The caller lacks `CAP_NET_ADMIN`.
    #[error("permission denied creating '{name}': needs CAP_NET_ADMIN (run as root)")]
    Permission {
        /// Interface name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The interface exists and another process holds its (single) queue.
    #[error("host-if-name '{name}' is in use by another process")]
    Busy {
        /// Interface name.
        name: String,
    },
    /// The interface exists with flags other than those asked for.
    #[error("host-if-name '{name}': the existing interface does not match ({detail})")]
    Mismatch {
        /// Interface name.
        name: String,
        /// What differs.
        detail: String,
    },
    /// Another ioctl failed.
    #[error("{op} on {name}")]
    Ioctl {
        /// The ioctl.
        op: &'static str,
        /// Interface name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Entering the namespace failed.
    #[error(transparent)]
    Netns(#[from] crate::netns::Error),
}

/// Opens `count` queue fds on `name` in `ns` with `mode`'s flags: the first
/// creates the interface unless it exists (attach), the rest attach to it.
pub fn open_queues(
    ns: &Netns,
    dev: &CStr,
    name: &str,
    mode: Mode,
    count: u16,
    multi_queue: bool,
) -> Result<Vec<OwnedFd>, Error> {
    let opened = ns.run_in(|| {
        (0..count)
            .map(|_| sys::open_tun(dev))
            .collect::<io::Result<Vec<_>>>()
    })?;
    let fds = opened.map_err(|source| open_error(dev, name, source))?;
    let Some(first) = fds.first() else {
        return Ok(fds);
    };
    let features = sys::tun_get_features(first.as_fd()).map_err(|source| Error::Ioctl {
        op: "TUNGETFEATURES",
        name: name.to_string(),
        source,
    })?;
    if features & (libc::IFF_VNET_HDR as u32) == 0 {
        return Err(Error::Feature("IFF_VNET_HDR"));
    }
    if multi_queue && features & (libc::IFF_MULTI_QUEUE as u32) == 0 {
        return Err(Error::Feature(
            "IFF_MULTI_QUEUE (needed for more than one queue)",
        ));
    }
    let flags = mode.iff_flags(multi_queue);
    for fd in &fds {
        sys::tun_set_iff(fd.as_fd(), name, flags).map_err(|source| set_iff_error(name, source))?;
    }
    Ok(fds)
}

/// Whether the TUN driver offers `IFF_MULTI_QUEUE` (read from a fresh fd).
pub fn offers_multi_queue(dev: &CStr) -> Result<bool, Error> {
    let fd = sys::open_tun(dev).map_err(|source| open_error(dev, "", source))?;
    let features = sys::tun_get_features(fd.as_fd()).map_err(|source| Error::Ioctl {
        op: "TUNGETFEATURES",
        name: String::new(),
        source,
    })?;
    Ok(features & (libc::IFF_MULTI_QUEUE as u32) != 0)
}

fn open_error(dev: &CStr, name: &str, source: io::Error) -> Error {
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission {
            name: name.to_string(),
            source,
        },
        _ => Error::Open {
            path: dev.to_string_lossy().into_owned(),
            source,
        },
    }
}

fn set_iff_error(name: &str, source: io::Error) -> Error {
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission {
            name: name.to_string(),
            source,
        },
        Some(libc::EBUSY) => Error::Busy {
            name: name.to_string(),
        },
        Some(libc::EINVAL) => Error::Mismatch {
            name: name.to_string(),
            detail: "TUNSETIFF refused the flags: tap/tun type, vnet_hdr or multi_queue differ"
                .into(),
        },
        _ => Error::Ioctl {
            op: "TUNSETIFF",
            name: name.to_string(),
            source,
        },
    }
}

/// Sets the vnet header size and send buffer on one queue.
pub fn configure_queue(fd: &impl AsFd, name: &str, mode: Mode) -> Result<(), Error> {
    let ioctl = |op| {
        move |source| Error::Ioctl {
            op,
            name: name.to_string(),
            source,
        }
    };
    sys::tun_set_vnet_hdr_sz(fd.as_fd(), VNET_HDR_LEN).map_err(ioctl("TUNSETVNETHDRSZ"))?;
    sys::tun_set_sndbuf(fd.as_fd(), mode.sndbuf()).map_err(ioctl("TUNSETSNDBUF"))?;
    Ok(())
}

/// Sets the offload mask for `mode` on every queue, probing for the best mask
/// the kernel accepts. `allow_uso = false` is the kill switch for USO.
/// Returns the mask that is now in force.
pub fn set_offload(
    fds: &[impl AsFd],
    name: &str,
    mode: OffloadMode,
    allow_uso: bool,
) -> Result<u32, Error> {
    let Some(first) = fds.first() else {
        return Ok(0);
    };
    let uso = offload::USO4 | offload::USO6;
    let mut last = None;
    let mut accepted = None;
    for &mask in mode.candidates() {
        if !allow_uso && mask & uso != 0 {
            continue;
        }
        match sys::tun_set_offload(first.as_fd(), mask) {
            Ok(()) => {
                accepted = Some(mask);
                break;
            }
            // EINVAL: this kernel does not know a bit; try the next mask.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => {
                last = Some(e);
                break;
            }
        }
    }
    let mask = accepted.ok_or_else(|| Error::Ioctl {
        op: "TUNSETOFFLOAD",
        name: name.to_string(),
        source: last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)),
    })?;
    for fd in &fds[1..] {
        sys::tun_set_offload(fd.as_fd(), mask).map_err(|source| Error::Ioctl {
            op: "TUNSETOFFLOAD",
            name: name.to_string(),
            source,
        })?;
    }
    Ok(mask)
}

/// Marks the interface persistent (or not) through one of its queues.
pub fn set_persist(fd: &impl AsFd, name: &str, persist: bool) -> Result<(), Error> {
    sys::tun_set_persist(fd.as_fd(), persist).map_err(|source| Error::Ioctl {
        op: "TUNSETPERSIST",
        name: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iff_flags_table() {
        let cases = [
            (Mode::Tap, false, 0x4002 | 0x1000),
            (Mode::Tap, true, 0x4002 | 0x1000 | 0x0100),
            (Mode::Tun, false, 0x4001 | 0x1000),
            (Mode::Tun, true, 0x4001 | 0x1000 | 0x0100),
        ];
        for (mode, mq, want) in cases {
            assert_eq!(mode.iff_flags(mq), want, "{mode:?} mq={mq}");
        }
    }

    #[test]
    fn offload_candidates_table() {
        use offload::*;
        assert_eq!(OffloadMode::None.candidates(), &[0]);
        assert_eq!(OffloadMode::Csum.candidates(), &[CSUM]);
        // GSO without CSUM is EINVAL in the kernel: every GSO mask has CSUM.
        for m in OffloadMode::Gso.candidates() {
            assert_eq!(m & CSUM, CSUM);
            assert_eq!(m & (TSO4 | TSO6), TSO4 | TSO6);
        }
        assert_eq!(names(CSUM | TSO4 | USO6), ["csum", "tso4", "uso6"]);
    }

    #[test]
    fn sndbuf_matches_vpp() {
        assert_eq!(Mode::Tap.sndbuf(), i32::MAX);
        assert_eq!(Mode::Tun.sndbuf(), i32::MAX - 1);
    }
}
