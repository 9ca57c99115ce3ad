//! The data path of one interface: its arena, rx and tx queues, and the
//! backend that serves them.
//!
//! The data plane sees only [`DataPath::rx_burst`] and [`DataPath::tx_burst`]
//! on numbered queues; whether the kernel's vhost-net or a vtap thread serves
//! rings, or the queues read and write the tap fd directly
//! ([`direct`]), is decided once, at start, and shown by [`DataPath::state`].

pub mod capture;
pub mod direct;
mod engine;
#[doc(hidden)]
pub mod fuzz;
pub mod ledger;
pub mod limit;
mod limited;
pub mod queue;
pub mod user;
pub mod vhost;
pub mod vxlan;
pub mod xsk;

use std::fs::File;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// The virtio-net header (moved to [`crate::wire`]; re-exported here).
pub use crate::wire::vnet;
pub use crate::wire::{TxFrame, VnetHdr};
pub use ledger::{Accounting, Ledger};
pub use queue::{Counters, RxFrame, RxMode, RxQueue, Sent, TxQueue, BUF_SIZE, MAX_BURST};

use crate::virtq::{split, Arena};

/// Why a data path could not start or a burst failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arena.
    #[error(transparent)]
    Arena(#[from] crate::virtq::arena::Error),
    /// A queue.
    #[error(transparent)]
    Queue(#[from] queue::Error),
    /// vhost-net.
    #[error(transparent)]
    Vhost(#[from] vhost::Error),
    /// The userspace backend.
    #[error(transparent)]
    User(#[from] user::Error),
    /// The direct engine.
    #[error(transparent)]
    Direct(#[from] direct::Error),
    /// A queue index out of range.
    #[error("queue {0} does not exist")]
    NoQueue(usize),
    /// `af-xdp` asked of a tap (it serves host uplinks only).
    #[error("backend af-xdp serves host uplinks, not taps")]
    NotForTaps,
}

/// The backend that serves an interface's queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Backend {
    /// The kernel's vhost-net.
    VhostNet,
    /// A userspace thread of vtap serves the rings.
    Userspace,
    /// No rings: the data plane reads and writes the tap fds itself.
    Direct,
    /// The direct engine with its reads and writes batched through
    /// io_uring (one `io_uring_enter` per 32 frames).
    IoUring,
    /// An XDP socket's rings per queue (host uplinks in `af-xdp` mode).
    AfXdp,
    /// UDP sockets in the underlay (VXLAN tunnels).
    Vxlan,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VhostNet => "vhost-net",
            Self::Userspace => "userspace",
            Self::Direct => "direct",
            Self::IoUring => "io-uring",
            Self::AfXdp => "af-xdp",
            Self::Vxlan => "vxlan",
        })
    }
}

/// A data path shared between the registry (for `show`) and whoever drives
/// its queues. The lock is taken per burst, not per frame.
pub type SharedDataPath = Arc<Mutex<DataPath>>;

/// Locks a data path; a panic in another holder does not poison it for us
/// (the queues stay consistent between bursts).
pub fn lock(d: &SharedDataPath) -> MutexGuard<'_, DataPath> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// How a data path is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Rx ring size.
    pub rx_ring_size: u16,
    /// Tx ring size.
    pub tx_ring_size: u16,
    /// Rx queues.
    pub num_rx_queues: u16,
    /// Tx queues.
    pub num_tx_queues: u16,
    /// Allow `VIRTIO_RING_F_EVENT_IDX` when the device offers it.
    pub event_idx: bool,
    /// Use indirect descriptor tables for multi-buffer tx frames.
    pub indirect: bool,
    /// Which backend serves the rings.
    pub backend: Backend,
}

/// One queue's state, for `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueState {
    /// Rx mode (rx queues only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RxMode>,
    /// The ring's indices (none with the direct backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring: Option<split::RingState>,
    /// The forwarding worker that reads it (rx queues of an interface
    /// that is forwarded only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<usize>,
    /// Its counters.
    pub counters: Counters,
}

