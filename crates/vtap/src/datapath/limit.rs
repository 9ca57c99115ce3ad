//! Rate limits per interface and direction: token buckets of bytes and of
//! packets, as firecracker puts on its taps (size, one-time burst, refill),
//! changeable at run time.
//!
//! # Where a limited frame waits
//!
//! - **rx** (frames vtap takes from the interface): a limited interface is
//!   simply read less. Frames wait in the kernel's queue of the interface
//!   (a tap's `txqueuelen`), which pushes back on the sender as a full
//!   qdisc does; what the kernel drops there never entered vtap. The
//!   forwarding worker stops polling the queue until tokens are due.
//! - **tx** (frames vtap sends to the interface): frames over the limit wait
//!   in a shaping queue of the interface's own, in order, drained as tokens
//!   come; the queue holds `burst + 25 ms` of the byte rate (the latency the
//!   CNI `bandwidth` plugin gives the kernel's TBF), and a frame that does
//!   not fit is dropped and counted `drop_rate_limit`. So a limited tx
//!   behaves like TBF, not like a policer: TCP sees delay before loss.
//!
//! # The buckets
//!
//! A bucket holds at most `burst` tokens and gains `rate` per second. A
//! frame may go while the bucket holds any tokens and takes its whole size,
//! which may leave the bucket in debt (negative): so a frame larger than
//! the burst (a 64 KB GSO super-frame) is never stuck, and the average
//! rate is exact; the debt is paid before the next frame goes. The
//! one-time burst is spent first and never refilled.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::wire::VnetHdr;

/// Default burst: this much of the rate (and at least [`MIN_BURST`]).
pub const DEFAULT_BURST: Duration = Duration::from_millis(20);
/// Least default byte burst: one 64 KB super-frame.
pub const MIN_BURST: u64 = 65_536;
/// Least default packet burst.
pub const MIN_PACKET_BURST: u64 = 32;
/// How long the tx shaping queue may delay a frame at the byte rate,
/// beyond the burst (the CNI `bandwidth` plugin's TBF latency).
pub const QUEUE_LATENCY: Duration = Duration::from_millis(25);
/// Most frames the tx shaping queue holds.
pub const QUEUE_FRAMES: usize = 4096;

/// Which way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Direction {
    /// Frames vtap takes from the interface.
    Rx,
    /// Frames vtap sends to the interface.
    Tx,
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "rx" => Ok(Self::Rx),
            "tx" => Ok(Self::Tx),
            other => Err(format!("direction '{other}': rx or tx")),
        }
    }
}

/// One direction's limit, as users give it. Absent rates are unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitOptions {
    /// Bytes per second (frame bytes, without the virtio-net header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    /// The byte bucket's size (default: 20 ms of the rate, at least 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Bytes that may go once, beyond the rate, before it applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_burst: Option<u64>,
    /// Frames per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_per_sec: Option<u64>,
    /// The packet bucket's size (default: 20 ms of the rate, at least 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_burst: Option<u64>,
}

/// Both directions' limits, as users give them (absent: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimits {
    /// Frames vtap takes from the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx: Option<LimitOptions>,
    /// Frames vtap sends to the interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<LimitOptions>,
}

