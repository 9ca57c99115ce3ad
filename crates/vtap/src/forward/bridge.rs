//! The L2 bridge's decisions, with no I/O: learn where a source MAC lives,
//! age what was not seen for [`MAC_AGING`], refuse to learn beyond a limit,
//! and say for each frame whether it goes to one port, is filtered, or is
//! flooded.
//!
//! # Design
//!
//! A [`MacTable`] maps a unicast MAC to a port index and the time it was
//! last seen. Time comes from a [`Clock`] the caller passes in, so the
//! 300-second aging is tested in microseconds. The table holds at most
//! `limit` entries: a host side that sends frames from 40 000 source MACs
//! cannot make vtap hold 40 000 entries. Beyond the limit new addresses are
//! not learned (their frames are still forwarded: unknown destinations are
//! flooded, as VPP's `l2 learn limit` does) and each refusal is counted;
//! addresses already known keep being refreshed and may move between ports.
//! Split horizon is the caller's: a flood goes to every port but the one the
//! frame came in on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a learned MAC address stays without being seen again.
pub const MAC_AGING: Duration = Duration::from_secs(300);
/// Entries a bridge domain learns at most, unless told otherwise.
pub const DEFAULT_MAC_LIMIT: usize = 16_384;
/// The largest learn limit accepted.
pub const MAX_MAC_LIMIT: usize = 4 << 20;
/// How often (in clock time) expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Where time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What learning one source address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// Known on this port; its age reset.
    Refreshed,
    /// Known on another port; it moved here.
    Moved,
    /// Not learned: the table is at its limit.
    Refused,
    /// Not learned: a group (multicast/broadcast) address is never a source.
    Group,
}

/// Where one frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// To this port only.
    Forward(usize),
    /// Nowhere: its destination lives on the port it came in on.
    Filter,
    /// To every port but the one it came in on (broadcast, multicast,
    /// unknown unicast).
    Flood,
    /// Nowhere: shorter than the two MAC addresses.
    Runt,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    port: usize,
    seen: Instant,
}

/// A bridge domain's MAC table.
#[derive(Debug)]
pub struct MacTable {
    entries: HashMap<[u8; 6], Entry>,
    limit: usize,
    aging: Duration,
    last_sweep: Instant,
    refused: u64,
}

fn is_group(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

fn mac_at(frame: &[u8], at: usize) -> Option<[u8; 6]> {
    frame.get(at..at + 6)?.try_into().ok()
}

impl MacTable {
    /// An empty table that learns at most `limit` entries, each kept for
    /// `aging` after it was last seen.
    pub fn new(limit: usize, aging: Duration, now: Instant) -> Self {
        Self {
            entries: HashMap::new(),
            limit,
            aging,
            last_sweep: now,
            refused: 0,
        }
    }

    /// The learn limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses not learned because the table was full, since creation.
    pub fn learn_refused(&self) -> u64 {
        self.refused
    }

    /// Learns that `mac` was seen on `port` at `now`.
    pub fn learn(&mut self, mac: [u8; 6], port: usize, now: Instant) -> Learned {
        if is_group(&mac) {
            return Learned::Group;
        }
        if let Some(e) = self.entries.get_mut(&mac) {
            let moved = e.port != port;
            *e = Entry { port, seen: now };
            return if moved {
                Learned::Moved
            } else {
                Learned::Refreshed
            };
        }
        if self.entries.len() >= self.limit {
            self.refused += 1;
            return Learned::Refused;
        }
        self.entries.insert(mac, Entry { port, seen: now });
        Learned::New
    }

    /// The port `mac` was learned on, if it has not aged out by `now`.
    pub fn lookup(&self, mac: &[u8; 6], now: Instant) -> Option<usize> {
        self.entries
            .get(mac)
            .filter(|e| now.saturating_duration_since(e.seen) < self.aging)
            .map(|e| e.port)
    }

    /// Removes entries not seen for the aging time, at most once a second
    /// of clock time; returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return 0;
        }
        self.last_sweep = now;
        let before = self.entries.len();
        let aging = self.aging;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen) < aging);
        before - self.entries.len()
    }

    /// Learns a frame's source and decides where it goes.
    pub fn decide(&mut self, frame: &[u8], in_port: usize, now: Instant) -> Decision {
        let (Some(dst), Some(src)) = (mac_at(frame, 0), mac_at(frame, 6)) else {
            return Decision::Runt;
        };
        self.learn(src, in_port, now);
        if is_group(&dst) {
            return Decision::Flood;
        }
        match self.lookup(&dst, now) {
            Some(p) if p == in_port => Decision::Filter,
            Some(p) => Decision::Forward(p),
            None => Decision::Flood,
        }
    }

    /// Port `port` left the bridge: its entries go, and ports after it
    /// move down one index (as the bridge's port list does).
    pub fn remove_port(&mut self, port: usize) {
        self.entries.retain(|_, e| e.port != port);
        for e in self.entries.values_mut() {
            if e.port > port {
                e.port -= 1;
            }
        }
    }

    /// Every entry: address, port, time since last seen.
    pub fn entries(&self, now: Instant) -> impl Iterator<Item = ([u8; 6], usize, Duration)> + '_ {
        self.entries
            .iter()
            .map(move |(m, e)| (*m, e.port, now.saturating_duration_since(e.seen)))
    }
}

/// A clock that moves only when told: for tests of aging.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<Instant>);

