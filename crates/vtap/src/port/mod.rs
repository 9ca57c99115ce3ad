//! A port: anything the forwarding plane moves frames between.
//!
//! # Why a trait
//!
//! Today every port is a tap's [`DataPath`] (on any backend: vhost-net,
//! userspace rings, or direct reads and writes). Round two adds host
//! uplinks (AF_PACKET, AF_XDP) and VXLAN tunnels. Each new kind implements
//! [`Port`] in a module of its own under `port/`; the cross-connect and the
//! bridge in [`crate::forward`] speak only `Port`, so a new kind of
//! interface never adds a branch to the forwarder.
//!
//! What a port offers is what a worker needs for one round: rx bursts with
//! the virtio-net header as each frame's metadata, tx bursts that wait
//! briefly for room, the offloads frames leaving through it may carry, the
//! forwarding ledger, and a poll handle per rx queue so a worker can sleep
//! on many ports at once. A port is shared as [`SharedPort`] and locked per
//! burst, never per frame.

pub mod fake;
pub mod store;

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::datapath::{self, limit, DataPath, Ledger, RxFrame, RxMode};
use crate::offload::{Caps, Stats};
use crate::wire::TxFrame;

/// Everything the forwarding plane needs from an interface.
pub trait Port: Send + std::fmt::Debug {
    /// Rx queues.
    fn num_rx(&self) -> usize;
    /// Tx queues.
    fn num_tx(&self) -> usize;
    /// Receives up to `max` frames from rx queue `q`, handing each to `f`;
    /// returns how many. A burst that fails part-way has handed on what it
    /// read before the error.
    fn rx_burst(
        &mut self,
        q: usize,
        max: usize,
        f: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, datapath::Error>;
    /// Sends frames on tx queue `q`, waiting up to `wait` for room; what
    /// still does not fit, or fails, is counted as dropped by reason.
    /// Returns how many were queued.
    fn tx_burst_wait(
        &mut self,
        q: usize,
        frames: &[TxFrame<'_>],
        wait: Duration,
    ) -> Result<usize, datapath::Error>;
    /// What frames leaving through this port may carry.
    fn offload_caps(&self) -> Caps;
    /// Adds the offload work a burst toward this port needed.
    fn add_offload_stats(&mut self, s: &Stats);
    /// The forwarding plane's ledger of this port, to count into.
    fn ledger_mut(&mut self) -> &mut Ledger;
    /// Rx queue `q`'s mode.
    fn rx_mode(&self, q: usize) -> Result<RxMode, datapath::Error>;
    /// Makes rx queue `q`'s wait fd signal the next frame; `true` if frames
    /// are already waiting.
    fn arm_rx(&mut self, q: usize) -> Result<bool, datapath::Error>;
    /// The fd that becomes readable when rx queue `q` has frames (-1: none).
    fn rx_wait_fd(&self, q: usize) -> Result<RawFd, datapath::Error>;
    /// Clears rx queue `q`'s signal after a wake-up.
    fn ack_rx(&self, q: usize);
    /// Notes which forwarding worker reads rx queue `q` (`None`: none),
    /// for `show`.
    fn set_rx_worker(&mut self, q: usize, worker: Option<usize>) {
        let _ = (q, worker);
    }
    /// How long an rx rate limit holds reading back (`None`: it may read).
    fn rx_hold(&mut self) -> Option<Duration> {
        None
    }
    /// How long until a frame waiting for tx tokens may go (`None`: none
    /// waits).
    fn tx_hold(&mut self) -> Option<Duration> {
        None
    }
    /// Sends the frames waiting for tx tokens that are due; how many went.
    fn flush_shaped(&mut self) -> usize {
        0
    }
    /// The rate limits in force, with their counters (`None`: none).
    fn rate_limit_state(&self) -> Option<limit::RateLimitState> {
        None
    }
    /// Sets or lifts a rate limit.
    fn set_rate_limit(
        &mut self,
        dir: limit::Direction,
        opts: Option<&limit::LimitOptions>,
    ) -> Result<(), limit::Error> {
        let _ = (dir, opts);
        Err(limit::Error {
            field: "rate-limit",
            reason: "this kind of port has none".into(),
        })
    }
}

/// A port shared between its owner and the worker that drives it.
pub type SharedPort = Arc<Mutex<dyn Port>>;

/// Locks a port; a panic in another holder does not poison it for us (the
/// queues stay consistent between bursts).
pub fn lock(p: &SharedPort) -> MutexGuard<'_, dyn Port + 'static> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// An interface as the forwarding plane is handed it: who it is and its
/// port.
#[derive(Clone, Debug)]
pub struct End {
    /// Interface id.
    pub id: u32,
    /// Data-plane name (`tap0`).
    pub name: String,
    /// L3 TUN.
    pub tun: bool,
    /// Its port (`None` when the interface runs no data path).
    pub datapath: Option<SharedPort>,
    /// Its split-horizon group in a bridge (0: none). A bridge never
    /// sends a frame from one port to another of the same non-zero group:
    /// tunnels are group 1, so what arrives from one remote node never
    /// goes back out to another (every node floods to all the others
    /// itself: head-end replication).
    pub split_horizon: u8,
}

impl Port for DataPath {
    fn num_rx(&self) -> usize {
        DataPath::num_rx(self)
    }
    fn num_tx(&self) -> usize {
        DataPath::num_tx(self)
    }
    fn rx_burst(
        &mut self,
        q: usize,
        max: usize,
        f: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, datapath::Error> {
        DataPath::rx_burst(self, q, max, f)
    }
    fn tx_burst_wait(
        &mut self,
        q: usize,
        frames: &[TxFrame<'_>],
        wait: Duration,
    ) -> Result<usize, datapath::Error> {
        DataPath::tx_burst_wait(self, q, frames, wait)
    }
    fn offload_caps(&self) -> Caps {
        DataPath::offload_caps(self)
    }
    fn add_offload_stats(&mut self, s: &Stats) {
        DataPath::add_offload_stats(self, s);
    }
    fn ledger_mut(&mut self) -> &mut Ledger {
        DataPath::ledger_mut(self)
    }
    fn rx_mode(&self, q: usize) -> Result<RxMode, datapath::Error> {
        DataPath::rx_mode(self, q)
    }
    fn arm_rx(&mut self, q: usize) -> Result<bool, datapath::Error> {
        DataPath::arm_rx(self, q)
    }
    fn rx_wait_fd(&self, q: usize) -> Result<RawFd, datapath::Error> {
        DataPath::rx_wait_fd(self, q)
    }
    fn ack_rx(&self, q: usize) {
        DataPath::ack_rx(self, q);
    }
    fn set_rx_worker(&mut self, q: usize, worker: Option<usize>) {
        DataPath::set_rx_worker(self, q, worker);
    }
    fn rx_hold(&mut self) -> Option<Duration> {
        DataPath::rx_hold(self)
    }
    fn tx_hold(&mut self) -> Option<Duration> {
        DataPath::tx_hold(self)
    }
    fn flush_shaped(&mut self) -> usize {
        DataPath::flush_shaped(self)
    }
    fn rate_limit_state(&self) -> Option<limit::RateLimitState> {
        DataPath::rate_limit_state(self)
    }
    fn set_rate_limit(
        &mut self,
        dir: limit::Direction,
        opts: Option<&limit::LimitOptions>,
    ) -> Result<(), limit::Error> {
        DataPath::set_rate_limit(self, dir, opts)
    }
}
