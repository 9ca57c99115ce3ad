//! Network namespaces: naming them as VPP does, and doing work inside them.
//!
//! # Design
//!
//! A namespace is named the way VPP's `host-ns` names it: a bare name means
//! `/var/run/netns/NAME` (what `ip netns add` creates), an absolute path is
//! used as it is, and `pid:N` means `/proc/N/ns/net`. The namespace file is
//! opened once and the fd kept for the life of the interface: the path may be
//! unmounted or reused later, the fd keeps naming the same namespace.
//!
//! Two kinds of kernel objects remember the namespace of the thread that made
//! them: a `/dev/net/tun` file (its `TUNSETIFF` creates the interface there) and
//! a netlink socket (its requests act there). [`Netns::run_in`] makes them on a
//! short-lived thread that enters the namespace with `setns(2)`; the objects
//! keep the namespace after the thread is gone. No thread of the caller (and
//! never a tokio worker) changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where `ip netns add NAME` puts the namespace file.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// Why a namespace could not be named or used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec itself is malformed.
    #[error("host-ns '{spec}': {reason}")]
    Invalid {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The namespace file does not exist or cannot be opened.
    #[error("host-ns '{spec}': cannot open {}", path.display())]
    Open {
        /// The spec as given.
        spec: String,
        /// The file it names.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file exists but is not a network namespace.
    #[error("host-ns '{spec}': {} is not a network namespace", path.display())]
    NotNetns {
        /// The spec as given.
        spec: String,
        /// The file it names.
        path: PathBuf,
        /// The OS error from setns.
        #[source]
        source: io::Error,
    },
    /// Entering the namespace needs a privilege the process lacks.
    #[error(
        "host-ns '{spec}': permission denied entering it (setns needs CAP_SYS_ADMIN; run as root)"
    )]
    Permission {
        /// The spec as given.
        spec: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The namespace's file now names another namespace (it was deleted
    /// and one of the same name made).
    #[error("host-ns '{spec}': no longer the namespace the interface is in (deleted, or replaced by another of that name)")]
    Replaced {
        /// The spec as given.
        spec: String,
    },
    /// `setns(2)` failed.
    #[error("cannot enter the namespace")]
    Enter(#[source] io::Error),
    /// The helper thread that enters the namespace could not be started.
    #[error("cannot start a thread to enter the namespace")]
    Thread(#[source] io::Error),
}

/// How a user names a network namespace (VPP's `host-ns` syntax).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum NetnsSpec {
    /// `NAME`: `/var/run/netns/NAME`.
    Name(String),
    /// `/absolute/path`.
    Path(PathBuf),
    /// `pid:N`: `/proc/N/ns/net`.
    Pid(u32),
}

impl NetnsSpec {
    /// The file this spec names.
    pub fn path(&self) -> PathBuf {
        match self {
            Self::Name(n) => Path::new(NETNS_RUN_DIR).join(n),
            Self::Path(p) => p.clone(),
            Self::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }
}

fn invalid(spec: &str, reason: &'static str) -> Error {
    Error::Invalid {
        spec: spec.to_string(),
        reason,
    }
}

impl FromStr for NetnsSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Err(invalid(s, "empty"));
        }
        if s.contains('\0') {
            return Err(invalid(s, "contains a NUL byte"));
        }
        if let Some(pid) = s.strip_prefix("pid:") {
            let n: u32 = pid
                .parse()
                .map_err(|_| invalid(s, "pid:N needs a decimal process id"))?;
            if n == 0 {
                return Err(invalid(s, "pid 0 is not a process"));
            }
            return Ok(Self::Pid(n));
        }
        if s.starts_with('/') {
            if Path::new(s)
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(invalid(s, "a path may not contain '..'"));
            }
            return Ok(Self::Path(PathBuf::from(s)));
        }
        if s == "." || s == ".." {
            return Err(invalid(s, "'.' and '..' are not namespace names"));
        }
        if s.contains('/') {
            return Err(invalid(
                s,
                "a namespace name may not contain '/' (use an absolute path)",
            ));
        }
        if s.len() > 255 {
            return Err(invalid(s, "a namespace name is at most 255 bytes"));
        }
        Ok(Self::Name(s.to_string()))
    }
}

impl std::fmt::Display for NetnsSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Pid(pid) => write!(f, "pid:{pid}"),
        }
    }
}

impl TryFrom<String> for NetnsSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<NetnsSpec> for String {
    fn from(s: NetnsSpec) -> String {
        s.to_string()
    }
}

/// An open network namespace.
#[derive(Debug)]
pub struct Netns {
    spec: Option<NetnsSpec>,
    file: File,
    inode: u64,
    /// The process's own namespace: work in it needs no `setns` (and so no
    /// CAP_SYS_ADMIN).
    own: bool,
}

