//! The forwarding plane: worker threads that move frames between
//! interfaces' data paths: L2 cross-connects (VPP's `xconnect`) and L2
//! bridge domains (MAC learning with aging, flooding of unknown unicast and
//! broadcast).
//!
//! # Design
//!
//! A fixed pool of worker threads; each rx queue of a cross-connected
//! interface is read by one worker (placed by load, queue pair by queue
//! pair, or by hand: [`xconnect`]'s module doc): one rx burst (up to 256
//! frames) at a time, sent as one tx burst on the other side's queue of the
//! same number (modulo its queue count). A bridge domain runs on one worker,
//! which reads every queue of its ports. Frames keep
//! their virtio-net header, so a GSO super-frame stays one frame from end to
//! end and checksum-partial frames stay partial where the egress interface
//! takes them; where it does not, [`crate::offload`] segments, completes
//! checksums, or (toward `gro-coalesce` interfaces) merges TCP runs, per
//! egress interface. A full egress ring is waited on briefly ([`TX_WAIT`])
//! before frames are dropped, since segmenting a burst multiplies it.
//!
//! A worker polls while frames keep coming; after [`IDLE_POLLS`] empty rounds
//! it arms every rx queue it serves (re-checking for frames that raced in) and
//! sleeps in `poll(2)` on their call eventfds and its own wake-up eventfd, so
//! an idle daemon uses no CPU. Control (add/remove) reaches a worker as a
//! message plus a wake-up; removal waits until the worker has let go, so an
//! interface is never deleted under a running pump.
//!
//! A data path is locked per burst, one side at a time. A bridge domain is
//! locked for a whole round by its worker, and its ports' data paths inside
//! that (always bridge, then data path; the control plane takes only one of
//! the two), so no lock order can deadlock.
//!
//! Every frame a worker takes is accounted for in the interface's
//! [`crate::datapath::Ledger`]: forwarded, or dropped under a named reason;
//! and every frame it sends is queued or counted as dropped by the egress
//! queue. `show` checks the balance ([`crate::datapath::Accounting`]).
//! The bridge's decisions (learning with a limit, aging, filtering,
//! flooding) are [`bridge::MacTable`]'s, with no I/O and an injectable
//! clock.

pub mod bridge;
mod domain;
mod listing;
#[cfg(test)]
mod tests;
mod worker;
mod xconnect;

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

pub use bridge::{
    Clock, Decision, MacTable, ManualClock, SystemClock, DEFAULT_MAC_LIMIT, MAC_AGING,
    MAX_MAC_LIMIT,
};

pub use crate::port::End;
pub use xconnect::RxPlacement;

use crate::datapath::MAX_BURST;
use crate::offload::{Egress, Frame};
use crate::port::{lock, Port, SharedPort};
use crate::wire::VnetHdr;

/// Empty rounds a worker polls before it sleeps when a queue it serves is
/// in adaptive rx mode.
pub const IDLE_POLLS: u32 = 32;
/// How long a worker keeps polling after it last moved a frame before it
/// may sleep (unless configured: `[forwarding] poll_window_us`). The reply
/// to a request usually comes back within tens of microseconds; polling
/// that long saves the wake-up it would cost, so a request/response pays
/// one wake-up instead of two. With no traffic the window never opens: an
/// idle daemon still sleeps.
pub const DEFAULT_POLL_WINDOW: Duration = Duration::from_micros(50);
/// The longest poll window that may be configured.
pub const MAX_POLL_WINDOW: Duration = Duration::from_millis(10);
/// Longest sleep (ms): a safety net, not a timer anything depends on.
const SLEEP_MS: i32 = 1000;
/// How long a worker waits for room on a full egress ring before it drops
/// the rest of a burst. Segmenting one burst of super-frames in software
/// can yield thousands of frames; the device drains a ring in microseconds.
const TX_WAIT: Duration = Duration::from_millis(2);