impl RateLimits {
    /// Checks both directions; the error names the direction.
    pub fn check(&self) -> Result<(), String> {
        for (dir, l) in [("rx", &self.rx), ("tx", &self.tx)] {
            if let Some(l) = l {
                l.effective().map_err(|e| format!("{dir}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The limits a data path has in force.
    pub fn from_state(st: &RateLimitState) -> Self {
        Self {
            rx: st.rx.map(|l| l.limit),
            tx: st.tx.map(|l| l.limit),
        }
    }

    /// The direction's limit.
    pub fn get(&self, dir: Direction) -> Option<&LimitOptions> {
        match dir {
            Direction::Rx => self.rx.as_ref(),
            Direction::Tx => self.tx.as_ref(),
        }
    }
}

/// Why a limit is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Error {
    /// The field.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> Error {
    Error {
        field,
        reason: reason.into(),
    }
}

/// `rate × DEFAULT_BURST`, at least `least`.
fn default_burst(rate: u64, least: u64) -> u64 {
    let share = u128::from(rate) * DEFAULT_BURST.as_micros() / 1_000_000;
    u64::try_from(share).unwrap_or(u64::MAX).max(least)
}

impl LimitOptions {
    /// Checks it and fills in the default bursts: what is in force.
    pub fn effective(&self) -> Result<Self, Error> {
        let rates = [
            ("bytes-per-sec", self.bytes_per_sec),
            ("packets-per-sec", self.packets_per_sec),
        ];
        if rates.iter().all(|(_, r)| r.is_none()) {
            return Err(refuse(
                "bytes-per-sec",
                "give bytes-per-sec, packets-per-sec or both",
            ));
        }
        for (field, r) in rates {
            if r == Some(0) {
                return Err(refuse(field, "must be at least 1"));
            }
        }
        let bursts = [
            ("burst", self.burst, self.bytes_per_sec),
            ("packet-burst", self.packet_burst, self.packets_per_sec),
        ];
        for (field, burst, rate) in bursts {
            match (burst, rate) {
                (Some(0), _) => return Err(refuse(field, "must be at least 1")),
                (Some(_), None) => return Err(refuse(field, "has no rate to go with it")),
                _ => {}
            }
        }
        if self.one_time_burst.is_some() && self.bytes_per_sec.is_none() {
            return Err(refuse("one-time-burst", "needs bytes-per-sec"));
        }
        Ok(Self {
            burst: self
                .bytes_per_sec
                .map(|r| self.burst.unwrap_or_else(|| default_burst(r, MIN_BURST))),
            packet_burst: self.packets_per_sec.map(|r| {
                self.packet_burst
                    .unwrap_or_else(|| default_burst(r, MIN_PACKET_BURST))
            }),
            ..*self
        })
    }
}

/// A token bucket; tokens may go negative (debt).
#[derive(Debug, Clone)]
struct Bucket {
    rate: u64,
    size: i128,
    tokens: i128,
    one_time: u64,
    /// Time credited up to.
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, size: u64, one_time: u64, now: Instant) -> Self {
        Self {
            rate,
            size: i128::from(size),
            tokens: i128::from(size),
            one_time,
            last: now,
        }
    }

    /// Credits the tokens due since `last`, never beyond the size; keeps
    /// the remainder of a partial token (the clock is advanced only by the
    /// time the credited tokens took).
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        let due = elapsed * u128::from(self.rate) / 1_000_000_000;
        if due == 0 {
            return;
        }
        let due = i128::try_from(due).unwrap_or(i128::MAX);
        if self.tokens.saturating_add(due) >= self.size {
            self.tokens = self.size;
            self.last = now;
            return;
        }
        self.tokens += due;
        let took = u128::try_from(due).unwrap_or(0) * 1_000_000_000 / u128::from(self.rate);
        self.last += Duration::from_nanos(u64::try_from(took).unwrap_or(u64::MAX));
    }

    fn ready(&self) -> bool {
        self.tokens > 0 || self.one_time > 0
    }

    fn take(&mut self, n: u64) {
        let from_burst = n.min(self.one_time);
        self.one_time -= from_burst;
        self.tokens -= i128::from(n - from_burst);
    }

    /// Until the bucket holds a token again.
    fn wait(&self) -> Duration {
        if self.ready() {
            return Duration::ZERO;
        }
        let missing = u128::try_from(1 - self.tokens).unwrap_or(0);
        let ns = missing * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// What a limit did, for `show` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitCounters {
    /// Frames let through.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Rx: times the interface was not read because the bucket was empty.
    pub throttled: u64,
    /// Tx: frames that waited in the shaping queue.
    pub delayed: u64,
    /// Tx: frames dropped because the shaping queue was full.
    pub drop_rate_limit: u64,
    /// Tx: frames waiting in the shaping queue now.
    pub queued: u64,
}

/// One direction's limit in force, with its counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitState {
    /// The limit, default bursts filled in.
    pub limit: LimitOptions,
    /// What it did.
    pub counters: LimitCounters,
}

/// Both directions (`null`: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitState {
    /// Frames vtap takes from the interface.
    pub rx: Option<LimitState>,
    /// Frames vtap sends to the interface.
    pub tx: Option<LimitState>,
}

/// One direction's buckets.
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: LimitOptions,
    bytes: Option<Bucket>,
    packets: Option<Bucket>,
    /// What it did.
    pub counters: LimitCounters,
}

