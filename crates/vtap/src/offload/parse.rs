//! Checked parsing of the headers the offload layer acts on: Ethernet (with
//! up to two VLAN tags, 802.1Q and 802.1ad), IPv4 (with options), IPv6 (its
//! extension-header chain walked: hop-by-hop, routing, destination options,
//! fragment), TCP and UDP.
//!
//! Every length is checked against the frame before it is used, so a
//! malformed frame yields an [`Error`] naming what is wrong, never a panic
//! (the fuzz target `frame` holds us to that). Only layouts are returned;
//! the bytes stay where they are.

/// `ETH_P_IP`.
pub const ETH_IPV4: u16 = 0x0800;
/// `ETH_P_IPV6`.
pub const ETH_IPV6: u16 = 0x86dd;
/// `ETH_P_8021Q`.
pub const ETH_VLAN: u16 = 0x8100;
/// `ETH_P_8021AD` (QinQ outer tag).
pub const ETH_QINQ: u16 = 0x88a8;
/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

/// Why a frame cannot be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The frame ends inside a header.
    #[error("frame truncated in the {0} header")]
    Truncated(&'static str),
    /// The Ethernet type is not IPv4 or IPv6 (after VLAN tags).
    #[error("not an IP frame (ethertype {0:#06x})")]
    NotIp(u16),
    /// More VLAN tags than we walk.
    #[error("more than two VLAN tags")]
    TooManyTags,
    /// The IP version field disagrees with the Ethernet type.
    #[error("IP version {0} where the frame says otherwise")]
    Version(u8),
    /// IPv4 IHL below 5.
    #[error("IPv4 header length {0} is below 20 bytes")]
    Ihl(usize),
    /// IP's own length field and the frame disagree.
    #[error("IP length field {field} exceeds the {have} bytes present")]
    IpLength {
        /// The length the header claims, from the IP header's start.
        field: usize,
        /// The bytes actually present from there.
        have: usize,
    },
    /// TCP data offset below 5.
    #[error("TCP data offset {0} is below 20 bytes")]
    TcpOffset(usize),
    /// An IPv6 extension header chain that is too long.
    #[error("more than 8 IPv6 extension headers")]
    ExtChain,
}

/// The IP version of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ip {
    /// IPv4, with its header length.
    V4 {
        /// Header length in bytes (20..=60).
        ihl: usize,
    },
    /// IPv6; `ext` is the length of the extension headers walked.
    V6 {
        /// Bytes of extension headers between the fixed header and L4.
        ext: usize,
    },
}

/// Where a frame's headers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of the IP header (0 on a TUN interface).
    pub l3: usize,
    /// IP version and header sizes.
    pub ip: Ip,
    /// Start of the L4 header.
    pub l4: usize,
    /// The L4 protocol (`PROTO_TCP`, `PROTO_UDP`, or anything else).
    pub proto: u8,
    /// L4 header length (TCP: data offset; UDP: 8; other: 0).
    pub l4_len: usize,
    /// A fragment (IPv4 MF or offset, IPv6 fragment header): L4 is not
    /// complete in this frame.
    pub fragment: bool,
    /// End of the IP packet by its own length field; bytes after it are
    /// Ethernet padding.
    pub end: usize,
}

impl Layout {
    /// Offset of the payload after all headers.
    pub fn payload(&self) -> usize {
        self.l4 + self.l4_len
    }

    /// Whether this is IPv6.
    pub fn is_v6(&self) -> bool {
        matches!(self.ip, Ip::V6 { .. })
    }

    /// The source and destination address bytes.
    pub fn addrs<'a>(&self, frame: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        match self.ip {
            Ip::V4 { .. } => (
                &frame[self.l3 + 12..self.l3 + 16],
                &frame[self.l3 + 16..self.l3 + 20],
            ),
            Ip::V6 { .. } => (
                &frame[self.l3 + 8..self.l3 + 24],
                &frame[self.l3 + 24..self.l3 + 40],
            ),
        }
    }
}

fn be16(b: &[u8], at: usize, what: &'static str) -> Result<u16, Error> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(Error::Truncated(what)),
    }
}

fn byte(b: &[u8], at: usize, what: &'static str) -> Result<u8, Error> {
    b.get(at).copied().ok_or(Error::Truncated(what))
}

/// The Ethernet header: returns (ethertype, start of L3).
fn ethernet(frame: &[u8]) -> Result<(u16, usize), Error> {
    let mut ty = be16(frame, 12, "Ethernet")?;
    let mut off = 14;
    let mut tags = 0;
    while ty == ETH_VLAN || ty == ETH_QINQ {
        tags += 1;
        if tags > 2 {
            return Err(Error::TooManyTags);
        }
        ty = be16(frame, off + 2, "VLAN")?;
        off += 4;
    }
    Ok((ty, off))
}

