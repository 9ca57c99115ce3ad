//! The interface registry: ids, create and attach with rollback, delete,
//! dump, and run-time offload toggles.
//!
//! # Design
//!
//! [`Registry::create`] is VPP's `tap_create_if` as a list of named
//! [`Step`]s. Each step that changes the kernel pushes its inverse onto a
//! [`Rollback`] before the next step runs; if any later step fails, the
//! rollback runs the inverses newest first, so a failure at step k leaves
//! exactly what was there before step 1: no interface in any namespace, no
//! address or route, no open fd, the id free. Every step first passes the
//! [`Faults`] seam, so tests can fail each one in turn and prove it.
//!
//! Ordering choices that differ from the seed, and why:
//! - the tap is created inside its namespace with its final name (the queue
//!   fds are opened there), so there is no move or rename to fail or collide;
//! - the MTU is set before addresses, because an IPv6 address cannot be added
//!   to a link whose MTU is below 1280;
//! - the default routes are bound to the tap (`oif`), so a gateway that is
//!   not on-link through it is reported as unreachable rather than routed
//!   somewhere else.
//!
//! The registry is not thread-safe by itself; the daemon serialises control
//! operations behind one async mutex, which is what VPP's main thread does.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

mod change;
mod create;
mod delete;
mod error;

pub use crate::kind::ErrorKind;
pub use change::{next_offload, OffloadAction};
pub use create::Intent;
use create::{astep, step};
pub use error::{error_chain, parse_key, Error, StepError};

use crate::datapath::limit::{Direction, RateLimits};
use crate::datapath::{self, DataPath};
pub use crate::datapath::{lock, Backend, SharedDataPath};
use crate::fault::{Faults, Step};
use crate::host::{self, Host};
use crate::linkwatch::{LinkWatch, Watched};
use crate::mac::MacAddr;
use crate::netns::{self, Netns, NetnsSpec};
use crate::offload::Caps;
use crate::options::{
    self, BackendRequest, CreateOptions, Labels, Route, RouteOption, TapConfig, MAX_ID,
};
use crate::tun::{self, Mode, OffloadMode};

/// Where vhost-net lives.
pub const DEV_VHOST_NET: &str = "/dev/vhost-net";

/// Daemon-wide settings the registry applies to every interface.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Host MTU for interfaces created without `host-mtu-size` (the seed's
    /// `tap { host-mtu N }`); `None` keeps the kernel's default.
    pub default_host_mtu: Option<u32>,
    /// Kill switch for UDP segmentation offload (`TUN_F_USO4/6`).
    pub allow_uso: bool,
    /// Kill switch for every offload: when false, gso, csum-offload and
    /// gro-coalesce are refused (at creation and at run time).
    pub allow_offload: bool,
    /// The TUN character device.
    pub tun_device: CString,
    /// The vhost-net character device.
    pub vhost_device: PathBuf,
    /// Start each interface's data path (rings + backend) at creation.
    pub datapath: bool,
    /// Allow `VIRTIO_RING_F_EVENT_IDX` on the rings.
    pub event_idx: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_host_mtu: None,
            allow_uso: true,
            allow_offload: true,
            tun_device: tun::DEV_NET_TUN.to_owned(),
            vhost_device: PathBuf::from(DEV_VHOST_NET),
            datapath: true,
            event_idx: true,
        }
    }
}

