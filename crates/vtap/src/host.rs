//! Host-side interface configuration over rtnetlink, in any namespace.
//!
//! # Design
//!
//! Every change to the host side of a tap (MAC, bridge, MTU, addresses,
//! default routes, link state) is one rtnetlink request; vtap never runs `ip`.
//! A [`Host`] is a netlink connection bound to one network namespace: its
//! socket is opened by [`Netns::run_in`] on a thread inside that namespace and
//! then driven by the caller's tokio runtime, so requests act in the target
//! namespace although no runtime thread ever entered it.
//!
//! This module is the only user of the `rtnetlink` crate, which breaks its API
//! every few months: an upgrade touches this file only.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_core::Nla;
use netlink_packet_route::link::{
    InfoData, InfoKind, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::{AddressMessageBuilder, Handle, LinkUnspec, RouteMessageBuilder};

use crate::mac::MacAddr;
use crate::netns::Netns;

/// A failed netlink operation: what was asked, and the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("{op}")]
pub struct Error {
    /// The operation, in words (e.g. "set MTU 9000 on tap0").
    pub op: String,
    /// The OS error the kernel returned (or a protocol error mapped to EIO).
    #[source]
    pub source: io::Error,
}

impl Error {
    /// The errno the kernel returned, if any.
    pub fn errno(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

fn to_io(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn op_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let op = op.into();
    move |e| Error {
        op,
        source: to_io(e),
    }
}

/// `IFLA_TUN_*` attributes (`include/uapi/linux/if_link.h`), which
/// netlink-packet-route leaves undecoded.
mod ifla_tun {
    pub const TYPE: u16 = 3;
    pub const PI: u16 = 4;
    pub const VNET_HDR: u16 = 5;
    pub const PERSIST: u16 = 6;
    pub const MULTI_QUEUE: u16 = 7;
    pub const NUM_QUEUES: u16 = 8;
    /// `IFLA_TUN_TYPE` values: the `IFF_TUN`/`IFF_TAP` flag, as a byte.
    #[cfg(test)]
    pub const TYPE_TUN: u8 = 1;
    pub const TYPE_TAP: u8 = 2;
}

/// What the kernel says about a TUN/TAP link (as `ip -d link` shows it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunInfo {
    /// TAP (L2) rather than TUN (L3).
    pub tap: bool,
    /// `IFF_NO_PI` not set.
    pub pi: bool,
    /// `IFF_VNET_HDR`.
    pub vnet_hdr: bool,
    /// `IFF_MULTI_QUEUE`.
    pub multi_queue: bool,
    /// `TUNSETPERSIST`.
    pub persist: bool,
    /// Queues (fds) attached.
    pub num_queues: u32,
}

impl TunInfo {
    fn parse(nlas: &[netlink_packet_route::link::InfoTun]) -> Self {
        let mut info = Self::default();
        for nla in nlas {
            let mut buf = vec![0u8; nla.value_len()];
            nla.emit_value(&mut buf);
            let byte = buf.first().copied().unwrap_or(0);
            match nla.kind() {
                ifla_tun::TYPE => info.tap = byte == ifla_tun::TYPE_TAP,
                ifla_tun::PI => info.pi = byte != 0,
                ifla_tun::VNET_HDR => info.vnet_hdr = byte != 0,
                ifla_tun::PERSIST => info.persist = byte != 0,
                ifla_tun::MULTI_QUEUE => info.multi_queue = byte != 0,
                ifla_tun::NUM_QUEUES => {
                    if let Ok(b) = <[u8; 4]>::try_from(buf.as_slice()) {
                        info.num_queues = u32::from_ne_bytes(b);
                    }
                }
                _ => {}
            }
        }
        info
    }
}

/// One link as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// ifindex in its namespace.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` ("tun", "bridge", "veth", ...), if any.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, if the link has one.
    pub mac: Option<Vec<u8>>,
    /// ifindex of the bridge (controller) it is enslaved to.
    pub controller: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// TUN/TAP details when `kind` is "tun".
    pub tun: Option<TunInfo>,
}

impl Link {
    fn from_message(m: &LinkMessage) -> Self {
        let mut link = Link {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            ..Default::default()
        };
        for attr in &m.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
                LinkAttribute::Address(a) => link.mac = Some(a.clone()),
                LinkAttribute::Controller(c) => link.controller = Some(*c),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            NlLinkInfo::Kind(kind) => link.kind = Some(kind_name(kind)),
                            NlLinkInfo::Data(InfoData::Tun(t)) => {
                                link.tun = Some(TunInfo::parse(t));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }

    /// Whether this link is a Linux bridge.
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

fn kind_name(kind: &InfoKind) -> String {
    // InfoKind implements Nla: its value is the kind string the kernel sent.
    let mut buf = vec![0u8; kind.value_len()];
    kind.emit_value(&mut buf);
    let s = buf.split(|&b| b == 0).next().unwrap_or(&[]);
    String::from_utf8_lossy(s).into_owned()
}

/// A route-netlink socket opened inside `ns` (it keeps that namespace
/// whatever thread uses it later).
fn route_socket_in(ns: &Netns) -> Result<std::os::fd::OwnedFd, Error> {
    ns.run_in(crate::sys::netlink_route_socket)
        .map_err(|e| Error {
            op: "enter the namespace to open a netlink socket".into(),
            source: io::Error::other(e.to_string()),
        })?
        .map_err(|source| Error {
            op: "open a netlink socket".into(),
            source,
        })
}

/// Deletes link `index` in `ns` with one blocking netlink request.
///
/// For callers that run several deletions on threads of their own: the
/// kernel handles `RTM_DELLINK` inside `sendmsg` and then waits for RCU grace
/// periods (~20 ms) before it answers, blocking the calling thread. Done on
/// an async runtime's thread (as [`Host::delete_link`] does) that serializes
/// deletions whose waits could overlap. A link already gone is not an error.
pub fn delete_link_blocking(ns: &Netns, index: u32) -> Result<(), Error> {
    use netlink_packet_core::{
        NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
    };
    use netlink_packet_route::RouteNetlinkMessage;

    let op = || format!("delete link #{index}");
    let fail = |source: io::Error| Error { op: op(), source };
    let socket = crate::sys::blocking_netlink_socket(route_socket_in(ns)?);
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut req = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)),
    );
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    req.header.sequence_number = 1;
    req.finalize();
    let mut buf = vec![0u8; req.buffer_len()];
    req.serialize(&mut buf);
    socket.send(&buf, 0).map_err(fail)?;
    let mut answer = Vec::with_capacity(8192);
    socket.recv(&mut answer, 0).map_err(fail)?;
    let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&answer)
        .map_err(|e| fail(io::Error::other(e.to_string())))?;
    match msg.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => {
            let source = e.to_io();
            if source.raw_os_error() == Some(libc::ENODEV) {
                Ok(())
            } else {
                Err(fail(source))
            }
        }
        NetlinkPayload::Error(_) => Ok(()),
        other => Err(fail(io::Error::other(format!(
            "unexpected answer {:?}",
            other.message_type()
        )))),
    }
}