impl Netns {
    /// The namespace of the calling process (the daemon's own).
    pub fn current() -> Result<Self, Error> {
        let path = PathBuf::from("/proc/self/ns/net");
        let file = File::open(&path).map_err(|source| Error::Open {
            spec: "self".into(),
            path,
            source,
        })?;
        let inode = file
            .metadata()
            .map_err(|source| Error::Open {
                spec: "self".into(),
                path: PathBuf::from("/proc/self/ns/net"),
                source,
            })?
            .ino();
        Ok(Self {
            spec: None,
            file,
            inode,
            own: true,
        })
    }

    /// Opens the namespace `spec` names and checks that it is one.
    ///
    /// The path is checked to be a namespace file (`nsfs`) *before* it is
    /// opened, so that a caller's path to a FIFO, a device or anything else
    /// is refused without being opened (opening some devices has effects:
    /// a watchdog starts, a tape rewinds; a FIFO would block), and the open
    /// is non-blocking; the opened file is checked again.
    pub fn open(spec: &NetnsSpec) -> Result<Self, Error> {
        let (file, inode) = Self::open_file(spec)?;
        let path = spec.path();
        let ns = Self {
            spec: Some(spec.clone()),
            file,
            inode,
            own: false,
        };
        // setns(CLONE_NEWNET) refuses anything but a network namespace file:
        // entering it once on a throwaway thread is the authoritative check.
        match ns.run_in(|| ()) {
            Ok(()) => Ok(ns),
            Err(Error::Enter(source)) => Err(match source.raw_os_error() {
                Some(libc::EINVAL) => Error::NotNetns {
                    spec: spec.to_string(),
                    path,
                    source,
                },
                Some(libc::EPERM) => Error::Permission {
                    spec: spec.to_string(),
                    source,
                },
                _ => Error::Enter(source),
            }),
            Err(e) => Err(e),
        }
    }

    /// Opens `spec` again, as the namespace of inode `inode` it named when
    /// [`Netns::open`] checked it: a handle given up to save an fd
    /// ([`Netns::reopenable`]) and taken again when it is needed. Another
    /// namespace under that name is refused.
    pub fn reopen(spec: &NetnsSpec, inode: u64) -> Result<Self, Error> {
        let (file, found) = Self::open_file(spec)?;
        if found != inode {
            return Err(Error::Replaced {
                spec: spec.to_string(),
            });
        }
        Ok(Self {
            spec: Some(spec.clone()),
            file,
            inode,
            own: false,
        })
    }

    /// Whether a handle on this namespace may be closed and opened again by
    /// its path: a bind mount (`ip netns add`, a CNI runtime's) keeps the
    /// namespace alive and its path names it; a `/proc` path names a
    /// process, which may go while the namespace lives on.
    pub fn reopenable(&self) -> bool {
        match &self.spec {
            Some(NetnsSpec::Name(_)) => true,
            Some(NetnsSpec::Path(p)) => !p.starts_with("/proc"),
            Some(NetnsSpec::Pid(_)) | None => false,
        }
    }

