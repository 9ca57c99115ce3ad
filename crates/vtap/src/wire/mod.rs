//! What crosses the wire between vtap and a device: the virtio-net header
//! that travels with every frame ([`vnet`]), the borrowed view of a frame
//! to send ([`TxFrame`]), and the VXLAN header of tunnel ports ([`vxlan`]).
//!
//! These are the bottom layer's vocabulary: the offload layer reads and
//! writes headers, the data path moves them, ports and the forwarding plane
//! carry them. Nothing here depends on anything else in the crate.

pub mod vnet;
pub mod vxlan;

pub use vnet::VnetHdr;

/// Room for one frame read from a tap: a 64 KiB super-frame and its
/// headers.
pub const MAX_READ: usize = 65_536 + 256;

/// TCP header flag bits (byte 13 of the TCP header).
pub mod tcp {
    /// No more data.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field valid.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer valid.
    pub const URG: u8 = 0x20;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// A frame to send.
#[derive(Clone, Copy, Debug)]
pub struct TxFrame<'a> {
    /// Its virtio-net header.
    pub hdr: VnetHdr,
    /// Its bytes (Ethernet frame for TAP, IP packet for TUN).
    pub data: &'a [u8],
}
