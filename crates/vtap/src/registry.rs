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
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::datapath::{self, DataPath};
use crate::fault::{Faults, Step};
use crate::host::{self, Host};
use crate::linkwatch::{LinkWatch, Watched};
use crate::mac::MacAddr;
use crate::netns::{self, Netns, NetnsSpec};
use crate::offload::Caps;
use crate::options::{self, BackendRequest, CreateOptions, TapConfig, MAX_ID};
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

/// The backend that serves an interface's queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Backend {
    /// The kernel's vhost-net.
    VhostNet,
    /// A userspace thread of vtap serves the rings.
    Userspace,
    /// No rings: the data plane reads and writes the tap fds itself.
    Direct,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VhostNet => "vhost-net",
            Self::Userspace => "userspace",
            Self::Direct => "direct",
        })
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

/// A run-time offload change (`vtap set IF offload ACTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OffloadAction {
    /// Checksum + segmentation offload on.
    GsoEnable,
    /// Segmentation offload off (checksum offload off too).
    GsoDisable,
    /// Checksum offload only (turns GSO off).
    CsumOffloadEnable,
    /// Checksum offload off.
    CsumOffloadDisable,
    /// GRO coalescing on (needs GSO).
    GroCoalesceEnable,
    /// GRO coalescing off.
    GroCoalesceDisable,
}

impl std::str::FromStr for OffloadAction {
    type Err = options::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value::<Self>(serde_json::Value::String(s.to_string())).map_err(|_| {
            options::Error {
                field: "offload",
                value: s.to_string(),
                reason: "expected gso-enable, gso-disable, csum-offload-enable, \
                         csum-offload-disable, gro-coalesce-enable or gro-coalesce-disable"
                    .into(),
            }
        })
    }
}

/// The offload state after `action`, or why it is refused. Pure: the table
/// test below pins every combination.
pub fn next_offload(
    mode: OffloadMode,
    gro: bool,
    action: OffloadAction,
) -> Result<(OffloadMode, bool), String> {
    use OffloadAction::*;
    use OffloadMode as M;
    match action {
        GsoEnable => Ok((M::Gso, gro)),
        GsoDisable if gro => {
            Err("gro-coalesce is on and needs gso: gro-coalesce-disable first".into())
        }
        GsoDisable => Ok((if mode == M::Gso { M::None } else { mode }, false)),
        CsumOffloadEnable if gro => {
            Err("gro-coalesce is on and needs gso: gro-coalesce-disable first".into())
        }
        CsumOffloadEnable => Ok((M::Csum, false)),
        CsumOffloadDisable if mode == M::Gso => {
            Err("gso is on and includes checksum offload: use gso-disable".into())
        }
        CsumOffloadDisable => Ok((M::None, false)),
        GroCoalesceEnable if mode != M::Gso => {
            Err("gro-coalesce needs gso: gso-enable first".into())
        }
        GroCoalesceEnable => Ok((mode, true)),
        GroCoalesceDisable => Ok((mode, false)),
    }
}

