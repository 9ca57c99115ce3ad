//! A forwarding worker: one thread that pumps the cross-connects and bridge
//! domains it was given, polling while frames come and sleeping in `poll(2)`
//! on their rx wait fds when idle. Every frame it takes is entered in the
//! source port's ledger with its fate, under one lock.

use super::*;

pub(super) struct Worker {
    rx: mpsc::Receiver<Cmd>,
    wake: EventFd,
    /// Cross-connect directions and the rx queues of `from` this worker
    /// reads (the others are another worker's).
    xcs: Vec<Direction>,
    bds: Vec<SharedBridge>,
    /// Frames of one burst, reused.
    frames: Vec<Frame>,
    /// Segments, completed and merged frames of one burst, reused.
    egress: Egress,
    /// How long to keep polling after the last frame moved (µs).
    poll_window_us: Arc<std::sync::atomic::AtomicU64>,
    /// Ports this worker sent to whose tx rate limit holds frames back:
    /// drained every round until empty (kept here so that a round without
    /// rate limits locks no port for it).
    shaped: Vec<SharedPort>,
    /// Frames read, for `Forwarder::worker_frames`.
    frames_read: Arc<std::sync::atomic::AtomicU64>,
}

/// Frames from some rx queues of `from` to `to`, for cross-connect `key`.
struct Direction {
    key: u32,
    from: SharedPort,
    to: SharedPort,
    queues: Vec<usize>,
}

impl Worker {
    pub(super) fn new(
        rx: mpsc::Receiver<Cmd>,
        wake: EventFd,
        poll_window_us: Arc<std::sync::atomic::AtomicU64>,
        frames_read: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        Self {
            rx,
            wake,
            xcs: Vec::new(),
            bds: Vec::new(),
            frames: Vec::with_capacity(MAX_BURST),
            egress: Egress::default(),
            poll_window_us,
            shaped: Vec::new(),
            frames_read,
        }
    }