    /// The namespace file `spec` names, opened and checked to be one
    /// (`nsfs`), with its inode.
    fn open_file(spec: &NetnsSpec) -> Result<(File, u64), Error> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = spec.path();
        let open_err = |source| Error::Open {
            spec: spec.to_string(),
            path: path.clone(),
            source,
        };
        let not_ns = || Error::NotNetns {
            spec: spec.to_string(),
            path: path.clone(),
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| invalid(&spec.to_string(), "contains a NUL byte"))?;
        if crate::sys::statfs_type(&c_path).map_err(open_err)? != crate::sys::NSFS_MAGIC {
            return Err(not_ns());
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&path)
            .map_err(open_err)?;
        if crate::sys::fstatfs_type(file.as_fd()).map_err(open_err)? != crate::sys::NSFS_MAGIC {
            return Err(not_ns());
        }
        let inode = file
            .metadata()
            .map_err(|source| Error::Open {
                spec: spec.to_string(),
                path: path.clone(),
                source,
            })?
            .ino();
        Ok((file, inode))
    }

    /// The spec it was opened from; `None` for the daemon's own namespace.
    pub fn spec(&self) -> Option<&NetnsSpec> {
        self.spec.as_ref()
    }

    /// The namespace's inode number (what `ip netns identify` compares).
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Another handle on the same namespace.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            spec: self.spec.clone(),
            file: self.file.try_clone()?,
            inode: self.inode,
            own: self.own,
        })
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns
    /// its result. Objects `f` creates keep the namespace.
    ///
    /// In the process's own namespace `f` runs on the calling thread.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, Error> {
        if self.own {
            return Ok(f());
        }
        let fd = self.file.as_fd();
        std::thread::scope(|s| {
            let worker = std::thread::Builder::new()
                .name("vtap-netns".into())
                .spawn_scoped(s, move || {
                    crate::sys::setns_net(fd)?;
                    Ok::<T, io::Error>(f())
                })
                .map_err(Error::Thread)?;
            match worker.join() {
                Ok(r) => r.map_err(Error::Enter),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

/// A named network namespace this process created (`ip netns add`); removed
/// on drop (`ip netns del`). For the demo and tests: vtap never creates the
/// namespaces it is asked to plug into.
#[derive(Debug)]
pub struct OwnedNetns {
    name: String,
    path: std::ffi::CString,
}

impl OwnedNetns {
    /// Creates `/var/run/netns/NAME` (an error if it exists).
    pub fn create(name: &str) -> Result<Self, Error> {
        let spec: NetnsSpec = name.parse()?;
        let NetnsSpec::Name(name) = spec else {
            return Err(invalid(name, "expected a plain namespace name"));
        };
        let open_err = |source| Error::Open {
            spec: name.clone(),
            path: Path::new(NETNS_RUN_DIR).join(&name),
            source,
        };
        std::fs::create_dir_all(NETNS_RUN_DIR).map_err(open_err)?;
        let path = Path::new(NETNS_RUN_DIR).join(&name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(open_err)?;
        let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| invalid(&name, "contains a NUL byte"))?;
        let me = Self { name, path: cpath };
        // A new namespace on a throwaway thread, pinned by a bind mount of its
        // namespace file: it lives on after the thread.
        let mounted = std::thread::scope(|s| {
            s.spawn(|| {
                crate::sys::unshare_net()?;
                crate::sys::bind_mount(c"/proc/thread-self/ns/net", &me.path)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        });
        mounted.map_err(Error::Enter)?;
        Ok(me)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for OwnedNetns {
    fn drop(&mut self) {
        let _ = crate::sys::umount_detach(&self.path);
        let _ = std::fs::remove_file(Path::new(NETNS_RUN_DIR).join(&self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::OpenOptionsExt;

    /// A caller's path that is not a namespace file is refused before it is
    /// opened: a FIFO (whose open would block the daemon), a plain file, a
    /// device. Nothing is opened (the FIFO's reader side would unblock a
    /// writer if it were).
    #[test]
    fn a_path_that_is_no_namespace_is_refused_unopened() {
        let dir = std::env::temp_dir().join(format!("vtap-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let plain = dir.join("plain");
        std::fs::write(&plain, b"x").expect("file");
        for p in [fifo.clone(), plain, PathBuf::from("/dev/null")] {
            let started = std::time::Instant::now();
            let e = Netns::open(&NetnsSpec::Path(p.clone())).expect_err("refused");
            assert!(matches!(e, Error::NotNetns { .. }), "{}: {e}", p.display());
            assert!(e.to_string().contains("is not a network namespace"), "{e}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "did not block"
            );
        }
        // A writer opening the FIFO non-blockingly finds no reader: vtap never
        // opened it.
        let w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo);
        assert_eq!(w.err().and_then(|e| e.raw_os_error()), Some(libc::ENXIO));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn spec_parse_table() {
        let ok: &[(&str, NetnsSpec)] = &[
            ("blue", NetnsSpec::Name("blue".into())),
            ("ns-1.a_b", NetnsSpec::Name("ns-1.a_b".into())),
            ("/run/netns/x", NetnsSpec::Path("/run/netns/x".into())),
            ("/proc/1/ns/net", NetnsSpec::Path("/proc/1/ns/net".into())),
            ("pid:1", NetnsSpec::Pid(1)),
            ("pid:4194304", NetnsSpec::Pid(4194304)),
        ];
        for (s, want) in ok {
            assert_eq!(&s.parse::<NetnsSpec>().expect(s), want);
            assert_eq!(want.to_string(), *s, "display round trip");
        }
        let bad: &[(&str, &str)] = &[
            ("", "empty"),
            (".", "'.' and '..'"),
            ("..", "'.' and '..'"),
            ("../../etc", "may not contain '/'"),
            ("a/b", "may not contain '/'"),
            ("/var/run/netns/../../etc/passwd", "'..'"),
            ("pid:", "decimal"),
            ("pid:-1", "decimal"),
            ("pid:x", "decimal"),
            ("pid:0", "pid 0"),
            ("a\0b", "NUL"),
        ];
        for (s, frag) in bad {
            let e = s.parse::<NetnsSpec>().expect_err(s).to_string();
            assert!(e.starts_with("host-ns '"), "{e}");
            assert!(e.contains(frag), "{s:?}: {e}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(
            NetnsSpec::Name("x".into()).path(),
            PathBuf::from("/var/run/netns/x")
        );
        assert_eq!(NetnsSpec::Pid(7).path(), PathBuf::from("/proc/7/ns/net"));
    }
}