/// What failed inside a step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A TUN ioctl.
    #[error(transparent)]
    Tun(#[from] tun::Error),
    /// A netlink request.
    #[error(transparent)]
    Host(#[from] host::Error),
    /// The namespace.
    #[error(transparent)]
    Netns(#[from] netns::Error),
    /// Another OS error.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The data path (rings, backend).
    #[error(transparent)]
    DataPath(#[from] datapath::Error),
    /// The fault-injection seam.
    #[error("injected fault")]
    Injected(#[source] io::Error),
}

/// Why an operation on the registry failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option is invalid.
    #[error(transparent)]
    Invalid(#[from] options::Error),
    /// The namespace could not be opened.
    #[error(transparent)]
    Namespace(netns::Error),
    /// The id asked for is taken.
    #[error("id '{0}': already in use")]
    IdTaken(u32),
    /// Every id is taken.
    #[error("id: no free interface id (0..={MAX_ID} are all in use)")]
    NoFreeId,
    /// No interface matches.
    #[error("interface '{0}': no such interface (give tap<id>, tun<id> or the id)")]
    NotFound(String),
    /// The same interface twice in one batch.
    #[error("interface '{0}': given twice")]
    Duplicate(String),
    /// The host name is taken in the target namespace.
    #[error("host-if-name '{name}': an interface of that name already exists in {ns}")]
    NameTaken {
        /// The name.
        name: String,
        /// The namespace, in words.
        ns: String,
    },
    /// Attach: nothing to attach to.
    #[error("host-if-name '{name}': no interface of that name in {ns} to attach to")]
    AttachMissing {
        /// The name.
        name: String,
        /// The namespace, in words.
        ns: String,
    },
    /// Attach: the interface is not what was asked for.
    #[error("host-if-name '{name}': cannot attach: {reason}")]
    AttachMismatch {
        /// The name.
        name: String,
        /// What differs.
        reason: String,
    },
    /// The bridge does not exist.
    #[error("host-bridge '{name}': no such interface in {ns}")]
    BridgeMissing {
        /// The bridge name.
        name: String,
        /// The namespace, in words.
        ns: String,
    },
    /// The bridge is something else.
    #[error("host-bridge '{name}': is a {kind} interface, not a bridge")]
    NotBridge {
        /// The name.
        name: String,
        /// What it is.
        kind: String,
    },
    /// vhost-net asked for but missing.
    #[error("backend vhost-net: cannot open {path}")]
    VhostUnavailable {
        /// The device.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The gateway is not reachable through the tap.
    #[error("{field} '{gw}': gateway unreachable (not on-link through {name}; add an address in its subnet)")]
    GatewayUnreachable {
        /// `host-ip4-gw` or `host-ip6-gw`.
        field: &'static str,
        /// The gateway.
        gw: IpAddr,
        /// The host interface.
        name: String,
    },
    /// A default route exists already.
    #[error("{field} '{gw}': the namespace already has a default route")]
    RouteExists {
        /// `host-ip4-gw` or `host-ip6-gw`.
        field: &'static str,
        /// The gateway.
        gw: IpAddr,
    },
    /// A run-time offload change is refused.
    #[error("offload {action}: {reason}")]
    Offload {
        /// The action, as typed.
        action: String,
        /// Why.
        reason: String,
    },
    /// A run-time change to a data path failed.
    #[error("data path")]
    DataPath(#[from] datapath::Error),
    /// The interface runs no data path (or no capture, to stop).
    #[error("interface '{iface}': {reason}")]
    NoDataPath {
        /// The interface.
        iface: String,
        /// What is missing.
        reason: &'static str,
    },
    /// A capture is already recording on the interface.
    #[error("interface '{iface}': a capture is already running ({captured} frames so far); stop it first")]
    CaptureRunning {
        /// The interface.
        iface: String,
        /// Frames the running capture has recorded.
        captured: u64,
    },
    /// The caller could not record the intent (its state file): nothing
    /// was done.
    #[error("{0}")]
    NotDurable(String),
    /// A step failed in the kernel (or by injection).
    #[error("step {step} failed")]
    Step {
        /// The step.
        step: Step,
        /// What failed.
        #[source]
        source: StepError,
    },
}

/// What a create is about to make, for a caller that records it first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// The interface id.
    pub id: u32,
    /// The host-side name.
    pub host_if_name: String,
    /// The namespace as given.
    pub host_ns: Option<String>,
    /// An attach to an existing interface (which must then stay).
    pub attach: bool,
}

/// Broad classes of [`Error`], for mapping to HTTP status codes and exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (400).
    Invalid,
    /// The interface does not exist (404).
    NotFound,
    /// The request conflicts with existing state (409).
    Conflict,
    /// Missing privileges (403).
    Permission,
    /// A kernel facility is missing (503).
    Unavailable,
    /// The kernel refused for another reason (500).
    Internal,
}

impl Error {
    /// This error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Namespace(netns::Error::Permission { .. }) => ErrorKind::Permission,
            Error::Invalid(_)
            | Error::Namespace(_)
            | Error::BridgeMissing { .. }
            | Error::NotBridge { .. }
            | Error::GatewayUnreachable { .. }
            | Error::Offload { .. }
            | Error::AttachMissing { .. }
            | Error::AttachMismatch { .. }
            | Error::Duplicate(_) => ErrorKind::Invalid,
            Error::NoDataPath { .. } => ErrorKind::NotFound,
            Error::DataPath(_) => ErrorKind::Internal,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::IdTaken(_) | Error::NoFreeId | Error::NameTaken { .. } => ErrorKind::Conflict,
            Error::RouteExists { .. } | Error::CaptureRunning { .. } => ErrorKind::Conflict,
            Error::VhostUnavailable { .. } | Error::NotDurable(_) => ErrorKind::Unavailable,
            Error::Step { source, .. } => match source {
                StepError::Tun(tun::Error::Permission { .. }) => ErrorKind::Permission,
                StepError::Tun(tun::Error::Open { .. } | tun::Error::Feature(_)) => {
                    ErrorKind::Unavailable
                }
                StepError::Tun(tun::Error::Busy { .. } | tun::Error::Mismatch { .. }) => {
                    ErrorKind::Conflict
                }
                StepError::Host(h) if h.errno() == Some(libc::EPERM) => ErrorKind::Permission,
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// Reads an interface key: `tap<id>` (TAP), `tun<id>` (TUN) or the bare id
/// (either); `None` when it is none of these.
pub fn parse_key(key: &str) -> Option<(Option<bool>, u32)> {
    let (tun, digits) = if let Some(d) = key.strip_prefix("tap") {
        (Some(false), d)
    } else if let Some(d) = key.strip_prefix("tun") {
        (Some(true), d)
    } else {
        (None, key)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((tun, digits.parse().ok()?))
}

/// Formats an error and all its sources on one line: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}

fn ns_label(spec: Option<&NetnsSpec>) -> String {
    match spec {
        Some(s) => format!("namespace '{s}'"),
        None => "the daemon's namespace".into(),
    }
}

/// A data path shared between the registry (for `show`) and whoever drives
/// its queues. The lock is taken per burst, not per frame.
pub type SharedDataPath = Arc<Mutex<DataPath>>;

/// Locks a data path; a panic in another holder does not poison it for us
/// (the queues stay consistent between bursts).
pub fn lock(d: &SharedDataPath) -> MutexGuard<'_, DataPath> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// One inverse operation, run if a later step fails.
#[derive(Debug)]
enum Undo {
    ClearPersist,
    DeleteLink(u32),
    ReleaseController(u32),
    DelAddress(u32, IpAddr, u8),
    LinkDown(u32),
    DelRoute(u32, IpAddr),
}

/// The inverses of the steps done so far, and the resources they act on.
#[derive(Debug, Default)]
struct Rollback {
    host: Option<Host>,
    datapath: Option<DataPath>,
    queues: Vec<OwnedFd>,
    name: String,
    undo: Vec<Undo>,
}

impl Rollback {
    /// Runs every inverse, newest first, then closes the queue fds.
    /// Failures are logged: rollback goes on with the rest regardless.
    async fn run(mut self) {
        // The data path goes first: its backend holds the queue fds.
        self.datapath = None;
        while let Some(u) = self.undo.pop() {
            let result = match (&u, &self.host) {
                (Undo::ClearPersist, _) => match self.queues.first() {
                    Some(fd) => tun::set_persist(fd, &self.name, false).map_err(StepError::from),
                    None => Ok(()),
                },
                (Undo::DeleteLink(i), Some(h)) => h.delete_link(*i).await.map_err(Into::into),
                (Undo::ReleaseController(i), Some(h)) => {
                    h.set_controller(*i, None).await.map_err(Into::into)
                }
                (Undo::DelAddress(i, a, l), Some(h)) => {
                    h.del_address(*i, *a, *l).await.map_err(Into::into)
                }
                (Undo::LinkDown(i), Some(h)) => h.set_up(*i, false).await.map_err(Into::into),
                (Undo::DelRoute(i, gw), Some(h)) => {
                    h.del_default_route(*i, *gw).await.map_err(Into::into)
                }
                (_, None) => Ok(()),
            };
            if let Err(e) = result {
                // ENODEV: the link went away already (deleting it undoes
                // everything on it); anything else is worth a warning.
                if !matches!(&e, StepError::Host(h) if h.errno() == Some(libc::ENODEV)) {
                    tracing::warn!(interface = %self.name, undo = ?u, error = %error_chain(&e), "rollback step failed");
                }
            }
        }
        self.queues.clear();
    }
}

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
    ns: Netns,
    queues: Vec<OwnedFd>,
}

impl Tap {
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
    settings: Settings,
    faults: Faults,
    own_ns: Netns,
    links: LinkWatch,
}

fn step<T>(faults: &Faults, s: Step, f: impl FnOnce() -> Result<T, StepError>) -> Result<T, Error> {
    faults.check(s).map_err(|e| Error::Step {
        step: s,
        source: StepError::Injected(e),
    })?;
    f().map_err(|source| Error::Step { step: s, source })
}

async fn astep<T, F>(faults: &Faults, s: Step, f: F) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<T, StepError>>,
{
    faults.check(s).map_err(|e| Error::Step {
        step: s,
        source: StepError::Injected(e),
    })?;
    f.await.map_err(|source| Error::Step { step: s, source })
}

/// Maps a route-add failure to the error users understand.
fn route_error(e: Error, field: &'static str, gw: IpAddr, name: &str) -> Error {
    let errno = match &e {
        Error::Step {
            source: StepError::Host(h),
            ..
        } => h.errno(),
        _ => None,
    };
    match errno {
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => Error::GatewayUnreachable {
            field,
            gw,
            name: name.to_string(),
        },
        Some(libc::EEXIST) => Error::RouteExists { field, gw },
        _ => e,
    }
}

impl Registry {
    /// A registry in the calling process's network namespace.
    pub fn new(settings: Settings) -> Result<Self, Error> {
        Ok(Self {
            taps: BTreeMap::new(),
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
        (0..=MAX_ID)
            .find(|id| !self.taps.contains_key(id) && !reserved.contains(id))
            .ok_or(Error::NoFreeId)
    }

    /// Whether `id` is in use here.
    pub fn has_id(&self, id: u32) -> bool {
        self.taps.contains_key(&id)
    }

    /// Deletes a TAP/TUN link named `host_if_name` in namespace `host_ns`
    /// that no registry serves: what a create interrupted by a crash left,
    /// or a detached interface the operator deletes. A link of another kind
    /// is never touched. Returns whether one was deleted.
    pub async fn remove_leftover(
        &self,
        host_ns: Option<&str>,
        host_if_name: &str,
    ) -> Result<bool, Error> {
        let ns = match host_ns {
            Some(spec) => {
                let spec: NetnsSpec = spec.parse().map_err(Error::Namespace)?;
                Netns::open(&spec).map_err(Error::Namespace)?
            }
            None => self.own_ns.try_clone().map_err(|e| Error::Step {
                step: Step::OpenNamespace,
                source: StepError::Io(e),
            })?,
        };
        let host = Host::open(&ns).map_err(|e| Error::Step {
            step: Step::OpenNetlink,
            source: e.into(),
        })?;
        let link = host
            .link_by_name(host_if_name)
            .await
            .map_err(|e| Error::Step {
                step: Step::CheckHost,
                source: e.into(),
            })?;
        let Some(link) = link.filter(|l| l.kind.as_deref() == Some("tun")) else {
            return Ok(false);
        };
        let index = link.index;
        tokio::task::spawn_blocking(move || host::delete_link_blocking(&ns, index))
            .await
            .map_err(|j| Error::Step {
                step: Step::DeleteLink,
                source: StepError::Io(io::Error::other(j.to_string())),
            })?
            .map_err(|e| Error::Step {
                step: Step::DeleteLink,
                source: e.into(),
            })?;
        tracing::info!(
            host_if_name,
            host_ns = host_ns.unwrap_or("-"),
            "leftover interface removed"
        );
        Ok(true)
    }

    fn allocate_id(&self, want: Option<u32>) -> Result<u32, Error> {
        match want {
            Some(id) if self.taps.contains_key(&id) => Err(Error::IdTaken(id)),
            Some(id) => Ok(id),
            None => (0..=MAX_ID)
                .find(|id| !self.taps.contains_key(id))
                .ok_or(Error::NoFreeId),
        }
    }

    /// Creates (or attaches to) an interface. On error nothing is left.
    pub async fn create(&mut self, opts: &CreateOptions) -> Result<TapInfo, Error> {
        self.create_with_intent(opts, &mut |_| Ok(())).await
    }

    /// Creates an interface as [`Registry::create`] does, calling `intent`
    /// once every check has passed and before the first kernel change, with
    /// what is about to be made: a caller that must survive a crash records
    /// it there (write-ahead) and refuses by returning an error, which
    /// fails the create with nothing done.
    pub async fn create_with_intent(
        &mut self,
        opts: &CreateOptions,
        intent: &mut (dyn FnMut(&Intent) -> Result<(), String> + Send),
    ) -> Result<TapInfo, Error> {
        let cfg = opts.validate()?;
        self.offload_allowed(cfg.offload, cfg.gro_coalesce)?;
        let mut rb = Rollback::default();
        match self.build(&cfg, &mut rb, intent).await {
            Ok(tap) => {
                let info = tap.snapshot();
                tracing::info!(
                    id = info.id,
                    host_if_name = %info.host_if_name,
                    host_ns = info.host_ns.as_deref().unwrap_or("-"),
                    backend = %info.backend,
                    attached = info.attached,
                    "interface created"
                );
                self.taps.insert(info.id, tap);
                Ok(info)
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "create failed, rolling back");
                rb.run().await;
                Err(e)
            }
        }
    }

    /// Refuses offloads when the daemon's kill switch is off.
    fn offload_allowed(&self, mode: OffloadMode, gro: bool) -> Result<(), Error> {
        let asked = match (mode, gro) {
            (OffloadMode::Gso, _) => "gso",
            (OffloadMode::Csum, _) => "csum-offload",
            (_, true) => "gro-coalesce",
            (OffloadMode::None, false) => return Ok(()),
        };
        if self.settings.allow_offload {
            return Ok(());
        }
        Err(Error::Invalid(options::Error {
            field: "offload",
            value: asked.into(),
            reason: "offloads are switched off in this daemon ([tap] offload = false)".into(),
        }))
    }

    async fn build(
        &self,
        cfg: &TapConfig,
        rb: &mut Rollback,
        intent: &mut (dyn FnMut(&Intent) -> Result<(), String> + Send),
    ) -> Result<Tap, Error> {
        let f = &self.faults;
        let id = step(f, Step::AllocateId, || Ok(())).and_then(|()| self.allocate_id(cfg.id))?;
        let prefix = match cfg.mode {
            Mode::Tap => "tap",
            Mode::Tun => "tun",
        };
        let name = cfg
            .host_if_name
            .clone()
            .unwrap_or_else(|| format!("{prefix}{id}"));
        rb.name.clone_from(&name);
        let ns_words = ns_label(cfg.host_ns.as_ref());

        f.check(Step::OpenNamespace).map_err(|e| Error::Step {
            step: Step::OpenNamespace,
            source: StepError::Injected(e),
        })?;
        let ns = match &cfg.host_ns {
            Some(spec) => Netns::open(spec).map_err(Error::Namespace)?,
            None => step(f, Step::OpenNamespace, || {
                self.own_ns.try_clone().map_err(StepError::from)
            })?,
        };

        let host = step(f, Step::OpenNetlink, || Host::open(&ns).map_err(Into::into))?;
        let host = rb.host.insert(host);

        // Check the target namespace before changing anything in it.
        let existing = astep(f, Step::CheckHost, async {
            host.link_by_name(&name).await.map_err(Into::into)
        })
        .await?;
        let multi_queue = match (&existing, cfg.attach) {
            (Some(_), false) => return Err(Error::NameTaken { name, ns: ns_words }),
            (None, true) => return Err(Error::AttachMissing { name, ns: ns_words }),
            (Some(link), true) => Some(check_attachable(link, cfg, &name)?),
            (None, false) => None,
        };
        let bridge = match &cfg.host_bridge {
            Some(br) => {
                let link = astep(f, Step::CheckHost, async {
                    host.link_by_name(br).await.map_err(Into::into)
                })
                .await?
                .ok_or_else(|| Error::BridgeMissing {
                    name: br.clone(),
                    ns: ns_words.clone(),
                })?;
                if !link.is_bridge() {
                    return Err(Error::NotBridge {
                        name: br.clone(),
                        kind: link.kind.unwrap_or_else(|| "plain".into()),
                    });
                }
                Some(link.index)
            }
            None => None,
        };

        // The tap itself: queues, flags, offloads, persistence.
        // Single-queue unless more queues are asked for. A multi-queue tap
        // has tun's 256 tx queues, and its default qdisc (mq) puts a
        // pfifo_fast with three 1000-slot rings under each: about 6 MB of
        // kernel memory per interface, measured (VPP sets IFF_MULTI_QUEUE
        // whenever the kernel offers it, and pays that).
        let want_mq = multi_queue.unwrap_or(cfg.num_rx_queues > 1 || cfg.num_tx_queues > 1);
        if want_mq && !tun::offers_multi_queue(&self.settings.tun_device).unwrap_or(true) {
            return Err(Error::Invalid(options::Error {
                field: "num-rx-queues",
                value: cfg.num_rx_queues.to_string(),
                reason: "this kernel's TUN driver has no multi-queue support".into(),
            }));
        }
        intent(&Intent {
            id,
            host_if_name: name.clone(),
            host_ns: cfg.host_ns.as_ref().map(ToString::to_string),
            attach: cfg.attach,
        })
        .map_err(Error::NotDurable)?;
        rb.queues = step(f, Step::OpenQueues, || {
            tun::open_queues(
                &ns,
                &self.settings.tun_device,
                &name,
                cfg.mode,
                cfg.num_rx_queues,
                want_mq,
            )
            .map_err(Into::into)
        })?;
        if !cfg.attach {
            // From here on the interface exists: deleting it is the
            // innermost inverse (it also removes addresses and routes).
            rb.undo.push(Undo::ClearPersist);
        }
        step(f, Step::ConfigureQueues, || {
            rb.queues
                .iter()
                .try_for_each(|q| tun::configure_queue(q, &name, cfg.mode))
                .map_err(Into::into)
        })?;
        let mask = step(f, Step::SetOffload, || {
            tun::set_offload(&rb.queues, &name, cfg.offload, self.settings.allow_uso)
                .map_err(Into::into)
        })?;
        let persist = if cfg.attach {
            cfg.persist || multi_queue.is_some()
        } else {
            cfg.persist
        };
        if cfg.persist && !cfg.attach {
            step(f, Step::SetPersist, || match rb.queues.first() {
                Some(q) => tun::set_persist(q, &name, true).map_err(Into::into),
                None => Ok(()),
            })?;
        }
        let backend = step(f, Step::SelectBackend, || Ok(()))
            .and_then(|()| self.select_backend(cfg.backend))?;
        if self.settings.datapath {
            let mut dp = step(f, Step::StartDataPath, || {
                self.start_datapath(cfg, backend, &rb.queues)
                    .map_err(Into::into)
            })?;
            let tun = cfg.mode == Mode::Tun;
            dp.set_offload_caps(Caps::from_mask(mask, cfg.gro_coalesce, tun));
            rb.datapath = Some(dp);
        }

        let link = astep(f, Step::LookupLink, async {
            host.link_by_name(&name).await?.ok_or_else(|| {
                StepError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{name} vanished right after creation"),
                ))
            })
        })
        .await?;
        let index = link.index;
        if !cfg.attach {
            rb.undo.push(Undo::DeleteLink(index));
        }

        // Host-side configuration (none of it on attach: the interface keeps
        // what it had).
        let host_mac = match (cfg.mode, cfg.attach) {
            (Mode::Tap, false) => {
                let mac = match cfg.host_mac_addr {
                    Some(m) => m,
                    None => MacAddr::random().map_err(|e| Error::Step {
                        step: Step::SetMac,
                        source: e.into(),
                    })?,
                };
                astep(f, Step::SetMac, async {
                    host.set_mac(index, mac).await.map_err(Into::into)
                })
                .await?;
                Some(mac)
            }
            _ => None,
        };
        let hw_addr = match cfg.mode {
            Mode::Tap => Some(match cfg.hw_addr {
                Some(m) => m,
                None => MacAddr::random().map_err(|e| Error::Step {
                    step: Step::SetMac,
                    source: e.into(),
                })?,
            }),
            Mode::Tun => None,
        };
        let mtu = cfg.host_mtu_size.or(if cfg.attach {
            None
        } else {
            self.settings.default_host_mtu
        });
        if let Some(mtu) = mtu {
            astep(f, Step::SetMtu, async {
                host.set_mtu(index, mtu).await.map_err(Into::into)
            })
            .await?;
        }
        if let Some(br) = bridge {
            astep(f, Step::SetBridge, async {
                host.set_controller(index, Some(br))
                    .await
                    .map_err(Into::into)
            })
            .await?;
            rb.undo.push(Undo::ReleaseController(index));
        }
        let addrs = [
            (Step::AddIp4, cfg.host_ip4_addr.map(|p| (p.ip(), p.len))),
            (Step::AddIp6, cfg.host_ip6_addr.map(|p| (p.ip(), p.len))),
        ];
        for (s, addr) in addrs {
            let Some((ip, len)) = addr else { continue };
            astep(f, s, async {
                host.add_address(index, ip, len).await.map_err(Into::into)
            })
            .await?;
            rb.undo.push(Undo::DelAddress(index, ip, len));
        }
        if !cfg.attach {
            astep(f, Step::LinkUp, async {
                host.set_up(index, true).await.map_err(Into::into)
            })
            .await?;
            rb.undo.push(Undo::LinkDown(index));
        }
        if let Some(gw) = cfg.host_ip4_gw {
            let gw = IpAddr::V4(gw);
            astep(f, Step::AddIp4Route, async {
                host.add_default_route(index, gw).await.map_err(Into::into)
            })
            .await
            .map_err(|e| route_error(e, "host-ip4-gw", gw, &name))?;
            rb.undo.push(Undo::DelRoute(index, gw));
        }
        if let Some(gw) = cfg.host_ip6_gw {
            let gw = IpAddr::V6(gw);
            astep(f, Step::AddIp6Route, async {
                host.add_default_route(index, gw).await.map_err(Into::into)
            })
            .await
            .map_err(|e| route_error(e, "host-ip6-gw", gw, &name))?;
            rb.undo.push(Undo::DelRoute(index, gw));
        }

        // Read the effective state back from the kernel.
        let now = astep(f, Step::ReadBack, async {
            host.link_by_index(index).await?.ok_or_else(|| {
                StepError::Io(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{name} vanished during configuration"),
                ))
            })
        })
        .await?;
        let host_bridge = match now.controller {
            Some(c) if cfg.host_bridge.is_none() => {
                host.link_by_index(c).await.ok().flatten().map(|l| l.name)
            }
            _ => cfg.host_bridge.clone(),
        };
        let host_mac_addr = match cfg.mode {
            Mode::Tap => now
                .mac
                .as_deref()
                .and_then(|m| <[u8; 6]>::try_from(m).ok())
                .map(MacAddr)
                .or(host_mac),
            Mode::Tun => None,
        };
        let mut info = TapInfo {
            id,
            name: format!("{prefix}{id}"),
            host_if_name: name,
            host_ns: cfg.host_ns.as_ref().map(ToString::to_string),
            host_ns_inode: ns.inode(),
            host_ifindex: index,
            host_mac_addr,
            hw_addr,
            host_bridge,
            host_ip4_addr: cfg.host_ip4_addr.map(|p| p.to_string()),
            host_ip4_gw: cfg.host_ip4_gw.map(|a| a.to_string()),
            host_ip6_addr: cfg.host_ip6_addr.map(|p| p.to_string()),
            host_ip6_gw: cfg.host_ip6_gw.map(|a| a.to_string()),
            host_mtu_size: now.mtu,
            rx_ring_size: cfg.rx_ring_size,
            tx_ring_size: cfg.tx_ring_size,
            num_rx_queues: cfg.num_rx_queues,
            num_tx_queues: cfg.num_tx_queues,
            multi_queue: want_mq,
            gso: false,
            csum_offload: false,
            gro_coalesce: false,
            tun: cfg.mode == Mode::Tun,
            persist,
            attached: cfg.attach,
            backend,
            tun_offload: 0,
            tun_offload_flags: Vec::new(),
            datapath: None,
            state: AttachState::Attached,
            reason: None,
        };
        info.set_offload(cfg.offload, cfg.gro_coalesce, mask);
        if cfg.attach {
            // The interface kept its host configuration: say what it is.
            read_back_host_config(host, index, &mut info).await;
        }
        let watch = self
            .links
            .watch(&ns, index, id, info.host_mtu_size)
            .map_err(|e| {
                tracing::warn!(id, error = %error_chain(&e), "host-side link events unavailable");
            })
            .ok();
        Ok(Tap {
            info,
            datapath: rb.datapath.take().map(|d| Arc::new(Mutex::new(d))),
            ns,
            queues: std::mem::take(&mut rb.queues),
            watch,
        })
    }

    fn start_datapath(
        &self,
        cfg: &TapConfig,
        backend: Backend,
        queues: &[OwnedFd],
    ) -> Result<DataPath, datapath::Error> {
        let taps = queues
            .iter()
            .map(|q| q.try_clone().map(std::fs::File::from))
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| datapath::Error::Queue(datapath::queue::Error::EventFd(e)))?;
        // Validated to 1..=32768, which fits.
        let ring = |n: u32| u16::try_from(n).unwrap_or(crate::virtq::split::MAX_SIZE);
        DataPath::start(
            &datapath::Config {
                rx_ring_size: ring(cfg.rx_ring_size),
                tx_ring_size: ring(cfg.tx_ring_size),
                num_rx_queues: cfg.num_rx_queues,
                num_tx_queues: cfg.num_tx_queues,
                event_idx: self.settings.event_idx,
                indirect: true,
                backend,
            },
            &taps,
        )
    }

    /// The interface as one end of a cross-connect.
    pub fn end(&self, key: &str) -> Result<crate::forward::End, Error> {
        let id = self.resolve(key)?;
        let t = &self.taps[&id];
        Ok(crate::forward::End {
            id,
            name: t.info.name.clone(),
            tun: t.info.tun,
            datapath: t.datapath.clone(),
        })
    }

    /// The interface `key` names, with its running data path.
    fn with_datapath(&self, key: &str) -> Result<(u32, &Tap, &SharedDataPath), Error> {
        let id = self.resolve(key)?;
        let t = &self.taps[&id];
        let dp = t.datapath.as_ref().ok_or_else(|| Error::NoDataPath {
            iface: key.to_string(),
            reason: "runs no data path",
        })?;
        Ok((id, t, dp))
    }

    /// Sets the rx mode of every rx queue of an interface (takes effect at
    /// once; the worker serving it follows at its next idle round).
    pub fn set_rx_mode(&mut self, key: &str, mode: datapath::RxMode) -> Result<TapInfo, Error> {
        let (id, t, dp) = self.with_datapath(key)?;
        {
            let mut d = lock(dp);
            for q in 0..d.num_rx() {
                d.set_rx_mode(q, mode)?;
            }
        }
        tracing::info!(id, ?mode, "rx mode changed");
        Ok(t.snapshot())
    }

    /// Sets an interface's MTU: the host side in the kernel, read back, and
    /// what vtap shows. (The data plane's buffers are merged per frame, so
    /// any MTU in range fits them: there is nothing else to resize.)
    pub async fn set_mtu(&mut self, key: &str, mtu: u32) -> Result<TapInfo, Error> {
        if !options::MTU_RANGE.contains(&mtu) {
            return Err(Error::Invalid(options::Error {
                field: "mtu",
                value: mtu.to_string(),
                reason: "must be in 68..=65521 (the kernel's range for a tap)".into(),
            }));
        }
        let id = self.resolve(key)?;
        let tap = self
            .taps
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        let index = tap.info.host_ifindex;
        let faults = self.faults.clone();
        let ns = &tap.ns;
        let now = astep(&faults, Step::SetMtu, async {
            let host = Host::open(ns)?;
            host.set_mtu(index, mtu).await?;
            Ok(host.link_by_index(index).await?)
        })
        .await?;
        if let Some(link) = now {
            tap.info.host_mtu_size = link.mtu;
            if let Some(w) = &tap.watch {
                w.set_mtu(link.mtu);
            }
        }
        tracing::info!(id, mtu = tap.info.host_mtu_size, "mtu changed");
        Ok(tap.snapshot())
    }

    /// Starts a pcap capture on an interface's data path; the capture is
    /// the returned stream (nothing is written anywhere by vtap).
    pub fn start_capture(
        &self,
        key: &str,
        direction: datapath::capture::Direction,
        count: Option<u64>,
    ) -> Result<datapath::capture::Stream, Error> {
        let (id, t, dp) = self.with_datapath(key)?;
        let mut dp = lock(dp);
        if let Some(running) = dp.running_capture() {
            return Err(Error::CaptureRunning {
                iface: key.to_string(),
                captured: running.captured,
            });
        }
        let (_, stream) = dp.start_capture(direction, count, t.info.tun);
        tracing::info!(id, ?direction, count, "capture started");
        Ok(stream)
    }

    /// Stops an interface's capture (its stream ends); returns its state.
    pub fn stop_capture(&self, key: &str) -> Result<datapath::capture::CaptureState, Error> {
        let (id, _, dp) = self.with_datapath(key)?;
        let st = lock(dp).stop_capture().ok_or_else(|| Error::NoDataPath {
            iface: key.to_string(),
            reason: "no capture is running",
        })?;
        tracing::info!(
            id,
            frames = st.captured,
            dropped = st.dropped,
            "capture stopped"
        );
        Ok(st)
    }

    /// An interface's data path, to drive its queues (the forwarding plane,
    /// a test). `None` when the registry runs without data paths.
    pub fn datapath(&self, key: &str) -> Result<Option<SharedDataPath>, Error> {
        let id = self.resolve(key)?;
        Ok(self.taps.get(&id).and_then(|t| t.datapath.clone()))
    }

    fn select_backend(&self, req: BackendRequest) -> Result<Backend, Error> {
        let probe = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.settings.vhost_device)
                .map(drop)
        };
        match req {
            BackendRequest::Userspace => Ok(Backend::Userspace),
            BackendRequest::Direct => Ok(Backend::Direct),
            // Without vhost-net, rings served by a vtap thread only add
            // copies and thread hand-offs: the direct engine is faster on
            // every measure (docs/benchmarks.md).
            BackendRequest::Auto => Ok(match probe() {
                Ok(()) => Backend::VhostNet,
                Err(_) => Backend::Direct,
            }),
            BackendRequest::VhostNet => {
                probe().map_err(|source| Error::VhostUnavailable {
                    path: self.settings.vhost_device.display().to_string(),
                    source,
                })?;
                Ok(Backend::VhostNet)
            }
        }
    }

    /// Deletes an interface: gone from its namespace, fds closed, id free.
    pub async fn delete(&mut self, key: &str) -> Result<TapInfo, Error> {
        self.delete_many(&[key])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::NotFound(key.into())))
    }

    /// Deletes several interfaces at once; returns each key's outcome, in
    /// order. One that fails stays intact and can be deleted again. Their
    /// `RTM_DELLINK`s run on threads of their own (never on the async
    /// runtime's): the kernel answers each only after waiting
    /// for RCU grace periods (~20 ms here, outside the RTNL lock), and those
    /// waits overlap. A key given twice is refused the second time.
    pub async fn delete_many(&mut self, keys: &[&str]) -> Vec<Result<TapInfo, Error>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out: Vec<Result<u32, Error>> = keys
            .iter()
            .map(|k| {
                self.resolve(k).and_then(|id| {
                    if seen.insert(id) {
                        Ok(id)
                    } else {
                        Err(Error::Duplicate((*k).to_string()))
                    }
                })
            })
            .collect();
        let mut jobs = Vec::new();
        for (i, slot) in out.iter_mut().enumerate() {
            let Ok(id) = *slot else { continue };
            match self.start_link_deletion(id) {
                Ok(job) => jobs.push((i, id, job)),
                Err(e) => *slot = Err(e),
            }
        }
        for (i, id, job) in jobs {
            let done = match job.await {
                Ok(r) => r,
                Err(join) => Err(Error::Step {
                    step: Step::DeleteLink,
                    source: StepError::Io(io::Error::other(join.to_string())),
                }),
            };
            if let Err(e) = done {
                self.restore_persist(id);
                out[i] = Err(e);
            }
        }
        out.into_iter()
            .zip(keys)
            .map(|(r, key)| r.and_then(|id| self.forget(id, key)))
            .collect()
    }

    /// Starts the kernel half of a deletion on a blocking thread (persist
    /// cleared first). The job's error leaves the link in place; the caller
    /// then restores persist, so that the interface is exactly as it was and
    /// the deletion can be retried.
    fn start_link_deletion(
        &self,
        id: u32,
    ) -> Result<tokio::task::JoinHandle<Result<(), Error>>, Error> {
        let f = &self.faults;
        let tap = self.taps.get(&id).ok_or(Error::NotFound(id.to_string()))?;
        let ns = step(f, Step::OpenNetlink, || {
            tap.ns.try_clone().map_err(StepError::Io)
        })?;
        if tap.info.persist {
            step(f, Step::DeleteClearPersist, || match tap.queues.first() {
                Some(q) => tun::set_persist(q, &tap.info.host_if_name, false).map_err(Into::into),
                None => Ok(()),
            })?;
        }
        let (faults, index) = (f.clone(), tap.info.host_ifindex);
        if let Some(w) = &tap.watch {
            w.expect_removal(true);
        }
        Ok(tokio::task::spawn_blocking(move || {
            step(&faults, Step::DeleteLink, || {
                host::delete_link_blocking(&ns, index).map_err(Into::into)
            })
        }))
    }

    /// Makes a persistent interface persistent again after a failed
    /// deletion cleared it.
    fn restore_persist(&self, id: u32) {
        if let Some(w) = self.taps.get(&id).and_then(|t| t.watch.as_ref()) {
            w.expect_removal(false);
        }
        let Some(tap) = self.taps.get(&id).filter(|t| t.info.persist) else {
            return;
        };
        if let Some(q) = tap.queues.first() {
            if let Err(pe) = tun::set_persist(q, &tap.info.host_if_name, true) {
                tracing::warn!(id, error = %error_chain(&pe), "could not restore persist");
            }
        }
    }

    /// The registry half of a deletion, once the link is gone: the data
    /// path stopped, fds closed, the id free.
    fn forget(&mut self, id: u32, key: &str) -> Result<TapInfo, Error> {
        let tap = self
            .taps
            .remove(&id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        tracing::info!(id, host_if_name = %tap.info.host_if_name, "interface deleted");
        Ok(tap.info)
    }

    /// Changes the offloads of a live interface, on every queue.
    pub async fn set_offload(
        &mut self,
        key: &str,
        action: OffloadAction,
    ) -> Result<TapInfo, Error> {
        let id = self.resolve(key)?;
        let tap = self
            .taps
            .get(&id)
            .ok_or_else(|| Error::NotFound(key.into()))?;
        let action_name = serde_json::to_value(action)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let (mode, gro) = next_offload(tap.info.offload_mode(), tap.info.gro_coalesce, action)
            .map_err(|reason| Error::Offload {
                action: action_name.clone(),
                reason,
            })?;
        if !self.settings.allow_offload && (mode != OffloadMode::None || gro) {
            return Err(Error::Offload {
                action: action_name,
                reason: "offloads are switched off in this daemon ([tap] offload = false)".into(),
            });
        }
        self.apply_offload(id, mode, gro, &action_name)
    }

    /// Puts an interface's offloads back as `before` had them (undoing a
    /// run-time change that could not be saved).
    pub fn restore_offload(&mut self, key: &str, before: &TapInfo) -> Result<TapInfo, Error> {
        let id = self.resolve(key)?;
        self.apply_offload(id, before.offload_mode(), before.gro_coalesce, "restore")
    }

    /// Sets offload `mode` and `gro` on every queue of interface `id`.
    fn apply_offload(
        &mut self,
        id: u32,
        mode: OffloadMode,
        gro: bool,
        action_name: &str,
    ) -> Result<TapInfo, Error> {
        let allow_uso = self.settings.allow_uso;
        let faults = self.faults.clone();
        let tap = self
            .taps
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let mask = step(&faults, Step::SetOffload, || {
            tun::set_offload(&tap.queues, &tap.info.host_if_name, mode, allow_uso)
                .map_err(Into::into)
        })?;
        tap.info.set_offload(mode, gro, mask);
        if let Some(dp) = &tap.datapath {
            lock(dp).set_offload_caps(Caps::from_mask(mask, gro, tap.info.tun));
        }
        tracing::info!(id, action = %action_name, tun_offload = mask, "offload changed");
        Ok(tap.snapshot())
    }

    /// Duplicates of an interface's queue fds, one per rx queue, for the
    /// data path (the registry keeps its own, so the interface's life does
    /// not depend on the data path's).
    pub fn dup_queues(&self, key: &str) -> Result<Vec<std::fs::File>, Error> {
        let id = self.resolve(key)?;
        self.taps[&id]
            .queues
            .iter()
            .map(|q| q.try_clone().map(std::fs::File::from))
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

/// Fills an attached interface's host addresses and gateways from the
/// kernel (the first global address and default gateway of each family).
/// Best effort: a failed query leaves the fields empty, it does not fail the
/// attach.
async fn read_back_host_config(host: &host::Host, index: u32, info: &mut TapInfo) {
    if let Ok(addrs) = host.addresses(index).await {
        let first = |v6: bool| {
            addrs
                .iter()
                .find(|(a, _)| a.is_ipv6() == v6)
                .map(|(a, l)| format!("{a}/{l}"))
        };
        info.host_ip4_addr = first(false);
        info.host_ip6_addr = first(true);
    }
    if let Ok(gws) = host.default_gateways(index).await {
        let first = |v6: bool| {
            gws.iter()
                .find(|g| g.is_ipv6() == v6)
                .map(ToString::to_string)
        };
        info.host_ip4_gw = first(false);
        info.host_ip6_gw = first(true);
    }
}

/// Checks that an existing link can be attached to as `cfg` asks; returns
/// whether it is multi-queue.
fn check_attachable(link: &host::Link, cfg: &TapConfig, name: &str) -> Result<bool, Error> {
    let mismatch = |reason: String| Error::AttachMismatch {
        name: name.to_string(),
        reason,
    };
    let Some(t) = link.tun.as_ref() else {
        return Err(mismatch(format!(
            "it is a {} interface, not TUN/TAP",
            link.kind.as_deref().unwrap_or("plain")
        )));
    };
    let want_tap = cfg.mode == Mode::Tap;
    if t.tap != want_tap {
        return Err(mismatch(format!(
            "it is a {}, and {} was asked for",
            if t.tap { "TAP" } else { "TUN" },
            if want_tap { "TAP" } else { "TUN (tun)" }
        )));
    }
    if !t.vnet_hdr {
        return Err(mismatch("it was created without IFF_VNET_HDR".into()));
    }
    if t.pi {
        return Err(mismatch("it was created without IFF_NO_PI".into()));
    }
    if cfg.num_rx_queues > 1 && !t.multi_queue {
        return Err(mismatch(format!(
            "num-rx-queues {} needs IFF_MULTI_QUEUE, which it was created without",
            cfg.num_rx_queues
        )));
    }
    // A single-queue tap already held by another process is refused by
    // TUNSETIFF itself (EBUSY); the kernel reports no queue count for it.
    Ok(t.multi_queue)
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
