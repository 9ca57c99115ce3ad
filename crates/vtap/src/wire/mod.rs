//! What crosses the wire between vtap and a device: the virtio-net header
//! that travels with every frame ([`vnet`]) and the borrowed view of a frame
//! to send ([`TxFrame`]).
//!
//! These are the bottom layer's vocabulary: the offload layer reads and
//! writes headers, the data path moves them, ports and the forwarding plane
//! carry them. Nothing here depends on anything else in the crate.

pub mod vnet;

pub use vnet::VnetHdr;

/// A frame to send.
#[derive(Clone, Copy, Debug)]
pub struct TxFrame<'a> {
    /// Its virtio-net header.
    pub hdr: VnetHdr,
    /// Its bytes (Ethernet frame for TAP, IP packet for TUN).
    pub data: &'a [u8],
}
