//! The daemon's shared state: the registry and the forwarding plane, the
//! interfaces it knows but could not re-attach, and where changes are saved.
//!
//! Lock order, everywhere: `node` (async: the registry and the forwarder
//! together, so no order between those two exists), then `detached` (sync,
//! never held across an await). Every change takes the node lock, so
//! changes — and the saves that make them durable — happen one at a time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::Mutex;
use vtap::forward::Forwarder;
use vtap::node::Node;
use vtap::registry::Registry;

use crate::saved::{Memberships, SavedHostInterface, SavedTap, SavedVxlan};

/// A persisted interface a restarted daemon could not re-attach: kept in the
/// state file, shown with its reason, retried on a timer and on request.
#[derive(Clone, Debug)]
pub struct Detached {
    /// The interface as saved.
    pub saved: SavedTap,
    /// Why the last re-attach failed.
    pub reason: String,
    /// Cross-connects and bridges it rejoins once re-attached.
    pub memberships: Memberships,
}

/// A saved uplink a restarted daemon could not open again: kept in the
/// state file, shown with its reason, retried with the detached taps.
#[derive(Clone, Debug)]
pub struct DetachedUplink {
    /// The uplink as saved.
    pub saved: SavedHostInterface,
    /// Why the last attempt failed.
    pub reason: String,
    /// Cross-connects and bridges it rejoins once open.
    pub memberships: Memberships,
}

/// A saved tunnel a restarted daemon could not make again (its underlay
/// namespace or address is not there yet): kept in the state file, shown
/// with its reason, retried with the detached taps.
#[derive(Clone, Debug)]
pub struct DetachedTunnel {
    /// The tunnel as saved.
    pub saved: SavedVxlan,
    /// Why the last attempt failed.
    pub reason: String,
    /// Cross-connects and bridges it rejoins once made.
    pub memberships: Memberships,
}

/// Shared daemon state.
#[derive(Debug)]
pub struct AppState {
    /// The interfaces and the forwarding plane; one control operation at a
    /// time.
    pub node: Mutex<Node>,
    /// Persisted interfaces not re-attached, by id (locked last).
    pub detached: std::sync::Mutex<BTreeMap<u32, Detached>>,
    /// Saved uplinks not open again, by id (locked last, never with
    /// `detached`).
    pub detached_uplinks: std::sync::Mutex<BTreeMap<u32, DetachedUplink>>,
    /// Saved tunnels not made again, by instance (locked last, never with
    /// the other two).
    pub detached_tunnels: std::sync::Mutex<BTreeMap<u32, DetachedTunnel>>,
    /// Whether `/v1/debug/fault` is enabled.
    pub fault_injection: bool,
    /// The socket path, for `/v1/info`.
    pub socket: String,
    /// API requests served, for `/metrics`.
    pub api_requests: crate::metrics::ApiRequests,
    /// API latency, by route and method.
    pub api_latency: crate::metrics::ApiLatency,
    /// Where the state is saved after every change (none: not saved).
    pub state_file: Option<PathBuf>,
    /// Its journal, open after the first save ([`crate::journal`]).
    pub journal: std::sync::Mutex<Option<crate::journal::Journal>>,
}

impl AppState {
    /// A state with nothing in it: a registry and a forwarder, no state
    /// file (tests, tools).
    pub fn new(registry: Registry, forwarder: Forwarder) -> Self {
        Self {
            node: Mutex::new(Node::new(registry, forwarder)),
            detached: std::sync::Mutex::new(BTreeMap::new()),
            detached_uplinks: std::sync::Mutex::new(BTreeMap::new()),
            detached_tunnels: std::sync::Mutex::new(BTreeMap::new()),
            fault_injection: false,
            socket: String::new(),
            api_requests: crate::metrics::ApiRequests::default(),
            api_latency: crate::metrics::api_latency(),
            state_file: None,
            journal: std::sync::Mutex::new(None),
        }
    }
}

/// The detached interfaces, locked.
pub fn detached(s: &AppState) -> std::sync::MutexGuard<'_, BTreeMap<u32, Detached>> {
    s.detached.lock().unwrap_or_else(|p| p.into_inner())
}

/// The detached uplinks, locked.
pub fn detached_uplinks(s: &AppState) -> std::sync::MutexGuard<'_, BTreeMap<u32, DetachedUplink>> {
    s.detached_uplinks.lock().unwrap_or_else(|p| p.into_inner())
}

/// The detached tunnels, locked.
pub fn detached_tunnels(s: &AppState) -> std::sync::MutexGuard<'_, BTreeMap<u32, DetachedTunnel>> {
    s.detached_tunnels.lock().unwrap_or_else(|p| p.into_inner())
}

/// The instance `key` (`vxlan_tunnel<N>` or its id) names among the
/// detached tunnels.
pub fn detached_tunnel(s: &AppState, key: &str) -> Option<u32> {
    detached_tunnels(s)
        .iter()
        .find(|(i, _)| {
            key == format!("vxlan_tunnel{i}") || key == (vtap::tunnel::ID_BASE + **i).to_string()
        })
        .map(|(i, _)| *i)
}

/// The id `key` (a name or an id) names among the detached uplinks.
pub fn detached_uplink_id(s: &AppState, key: &str) -> Option<u32> {
    detached_uplinks(s)
        .values()
        .find(|d| {
            d.saved.options.name() == key
                || d.saved.options.id.is_some_and(|i| i.to_string() == key)
        })
        .and_then(|d| d.saved.options.id)
}

/// The id `key` (`tap<id>`, `tun<id>` or the id) names among the detached
/// interfaces.
pub fn detached_id(s: &AppState, key: &str) -> Option<u32> {
    let (tun, id) = vtap::registry::parse_key(key)?;
    detached(s)
        .get(&id)
        .filter(|d| tun.is_none_or(|t| t == d.saved.info.tun))
        .map(|_| id)
}
