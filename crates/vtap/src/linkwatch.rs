//! Host-side link changes, as the kernel announces them.
//!
//! # Why
//!
//! An operator may change the host side of a tap behind vtap's back
//! (`ip link set tap0 mtu 9000` in the pod's namespace). VPP's tapv2 never
//! notices (its own TODO: "sync MTU"); vtap follows it. Polling would either
//! lag or cost a netlink dump per interface per period, so the registry
//! listens instead: one route-netlink socket per namespace that holds a tap,
//! joined to the link multicast group ([`host::LinkEvents`]), and one task
//! per socket that writes each watched link's MTU into a cell the [`Tap`]
//! shares. Reading an interface's MTU is then a load, and a change shows the
//! moment the kernel makes it — with one log line, as every control-plane
//! action has.
//!
//! # Lifetime
//!
//! [`LinkWatch::watch`] hands out a [`Watched`] guard per interface; the
//! namespace's socket lives while at least one guard for it does. Dropping
//! the last guard aborts the task, which closes the socket: a deleted tap
//! leaves no fd behind.
//!
//! [`Tap`]: crate::registry

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::host::{self, LinkEvent, LinkEvents};
use crate::netns::Netns;

/// The links watched in one namespace and the task that listens there.
#[derive(Debug)]
struct NsWatch {
    /// ifindex → the link's cells.
    links: HashMap<u32, Cells>,
    task: tokio::task::JoinHandle<()>,
}

type Table = HashMap<u64, NsWatch>;

/// What the listener and the interface share about one link.
#[derive(Debug, Clone)]
struct Cells {
    /// The interface id, for the log.
    id: u32,
    /// Its MTU as the kernel last announced it.
    mtu: Arc<AtomicU32>,
    /// vtap itself is deleting the link: its removal is no news.
    deleting: Arc<AtomicBool>,
    /// Counts MTU changes of every watched link ([`LinkWatch::mtu_epoch`]).
    epoch: Arc<AtomicU64>,
}

/// Every namespace watched, by namespace inode.
#[derive(Debug, Default, Clone)]
pub struct LinkWatch {
    table: Arc<Mutex<Table>>,
    /// Bumped after every MTU change a listener writes.
    epoch: Arc<AtomicU64>,
}

fn lock(t: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // The table stays consistent across a panic (every update is one
    // insert or remove), so a poisoned lock is still usable.
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LinkWatch {
    /// Watches link `ifindex` in `ns` (interface `id`), starting from `mtu`.
    /// Opens the namespace's socket if this is its first watched link.
    /// Needs a tokio runtime.
    pub fn watch(
        &self,
        ns: &Netns,
        ifindex: u32,
        id: u32,
        mtu: u32,
    ) -> Result<Watched, host::Error> {
        let inode = ns.inode();
        let cells = Cells {
            id,
            mtu: Arc::new(AtomicU32::new(mtu)),
            deleting: Arc::new(AtomicBool::new(false)),
            epoch: self.epoch.clone(),
        };
        let mut table = lock(&self.table);
        let w = match table.entry(inode) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let events = LinkEvents::open(ns)?;
                let task = tokio::spawn(listen(events, inode, Arc::downgrade(&self.table)));
                e.insert(NsWatch {
                    links: HashMap::new(),
                    task,
                })
            }
        };
        w.links.insert(ifindex, cells.clone());
        Ok(Watched {
            table: self.table.clone(),
            inode,
            ifindex,
            mtu: cells.mtu,
            deleting: cells.deleting,
        })
    }

    /// How many host-side MTU changes the listeners have written: one who
    /// read this count and then every link's MTU has seen every change the
    /// count includes.
    pub fn mtu_epoch(&self) -> u64 {
        // Acquire: pairs with the Release increment after each MTU store,
        // so the MTUs read after this load are at least as new as the
        // changes it counts.
        self.epoch.load(Ordering::Acquire)
    }

    /// How many namespaces have a socket open (for tests and metrics).
    pub fn namespaces(&self) -> usize {
        lock(&self.table).len()
    }
}

/// One watched link; dropping it stops watching (and closes the
/// namespace's socket when it was the last link there).
#[derive(Debug)]
pub struct Watched {
    table: Arc<Mutex<Table>>,
    inode: u64,
    ifindex: u32,
    mtu: Arc<AtomicU32>,
    deleting: Arc<AtomicBool>,
}

impl Watched {
    /// Says that vtap is deleting the link (`true`), or that a deletion
    /// failed and the link stays (`false`): only a removal vtap did not
    /// make is logged as a warning.
    pub fn expect_removal(&self, yes: bool) {
        // Relaxed: a lone flag; the removal event it qualifies comes from the
        // kernel well after the store.
        self.deleting.store(yes, Ordering::Relaxed);
    }