/// The data path's state, for `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct State {
    /// Backend.
    pub backend: Backend,
    /// Features the device offered.
    pub features_offered: u64,
    /// Features negotiated.
    pub features_negotiated: u64,
    /// A running pcap capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<capture::CaptureState>,
    /// What frames leaving through this interface may carry.
    pub offload_caps: crate::offload::Caps,
    /// Offload work done in software for frames leaving through it.
    pub offload: crate::offload::Stats,
    /// The forwarding plane's ledger, checked against the counters.
    #[serde(default)]
    pub accounting: Accounting,
    /// Rate limits in force, with what they did (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<limit::RateLimitState>,
    /// vhost-net only: how the kernel runs its workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost_worker_mode: Option<vhost::WorkerMode>,
    /// Rx queues.
    pub rx: Vec<QueueState>,
    /// Tx queues.
    pub tx: Vec<QueueState>,
}

#[derive(Debug)]
enum Running {
    Vhost(vhost::VhostNetBackend),
    User(user::UserspaceBackend),
    /// No backend: the queues use the tap fds themselves.
    Direct,
}

/// A running data path.
#[derive(Debug)]
pub struct DataPath {
    // Field order is drop order: the backend stops before the queues and
    // the arena they live in go away.
    running: Running,
    rx: Vec<engine::Rx>,
    tx: Vec<engine::Tx>,
    capture: Option<capture::Capture>,
    caps: crate::offload::Caps,
    offload: crate::offload::Stats,
    ledger: Ledger,
    offered: u64,
    backend: Backend,
    /// Rate limit of frames taken from the interface ([`limit`]).
    rx_limit: Option<limit::Limiter>,
    /// Rate limit and shaping queue of frames sent to it.
    tx_shaper: Option<limit::Shaper>,
    /// Frames dropped by tx shapers no longer in force (for the ledger).
    rate_limit_dropped: u64,
    /// The forwarding worker of each rx queue, as the forwarder said.
    rx_workers: Vec<Option<usize>>,
    _arena: Option<Arena>,
}

/// Arena bytes for `cfg`: rings, indirect tables, buffers, and slack.
fn arena_size(cfg: &Config) -> usize {
    let ring = |n: usize| 3 * 4096 + 16 * n + 8 * n + 2 * n;
    let rx = usize::from(cfg.rx_ring_size);
    let tx = usize::from(cfg.tx_ring_size);
    let per_rx = ring(rx) + rx * BUF_SIZE as usize + 4096;
    let per_tx = ring(tx)
        + if cfg.indirect {
            tx * split::MAX_INDIRECT * 16
        } else {
            0
        }
        + 2 * tx * BUF_SIZE as usize
        + 4096;
    usize::from(cfg.num_rx_queues) * per_rx + usize::from(cfg.num_tx_queues) * per_tx + 65536
}

impl DataPath {
    /// Lays out the queues and starts the backend on the tap queue fds (one
    /// per queue pair).
    pub fn start(cfg: &Config, taps: &[File]) -> Result<Self, Error> {
        match cfg.backend {
            Backend::Direct | Backend::IoUring => Self::start_direct(cfg, taps),
            Backend::VhostNet => Self::start_rings(cfg, taps, true),
            Backend::Userspace => Self::start_rings(cfg, taps, false),
            Backend::AfXdp | Backend::Vxlan => Err(Error::NotForTaps),
        }
    }