/// Everything known about one interface: what `show` prints.
///
/// Values are effective ones (the generated MAC, the MTU the kernel has, the
/// offload mask it accepted), not merely what was asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TapInfo {
    /// Interface id.
    pub id: u32,
    /// Data-plane name: `tap<id>` or `tun<id>`.
    pub name: String,
    /// Host-side interface name.
    pub host_if_name: String,
    /// Host namespace as given (`null` = the daemon's own).
    pub host_ns: Option<String>,
    /// Inode of the host namespace (compare with `ip netns identify`/`stat -L`).
    pub host_ns_inode: u64,
    /// Host-side ifindex, in its namespace.
    pub host_ifindex: u32,
    /// Host-side MAC (`null` for TUN).
    pub host_mac_addr: Option<MacAddr>,
    /// Data-plane MAC (`null` for TUN).
    pub hw_addr: Option<MacAddr>,
    /// Host bridge.
    pub host_bridge: Option<String>,
    /// Host IPv4 address `A/L`.
    pub host_ip4_addr: Option<String>,
    /// IPv4 default gateway.
    pub host_ip4_gw: Option<String>,
    /// Host IPv6 address `A/L`.
    pub host_ip6_addr: Option<String>,
    /// IPv6 default gateway.
    pub host_ip6_gw: Option<String>,
    /// Further host addresses `A/L`.
    #[serde(default)]
    pub host_addrs: Vec<String>,
    /// Routes out of the host side (besides the default gateways).
    #[serde(default)]
    pub host_routes: Vec<RouteOption>,
    /// The caller's labels.
    #[serde(default)]
    pub labels: Labels,
    /// Host-side MTU as the kernel has it.
    pub host_mtu_size: u32,
    /// Rx ring size.
    pub rx_ring_size: u32,
    /// Tx ring size.
    pub tx_ring_size: u32,
    /// Rx queues (tap fds).
    pub num_rx_queues: u16,
    /// Tx queues.
    pub num_tx_queues: u16,
    /// `IFF_MULTI_QUEUE` in use.
    pub multi_queue: bool,
    /// GSO on.
    pub gso: bool,
    /// Checksum offload (alone) on.
    pub csum_offload: bool,
    /// GRO coalescing on.
    pub gro_coalesce: bool,
    /// L3 TUN.
    pub tun: bool,
    /// Persistent.
    pub persist: bool,
    /// Attached to an interface that existed before.
    pub attached: bool,
    /// Backend serving the queues.
    pub backend: Backend,
    /// The `TUN_F_*` mask the kernel accepted.
    pub tun_offload: u32,
    /// Its bits by name.
    pub tun_offload_flags: Vec<String>,
    /// Rings, features and counters of the running data path (`null` when
    /// the registry runs without data paths).
    #[serde(default)]
    pub datapath: Option<crate::datapath::State>,
    /// `attached`: served by this process; `detached`: a persisted interface
    /// a restarted daemon could not re-attach (see `reason`).
    #[serde(default)]
    pub state: AttachState,
    /// Why a detached interface is detached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One interface as a state file keeps it ([`Registry::saved_views`]).
#[derive(Debug)]
pub struct SavedView<'a> {
    /// What it was made as (`datapath` empty; `host_mtu_size` as set by
    /// vtap, see `host_mtu`).
    pub info: &'a TapInfo,
    /// The host MTU as the kernel last announced it.
    pub host_mtu: u32,
    /// Its revision: unchanged, with `host_mtu`, means nothing vtap keeps
    /// of it changed.
    pub rev: u64,
    datapath: Option<&'a SharedDataPath>,
}

impl SavedView<'_> {
    /// Its rx queues' mode and its rate limits (locks its data path).
    pub fn settings(&self) -> (Option<datapath::RxMode>, Option<RateLimits>) {
        let Some(d) = self.datapath else {
            return (None, None);
        };
        let d = lock(d);
        let limits = d.rate_limit_state().map(|st| RateLimits::from_state(&st));
        (d.rx_mode(0).ok(), limits)
    }
}

/// Whether this process serves an interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AttachState {
    /// Its queues are open here.
    #[default]
    Attached,
    /// Known (persisted) but not re-attached; retried on a timer.
    Detached,
}

impl TapInfo {
    fn offload_mode(&self) -> OffloadMode {
        if self.gso {
            OffloadMode::Gso
        } else if self.csum_offload {
            OffloadMode::Csum
        } else {
            OffloadMode::None
        }
    }

    fn set_offload(&mut self, mode: OffloadMode, gro: bool, mask: u32) {
        self.gso = mode == OffloadMode::Gso;
        self.csum_offload = mode == OffloadMode::Csum;
        self.gro_coalesce = gro;
        self.tun_offload = mask;
        self.tun_offload_flags = tun::offload::names(mask)
            .into_iter()
            .map(String::from)
            .collect();
    }
}

fn ns_label(spec: Option<&NetnsSpec>) -> String {
    match spec {
        Some(s) => format!("namespace '{s}'"),
        None => "the daemon's namespace".into(),
    }
}

/// Removals [`Registry::removed_since`] remembers.
const GONE_KEPT: usize = 4096;

/// One live interface.
#[derive(Debug)]
struct Tap {
    info: TapInfo,
    // Declared before `queues`: the data path stops before the fds close
    // (the forwarding plane holds clones only while the interface exists).
    datapath: Option<SharedDataPath>,
    /// The host side's link events (MTU); none if the namespace's event
    /// socket could not be opened (then the MTU is the last one vtap saw).
    /// Declared before `queues`: watching stops before closing the fds
    /// removes a non-persistent link, which is then no news.
    watch: Option<Watched>,
    ns: TapNs,
    /// The queue fds (shared with a direct data path, not duplicated).
    queues: Vec<Arc<std::fs::File>>,
    /// Bumped by every change vtap makes to it ([`Registry::touch`]), so
    /// a state file can tell which interfaces changed without reading
    /// them all.
    rev: u64,
}