    /// The link's MTU as the kernel last announced it.
    pub fn mtu(&self) -> u32 {
        // Relaxed: a lone value, published by one writer; nothing else is
        // read in relation to it.
        self.mtu.load(Ordering::Relaxed)
    }

    /// Records an MTU vtap itself just set and read back (the event for it
    /// may still be in flight; it carries the same value).
    pub fn set_mtu(&self, mtu: u32) {
        self.mtu.store(mtu, Ordering::Relaxed);
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        let Some(w) = table.get_mut(&self.inode) else {
            return;
        };
        w.links.remove(&self.ifindex);
        if w.links.is_empty() {
            if let Some(w) = table.remove(&self.inode) {
                w.task.abort();
            }
        }
    }
}

/// Applies one namespace's events to the watched links until the socket
/// closes or the watch is gone.
async fn listen(mut events: LinkEvents, inode: u64, table: std::sync::Weak<Mutex<Table>>) {
    while let Some(event) = events.next().await {
        let Some(table) = table.upgrade() else {
            return;
        };
        let table = lock(&table);
        let Some(w) = table.get(&inode) else {
            return;
        };
        let _ = apply(&w.links, &event);
    }
}

/// What one event means for the watched links.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    /// Nothing vtap watches.
    None,
    /// A watched link's MTU changed (from, to).
    Mtu(u32, u32),
    /// A watched link was deleted by vtap itself.
    DeletedByVtap,
    /// A watched link was deleted behind vtap's back.
    DeletedBehind,
}

/// Applies one event (the MTU of a watched link) and says what it was.
fn apply(links: &HashMap<u32, Cells>, event: &LinkEvent) -> Effect {
    match event {
        LinkEvent::Changed(link) => {
            // A message without IFLA_MTU (mtu 0) says nothing about it.
            let Some(c) = links.get(&link.index).filter(|_| link.mtu != 0) else {
                return Effect::None;
            };
            let was = c.mtu.swap(link.mtu, Ordering::Relaxed);
            if was == link.mtu {
                return Effect::None;
            }
            // Release: orders the MTU store above before the count moves,
            // for a reader that loads the count (Acquire) and then the MTU.
            c.epoch.fetch_add(1, Ordering::Release);
            tracing::info!(
                id = c.id,
                from = was,
                to = link.mtu,
                "host-side mtu changed"
            );
            Effect::Mtu(was, link.mtu)
        }
        LinkEvent::Removed(index) => {
            let Some(c) = links.get(index) else {
                return Effect::None;
            };
            if c.deleting.load(Ordering::Relaxed) {
                return Effect::DeletedByVtap;
            }
            tracing::warn!(
                id = c.id,
                ifindex = index,
                "host side of the interface was deleted behind vtap's back"
            );
            Effect::DeletedBehind
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Link;

    fn links() -> HashMap<u32, Cells> {
        HashMap::from([(
            7,
            Cells {
                id: 0,
                mtu: Arc::new(AtomicU32::new(1500)),
                deleting: Arc::new(AtomicBool::new(false)),
                epoch: Arc::new(AtomicU64::new(0)),
            },
        )])
    }

    fn changed(index: u32, mtu: u32) -> LinkEvent {
        LinkEvent::Changed(Link {
            index,
            mtu,
            ..Link::default()
        })
    }

    #[test]
    fn events_update_only_watched_links() {
        let cases = [
            (changed(7, 9000), 9000, Effect::Mtu(1500, 9000)),
            (changed(8, 9000), 1500, Effect::None),
            (changed(7, 1500), 1500, Effect::None),
            (changed(7, 0), 1500, Effect::None),
            (LinkEvent::Removed(7), 1500, Effect::DeletedBehind),
            (LinkEvent::Removed(8), 1500, Effect::None),
        ];
        for (event, want, effect) in cases {
            let l = links();
            assert_eq!(apply(&l, &event), effect, "{event:?}");
            assert_eq!(l[&7].mtu.load(Ordering::Relaxed), want, "{event:?}");
            // The count moves with every MTU change, and only then.
            let moved = u64::from(matches!(effect, Effect::Mtu(..)));
            assert_eq!(l[&7].epoch.load(Ordering::Acquire), moved, "{event:?}");
        }
    }

    #[test]
    fn a_removal_vtap_makes_is_no_news() {
        let l = links();
        l[&7].deleting.store(true, Ordering::Relaxed);
        assert_eq!(apply(&l, &LinkEvent::Removed(7)), Effect::DeletedByVtap);
    }
}
