//! Restart without losing interfaces, and no change reported done that is
//! not durable.
//!
//! After every change the daemon writes what it serves — interfaces,
//! cross-connects, bridge domains — to a state file: a base written
//! atomically (a temporary file in the same directory, fsync, rename, fsync
//! of the directory) and a journal of the changes since, one synced line
//! each ([`crate::journal`]: what changed, not everything), so a crash at
//! any moment leaves either the old or the new state, never half of one. The file lives beside the socket by default, named after it
//! (`/run/vtap/vtap.sock` → `/run/vtap/vtap.state.json`: like persistent
//! taps, it does not outlive a reboot), or where `state_file` in the config
//! says. One daemon owns a state file: it holds an exclusive lock on
//! `<file>.lock` (with its pid inside) for its whole life, and a second
//! daemon pointed at the same file refuses to start, naming the holder.
//!
//! # Durability
//!
//! - A change whose new state cannot be written (a full disk, a read-only
//!   directory) is undone and refused: the API answers 503 naming the file
//!   and the reason.
//! - Creating and deleting an interface are kernel operations of many steps,
//!   and a daemon can die in the middle of one. So the intent is written
//!   first (write-ahead: `pending` in the file, with the interface's id,
//!   name and namespace), then the kernel is changed, then the outcome is
//!   written. A restarted daemon reconciles every pending intent before it
//!   restores anything: an interrupted create is rolled back (a TAP/TUN link
//!   of that name left in that namespace is deleted; an attach leaves the
//!   interface as it was), an interrupted delete is finished. So a `kill -9`
//!   at any step leaves no interface vtap does not know, and none that vtap
//!   shows but the kernel lacks.
//!
//! At start the daemon brings itself back to the saved state: every
//! interface created with `persist` still exists in the kernel (its link,
//! MAC, addresses and routes untouched: the host side never sees it go
//! away), so it is re-attached under the same id, with the same data-plane
//! MAC, queues, rings, offloads and rx mode; then cross-connects and bridge
//! domains are rebuilt. One that cannot be re-attached stays in the state
//! file and is shown `detached` with its reason, retried on a timer
//! (`reattach_interval_secs`) and by `POST /v1/taps/{if}/attach`, and can be
//! deleted. Interfaces created without `persist` died with the old daemon's
//! fds; they are reported and dropped.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use vtap::datapath::limit::{Direction, RateLimits};
use vtap::datapath::RxMode;
use vtap::node::Node;
use vtap::registry::{error_chain, AttachState, Registry, SavedView};
use vtap::{CreateOptions, TapInfo};

use crate::app::{
    detached, detached_tunnels, detached_uplinks, AppState, Detached, DetachedTunnel,
    DetachedUplink,
};
use crate::journal::{self, Journal, Mirror, Record};
pub use crate::saved::{
    Memberships, Pending, PendingOp, Saved, SavedBridge, SavedHostInterface, SavedTap, SavedVxlan,
    VERSION,
};
pub use crate::statefile::{store, Error};

/// The state file for a daemon serving `socket`, unless the config names
/// one: beside the socket, named after it, so that daemons on different
/// sockets in one directory never share a file.
pub fn default_path(socket: &Path) -> PathBuf {
    let stem = socket
        .file_stem()
        .map_or_else(|| "vtapd".into(), |s| s.to_string_lossy().into_owned());
    socket
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(format!("{stem}.state.json"))
}

/// Reads the state: the base file and its journal; `None` when there is
/// none.
pub fn load(path: &Path) -> Result<Option<Saved>, Error> {
    let Some(mut saved) = crate::statefile::read_base(path)? else {
        return Ok(None);
    };
    journal::replay(path, &mut saved)?;
    Ok(Some(saved))
}

