#!/usr/bin/env bash
# TCP throughput (iperf3, one stream, A -> B) through a vtap cross-connect for
# each offload combination of the two taps: what software segmentation,
# checksum completion and coalescing cost or win. Two namespaces of its own,
# addresses in 198.18.0.0/24 only; everything is removed on exit.
#
#   sudo bench/offloads.sh [SECONDS] [MTU]     (defaults 5, 1500)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-5}
mtu=${2:-1500}
vtap=${VTAP:-target/release/vtap}
[ -x "$vtap" ] || cargo build --release -q
dir=$(mktemp -d)
sock=$dir/vtap.sock
tag=vb$$
"$vtap" --socket "$sock" daemon >"$dir/daemon.log" 2>&1 &
daemon=$!
cleanup() {
	ip netns del "$tag-a" 2>/dev/null || true
	ip netns del "$tag-b" 2>/dev/null || true
	kill "$daemon" 2>/dev/null || true
	wait "$daemon" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
v() { VTAP_SOCKET=$sock "$vtap" "$@"; }
flags() {
	local out=()
	case $1 in *gso*) out+=(--gso) ;; esac
	case $1 in *csum*) out+=(--csum-offload) ;; esac
	case $1 in *gro*) out+=(--gro-coalesce) ;; esac
	echo "${out[@]}"
}
printf '| mtu | tap A | tap B | Gbit/s A->B | Gbit/s B->A |\n|---|---|---|---|---|\n'
for combo in gso:gso gso+gro:gso+gro gso:none gso+gro:none none:gso+gro csum:csum none:none; do
	a=${combo%%:*} b=${combo##*:}
	ip netns add "$tag-a"
	ip netns add "$tag-b"
	# shellcheck disable=SC2046
	ta=$(v create --host-ns "$tag-a" --host-ip4-addr 198.18.0.1/24 --host-mtu-size "$mtu" $(flags "$a"))
	# shellcheck disable=SC2046
	tb=$(v create --host-ns "$tag-b" --host-ip4-addr 198.18.0.2/24 --host-mtu-size "$mtu" $(flags "$b"))
	v xconnect "$ta" "$tb" >/dev/null
	rate() { # from-ns to-ns to-ip
		ip netns exec "$2" iperf3 -s -1 -D -p 5201 >/dev/null
		sleep 0.3
		ip netns exec "$1" iperf3 -c "$3" -t "$dur" -J |
			python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
	}
	ab=$(rate "$tag-a" "$tag-b" 198.18.0.2)
	ba=$(rate "$tag-b" "$tag-a" 198.18.0.1)
	printf '| %s | %s | %s | %s | %s |\n' "$mtu" "$a" "$b" "$ab" "$ba"
	v xconnect "$ta" --delete >/dev/null
	v delete "$ta" >/dev/null
	v delete "$tb" >/dev/null
	ip netns del "$tag-a"
	ip netns del "$tag-b"
done
