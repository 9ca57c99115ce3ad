#!/bin/sh
# Runs every cargo-fuzz target for a bounded time, then minimises its
# corpus in place (commit the result: `cargo test` replays it on stable).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (installed here when missing).
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Seeds: golden frames from the unit tests.
cargo test -q -p vtap --lib write_fuzz_seeds -- --ignored
for t in $(cargo +nightly fuzz list); do
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t for ${secs}s"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=70000 -print_final_stats=1
    cargo +nightly fuzz cmin "$t" "fuzz/corpus/$t"
done
