//! The state file's journal: each change appended as one synced line, so a
//! change costs what it changed, not what the daemon serves.
//!
//! # Why
//!
//! Rewriting the whole state file on every change (twice per create:
//! intent, then outcome) made creating 8 192 interfaces take 541 s: the file
//! grows with every interface, so the work grows with the square of the
//! count. Now the state is a **base** file (`vtap.state.json`, written
//! atomically as before) and a **journal** beside it
//! (`vtap.state.json.journal`): a header line naming the base's
//! generation, then one line per change — a JSON array of [`Record`]s,
//! written whole and `fdatasync`ed before the change is answered. When the
//! journal has grown larger than the base, the next change writes a new
//! base (generation + 1) and starts a new journal; so the total written
//! stays proportional to what changed.
//!
//! # Crashes
//!
//! - A line torn by a crash (or a full disk) is the last one: reading stops
//!   at the first line that does not parse, and what followed it was never
//!   answered. A failed append is cut back off the file at once, so later
//!   lines never follow a torn one.
//! - Between a new base and its journal: the base says generation g + 1, the
//!   old journal g; a journal whose generation is not the base's is ignored
//!   (the base holds everything it had).

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vtap::forward::Xconnect;

use crate::saved::{Pending, Saved, SavedBridge, SavedHostInterface, SavedTap, SavedVxlan};
use crate::statefile::Error;

/// A journal this much larger than its base (and at least this many lines)
/// is folded into a new base.
const MIN_LINES_TO_FOLD: usize = 64;
/// ... and at least this many bytes.
const MIN_BYTES_TO_FOLD: u64 = 1 << 20;

/// One change.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Record {
    /// An interface, new or changed.
    Tap {
        /// It, as saved.
        tap: Box<SavedTap>,
    },
    /// An interface gone.
    TapGone {
        /// Its id.
        id: u32,
    },
    /// Every host uplink.
    HostInterfaces {
        /// As saved.
        list: Vec<SavedHostInterface>,
    },
    /// Every VXLAN tunnel.
    VxlanTunnels {
        /// As saved.
        list: Vec<SavedVxlan>,
    },
    /// Every cross-connect.
    Xconnects {
        /// As saved.
        list: Vec<Xconnect>,
    },
    /// A bridge domain, new or with a new learn limit, whole.
    Bridge {
        /// It.
        bridge: SavedBridge,
    },
    /// A bridge domain gone.
    BridgeGone {
        /// Its name.
        name: String,
    },
    /// A port joined a bridge domain.
    BridgeJoin {
        /// The bridge.
        name: String,
        /// The port.
        iface: String,
    },
    /// A port left a bridge domain.
    BridgeLeave {
        /// The bridge.
        name: String,
        /// The port.
        iface: String,
    },
    /// The intents under way.
    Pending {
        /// Every one.
        list: Vec<Pending>,
    },
}

/// The saved state in the shape changes are found and applied in: taps
/// and bridges by key.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    /// Interfaces by id.
    pub taps: BTreeMap<u32, SavedTap>,
    /// Host uplinks.
    pub host_interfaces: Vec<SavedHostInterface>,
    /// VXLAN tunnels.
    pub vxlan_tunnels: Vec<SavedVxlan>,
    /// Cross-connects.
    pub xconnects: Vec<Xconnect>,
    /// Bridge domains by name.
    pub bridges: BTreeMap<String, SavedBridge>,
    /// Intents under way.
    pub pending: Vec<Pending>,
    /// The revision and host MTU each live interface had when its record
    /// was last found current (`vtap::registry::SavedView`): one not
    /// changed since need not be read again.
    pub revs: std::collections::HashMap<u32, (u64, u32)>,
    /// What the last save looked at, so that the next one may look only
    /// at what changed since (`None`: look at everything).
    pub seen: Option<Seen>,
}

/// The registry as the last save saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Its revision (`vtap::registry::Registry::revision`).
    pub rev: u64,
    /// Its count of host-side MTU changes.
    pub mtu_epoch: u64,
    /// The detached interfaces' ids (not in the registry).
    pub detached: std::collections::BTreeSet<u32>,
}

