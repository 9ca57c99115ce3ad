//! Cross-connects on the workers, and which worker reads which rx queue.
//!
//! # Placement
//!
//! Work is handed out per rx queue, as VPP's `rx-placement` does: each rx
//! queue of each end is read by one worker, which sends what it reads on
//! the peer's tx queue of the same number. A new cross-connect's queue
//! pairs go to the least loaded workers in turn (the load of a worker is
//! the rx queues it reads, plus two per bridge domain), and queue `q` of
//! both ends goes to the same worker — VPP's `consistent-qp`: rx and tx
//! queue `q` of an interface are then served by one worker, and a flow,
//! which the kernel keeps on one queue of a multi-queue TAP, by one thread.
//! With `split_directions` the reverse direction of each pair goes to the
//! next least loaded worker instead (the directions run in parallel).
//!
//! `set_rx_placement` moves a queue pair by hand (VPP's `set interface
//! rx-placement`): the queue's workers are told to let go of the
//! cross-connect and the new set is started, so no frame is read by two
//! workers; frames that arrive meanwhile wait in the interface's queue.
//! A moved pair is marked `set`, so a daemon keeps it across restarts.
//!
//! One port is locked per burst, so two workers reading two queues of one
//! port take turns on that port's lock: what runs in parallel is one
//! worker's reads of one end with the other's writes to the other end, and
//! all the offload work.

use super::*;

/// Who reads one rx queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    /// The worker.
    pub(super) worker: usize,
    /// Placed by hand (`set_rx_placement`), not by load.
    pub(super) set: bool,
}

/// A cross-connect as the forwarder keeps it.
pub(super) struct XcState {
    pub(super) a: End,
    pub(super) b: End,
    /// The worker of each rx queue of `a` (frames `a` -> `b`).
    pub(super) a_rx: Vec<Slot>,
    /// The worker of each rx queue of `b` (frames `b` -> `a`).
    pub(super) b_rx: Vec<Slot>,
}

/// One rx queue's worker, as `show` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RxPlacement {
    /// The interface.
    pub iface: String,
    /// Its rx queue.
    pub queue: usize,
    /// The worker that reads it.
    pub worker: usize,
    /// Placed by hand (`vtap set IF rx-placement`), kept across restarts;
    /// else placed by load when the cross-connect was made.
    #[serde(default)]
    pub set: bool,
}

/// The least loaded worker other than `not` (the lowest index on a tie).
fn least(load: &[usize], not: Option<usize>) -> Option<usize> {
    (0..load.len())
        .filter(|&w| Some(w) != not)
        .min_by_key(|&w| (load[w], w))
}

/// Workers for the rx queues of a new cross-connect whose ends have `na`
/// and `nb` rx queues, given each worker's `load` (updated): queue pair
/// `q` goes to the least loaded worker (lowest index on a tie) for both
/// ends, or with `split` and two or more workers, `b`'s queue `q` to the
/// least loaded of the others.
pub(super) fn place(load: &mut [usize], na: usize, nb: usize, split: bool) -> [Vec<usize>; 2] {
    let (mut a, mut b) = (Vec::with_capacity(na), Vec::with_capacity(nb));
    for q in 0..na.max(nb) {
        let first = least(load, None).unwrap_or(0);
        if q < na {
            a.push(first);
            load[first] += 1;
        }
        if q < nb {
            let second = if split {
                least(load, Some(first)).unwrap_or(first)
            } else {
                first
            };
            b.push(second);
            load[second] += 1;
        }
    }
    [a, b]
}

impl XcState {
    fn show(&self) -> Xconnect {
        let side = |end: &End, slots: &[Slot]| {
            slots
                .iter()
                .enumerate()
                .map(|(queue, s)| RxPlacement {
                    iface: end.name.clone(),
                    queue,
                    worker: s.worker,
                    set: s.set,
                })
                .collect::<Vec<_>>()
        };
        let mut rx_placement = side(&self.a, &self.a_rx);
        rx_placement.extend(side(&self.b, &self.b_rx));
        Xconnect {
            a: self.a.name.clone(),
            b: self.b.name.clone(),
            worker: self.a_rx.first().map_or(0, |s| s.worker),
            reverse_worker: self.b_rx.first().map_or(0, |s| s.worker),
            rx_placement,
        }
    }

    /// Every worker that reads a queue of this cross-connect, once each.
    fn workers(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self
            .a_rx
            .iter()
            .chain(&self.b_rx)
            .map(|s| s.worker)
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    }