/// Parses a frame: Ethernet when `l2` (TAP), a bare IP packet otherwise (TUN).
pub fn parse(frame: &[u8], l2: bool) -> Result<Layout, Error> {
    let (ty, l3) = if l2 {
        ethernet(frame)?
    } else {
        // TUN: the IP version nibble says which.
        match byte(frame, 0, "IP")? >> 4 {
            4 => (ETH_IPV4, 0),
            6 => (ETH_IPV6, 0),
            v => return Err(Error::Version(v)),
        }
    };
    let (ip, l4, proto, fragment, end) = match ty {
        ETH_IPV4 => ipv4(frame, l3)?,
        ETH_IPV6 => ipv6(frame, l3)?,
        other => return Err(Error::NotIp(other)),
    };
    let l4_len = if fragment {
        0
    } else {
        l4_header_len(frame, l4, proto, end)?
    };
    Ok(Layout {
        l3,
        ip,
        l4,
        proto,
        l4_len,
        fragment,
        end,
    })
}

type L3 = (Ip, usize, u8, bool, usize);

fn ip_end(frame: &[u8], l3: usize, total: usize) -> Result<usize, Error> {
    let have = frame.len().saturating_sub(l3);
    if total > have {
        return Err(Error::IpLength { field: total, have });
    }
    Ok(l3 + total)
}

fn ipv4(frame: &[u8], l3: usize) -> Result<L3, Error> {
    let vihl = byte(frame, l3, "IPv4")?;
    if vihl >> 4 != 4 {
        return Err(Error::Version(vihl >> 4));
    }
    let ihl = usize::from(vihl & 0xf) * 4;
    if ihl < 20 {
        return Err(Error::Ihl(ihl));
    }
    if frame.len() < l3 + ihl {
        return Err(Error::Truncated("IPv4"));
    }
    let total = usize::from(be16(frame, l3 + 2, "IPv4")?);
    if total < ihl {
        return Err(Error::IpLength {
            field: total,
            have: ihl,
        });
    }
    let end = ip_end(frame, l3, total)?;
    let frag = be16(frame, l3 + 6, "IPv4")?;
    // MF set or a non-zero fragment offset.
    let fragment = frag & 0x3fff != 0;
    let proto = byte(frame, l3 + 9, "IPv4")?;
    Ok((Ip::V4 { ihl }, l3 + ihl, proto, fragment, end))
}

/// IPv6 extension headers we walk (RFC 8200 section 4): hop-by-hop (0),
/// routing (43), destination options (60), and fragment (44), whose
/// presence makes the packet a fragment. AH (51) has its own length unit.
fn ipv6(frame: &[u8], l3: usize) -> Result<L3, Error> {
    let v = byte(frame, l3, "IPv6")? >> 4;
    if v != 6 {
        return Err(Error::Version(v));
    }
    if frame.len() < l3 + 40 {
        return Err(Error::Truncated("IPv6"));
    }
    let end = ip_end(frame, l3, 40 + usize::from(be16(frame, l3 + 4, "IPv6")?))?;
    let mut next = byte(frame, l3 + 6, "IPv6")?;
    let mut off = l3 + 40;
    let mut fragment = false;
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => (usize::from(byte(frame, off + 1, "IPv6 extension")?) + 1) * 8,
            44 => {
                let fo = be16(frame, off + 2, "IPv6 fragment")?;
                // Offset or M set: a real fragment. (An atomic fragment
                // header, both zero, carries a whole packet.)
                fragment |= fo & 0xfff9 != 0;
                8
            }
            51 => (usize::from(byte(frame, off + 1, "IPv6 AH")?) + 2) * 4,
            proto => {
                return Ok((Ip::V6 { ext: off - l3 - 40 }, off, proto, fragment, end));
            }
        };
        next = byte(frame, off, "IPv6 extension")?;
        off += len;
        if off > end {
            return Err(Error::Truncated("IPv6 extension"));
        }
    }
    Err(Error::ExtChain)
}

fn l4_header_len(frame: &[u8], l4: usize, proto: u8, end: usize) -> Result<usize, Error> {
    let len = match proto {
        PROTO_TCP => {
            let doff = usize::from(byte(frame, l4 + 12, "TCP")? >> 4) * 4;
            if doff < 20 {
                return Err(Error::TcpOffset(doff));
            }
            doff
        }
        PROTO_UDP => 8,
        _ => return Ok(0),
    };
    if l4 + len > end {
        return Err(Error::Truncated(if proto == PROTO_TCP {
            "TCP"
        } else {
            "UDP"
        }));
    }
    Ok(len)
}
