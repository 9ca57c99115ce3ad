#!/bin/sh
# Runs every cargo-fuzz target for a bounded time, then minimises its
# corpus in place (commit the result: `cargo test` replays it on stable).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60, all)
#
# Targets (fuzz/fuzz_targets/): offload (frame parsers, segmentation,
# checksums, coalescing), vnet_header (the header alone and its checks),
# device (a hostile device against the driver's rings), api_body (REST
# bodies), config (the daemon's config file), vxlan (received VXLAN
# datagrams: decapsulation and the entropy hash). A crash leaves its input in
# fuzz/artifacts/TARGET/; copy it into fuzz/corpus/TARGET/ with the fix.
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (installed here when missing).
set -eu
cd "$(dirname "$0")/.."
secs=${1:-60}
if [ $# -gt 0 ]; then shift; fi
command -v rustup >/dev/null && rustup toolchain list | grep -q nightly ||
    { echo "fuzz: needs a nightly toolchain: rustup toolchain install nightly" >&2; exit 1; }
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# Seeds: golden frames from the unit tests.
cargo test -q -p vtap --lib write_fuzz_seeds -- --ignored
cargo test -q -p vtap --lib write_vxlan_fuzz_seeds -- --ignored
targets=${*:-$(cargo +nightly fuzz list)}
for t in $targets; do
    mkdir -p "fuzz/corpus/$t"
    echo "== fuzz $t for ${secs}s"
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -max_len=70000 -print_final_stats=1
    cargo +nightly fuzz cmin "$t" "fuzz/corpus/$t"
done