    fn ports(&self) -> Result<(SharedPort, SharedPort), Error> {
        let port = |e: &End| {
            e.datapath
                .clone()
                .ok_or_else(|| Error::NoDataPath(e.name.clone()))
        };
        Ok((port(&self.a)?, port(&self.b)?))
    }
}

impl Forwarder {
    /// The cross-connect `id` is part of, if any.
    pub fn involving(&self, id: u32) -> Option<Xconnect> {
        self.xconnects
            .values()
            .find(|x| x.a.id == id || x.b.id == id)
            .map(XcState::show)
    }

    /// Every cross-connect.
    pub fn list(&self) -> Vec<Xconnect> {
        self.xconnects.values().map(XcState::show).collect()
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
        let mut x = XcState {
            a,
            b,
            a_rx: Vec::new(),
            b_rx: Vec::new(),
        };
        let (dpa, dpb) = x.ports()?;
        let (na, nb) = (lock(&dpa).num_rx(), lock(&dpb).num_rx());
        let [wa, wb] = place(&mut self.loads(), na, nb, self.split_directions);
        let slot = |worker| Slot { worker, set: false };
        x.a_rx = wa.into_iter().map(slot).collect();
        x.b_rx = wb.into_iter().map(slot).collect();
        let key = x.a.id.min(x.b.id);
        self.start_xc(key, &x)?;
        let shown = x.show();
        tracing::info!(a = %shown.a, b = %shown.b, placement = ?shown.rx_placement, "xconnect added");
        self.xconnects.insert(key, x);
        Ok(shown)
    }

    /// Removes the cross-connect interface `id` (named `name`) is part of;
    /// returns once its workers have stopped pumping it.
    pub fn remove(&mut self, id: u32, name: &str) -> Result<Xconnect, Error> {
        let key = self
            .key_of(id)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        let x = self
            .xconnects
            .remove(&key)
            .ok_or_else(|| Error::NotFound(name.to_string()))?;
        self.stop_xc(key, &x);
        tracing::info!(a = %x.a.name, b = %x.b.name, "xconnect removed");
        Ok(x.show())
    }

    /// Moves rx queue `queue` of interface `id` (named `name`) to `worker`
    /// (VPP's `set interface rx-placement`). Unless directions are split,
    /// the peer's rx queue of the same number moves with it, so that rx
    /// and tx queue `queue` of both ends stay on one worker. Returns the
    /// cross-connect as it now is.
    pub fn set_rx_placement(
        &mut self,
        id: u32,
        name: &str,
        queue: usize,
        worker: usize,
    ) -> Result<Xconnect, Error> {
        if worker >= self.workers.len() {
            return Err(Error::NoSuchWorker {
                worker,
                workers: self.workers.len(),
            });
        }
        let Some(key) = self.key_of(id) else {
            let why = match self.bridge_of(id) {
                Some(bd) => format!(
                    "in bridge {bd}, whose worker serves all its ports (a bridge domain runs on one worker)"
                ),
                None => "not cross-connected: only a cross-connect's queues are placed".into(),
            };
            return Err(Error::NotPlaceable {
                iface: name.to_string(),
                why,
            });
        };
        let split = self.split_directions;
        let Some(mut x) = self.xconnects.remove(&key) else {
            return Err(Error::NotFound(name.to_string()));
        };
        let mut new = (x.a_rx.clone(), x.b_rx.clone());
        let (mine, theirs) = if x.a.id == id {
            (&mut new.0, &mut new.1)
        } else {
            (&mut new.1, &mut new.0)
        };
        let Some(slot) = mine.get_mut(queue) else {
            let queues = mine.len();
            self.xconnects.insert(key, x);
            return Err(Error::NoSuchQueue {
                iface: name.to_string(),
                queue,
                queues,
            });
        };
        let set = Slot { worker, set: true };
        *slot = set;
        if let Some(s) = theirs.get_mut(queue).filter(|_| !split) {
            *s = set;
        }
        let change = new.0.iter().chain(&new.1).map(|s| s.worker).ne(x
            .a_rx
            .iter()
            .chain(&x.b_rx)
            .map(|s| s.worker));
        if change {
            self.stop_xc(key, &x);
        }
        (x.a_rx, x.b_rx) = new;
        let started = if change {
            self.start_xc(key, &x)
        } else {
            Ok(())
        };
        let shown = x.show();
        self.xconnects.insert(key, x);
        started?;
        tracing::info!(iface = name, queue, worker, "rx placement set");
        Ok(shown)
    }

    /// Removes every cross-connect (workers keep running, idle).
    pub fn clear(&mut self) {
        let ends: Vec<(u32, String)> = self
            .xconnects
            .values()
            .map(|x| (x.a.id, x.a.name.clone()))
            .collect();
        for (id, name) in ends {
            let _ = self.remove(id, &name);
        }
    }

