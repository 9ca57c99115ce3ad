//! The kernel vhost-net backend: the kernel serves vtap's rings from the tap.
//!
//! The seed's sequence, per queue pair (one `/dev/vhost-net` fd each; ring 0
//! is rx, ring 1 is tx): `VHOST_SET_OWNER`, `VHOST_GET_FEATURES` (require
//! `MRG_RXBUF`, `INDIRECT_DESC`, `VERSION_1`; take `EVENT_IDX` when offered),
//! `VHOST_SET_FEATURES`, `VHOST_SET_MEM_TABLE` (the arena as one
//! identity-mapped region), then per ring `SET_VRING_NUM/BASE/ADDR/CALL/KICK`
//! and `VHOST_NET_SET_BACKEND` with the tap fd. Teardown detaches every ring
//! (`SET_BACKEND -1`) before the fds close. rust-vmm's `vhost` crate does the
//! ioctls (one `unsafe` each, in that crate).
//!
//! Before `VHOST_SET_OWNER` each fd is asked for kernel-thread workers with
//! `VHOST_SET_FORK_FROM_OWNER` (kernels >= 6.4 switched to `vhost_task`
//! workers and regressed; the ioctl, where the kernel has it, switches back).
//! Kernels without it answer ENOTTY/EINVAL and keep their default; which
//! happened is recorded and shown.

use std::fs::File;
use std::sync::Arc;

use vhost::net::VhostNet as _;
use vhost::vhost_kern::net::Net;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::GuestMemoryMmap;

use super::queue::DeviceSide;
use crate::virtq::Arena;