/// A tap's host namespace: a handle held open, or, where the namespace
/// lives on without one (a bind mount names it), its path and inode, opened
/// again for each change. With a namespace per tap (a pod each) that is
/// one fd per interface less: the queue fd and the namespace's link-event
/// socket are all an interface costs.
#[derive(Debug)]
enum TapNs {
    Held(Netns),
    ByPath { spec: NetnsSpec, inode: u64 },
}

impl TapNs {
    fn new(ns: Netns) -> Self {
        match ns.spec() {
            Some(spec) if ns.reopenable() => TapNs::ByPath {
                spec: spec.clone(),
                inode: ns.inode(),
            },
            _ => TapNs::Held(ns),
        }
    }

    /// A handle on the namespace, for one change.
    fn open(&self) -> Result<Netns, netns::Error> {
        match self {
            TapNs::Held(ns) => ns.try_clone().map_err(|source| netns::Error::Open {
                spec: ns.spec().map_or_else(|| "self".into(), ToString::to_string),
                path: ns
                    .spec()
                    .map_or_else(|| "/proc/self/ns/net".into(), NetnsSpec::path),
                source,
            }),
            TapNs::ByPath { spec, inode } => Netns::reopen(spec, *inode),
        }
    }
}

impl Tap {
    fn saved_view(&self) -> SavedView<'_> {
        SavedView {
            info: &self.info,
            host_mtu: self
                .watch
                .as_ref()
                .map_or(self.info.host_mtu_size, Watched::mtu),
            rev: self.rev,
            datapath: self.datapath.as_ref(),
        }
    }

    /// The info with the data path's live state and the host side's MTU
    /// as the kernel last announced it.
    fn snapshot(&self) -> TapInfo {
        TapInfo {
            datapath: self.datapath.as_ref().map(|d| lock(d).state()),
            host_mtu_size: self
                .watch
                .as_ref()
                .map_or(self.info.host_mtu_size, Watched::mtu),
            ..self.info.clone()
        }
    }
}

/// The interfaces this process owns.
#[derive(Debug)]
pub struct Registry {
    taps: BTreeMap<u32, Tap>,
    /// The last revision handed out ([`Tap::rev`]; a removal takes one too).
    rev: u64,
    /// Live interfaces by their revision: what changed since a revision
    /// is a range, not a pass over every interface.
    by_rev: BTreeMap<u64, u32>,
    /// Interfaces removed, with the revision of their removal (the last
    /// [`GONE_KEPT`]).
    gone: std::collections::VecDeque<(u64, u32)>,
    /// The revision of the newest removal no longer in `gone`.
    gone_floor: u64,
    settings: Settings,
    faults: Faults,
    own_ns: Netns,
    links: LinkWatch,
}

