#!/usr/bin/env bash
# A five-minute look at vtap (until `vtap demo` lands): starts a daemon on a
# private socket, plugs two network namespaces into it with fully configured
# taps, shows vtap's view and the kernel's, toggles an offload, and removes
# everything it made, also on Ctrl-C. Run as root after `cargo build --release`.
# Addresses: 198.18.0.0/15 and 2001:db8::/32 only (benchmarking/doc ranges).
set -euo pipefail
cd "$(dirname "$0")/.."
VTAP=${VTAP:-target/release/vtap}
[ -x "$VTAP" ] || { echo "build first: cargo build --release" >&2; exit 1; }

DIR=$(mktemp -d)
export VTAP_SOCKET=$DIR/vtap.sock
NS_A=vtap-try-a-$$ NS_B=vtap-try-b-$$
cleanup() {
	[ -n "${DAEMON:-}" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null
	ip netns del "$NS_A" 2>/dev/null || true
	ip netns del "$NS_B" 2>/dev/null || true
	rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

ip netns add "$NS_A"
ip netns add "$NS_B"
"$VTAP" daemon 2>"$DIR/vtapd.log" &
DAEMON=$!
for _ in $(seq 50); do [ -S "$VTAP_SOCKET" ] && break; sleep 0.1; done

step "$VTAP" create --host-ns "$NS_A" --host-if-name tap-a0 \
	--host-ip4-addr 198.18.0.1/24 --host-ip4-gw 198.18.0.254 \
	--host-ip6-addr 2001:db8::1/64 --host-mtu-size 9000 --gso --num-rx-queues 2
step "$VTAP" create --host-ns "$NS_B" --tun --host-ip4-addr 198.18.1.1/24 --csum-offload
step "$VTAP" show
step ip -n "$NS_A" -d -br link show tap-a0
step ip -n "$NS_A" -br addr show tap-a0
step ip -n "$NS_A" route show default
step ip netns exec "$NS_A" sh -c "ethtool -k tap-a0 | grep -E '^(tx-checksumming|tcp-segmentation-offload|tx-udp-segmentation)'"
step "$VTAP" set tap0 offload csum-offload-enable
step ip netns exec "$NS_A" sh -c "ethtool -k tap-a0 | grep -E '^(tx-checksumming|tcp-segmentation-offload)'"
echo
echo "\$ $VTAP create --host-ns $NS_A --host-if-name a-name-of-20-bytes!!   (refused, never truncated)"
"$VTAP" create --host-ns "$NS_A" --host-if-name 'a-name-of-20-bytes!!' || true
step "$VTAP" delete tap0
step "$VTAP" delete tun1
step "$VTAP" show
echo
echo "daemon log:"; cat "$DIR/vtapd.log"