    fn key_of(&self, id: u32) -> Option<u32> {
        self.xconnects
            .iter()
            .find(|(_, x)| x.a.id == id || x.b.id == id)
            .map(|(k, _)| *k)
    }

    /// Hands each worker the rx queues it reads, and tells each port
    /// which worker reads which of its queues.
    fn start_xc(&self, key: u32, x: &XcState) -> Result<(), Error> {
        let (dpa, dpb) = x.ports()?;
        for (from, to, slots) in [(&dpa, &dpb, &x.a_rx), (&dpb, &dpa, &x.b_rx)] {
            for w in 0..self.workers.len() {
                let queues: Vec<usize> =
                    (0..slots.len()).filter(|&q| slots[q].worker == w).collect();
                if !queues.is_empty() {
                    self.workers[w].send(Cmd::Add(key, from.clone(), to.clone(), queues));
                }
            }
            let mut d = lock(from);
            for (q, s) in slots.iter().enumerate() {
                d.set_rx_worker(q, Some(s.worker));
            }
        }
        Ok(())
    }

    /// Takes the cross-connect from every worker that reads a queue of it;
    /// returns once none does.
    fn stop_xc(&self, key: u32, x: &XcState) {
        for w in x.workers() {
            let (done_tx, done_rx) = mpsc::channel();
            self.workers[w].send(Cmd::Remove(key, done_tx));
            let _ = done_rx.recv();
        }
        for (end, slots) in [(&x.a, &x.a_rx), (&x.b, &x.b_rx)] {
            if let Some(dp) = &end.datapath {
                let mut d = lock(dp);
                for q in 0..slots.len() {
                    d.set_rx_worker(q, None);
                }
            }
        }
    }

    /// Each worker's load: the cross-connect rx queues it reads, and two
    /// for each bridge domain (a bridge moves frames every way).
    pub(super) fn loads(&self) -> Vec<usize> {
        let mut load = vec![0; self.workers.len()];
        for x in self.xconnects.values() {
            for s in x.a_rx.iter().chain(&x.b_rx) {
                load[s.worker] += 1;
            }
        }
        for (_, w) in self.bridges.values() {
            load[*w] += 2;
        }
        load
    }

    pub(super) fn least_loaded(&self) -> usize {
        least(&self.loads(), None).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::place;

    /// (workers' loads, rx queues of a, of b, split) -> (workers of a's
    /// queues, of b's queues, loads after).
    #[test]
    fn queue_pairs_go_to_the_least_loaded_workers() {
        type Case = (
            Vec<usize>,
            usize,
            usize,
            bool,
            Vec<usize>,
            Vec<usize>,
            Vec<usize>,
        );
        let cases: Vec<Case> = vec![
            // One worker: everything on it.
            (vec![0], 1, 1, false, vec![0], vec![0], vec![2]),
            (vec![0], 2, 2, true, vec![0, 0], vec![0, 0], vec![4]),
            // Two workers, one queue: the pair together (consistent-qp)...
            (vec![0, 0], 1, 1, false, vec![0], vec![0], vec![2, 0]),
            // ... or split.
            (vec![0, 0], 1, 1, true, vec![0], vec![1], vec![1, 1]),
            // Two queues: pair 0 on worker 0, pair 1 on worker 1.
            (vec![0, 0], 2, 2, false, vec![0, 1], vec![0, 1], vec![2, 2]),
            // Worker 0 already busier: it gets the second pair.
            (vec![3, 0], 2, 2, false, vec![1, 1], vec![1, 1], vec![3, 4]),
            (
                vec![3, 0, 0],
                2,
                2,
                false,
                vec![1, 2],
                vec![1, 2],
                vec![3, 2, 2],
            ),
            // Ends with different queue counts.
            (
                vec![0, 0],
                4,
                1,
                false,
                vec![0, 1, 1, 0],
                vec![0],
                vec![3, 2],
            ),
            (vec![0, 0], 1, 3, false, vec![0], vec![0, 1, 1], vec![2, 2]),
            // Four workers, split, two pairs.
            (
                vec![0; 4],
                2,
                2,
                true,
                vec![0, 2],
                vec![1, 3],
                vec![1, 1, 1, 1],
            ),
        ];
        for (load, na, nb, split, wa, wb, after) in cases {
            let mut l = load.clone();
            let [a, b] = place(&mut l, na, nb, split);
            assert_eq!(
                (&a, &b, &l),
                (&wa, &wb, &after),
                "{load:?} {na} {nb} {split}"
            );
        }
    }
}
