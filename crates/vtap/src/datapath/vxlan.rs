//! The VXLAN engine: a tunnel port's queue pair over kernel UDP sockets
//! (RFC 7348). vtap owns only the VXLAN layer; the kernel of the underlay
//! namespace routes the outer packets and resolves their next hops.
//!
//! # Why an endpoint shared by tunnels
//!
//! Every tunnel from one local address receives on the same UDP port
//! (4789): the remote VTEPs send there from source ports of their own
//! choosing, so a socket per tunnel, connected to its remote, would match
//! nothing. One [`Endpoint`] per (underlay namespace, local address, port)
//! holds the receiving socket and demultiplexes datagrams by (outer source
//! address, VNI) to the tunnels' [`VxlanRx`] queues, as VPP's
//! `vxlan4-input` node does. Whichever tunnel's worker reads the socket
//! hands its own frames on at once and leaves the others' in their inbox
//! (bounded; a full inbox drops and counts), waking their worker through an
//! eventfd. Each tunnel waits on an epoll set of the socket and its
//! eventfd, so it wakes for either.
//!
//! # Why a pool of sending sockets
//!
//! The outer UDP source port carries the inner flow's entropy (RFC 7348
//! section 5: the underlay's ECMP and the receivers' RSS spread flows by
//! it). A kernel UDP socket sends from the port it is bound to, so the
//! endpoint binds [`SENDERS`] sockets to ports the kernel picks, and a
//! frame leaves through the one its flow hash ([`vxlan::source_port`])
//! selects: a flow keeps one port, flows spread over sixteen. The senders
//! carry a filter that accepts nothing, so they never queue what is sent
//! to their ports.
//!
//! # Cost per super-frame
//!
//! Toward the tunnel, the offload layer has already segmented a TCP
//! super-frame (the port takes no offloads); the inner segments, each
//! behind its VXLAN header, go to the kernel in one `sendmsg` with
//! `UDP_SEGMENT` (equal-sized segments, the last one shorter: a 64 KB
//! super-frame of 1 448-byte segments is two calls, the datagram limit
//! being 64 KB). The run is copied into one buffer first (`quinn-udp`
//! sends one contiguous buffer); a gathering `sendmsg` that sends each
//! header and frame where they are was measured level with it (A/B in
//! `docs/benchmarks.md`) and not kept. From the tunnel, `UDP_GRO` hands up to 64 datagrams of a
//! flow in one buffer and `recvmmsg` reads up to [`RECV_BATCH`] buffers per
//! call; the inner segments are then frames the forwarding plane merges
//! toward taps that take GSO (`gro-coalesce`).

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::queue::{Counters, RxFrame, Sent, MAX_BURST};
use crate::wire::vnet::VnetHdr;
use crate::wire::vxlan::{self, Refused, Vni};
use crate::wire::TxFrame;

/// Sending sockets per endpoint (distinct outer source ports).
pub const SENDERS: usize = 16;
/// Receive buffers per `recvmmsg`.
pub const RECV_BATCH: usize = 8;
/// One receive buffer: a whole GRO train (the kernel stops at 64 KB).
const RECV_BUF: usize = 65_536;
/// Frames a tunnel's inbox holds for its worker.
pub const INBOX_FRAMES: usize = 1024;
/// Bytes of UDP payload one `sendmsg` carries at most (IPv4's limit, for
/// both families).
const MAX_DATAGRAM: usize = 65_507;
/// Socket buffers (forced past `rmem_max`/`wmem_max` where allowed).
const SOCKET_BUF: libc::c_int = 8 << 20;
/// Bytes of outer IPv4 / IPv6 and UDP header.
const OUTER_V4: usize = 20 + 8;
const OUTER_V6: usize = 40 + 8;

/// Why an endpoint could not be opened: the step, and the kernel's word.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct OpenFailed {
    /// What was being done.
    pub step: &'static str,
    /// The kernel's answer.
    #[source]
    pub source: io::Error,
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> OpenFailed {
    move |source| OpenFailed { step, source }
}

/// What an endpoint dropped before any tunnel saw it, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EndpointCounters {
    /// VXLAN datagrams received (each datagram of a GRO train counts).
    pub datagrams: u64,
    /// Dropped: shorter than the VXLAN header.
    pub drop_short: u64,
    /// Dropped: the I flag clear, or another flag set.
    pub drop_bad_flags: u64,
    /// Dropped: the inner frame is shorter than an Ethernet header.
    pub drop_inner_runt: u64,
    /// Dropped: an inner IP header claims more bytes than there are.
    pub drop_inner_length_lies: u64,
    /// Dropped: no tunnel of this endpoint has that (source, VNI).
    pub drop_unknown_tunnel: u64,
}

