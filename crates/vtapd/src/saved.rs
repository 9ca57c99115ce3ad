//! The state file's contents: what the daemon serves, as saved, and the
//! intents written ahead of kernel changes. Plain data; reading, writing
//! and acting on it is [`crate::state`]'s.

use serde::{Deserialize, Serialize};
use vtap::datapath::limit::RateLimits;
use vtap::datapath::RxMode;
use vtap::forward::Xconnect;
use vtap::tunnel::VxlanOptions;
use vtap::uplink::HostInterfaceOptions;
use vtap::TapInfo;

/// The state file's format version (fields added since are optional).
pub const VERSION: u32 = 1;

/// One interface as saved: what `show` says, and its rx mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedTap {
    /// The interface (data-path state left out).
    pub info: TapInfo,
    /// Rx mode of its queues.
    pub rx_mode: Option<RxMode>,
    /// Its rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimits>,
}

/// A host uplink as saved: the options that open it again as it was (id,
/// queues and rx mode included).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedHostInterface {
    /// Its options.
    pub options: HostInterfaceOptions,
    /// Its rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimits>,
}

/// A VXLAN tunnel as saved: the options that create it again as it was
/// (its instance, so its name, included).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedVxlan {
    /// Its options.
    pub options: VxlanOptions,
    /// Its rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimits>,
}

/// A bridge domain as saved.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedBridge {
    /// Its name.
    pub name: String,
    /// Its interfaces.
    pub interfaces: Vec<String>,
    /// Its learn limit.
    #[serde(default)]
    pub mac_limit: Option<usize>,
}

/// A kernel change under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PendingOp {
    /// Creating (or attaching to) an interface.
    Create,
    /// Deleting one.
    Delete,
}

/// An intent written before its kernel steps (write-ahead).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Create or delete.
    pub op: PendingOp,
    /// The interface id.
    pub id: u32,
    /// Its host-side name.
    pub host_if_name: String,
    /// Its namespace as given.
    pub host_ns: Option<String>,
    /// An attach (the link existed before and must stay).
    pub attach: bool,
}

/// Everything the daemon serves.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// Format version.
    pub version: u32,
    /// Which journal continues this file ([`crate::journal`]).
    #[serde(default)]
    pub generation: u64,
    /// Interfaces (detached ones included).
    pub taps: Vec<SavedTap>,
    /// Host uplinks (those not open again included).
    #[serde(default)]
    pub host_interfaces: Vec<SavedHostInterface>,
    /// VXLAN tunnels (those not made again included).
    #[serde(default)]
    pub vxlan_tunnels: Vec<SavedVxlan>,
    /// Cross-connects.
    pub xconnects: Vec<Xconnect>,
    /// Bridge domains.
    pub bridges: Vec<SavedBridge>,
    /// Kernel changes under way when this was written.
    #[serde(default)]
    pub pending: Vec<Pending>,
}

/// Cross-connects and bridges an interface belongs to, waiting for it to be
/// re-attached.
#[derive(Clone, Debug, Default)]
pub struct Memberships {
    /// Its cross-connect, as saved.
    pub xconnects: Vec<Xconnect>,
    /// The bridges it is a port of.
    pub bridges: Vec<String>,
}
