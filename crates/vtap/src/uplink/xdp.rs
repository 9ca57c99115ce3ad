//! The `AF_XDP` half of a host uplink (VPP's `af_xdp`): the XDP program,
//! its socket map, and one XDP socket per receive queue of the interface.
//!
//! # What is attached, and how it goes away
//!
//! vtap's own program (`bpf/xsk_redirect.c`, compiled by `build.rs`, loaded
//! with `aya`) sends each frame received on queue N to the socket in slot N
//! of its `XSKMAP`, or on to the kernel when the slot is empty. It is
//! attached as a **`bpf_link`**: the attachment lives exactly as long as the
//! link's fd, so closing the uplink, the daemon exiting, or `kill -9`
//! detaches it, and the interface is as it was found with nothing for a
//! restarted daemon to clean up. (`libxdp`'s dispatcher, which `xsk-rs`
//! uses, is pinned in bpffs and survives the process; and a netlink
//! attachment, aya's fallback on kernels before 5.9, would too: vtap
//! detaches and refuses rather than leave one behind.) An interface that
//! already has an XDP program is refused, not taken over.
//!
//! Native mode (the driver runs the program) is tried first, generic mode
//! (the stack runs it, for drivers without XDP) second; which one took is
//! shown. Zero-copy is not asked for: veth and generic mode have none, and
//! copy mode works everywhere.
//!
//! # Which frames vtap gets
//!
//! An XDP socket serves one receive queue, so an uplink has a socket on
//! every receive queue the interface has (`ethtool -l`), never fewer:
//! frames on a queue without one would reach the host's stack instead of
//! vtap. Unlike an `AF_PACKET` uplink, frames redirected to vtap do not
//! also reach the host's stack: the interface is vtap's (as a NIC given to
//! VPP's `af_xdp` is).
//!
//! # Promiscuity
//!
//! A bridge port must see frames for every MAC. An XDP socket has no
//! promiscuous membership, so the uplink holds an `AF_PACKET` socket that
//! receives nothing (protocol 0, never bound) and carries the
//! `PACKET_MR_PROMISC` membership, which the kernel drops when it closes,
//! however it closes. It also answers the uplink's interface queries.

use std::fs::File;
use std::os::fd::{AsFd, RawFd};

use aya::maps::XskMap;
use aya::programs::{Xdp, XdpMode};

use crate::datapath::xsk::{self, XskRx, XskTx};
use crate::sys;

/// The compiled program (see `build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xsk_redirect.o"));
/// Its function and map, as named in `bpf/xsk_redirect.c`.
const PROGRAM: &str = "vtap_xsk_redirect";
/// The same program, declared for frames in several buffers.
const PROGRAM_MB: &str = "vtap_xsk_redirect_mb";
const MAP: &str = "vtap_xsks";

/// The largest MTU an af-xdp uplink takes where the kernel has no
/// multi-buffer XDP sockets: a frame (with a VLAN tag) must fit one UMEM
/// chunk.
pub const MAX_MTU: u32 = xsk::MAX_FRAME_U32 - 18;

/// Why opening an af-xdp uplink failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket queue.
    #[error("queue {queue}: {source}")]
    Queue {
        /// The queue.
        queue: u32,
        /// What failed.
        #[source]
        source: xsk::Error,
    },
    /// The query socket or its promiscuous membership.
    #[error(transparent)]
    Step(#[from] super::packet::StepFailed),
    /// The program could not be loaded (the kernel's verifier, BTF...).
    #[error("loading the XDP program: {0}")]
    Load(String),
    /// The kernel refused to attach it.
    #[error("{0}")]
    Attach(String, #[source] Option<std::io::Error>),
}

impl Error {
    /// The errno behind it, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Queue { source, .. } => source.source.raw_os_error(),
            Error::Step(s) => s.source.raw_os_error(),
            Error::Attach(_, e) => e.as_ref().and_then(std::io::Error::raw_os_error),
            Error::Load(_) => None,
        }
    }
}