impl Mirror {
    /// From a saved state.
    pub fn from_saved(s: Saved) -> Self {
        Self {
            taps: s.taps.into_iter().map(|t| (t.info.id, t)).collect(),
            host_interfaces: s.host_interfaces,
            vxlan_tunnels: s.vxlan_tunnels,
            xconnects: s.xconnects,
            bridges: s.bridges.into_iter().map(|b| (b.name.clone(), b)).collect(),
            pending: s.pending,
            revs: std::collections::HashMap::new(),
            seen: None,
        }
    }

    /// As a saved state of `generation`.
    pub fn to_saved(&self, generation: u64) -> Saved {
        Saved {
            version: crate::saved::VERSION,
            generation,
            taps: self.taps.values().cloned().collect(),
            host_interfaces: self.host_interfaces.clone(),
            vxlan_tunnels: self.vxlan_tunnels.clone(),
            xconnects: self.xconnects.clone(),
            bridges: self.bridges.values().cloned().collect(),
            pending: self.pending.clone(),
        }
    }

    /// Applies one change.
    pub fn apply(&mut self, r: &Record) {
        match r {
            Record::Tap { tap } => {
                self.taps.insert(tap.info.id, (**tap).clone());
            }
            Record::TapGone { id } => {
                self.taps.remove(id);
                self.revs.remove(id);
            }
            Record::HostInterfaces { list } => self.host_interfaces.clone_from(list),
            Record::VxlanTunnels { list } => self.vxlan_tunnels.clone_from(list),
            Record::Xconnects { list } => self.xconnects.clone_from(list),
            Record::Bridge { bridge } => {
                self.bridges.insert(bridge.name.clone(), bridge.clone());
            }
            Record::BridgeGone { name } => {
                self.bridges.remove(name);
            }
            Record::BridgeJoin { name, iface } => {
                if let Some(b) = self.bridges.get_mut(name) {
                    if !b.interfaces.contains(iface) {
                        b.interfaces.push(iface.clone());
                    }
                }
            }
            Record::BridgeLeave { name, iface } => {
                if let Some(b) = self.bridges.get_mut(name) {
                    b.interfaces.retain(|i| i != iface);
                }
            }
            Record::Pending { list } => self.pending.clone_from(list),
        }
    }
}

/// Whether two lists serialise alike (the small sections are compared
/// whole, as they are written).
fn same<T: Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The records that turn `m`'s sections other than taps into these.
pub fn section_changes(
    m: &Mirror,
    host_interfaces: &[SavedHostInterface],
    vxlan_tunnels: &[SavedVxlan],
    xconnects: &[Xconnect],
    bridges: &[SavedBridge],
    pending: &[Pending],
    out: &mut Vec<Record>,
) {
    if !same(&m.host_interfaces.as_slice(), &host_interfaces) {
        out.push(Record::HostInterfaces {
            list: host_interfaces.to_vec(),
        });
    }
    if !same(&m.vxlan_tunnels.as_slice(), &vxlan_tunnels) {
        out.push(Record::VxlanTunnels {
            list: vxlan_tunnels.to_vec(),
        });
    }
    if !same(&m.xconnects.as_slice(), &xconnects) {
        out.push(Record::Xconnects {
            list: xconnects.to_vec(),
        });
    }
    bridge_changes(m, bridges, out);
    if m.pending.as_slice() != pending {
        out.push(Record::Pending {
            list: pending.to_vec(),
        });
    }
}

/// Bridges new, gone, with a new limit (whole), or with ports joined and
/// left (one record each: a bridge of thousands of ports is not rewritten
/// for one).
fn bridge_changes(m: &Mirror, bridges: &[SavedBridge], out: &mut Vec<Record>) {
    for b in bridges {
        let Some(old) = m
            .bridges
            .get(&b.name)
            .filter(|o| o.mac_limit == b.mac_limit)
        else {
            out.push(Record::Bridge { bridge: b.clone() });
            continue;
        };
        let was: HashSet<&String> = old.interfaces.iter().collect();
        let is: HashSet<&String> = b.interfaces.iter().collect();
        for i in b.interfaces.iter().filter(|i| !was.contains(i)) {
            out.push(Record::BridgeJoin {
                name: b.name.clone(),
                iface: i.clone(),
            });
        }
        for i in old.interfaces.iter().filter(|i| !is.contains(i)) {
            out.push(Record::BridgeLeave {
                name: b.name.clone(),
                iface: i.clone(),
            });
        }
    }
    for name in m.bridges.keys() {
        if !bridges.iter().any(|b| &b.name == name) {
            out.push(Record::BridgeGone { name: name.clone() });
        }
    }
}

