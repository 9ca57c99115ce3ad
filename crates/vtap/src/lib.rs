//! vtap: fast, fully configured Linux TAP/TUN interfaces for userspace data
//! planes — a Rust re-implementation of fd.io VPP's tapv2 driver.
//!
//! # Architecture
//!
//! Layers, imports pointing down only (a test fails on any cycle; see
//! `docs/architecture.md` for the picture and "where do I put X"):
//!
//! ```text
//!   node       rules that span registry, uplinks and forwarder (no delete while in use)
//!    |    \         \
//!   registry uplink   forward   taps with rollback | host uplinks (AF_PACKET) | workers, xconnect, bridge
//!    |    \    |      /
//!    |    port             the Port trait: what the forwarding plane moves frames between
//!    |     |
//!   datapath               queues, backends (vhost-net, rings, direct), ledger, capture
//!    |
//!   offload                GSO split, checksums, GRO coalesce (pure)
//!    |
//!   tun host netns linkwatch options fault mac   virtq   wire   kind
//!    |
//!   sys                    every unsafe system call, one per block
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
pub mod kind;
pub mod linkwatch;
pub mod mac;
pub mod netns;
pub mod node;
pub mod offload;
pub mod options;
pub mod port;
pub mod registry;
pub mod sys;
pub mod tun;
pub mod tunnel;
pub mod uplink;
pub mod virtq;
pub mod wire;

pub use mac::MacAddr;
pub use options::CreateOptions;
pub use registry::{Registry, Settings, TapInfo};
