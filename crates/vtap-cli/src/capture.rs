//! `vtap capture`: the daemon streams pcap; this writes it where the user
//! says, with the user's rights.

use hyper::Method;
use serde_json::json;

use crate::one_line;
use vtapd::client;

/// Streams a capture from the daemon into `file` (`-`: standard output),
/// until the daemon ends it or Ctrl-C; says on stderr how many frames.
pub(crate) async fn capture(
    sock: &std::path::Path,
    path: &str,
    direction: &str,
    file: &str,
    count: Option<u64>,
) -> Result<(), String> {
    use std::io::Write;
    let mut out: Box<dyn Write> = if file == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(file).map_err(|e| format!("file '{file}': {e}"))?,
        ))
    };
    let mut records = PcapCounter::default();
    let body = json!({ "direction": direction, "count": count });
    let streamed = client::stream(sock, Method::POST, path, Some(body), |chunk| {
        records.feed(chunk);
        out.write_all(chunk)?;
        // A pipe reader (tcpdump -r -) sees each burst as it comes.
        out.flush()
    });
    let done = tokio::select! {
        r = streamed => r.map(|_| ()).map_err(|e| one_line(&e)),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    out.flush().map_err(|e| format!("file '{file}': {e}"))?;
    done?;
    eprintln!("vtap: {} frames captured to {file}", records.frames);
    Ok(())
}

/// Counts the records of a pcap stream as it passes.
#[derive(Default)]
struct PcapCounter {
    /// Bytes still to skip (the header, then each record's data).
    skip: usize,
    /// A record header split across chunks.
    partial: Vec<u8>,
    started: bool,
    frames: u64,
}

impl PcapCounter {
    fn feed(&mut self, mut chunk: &[u8]) {
        if !self.started {
            self.started = true;
            self.skip = 24;
        }
        while !chunk.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(chunk.len());
                self.skip -= n;
                chunk = &chunk[n..];
                continue;
            }
            let want = 16 - self.partial.len();
            let n = want.min(chunk.len());
            self.partial.extend_from_slice(&chunk[..n]);
            chunk = &chunk[n..];
            if self.partial.len() == 16 {
                let incl = u32::from_le_bytes([
                    self.partial[8],
                    self.partial[9],
                    self.partial[10],
                    self.partial[11],
                ]);
                self.skip = usize::try_from(incl).unwrap_or(usize::MAX);
                self.partial.clear();
                self.frames += 1;
            }
        }
    }
}
