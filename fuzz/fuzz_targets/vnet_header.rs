//! The 12-byte virtio-net header alone (round trip) and the checks a header
//! must pass against its frame before anything acts on it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vtap::datapath::fuzz::vnet_header(data);
});