/// Why a forwarding operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Both ends are the same interface.
    #[error("xconnect {0}: an interface cannot be cross-connected with itself")]
    SameInterface(String),
    /// One end is already cross-connected.
    #[error("xconnect {iface}: already cross-connected with {peer}")]
    Busy {
        /// The interface.
        iface: String,
        /// Its current peer.
        peer: String,
    },
    /// The interface is already attached elsewhere.
    #[error("{iface}: {what}")]
    Attached {
        /// The interface.
        iface: String,
        /// Where, and what to do.
        what: String,
    },
    /// L2 and L3 ends.
    #[error("xconnect {a} {b}: a TAP (L2) and a TUN (L3) interface cannot be cross-connected")]
    Mismatch {
        /// One end.
        a: String,
        /// The other.
        b: String,
    },
    /// The interface runs without a data path.
    #[error("xconnect {0}: the interface has no data path")]
    NoDataPath(String),
    /// No cross-connect involves the interface.
    #[error("xconnect {0}: the interface is not cross-connected")]
    NotFound(String),
    /// A bridge domain name is malformed.
    #[error("bridge '{0}': a name is 1-32 letters, digits, '-' or '_'")]
    BridgeName(String),
    /// A learn limit out of range.
    #[error("mac-limit '{0}': must be in 1..={MAX_MAC_LIMIT}")]
    MacLimit(usize),
    /// A worker could not be pinned to its CPU.
    #[error("cpus: worker {worker} cannot run on CPU {cpu}")]
    Pin {
        /// The worker.
        worker: usize,
        /// The CPU.
        cpu: usize,
        /// What `sched_setaffinity` said.
        #[source]
        source: std::io::Error,
    },
    /// A poll window beyond [`MAX_POLL_WINDOW`].
    #[error("poll-window-us '{}': must be at most {} (10 ms)", .0.as_micros(), MAX_POLL_WINDOW.as_micros())]
    PollWindow(Duration),
    /// The bridge domain exists already.
    #[error("bridge '{0}': already exists")]
    BridgeExists(String),
    /// No such bridge domain.
    #[error("bridge '{0}': no such bridge")]
    NoBridge(String),
    /// The bridge domain still has interfaces.
    #[error("bridge '{0}': still has interfaces; remove them first")]
    BridgeNotEmpty(String),
    /// A TUN interface in a bridge.
    #[error("bridge {bridge}: {iface} is a TUN (L3) interface; a bridge takes TAP interfaces")]
    BridgeTun {
        /// The bridge.
        bridge: String,
        /// The interface.
        iface: String,
    },
    /// The interface is not in the bridge.
    #[error("bridge {bridge}: {iface} is not one of its interfaces")]
    NotAPort {
        /// The bridge.
        bridge: String,
        /// The interface.
        iface: String,
    },
    /// A worker could not be started.
    #[error("cannot start a forwarding worker")]
    Worker(#[source] std::io::Error),
    /// A worker index beyond the pool.
    #[error("worker {worker}: the forwarder has {workers} worker(s), numbered from 0")]
    NoSuchWorker {
        /// The index asked for.
        worker: usize,
        /// The pool's size.
        workers: usize,
    },
    /// An rx queue the interface does not have.
    #[error("queue {queue}: {iface} has {queues} rx queue(s), numbered from 0")]
    NoSuchQueue {
        /// The interface.
        iface: String,
        /// The queue asked for.
        queue: usize,
        /// Its rx queues.
        queues: usize,
    },
    /// The interface's queues cannot be placed.
    #[error("rx-placement {iface}: {why}")]
    NotPlaceable {
        /// The interface.
        iface: String,
        /// Why not.
        why: String,
    },
}

impl Error {
    /// This error's class, for status and exit codes.
    pub fn kind(&self) -> crate::kind::ErrorKind {
        use crate::kind::ErrorKind as K;
        match self {
            Error::Busy { .. }
            | Error::Attached { .. }
            | Error::BridgeExists(_)
            | Error::NotPlaceable { .. }
            | Error::BridgeNotEmpty(_) => K::Conflict,
            Error::NotFound(_) | Error::NoBridge(_) | Error::NotAPort { .. } => K::NotFound,
            Error::Worker(_) => K::Internal,
            Error::SameInterface(_)
            | Error::Mismatch { .. }
            | Error::NoDataPath(_)
            | Error::BridgeName(_)
            | Error::MacLimit(_)
            | Error::PollWindow(_)
            | Error::NoSuchWorker { .. }
            | Error::NoSuchQueue { .. }
            | Error::Pin { .. }
            | Error::BridgeTun { .. } => K::Invalid,
        }
    }
}

