#!/usr/bin/env bash
# The iproute2 side of bench/control-plane.sh: for each namespace given,
# create and fully configure a tap the way a shell script would (name, MAC,
# MTU, up, IPv4 + default route, IPv6 + default route), then delete it.
# Prints one line per interface: "<create ms> <delete ms>". The clock is
# bash's $EPOCHREALTIME (no process spawned to read it).
#
#   bench/iproute2-taps.sh NS...
set -euo pipefail
i=0
for ns in "$@"; do
	mac=$(printf '02:fe:00:00:%02x:%02x' $((i >> 8)) $((i & 255)))
	t0=${EPOCHREALTIME/./}
	ip -n "$ns" tuntap add dev "cp$i" mode tap
	ip -n "$ns" link set "cp$i" address "$mac" mtu 1400 up
	ip -n "$ns" addr add 198.18.4.1/24 dev "cp$i"
	ip -n "$ns" addr add 2001:db8:4::1/64 dev "cp$i"
	ip -n "$ns" route add default via 198.18.4.254
	ip -n "$ns" -6 route add default via 2001:db8:4::fe
	t1=${EPOCHREALTIME/./}
	ip -n "$ns" link del "cp$i"
	t2=${EPOCHREALTIME/./}
	echo "$(((t1 - t0) / 1000)).$(((t1 - t0) % 1000 / 100)) $(((t2 - t1) / 1000)).$(((t2 - t1) % 1000 / 100))"
	i=$((i + 1))
done
