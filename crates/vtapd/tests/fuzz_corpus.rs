//! Replays the committed fuzz corpora of the daemon's parsers on stable
//! Rust (the fuzzer itself needs nightly: `scripts/fuzz.sh`).

use vtap_testkit::replay_corpus;

#[test]
fn api_body_corpus_replays_without_panic() {
    replay_corpus("api_body", vtapd::fuzz::api_body);
}

#[test]
fn config_corpus_replays_without_panic() {
    replay_corpus("config", vtapd::fuzz::config);
}