/// The exclusive hold on a state file, for the daemon's life.
#[derive(Debug)]
pub struct StateLock(#[allow(dead_code)] File);

/// Takes the state file's lock (`<file>.lock`, holding our pid); refuses
/// when another daemon holds it.
pub fn lock(path: &Path) -> Result<StateLock, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let io = |what: &'static str| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io("create its directory"))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io("open its lock file"))?;
    if !vtap::sys::flock_exclusive(&f).map_err(io("lock it"))? {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(Error::Locked {
            path: path.to_path_buf(),
            holder: if holder.is_empty() {
                "unknown".into()
            } else {
                holder.into()
            },
        });
    }
    f.set_len(0).map_err(io("write its lock file"))?;
    f.rewind().map_err(io("write its lock file"))?;
    writeln!(f, "{}", std::process::id()).map_err(io("write its lock file"))?;
    Ok(StateLock(f))
}

/// The rate limits a data path has in force, as saved.
fn limits_of(dp: Option<&vtap::datapath::State>) -> Option<RateLimits> {
    dp.and_then(|d| d.rate_limit.as_ref())
        .map(RateLimits::from_state)
}

/// Puts saved rate limits back on interface `name`.
fn restore_limits(node: &mut Node, name: &str, limits: Option<&RateLimits>) {
    let Some(l) = limits else { return };
    for dir in [Direction::Rx, Direction::Tx] {
        if let Some(o) = l.get(dir) {
            if let Err(e) = node.set_rate_limit(name, dir, Some(o)) {
                tracing::error!(iface = %name, error = %error_chain(&e), "rate limit not restored");
            }
        }
    }
}

/// What the daemon serves now besides its live interfaces (`node` is
/// locked): uplinks, tunnels, cross-connects, bridges, the intents
/// `pending`, and the detached interfaces (whose memberships are kept).
struct Sections {
    detached_taps: Vec<SavedTap>,
    host_interfaces: Vec<SavedHostInterface>,
    vxlan_tunnels: Vec<SavedVxlan>,
    xconnects: Vec<vtap::forward::Xconnect>,
    bridges: Vec<SavedBridge>,
    pending: Vec<Pending>,
}

fn sections(s: &AppState, node: &Node, pending: &[Pending]) -> Sections {
    let fwd = &node.forwarder;
    let mut xconnects = fwd.list();
    let mut bridges: Vec<SavedBridge> = fwd
        .bridge_ports()
        .into_iter()
        .map(|(name, interfaces, mac_limit)| SavedBridge {
            name,
            interfaces,
            mac_limit: Some(mac_limit),
        })
        .collect();
    let mut keep = |name: &str, m: &Memberships| {
        for x in &m.xconnects {
            if !xconnects.iter().any(|y| y.a == x.a && y.b == x.b) {
                xconnects.push(x.clone());
            }
        }
        for bd in &m.bridges {
            if let Some(b) = bridges.iter_mut().find(|b| &b.name == bd) {
                if !b.interfaces.iter().any(|i| i == name) {
                    b.interfaces.push(name.to_string());
                }
            }
        }
    };
    let mut detached_taps = Vec::new();
    for d in detached(s).values() {
        detached_taps.push(d.saved.clone());
        keep(&d.saved.info.name, &d.memberships);
    }
    let mut host_interfaces: Vec<SavedHostInterface> = node
        .uplinks
        .list()
        .iter()
        .map(|u| SavedHostInterface {
            options: u.options(),
            rate_limit: limits_of(u.datapath.as_ref()),
        })
        .collect();
    for d in detached_uplinks(s).values() {
        host_interfaces.push(d.saved.clone());
        keep(&d.saved.options.name(), &d.memberships);
    }
    let mut vxlan_tunnels: Vec<SavedVxlan> = node
        .tunnels
        .list()
        .iter()
        .map(|t| SavedVxlan {
            options: t.options(),
            rate_limit: limits_of(t.datapath.as_ref()),
        })
        .collect();
    for (i, d) in detached_tunnels(s).iter() {
        vxlan_tunnels.push(d.saved.clone());
        keep(&format!("vxlan_tunnel{i}"), &d.memberships);
    }
    host_interfaces.sort_by_key(|h| h.options.id);
    vxlan_tunnels.sort_by_key(|t| t.options.instance);
    Sections {
        detached_taps,
        host_interfaces,
        vxlan_tunnels,
        xconnects,
        bridges,
        pending: pending.to_vec(),
    }
}

