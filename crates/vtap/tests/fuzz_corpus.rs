//! Replays the committed fuzz corpora on stable Rust (the fuzzer itself
//! needs nightly: `scripts/fuzz.sh`). Every input that ever mattered to a
//! fuzz target stays a regression test.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read");
        run(&data);
        n += 1;
    }
    assert!(n > 0, "{} holds no inputs", dir.display());
}

#[test]
fn offload_corpus_replays_without_panic() {
    replay("offload", vtap::offload::fuzz_one);
}
