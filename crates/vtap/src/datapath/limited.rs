//! A data path's rate limits in force ([`super::limit`] has the buckets
//! and why frames wait where they do): rx bursts that stop when the rx
//! bucket is empty, tx bursts whose excess waits in the shaping queue, the
//! queue's drain, and what a forwarding worker needs to sleep until tokens
//! are due instead of spinning.

use std::time::{Duration, Instant};

use super::limit::{Direction, Error as LimitError, LimitOptions, Limiter, RateLimitState, Shaper};
use super::{DataPath, Error, RxFrame};
use crate::wire::TxFrame;

impl DataPath {
    /// Receives up to `max` frames from rx queue `q`: all at once when rx is
    /// unlimited, else one at a time while the rx bucket has tokens (none
    /// when it is empty: the frames wait in the kernel's queue).
    pub fn rx_burst(
        &mut self,
        q: usize,
        max: usize,
        mut f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, Error> {
        let now = Instant::now();
        let Some(l) = self.rx_limit.as_mut() else {
            return self.rx_burst_now(q, max, f);
        };
        if !l.ready(now) {
            l.counters.throttled += 1;
            return Ok(0);
        }
        let mut n = 0;
        while n < max {
            let mut len = 0;
            let got = self.rx_burst_now(q, 1, |fr| {
                len = fr.len();
                f(fr);
            })?;
            let Some(l) = self.rx_limit.as_mut().filter(|_| got > 0) else {
                break;
            };
            l.take(len);
            n += 1;
            if !l.ready(now) {
                break;
            }
        }
        Ok(n)
    }

    /// Sends frames on tx queue `q`, waiting up to `wait` for ring room;
    /// what does not fit then is counted as dropped. Under a tx rate limit,
    /// the frames the bucket does not cover now wait in the shaping queue
    /// (behind any already waiting, so order holds). Returns how many were
    /// handed to the ring now.
    pub fn tx_burst_wait(
        &mut self,
        q: usize,
        frames: &[TxFrame<'_>],
        wait: Duration,
    ) -> Result<usize, Error> {
        let Some(sh) = self.tx_shaper.as_mut() else {
            return self.tx_burst_wait_now(q, frames, wait);
        };
        if q >= self.tx.len() {
            return Err(Error::NoQueue(q));
        }
        let now = Instant::now();
        let mut go = 0;
        if sh.is_empty() {
            while go < frames.len() && sh.limiter.ready(now) {
                sh.limiter.take(frames[go].data.len());
                go += 1;
            }
        }
        for fr in &frames[go..] {
            sh.hold(q, fr.hdr, fr.data);
        }
        if go == 0 {
            return Ok(0);
        }
        self.tx_burst_wait_now(q, &frames[..go], wait)
    }

    /// Sends the waiting frames whose tokens are due; returns how many went.
    /// A full ring leaves the rest waiting (the next round tries again).
    pub fn flush_shaped(&mut self) -> usize {
        let Self {
            tx_shaper: Some(sh),
            tx,
            capture,
            ..
        } = self
        else {
            return 0;
        };
        let now = Instant::now();
        let mut sent = 0;
        let mut tried = 0;
        while let Some(h) = sh.next_due(now) {
            let Some(txq) = tx.get_mut(h.queue) else {
                sh.pop();
                continue;
            };
            let frame = TxFrame {
                hdr: h.hdr,
                data: &h.data,
            };
            match txq.try_send(std::slice::from_ref(&frame)) {
                Ok(got) if got.consumed == 0 => break,
                Ok(got) => sent += got.sent,
                // try_send counted it (drop_io_error).
                Err(_) => {}
            }
            if let Some(cap) = capture.as_mut().filter(|c| c.wants(false)) {
                cap.write(frame.data);
            }
            tried += 1;
            sh.pop();
        }
        self.capture_burst_done(tried);
        sent
    }

    /// How long rx must wait for tokens; `None` when it may read now (or
    /// is unlimited). A worker does not poll a held queue meanwhile.
    pub fn rx_hold(&mut self) -> Option<Duration> {
        let l = self.rx_limit.as_mut()?;
        (!l.ready(Instant::now())).then(|| l.wait())
    }

    /// How long until a waiting tx frame may go; `None` when none waits.
    /// A frame that may go now but found the ring full is retried after
    /// a millisecond.
    pub fn tx_hold(&mut self) -> Option<Duration> {
        let sh = self.tx_shaper.as_mut().filter(|s| !s.is_empty())?;
        let ready = sh.limiter.ready(Instant::now());
        Some(if ready {
            Duration::from_millis(1)
        } else {
            sh.limiter.wait()
        })
    }

    /// Sets (or, with `None`, lifts) the rate limit of one direction. The
    /// counters carry over a change; frames waiting when a tx limit is
    /// lifted go out at once.
    pub fn set_rate_limit(
        &mut self,
        dir: Direction,
        opts: Option<&LimitOptions>,
    ) -> Result<(), LimitError> {
        let now = Instant::now();
        let fresh = opts.map(|o| Limiter::new(o, now)).transpose()?;
        match dir {
            Direction::Rx => {
                let counters = self.rx_limit.as_ref().map(|l| l.counters);
                self.rx_limit = fresh.map(|mut l| {
                    l.counters = counters.unwrap_or_default();
                    l
                });
            }
            Direction::Tx => match (fresh, self.tx_shaper.as_mut()) {
                (Some(mut l), Some(sh)) => {
                    l.counters = sh.limiter.counters;
                    sh.limiter = l;
                }
                (Some(l), None) => self.tx_shaper = Some(Shaper::new(l)),
                (None, _) => self.lift_tx_limit(),
            },
        }
        Ok(())
    }

    /// Removes the tx shaper; its waiting frames go out now.
    fn lift_tx_limit(&mut self) {
        let Some(mut sh) = self.tx_shaper.take() else {
            return;
        };
        let held = sh.take_all();
        self.rate_limit_dropped += sh.limiter.counters.drop_rate_limit;
        for h in held {
            let frame = TxFrame {
                hdr: h.hdr,
                data: &h.data,
            };
            // Counted by the queue, sent or dropped.
            let _ = self.tx_burst_wait_now(h.queue, &[frame], Duration::from_millis(2));
        }
    }

    /// Frames a tx limit holds now or has dropped (for the ledger).
    pub(super) fn shaped_frames(&self) -> u64 {
        let now = self
            .tx_shaper
            .as_ref()
            .map_or(0, |s| s.len() as u64 + s.limiter.counters.drop_rate_limit);
        now + self.rate_limit_dropped
    }

    /// The limits in force with their counters, if any.
    pub fn rate_limit_state(&self) -> Option<RateLimitState> {
        let st = RateLimitState {
            rx: self.rx_limit.as_ref().map(Limiter::state),
            tx: self.tx_shaper.as_ref().map(|s| s.limiter.state()),
        };
        (st.rx.is_some() || st.tx.is_some()).then_some(st)
    }
}