/// A live interface as saved.
fn saved_tap(v: &SavedView<'_>) -> SavedTap {
    let (rx_mode, rate_limit) = v.settings();
    SavedTap {
        info: TapInfo {
            host_mtu_size: v.host_mtu,
            datapath: None,
            ..v.info.clone()
        },
        rx_mode,
        rate_limit,
    }
}

/// Whether `saved` is what live interface `v` would be saved as (without
/// copying it, unless its host MTU moved since vtap set it).
fn same_tap(saved: Option<&SavedTap>, v: &SavedView<'_>) -> bool {
    let Some(t) = saved else { return false };
    let (rx_mode, rate_limit) = v.settings();
    t.rx_mode == rx_mode
        && t.rate_limit == rate_limit
        && t.info.host_mtu_size == v.host_mtu
        && if v.info.host_mtu_size == v.host_mtu {
            t.info == *v.info
        } else {
            t.info == saved_tap(v).info
        }
}

/// What the daemon serves now (`node` is locked), with the intents
/// `pending`.
pub fn snapshot(s: &AppState, node: &Node, pending: &[Pending]) -> Saved {
    let sec = sections(s, node, pending);
    let mut taps: Vec<SavedTap> = node.registry.saved_views().map(|v| saved_tap(&v)).collect();
    taps.extend(sec.detached_taps);
    taps.sort_by_key(|t| t.info.id);
    Saved {
        version: VERSION,
        generation: 0,
        taps,
        host_interfaces: sec.host_interfaces,
        vxlan_tunnels: sec.vxlan_tunnels,
        xconnects: sec.xconnects,
        bridges: sec.bridges,
        pending: sec.pending,
    }
}

/// The records that bring the journal's mirror `m` to what the daemon
/// serves now: each interface compared in place, the small sections whole,
/// bridge ports one by one.
fn changes(s: &AppState, node: &Node, pending: &[Pending], m: &Mirror) -> Changes {
    let reg = &node.registry;
    // Read before any MTU: a change after this is counted past it, and
    // the next save looks at every interface again.
    let mtu_epoch = reg.mtu_epoch();
    let sec = sections(s, node, pending);
    let detached: std::collections::BTreeSet<u32> =
        sec.detached_taps.iter().map(|t| t.info.id).collect();
    let mut out = Vec::new();
    let mut revs = Vec::new();
    let mut look = |v: vtap::registry::SavedView<'_>, out: &mut Vec<Record>| {
        let id = v.info.id;
        // Neither changed by vtap nor moved by the kernel since last seen.
        if m.revs.get(&id) == Some(&(v.rev, v.host_mtu)) {
            return;
        }
        if !same_tap(m.taps.get(&id), &v) {
            out.push(Record::Tap {
                tap: Box::new(saved_tap(&v)),
            });
        }
        revs.push((id, (v.rev, v.host_mtu)));
    };
    // Only what changed since the last save, when no MTU moved under vtap
    // and the registry still remembers every removal since: a create among
    // 8 192 interfaces is not a pass over 8 192.
    let since = m
        .seen
        .as_ref()
        .filter(|seen| seen.mtu_epoch == mtu_epoch)
        .and_then(|seen| Some((seen, reg.removed_since(seen.rev)?)));
    let gone: Vec<u32> = match since {
        Some((seen, removed)) => {
            for v in reg.saved_views_since(seen.rev) {
                look(v, &mut out);
            }
            // Removed from the registry, or detached no longer.
            let mut maybe: std::collections::BTreeSet<u32> = removed.into_iter().collect();
            maybe.extend(&seen.detached);
            maybe
                .into_iter()
                .filter(|id| m.taps.contains_key(id) && !detached.contains(id))
                .filter(|id| reg.resolve(&id.to_string()).is_err())
                .collect()
        }
        None => {
            let mut live = std::collections::HashSet::with_capacity(m.taps.len() + 1);
            for v in reg.saved_views() {
                live.insert(v.info.id);
                look(v, &mut out);
            }
            m.taps
                .keys()
                .filter(|id| !live.contains(*id) && !detached.contains(*id))
                .copied()
                .collect()
        }
    };
    for t in &sec.detached_taps {
        if m.taps.get(&t.info.id) != Some(t) {
            out.push(Record::Tap {
                tap: Box::new(t.clone()),
            });
        }
    }
    for id in gone {
        out.push(Record::TapGone { id });
    }
    journal::section_changes(
        m,
        &sec.host_interfaces,
        &sec.vxlan_tunnels,
        &sec.xconnects,
        &sec.bridges,
        &sec.pending,
        &mut out,
    );
    let seen = journal::Seen {
        rev: reg.revision(),
        mtu_epoch,
        detached,
    };
    Changes {
        records: out,
        revs,
        seen,
    }
}

