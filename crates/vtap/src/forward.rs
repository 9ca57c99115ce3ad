//! The forwarding plane: worker threads that move frames between
//! interfaces' data paths. Today: L2 cross-connects (VPP's `xconnect`).
//!
//! # Design
//!
//! A fixed pool of worker threads; each cross-connect is assigned to the
//! least loaded worker, which then pumps both directions: one rx burst (up to
//! 256 frames) from every rx queue of one side, sent as one tx burst on the
//! other side's queue of the same number (modulo its queue count). Frames keep
//! their virtio-net header, so a GSO super-frame stays one frame from end to
//! end and checksum-partial frames stay partial — no segmentation or checksum
//! work unless a later offload layer must do it.
//!
//! A worker polls while frames keep coming; after [`IDLE_POLLS`] empty rounds
//! it arms every rx queue it serves (re-checking for frames that raced in) and
//! sleeps in `poll(2)` on their call eventfds and its own wake-up eventfd, so
//! an idle daemon uses no CPU. Control (add/remove) reaches a worker as a
//! message plus a wake-up; removal waits until the worker has let go, so an
//! interface is never deleted under a running pump.
//!
//! A data path is locked per burst, one side at a time: no two locks are ever
//! held together, so no lock order can deadlock.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::mpsc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::datapath::{TxFrame, VnetHdr, MAX_BURST};
use crate::registry::{lock, SharedDataPath};

/// Empty rounds a worker polls before it sleeps.
pub const IDLE_POLLS: u32 = 32;
/// Longest sleep (ms): a safety net, not a timer anything depends on.
const SLEEP_MS: i32 = 1000;

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
    /// A worker could not be started.
    #[error("cannot start a forwarding worker")]
    Worker(#[source] std::io::Error),
}

/// One end of a cross-connect.
#[derive(Clone, Debug)]
pub struct End {
    /// Interface id.
    pub id: u32,
    /// Data-plane name (`tap0`).
    pub name: String,
    /// L3 TUN.
    pub tun: bool,
    /// Its data path.
    pub datapath: Option<SharedDataPath>,
}

/// A cross-connect as `show` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xconnect {
    /// One end.
    pub a: String,
    /// The other.
    pub b: String,
    /// The worker thread that serves it.
    pub worker: usize,
}