impl EndpointCounters {
    fn refused(&mut self, r: Refused) {
        match r {
            Refused::Short => self.drop_short += 1,
            Refused::BadFlags => self.drop_bad_flags += 1,
            Refused::InnerRunt => self.drop_inner_runt += 1,
            Refused::InnerLengthLies => self.drop_inner_length_lies += 1,
        }
    }
}

/// Who a datagram is for: the remote VTEP's address and the VNI.
pub type TunnelKey = (IpAddr, Vni);

/// Frames read for a tunnel by another tunnel's worker.
#[derive(Debug)]
struct Inbox {
    frames: VecDeque<Vec<u8>>,
    event: Arc<EventFd>,
    /// Dropped for want of room here.
    full: u64,
}

/// The receive side's state, under the endpoint's lock.
#[derive(Debug)]
struct Demux {
    bufs: [Vec<u8>; RECV_BATCH],
    meta: Vec<RecvMeta>,
    inboxes: HashMap<TunnelKey, Inbox>,
    /// Frame buffers to reuse.
    spare: Vec<Vec<u8>>,
    counters: EndpointCounters,
}

/// A sending socket and its outer source port.
#[derive(Debug)]
struct Sender {
    sock: UdpSocket,
    state: UdpSocketState,
    port: u16,
}

/// The sockets of one (underlay namespace, local address, port).
#[derive(Debug)]
pub struct Endpoint {
    local: SocketAddr,
    rx: UdpSocket,
    rx_state: UdpSocketState,
    senders: Vec<Sender>,
    demux: Mutex<Demux>,
}

/// A UDP socket of `local`'s family, non-blocking and close-on-exec.
fn udp_socket(local: SocketAddr) -> Result<Socket, OpenFailed> {
    let s = Socket::new(
        Domain::for_address(local),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )
    .map_err(step("socket(AF_INET*, SOCK_DGRAM)"))?;
    if local.is_ipv6() {
        s.set_only_v6(true).map_err(step("IPV6_V6ONLY"))?;
    }
    Ok(s)
}

/// Forces a socket buffer size past the sysctl limits (root), falling back
/// to what the limits allow.
fn force_buffer(s: &Socket, name: libc::c_int, fallback: libc::c_int) {
    let fd = s.as_fd();
    if crate::sys::setsockopt_int(fd, libc::SOL_SOCKET, name, SOCKET_BUF).is_err() {
        let _ = crate::sys::setsockopt_int(fd, libc::SOL_SOCKET, fallback, SOCKET_BUF);
    }
}