/// How the program runs on the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum XdpAttach {
    /// In the driver (`xdpdrv`).
    Native,
    /// In the stack, for drivers without XDP (`xdpgeneric`).
    Generic,
}

/// The program, attached: dropping it detaches and unloads it.
pub struct Program {
    // The link first: it closes (detaching the program) before the
    // program and map fds do.
    _link: aya::programs::links::FdLink,
    _ebpf: aya::Ebpf,
    /// The kernel's id of the program (`ip link` shows it).
    pub id: u32,
    /// Native or generic.
    pub attach: XdpAttach,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("id", &self.id)
            .field("attach", &self.attach)
            .finish_non_exhaustive()
    }
}

/// An open af-xdp uplink's kernel side.
#[derive(Debug)]
pub struct Opened {
    /// Each queue's two halves, in queue order, for the data path.
    pub queues: Vec<(XskRx, XskTx)>,
    /// The sockets' fds (owned by the halves), for kernel statistics.
    pub fds: Vec<RawFd>,
    /// The program, attached.
    pub program: Program,
    /// Holds the promiscuous membership; answers interface queries.
    pub query: File,
    /// Frames may span several chunks (`XDP_USE_SG`; jumbo frames cross).
    pub multi_buffer: bool,
}

/// Opens `queues` XDP sockets on `ifindex` (of the calling thread's
/// namespace), loads and attaches the program that feeds them, and makes
/// the interface promiscuous for as long as the result lives. Sockets take
/// frames in several chunks where the kernel can (Linux 6.6+); where it
/// cannot, an MTU above [`MAX_MTU`] is refused. On failure everything
/// opened so far closes and nothing stays attached.
pub fn open(ifindex: u32, queues: u16, mtu: u32) -> Result<Opened, Error> {
    let query = File::from(sys::packet_socket().map_err(super::packet::step("socket(AF_PACKET)"))?);
    sys::packet_add_promisc(query.as_fd(), ifindex)
        .map_err(super::packet::step("PACKET_ADD_MEMBERSHIP"))?;
    let mut halves = Vec::with_capacity(usize::from(queues));
    let mut fds = Vec::with_capacity(usize::from(queues));
    let mut multi_buffer = true;
    for q in 0..u32::from(queues) {
        let o = match xsk::open(ifindex, q, multi_buffer) {
            Err(e) if q == 0 && e.source.raw_os_error() == Some(libc::EINVAL) => {
                // No XDP_USE_SG here (before Linux 6.6): one chunk per frame.
                multi_buffer = false;
                xsk::open(ifindex, q, false)
            }
            other => other,
        }
        .map_err(|source| queue_refused(q, source))?;
        fds.push(o.fd);
        halves.push((o.rx, o.tx));
    }
    if !multi_buffer && mtu > MAX_MTU {
        return Err(Error::Attach(
            format!(
                "MTU {mtu} is above {MAX_MTU}, the most af-xdp takes where the kernel has no \
                 multi-buffer XDP sockets (Linux 6.6+): a frame must fit one {}-byte UMEM chunk; \
                 lower the MTU or use --mode af-packet",
                xsk::CHUNK
            ),
            None,
        ));
    }
    let program = attach(ifindex, &fds, multi_buffer)?;
    Ok(Opened {
        queues: halves,
        fds,
        program,
        query,
        multi_buffer,
    })
}

/// What a queue's failure to open means.
fn queue_refused(queue: u32, source: xsk::Error) -> Error {
    if source.source.raw_os_error() == Some(libc::EBUSY) {
        Error::Attach(
            format!("receive queue {queue} is taken by another XDP socket (another af-xdp user)"),
            Some(source.source),
        )
    } else {
        Error::Queue { queue, source }
    }
}

