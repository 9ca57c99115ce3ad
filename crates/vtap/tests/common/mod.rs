//! Shared by the data-path tests: a data-plane responder loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vtap::datapath::{DataPath, TxFrame};

/// What the data-plane responder saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub frames: u64,
    pub max_num_buffers: u16,
    pub answered: u64,
}

/// Answers ARP/ICMP/UDP on rx queue 0 of `dp` until `stop`.
pub fn respond(
    mut dp: DataPath,
    mac: [u8; 6],
    ip: [u8; 4],
    stop: Arc<AtomicBool>,
) -> (DataPath, Seen) {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        dp.wait_rx(0, 50).expect("wait");
        let mut replies = vec![];
        dp.rx_burst(0, 64, |f| {
            seen.frames += 1;
            seen.max_num_buffers = seen.max_num_buffers.max(f.hdr.num_buffers);
            if let Some(r) = vtap_testkit::responder::answer(&f.to_vec(), mac, ip) {
                replies.push(r);
            }
        })
        .expect("rx_burst");
        let frames: Vec<TxFrame<'_>> = replies
            .iter()
            .map(|r| TxFrame {
                hdr: Default::default(),
                data: r,
            })
            .collect();
        seen.answered += dp.tx_burst(0, &frames).expect("tx_burst") as u64;
    }
    (dp, seen)
}