impl Registry {
    /// A registry in the calling process's network namespace.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        Ok(Self {
            taps: BTreeMap::new(),
            rev: 0,
            by_rev: BTreeMap::new(),
            gone: std::collections::VecDeque::new(),
            gone_floor: 0,
            settings,
            faults: Faults::default(),
            own_ns: Netns::current().map_err(Error::Namespace)?,
            links: LinkWatch::default(),
        })
    }

    /// How many namespaces have a link-event socket open: one per
    /// namespace that holds an interface, none once they are all gone.
    pub fn watched_namespaces(&self) -> usize {
        self.links.namespaces()
    }

    /// The fault-injection seam.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Every interface as a state file keeps it, by id, borrowed: no
    /// data-path counters are gathered and nothing is copied, so a daemon
    /// with thousands of interfaces can tell cheaply which changed (by
    /// `rev` and `host_mtu`, without locking any data path).
    pub fn saved_views(&self) -> impl Iterator<Item = SavedView<'_>> {
        self.taps.values().map(Tap::saved_view)
    }

    /// Marks interface `key` changed (a change made to its data path from
    /// outside the registry: a rate limit). Unknown keys are ignored.
    pub fn touch(&mut self, key: &str) {
        if let Ok(id) = self.resolve(key) {
            self.bump(id);
        }
    }

    /// Gives interface `id` a new revision.
    fn bump(&mut self, id: u32) {
        self.rev += 1;
        if let Some(t) = self.taps.get_mut(&id) {
            self.by_rev.remove(&t.rev);
            t.rev = self.rev;
            self.by_rev.insert(self.rev, id);
        }
    }

    /// Takes interface `id` out, noting its removal under a new revision.
    fn take(&mut self, id: u32) -> Option<Tap> {
        let tap = self.taps.remove(&id)?;
        self.by_rev.remove(&tap.rev);
        self.rev += 1;
        self.gone.push_back((self.rev, id));
        if self.gone.len() > GONE_KEPT {
            if let Some((rev, _)) = self.gone.pop_front() {
                self.gone_floor = rev;
            }
        }
        Some(tap)
    }

    /// The registry's revision: every interface made, changed or removed
    /// moves it.
    pub fn revision(&self) -> u64 {
        self.rev
    }

    /// The interfaces made or changed after revision `since`, as
    /// [`Registry::saved_views`] gives them.
    pub fn saved_views_since(&self, since: u64) -> impl Iterator<Item = SavedView<'_>> {
        self.by_rev
            .range(since.saturating_add(1)..)
            .filter_map(|(_, id)| self.taps.get(id))
            .map(Tap::saved_view)
    }

    /// The ids removed after revision `since` (one may be back since);
    /// `None` when the record of removals no longer reaches back that far.
    pub fn removed_since(&self, since: u64) -> Option<Vec<u32>> {
        if since < self.gone_floor {
            return None;
        }
        Some(
            self.gone
                .iter()
                .filter(|(rev, _)| *rev > since)
                .map(|(_, id)| *id)
                .collect(),
        )
    }

    /// How many times a host-side MTU has changed under vtap (the kernel
    /// said so): a state file that saw this count has seen every MTU.
    pub fn mtu_epoch(&self) -> u64 {
        self.links.mtu_epoch()
    }

    /// Every interface, by id.
    pub fn list(&self) -> Vec<TapInfo> {
        self.taps.values().map(Tap::snapshot).collect()
    }

    /// One interface by `tap<id>`, `tun<id>` or the bare id.
    pub fn get(&self, key: &str) -> Result<TapInfo, Error> {
        let id = self.resolve(key)?;
        Ok(self.taps[&id].snapshot())
    }

    /// The id `key` names.
    pub fn resolve(&self, key: &str) -> Result<u32, Error> {
        let not_found = || Error::NotFound(key.to_string());
        let (mode, id) = parse_key(key).ok_or_else(not_found)?;
        match self.taps.get(&id) {
            Some(t) if mode.is_none_or(|tun| tun == t.info.tun) => Ok(id),
            _ => Err(not_found()),
        }
    }

    /// The lowest id neither in use here nor in `reserved` (ids a caller
    /// holds for interfaces this registry does not serve).
    pub fn free_id(&self, reserved: &std::collections::BTreeSet<u32>) -> Result<u32, Error> {
        lowest_free(self.taps.keys().copied(), reserved.iter().copied(), MAX_ID)
            .ok_or(Error::NoFreeId)
    }

    /// The name of the interface whose host side is `ifindex` in the
    /// namespace of inode `ns_inode`, if it is one of these.
    pub fn host_side(&self, ns_inode: u64, ifindex: u32) -> Option<&str> {
        self.taps
            .values()
            .find(|t| t.info.host_ns_inode == ns_inode && t.info.host_ifindex == ifindex)
            .map(|t| t.info.name.as_str())
    }

    /// The interface as one end of a cross-connect.
    pub fn end(&self, key: &str) -> Result<crate::port::End, Error> {
        let id = self.resolve(key)?;
        let t = &self.taps[&id];
        Ok(crate::port::End {
            id,
            name: t.info.name.clone(),
            tun: t.info.tun,
            datapath: t.datapath.clone().map(|d| -> crate::port::SharedPort { d }),
            split_horizon: 0,
        })
    }

    /// An interface's data path, to drive its queues (the forwarding plane,
    /// a test). `None` when the registry runs without data paths.
    pub fn datapath(&self, key: &str) -> Result<Option<SharedDataPath>, Error> {
        let id = self.resolve(key)?;
        Ok(self.taps.get(&id).and_then(|t| t.datapath.clone()))
    }

    /// Duplicates of an interface's queue fds, one per rx queue, for the
    /// data path (the registry keeps its own, so the interface's life does
    /// not depend on the data path's).
    pub fn dup_queues(&self, key: &str) -> Result<Vec<std::fs::File>, Error> {
        let id = self.resolve(key)?;
        self.taps[&id]
            .queues
            .iter()
            .map(|q| q.try_clone())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| Error::Step {
                step: Step::OpenQueues,
                source: e.into(),
            })
    }

    /// Number of interfaces.
    pub fn len(&self) -> usize {
        self.taps.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.taps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OffloadAction::*;
    use OffloadMode as M;

    #[test]
    fn next_offload_table() {
        let ok = [
            (M::None, false, GsoEnable, (M::Gso, false)),
            (M::Csum, false, GsoEnable, (M::Gso, false)),
            (M::Gso, true, GsoEnable, (M::Gso, true)),
            (M::Gso, false, GsoDisable, (M::None, false)),
            (M::Csum, false, GsoDisable, (M::Csum, false)),
            (M::None, false, GsoDisable, (M::None, false)),
            (M::None, false, CsumOffloadEnable, (M::Csum, false)),
            (M::Gso, false, CsumOffloadEnable, (M::Csum, false)),
            (M::Csum, false, CsumOffloadDisable, (M::None, false)),
            (M::None, false, CsumOffloadDisable, (M::None, false)),
            (M::Gso, false, GroCoalesceEnable, (M::Gso, true)),
            (M::Gso, true, GroCoalesceDisable, (M::Gso, false)),
            (M::None, false, GroCoalesceDisable, (M::None, false)),
        ];
        for (mode, gro, action, want) in ok {
            assert_eq!(
                next_offload(mode, gro, action),
                Ok(want),
                "{mode:?} {gro} {action:?}"
            );
        }
        let refused = [
            (M::Gso, true, GsoDisable, "gro-coalesce"),
            (M::Gso, true, CsumOffloadEnable, "gro-coalesce"),
            (M::Gso, false, CsumOffloadDisable, "gso-disable"),
            (M::None, false, GroCoalesceEnable, "needs gso"),
            (M::Csum, false, GroCoalesceEnable, "needs gso"),
        ];
        for (mode, gro, action, frag) in refused {
            let e = next_offload(mode, gro, action).expect_err("refused");
            assert!(e.contains(frag), "{mode:?} {gro} {action:?}: {e}");
        }
    }

    #[test]
    fn offload_action_parses_cli_words() {
        assert_eq!("gso-enable".parse::<OffloadAction>(), Ok(GsoEnable));
        assert_eq!(
            "csum-offload-disable".parse::<OffloadAction>(),
            Ok(CsumOffloadDisable)
        );
        let e = "gso".parse::<OffloadAction>().expect_err("bad");
        assert_eq!(e.field, "offload");
    }

    #[test]
    fn error_chain_joins_sources_once() {
        let e = Error::Step {
            step: Step::SetMtu,
            source: StepError::Io(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        let s = error_chain(&e);
        assert!(s.starts_with("step set-mtu failed: "), "{s}");
        assert_eq!(s.matches("Invalid argument").count(), 1, "{s}");
    }
}

/// The lowest id in `0..=max` in neither `used` nor `reserved`, both in
/// ascending order: one pass over the two (a create among 8 192 taps is
/// not 8 192 lookups).
fn lowest_free(
    used: impl Iterator<Item = u32>,
    reserved: impl Iterator<Item = u32>,
    max: u32,
) -> Option<u32> {
    let (mut used, mut reserved) = (used.peekable(), reserved.peekable());
    let mut want = 0u32;
    loop {
        while used.next_if(|&id| id < want).is_some() {}
        while reserved.next_if(|&id| id < want).is_some() {}
        if used.peek() == Some(&want) || reserved.peek() == Some(&want) {
            want = want.checked_add(1)?;
            continue;
        }
        return (want <= max).then_some(want);
    }
}

#[cfg(test)]
mod lowest_free_tests {
    use super::lowest_free;

    #[test]
    fn the_first_gap_in_either_set() {
        // (used, reserved, max, answer)
        type Case = (&'static [u32], &'static [u32], u32, Option<u32>);
        let cases: [Case; 7] = [
            (&[], &[], 10, Some(0)),
            (&[0, 1, 2], &[], 10, Some(3)),
            (&[0, 2], &[1], 10, Some(3)),
            (&[1, 2], &[], 10, Some(0)),
            (&[0, 1, 5], &[2, 3], 10, Some(4)),
            (&[0, 1], &[2], 2, None),
            (&[0, 1, 2, 3], &[0, 1], 10, Some(4)),
        ];
        for (used, reserved, max, want) in cases {
            assert_eq!(
                lowest_free(used.iter().copied(), reserved.iter().copied(), max),
                want,
                "{used:?} {reserved:?}"
            );
        }
    }
}