impl Limiter {
    /// A limiter for `opts` (checked), full buckets.
    pub fn new(opts: &LimitOptions, now: Instant) -> Result<Self, Error> {
        let limit = opts.effective()?;
        let bucket = |rate: Option<u64>, size: Option<u64>, once: u64| {
            rate.map(|r| Bucket::new(r, size.unwrap_or(1), once, now))
        };
        Ok(Self {
            bytes: bucket(
                limit.bytes_per_sec,
                limit.burst,
                limit.one_time_burst.unwrap_or(0),
            ),
            packets: bucket(limit.packets_per_sec, limit.packet_burst, 0),
            limit,
            counters: LimitCounters::default(),
        })
    }

    /// Whether a frame may go now.
    pub fn ready(&mut self, now: Instant) -> bool {
        let mut ok = true;
        for b in [&mut self.bytes, &mut self.packets].into_iter().flatten() {
            b.refill(now);
            ok &= b.ready();
        }
        ok
    }

    /// Takes one frame of `len` bytes.
    pub fn take(&mut self, len: usize) {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        if let Some(b) = &mut self.bytes {
            b.take(len);
        }
        if let Some(p) = &mut self.packets {
            p.take(1);
        }
        self.counters.frames += 1;
        self.counters.bytes += len;
    }

    /// Until a frame may go (zero: now).
    pub fn wait(&self) -> Duration {
        [&self.bytes, &self.packets]
            .into_iter()
            .flatten()
            .map(Bucket::wait)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// What the tx shaping queue holds at most, in bytes.
    fn queue_bytes(&self) -> u64 {
        let latency = self.limit.bytes_per_sec.map_or(0, |r| {
            u64::try_from(u128::from(r) * QUEUE_LATENCY.as_micros() / 1_000_000).unwrap_or(u64::MAX)
        });
        (self.limit.burst.unwrap_or(0) + latency).max(MIN_BURST)
    }

    /// Its state for `show`.
    pub fn state(&self) -> LimitState {
        LimitState {
            limit: self.limit,
            counters: self.counters,
        }
    }
}

/// A frame waiting in the tx shaping queue.
#[derive(Debug)]
pub struct Held {
    /// The tx queue it is for.
    pub queue: usize,
    /// Its header.
    pub hdr: VnetHdr,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The tx direction: its limiter and the frames waiting for tokens.
#[derive(Debug)]
pub struct Shaper {
    /// The buckets.
    pub limiter: Limiter,
    held: VecDeque<Held>,
    held_bytes: u64,
    /// Buffers of frames sent, reused.
    spare: Vec<Vec<u8>>,
}

impl Shaper {
    /// A shaper with an empty queue.
    pub fn new(limiter: Limiter) -> Self {
        Self {
            limiter,
            held: VecDeque::new(),
            held_bytes: 0,
            spare: Vec::new(),
        }
    }

    /// Whether frames wait.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Queues a frame behind those waiting; `false` (and counted
    /// `drop_rate_limit`) when the queue is full.
    pub fn hold(&mut self, queue: usize, hdr: VnetHdr, data: &[u8]) -> bool {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let full = self.held.len() >= QUEUE_FRAMES
            || (!self.held.is_empty() && self.held_bytes + len > self.limiter.queue_bytes());
        if full {
            self.limiter.counters.drop_rate_limit += 1;
            return false;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        self.held.push_back(Held {
            queue,
            hdr,
            data: buf,
        });
        self.held_bytes += len;
        self.limiter.counters.delayed += 1;
        self.limiter.counters.queued = self.held.len() as u64;
        true
    }

    /// The first waiting frame, if it may go now (its tokens are taken).
    pub fn next_due(&mut self, now: Instant) -> Option<&Held> {
        if self.held.is_empty() || !self.limiter.ready(now) {
            return None;
        }
        self.held.front()
    }

    /// Removes the first waiting frame (sent or dropped by the queue) and
    /// takes its tokens.
    pub fn pop(&mut self) {
        if let Some(h) = self.held.pop_front() {
            let len = h.data.len();
            self.held_bytes -= len as u64;
            self.limiter.take(len);
            self.limiter.counters.queued = self.held.len() as u64;
            if self.spare.len() < 64 {
                self.spare.push(h.data);
            }
        }
    }

    /// Drops every waiting frame (the limit is lifted or changed: they go
    /// out unlimited instead); returns them.
    pub fn take_all(&mut self) -> Vec<Held> {
        self.held_bytes = 0;
        self.limiter.counters.queued = 0;
        self.held.drain(..).collect()
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
