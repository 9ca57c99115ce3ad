//! pcap capture of an interface's frames (`vtap capture IF rx|tx|both`).
//!
//! The data path tees frames into a classic pcap file (readable by tcpdump,
//! tshark, Wireshark) as they cross its bursts: *rx* = frames received from
//! the host side, *tx* = frames sent to it. Frames are written as they are —
//! a GSO super-frame is one record of up to 64 KiB (the snap length is
//! 262144, the largest tcpdump accepts) — and the virtio-net header is not
//! written. TAP interfaces use link type Ethernet, TUN interfaces raw IP.
//! With a count the capture ends by itself after that many frames.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The snap length written in the file header.
pub const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;

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

/// Why a capture could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path is not absolute.
    #[error("file '{0}': give an absolute path (the daemon writes it)")]
    Relative(String),
    /// The file could not be created or written.
    #[error("file '{}'", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What `show` says about a running capture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureState {
    /// The file.
    pub file: String,
    /// Which frames.
    pub direction: Direction,
    /// Frames written so far.
    pub captured: u64,
    /// Frames still to write (`null` = until stopped).
    pub remaining: Option<u64>,
}

/// A running capture.
#[derive(Debug)]
pub struct Capture {
    out: BufWriter<File>,
    state: CaptureState,
}

impl Capture {
    /// Creates (truncates) `path` and writes the pcap header.
    pub fn start(
        path: &Path,
        direction: Direction,
        count: Option<u64>,
        tun: bool,
    ) -> Result<Self, Error> {
        if !path.is_absolute() {
            return Err(Error::Relative(path.display().to_string()));
        }
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        let mut hdr = Vec::with_capacity(24);
        hdr.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        hdr.extend_from_slice(&2u16.to_le_bytes());
        hdr.extend_from_slice(&4u16.to_le_bytes());
        hdr.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        hdr.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        hdr.extend_from_slice(&SNAPLEN.to_le_bytes());
        hdr.extend_from_slice(&(if tun { LINKTYPE_RAW } else { LINKTYPE_ETHERNET }).to_le_bytes());
        out.write_all(&hdr).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(Self {
            out,
            state: CaptureState {
                file: path.display().to_string(),
                direction,
                captured: 0,
                remaining: count,
            },
        })
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

    /// Whether the count is reached.
    pub fn done(&self) -> bool {
        self.state.remaining == Some(0)
    }

    /// Writes one frame (if the count is not reached). A write error ends
    /// the capture quietly (the data path must not fail for it): the file
    /// keeps what was written.
    pub fn write(&mut self, frame: &[u8]) {
        if self.done() {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl = len.min(SNAPLEN);
        let mut rec = Vec::with_capacity(16);
        rec.extend_from_slice(
            &u32::try_from(now.as_secs())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        rec.extend_from_slice(&now.subsec_micros().to_le_bytes());
        rec.extend_from_slice(&incl.to_le_bytes());
        rec.extend_from_slice(&len.to_le_bytes());
        let ok =
            self.out.write_all(&rec).is_ok() && self.out.write_all(&frame[..incl as usize]).is_ok();
        if !ok {
            self.state.remaining = Some(0);
            return;
        }
        self.state.captured += 1;
        if let Some(r) = self.state.remaining.as_mut() {
            *r -= 1;
            if *r == 0 {
                let _ = self.out.flush();
            }
        }
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_records_and_count() {
        let dir = std::env::temp_dir().join(format!("vtap-cap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("t.pcap");
        let mut c = Capture::start(&path, Direction::Both, Some(2), false).expect("start");
        for f in [&[1u8; 60][..], &[2u8; 70000][..], &[3u8; 10][..]] {
            c.write(f);
        }
        assert!(c.done());
        drop(c);
        let b = std::fs::read(&path).expect("read");
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
        let e =
            Capture::start(Path::new("rel.pcap"), Direction::Rx, None, true).expect_err("relative");
        assert!(e.to_string().contains("absolute"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
