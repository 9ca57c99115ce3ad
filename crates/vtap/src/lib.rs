//! vtap: fast, fully configured Linux TAP/TUN interfaces for userspace data
//! planes — a Rust re-implementation of fd.io VPP's tapv2 driver.
//!
//! # Architecture
//!
//! ```text
//!   registry   create / attach / delete / dump / offload toggles, with rollback
//!      |    \
//!      |     host      host-side configuration over rtnetlink, per namespace
//!      |     linkwatch host-side link events (an MTU changed behind vtap's back)
//!      |     netns     naming namespaces (VPP's host-ns) and working inside them
//!     tun              /dev/net/tun queues, flags, offload masks
//!     sys              every unsafe system call, one per block
//! ```
//!
//! [`options`] validates what users ask for; [`fault`] is the seam that
//! fails any step on demand so that tests can prove the rollback.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), vtap::registry::Error> {
//! use vtap::options::CreateOptions;
//! use vtap::registry::{Registry, Settings};
//!
//! let mut reg = Registry::new(Settings::default())?;
//! let info = reg
//!     .create(&CreateOptions {
//!         host_ns: Some("blue".into()),
//!         host_ip4_addr: Some("198.18.0.1/24".into()),
//!         gso: true,
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("{} is {} in {:?}", info.name, info.host_if_name, info.host_ns);
//! reg.delete(&info.name).await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod datapath;
pub mod fault;
pub mod forward;
pub mod host;
pub mod linkwatch;
pub mod mac;
pub mod netns;
pub mod offload;
pub mod options;
pub mod registry;
pub mod sys;
pub mod tun;
pub mod virtq;

pub use mac::MacAddr;
pub use options::CreateOptions;
pub use registry::{Registry, Settings, TapInfo};
