//! The forwarding plane's ledger of one interface: where every frame it took
//! from the interface went, and what became of every frame it sent toward
//! it. Together with the queues' own counters and the offload counters it
//! balances exactly, so a frame that vanishes shows up as an imbalance:
//!
//! - rx: `received = forwarded + drop_runt + drop_filtered + drop_no_port +
//!   drop_split_horizon`
//!   (a flooded frame is forwarded once, however many ports it reaches);
//! - tx: `offered + segments − segmented − coalesced − offload.drop_bad_header`
//!   (the frames the offload stage hands to the queues) `= packets +
//!   drop_no_free_slots + drop_too_big + drop_io_error` summed over the tx
//!   queues.
//!
//! Frames the data path itself discards before anyone sees them (a bad
//! virtio-net header, a truncated used entry) are the rx queues' own
//! `drop_bad_header` / `drop_truncated`; they never reach `received`.

use serde::{Deserialize, Serialize};

use super::queue::Counters;
use crate::offload::Stats;

/// Frames the forwarding plane took from the interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RxLedger {
    /// Frames taken from the interface's rx queues.
    pub received: u64,
    /// Of those, handed on toward at least one other interface.
    pub forwarded: u64,
    /// Dropped: shorter than the two MAC addresses (bridge).
    pub drop_runt: u64,
    /// Dropped: the destination was learned on this same interface (bridge).
    pub drop_filtered: u64,
    /// Dropped: nowhere to send it (a bridge with no other interface, or
    /// only ports of its own split-horizon group).
    pub drop_no_port: u64,
    /// Dropped: its destination was learned on a port of the same
    /// split-horizon group (from one tunnel to another).
    #[serde(default)]
    pub drop_split_horizon: u64,
    /// Rx bursts that failed part-way; the frames read before the failure
    /// are in `received` and went on as usual.
    pub burst_errors: u64,
}

/// Frames the forwarding plane sent toward the interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TxLedger {
    /// Frames directed to this interface, before offload work.
    pub offered: u64,
    /// Tx bursts that failed; their unsent frames are in the tx queues'
    /// `drop_io_error`.
    pub burst_errors: u64,
}

/// Both halves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Taken from the interface.
    pub rx: RxLedger,
    /// Sent toward it.
    pub tx: TxLedger,
}

/// The ledger checked against the queues' and the offload stage's counters,
/// for `show` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accounting {
    /// Taken from the interface.
    pub rx: RxLedger,
    /// `rx.received` equals `forwarded` plus the rx drops.
    pub rx_balanced: bool,
    /// Sent toward it.
    pub tx: TxLedger,
    /// Frames the offload stage handed to the tx queues:
    /// `offered + segments − segmented − coalesced − drop_bad_header`.
    pub tx_to_queues: u64,
    /// What the tx queues did with frames: `packets + drop_no_free_slots +
    /// drop_too_big + drop_io_error`.
    pub tx_from_queues: u64,
    /// `tx_to_queues` equals `tx_from_queues`.
    pub tx_balanced: bool,
}

/// Frames an rx ledger accounts for.
fn rx_accounted(rx: &RxLedger) -> u64 {
    rx.forwarded + rx.drop_runt + rx.drop_filtered + rx.drop_no_port + rx.drop_split_horizon
}

/// Frames the offload stage produced from `offered` frames.
fn tx_to_queues(offered: u64, off: &Stats) -> u64 {
    (offered + off.segments).saturating_sub(off.segmented + off.coalesced + off.drop_bad_header)
}

/// Frames the tx queues sent or dropped.
fn tx_from_queues(tx: &[Counters]) -> u64 {
    tx.iter()
        .map(|c| c.packets + c.drop_no_free_slots + c.drop_too_big + c.drop_io_error)
        .sum()
}

impl Ledger {
    /// Checks the ledger against the tx queues' counters and the offload
    /// stage's; `shaped` frames are held or were dropped by a tx rate
    /// limit on their way from the one to the other.
    pub fn account(&self, tx_queues: &[Counters], offload: &Stats, shaped: u64) -> Accounting {
        let to = tx_to_queues(self.tx.offered, offload);
        let from = tx_from_queues(tx_queues) + shaped;
        Accounting {
            rx: self.rx,
            rx_balanced: self.rx.received == rx_accounted(&self.rx),
            tx: self.tx,
            tx_to_queues: to,
            tx_from_queues: from,
            tx_balanced: to == from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances() {
        let q = |packets, full, big, io| Counters {
            packets,
            drop_no_free_slots: full,
            drop_too_big: big,
            drop_io_error: io,
            ..Counters::default()
        };
        let off = |segmented, segments, coalesced, bad| Stats {
            segmented,
            segments,
            coalesced,
            drop_bad_header: bad,
            ..Stats::default()
        };
        // offered, queues, offload, balanced
        let table: &[(u64, Vec<Counters>, Stats, bool)] = &[
            (0, vec![q(0, 0, 0, 0)], off(0, 0, 0, 0), true),
            (10, vec![q(10, 0, 0, 0)], off(0, 0, 0, 0), true),
            (10, vec![q(7, 1, 1, 1)], off(0, 0, 0, 0), true),
            (
                10,
                vec![q(5, 0, 0, 0), q(5, 0, 0, 0)],
                off(0, 0, 0, 0),
                true,
            ),
            // one super-frame cut into 45 segments
            (1, vec![q(45, 0, 0, 0)], off(1, 45, 0, 0), true),
            // 45 segments merged into one
            (45, vec![q(1, 0, 0, 0)], off(0, 0, 44, 0), true),
            // a bad header dropped by the offload stage
            (3, vec![q(2, 0, 0, 0)], off(0, 0, 0, 1), true),
            // a frame that vanished
            (10, vec![q(9, 0, 0, 0)], off(0, 0, 0, 0), false),
            (1, vec![q(44, 0, 0, 0)], off(1, 45, 0, 0), false),
        ];
        for (offered, queues, offload, want) in table {
            let l = Ledger {
                tx: TxLedger {
                    offered: *offered,
                    burst_errors: 0,
                },
                ..Ledger::default()
            };
            assert_eq!(
                l.account(queues, offload, 0).tx_balanced,
                *want,
                "{offered} {queues:?} {offload:?}"
            );
        }
        let rx = |received, forwarded, runt, filtered, no_port, split| RxLedger {
            received,
            forwarded,
            drop_runt: runt,
            drop_filtered: filtered,
            drop_no_port: no_port,
            drop_split_horizon: split,
            burst_errors: 0,
        };
        for (r, want) in [
            (rx(10, 10, 0, 0, 0, 0), true),
            (rx(10, 6, 1, 2, 1, 0), true),
            (rx(10, 5, 1, 2, 1, 1), true),
            (rx(10, 9, 0, 0, 0, 0), false),
            (rx(10, 9, 0, 0, 0, 2), false),
        ] {
            let l = Ledger {
                rx: r,
                ..Ledger::default()
            };
            assert_eq!(
                l.account(&[], &Stats::default(), 0).rx_balanced,
                want,
                "{r:?}"
            );
        }
    }
}
