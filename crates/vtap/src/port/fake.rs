//! An in-memory [`Port`] for tests without root or a kernel (and for
//! library users testing their own programs): frames pushed into its rx
//! side are what a burst receives; what is sent is kept for inspection. Its
//! wait fd is a real eventfd, so a forwarding worker sleeps on it and wakes
//! when a frame is pushed, exactly as on a tap.
//!
//! A fake can be told to take only so many frames ([`FakePort::set_room`]):
//! what does not fit is dropped and counted as `drop_no_free_slots`, like a
//! full tx ring after the forwarder's wait.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Port, SharedPort};
use crate::datapath::{self, Counters, Ledger, RxFrame, RxMode};
use crate::offload::{Caps, Stats};
use crate::wire::{TxFrame, VnetHdr};

/// An in-memory port.
#[derive(Debug)]
pub struct FakePort {
    /// Frames waiting on each rx queue.
    rx: Vec<VecDeque<(VnetHdr, Vec<u8>)>>,
    /// Frames sent through it, in order.
    pub sent: Vec<(VnetHdr, Vec<u8>)>,
    /// The tx queue each frame of `sent` went out on.
    pub sent_on: Vec<usize>,
    /// The worker the forwarder says reads each rx queue.
    pub rx_workers: Vec<Option<usize>>,
    /// Its tx counters (sent, dropped for want of room).
    pub tx: Counters,
    /// Times a worker armed it before going to sleep.
    pub arms: u64,
    room: Option<usize>,
    caps: Caps,
    offload: Stats,
    ledger: Ledger,
    mode: RxMode,
    /// One wait fd per rx queue.
    wake: Vec<EventFd>,
}

impl FakePort {
    /// A port that takes every frame, with the offload caps of a plain TAP.
    pub fn new() -> Self {
        Self::with_queues(1)
    }

    /// A port with `queues` rx and tx queues.
    pub fn with_queues(queues: usize) -> Self {
        Self {
            rx: (0..queues).map(|_| VecDeque::new()).collect(),
            sent: Vec::new(),
            sent_on: Vec::new(),
            rx_workers: vec![None; queues],
            tx: Counters::default(),
            arms: 0,
            room: None,
            caps: Caps::from_mask(0, false, false),
            offload: Stats::default(),
            ledger: Ledger::default(),
            mode: RxMode::Interrupt,
            // Without an eventfd a fake cannot be waited on; the process is
            // out of fds, and a test cannot go on.
            wake: (0..queues)
                .map(|_| EventFd::new(EFD_NONBLOCK).expect("eventfd"))
                .collect(),
        }
    }

    /// A new fake, shared: the handle to inspect it and the port to hand on.
    pub fn shared() -> (Arc<Mutex<FakePort>>, SharedPort) {
        Self::shared_with_queues(1)
    }

    /// A new fake of `queues` queues, shared.
    pub fn shared_with_queues(queues: usize) -> (Arc<Mutex<FakePort>>, SharedPort) {
        let fake = Arc::new(Mutex::new(Self::with_queues(queues)));
        let port: SharedPort = fake.clone();
        (fake, port)
    }

    /// A frame arrives (as if from the host side); wakes a sleeping worker.
    pub fn push_rx(&mut self, frame: Vec<u8>) {
        self.push_rx_on(0, frame);
    }

    /// A frame arrives on rx queue `q`.
    pub fn push_rx_on(&mut self, q: usize, frame: Vec<u8>) {
        self.rx[q].push_back((VnetHdr::default(), frame));
        let _ = self.wake[q].write(1);
    }

    /// From now on take at most `frames` more frames; `None`: all.
    pub fn set_room(&mut self, frames: Option<usize>) {
        self.room = frames;
    }

    /// The ledger as the forwarding plane filled it.
    pub fn ledger(&self) -> Ledger {
        self.ledger
    }

    /// The ledger checked against the tx counters and offload stats.
    pub fn accounting(&self) -> datapath::Accounting {
        self.ledger.account(&[self.tx], &self.offload, 0)
    }
}

impl Default for FakePort {
    fn default() -> Self {
        Self::new()
    }
}

impl Port for FakePort {
    fn num_rx(&self) -> usize {
        self.rx.len()
    }
    fn num_tx(&self) -> usize {
        self.rx.len()
    }
    fn rx_burst(
        &mut self,
        q: usize,
        max: usize,
        f: &mut dyn FnMut(RxFrame<'_>),
    ) -> Result<usize, datapath::Error> {
        let mut n = 0;
        while n < max {
            let Some((hdr, mut data)) = self.rx[q].pop_front() else {
                break;
            };
            f(RxFrame::owned(hdr, &mut data));
            n += 1;
        }
        Ok(n)
    }
    fn tx_burst_wait(
        &mut self,
        q: usize,
        frames: &[TxFrame<'_>],
        _wait: Duration,
    ) -> Result<usize, datapath::Error> {
        let mut sent = 0;
        for fr in frames {
            if self.room == Some(0) {
                self.tx.drop_no_free_slots += 1;
                continue;
            }
            if let Some(r) = self.room.as_mut() {
                *r -= 1;
            }
            self.sent.push((fr.hdr, fr.data.to_vec()));
            self.sent_on.push(q);
            self.tx.packets += 1;
            self.tx.bytes += fr.data.len() as u64;
            sent += 1;
        }
        Ok(sent)
    }
    fn offload_caps(&self) -> Caps {
        self.caps
    }
    fn add_offload_stats(&mut self, s: &Stats) {
        self.offload.add(s);
    }
    fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }
    fn rx_mode(&self, _q: usize) -> Result<RxMode, datapath::Error> {
        Ok(self.mode)
    }
    fn arm_rx(&mut self, q: usize) -> Result<bool, datapath::Error> {
        self.arms += 1;
        Ok(!self.rx[q].is_empty())
    }
    fn rx_wait_fd(&self, q: usize) -> Result<RawFd, datapath::Error> {
        Ok(self.wake[q].as_raw_fd())
    }
    fn ack_rx(&self, q: usize) {
        let _ = self.wake[q].read();
    }
    fn set_rx_worker(&mut self, q: usize, worker: Option<usize>) {
        self.rx_workers[q] = worker;
    }
}