    /// Rings in an arena, served by vhost-net (`vhost`) or by the userspace
    /// backend.
    fn start_rings(cfg: &Config, taps: &[File], vhost: bool) -> Result<Self, Error> {
        let arena = Arena::new(arena_size(cfg))?;
        let offered = if vhost {
            vhost::probe_features(&arena)?
        } else {
            user::OFFERED
        };
        let features = vhost::negotiate(offered, cfg.event_idx)?;
        let event_idx = features & vhost::F_EVENT_IDX != 0;
        let rx = (0..cfg.num_rx_queues)
            .map(|_| RxQueue::new(&arena, cfg.rx_ring_size, event_idx))
            .collect::<Result<Vec<_>, _>>()?;
        let tx = (0..cfg.num_tx_queues)
            .map(|_| TxQueue::new(&arena, cfg.tx_ring_size, cfg.indirect, event_idx))
            .collect::<Result<Vec<_>, _>>()?;
        let rx_sides: Vec<_> = rx.iter().map(RxQueue::device_side).collect();
        let tx_sides: Vec<_> = tx.iter().map(TxQueue::device_side).collect();
        let running = if vhost {
            Running::Vhost(vhost::VhostNetBackend::start(
                &arena, features, taps, &rx_sides, &tx_sides,
            )?)
        } else {
            Running::User(user::UserspaceBackend::start(
                &arena, features, taps, &rx_sides, &tx_sides,
            )?)
        };
        drop((rx_sides, tx_sides));
        Ok(Self::assemble(
            cfg,
            running,
            rx.into_iter().map(engine::Rx::from).collect(),
            tx.into_iter().map(engine::Tx::Ring).collect(),
            offered,
            Some(arena),
        ))
    }

    /// The direct engine: queue `i` reads or writes tap fd `i` (modulo the
    /// fds there are: tx queues beyond them share, as with the backends).
    fn start_direct(cfg: &Config, taps: &[File]) -> Result<Self, Error> {
        Self::start_direct_shared(cfg, &direct::share_taps(taps)?)
    }

    /// The direct engine on fds the caller shares with it (the registry's
    /// own queue fds: no duplicate, one fd per queue in all).
    pub fn start_direct_shared(cfg: &Config, shared: &[Arc<File>]) -> Result<Self, Error> {
        let tap = |i: u16| {
            let i = usize::from(i);
            shared
                .get(i.checked_rem(shared.len()).unwrap_or(i))
                .cloned()
                .ok_or(direct::Error::NoTap(i))
        };
        let uring = cfg.backend == Backend::IoUring;
        let rx = (0..cfg.num_rx_queues)
            .map(|i| {
                let t = tap(i)?;
                let q = if uring {
                    direct::DirectRx::uring(t)?
                } else {
                    direct::DirectRx::new(t)
                };
                Ok(engine::Rx::from(q))
            })
            .collect::<Result<Vec<_>, direct::Error>>()?;
        let tx = (0..cfg.num_tx_queues)
            .map(|i| {
                let t = tap(i)?;
                let q = if uring {
                    direct::DirectTx::uring(t)?
                } else {
                    direct::DirectTx::new(t)
                };
                Ok(engine::Tx::Direct(q))
            })
            .collect::<Result<Vec<_>, direct::Error>>()?;
        Ok(Self::assemble(cfg, Running::Direct, rx, tx, 0, None))
    }

    /// A data path on host-uplink sockets (`AF_PACKET` with a virtio-net
    /// header of `hdr_len` bytes): queue pair `i` reads and writes socket
    /// `i`, with the direct engine.
    /// The sockets are shared, not duplicated: an uplink costs one fd per
    /// queue.
    pub fn start_sockets(shared: &[Arc<File>], hdr_len: usize) -> Self {
        let n = u16::try_from(shared.len()).unwrap_or(u16::MAX);
        let cfg = Config {
            rx_ring_size: 0,
            tx_ring_size: 0,
            num_rx_queues: n,
            num_tx_queues: n,
            event_idx: false,
            indirect: false,
            backend: Backend::Direct,
        };
        let rx = shared
            .iter()
            .map(|s| engine::Rx::from(direct::DirectRx::batched(s.clone(), hdr_len)))
            .collect();
        let tx = shared
            .iter()
            .map(|s| engine::Tx::Direct(direct::DirectTx::batched(s.clone(), hdr_len)))
            .collect();
        Self::assemble(&cfg, Running::Direct, rx, tx, 0, None)
    }