/// A netlink connection bound to one network namespace.
#[derive(Debug)]
pub struct Host {
    handle: Handle,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Host {
    /// Opens a route-netlink connection inside `ns`. Needs a tokio runtime.
    pub fn open(ns: &Netns) -> Result<Self, Error> {
        let socket = route_socket_in(ns)?;
        let (conn, handle, _) = rtnetlink::from_socket(crate::sys::tokio_netlink_socket(socket));
        let conn = tokio::spawn(conn);
        Ok(Self { handle, conn })
    }

    /// The link called `name`, if there is one.
    pub async fn link_by_name(&self, name: &str) -> Result<Option<Link>, Error> {
        let req = self.handle.link().get().match_name(name.to_string());
        Self::first_link(req, || format!("look up link {name}")).await
    }

    /// The link with ifindex `index`, if there is one.
    pub async fn link_by_index(&self, index: u32) -> Result<Option<Link>, Error> {
        let req = self.handle.link().get().match_index(index);
        Self::first_link(req, || format!("look up link #{index}")).await
    }

    /// The first answer to a link query; "no such device" is `None`.
    async fn first_link(
        req: rtnetlink::LinkGetRequest,
        op: impl FnOnce() -> String,
    ) -> Result<Option<Link>, Error> {
        let mut answers = req.execute();
        match answers.try_next().await {
            Ok(m) => Ok(m.as_ref().map(Link::from_message)),
            Err(e) => {
                let source = to_io(e);
                if source.raw_os_error() == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(Error { op: op(), source })
                }
            }
        }
    }

    async fn set_link(&self, msg: LinkMessage, op: String) -> Result<(), Error> {
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(op_err(op))
    }