/// A cross-connect as `show` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Xconnect {
    /// One end.
    pub a: String,
    /// The other.
    pub b: String,
    /// The worker thread that moves frames from `a` to `b` (reads rx
    /// queue 0 of `a`).
    pub worker: usize,
    /// The worker that moves frames from `b` to `a` (rx queue 0 of `b`).
    #[serde(default)]
    pub reverse_worker: usize,
    /// The worker of every rx queue of both ends.
    #[serde(default)]
    pub rx_placement: Vec<RxPlacement>,
}

/// A bridge port: an interface's id, name and port.
struct BridgePort {
    id: u32,
    name: String,
    datapath: SharedPort,
    /// Split-horizon group (0: none); see [`End::split_horizon`].
    shg: u8,
}

/// Whether a bridge may send a frame that came in on a port of group
/// `from` out of a port of group `to`: not within one non-zero group.
pub fn split_horizon_allows(from: u8, to: u8) -> bool {
    from == 0 || from != to
}

/// A bridge domain: ports and the MAC table (address -> port index).
struct BridgeDomain {
    name: String,
    ports: Vec<BridgePort>,
    macs: MacTable,
    clock: Arc<dyn Clock>,
}

/// One learned address, for `show`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MacEntry {
    /// The address.
    pub mac: String,
    /// The interface it was last seen on.
    pub iface: String,
    /// Seconds since then.
    pub age_s: u64,
}

/// A bridge domain as `show` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BridgeInfo {
    /// Its name.
    pub name: String,
    /// Its interfaces.
    pub interfaces: Vec<String>,
    /// The MAC table.
    pub macs: Vec<MacEntry>,
    /// Most addresses it learns.
    pub mac_limit: usize,
    /// Addresses not learned because the table was at its limit (their
    /// frames were still flooded).
    pub learn_refused: u64,
    /// The worker thread that serves it.
    pub worker: usize,
}

type SharedBridge = Arc<Mutex<BridgeDomain>>;

fn lock_bd(b: &SharedBridge) -> std::sync::MutexGuard<'_, BridgeDomain> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

enum Cmd {
    /// Read these rx queues of the first port for cross-connect `key`,
    /// sending to the second.
    Add(u32, SharedPort, SharedPort, Vec<usize>),
    Remove(u32, mpsc::Sender<()>),
    AddBridge(SharedBridge),
    RemoveBridge(String, mpsc::Sender<()>),
    /// Re-read what is served (a bridge gained or lost a port).
    Wake,
    Stop,
}

struct WorkerHandle {
    tx: mpsc::Sender<Cmd>,
    wake: EventFd,
    /// Frames the worker has read (it adds; `worker_frames` reads).
    frames: Arc<std::sync::atomic::AtomicU64>,
    join: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.wake.write(1);
        }
    }
}

/// The forwarding plane.
pub struct Forwarder {
    workers: Vec<WorkerHandle>,
    /// Keyed by the lower id of the two ends.
    xconnects: BTreeMap<u32, xconnect::XcState>,
    /// Bridge domains by name, with their worker.
    bridges: BTreeMap<String, (SharedBridge, usize)>,
    /// The learn limit of bridges created without one.
    default_mac_limit: usize,
    clock: Arc<dyn Clock>,
    /// The workers' poll window in µs (shared: changed at run time).
    poll_window_us: Arc<std::sync::atomic::AtomicU64>,
    /// The CPU each worker is pinned to (empty: unpinned).
    cpus: Vec<usize>,
    /// Put a cross-connect's directions on two workers (when there are).
    split_directions: bool,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("workers", &self.workers.len())
            .field("xconnects", &self.list())
            .finish()
    }
}

/// The worker count for this machine: one per CPU beyond the first (which
/// the kernel side of the traffic needs), at least one.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

impl Forwarder {
    /// Starts `workers` worker threads (at least one).
    pub fn new(workers: usize) -> Result<Self, Error> {
        Self::with_clock(workers, Arc::new(SystemClock))
    }

    /// Starts `workers` worker threads whose bridges tell time by `clock`
    /// (tests of aging move it by hand).
    pub fn with_clock(workers: usize, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        Self::start(workers, clock, &[])
    }

    /// One worker per CPU of `cpus`, worker `i` pinned to `cpus[i]` (VPP's
    /// `corelist-workers`; `[forwarding] cpus`). A CPU this process may not
    /// run on is refused, and nothing is left running.
    pub fn pinned(cpus: &[usize]) -> Result<Self, Error> {
        Self::start(cpus.len(), Arc::new(SystemClock), cpus)
    }

