//! The forwarding plane: worker threads that move frames between
//! interfaces' data paths: L2 cross-connects (VPP's `xconnect`) and L2
//! bridge domains (MAC learning with aging, flooding of unknown unicast and
//! broadcast).
//!
//! # Design
//!
//! A fixed pool of worker threads; each cross-connect is assigned to the
//! least loaded worker, which then pumps both directions: one rx burst (up to
//! 256 frames) from every rx queue of one side, sent as one tx burst on the
//! other side's queue of the same number (modulo its queue count). Frames keep
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
mod listing;
#[cfg(test)]
mod tests;
mod worker;

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
}

impl Error {
    /// This error's class, for status and exit codes.
    pub fn kind(&self) -> crate::kind::ErrorKind {
        use crate::kind::ErrorKind as K;
        match self {
            Error::Busy { .. }
            | Error::Attached { .. }
            | Error::BridgeExists(_)
            | Error::BridgeNotEmpty(_) => K::Conflict,
            Error::NotFound(_) | Error::NoBridge(_) | Error::NotAPort { .. } => K::NotFound,
            Error::Worker(_) => K::Internal,
            Error::SameInterface(_)
            | Error::Mismatch { .. }
            | Error::NoDataPath(_)
            | Error::BridgeName(_)
            | Error::MacLimit(_)
            | Error::PollWindow(_)
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
    /// The worker thread that moves frames from `a` to `b`.
    pub worker: usize,
    /// The worker that moves frames from `b` to `a`: another one when the
    /// pool has two or more (the directions run in parallel), else the same.
    #[serde(default)]
    pub reverse_worker: usize,
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
    Add(u32, SharedPort, SharedPort),
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
    xconnects: BTreeMap<u32, (End, End, [usize; 2])>,
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
                        worker::Worker::new(rx, theirs, window).run();
                    }
                })
                .map_err(Error::Worker)?;
            me.workers.push(WorkerHandle {
                tx,
                wake,
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

    /// The cross-connect `id` is part of, if any.
    pub fn involving(&self, id: u32) -> Option<Xconnect> {
        self.xconnects
            .values()
            .find(|(a, b, _)| a.id == id || b.id == id)
            .map(|(a, b, w)| Xconnect {
                a: a.name.clone(),
                b: b.name.clone(),
                worker: w[0],
                reverse_worker: w[1],
            })
    }

    /// Every cross-connect.
    pub fn list(&self) -> Vec<Xconnect> {
        self.xconnects
            .values()
            .map(|(a, b, w)| Xconnect {
                a: a.name.clone(),
                b: b.name.clone(),
                worker: w[0],
                reverse_worker: w[1],
            })
            .collect()
    }

    /// Cross-connects `a` and `b`.
    pub fn xconnect(&mut self, a: End, b: End) -> Result<Xconnect, Error> {
        if a.id == b.id {
            return Err(Error::SameInterface(a.name));
        }
        for end in [&a, &b] {
            if let Some(x) = self.involving(end.id) {
                let peer = if x.a == end.name { x.b } else { x.a };
                return Err(Error::Busy {
                    iface: end.name.clone(),
                    peer,
                });
            }
            if let Some(bd) = self.bridge_of(end.id) {
                return Err(Error::Attached {
                    iface: end.name.clone(),
                    what: format!("in bridge {bd}; remove it from the bridge first"),
                });
            }
        }
        if a.tun != b.tun {
            return Err(Error::Mismatch {
                a: a.name,
                b: b.name,
            });
        }
        let dpa = a
            .datapath
            .clone()
            .ok_or_else(|| Error::NoDataPath(a.name.clone()))?;
        let dpb = b
            .datapath
            .clone()
            .ok_or_else(|| Error::NoDataPath(b.name.clone()))?;
        let [ab, ba] = self.place_directions();
        let key = a.id.min(b.id);
        self.workers[ab].send(Cmd::Add(key, dpa.clone(), dpb.clone()));
        self.workers[ba].send(Cmd::Add(key, dpb, dpa));
        tracing::info!(a = %a.name, b = %b.name, worker = ab, reverse_worker = ba, "xconnect added");
        let x = Xconnect {
            a: a.name.clone(),
            b: b.name.clone(),
            worker: ab,
            reverse_worker: ba,
        };
        self.xconnects.insert(key, (a, b, [ab, ba]));
        Ok(x)
    }

    /// Removes the cross-connect interface `id` (named `name`) is part of;
    /// returns once its worker has stopped pumping it.
    pub fn remove(&mut self, id: u32, name: &str) -> Result<Xconnect, Error> {
        let key = self
            .xconnects
            .iter()
            .find(|(_, (a, b, _))| a.id == id || b.id == id)
            .map(|(k, _)| *k)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let (a, b, [ab, ba]) = self
            .xconnects
            .remove(&key)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let workers: &[usize] = if ab == ba { &[ab] } else { &[ab, ba] };
        for &w in workers {
            let (done_tx, done_rx) = mpsc::channel();
            self.workers[w].send(Cmd::Remove(key, done_tx));
            let _ = done_rx.recv();
        }
        tracing::info!(a = %a.name, b = %b.name, "xconnect removed");
        Ok(Xconnect {
            a: a.name,
            b: b.name,
            worker: ab,
            reverse_worker: ba,
        })
    }
}

impl Forwarder {
    /// Each worker's load: the cross-connect directions it pumps, and two
    /// for each bridge domain (a bridge moves frames every way).
    fn loads(&self) -> Vec<usize> {
        let mut load = vec![0; self.workers.len()];
        for (_, _, dirs) in self.xconnects.values() {
            for &w in dirs {
                load[w] += 1;
            }
        }
        for (_, w) in self.bridges.values() {
            load[*w] += 2;
        }
        load
    }

    fn least_loaded(&self) -> usize {
        let load = self.loads();
        (0..load.len()).min_by_key(|&w| load[w]).unwrap_or(0)
    }

    /// Workers for a new cross-connect's two directions: the least loaded
    /// (lowest index first on a tie) for both, or, when directions are
    /// split and there are two or more workers, the two least loaded.
    fn place_directions(&self) -> [usize; 2] {
        let load = self.loads();
        let mut order: Vec<usize> = (0..load.len()).collect();
        order.sort_by_key(|&w| (load[w], w));
        let first = order.first().copied().unwrap_or(0);
        let second = order.get(1).copied().filter(|_| self.split_directions);
        [first, second.unwrap_or(first)]
    }

    /// The bridge interface `id` is in, if any.
    pub fn bridge_of(&self, id: u32) -> Option<String> {
        self.bridges
            .iter()
            .find(|(_, (b, _))| lock_bd(b).ports.iter().any(|p| p.id == id))
            .map(|(n, _)| n.clone())
    }

    /// What `id` is attached to, in words, if anything.
    pub fn attachment(&self, id: u32) -> Option<String> {
        self.involving(id)
            .map(|x| {
                format!(
                    "cross-connected ({} <-> {}); remove the xconnect first",
                    x.a, x.b
                )
            })
            .or_else(|| {
                self.bridge_of(id)
                    .map(|b| format!("in bridge {b}; remove it from the bridge first"))
            })
    }

    fn shared_bridge(&self, name: &str) -> Result<(SharedBridge, usize), Error> {
        self.bridges
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NoBridge(name.to_string()))
    }

    /// Creates an empty bridge domain with the default learn limit.
    pub fn bridge_create(&mut self, name: &str) -> Result<BridgeInfo, Error> {
        self.bridge_create_with(name, None)
    }

    /// Creates an empty bridge domain that learns at most `mac_limit`
    /// addresses (default: [`Forwarder::default_mac_limit`]).
    pub fn bridge_create_with(
        &mut self,
        name: &str,
        mac_limit: Option<usize>,
    ) -> Result<BridgeInfo, Error> {
        check_bridge_name(name)?;
        let limit = mac_limit.unwrap_or(self.default_mac_limit);
        check_mac_limit(limit)?;
        if self.bridges.contains_key(name) {
            return Err(Error::BridgeExists(name.to_string()));
        }
        let bd = Arc::new(Mutex::new(BridgeDomain {
            name: name.to_string(),
            ports: Vec::new(),
            macs: MacTable::new(limit, MAC_AGING, self.clock.now()),
            clock: self.clock.clone(),
        }));
        let worker = self.least_loaded();
        self.workers[worker].send(Cmd::AddBridge(bd.clone()));
        self.bridges.insert(name.to_string(), (bd, worker));
        tracing::info!(bridge = name, worker, mac_limit = limit, "bridge created");
        self.bridge(name)
    }

    /// Adds interface `end` to bridge `name`.
    pub fn bridge_add(&mut self, name: &str, end: End) -> Result<BridgeInfo, Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        if end.tun {
            return Err(Error::BridgeTun {
                bridge: name.to_string(),
                iface: end.name,
            });
        }
        if let Some(what) = self.attachment(end.id) {
            return Err(Error::Attached {
                iface: end.name,
                what,
            });
        }
        let datapath = end
            .datapath
            .ok_or_else(|| Error::NoDataPath(end.name.clone()))?;
        lock_bd(&bd).ports.push(BridgePort {
            id: end.id,
            name: end.name.clone(),
            datapath,
            shg: end.split_horizon,
        });
        self.workers[worker].send(Cmd::Wake);
        tracing::info!(bridge = name, iface = %end.name, "bridge port added");
        self.bridge(name)
    }

    /// Removes interface `id` (named `iface`) from bridge `name`; once this
    /// returns the worker no longer pumps it.
    pub fn bridge_remove(&mut self, name: &str, id: u32, iface: &str) -> Result<BridgeInfo, Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        {
            // The worker pumps a bridge under this lock: once we hold it and
            // drop the port, the worker cannot touch the port again.
            let mut b = lock_bd(&bd);
            let Some(at) = b.ports.iter().position(|p| p.id == id) else {
                return Err(Error::NotAPort {
                    bridge: name.to_string(),
                    iface: iface.to_string(),
                });
            };
            b.ports.remove(at);
            b.macs.remove_port(at);
        }
        self.workers[worker].send(Cmd::Wake);
        tracing::info!(bridge = name, iface, "bridge port removed");
        self.bridge(name)
    }

    /// Deletes an empty bridge domain.
    pub fn bridge_delete(&mut self, name: &str) -> Result<(), Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        if !lock_bd(&bd).ports.is_empty() {
            return Err(Error::BridgeNotEmpty(name.to_string()));
        }
        let (done_tx, done_rx) = mpsc::channel();
        self.workers[worker].send(Cmd::RemoveBridge(name.to_string(), done_tx));
        let _ = done_rx.recv();
        self.bridges.remove(name);
        tracing::info!(bridge = name, "bridge deleted");
        Ok(())
    }

    /// One bridge domain, with its MAC table.
    pub fn bridge(&self, name: &str) -> Result<BridgeInfo, Error> {
        let (bd, worker) = self.shared_bridge(name)?;
        let b = lock_bd(&bd);
        let now = b.clock.now();
        let mut macs: Vec<MacEntry> = b
            .macs
            .entries(now)
            .filter(|(_, _, age)| *age < MAC_AGING)
            .filter_map(|(mac, port, age)| {
                Some(MacEntry {
                    mac: crate::MacAddr(mac).to_string(),
                    iface: b.ports.get(port)?.name.clone(),
                    age_s: age.as_secs(),
                })
            })
            .collect();
        macs.sort_by(|x, y| x.mac.cmp(&y.mac));
        Ok(BridgeInfo {
            name: b.name.clone(),
            interfaces: b.ports.iter().map(|p| p.name.clone()).collect(),
            macs,
            mac_limit: b.macs.limit(),
            learn_refused: b.macs.learn_refused(),
            worker,
        })
    }

    /// Every bridge domain.
    /// Every bridge domain.
    pub fn bridges(&self) -> Vec<BridgeInfo> {
        self.bridges
            .keys()
            .filter_map(|n| self.bridge(n).ok())
            .collect()
    }

    /// Removes every cross-connect (workers keep running, idle).
    pub fn clear(&mut self) {
        let ends: Vec<(u32, String)> = self
            .xconnects
            .values()
            .map(|(a, _, _)| (a.id, a.name.clone()))
            .collect();
        for (id, name) in ends {
            let _ = self.remove(id, &name);
        }
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
