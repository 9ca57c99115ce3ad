//! Shared by the data-path tests: a data-plane responder loop.

use std::sync::atomic::{AtomicBool, Ordering};

use vtap::datapath::{DataPath, TxFrame};

/// What the data-plane responder saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub frames: u64,
    pub max_num_buffers: u16,
    pub answered: u64,
}

/// Answers ARP/ICMP/UDP on rx queue 0 of `dp` until `stop`.
pub fn respond(dp: &mut DataPath, mac: [u8; 6], ip: [u8; 4], stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let mut replies = vec![];
        dp.rx_burst_wait(0, 64, 50, |f| {
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
    seen
}

/// Like [`respond`], on every rx queue (replies leave on the tx queue of the
/// same number), polling rather than waiting.
pub fn respond_all(dp: &mut DataPath, mac: [u8; 6], ip: [u8; 4], stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let queues = dp.state().rx.len();
    while !stop.load(Ordering::Relaxed) {
        let mut idle = true;
        for q in 0..queues {
            let mut replies = vec![];
            let n = dp
                .rx_burst(q, 64, |f| {
                    seen.frames += 1;
                    seen.max_num_buffers = seen.max_num_buffers.max(f.hdr.num_buffers);
                    if let Some(r) = vtap_testkit::responder::answer(&f.to_vec(), mac, ip) {
                        replies.push(r);
                    }
                })
                .expect("rx_burst");
            idle &= n == 0;
            let frames: Vec<TxFrame<'_>> = replies
                .iter()
                .map(|r| TxFrame {
                    hdr: Default::default(),
                    data: r,
                })
                .collect();
            seen.answered += dp.tx_burst(q, &frames).expect("tx_burst") as u64;
        }
        if idle {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    seen
}