impl Endpoint {
    /// Opens the receiving socket on `local` and the sending pool. Call it
    /// in the underlay namespace: the sockets stay there.
    pub fn open(local: SocketAddr) -> Result<Self, OpenFailed> {
        let rx = udp_socket(local)?;
        rx.bind(&local.into()).map_err(step("bind"))?;
        force_buffer(&rx, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF);
        let rx: UdpSocket = rx.into();
        let rx_state =
            UdpSocketState::new(UdpSockRef::from(&rx)).map_err(step("UDP_GRO and options"))?;
        let senders = (0..SENDERS)
            .map(|_| Self::sender(local))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            local,
            rx,
            rx_state,
            senders,
            demux: Mutex::new(Demux {
                bufs: std::array::from_fn(|_| vec![0; RECV_BUF]),
                meta: vec![RecvMeta::default(); RECV_BATCH],
                inboxes: HashMap::new(),
                spare: Vec::new(),
                counters: EndpointCounters::default(),
            }),
        })
    }

    /// A sending socket on `local`'s address and a port the kernel picks,
    /// that accepts nothing.
    fn sender(local: SocketAddr) -> Result<Sender, OpenFailed> {
        let s = udp_socket(local)?;
        s.bind(&SocketAddr::new(local.ip(), 0).into())
            .map_err(step("bind (sender)"))?;
        // Classic BPF `ret #0`: every datagram to this port is dropped
        // before it is queued (nothing reads these sockets).
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        s.attach_filter(&[SockFilter::new(RET_K, 0, 0, 0)])
            .map_err(step("SO_ATTACH_FILTER"))?;
        force_buffer(&s, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF);
        let port = s
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(0, |a| a.port());
        let sock: UdpSocket = s.into();
        let state = UdpSocketState::new(UdpSockRef::from(&sock)).map_err(step("UDP options"))?;
        Ok(Sender { sock, state, port })
    }

    /// The local address and port.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The outer source ports frames leave from.
    pub fn source_ports(&self) -> Vec<u16> {
        self.senders.iter().map(|s| s.port).collect()
    }

    /// What it dropped before any tunnel saw it.
    pub fn counters(&self) -> EndpointCounters {
        self.lock().counters
    }

    /// Frames tunnel `key`'s inbox dropped for want of room.
    pub fn inbox_drops(&self, key: &TunnelKey) -> u64 {
        self.lock().inboxes.get(key).map_or(0, |i| i.full)
    }

    /// How many segments one `sendmsg` may carry (1: no `UDP_SEGMENT`).
    pub fn max_segments(&self) -> usize {
        self.senders
            .first()
            .map_or(1, |s| s.state.max_gso_segments())
    }

    /// Whether received datagrams come in GRO trains.
    pub fn gro(&self) -> bool {
        self.rx_state.gro_segments() > 1
    }

    fn lock(&self) -> MutexGuard<'_, Demux> {
        self.demux.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts demultiplexing `key` to a new tunnel's rx queue; `None` when
    /// a tunnel has it already.
    pub fn attach(self: &Arc<Self>, key: TunnelKey) -> Result<Option<VxlanRx>, io::Error> {
        let mut d = self.lock();
        if d.inboxes.contains_key(&key) {
            return Ok(None);
        }
        let event = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            self.rx.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 0),
        )?;
        epoll.ctl(
            ControlOperation::Add,
            event.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 1),
        )?;
        d.inboxes.insert(
            key,
            Inbox {
                frames: VecDeque::new(),
                event,
                full: 0,
            },
        );
        Ok(Some(VxlanRx {
            ep: self.clone(),
            key,
            epoll,
            counters: Counters::default(),
            scratch: Vec::new(),
        }))
    }

    /// Tunnels attached.
    pub fn tunnels(&self) -> usize {
        self.lock().inboxes.len()
    }
}

/// A tunnel's receive queue.
#[derive(Debug)]
pub struct VxlanRx {
    ep: Arc<Endpoint>,
    key: TunnelKey,
    epoll: Epoll,
    counters: Counters,
    scratch: Vec<u8>,
}

impl Drop for VxlanRx {
    fn drop(&mut self) {
        self.ep.lock().inboxes.remove(&self.key);
    }
}

/// The header frames from a tunnel carry: complete frames, no offload.
fn rx_hdr() -> VnetHdr {
    VnetHdr {
        num_buffers: 1,
        ..VnetHdr::default()
    }
}