    /// Applies pending commands; `false` on stop.
    fn commands(&mut self) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::Add(key, from, to, queues) => self.xcs.push(Direction {
                    key,
                    from,
                    to,
                    queues,
                }),
                Cmd::Remove(key, done) => {
                    self.xcs.retain(|x| x.key != key);
                    let _ = done.send(());
                }
                Cmd::AddBridge(bd) => self.bds.push(bd),
                Cmd::RemoveBridge(name, done) => {
                    self.bds.retain(|b| lock_bd(b).name != name);
                    let _ = done.send(());
                }
                Cmd::Wake => {}
                Cmd::Stop => return false,
            }
        }
        true
    }

    pub(super) fn run(mut self) {
        let mut idle = 0u32;
        let mut last_moved = std::time::Instant::now();
        loop {
            if !self.commands() {
                return;
            }
            let mut moved = 0;
            for i in 0..self.xcs.len() {
                let x = &self.xcs[i];
                let (from, to) = (x.from.clone(), x.to.clone());
                for j in 0..self.xcs[i].queues.len() {
                    let q = self.xcs[i].queues[j];
                    moved += self.pump(&from, &to, q);
                }
            }
            for i in 0..self.bds.len() {
                let bd = self.bds[i].clone();
                moved += self.bridge_round(&mut lock_bd(&bd));
            }
            if moved > 0 {
                // Relaxed: a statistic, ordered with nothing.
                self.frames_read
                    .fetch_add(moved as u64, std::sync::atomic::Ordering::Relaxed);
            }
            moved += self.flush_shaped();
            if moved > 0 {
                idle = 0;
                last_moved = std::time::Instant::now();
                continue;
            }
            // The poll window: a reply is likely on its way; keep polling
            // rather than pay a wake-up for it. Relaxed: a changed window
            // needs no ordering with anything else, only to be seen soon.
            let window = self
                .poll_window_us
                .load(std::sync::atomic::Ordering::Relaxed);
            if last_moved.elapsed() < Duration::from_micros(window) {
                std::hint::spin_loop();
                continue;
            }
            idle += 1;
            match self.idle_rounds_before_sleep() {
                Some(n) if idle >= n => {
                    self.sleep();
                    idle = 0;
                }
                Some(_) => {}
                None => std::hint::spin_loop(),
            }
        }
    }

    /// One rx burst from queue `q` of `dp` into the frame buffers, which are
    /// kept across bursts (no allocation per frame once warm). Returns how
    /// many frames `self.frames[..n]` now holds: a burst that fails part-way
    /// still hands on what it read. The caller enters them in the ledger
    /// as received together with their fate, under one lock, so that the
    /// ledger balances at every instant.
    fn burst_from(&mut self, dp: &SharedPort, q: usize) -> usize {
        let frames = &mut self.frames;
        let mut used = 0;
        let mut d = lock(dp);
        let got = d.rx_burst(q, MAX_BURST, &mut |f| {
            if used == frames.len() {
                frames.push(Frame::default());
            }
            let out = &mut frames[used];
            out.hdr = VnetHdr {
                num_buffers: 0,
                ..f.hdr
            };
            f.into_vec(&mut out.data);
            used += 1;
        });
        if let Err(e) = got {
            d.ledger_mut().rx.burst_errors += 1;
            tracing::debug!(error = %e, queue = q, "rx burst failed");
        }
        used
    }

    /// Sends frames `select` of the current burst out of `d` on the tx queue
    /// that matches rx queue `q`: segmented, completed or coalesced as the
    /// egress interface's offloads require ([`crate::offload`]). Every frame
    /// is counted as offered; the queue counts each as sent or dropped.
    /// Returns whether the port's tx rate limit now holds frames back.
    fn send(
        &mut self,
        d: &mut dyn Port,
        q: usize,
        select: impl ExactSizeIterator<Item = usize>,
    ) -> bool {
        let caps = d.offload_caps();
        let input = &self.frames;
        d.ledger_mut().tx.offered += select.len() as u64;
        self.egress.prepare(&caps, input, select);
        let burst = self.egress.tx_frames(input);
        let txq = q % d.num_tx().max(1);
        if let Err(e) = d.tx_burst_wait(txq, &burst, TX_WAIT) {
            // The queue counted what it could not send (drop_io_error).
            d.ledger_mut().tx.burst_errors += 1;
            tracing::debug!(error = %e, queue = txq, "tx burst failed");
        }
        drop(burst);
        d.add_offload_stats(&self.egress.take_stats());
        d.tx_hold().is_some()
    }

    /// One burst from rx queue `q` of `src` to `dst`; returns frames moved.
    fn pump(&mut self, src: &SharedPort, dst: &SharedPort, q: usize) -> usize {
        let n = self.burst_from(src, q);
        if n == 0 {
            return 0;
        }
        {
            let mut s = lock(src);
            let l = &mut s.ledger_mut().rx;
            l.received += n as u64;
            l.forwarded += n as u64;
        }
        let mut d = lock(dst);
        if self.send(&mut *d, q, 0..n) {
            self.note_shaped(dst);
        }
        n
    }

    /// One round of a bridge: a burst from every port, each frame learned
    /// and forwarded (known unicast) or flooded (unknown unicast, broadcast,
    /// multicast) to every other port. Returns frames received.
    fn bridge_round(&mut self, bd: &mut BridgeDomain) -> usize {
        let now = bd.clock.now();
        bd.macs.sweep(now);
        let n = bd.ports.len();
        let mut received = 0;
        // For each egress port, the frames bound for it.
        let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
        for i in 0..n {
            let dp = bd.ports[i].datapath.clone();
            let nq = lock(&dp).num_rx();
            for q in 0..nq {
                let got = self.burst_from(&dp, q);
                if got == 0 {
                    continue;
                }
                received += got;
                out.iter_mut().for_each(Vec::clear);
                let mut rx = crate::datapath::ledger::RxLedger::default();
                let shg = bd.ports[i].shg;
                let allowed = |j: usize| split_horizon_allows(shg, bd.ports[j].shg);
                let flood_to = (0..n).filter(|&j| j != i && allowed(j)).count();
                for (k, Frame { data, .. }) in self.frames[..got].iter().enumerate() {
                    match bd.macs.decide(data, i, now) {
                        Decision::Forward(p) if p < n && !allowed(p) => {
                            rx.drop_split_horizon += 1;
                        }
                        Decision::Forward(p) => match out.get_mut(p) {
                            Some(o) => {
                                o.push(k);
                                rx.forwarded += 1;
                            }
                            None => rx.drop_no_port += 1,
                        },
                        Decision::Flood if flood_to > 0 => {
                            for (j, o) in out.iter_mut().enumerate() {
                                if j != i && allowed(j) {
                                    o.push(k);
                                }
                            }
                            rx.forwarded += 1;
                        }
                        Decision::Flood => rx.drop_no_port += 1,
                        Decision::Filter => rx.drop_filtered += 1,
                        Decision::Runt => rx.drop_runt += 1,
                    }
                }
                {
                    let mut src = lock(&dp);
                    let l = &mut src.ledger_mut().rx;
                    l.received += got as u64;
                    l.forwarded += rx.forwarded;
                    l.drop_no_port += rx.drop_no_port;
                    l.drop_filtered += rx.drop_filtered;
                    l.drop_runt += rx.drop_runt;
                    l.drop_split_horizon += rx.drop_split_horizon;
                }
                for (j, idx) in out.iter().enumerate().filter(|(_, idx)| !idx.is_empty()) {
                    let port = &bd.ports[j].datapath;
                    let mut d = lock(port);
                    if self.send(&mut *d, q, idx.iter().copied()) {
                        self.note_shaped(port);
                    }
                }
            }
        }
        received
    }

    /// Empty rounds before sleeping, from the rx modes of the queues served:
    /// any polling queue keeps the worker polling (`None`), any adaptive one
    /// gives [`IDLE_POLLS`], and interrupt-only queues sleep at once.
    fn idle_rounds_before_sleep(&self) -> Option<u32> {
        use crate::datapath::RxMode;
        let mut rounds = 1;
        for (dp, queues) in self.served() {
            let d = lock(&dp);
            for q in queues.iter(d.num_rx()) {
                match d.rx_mode(q) {
                    Ok(RxMode::Polling) => return None,
                    Ok(RxMode::Adaptive) => rounds = IDLE_POLLS,
                    _ => {}
                }
            }
        }
        Some(rounds)
    }

    /// Remembers that `port` holds frames back for its tx rate limit.
    fn note_shaped(&mut self, port: &SharedPort) {
        if !self.shaped.iter().any(|p| Arc::ptr_eq(p, port)) {
            self.shaped.push(port.clone());
        }
    }

    /// Sends what waits for tx tokens on the ports that hold frames back
    /// (forgetting those left with none); frames sent.
    fn flush_shaped(&mut self) -> usize {
        let mut sent = 0;
        self.shaped.retain(|p| {
            let mut d = lock(p);
            sent += d.flush_shaped();
            d.tx_hold().is_some()
        });
        sent
    }

    /// The soonest a port holding frames back for its tx rate limit may
    /// send again.
    fn tx_holds(&self) -> Option<Duration> {
        self.shaped.iter().filter_map(|p| lock(p).tx_hold()).min()
    }

    /// Every port this worker receives from, with the queues it reads.
    fn served(&self) -> Vec<(SharedPort, Queues<'_>)> {
        let mut all: Vec<(SharedPort, Queues<'_>)> = self
            .xcs
            .iter()
            .map(|x| (x.from.clone(), Queues::Some(&x.queues)))
            .collect();
        for bd in &self.bds {
            all.extend(
                lock_bd(bd)
                    .ports
                    .iter()
                    .map(|p| (p.datapath.clone(), Queues::All)),
            );
        }
        all
    }

    /// Arms every rx queue served and sleeps until one signals, a command
    /// arrives, tokens of a rate limit are due, or the safety timeout
    /// passes. A port whose rx limit holds it back is not armed (its fd
    /// would wake the worker at once): the sleep ends when its tokens are
    /// due instead.
    fn sleep(&mut self) {
        let mut fds: Vec<(RawFd, libc::c_short)> = vec![(self.wake.as_raw_fd(), libc::POLLIN)];
        let mut pending = false;
        let mut hold = self.tx_holds();
        let served = self.served();
        for (dp, queues) in &served {
            let mut d = lock(dp);
            if let Some(h) = d.rx_hold() {
                hold = Some(hold.map_or(h, |s| s.min(h)));
                continue;
            }
            for q in queues.iter(d.num_rx()) {
                pending |= d.arm_rx(q).unwrap_or(true);
                if let Ok(fd) = d.rx_wait_fd(q) {
                    fds.push((fd, libc::POLLIN));
                }
            }
        }
        if pending {
            return;
        }
        let timeout = hold.map_or(SLEEP_MS, |h| {
            // Whole milliseconds, rounded up, at least one.
            let ms = h.as_micros().div_ceil(1000).clamp(1, SLEEP_MS as u128);
            i32::try_from(ms).unwrap_or(SLEEP_MS)
        });
        let mut rev = vec![0; fds.len()];
        let _ = crate::sys::poll(&fds, &mut rev, timeout);
        let _ = self.wake.read();
        for (dp, queues) in &served {
            let d = lock(dp);
            for q in queues.iter(d.num_rx()) {
                d.ack_rx(q);
            }
        }
    }
}

/// The rx queues of a port a worker reads: some (a cross-connect's, placed
/// per queue) or all (a bridge port's).
enum Queues<'a> {
    Some(&'a [usize]),
    All,
}

impl Queues<'_> {
    /// The queues, of a port with `n` rx queues.
    fn iter(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        (0..n).filter(move |q| match self {
            Queues::Some(mine) => mine.contains(q),
            Queues::All => true,
        })
    }
}
