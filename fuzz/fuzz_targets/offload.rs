//! The offload layer's parsers and transforms (virtio-net header, Ethernet,
//! VLAN, IPv4/IPv6 with extension headers, TCP/UDP, segmentation, checksum
//! completion, coalescing) on arbitrary input: must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vtap::offload::fuzz_one(data);
});