    /// A data path on XDP socket queues (an `af-xdp` host uplink): queue
    /// pair `i` is socket `i`'s rx and tx halves.
    pub fn start_xsk(queues: Vec<(xsk::XskRx, xsk::XskTx)>) -> Self {
        let n = u16::try_from(queues.len()).unwrap_or(u16::MAX);
        let cfg = Config {
            rx_ring_size: u16::try_from(xsk::RX_CHUNKS).unwrap_or(u16::MAX),
            tx_ring_size: u16::try_from(xsk::TX_CHUNKS).unwrap_or(u16::MAX),
            num_rx_queues: n,
            num_tx_queues: n,
            event_idx: false,
            indirect: false,
            backend: Backend::AfXdp,
        };
        let (rx, tx): (Vec<_>, Vec<_>) = queues
            .into_iter()
            .map(|(r, t)| (engine::Rx::from(r), engine::Tx::Xsk(t)))
            .unzip();
        Self::assemble(&cfg, Running::Direct, rx, tx, 0, None).complete_frames_only()
    }

    /// Ethernet frames with no offload metadata: an engine without a
    /// virtio-net header (XDP sockets, VXLAN datagrams) cannot carry it, so
    /// the offload layer segments and checksums every frame toward it.
    fn complete_frames_only(mut self) -> Self {
        self.caps = crate::offload::Caps {
            l2: true,
            ..crate::offload::Caps::default()
        };
        self
    }

    /// A data path on a VXLAN tunnel's queue pair.
    pub fn start_vxlan(rx: vxlan::VxlanRx, tx: vxlan::VxlanTx) -> Self {
        let cfg = Config {
            rx_ring_size: 0,
            tx_ring_size: 0,
            num_rx_queues: 1,
            num_tx_queues: 1,
            event_idx: false,
            indirect: false,
            backend: Backend::Vxlan,
        };
        let rx = vec![engine::Rx::from(rx)];
        let tx = vec![engine::Tx::Vxlan(tx)];
        Self::assemble(&cfg, Running::Direct, rx, tx, 0, None).complete_frames_only()
    }

    /// Times a queue reported its interface down or gone (host uplinks: the
    /// link went down, or the interface was deleted).
    pub fn link_down_events(&self) -> u64 {
        self.rx
            .iter()
            .map(engine::Rx::link_down_events)
            .sum::<u64>()
            + self
                .tx
                .iter()
                .map(engine::Tx::link_down_events)
                .sum::<u64>()
    }

    fn assemble(
        cfg: &Config,
        running: Running,
        rx: Vec<engine::Rx>,
        tx: Vec<engine::Tx>,
        offered: u64,
        arena: Option<Arena>,
    ) -> Self {
        Self {
            running,
            rx_workers: vec![None; rx.len()],
            rx,
            tx,
            capture: None,
            caps: crate::offload::Caps::default(),
            offload: crate::offload::Stats::default(),
            ledger: Ledger::default(),
            offered,
            backend: cfg.backend,
            rx_limit: None,
            tx_shaper: None,
            rate_limit_dropped: 0,
            _arena: arena,
        }
    }