/// The first line of a journal: the base generation it continues.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    generation: u64,
}

/// The journal beside `base`.
pub fn path_of(base: &Path) -> PathBuf {
    PathBuf::from(format!("{}.journal", base.display()))
}

/// Applies the journal beside `base` to `saved` (read from `base`): only a
/// journal of the same generation, and only its whole lines.
pub fn replay(base: &Path, saved: &mut Saved) -> Result<(), Error> {
    let path = path_of(base);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                path,
                what: "read it",
                source,
            })
        }
    };
    let mut lines = std::io::BufReader::new(file).lines();
    let header = lines.next().and_then(Result::ok);
    let generation = header
        .and_then(|h| serde_json::from_str::<Header>(&h).ok())
        .map(|h| h.generation);
    if generation != Some(saved.generation) {
        return Ok(());
    }
    let mut m = Mirror::from_saved(std::mem::take(saved));
    for line in lines {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let Ok(records) = serde_json::from_str::<Vec<Record>>(&line) else {
            break;
        };
        for r in &records {
            m.apply(r);
        }
    }
    *saved = m.to_saved(generation.unwrap_or(0));
    Ok(())
}

/// An open journal and the state it and its base hold.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    generation: u64,
    lines: usize,
    bytes: u64,
    base_bytes: u64,
    /// A failed append could not be cut off: the next change writes a new
    /// base instead.
    broken: bool,
    /// What base and journal hold.
    pub mirror: Mirror,
}

impl Journal {
    /// Writes `saved` as the base of generation `generation` (atomically,
    /// [`crate::statefile::store`]) and starts an empty journal after it.
    pub fn start(base: &Path, mut saved: Saved, generation: u64) -> Result<Self, Error> {
        saved.generation = generation;
        let base_bytes = crate::statefile::store(base, &saved)?;
        let path = path_of(base);
        let io = |what: &'static str| {
            let path = path.clone();
            move |source| Error::Io { path, what, source }
        };
        let mut header = serde_json::to_vec(&Header { generation }).map_err(|e| Error::Format {
            path: path.clone(),
            message: e.to_string(),
        })?;
        header.push(b'\n');
        crate::statefile::write_atomically(&path, &header)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io("open it"))?;
        Ok(Self {
            bytes: header.len() as u64,
            path,
            file,
            generation,
            lines: 0,
            base_bytes,
            broken: false,
            mirror: Mirror::from_saved(saved),
        })
    }

    /// The base generation this journal continues.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the next change should write a new base: the journal has
    /// outgrown it, or an append could not be undone.
    pub fn wants_new_base(&self) -> bool {
        self.broken
            || (self.lines >= MIN_LINES_TO_FOLD
                && self.bytes > self.base_bytes.max(MIN_BYTES_TO_FOLD))
    }

    /// Appends `records` as one line, synced, and applies them to the
    /// mirror. A failure leaves the journal (and the mirror) as before.
    pub fn append(&mut self, records: &[Record]) -> Result<(), Error> {
        let mut line = serde_json::to_vec(records).map_err(|e| Error::Format {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        // Where this line starts: the file's end (another writer, or a
        // test, may have appended blank lines since).
        let start = self.file.metadata().map_or(self.bytes, |m| m.len());
        let written = self
            .file
            .write_all(&line)
            .map_err(|source| (source, "write it"))
            .and_then(|()| self.file.sync_data().map_err(|source| (source, "sync it")));
        if let Err((source, what)) = written {
            // Cut the torn line off, so no later line follows it.
            if self.file.set_len(start).is_err() {
                self.broken = true;
            }
            return Err(Error::Io {
                path: self.path.clone(),
                what,
                source,
            });
        }
        self.bytes = start + line.len() as u64;
        self.lines += 1;
        for r in records {
            self.mirror.apply(r);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
