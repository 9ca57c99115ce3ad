//! The steps of creating and deleting an interface, and a seam that makes any
//! one of them fail.
//!
//! Creation is a sequence of kernel operations, any of which can fail (a
//! netlink error, an ioctl refused, memory). The registry runs each step
//! through [`Faults::check`] first; a test (or an operator chasing a bug, via
//! the daemon) arms the seam with a step and an errno, and that step fails as
//! if the kernel had said so. Tests arm every step in turn and check that the
//! rollback leaves nothing behind.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// One step of `create` or `delete`, in the order `create` runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Step {
    /// Take an interface id.
    AllocateId,
    /// Open the host namespace.
    OpenNamespace,
    /// Open a netlink connection in it.
    OpenNetlink,
    /// Check the name is free (or, to attach, that it exists) and the bridge.
    CheckHost,
    /// Open the queue fds (`TUNSETIFF`).
    OpenQueues,
    /// vnet header size and send buffer on each queue.
    ConfigureQueues,
    /// `TUNSETOFFLOAD` on each queue.
    SetOffload,
    /// `TUNSETPERSIST`.
    SetPersist,
    /// Choose the backend (probe `/dev/vhost-net`).
    SelectBackend,
    /// Lay out the rings and start the backend serving them.
    StartDataPath,
    /// Find the new interface's ifindex.
    LookupLink,
    /// Set the host MAC.
    SetMac,
    /// Set the MTU.
    SetMtu,
    /// Enslave to the bridge.
    SetBridge,
    /// Add the IPv4 address.
    AddIp4,
    /// Add the IPv6 address.
    AddIp6,
    /// Add the further addresses (`host_addrs`).
    AddAddrs,
    /// Set the link up.
    LinkUp,
    /// Add the IPv4 default route.
    AddIp4Route,
    /// Add the IPv6 default route.
    AddIp6Route,
    /// Add the routes (`host_routes`).
    AddRoutes,
    /// Read back the effective state.
    ReadBack,
    /// Delete: clear `TUNSETPERSIST`.
    DeleteClearPersist,
    /// Delete: remove the link.
    DeleteLink,
}

impl Step {
    /// Every creation step, in order.
    pub const CREATE: &'static [Step] = &[
        Step::AllocateId,
        Step::OpenNamespace,
        Step::OpenNetlink,
        Step::CheckHost,
        Step::OpenQueues,
        Step::ConfigureQueues,
        Step::SetOffload,
        Step::SetPersist,
        Step::SelectBackend,
        Step::StartDataPath,
        Step::LookupLink,
        Step::SetMac,
        Step::SetMtu,
        Step::SetBridge,
        Step::AddIp4,
        Step::AddIp6,
        Step::AddAddrs,
        Step::LinkUp,
        Step::AddIp4Route,
        Step::AddIp6Route,
        Step::AddRoutes,
        Step::ReadBack,
    ];

    /// Every deletion step, in order.
    pub const DELETE: &'static [Step] = &[Step::DeleteClearPersist, Step::DeleteLink];

    /// The step's name as shown in errors and accepted by the API.
    pub fn name(self) -> &'static str {
        match self {
            Step::AllocateId => "allocate-id",
            Step::OpenNamespace => "open-namespace",
            Step::OpenNetlink => "open-netlink",
            Step::CheckHost => "check-host",
            Step::OpenQueues => "open-queues",
            Step::ConfigureQueues => "configure-queues",
            Step::SetOffload => "set-offload",
            Step::SetPersist => "set-persist",
            Step::SelectBackend => "select-backend",
            Step::StartDataPath => "start-data-path",
            Step::LookupLink => "lookup-link",
            Step::SetMac => "set-mac",
            Step::SetMtu => "set-mtu",
            Step::SetBridge => "set-bridge",
            Step::AddIp4 => "add-ip4",
            Step::AddIp6 => "add-ip6",
            Step::AddAddrs => "add-addrs",
            Step::LinkUp => "link-up",
            Step::AddIp4Route => "add-ip4-route",
            Step::AddIp6Route => "add-ip6-route",
            Step::AddRoutes => "add-routes",
            Step::ReadBack => "read-back",
            Step::DeleteClearPersist => "delete-clear-persist",
            Step::DeleteLink => "delete-link",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an armed fault does when its step comes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FaultAction {
    /// The step fails with the errno (the rollback runs).
    #[default]
    Fail,
    /// The process is killed (`SIGKILL`) just before the step: a crash at
    /// that point, for testing what a restart finds.
    Kill,
}

/// An armed fault: `step` fails with `errno` (or the process dies there), once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Fault {
    /// The step to fail.
    pub step: Step,
    /// The errno to fail it with (default `EIO`).
    #[serde(default = "default_errno")]
    pub errno: i32,
    /// Fail the step (default) or kill the process there.
    #[serde(default)]
    pub action: FaultAction,
}

impl Fault {
    /// `step` fails once with `errno`.
    pub fn fail(step: Step, errno: i32) -> Self {
        Self {
            step,
            errno,
            action: FaultAction::Fail,
        }
    }
}

fn default_errno() -> i32 {
    libc::EIO
}

/// The fault-injection seam. Cloning shares the armed fault.
#[derive(Clone, Debug, Default)]
pub struct Faults(Arc<Mutex<Option<Fault>>>);

impl Faults {
    /// Arms `fault`; the next run of its step fails, then the seam disarms.
    pub fn arm(&self, fault: Fault) {
        *self.lock() = Some(fault);
    }

    /// Disarms the seam.
    pub fn disarm(&self) {
        *self.lock() = None;
    }

    /// The armed fault, if any.
    pub fn armed(&self) -> Option<Fault> {
        *self.lock()
    }

    /// Called before each step: fails (and disarms) if the step is armed.
    pub fn check(&self, step: Step) -> io::Result<()> {
        let mut armed = self.lock();
        match *armed {
            Some(f) if f.step == step => {
                *armed = None;
                if f.action == FaultAction::Kill {
                    tracing::warn!(%step, "fault injection: killing the process");
                    crate::sys::kill_self();
                }
                Err(io::Error::from_raw_os_error(f.errno))
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Fault>> {
        // A panic while holding this lock cannot leave the Option invalid.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_at_its_step() {
        let f = Faults::default();
        f.arm(Fault {
            step: Step::SetMtu,
            errno: libc::ENOMEM,
            action: FaultAction::Fail,
        });
        assert!(f.check(Step::SetMac).is_ok());
        let e = f.check(Step::SetMtu).expect_err("armed");
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM));
        assert!(f.check(Step::SetMtu).is_ok(), "disarmed after firing");
    }

    #[test]
    fn names_are_unique_and_serde_agrees() {
        let all: Vec<Step> = Step::CREATE.iter().chain(Step::DELETE).copied().collect();
        let mut names: Vec<_> = all.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        for s in all {
            let json = serde_json::to_string(&s).expect("serialize");
            assert_eq!(json, format!("\"{}\"", s.name()));
        }
    }
}
