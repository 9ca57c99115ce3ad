//! What serves one queue: a virtio ring (vhost-net or the userspace
//! backend on the other side), the tap fd directly ([`super::direct`]), or
//! an XDP socket's rings ([`super::xsk`]), or a VXLAN tunnel's UDP sockets
//! ([`super::vxlan`]).
//!
//! The data path calls the same operations on either; the rx mode state
//! machine (polling, interrupt, adaptive) lives here once, over both.

use std::os::fd::RawFd;

use super::direct::{DirectRx, DirectTx};
use super::queue::{Counters, RxFrame, RxMode, RxQueue, Sent, TxQueue, ADAPTIVE_IDLE_BURSTS};
use super::vxlan::{VxlanRx, VxlanTx};
use super::xsk::{XskRx, XskTx};
use super::Error;
use crate::virtq::split::RingState;
use crate::wire::TxFrame;

#[derive(Debug)]
enum RxEngine {
    Ring(RxQueue),
    Direct(DirectRx),
    Xsk(XskRx),
    Vxlan(VxlanRx),
}

/// An rx queue of either engine, with its rx mode.
#[derive(Debug)]
pub(super) struct Rx {
    engine: RxEngine,
    mode: RxMode,
    idle_bursts: u32,
}

impl From<RxQueue> for Rx {
    fn from(q: RxQueue) -> Self {
        Self::with(RxEngine::Ring(q))
    }
}

impl From<DirectRx> for Rx {
    fn from(q: DirectRx) -> Self {
        Self::with(RxEngine::Direct(q))
    }
}

impl From<XskRx> for Rx {
    fn from(q: XskRx) -> Self {
        Self::with(RxEngine::Xsk(q))
    }
}

impl From<VxlanRx> for Rx {
    fn from(q: VxlanRx) -> Self {
        Self::with(RxEngine::Vxlan(q))
    }
}

impl Rx {
    fn with(engine: RxEngine) -> Self {
        Self {
            engine,
            mode: RxMode::default(),
            idle_bursts: 0,
        }
    }

