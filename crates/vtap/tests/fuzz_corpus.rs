//! Replays the committed fuzz corpora on stable Rust (the fuzzer itself
//! needs nightly: `scripts/fuzz.sh`). Every input that ever mattered to a
//! fuzz target stays a regression test.

use vtap_testkit::replay_corpus;

#[test]
fn offload_corpus_replays_without_panic() {
    replay_corpus("offload", vtap::offload::fuzz_one);
}

#[test]
fn vnet_header_corpus_replays_without_panic() {
    replay_corpus("vnet_header", vtap::datapath::fuzz::vnet_header);
}

#[test]
fn device_corpus_replays_without_panic() {
    replay_corpus("device", vtap::datapath::fuzz::device);
}

#[test]
fn vxlan_corpus_replays_without_panic() {
    replay_corpus("vxlan", vtap::wire::vxlan::fuzz_one);
}
