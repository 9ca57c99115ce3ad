//! Arbitrary text as the daemon's config file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vtapd::fuzz::config(data);
});
