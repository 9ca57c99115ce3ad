//! pcap capture of an interface's frames (`vtap capture IF rx|tx|both`).
//!
//! The data path tees frames into a classic pcap stream (readable by
//! tcpdump, tshark, Wireshark) as they cross its bursts: *rx* = frames
//! received from the host side, *tx* = frames sent to it. Frames are
//! recorded as they are — a GSO super-frame is one record of up to 64 KiB
//! (the snap length is 262144, the largest tcpdump accepts) — and the
//! virtio-net header is not recorded. TAP interfaces use link type
//! Ethernet, TUN interfaces raw IP. With a count the capture ends by itself
//! after that many frames.
//!
//! # Design: a stream, never a file the daemon opens
//!
//! A capture is a bounded in-memory stream ([`Stream`]) that whoever asked
//! for it drains: the daemon turns it into a chunked HTTP response and the
//! CLI writes it where its user says, with the user's own rights. The
//! daemon, which runs as root, never opens a path a caller chose. The data
//! path must never wait for a slow reader: records of one burst go out as
//! one chunk, and a chunk that would put more than [`MAX_IN_FLIGHT`] bytes
//! in flight is not queued — its frames are counted as `dropped`, as
//! libpcap counts what its buffer could not hold. A reader that goes away
//! ends the capture at the next burst (and a new capture may replace one
//! whose reader has gone).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The snap length written in the file header.
pub const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
/// Most bytes queued toward a reader at once; beyond it frames are dropped
/// from the capture (never from the data path).
pub const MAX_IN_FLIGHT: usize = 16 << 20;
/// Most chunks queued toward a reader at once.
const MAX_CHUNKS: usize = 1024;

/// Which frames to capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Direction {
    /// Received from the host side.
    Rx,
    /// Sent to the host side.
    Tx,
    /// Both.
    Both,
}

impl Direction {
    fn rx(self) -> bool {
        self != Direction::Tx
    }
    fn tx(self) -> bool {
        self != Direction::Rx
    }
}

/// What `show` says about a running capture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureState {
    /// Which frames.
    pub direction: Direction,
    /// Frames recorded and handed to the reader so far.
    pub captured: u64,
    /// Frames left out because the reader fell more than
    /// [`MAX_IN_FLIGHT`] bytes behind.
    #[serde(default)]
    pub dropped: u64,
    /// Frames still to record (`null` = until stopped).
    pub remaining: Option<u64>,
}

/// The reading end of a capture: the pcap header, then one chunk of records
/// per burst. Ends when the capture ends (count reached, stopped, or the
/// interface deleted).
#[derive(Debug)]
pub struct Stream {
    rx: mpsc::Receiver<Vec<u8>>,
    in_flight: Arc<AtomicUsize>,
}

impl Stream {
    /// The next chunk, waiting for it; `None` once the capture has ended.
    pub async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        let chunk = self.rx.recv().await?;
        self.in_flight.fetch_sub(chunk.len(), Ordering::Relaxed);
        Some(chunk)
    }

    /// The next chunk, blocking the thread (not for async contexts).
    pub fn blocking_next_chunk(&mut self) -> Option<Vec<u8>> {
        let chunk = self.rx.blocking_recv()?;
        self.in_flight.fetch_sub(chunk.len(), Ordering::Relaxed);
        Some(chunk)
    }

    /// Writes the whole capture to `out` on a thread of its own, until the
    /// capture ends; the thread returns the bytes written.
    pub fn spawn_writer<W: std::io::Write + Send + 'static>(
        mut self,
        mut out: W,
    ) -> std::thread::JoinHandle<std::io::Result<u64>> {
        std::thread::spawn(move || {
            let mut n = 0u64;
            while let Some(chunk) = self.blocking_next_chunk() {
                out.write_all(&chunk)?;
                n += chunk.len() as u64;
            }
            out.flush()?;
            Ok(n)
        })
    }
}

/// A running capture: the writing end.
#[derive(Debug)]
pub struct Capture {
    tx: mpsc::Sender<Vec<u8>>,
    in_flight: Arc<AtomicUsize>,
    /// Records of the current burst.
    pending: Vec<u8>,
    pending_frames: u64,
    state: CaptureState,
    /// The reader is gone or the count is reached.
    ended: bool,
}

fn pcap_header(tun: bool) -> Vec<u8> {
    let mut hdr = Vec::with_capacity(24);
    hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    hdr.extend_from_slice(&2u16.to_le_bytes());
    hdr.extend_from_slice(&4u16.to_le_bytes());
    hdr.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    hdr.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    hdr.extend_from_slice(&SNAPLEN.to_le_bytes());
    hdr.extend_from_slice(&(if tun { LINKTYPE_RAW } else { LINKTYPE_ETHERNET }).to_le_bytes());
    hdr
}

