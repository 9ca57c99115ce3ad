//! A hostile device on the other side of vtap's rings (used entries that lie,
//! scribbles over the descriptor table) against the driver's rx and tx queues.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vtap::datapath::fuzz::device(data);
});
