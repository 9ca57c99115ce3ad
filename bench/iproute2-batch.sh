#!/usr/bin/env bash
# The best an iproute2 user can do for bench/control_plane.py: per namespace
# ONE `ip -batch` process for the create and configure commands (instead of
# six `ip` processes), then every deletion started in the background at once
# (their RCU waits overlap, as vtap's batch deletion does). Prints one line:
# "<create ms for all> <delete ms for all>".
#
#   bench/iproute2-batch.sh NS...
set -euo pipefail
i=0
t0=${EPOCHREALTIME/./}
for ns in "$@"; do
	mac=$(printf '02:fe:00:00:%02x:%02x' $((i >> 8)) $((i & 255)))
	ip -n "$ns" -batch - <<-EOB
		tuntap add dev cp$i mode tap
		link set cp$i address $mac mtu 1400 up
		addr add 198.18.4.1/24 dev cp$i
		addr add 2001:db8:4::1/64 dev cp$i
		route add default via 198.18.4.254
		route add default via 2001:db8:4::fe
	EOB
	i=$((i + 1))
done
t1=${EPOCHREALTIME/./}
i=0
pids=()
for ns in "$@"; do
	ip -n "$ns" link del "cp$i" &
	pids+=($!)
	i=$((i + 1))
done
wait "${pids[@]}"
t2=${EPOCHREALTIME/./}
echo "$(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) $(((t2 - t1) / 1000)).$(((t2 - t1) % 1000 / 100))"