impl Capture {
    /// Starts a capture; the pcap header is the stream's first chunk.
    pub fn start(direction: Direction, count: Option<u64>, tun: bool) -> (Self, Stream) {
        let (tx, rx) = mpsc::channel(MAX_CHUNKS);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let hdr = pcap_header(tun);
        in_flight.fetch_add(hdr.len(), Ordering::Relaxed);
        // A fresh channel has room for its first chunk.
        let ended = tx.try_send(hdr).is_err();
        let cap = Self {
            tx,
            in_flight: in_flight.clone(),
            pending: Vec::new(),
            pending_frames: 0,
            state: CaptureState {
                direction,
                captured: 0,
                dropped: 0,
                remaining: count,
            },
            ended,
        };
        (cap, Stream { rx, in_flight })
    }

    /// Its state.
    pub fn state(&self) -> &CaptureState {
        &self.state
    }

    /// Whether it wants frames of this direction.
    pub fn wants(&self, rx: bool) -> bool {
        if rx {
            self.state.direction.rx()
        } else {
            self.state.direction.tx()
        }
    }

    /// Whether it has ended: the count is reached or the reader is gone.
    pub fn done(&self) -> bool {
        self.ended || self.state.remaining == Some(0) || self.tx.is_closed()
    }

    /// Records one frame (if the count is not reached); it reaches the
    /// reader at the next [`Capture::flush`].
    pub fn write(&mut self, frame: &[u8]) {
        if self.done() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl = len.min(SNAPLEN);
        let secs = u32::try_from(now.as_secs()).unwrap_or(u32::MAX);
        self.pending.extend_from_slice(&secs.to_le_bytes());
        self.pending
            .extend_from_slice(&now.subsec_micros().to_le_bytes());
        self.pending.extend_from_slice(&incl.to_le_bytes());
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending.extend_from_slice(&frame[..incl as usize]);
        self.pending_frames += 1;
        if let Some(r) = self.state.remaining.as_mut() {
            *r -= 1;
        }
    }

    /// Hands the records of this burst to the reader as one chunk, or
    /// counts them as dropped if the reader is too far behind.
    pub fn flush(&mut self) {
        if self.pending_frames == 0 {
            return;
        }
        let frames = std::mem::take(&mut self.pending_frames);
        let chunk = std::mem::take(&mut self.pending);
        let len = chunk.len();
        if self.in_flight.load(Ordering::Relaxed) + len > MAX_IN_FLIGHT {
            self.state.dropped += frames;
            return;
        }
        self.in_flight.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(chunk) {
            Ok(()) => self.state.captured += frames,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.in_flight.fetch_sub(len, Ordering::Relaxed);
                self.state.dropped += frames;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.in_flight.fetch_sub(len, Ordering::Relaxed);
                self.state.dropped += frames;
                self.ended = true;
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut s: Stream) -> Vec<u8> {
        let mut all = Vec::new();
        while let Ok(chunk) = s.rx.try_recv() {
            all.extend_from_slice(&chunk);
        }
        all
    }

    #[test]
    fn header_records_and_count() {
        let (mut c, s) = Capture::start(Direction::Both, Some(2), false);
        for f in [&[1u8; 60][..], &[2u8; 70000][..], &[3u8; 10][..]] {
            c.write(f);
        }
        c.flush();
        assert!(c.done());
        assert_eq!(c.state().captured, 2);
        drop(c);
        let b = drain(s);
        assert_eq!(&b[0..4], &0xa1b2_c3d4u32.to_le_bytes());
        assert_eq!(
            u32::from_le_bytes([b[20], b[21], b[22], b[23]]),
            1,
            "Ethernet"
        );
        // Two records: 16 + 60, 16 + 70000 (under the snap length, whole).
        assert_eq!(b.len(), 24 + 16 + 60 + 16 + 70000);
        assert_eq!(
            u32::from_le_bytes([b[24 + 8], b[25 + 8], b[26 + 8], b[27 + 8]]),
            60
        );
    }

    #[test]
    fn a_slow_reader_loses_capture_records_not_frames_and_a_gone_one_ends_it() {
        let (mut c, s) = Capture::start(Direction::Rx, None, true);
        let big = vec![0u8; 60_000];
        // Fill past the in-flight bound without reading.
        let mut bursts = 0;
        while c.state().dropped == 0 {
            c.write(&big);
            c.flush();
            bursts += 1;
            assert!(bursts < 1000, "bound never reached");
        }
        assert_eq!(c.state().captured + c.state().dropped, bursts);
        assert!(!c.done());
        drop(s);
        assert!(c.done(), "a reader that went away ends the capture");
    }
}