/// What [`changes`] found: the records to write, and the revisions of the
/// interfaces it looked at (remembered once the records are written).
struct Changes {
    records: Vec<Record>,
    revs: Vec<(u32, (u64, u32))>,
    /// The registry as this pass saw it.
    seen: journal::Seen,
}

/// The journal slot (saves are serialised by the node lock; a save takes
/// the journal out while it works, holding no other lock meanwhile).
fn journal_slot(s: &AppState) -> std::sync::MutexGuard<'_, Option<Journal>> {
    s.journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Saves what the daemon serves (the caller holds the node lock, which
/// serialises saves), with `pending` intents: the changes since the last
/// save, appended to the journal as one synced line; the first save of a
/// daemon's life, and one after the journal has outgrown its base, writes a
/// new base instead ([`crate::journal`]). Without a state file there is
/// nothing to save.
pub fn save(s: &AppState, node: &Node, pending: &[Pending]) -> Result<(), Error> {
    let Some(path) = &s.state_file else {
        return Ok(());
    };
    let old = journal_slot(s).take();
    let (result, now) = match old {
        Some(mut j) if !j.wants_new_base() => {
            let c = changes(s, node, pending, &j.mirror);
            let r = if c.records.is_empty() {
                Ok(())
            } else {
                j.append(&c.records)
            };
            if r.is_ok() {
                j.mirror.revs.extend(c.revs);
                j.mirror.seen = Some(c.seen);
            }
            (r, Some(j))
        }
        old => {
            let generation = match &old {
                Some(j) => j.generation(),
                // The first save: past whatever the file on disk continues.
                None => load(path).ok().flatten().map_or(0, |s| s.generation),
            } + 1;
            match Journal::start(path, snapshot(s, node, pending), generation) {
                Ok(j) => (Ok(()), Some(j)),
                Err(e) => (Err(e), old),
            }
        }
    };
    *journal_slot(s) = now;
    result
}

/// Saves the intents `pending` alone (write-ahead of a kernel change, while
/// the node is busy making it): one journal line.
pub fn save_pending(s: &AppState, pending: &[Pending]) -> Result<(), Error> {
    let Some(path) = &s.state_file else {
        return Ok(());
    };
    let mut slot = journal_slot(s);
    let Some(j) = slot.as_mut() else {
        return Err(Error::Format {
            path: path.clone(),
            message: "not open yet (the daemon has not saved once)".into(),
        });
    };
    if j.mirror.pending.as_slice() == pending {
        return Ok(());
    }
    j.append(&[Record::Pending {
        list: pending.to_vec(),
    }])
}

/// The options that re-attach a saved interface exactly as it was.
pub fn reattach_options(t: &TapInfo) -> CreateOptions {
    CreateOptions {
        bridge: None,
        id: Some(t.id),
        host_if_name: Some(t.host_if_name.clone()),
        host_ns: t.host_ns.clone(),
        hw_addr: t.hw_addr.map(|m| m.to_string()),
        rx_ring_size: Some(t.rx_ring_size),
        tx_ring_size: Some(t.tx_ring_size),
        num_rx_queues: Some(t.num_rx_queues),
        num_tx_queues: Some(t.num_tx_queues),
        gso: t.gso,
        csum_offload: t.csum_offload,
        gro_coalesce: t.gro_coalesce,
        tun: t.tun,
        persist: true,
        attach: true,
        backend: Some(t.backend.to_string()),
        labels: t.labels.clone(),
        ..CreateOptions::default()
    }
}

/// Finishes or rolls back the intents a dead daemon left: an interrupted
/// create is rolled back, an interrupted delete finished. Returns `saved`
/// without the interfaces that are gone.
pub async fn reconcile(reg: &Registry, mut saved: Saved) -> Saved {
    for p in std::mem::take(&mut saved.pending) {
        let remove_link = match p.op {
            PendingOp::Create => !p.attach,
            PendingOp::Delete => true,
        };
        if remove_link {
            match reg
                .remove_leftover(p.host_ns.as_deref(), &p.host_if_name)
                .await
            {
                Ok(gone) => tracing::info!(
                    op = ?p.op, id = p.id, host_if_name = %p.host_if_name, removed = gone,
                    "interrupted change reconciled"
                ),
                Err(e) => tracing::error!(
                    op = ?p.op, id = p.id, host_if_name = %p.host_if_name,
                    error = %error_chain(&e), "interrupted change: cannot remove the link"
                ),
            }
        }
        if p.op == PendingOp::Delete || (p.op == PendingOp::Create && !p.attach) {
            saved.taps.retain(|t| t.info.id != p.id);
        }
    }
    saved
}

/// Tries to re-attach one saved interface (the caller holds the node
/// lock); on success restores its rx mode and memberships (a cross-connect
/// only when its other end is attached already).
pub async fn reattach(
    node: &mut Node,
    t: &SavedTap,
    member: &Memberships,
) -> Result<TapInfo, String> {
    let reg = &mut node.registry;
    let opts = CreateOptions {
        rate_limit: t.rate_limit,
        ..reattach_options(&t.info)
    };
    let info = reg.create(&opts).await.map_err(|e| error_chain(&e))?;
    let name = &t.info.name;
    if let Some(mode) = t.rx_mode.filter(|m| *m != RxMode::default()) {
        if let Err(e) = reg.set_rx_mode(name, mode) {
            tracing::warn!(iface = %name, error = %error_chain(&e), "rx mode not restored");
        }
    }
    rejoin(node, name, member);
    tracing::info!(iface = %info.name, host_if_name = %info.host_if_name, "re-attached");
    Ok(info)
}

/// Puts interface `name` (a tap or an uplink, back again) into its saved
/// bridges, and into its cross-connects whose other end is back already (a
/// cross-connect is made by the second of its ends to return).
fn rejoin(node: &mut Node, name: &str, member: &Memberships) {
    for x in &member.xconnects {
        let peer = if x.a == name { &x.b } else { &x.a };
        if node.resolve(peer).is_err() {
            continue;
        }
        if let Err(e) = node.xconnect(&x.a, &x.b) {
            tracing::error!(a = %x.a, b = %x.b, error = %error_chain(&e), "xconnect not restored");
            continue;
        }
        // Queues placed by hand go back where they were put (a worker the
        // pool no longer has leaves the queue where load put it, said so).
        for p in x.rx_placement.iter().filter(|p| p.set) {
            if let Err(e) = node.set_rx_placement(&p.iface, p.queue, p.worker) {
                tracing::warn!(iface = %p.iface, queue = p.queue, worker = p.worker,
                    error = %error_chain(&e), "rx placement not restored");
            }
        }
    }
    for bd in &member.bridges {
        if let Err(e) = node.bridge_add(bd, name) {
            tracing::error!(bridge = %bd, iface = %name, error = %error_chain(&e), "bridge port not restored");
        }
    }
}

/// What interface `name` belonged to, as saved.
fn memberships(saved: &Saved, name: &str) -> Memberships {
    Memberships {
        xconnects: saved
            .xconnects
            .iter()
            .filter(|x| x.a == name || x.b == name)
            .cloned()
            .collect(),
        bridges: saved
            .bridges
            .iter()
            .filter(|b| b.interfaces.iter().any(|i| i == name))
            .map(|b| b.name.clone())
            .collect(),
    }
}

/// Opens a saved uplink again (the caller holds the node lock) and puts it
/// back where it was.
pub fn reopen_uplink(
    node: &mut Node,
    h: &SavedHostInterface,
    member: &Memberships,
) -> Result<vtap::uplink::HostInterfaceInfo, String> {
    let info = node
        .host_interface_create(&h.options)
        .map_err(|e| error_chain(&e))?;
    restore_limits(node, &info.name, h.rate_limit.as_ref());
    rejoin(node, &info.name, member);
    tracing::info!(iface = %info.name, host_if_name = %info.host_if_name, "uplink open again");
    Ok(info)
}

/// Makes a saved tunnel again (the caller holds the node lock) and puts it
/// back where it was.
pub fn remake_tunnel(
    node: &mut Node,
    t: &SavedVxlan,
    member: &Memberships,
) -> Result<vtap::tunnel::VxlanInfo, String> {
    let info = node.vxlan_create(&t.options).map_err(|e| error_chain(&e))?;
    restore_limits(node, &info.name, t.rate_limit.as_ref());
    rejoin(node, &info.name, member);
    tracing::info!(iface = %info.name, src = %info.src, dst = %info.dst, vni = info.vni, "tunnel made again");
    Ok(info)
}

/// Makes detached tunnel `instance` again (the caller holds the node
/// lock); on failure it stays, with the new reason.
pub fn remake_one(
    s: &AppState,
    node: &mut Node,
    instance: u32,
) -> Result<vtap::tunnel::VxlanInfo, String> {
    let Some(d) = detached_tunnels(s).get(&instance).cloned() else {
        return Err(format!("vxlan_tunnel{instance}: not detached"));
    };
    match remake_tunnel(node, &d.saved, &d.memberships) {
        Ok(info) => {
            detached_tunnels(s).remove(&instance);
            Ok(info)
        }
        Err(reason) => {
            if let Some(e) = detached_tunnels(s).get_mut(&instance) {
                e.reason.clone_from(&reason);
            }
            Err(reason)
        }
    }
}

/// Brings the daemon back to `saved`: reconciles interrupted changes, then
/// re-attaches each persisted interface (one that fails is kept, detached,
/// with its reason), then rebuilds bridges and cross-connects. Returns how
/// many interfaces came back.
pub async fn restore(s: &AppState, saved: Saved) -> usize {
    let mut node = s.node.lock().await;
    let saved = reconcile(&node.registry, saved).await;
    for b in &saved.bridges {
        if let Err(e) = node.forwarder.bridge_create_with(&b.name, b.mac_limit) {
            tracing::error!(bridge = %b.name, error = %e, "bridge not restored");
        }
    }
    let mut back = 0;
    // Uplinks first: nothing of the kernel's survives them (their sockets
    // died with the old daemon, and the promiscuity with them), so each is
    // opened afresh; taps re-attaching after find them for their
    // cross-connects.
    for h in &saved.host_interfaces {
        let name = h.options.name();
        let member = memberships(&saved, &name);
        match reopen_uplink(&mut node, h, &member) {
            Ok(_) => back += 1,
            Err(reason) => {
                tracing::error!(iface = %name, error = %reason, "uplink not opened again: kept, will retry");
                if let Some(id) = h.options.id {
                    detached_uplinks(s).insert(
                        id,
                        DetachedUplink {
                            saved: h.clone(),
                            reason,
                            memberships: member,
                        },
                    );
                }
            }
        }
    }
    // Tunnels next: their sockets died with the old daemon too.
    for t in &saved.vxlan_tunnels {
        let Some(instance) = t.options.instance else {
            tracing::error!(options = ?t.options, "saved tunnel without an instance: skipped");
            continue;
        };
        let name = format!("vxlan_tunnel{instance}");
        let member = memberships(&saved, &name);
        match remake_tunnel(&mut node, t, &member) {
            Ok(_) => back += 1,
            Err(reason) => {
                tracing::error!(iface = %name, error = %reason, "tunnel not made again: kept, will retry");
                detached_tunnels(s).insert(
                    instance,
                    DetachedTunnel {
                        saved: t.clone(),
                        reason,
                        memberships: member,
                    },
                );
            }
        }
    }
    for t in &saved.taps {
        let name = &t.info.name;
        if !t.info.persist {
            tracing::warn!(
                iface = %name,
                "not restored: created without persist, it ended with the previous daemon"
            );
            continue;
        }
        let member = memberships(&saved, name);
        match reattach(&mut node, t, &member).await {
            Ok(_) => back += 1,
            Err(reason) => {
                tracing::error!(iface = %name, error = %reason, "not re-attached: kept as detached, will retry");
                let mut saved_tap = t.clone();
                saved_tap.info.state = AttachState::Detached;
                saved_tap.info.reason = Some(reason.clone());
                saved_tap.info.datapath = None;
                detached(s).insert(
                    t.info.id,
                    Detached {
                        saved: saved_tap,
                        reason,
                        memberships: member,
                    },
                );
            }
        }
    }
    back
}

/// Retries every detached interface once (the timer's and the operator's
/// way back); returns the names re-attached.
pub async fn retry_detached(s: &AppState) -> Vec<String> {
    let mut node = s.node.lock().await;
    let ids: Vec<u32> = detached(s).keys().copied().collect();
    let mut back = Vec::new();
    for id in ids {
        if let Ok(info) = reattach_one(s, &mut node, id).await {
            back.push(info.name);
        }
    }
    let ids: Vec<u32> = detached_uplinks(s).keys().copied().collect();
    for id in ids {
        if let Ok(info) = reopen_one(s, &mut node, id) {
            back.push(info.name);
        }
    }
    let instances: Vec<u32> = detached_tunnels(s).keys().copied().collect();
    for i in instances {
        if let Ok(info) = remake_one(s, &mut node, i) {
            back.push(info.name);
        }
    }
    back
}

/// Opens detached uplink `id` again (the caller holds the node lock); on
/// failure it stays, with the new reason.
pub fn reopen_one(
    s: &AppState,
    node: &mut Node,
    id: u32,
) -> Result<vtap::uplink::HostInterfaceInfo, String> {
    let Some(d) = detached_uplinks(s).get(&id).cloned() else {
        return Err(format!("host interface {id}: not detached"));
    };
    match reopen_uplink(node, &d.saved, &d.memberships) {
        Ok(info) => {
            detached_uplinks(s).remove(&id);
            Ok(info)
        }
        Err(reason) => {
            if let Some(e) = detached_uplinks(s).get_mut(&id) {
                e.reason.clone_from(&reason);
            }
            Err(reason)
        }
    }
}

/// Re-attaches detached interface `id` (the caller holds the node lock);
/// on failure the entry stays with the new reason.
pub async fn reattach_one(s: &AppState, node: &mut Node, id: u32) -> Result<TapInfo, String> {
    let Some(d) = detached(s).get(&id).cloned() else {
        return Err(format!("interface {id}: not detached"));
    };
    match reattach(node, &d.saved, &d.memberships).await {
        Ok(info) => {
            detached(s).remove(&id);
            Ok(info)
        }
        Err(reason) => {
            if let Some(e) = detached(s).get_mut(&id) {
                e.reason.clone_from(&reason);
                e.saved.info.reason = Some(reason.clone());
            }
            Err(reason)
        }
    }
}