    /// Receives up to `max` frames from rx queue `q`, whatever the rate
    /// limit ([`DataPath::rx_burst`] honours it).
    fn rx_burst_now(
        &mut self,
        q: usize,
        max: usize,
        mut f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, Error> {
        let rxq = self.rx.get_mut(q).ok_or(Error::NoQueue(q))?;
        let n = match self.capture.as_mut().filter(|c| c.wants(true)) {
            Some(cap) => rxq.rx_burst(max, |frame| {
                cap.write(&frame.to_vec());
                f(frame);
            })?,
            None => rxq.rx_burst(max, f)?,
        };
        self.capture_burst_done(n);
        Ok(n)
    }

    /// Sends frames on tx queue `q`; returns how many were queued.
    pub fn tx_burst(&mut self, q: usize, frames: &[TxFrame<'_>]) -> Result<usize, Error> {
        let txq = self.tx.get_mut(q).ok_or(Error::NoQueue(q))?;
        if let Some(cap) = self.capture.as_mut().filter(|c| c.wants(false)) {
            for fr in frames {
                cap.write(fr.data);
            }
        }
        let n = txq.tx_burst(frames)?;
        self.capture_burst_done(frames.len());
        Ok(n)
    }

    /// Sends frames on tx queue `q`, waiting up to `wait` for the device to
    /// make room when the ring or its buffers are full (a burst of segments
    /// cut in software can be far larger than the ring). What still does not
    /// fit then is counted as dropped. Returns how many were queued.
    fn tx_burst_wait_now(
        &mut self,
        q: usize,
        frames: &[TxFrame<'_>],
        wait: std::time::Duration,
    ) -> Result<usize, Error> {
        let txq = self.tx.get_mut(q).ok_or(Error::NoQueue(q))?;
        if let Some(cap) = self.capture.as_mut().filter(|c| c.wants(false)) {
            for fr in frames {
                cap.write(fr.data);
            }
        }
        let mut sent = 0;
        let mut rest = frames;
        let mut deadline = None;
        while !rest.is_empty() {
            let got = match txq.try_send(rest) {
                Ok(got) => got,
                Err(e) => {
                    // try_send counted what it could not queue.
                    self.capture_burst_done(frames.len());
                    return Err(e);
                }
            };
            sent += got.sent;
            rest = &rest[got.consumed..];
            if rest.is_empty() || got.consumed > 0 {
                deadline = None;
                continue;
            }
            let until = *deadline.get_or_insert_with(|| std::time::Instant::now() + wait);
            if std::time::Instant::now() >= until {
                txq.count_dropped(rest.len());
                break;
            }
            // The device (vhost-net or the backend thread) completes frames
            // without us; give it the CPU.
            std::thread::yield_now();
        }
        self.capture_burst_done(frames.len());
        Ok(sent)
    }

    /// After a burst that saw frames: hand the capture its records, end it
    /// if its count is reached or its reader is gone.
    fn capture_burst_done(&mut self, frames: usize) {
        if frames == 0 {
            return;
        }
        if let Some(cap) = self.capture.as_mut() {
            cap.flush();
            if cap.done() {
                let st = cap.state();
                tracing::info!(
                    frames = st.captured,
                    dropped = st.dropped,
                    "capture complete"
                );
                self.capture = None;
            }
        }
    }

    /// Starts a pcap capture; the returned stream carries it (see
    /// [`capture`]). A running capture whose reader is still there is
    /// replaced only by the caller's choice: check [`Self::running_capture`].
    pub fn start_capture(
        &mut self,
        direction: capture::Direction,
        count: Option<u64>,
        tun: bool,
    ) -> (capture::CaptureState, capture::Stream) {
        let (cap, stream) = capture::Capture::start(direction, count, tun);
        let st = cap.state().clone();
        self.capture = Some(cap);
        (st, stream)
    }

    /// Starts a capture unless one is still recording; refused with the
    /// frames that one has captured so far (a capture is stopped by its
    /// owner, never replaced under it).
    pub fn start_capture_exclusive(
        &mut self,
        direction: capture::Direction,
        count: Option<u64>,
        tun: bool,
    ) -> Result<capture::Stream, u64> {
        if let Some(running) = self.running_capture() {
            return Err(running.captured);
        }
        Ok(self.start_capture(direction, count, tun).1)
    }

    /// The capture still recording, if any (one that reached its count or
    /// whose reader went away is finished and does not count).
    pub fn running_capture(&self) -> Option<&capture::CaptureState> {
        self.capture
            .as_ref()
            .filter(|c| !c.done())
            .map(|c| c.state())
    }

    /// Stops the running capture (its stream ends); returns its state.
    pub fn stop_capture(&mut self) -> Option<capture::CaptureState> {
        self.capture.take().map(|c| c.state().clone())
    }

    /// Sets rx queue `q`'s mode.
    pub fn set_rx_mode(&mut self, q: usize, mode: RxMode) -> Result<(), Error> {
        self.rxq(q)?.set_mode(mode)
    }

    /// One burst on rx queue `q` in its mode: in interrupt mode (and in
    /// adaptive mode once idle) an empty burst sleeps up to `timeout_ms`.
    pub fn rx_burst_wait(
        &mut self,
        q: usize,
        max: usize,
        timeout_ms: i32,
        f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, Error> {
        self.rxq(q)?.rx_burst_wait(max, timeout_ms, f)
    }

    /// Sets what frames leaving through this interface may carry (from its
    /// offload mask; the registry keeps it in step with `TUNSETOFFLOAD`).
    pub fn set_offload_caps(&mut self, caps: crate::offload::Caps) {
        self.caps = caps;
    }

    /// What frames leaving through this interface may carry.
    pub fn offload_caps(&self) -> crate::offload::Caps {
        self.caps
    }

    /// The forwarding plane's ledger, to count into.
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// Adds the offload work a burst toward this interface needed.
    pub fn add_offload_stats(&mut self, s: &crate::offload::Stats) {
        self.offload.add(s);
    }

    /// Notes which forwarding worker reads rx queue `q`, for `show`.
    pub fn set_rx_worker(&mut self, q: usize, worker: Option<usize>) {
        if let Some(w) = self.rx_workers.get_mut(q) {
            *w = worker;
        }
    }

    /// Number of rx queues.
    pub fn num_rx(&self) -> usize {
        self.rx.len()
    }

    /// Number of tx queues.
    pub fn num_tx(&self) -> usize {
        self.tx.len()
    }

    fn rxq(&mut self, q: usize) -> Result<&mut engine::Rx, Error> {
        self.rx.get_mut(q).ok_or(Error::NoQueue(q))
    }

    /// Rx queue `q`'s mode.
    pub fn rx_mode(&self, q: usize) -> Result<RxMode, Error> {
        self.rx
            .get(q)
            .map(engine::Rx::mode)
            .ok_or(Error::NoQueue(q))
    }

    /// Makes rx queue `q`'s wait fd signal the next frame; `true` if frames
    /// are already waiting (then don't sleep). For waiting on many queues
    /// at once with [`DataPath::rx_wait_fd`].
    pub fn arm_rx(&mut self, q: usize) -> Result<bool, Error> {
        self.rxq(q)?.arm()
    }

    /// The fd that becomes readable when rx queue `q` has frames (after
    /// [`DataPath::arm_rx`]); -1, which `poll(2)` skips, when there is none.
    pub fn rx_wait_fd(&self, q: usize) -> Result<std::os::fd::RawFd, Error> {
        self.rx
            .get(q)
            .map(engine::Rx::wait_fd)
            .ok_or(Error::NoQueue(q))
    }

    /// Clears rx queue `q`'s signal after a wake-up.
    pub fn ack_rx(&self, q: usize) {
        if let Some(r) = self.rx.get(q) {
            r.ack();
        }
    }

    /// Blocks on rx queue `q` until the device signals or `timeout_ms` passes
    /// (interrupt mode).
    pub fn wait_rx(&mut self, q: usize, timeout_ms: i32) -> Result<(), Error> {
        self.rxq(q)?.wait(timeout_ms)
    }

    /// Rings, counters, features.
    pub fn state(&self) -> State {
        let (negotiated, vhost_worker_mode) = match &self.running {
            Running::Vhost(v) => (v.features(), Some(v.worker_mode())),
            Running::User(u) => (u.features(), None),
            Running::Direct => (0, None),
        };
        let tx_counters: Vec<Counters> = self.tx.iter().map(engine::Tx::counters).collect();
        State {
            accounting: self
                .ledger
                .account(&tx_counters, &self.offload, self.shaped_frames()),
            rate_limit: self.rate_limit_state(),
            backend: self.backend,
            features_offered: self.offered,
            features_negotiated: negotiated,
            capture: self.capture.as_ref().map(|c| c.state().clone()),
            offload_caps: self.caps,
            offload: self.offload,
            vhost_worker_mode,
            rx: self
                .rx
                .iter()
                .enumerate()
                .map(|(i, q)| QueueState {
                    mode: Some(q.mode()),
                    ring: q.ring_state(),
                    worker: self.rx_workers.get(i).copied().flatten(),
                    counters: q.counters(),
                })
                .collect(),
            tx: self
                .tx
                .iter()
                .map(|q| QueueState {
                    mode: None,
                    ring: q.ring_state(),
                    worker: None,
                    counters: q.counters(),
                })
                .collect(),
        }
    }
}