enum Cmd {
    Add(u32, SharedDataPath, SharedDataPath),
    Remove(u32, mpsc::Sender<()>),
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
    xconnects: BTreeMap<u32, (End, End, usize)>,
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
        let mut me = Self {
            workers: Vec::new(),
            xconnects: BTreeMap::new(),
        };
        for i in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel();
            let wake = EventFd::new(EFD_NONBLOCK).map_err(Error::Worker)?;
            let theirs = wake.try_clone().map_err(Error::Worker)?;
            let join = std::thread::Builder::new()
                .name(format!("vtap-fwd{i}"))
                .spawn(move || Worker::new(rx, theirs).run())
                .map_err(Error::Worker)?;
            me.workers.push(WorkerHandle {
                tx,
                wake,
                join: Some(join),
            });
        }
        Ok(me)
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
                worker: *w,
            })
    }

    /// Every cross-connect.
    pub fn list(&self) -> Vec<Xconnect> {
        self.xconnects
            .values()
            .map(|(a, b, w)| Xconnect {
                a: a.name.clone(),
                b: b.name.clone(),
                worker: *w,
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
        let load = |w: usize| self.xconnects.values().filter(|x| x.2 == w).count();
        let worker = (0..self.workers.len())
            .min_by_key(|&w| load(w))
            .unwrap_or(0);
        let key = a.id.min(b.id);
        self.workers[worker].send(Cmd::Add(key, dpa, dpb));
        tracing::info!(a = %a.name, b = %b.name, worker, "xconnect added");
        let x = Xconnect {
            a: a.name.clone(),
            b: b.name.clone(),
            worker,
        };
        self.xconnects.insert(key, (a, b, worker));
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
        let (a, b, worker) = self
            .xconnects
            .remove(&key)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let (done_tx, done_rx) = mpsc::channel();
        self.workers[worker].send(Cmd::Remove(key, done_tx));
        let _ = done_rx.recv();
        tracing::info!(a = %a.name, b = %b.name, "xconnect removed");
        Ok(Xconnect {
            a: a.name,
            b: b.name,
            worker,
        })
    }
}

impl Forwarder {
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

struct Worker {
    rx: mpsc::Receiver<Cmd>,
    wake: EventFd,
    xcs: Vec<(u32, SharedDataPath, SharedDataPath)>,
    /// Frames of one burst, reused.
    frames: Vec<(VnetHdr, Vec<u8>)>,
}

impl Worker {
    fn new(rx: mpsc::Receiver<Cmd>, wake: EventFd) -> Self {
        Self {
            rx,
            wake,
            xcs: Vec::new(),
            frames: Vec::with_capacity(MAX_BURST),
        }
    }

    /// Applies pending commands; `false` on stop.
    fn commands(&mut self) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Add(key, a, b) => self.xcs.push((key, a, b)),
                Cmd::Remove(key, done) => {
                    self.xcs.retain(|x| x.0 != key);
                    let _ = done.send(());
                }
                Cmd::Stop => return false,
            }
        }
        true
    }

    fn run(mut self) {
        let mut idle = 0u32;
        loop {
            if !self.commands() {
                return;
            }
            let mut moved = 0;
            for i in 0..self.xcs.len() {
                let (a, b) = (self.xcs[i].1.clone(), self.xcs[i].2.clone());
                moved += self.pump(&a, &b) + self.pump(&b, &a);
            }
            if moved > 0 {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle >= IDLE_POLLS {
                self.sleep();
                idle = 0;
            }
        }
    }

    /// One burst from each rx queue of `src` to `dst`; returns frames moved.
    fn pump(&mut self, src: &SharedDataPath, dst: &SharedDataPath) -> usize {
        let nq = lock(src).num_rx();
        let mut moved = 0;
        for q in 0..nq {
            let frames = &mut self.frames;
            frames.clear();
            let got = lock(src).rx_burst(q, MAX_BURST, |f| {
                let hdr = VnetHdr {
                    num_buffers: 0,
                    ..f.hdr
                };
                frames.push((hdr, f.to_vec()));
            });
            if !matches!(got, Ok(n) if n > 0) {
                continue;
            }
            let burst: Vec<TxFrame<'_>> = self
                .frames
                .iter()
                .map(|(hdr, data)| TxFrame { hdr: *hdr, data })
                .collect();
            let mut d = lock(dst);
            let txq = q % d.num_tx().max(1);
            // Frames the ring cannot take are counted there as drops.
            let _ = d.tx_burst(txq, &burst);
            moved += burst.len();
        }
        moved
    }

    /// Arms every rx queue served and sleeps until one signals, a command
    /// arrives, or the safety timeout passes.
    fn sleep(&mut self) {
        let mut fds: Vec<(RawFd, libc::c_short)> = vec![(self.wake.as_raw_fd(), libc::POLLIN)];
        let mut pending = false;
        for (_, a, b) in &self.xcs {
            for dp in [a, b] {
                let mut d = lock(dp);
                for q in 0..d.num_rx() {
                    if let Ok(rxq) = d.rx_queue(q) {
                        pending |= rxq.arm().unwrap_or(true);
                        fds.push((rxq.call_fd(), libc::POLLIN));
                    }
                }
            }
        }
        if pending {
            return;
        }
        let mut rev = vec![0; fds.len()];
        let _ = crate::sys::poll(&fds, &mut rev, SLEEP_MS);
        let _ = self.wake.read();
        for (_, a, b) in &self.xcs {
            for dp in [a, b] {
                let mut d = lock(dp);
                for q in 0..d.num_rx() {
                    if let Ok(rxq) = d.rx_queue(q) {
                        rxq.ack();
                    }
                }
            }
        }
    }
}