/// Loads the program (the multi-buffer one for sockets that take frames in
/// several chunks) with a map slot per socket, fills the slots, and
/// attaches it to `ifindex` as a `bpf_link`.
fn attach(ifindex: u32, fds: &[RawFd], multi_buffer: bool) -> Result<Program, Error> {
    let slots = u32::try_from(fds.len()).unwrap_or(u32::MAX).max(1);
    let mut ebpf = aya::EbpfLoader::new()
        .map_max_entries(MAP, slots)
        .load(OBJECT)
        .map_err(|e| Error::Load(e.to_string()))?;
    {
        let map = ebpf
            .map_mut(MAP)
            .ok_or_else(|| Error::Load(format!("no map {MAP}")))?;
        let mut xsks = XskMap::try_from(map).map_err(|e| Error::Load(e.to_string()))?;
        for (slot, fd) in (0u32..).zip(fds) {
            xsks.set(slot, *fd, 0)
                .map_err(|e| Error::Load(format!("{MAP}[{slot}]: {e}")))?;
        }
    }
    let name = if multi_buffer { PROGRAM_MB } else { PROGRAM };
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or_else(|| Error::Load(format!("no program {name}")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| Error::Load(e.to_string()))?;
    prog.load().map_err(|e| Error::Load(e.to_string()))?;
    let id = prog.info().map(|i| i.id()).unwrap_or(0);
    let (link_id, attach) = match prog.attach_to_if_index(ifindex, XdpMode::Driver) {
        Ok(l) => (l, XdpAttach::Native),
        Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
            let l = prog
                .attach_to_if_index(ifindex, XdpMode::Skb)
                .map_err(attach_refused)?;
            (l, XdpAttach::Generic)
        }
        Err(e) => return Err(attach_refused(e)),
    };
    // aya falls back to a netlink attachment where the kernel has no XDP
    // bpf_link (before 5.9); that one would outlive the daemon. Refuse it.
    if !format!("{link_id:?}").contains("FdLinkId") {
        let _ = prog.detach(link_id);
        return Err(Error::Attach(
            "this kernel cannot attach XDP as a bpf_link (Linux 5.9+), so a program would \
             outlive vtap; af-xdp refused"
                .into(),
            None,
        ));
    }
    let link = prog
        .take_link(link_id)
        .map_err(|e| Error::Load(e.to_string()))?;
    let link =
        aya::programs::links::FdLink::try_from(link).map_err(|e| Error::Load(e.to_string()))?;
    Ok(Program {
        _link: link,
        _ebpf: ebpf,
        id,
        attach,
    })
}

/// The errno of a failed attach.
fn errno(e: &aya::programs::ProgramError) -> Option<i32> {
    match e {
        aya::programs::ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => None,
    }
}

/// What the kernel's refusal to attach means, in words.
fn attach_refused(e: aya::programs::ProgramError) -> Error {
    let code = errno(&e);
    let reason = match code {
        Some(libc::EBUSY | libc::EEXIST) => {
            "an XDP program is attached to it already; vtap does not replace it".to_string()
        }
        Some(libc::ERANGE) => {
            "the kernel refused XDP: the MTU (or the veth peer's) is too large for it".to_string()
        }
        Some(libc::ENOSPC) => {
            "the kernel refused XDP: a veth needs at least as many rx queues as its peer has tx \
             queues"
                .to_string()
        }
        Some(libc::EPERM) => "attaching XDP needs CAP_NET_ADMIN and CAP_BPF".to_string(),
        _ => format!("the kernel refused to attach the XDP program: {e}"),
    };
    let source = match e {
        aya::programs::ProgramError::SyscallError(s) => Some(s.io_error),
        _ => None,
    };
    Error::Attach(reason, source)
}

/// Frames the kernel dropped on these sockets before vtap read them,
/// cumulative.
pub fn kernel_drops(fds: &[RawFd]) -> u64 {
    fds.iter().map(|fd| xsk::kernel_drops(*fd)).sum()
}