    /// Receives up to `max` frames, calling `f` on each; returns how many.
    pub fn rx_burst(&mut self, max: usize, f: impl FnMut(RxFrame<'_>)) -> Result<usize, Error> {
        Ok(match &mut self.engine {
            RxEngine::Ring(q) => q.rx_burst(max, f)?,
            RxEngine::Direct(q) => q.rx_burst(max, f)?,
            RxEngine::Xsk(q) => q.rx_burst(max, f),
            RxEngine::Vxlan(q) => q.rx_burst(max, f),
        })
    }

    /// One burst in the queue's mode: in interrupt mode (and in adaptive mode
    /// once idle) an empty burst sleeps up to `timeout_ms` for the device,
    /// then tries again. Returns the frames received.
    pub fn rx_burst_wait(
        &mut self,
        max: usize,
        timeout_ms: i32,
        mut f: impl FnMut(RxFrame<'_>),
    ) -> Result<usize, Error> {
        let n = self.rx_burst(max, &mut f)?;
        if n > 0 {
            self.idle_bursts = 0;
            return Ok(n);
        }
        let sleep = match self.mode {
            RxMode::Polling => false,
            RxMode::Interrupt => true,
            RxMode::Adaptive => {
                self.idle_bursts = self.idle_bursts.saturating_add(1);
                self.idle_bursts >= ADAPTIVE_IDLE_BURSTS
            }
        };
        if !sleep {
            return Ok(0);
        }
        self.wait(timeout_ms)?;
        if self.mode == RxMode::Adaptive {
            // Busy again after a wake-up: back to polling without interrupts.
            self.set_interrupts(false)?;
        }
        let n = self.rx_burst(max, &mut f)?;
        if n > 0 {
            self.idle_bursts = 0;
        }
        Ok(n)
    }

    /// The rx mode.
    pub fn mode(&self) -> RxMode {
        self.mode
    }

    /// Changes the rx mode (takes effect at once).
    pub fn set_mode(&mut self, mode: RxMode) -> Result<(), Error> {
        self.mode = mode;
        self.idle_bursts = 0;
        self.set_interrupts(mode != RxMode::Polling)?;
        Ok(())
    }

    /// Rings only: whether the device signals completions. A tap fd has no
    /// such switch (nothing signals unless someone polls).
    fn set_interrupts(&mut self, on: bool) -> Result<bool, Error> {
        Ok(match &mut self.engine {
            RxEngine::Ring(q) => q.set_interrupts(on)?,
            RxEngine::Direct(_) | RxEngine::Xsk(_) | RxEngine::Vxlan(_) => false,
        })
    }

    /// Makes [`Rx::wait_fd`] signal the next frame; returns `true` if frames
    /// are already waiting (then don't sleep).
    pub fn arm(&mut self) -> Result<bool, Error> {
        Ok(match &mut self.engine {
            RxEngine::Ring(q) => q.arm()?,
            // Level-triggered: a readable tap (or an XDP socket with frames
            // on its rx ring, or a tunnel's epoll set) is readable to
            // poll(2) too.
            RxEngine::Direct(_) | RxEngine::Xsk(_) | RxEngine::Vxlan(_) => false,
        })
    }

    /// The fd that becomes readable when frames arrive (after
    /// [`Rx::arm`]); -1 when there is none to wait on.
    pub fn wait_fd(&self) -> RawFd {
        match &self.engine {
            RxEngine::Ring(q) => q.call_fd(),
            RxEngine::Direct(q) => q.wait_fd(),
            RxEngine::Xsk(q) => q.wait_fd(),
            RxEngine::Vxlan(q) => q.wait_fd(),
        }
    }

    /// Clears a signal after a wake-up.
    pub fn ack(&self) {
        if let RxEngine::Ring(q) = &self.engine {
            q.ack();
        }
    }

    /// Blocks until frames arrive or `timeout_ms` passes.
    pub fn wait(&mut self, timeout_ms: i32) -> Result<(), Error> {
        match &mut self.engine {
            RxEngine::Ring(q) => q.wait(timeout_ms)?,
            RxEngine::Direct(q) => q.wait(timeout_ms),
            RxEngine::Xsk(q) => q.wait(timeout_ms),
            RxEngine::Vxlan(q) => q.wait(timeout_ms),
        }
        Ok(())
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        match &self.engine {
            RxEngine::Ring(q) => q.counters(),
            RxEngine::Direct(q) => q.counters(),
            RxEngine::Xsk(q) => q.counters(),
            RxEngine::Vxlan(q) => q.counters(),
        }
    }

    /// The ring's indices, if there is a ring.
    pub fn ring_state(&self) -> Option<RingState> {
        match &self.engine {
            RxEngine::Ring(q) => Some(q.state()),
            RxEngine::Direct(_) | RxEngine::Xsk(_) | RxEngine::Vxlan(_) => None,
        }
    }

    /// Times the fd reported its interface down (packet sockets only).
    pub fn link_down_events(&self) -> u64 {
        match &self.engine {
            RxEngine::Ring(_) | RxEngine::Xsk(_) | RxEngine::Vxlan(_) => 0,
            RxEngine::Direct(q) => q.link_down_events(),
        }
    }
}

/// A tx queue of either engine.
#[derive(Debug)]
pub(super) enum Tx {
    /// A virtio ring.
    Ring(TxQueue),
    /// The tap fd.
    Direct(DirectTx),
    /// An XDP socket's tx ring.
    Xsk(XskTx),
    /// A VXLAN tunnel's sending sockets.
    Vxlan(VxlanTx),
}

impl Tx {
    /// Queues frames in order until one does not fit; see
    /// [`TxQueue::try_send`].
    pub fn try_send(&mut self, frames: &[TxFrame<'_>]) -> Result<Sent, Error> {
        Ok(match self {
            Self::Ring(q) => q.try_send(frames)?,
            Self::Direct(q) => q.try_send(frames),
            Self::Xsk(q) => q.try_send(frames),
            Self::Vxlan(q) => q.try_send(frames),
        })
    }

    /// Queues frames; those that do not fit are counted as drops. Returns
    /// how many were queued.
    pub fn tx_burst(&mut self, frames: &[TxFrame<'_>]) -> Result<usize, Error> {
        let mut sent = 0;
        let mut rest = frames;
        while !rest.is_empty() {
            let taken = self.try_send(rest)?;
            sent += taken.sent;
            rest = &rest[taken.consumed..];
            if let Some((_, tail)) = rest.split_first() {
                // The first frame that did not fit is dropped; the others
                // may still fit (a smaller frame needs fewer buffers).
                self.count_dropped(1);
                rest = tail;
            }
        }
        Ok(sent)
    }

    /// Counts `n` frames the caller gives up on as dropped for want of room.
    pub fn count_dropped(&mut self, n: usize) {
        match self {
            Self::Ring(q) => q.count_dropped(n),
            Self::Direct(q) => q.count_dropped(n),
            Self::Xsk(q) => q.count_dropped(n),
            Self::Vxlan(q) => q.count_dropped(n),
        }
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        match self {
            Self::Ring(q) => q.counters(),
            Self::Direct(q) => q.counters(),
            Self::Xsk(q) => q.counters(),
            Self::Vxlan(q) => q.counters(),
        }
    }

    /// The ring's indices, if there is a ring.
    pub fn ring_state(&self) -> Option<RingState> {
        match self {
            Self::Ring(q) => Some(q.state()),
            Self::Direct(_) | Self::Xsk(_) | Self::Vxlan(_) => None,
        }
    }

    /// Times a send found the interface down (XDP sockets; a packet socket
    /// tells its rx side instead).
    pub fn link_down_events(&self) -> u64 {
        match self {
            Self::Xsk(q) => q.link_down_events(),
            Self::Ring(_) | Self::Direct(_) | Self::Vxlan(_) => 0,
        }
    }
}