    /// Sets the hardware address.
    pub async fn set_mac(&self, index: u32, mac: MacAddr) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(index)
            .address(mac.octets().to_vec())
            .build();
        self.set_link(msg, format!("set MAC {mac}")).await
    }

    /// Enslaves the link to a bridge (`Some`) or frees it (`None`).
    pub async fn set_controller(&self, index: u32, bridge: Option<u32>) -> Result<(), Error> {
        let b = LinkUnspec::new_with_index(index);
        let (msg, op) = match bridge {
            Some(br) => (b.controller(br).build(), format!("enslave to bridge #{br}")),
            None => (b.nocontroller().build(), "release from bridge".to_string()),
        };
        self.set_link(msg, op).await
    }

    /// Sets the MTU.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<(), Error> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.set_link(msg, format!("set MTU {mtu}")).await
    }

    /// Sets the link administratively up or down.
    pub async fn set_up(&self, index: u32, up: bool) -> Result<(), Error> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.set_link(msg, format!("set link {}", if up { "up" } else { "down" }))
            .await
    }

    /// Deletes the link.
    pub async fn delete_link(&self, index: u32) -> Result<(), Error> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(op_err(format!("delete link #{index}")))
    }

    /// Adds an address with its prefix length.
    pub async fn add_address(&self, index: u32, addr: IpAddr, plen: u8) -> Result<(), Error> {
        self.handle
            .address()
            .add(index, addr, plen)
            .execute()
            .await
            .map_err(op_err(format!("add address {addr}/{plen}")))
    }

    /// Removes an address.
    pub async fn del_address(&self, index: u32, addr: IpAddr, plen: u8) -> Result<(), Error> {
        let msg = match addr {
            IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(a, plen)
                .build(),
            IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(a, plen)
                .build(),
        };
        self.handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(op_err(format!("delete address {addr}/{plen}")))
    }

    /// A main-table route to `dst/len` out of link `index`, via `gw` or
    /// on link.
    fn route_msg(
        index: u32,
        dst: IpAddr,
        len: u8,
        gw: Option<IpAddr>,
    ) -> netlink_packet_route::route::RouteMessage {
        use netlink_packet_route::route::RouteScope;
        match dst {
            IpAddr::V4(d) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(d, len)
                    .output_interface(index);
                match gw {
                    Some(IpAddr::V4(g)) => b = b.gateway(g),
                    _ => b = b.scope(RouteScope::Link),
                }
                b.build()
            }
            IpAddr::V6(d) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(d, len)
                    .output_interface(index);
                if let Some(IpAddr::V6(g)) = gw {
                    b = b.gateway(g);
                }
                b.build()
            }
        }
    }

    fn default_route(index: u32, gw: IpAddr) -> netlink_packet_route::route::RouteMessage {
        let any = match gw {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self::route_msg(index, any, 0, Some(gw))
    }

    /// Adds (`add`) or removes a route; `what` names it in errors.
    async fn change_route(
        &self,
        add: bool,
        msg: netlink_packet_route::route::RouteMessage,
        what: String,
    ) -> Result<(), Error> {
        let routes = self.handle.route();
        let done = if add {
            routes.add(msg).execute().await
        } else {
            routes.del(msg).execute().await
        };
        let verb = if add { "add" } else { "delete" };
        done.map_err(op_err(format!("{verb} {what}")))
    }

    /// Adds a default route via `gw` out of link `index`.
    pub async fn add_default_route(&self, index: u32, gw: IpAddr) -> Result<(), Error> {
        let msg = Self::default_route(index, gw);
        self.change_route(true, msg, format!("default route via {gw}"))
            .await
    }

    /// Adds a route to `dst/len` out of link `index`, via `gw` or on link.
    pub async fn add_route(
        &self,
        index: u32,
        dst: IpAddr,
        len: u8,
        gw: Option<IpAddr>,
    ) -> Result<(), Error> {
        let msg = Self::route_msg(index, dst, len, gw);
        self.change_route(true, msg, format!("route to {dst}/{len}"))
            .await
    }

    /// Removes the route to `dst/len` out of link `index`.
    pub async fn del_route(
        &self,
        index: u32,
        dst: IpAddr,
        len: u8,
        gw: Option<IpAddr>,
    ) -> Result<(), Error> {
        let msg = Self::route_msg(index, dst, len, gw);
        self.change_route(false, msg, format!("route to {dst}/{len}"))
            .await
    }

    /// The global-scope addresses on link `index`, with prefix lengths, in
    /// the kernel's order (link-local and host-scope ones are left out).
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, Error> {
        use netlink_packet_route::address::{AddressAttribute, AddressScope};
        let mut answers = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        while let Some(m) = answers
            .try_next()
            .await
            .map_err(op_err(format!("list addresses of link #{index}")))?
        {
            if m.header.index != index || m.header.scope != AddressScope::Universe {
                continue;
            }
            for a in &m.attributes {
                if let AddressAttribute::Address(ip) = a {
                    out.push((*ip, m.header.prefix_len));
                }
            }
        }
        Ok(out)
    }

    /// The routes out of link `index` in the main table that someone
    /// added (not the kernel's own prefix and link-local routes), default
    /// routes included: (destination, prefix length, gateway).
    pub async fn routes(&self, index: u32) -> Result<Vec<(IpAddr, u8, Option<IpAddr>)>, Error> {
        use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol, RouteType};
        let mut out = Vec::new();
        let queries = [
            (
                RouteMessageBuilder::<Ipv4Addr>::new().build(),
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ),
            (
                RouteMessageBuilder::<Ipv6Addr>::new().build(),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ),
        ];
        for (q, any) in queries {
            let mut answers = self.handle.route().get(q).execute();
            while let Some(m) = answers
                .try_next()
                .await
                .map_err(op_err(format!("list routes of link #{index}")))?
            {
                let mine = m.attributes.contains(&RouteAttribute::Oif(index))
                    && m.header.kind == RouteType::Unicast
                    && m.header.protocol != RouteProtocol::Kernel
                    && m.header.table == 254;
                if !mine {
                    continue;
                }
                let addr = |a: &RouteAddress| match a {
                    RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
                    RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
                    _ => None,
                };
                let dst = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(d) => addr(d),
                    _ => None,
                });
                let gw = m.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(g) => addr(g),
                    _ => None,
                });
                out.push((dst.unwrap_or(any), m.header.destination_prefix_length, gw));
            }
        }
        Ok(out)
    }

    /// Removes the default route via `gw` out of link `index`.
    pub async fn del_default_route(&self, index: u32, gw: IpAddr) -> Result<(), Error> {
        let msg = Self::default_route(index, gw);
        self.change_route(false, msg, format!("default route via {gw}"))
            .await
    }
}