/// `VIRTIO_NET_F_MRG_RXBUF`.
pub const F_MRG_RXBUF: u64 = 1 << 15;
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_F_VERSION_1`.
pub const F_VERSION_1: u64 = 1 << 32;
/// What vtap cannot work without.
pub const REQUIRED: u64 = F_MRG_RXBUF | F_INDIRECT_DESC | F_VERSION_1;

/// Why the vhost-net backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An ioctl (or opening the device) failed.
    #[error("vhost-net {op} (queue pair {pair})")]
    Vhost {
        /// What was being done.
        op: &'static str,
        /// Queue pair.
        pair: usize,
        /// The vhost crate's error.
        #[source]
        source: vhost::Error,
    },
    /// A required feature is missing.
    #[error("vhost-net lacks required features {missing:#x} (offered {offered:#x})")]
    Features {
        /// Missing bits.
        missing: u64,
        /// Offered bits.
        offered: u64,
    },
}

type NetFd = Net<Arc<GuestMemoryMmap>>;

/// The features `/dev/vhost-net` offers (opens and closes one instance).
pub fn probe_features(arena: &Arena) -> Result<u64, Error> {
    let net = Net::new(arena.shared_mem()).map_err(|source| Error::Vhost {
        op: "open /dev/vhost-net",
        pair: 0,
        source,
    })?;
    net.set_owner().map_err(|source| Error::Vhost {
        op: "VHOST_SET_OWNER",
        pair: 0,
        source,
    })?;
    net.get_features().map_err(|source| Error::Vhost {
        op: "VHOST_GET_FEATURES",
        pair: 0,
        source,
    })
}

/// What vtap negotiates from what is offered (`event_idx` allows EVENT_IDX).
pub fn negotiate(offered: u64, event_idx: bool) -> Result<u64, Error> {
    let missing = REQUIRED & !offered;
    if missing != 0 {
        return Err(Error::Features { missing, offered });
    }
    let optional = if event_idx { F_EVENT_IDX } else { 0 };
    Ok(REQUIRED | (offered & optional))
}

/// How vhost creates its workers for vtap's queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WorkerMode {
    /// Kernel threads, as asked with `VHOST_SET_FORK_FROM_OWNER`.
    Kthread,
    /// The kernel has no `VHOST_SET_FORK_FROM_OWNER`: its default.
    KernelDefault,
}

/// Asks for kthread workers; returns what the kernel did.
fn request_kthread_workers(net: &NetFd, pair: usize) -> Result<WorkerMode, Error> {
    match crate::sys::vhost_set_fork_from_owner(net, crate::sys::VHOST_FORK_OWNER_KTHREAD) {
        Ok(()) => Ok(WorkerMode::Kthread),
        // A kernel without the ioctl: vhost_net_ioctl passes unknown
        // requests to vhost_dev_ioctl, which answers EPERM to a caller that
        // is not the owner yet (and we must not be: the call has to precede
        // SET_OWNER); ENOTTY/EINVAL where the check order differs. Kernels
        // that have it return EBUSY only after SET_OWNER, never EPERM.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTTY) | Some(libc::EINVAL) | Some(libc::EPERM)
            ) =>
        {
            Ok(WorkerMode::KernelDefault)
        }
        Err(e) => Err(Error::Vhost {
            op: "VHOST_SET_FORK_FROM_OWNER",
            pair,
            source: vhost::Error::IoctlError(e),
        }),
    }
}

/// A running vhost-net backend.
pub struct VhostNetBackend {
    /// Per queue pair: the vhost fd, and whether rx / tx are attached.
    nets: Vec<(NetFd, bool, bool)>,
    features: u64,
    worker_mode: WorkerMode,
}

impl std::fmt::Debug for VhostNetBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhostNetBackend")
            .field("pairs", &self.nets.len())
            .field("features", &format_args!("{:#x}", self.features))
            .field("worker_mode", &self.worker_mode)
            .finish()
    }
}

fn ring(net: &NetFd, pair: usize, index: usize, ds: &DeviceSide<'_>) -> Result<(), Error> {
    let e = |op: &'static str| move |source| Error::Vhost { op, pair, source };
    let size = ds.ring.size();
    let a = ds.ring.addrs();
    net.set_vring_num(index, size)
        .map_err(e("VHOST_SET_VRING_NUM"))?;
    net.set_vring_base(index, 0)
        .map_err(e("VHOST_SET_VRING_BASE"))?;
    let cfg = VringConfigData {
        queue_max_size: size,
        queue_size: size,
        flags: 0,
        desc_table_addr: a.desc.0,
        used_ring_addr: a.used.0,
        avail_ring_addr: a.avail.0,
        log_addr: None,
    };
    net.set_vring_addr(index, &cfg)
        .map_err(e("VHOST_SET_VRING_ADDR"))?;
    net.set_vring_call(index, ds.call)
        .map_err(e("VHOST_SET_VRING_CALL"))?;
    net.set_vring_kick(index, ds.kick)
        .map_err(e("VHOST_SET_VRING_KICK"))?;
    Ok(())
}

impl VhostNetBackend {
    /// Starts one vhost-net instance per queue pair. `rx[i]`/`tx[i]` are the
    /// queues of pair `i` (either may be absent); `taps[i % taps.len()]` is
    /// its tap fd.
    pub fn start(
        arena: &Arena,
        features: u64,
        taps: &[File],
        rx: &[DeviceSide<'_>],
        tx: &[DeviceSide<'_>],
    ) -> Result<Self, Error> {
        let pairs = rx.len().max(tx.len());
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: arena.base().0,
            memory_size: arena.size() as u64,
            userspace_addr: arena.base().0,
            mmap_offset: 0,
            mmap_handle: -1,
        };
        let mut me = Self {
            nets: Vec::with_capacity(pairs),
            features,
            worker_mode: WorkerMode::KernelDefault,
        };
        for pair in 0..pairs {
            let e = |op: &'static str| move |source| Error::Vhost { op, pair, source };
            let net = Net::new(arena.shared_mem()).map_err(e("open /dev/vhost-net"))?;
            me.worker_mode = request_kthread_workers(&net, pair)?;
            net.set_owner().map_err(e("VHOST_SET_OWNER"))?;
            net.set_features(features)
                .map_err(e("VHOST_SET_FEATURES"))?;
            net.set_mem_table(&[region])
                .map_err(e("VHOST_SET_MEM_TABLE"))?;
            let tap = &taps[pair % taps.len()];
            let has_rx = pair < rx.len();
            let has_tx = pair < tx.len();
            if has_rx {
                ring(&net, pair, 0, &rx[pair])?;
            }
            if has_tx {
                ring(&net, pair, 1, &tx[pair])?;
            }
            // Registered before the backend is set, so that a failure below
            // still detaches what was attached.
            me.nets.push((net, false, false));
            let (net, rx_on, tx_on) = me.nets.last_mut().expect("just pushed");
            if has_rx {
                net.set_backend(0, Some(tap))
                    .map_err(e("VHOST_NET_SET_BACKEND rx"))?;
                *rx_on = true;
            }
            if has_tx {
                net.set_backend(1, Some(tap))
                    .map_err(e("VHOST_NET_SET_BACKEND tx"))?;
                *tx_on = true;
            }
        }
        Ok(me)
    }

    /// The negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// How the kernel creates this backend's workers.
    pub fn worker_mode(&self) -> WorkerMode {
        self.worker_mode
    }
}

impl Drop for VhostNetBackend {
    fn drop(&mut self) {
        for (i, (net, rx_on, tx_on)) in self.nets.iter().enumerate() {
            for (index, on) in [(0, *rx_on), (1, *tx_on)] {
                if on {
                    if let Err(e) = net.set_backend(index, None) {
                        tracing::warn!(pair = i, ring = index, error = %e, "vhost-net detach failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_table() {
        let all = REQUIRED | F_EVENT_IDX | (1 << 24); // + NOTIFY_ON_EMPTY, not taken
        assert_eq!(negotiate(all, true).expect("ok"), REQUIRED | F_EVENT_IDX);
        assert_eq!(negotiate(all, false).expect("ok"), REQUIRED);
        assert_eq!(negotiate(REQUIRED, true).expect("ok"), REQUIRED);
        for missing in [F_MRG_RXBUF, F_INDIRECT_DESC, F_VERSION_1] {
            let e = negotiate(all & !missing, true).expect_err("missing");
            assert!(matches!(e, Error::Features { missing: m, .. } if m == missing));
        }
    }
}
