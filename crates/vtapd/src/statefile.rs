//! The state file on disk: writing a base atomically, reading it back,
//! and why either failed. [`crate::state`] decides what goes in it,
//! [`crate::journal`] appends the changes between bases.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::saved::{Saved, VERSION};

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the file.
    #[error("state file {}: cannot {what}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file.
    #[error("state file {}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Another daemon owns the file.
    #[error("state file {}: in use by another vtapd (pid {holder}); give this daemon its own --socket or state_file", path.display())]
    Locked {
        /// The file.
        path: PathBuf,
        /// The holder's pid, as it wrote it ("unknown" if unreadable).
        holder: String,
    },
}

/// Reads the base file (without its journal); `None` when there is none.
pub fn read_base(path: &Path) -> Result<Option<Saved>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                what: "read it",
                source,
            })
        }
    };
    let saved: Saved = serde_json::from_slice(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if saved.version != VERSION {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!("version {} (this vtapd reads {VERSION})", saved.version),
        });
    }
    Ok(Some(saved))
}

/// Writes `saved` atomically ([`write_atomically`]). Returns the bytes
/// written.
pub fn store(path: &Path, saved: &Saved) -> Result<u64, Error> {
    let body = serde_json::to_vec_pretty(saved).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomically(path, &body)?;
    Ok(body.len() as u64)
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync,
/// rename, fsync the directory. Mode 0600. A failure leaves the previous
/// file in place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |what: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create its temporary file"))?;
        f.write_all(bytes).map_err(io("write it"))?;
        f.sync_all().map_err(io("sync it"))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io("rename it into place"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync its directory"))
}
