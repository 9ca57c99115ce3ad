//! A received VXLAN datagram (the UDP payload): decapsulation, its refusal
//! reasons, and the entropy hash of the inner frame.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vtap::wire::vxlan::fuzz_one(data);
});