/// A change the kernel announced on one link of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// `RTM_NEWLINK`: the link was created or changed; its state now.
    Changed(Link),
    /// `RTM_DELLINK`: the link with this ifindex is gone.
    Removed(u32),
}

/// The link events of one namespace: a route-netlink socket, opened inside
/// it, that joined the `RTNLGRP_LINK` multicast group, so the kernel pushes
/// every link change (`ip link set mtu`, up/down, rename, delete) as it
/// happens. Dropping it closes the socket.
#[derive(Debug)]
pub struct LinkEvents {
    messages: futures::channel::mpsc::UnboundedReceiver<(
        netlink_packet_core::NetlinkMessage<netlink_packet_route::RouteNetlinkMessage>,
        netlink_sys::SocketAddr,
    )>,
    conn: tokio::task::JoinHandle<()>,
}

impl Drop for LinkEvents {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl LinkEvents {
    /// Subscribes to `ns`'s link events. Needs a tokio runtime.
    pub fn open(ns: &Netns) -> Result<Self, Error> {
        let fd = route_socket_in(ns)?;
        let mut socket = crate::sys::tokio_netlink_socket(fd);
        let raw = netlink_sys::AsyncSocket::socket_mut(&mut socket);
        // Bound first: the kernel skips a multicast listener whose port id
        // is still 0 (the kernel's own), and an unbound socket has port 0.
        raw.bind_auto()
            .and_then(|_| raw.add_membership(libc::RTNLGRP_LINK))
            .map_err(|source| Error {
                op: "join the netlink link-event group".into(),
                source,
            })?;
        let (conn, _handle, messages) = rtnetlink::from_socket(socket);
        Ok(Self {
            messages,
            conn: tokio::spawn(conn),
        })
    }

    /// The next link event; `None` once the socket is closed.
    pub async fn next(&mut self) -> Option<LinkEvent> {
        use futures::StreamExt;
        use netlink_packet_core::NetlinkPayload;
        use netlink_packet_route::RouteNetlinkMessage as M;
        loop {
            let (msg, _) = self.messages.next().await?;
            match msg.payload {
                NetlinkPayload::InnerMessage(M::NewLink(m)) => {
                    return Some(LinkEvent::Changed(Link::from_message(&m)))
                }
                NetlinkPayload::InnerMessage(M::DelLink(m)) => {
                    return Some(LinkEvent::Removed(m.header.index))
                }
                // Other groups' messages never arrive on this socket.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::InfoTun;

    fn nla(kind: u16, value: Vec<u8>) -> InfoTun {
        InfoTun::Other(netlink_packet_core::DefaultNla::new(kind, value))
    }

    #[test]
    fn tun_info_parses_kernel_attributes() {
        let tap = TunInfo::parse(&[
            nla(ifla_tun::TYPE, vec![ifla_tun::TYPE_TAP]),
            nla(ifla_tun::PI, vec![0]),
            nla(ifla_tun::VNET_HDR, vec![1]),
            nla(ifla_tun::PERSIST, vec![1]),
            nla(ifla_tun::MULTI_QUEUE, vec![1]),
            nla(ifla_tun::NUM_QUEUES, 4u32.to_ne_bytes().to_vec()),
            nla(99, vec![1, 2, 3]),
        ]);
        assert_eq!(
            tap,
            TunInfo {
                tap: true,
                pi: false,
                vnet_hdr: true,
                multi_queue: true,
                persist: true,
                num_queues: 4
            }
        );
        let tun = TunInfo::parse(&[nla(ifla_tun::TYPE, vec![ifla_tun::TYPE_TUN])]);
        assert!(!tun.tap && !tun.multi_queue && tun.num_queues == 0);
    }
}