impl Default for ManualClock {
    fn default() -> Self {
        Self(std::sync::Mutex::new(Instant::now()))
    }
}

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];
    const MCAST: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f
    }

    #[test]
    fn decisions() {
        let t0 = Instant::now();
        // (known entries: (mac, port)), frame (dst, src), in port, decision
        type Row = (
            &'static [([u8; 6], usize)],
            [u8; 6],
            [u8; 6],
            usize,
            Decision,
        );
        let table: &[Row] = &[
            (&[], BCAST, A, 0, Decision::Flood),
            (&[], MCAST, A, 0, Decision::Flood),
            (&[], B, A, 0, Decision::Flood),
            (&[(B, 1)], B, A, 0, Decision::Forward(1)),
            (&[(B, 0)], B, A, 0, Decision::Filter),
            (&[(B, 2)], B, A, 1, Decision::Forward(2)),
            (&[(B, 1)], BCAST, A, 0, Decision::Flood),
        ];
        for (known, dst, src, port, want) in table {
            let mut t = MacTable::new(16, MAC_AGING, t0);
            for (mac, p) in *known {
                t.learn(*mac, *p, t0);
            }
            assert_eq!(
                t.decide(&frame(*dst, *src), *port, t0),
                *want,
                "{known:?} {dst:?}"
            );
            assert_eq!(t.lookup(src, t0), Some(*port), "the source is learned");
        }
        let mut t = MacTable::new(16, MAC_AGING, t0);
        for len in [0, 5, 11] {
            assert_eq!(
                t.decide(&vec![2; len], 0, t0),
                Decision::Runt,
                "{len} bytes"
            );
        }
        assert!(t.is_empty(), "a runt teaches nothing");
    }

    #[test]
    fn learning_outcomes() {
        let t0 = Instant::now();
        let mut t = MacTable::new(2, MAC_AGING, t0);
        let steps: &[([u8; 6], usize, Learned)] = &[
            (A, 0, Learned::New),
            (A, 0, Learned::Refreshed),
            (A, 1, Learned::Moved),
            (BCAST, 0, Learned::Group),
            (MCAST, 0, Learned::Group),
            (B, 0, Learned::New),
            (C, 0, Learned::Refused),
            (A, 2, Learned::Moved),
            (C, 1, Learned::Refused),
        ];
        for (mac, port, want) in steps {
            assert_eq!(t.learn(*mac, *port, t0), *want, "{mac:?} on {port}");
        }
        assert_eq!((t.len(), t.learn_refused()), (2, 2));
    }

    #[test]
    fn beyond_the_limit_frames_still_flood_and_known_ones_still_forward() {
        let t0 = Instant::now();
        let mut t = MacTable::new(1000, MAC_AGING, t0);
        t.learn(B, 3, t0);
        for i in 0..40_000u32 {
            let b = i.to_be_bytes();
            let src = [2, 1, b[0], b[1], b[2], b[3]];
            assert_eq!(t.decide(&frame(C, src), 0, t0), Decision::Flood);
        }
        assert_eq!(t.len(), 1000, "bounded");
        assert_eq!(t.learn_refused(), 40_000 - 999);
        assert_eq!(t.decide(&frame(B, A), 0, t0), Decision::Forward(3));
    }

    #[test]
    fn entries_age_out_after_300_seconds_without_being_seen() {
        let clock = ManualClock::default();
        let mut t = MacTable::new(16, MAC_AGING, clock.now());
        t.learn(A, 1, clock.now());
        t.learn(B, 2, clock.now());
        clock.advance(Duration::from_secs(200));
        t.learn(A, 1, clock.now()); // A seen again at 200 s
        clock.advance(Duration::from_secs(99));
        assert_eq!(t.sweep(clock.now()), 0, "299 s: nothing expired");
        assert_eq!(t.lookup(&B, clock.now()), Some(2));
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.lookup(&B, clock.now()), None, "300 s: B expired");
        assert_eq!(t.decide(&frame(B, C), 0, clock.now()), Decision::Flood);
        assert_eq!(t.sweep(clock.now()), 1, "B swept");
        assert_eq!(t.lookup(&A, clock.now()), Some(1), "A was refreshed");
        clock.advance(Duration::from_secs(200));
        assert_eq!(t.sweep(clock.now()), 1, "A (seen at 200 s) gone at 500 s");
        assert_eq!(
            t.lookup(&C, clock.now()),
            Some(0),
            "C, seen at 300 s, stays"
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(t.sweep(clock.now()), 1, "C gone at 600 s");
        assert!(t.is_empty());
        // Sweeps run at most once a second of clock time.
        t.learn(A, 1, clock.now());
        clock.advance(MAC_AGING);
        assert_eq!(t.sweep(clock.now()), 1);
        t.learn(B, 1, clock.now() - MAC_AGING);
        assert_eq!(t.sweep(clock.now()), 0, "too soon after the last sweep");
    }

    #[test]
    fn a_removed_port_takes_its_entries_and_later_ports_move_down() {
        let t0 = Instant::now();
        let mut t = MacTable::new(16, MAC_AGING, t0);
        t.learn(A, 0, t0);
        t.learn(B, 1, t0);
        t.learn(C, 2, t0);
        t.remove_port(1);
        let want: &[([u8; 6], Option<usize>)] = &[(A, Some(0)), (B, None), (C, Some(1))];
        for (mac, port) in want {
            assert_eq!(t.lookup(mac, t0), *port, "{mac:?}");
        }
    }
}
