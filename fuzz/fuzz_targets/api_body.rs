//! Arbitrary bytes as a REST request body of each type, parsed and validated
//! as the daemon does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vtapd::fuzz::api_body(data);
});