    fn start(workers: usize, clock: Arc<dyn Clock>, cpus: &[usize]) -> Result<Self, Error> {
        let window = u64::try_from(DEFAULT_POLL_WINDOW.as_micros()).unwrap_or(u64::MAX);
        let mut me = Self {
            workers: Vec::new(),
            xconnects: BTreeMap::new(),
            bridges: BTreeMap::new(),
            default_mac_limit: DEFAULT_MAC_LIMIT,
            clock,
            poll_window_us: Arc::new(std::sync::atomic::AtomicU64::new(window)),
            cpus: Vec::new(),
            split_directions: false,
        };
        for i in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel();
            let wake = EventFd::new(EFD_NONBLOCK).map_err(Error::Worker)?;
            let theirs = wake.try_clone().map_err(Error::Worker)?;
            let window = me.poll_window_us.clone();
            let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = frames.clone();
            let cpu = cpus.get(i).copied();
            let (pinned_tx, pinned_rx) = mpsc::channel();
            let join = std::thread::Builder::new()
                .name(format!("vtap-fwd{i}"))
                .spawn(move || {
                    // Pinned before the first frame, and said so; a worker
                    // that cannot be pinned does not run.
                    let pinned = cpu.map_or(Ok(()), crate::sys::pin_thread_to_cpu);
                    let ok = pinned.is_ok();
                    let _ = pinned_tx.send(pinned);
                    if ok {
                        worker::Worker::new(rx, theirs, window, counted).run();
                    }
                })
                .map_err(Error::Worker)?;
            me.workers.push(WorkerHandle {
                tx,
                wake,
                frames,
                join: Some(join),
            });
            let pinned = pinned_rx
                .recv()
                .unwrap_or_else(|_| Err(std::io::Error::other("worker died")));
            if let (Some(cpu), Err(source)) = (cpu, pinned) {
                // Dropping `me` stops and joins the workers started so far.
                return Err(Error::Pin {
                    worker: i,
                    cpu,
                    source,
                });
            }
        }
        me.cpus = cpus.to_vec();
        Ok(me)
    }

    /// Sets the learn limit of bridges created without one
    /// (`[forwarding] mac_limit`).
    pub fn set_default_mac_limit(&mut self, limit: usize) -> Result<(), Error> {
        check_mac_limit(limit)?;
        self.default_mac_limit = limit;
        Ok(())
    }

    /// Sets how long workers keep polling after they last moved a frame
    /// (`[forwarding] poll_window_us`; zero: sleep at once, as before).
    pub fn set_poll_window(&mut self, window: Duration) -> Result<(), Error> {
        if window > MAX_POLL_WINDOW {
            return Err(Error::PollWindow(window));
        }
        let us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        self.poll_window_us
            .store(us, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether new cross-connects get a worker per direction (when the
    /// pool has two or more; `[forwarding] split_directions`). Off by
    /// default: measured on 2 vCPUs it loses (the second worker takes the
    /// CPU the kernel side of the traffic needs; docs/benchmarks.md).
    pub fn set_split_directions(&mut self, on: bool) {
        self.split_directions = on;
    }

    /// The CPU each worker is pinned to (empty: unpinned).
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// The workers' poll window.
    pub fn poll_window(&self) -> Duration {
        Duration::from_micros(
            self.poll_window_us
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// The learn limit of bridges created without one.
    pub fn default_mac_limit(&self) -> usize {
        self.default_mac_limit
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Frames each worker has read since it started.
    pub fn worker_frames(&self) -> Vec<u64> {
        self.workers
            .iter()
            .map(|w| w.frames.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }
}

/// A bridge name is 1-32 letters, digits, '-' or '_'.
pub fn check_bridge_name(name: &str) -> Result<(), Error> {
    let valid = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if valid {
        Ok(())
    } else {
        Err(Error::BridgeName(name.to_string()))
    }
}

fn check_mac_limit(limit: usize) -> Result<(), Error> {
    if (1..=MAX_MAC_LIMIT).contains(&limit) {
        Ok(())
    } else {
        Err(Error::MacLimit(limit))
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for w in &self.workers {
            w.send(Cmd::Stop);
        }
        for w in &mut self.workers {
            if let Some(j) = w.join.take() {
                let _ = j.join();
            }
        }
    }
}