impl VxlanRx {
    /// Counters (packets and bytes of inner frames handed on).
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Hands on up to `max` frames: first those other workers left in the
    /// inbox (older), then what the socket has, sorting the others' into
    /// their inboxes.
    pub fn rx_burst(&mut self, max: usize, mut f: impl FnMut(RxFrame<'_>)) -> usize {
        let max = max.min(MAX_BURST);
        let Self {
            ep,
            key: own,
            counters,
            scratch,
            ..
        } = self;
        let mut guard = ep.lock();
        let d = &mut *guard;
        let mut done = 0;
        if let Some(inbox) = d.inboxes.get_mut(own) {
            while done < max {
                let Some(mut buf) = inbox.frames.pop_front() else {
                    break;
                };
                count(counters, buf.len());
                f(RxFrame::owned(rx_hdr(), &mut buf));
                d.spare.push(buf);
                done += 1;
            }
            if inbox.frames.is_empty() {
                // Drained: the inbox stops signalling (read resets it).
                let _ = inbox.event.read();
            }
        }
        while done < max {
            counters.kicks += 1;
            let mut slices = d.bufs.each_mut().map(|b| IoSliceMut::new(b));
            let n = match ep
                .rx_state
                .recv(UdpSockRef::from(&ep.rx), &mut slices, &mut d.meta)
            {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            for (buf, meta) in d.bufs.iter().zip(&d.meta).take(n) {
                let len = meta.len.min(buf.len());
                for seg in buf[..len].chunks(meta.stride.max(1)) {
                    d.counters.datagrams += 1;
                    let (vni, inner) = match vxlan::decapsulate(seg) {
                        Ok(v) => v,
                        Err(r) => {
                            d.counters.refused(r);
                            continue;
                        }
                    };
                    let key = (meta.addr.ip(), vni);
                    if key == *own && done < max {
                        scratch.clear();
                        scratch.extend_from_slice(inner);
                        count(counters, inner.len());
                        f(RxFrame::owned(rx_hdr(), scratch));
                        done += 1;
                    } else if let Some(ib) = d.inboxes.get_mut(&key) {
                        let mut frame = d.spare.pop().unwrap_or_default();
                        frame.clear();
                        frame.extend_from_slice(inner);
                        deposit(ib, frame);
                    } else {
                        d.counters.drop_unknown_tunnel += 1;
                    }
                }
            }
            if n < RECV_BATCH {
                break;
            }
        }
        done
    }

    /// The fd that is readable while the socket or the inbox has frames.
    pub fn wait_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Blocks until frames arrive or `timeout_ms` passes.
    pub fn wait(&mut self, timeout_ms: i32) {
        let fds = [(self.wait_fd(), libc::POLLIN)];
        let mut rev = [0];
        let _ = crate::sys::poll(&fds, &mut rev, timeout_ms);
    }
}

/// Counts a frame handed on.
fn count(c: &mut Counters, len: usize) {
    c.packets += 1;
    c.bytes += len as u64;
}

/// Leaves a frame in an inbox, waking its worker if the inbox was empty;
/// a full inbox drops it (counted).
fn deposit(ib: &mut Inbox, buf: Vec<u8>) {
    if ib.frames.len() >= INBOX_FRAMES {
        ib.full += 1;
        return;
    }
    if ib.frames.is_empty() {
        let _ = ib.event.write(1);
    }
    ib.frames.push_back(buf);
}

/// What the path from `src` to `remote` carries, as the kernel of the
/// calling thread's namespace says (`IP_MTU` / `IPV6_MTU` on a socket
/// bound to `src` and connected to `remote`): binding says whether `src`
/// is an address here, connecting whether a route leads to `remote`.
pub fn path_mtu(src: IpAddr, remote: SocketAddr) -> Result<u32, OpenFailed> {
    let s = udp_socket(remote)?;
    s.bind(&SocketAddr::new(src, 0).into())
        .map_err(step("bind"))?;
    s.connect(&remote.into()).map_err(step("connect"))?;
    let (level, name) = if remote.is_ipv4() {
        (libc::IPPROTO_IP, libc::IP_MTU)
    } else {
        (libc::IPPROTO_IPV6, libc::IPV6_MTU)
    };
    let mtu = crate::sys::getsockopt_int(s.as_fd(), level, name).map_err(step("IP_MTU"))?;
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// A tunnel's transmit queue: frames to one remote VTEP.
#[derive(Debug)]
pub struct VxlanTx {
    ep: Arc<Endpoint>,
    remote: SocketAddr,
    header: [u8; vxlan::HEADER_LEN],
    /// The longest inner frame the underlay carries unfragmented.
    max_frame: usize,
    buf: Vec<u8>,
    counters: Counters,
}

/// The longest inner frame (Ethernet header included) an underlay of
/// `mtu` carries to `remote`: the MTU less outer IP, UDP and VXLAN headers.
pub fn max_inner_frame(mtu: u32, remote: &SocketAddr) -> usize {
    let outer = if remote.is_ipv4() { OUTER_V4 } else { OUTER_V6 };
    usize::try_from(mtu)
        .unwrap_or(0)
        .saturating_sub(outer + vxlan::HEADER_LEN)
}

/// Consecutive frames that leave in one `sendmsg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    sender: usize,
    /// Bytes per segment (VXLAN header and inner frame).
    seg: usize,
    count: usize,
    /// The last segment was shorter: nothing may follow it.
    closed: bool,
}

impl Run {
    /// Whether a segment of `len` bytes through `sender` may join.
    fn takes(&self, sender: usize, len: usize, max_segments: usize) -> bool {
        sender == self.sender
            && !self.closed
            && self.count < max_segments
            && len <= self.seg
            && (self.count + 1) * self.seg <= MAX_DATAGRAM
    }
}

impl VxlanTx {
    /// Frames to `remote` with `vni`, at most `max_frame` bytes each.
    pub fn new(ep: Arc<Endpoint>, remote: SocketAddr, vni: Vni, max_frame: usize) -> Self {
        Self {
            ep,
            remote,
            header: vxlan::header(vni),
            max_frame,
            buf: Vec::with_capacity(MAX_DATAGRAM),
            counters: Counters::default(),
        }
    }

    /// Counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Counts `n` frames the caller gives up on.
    pub fn count_dropped(&mut self, n: usize) {
        self.counters.drop_no_free_slots += n as u64;
    }

    /// The longest inner frame sent.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Sends frames in order, runs of one flow's equal-sized frames in one
    /// `sendmsg` each, until the socket pushes back (`EAGAIN`). A frame the
    /// underlay cannot carry whole is dropped (`drop_too_big`), never
    /// fragmented.
    pub fn try_send(&mut self, frames: &[TxFrame<'_>]) -> Sent {
        let max_segments = self.ep.max_segments().max(1);
        let senders = self.ep.senders.len().max(1);
        let mut out = Sent {
            sent: 0,
            consumed: 0,
        };
        let mut run: Option<Run> = None;
        for (i, f) in frames.iter().enumerate() {
            let fits = f.data.len() <= self.max_frame;
            let sender = usize::from(vxlan::source_port(f.data)) % senders;
            let len = vxlan::HEADER_LEN + f.data.len();
            match &mut run {
                Some(r) if fits && r.takes(sender, len, max_segments) => {
                    r.closed = len < r.seg;
                    r.count += 1;
                }
                _ => {
                    if let Some(r) = run.take() {
                        if !self.flush(r, &mut out.sent) {
                            return out;
                        }
                    }
                    // Every frame before this one is sent or counted.
                    out.consumed = i;
                    if !fits {
                        self.counters.drop_too_big += 1;
                        out.consumed = i + 1;
                        continue;
                    }
                    run = Some(Run {
                        sender,
                        seg: len,
                        count: 1,
                        closed: false,
                    });
                }
            }
            self.buf.extend_from_slice(&self.header);
            self.buf.extend_from_slice(f.data);
        }
        if let Some(r) = run.take() {
            if !self.flush(r, &mut out.sent) {
                return out;
            }
        }
        out.consumed = frames.len();
        out
    }

    /// Sends the run in the buffer and empties it; `false` when the socket
    /// is full (nothing sent: the caller tries again later). Frames the
    /// kernel refuses are counted by reason.
    fn flush(&mut self, r: Run, sent: &mut usize) -> bool {
        let s = &self.ep.senders[r.sender];
        let t = Transmit {
            destination: self.remote,
            ecn: None,
            contents: &self.buf,
            segment_size: (r.count > 1).then_some(r.seg),
            src_ip: None,
        };
        let res = s.state.try_send(UdpSockRef::from(&s.sock), &t);
        // `kicks`: the calls made, so frames per syscall can be read off.
        self.counters.kicks += 1;
        let bytes = (self.buf.len() - r.count * vxlan::HEADER_LEN) as u64;
        self.buf.clear();
        match res {
            Ok(()) => {
                self.counters.packets += r.count as u64;
                self.counters.bytes += bytes;
                *sent += r.count;
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                false
            }
            Err(e) => {
                let n = r.count as u64;
                match e.raw_os_error() {
                    Some(libc::EMSGSIZE) => self.counters.drop_too_big += n,
                    Some(libc::ENOBUFS) => self.counters.drop_no_free_slots += n,
                    _ => self.counters.drop_io_error += n,
                }
                tracing::debug!(error = %e, frames = n, "vxlan send refused");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_equal_segments_of_one_sender_and_close_on_a_short_one() {
        let r = Run {
            sender: 3,
            seg: 1522,
            count: 1,
            closed: false,
        };
        // (sender, len, max_segments, joins)
        let cases = [
            (3, 1522, 64, true),
            (3, 1000, 64, true),
            (4, 1522, 64, false),
            (3, 1523, 64, false),
            (3, 1522, 1, false),
        ];
        for (sender, len, max, joins) in cases {
            assert_eq!(r.takes(sender, len, max), joins, "{sender} {len} {max}");
        }
        let closed = Run { closed: true, ..r };
        assert!(!closed.takes(3, 1522, 64));
        let full = Run { count: 43, ..r };
        assert!(!full.takes(3, 1522, 64), "44 x 1522 > 64 KB");
    }

    #[test]
    fn the_underlay_mtu_leaves_room_for_the_outer_headers() {
        let v4: SocketAddr = "198.18.0.2:4789".parse().expect("v4");
        let v6: SocketAddr = "[2001:db8::2]:4789".parse().expect("v6");
        // Inner frame = MTU - 50 (v4) / 70 (v6) + the inner Ethernet header.
        assert_eq!(max_inner_frame(1500, &v4), 1450 + 14);
        assert_eq!(max_inner_frame(1500, &v6), 1430 + 14);
        assert_eq!(max_inner_frame(9000, &v4), 8950 + 14);
        assert_eq!(max_inner_frame(20, &v4), 0);
    }
}
