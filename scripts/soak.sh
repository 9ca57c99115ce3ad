#!/usr/bin/env bash
# Soak: iperf3 TCP in both directions at once through a vtap cross-connect,
# plus a ping every 10 ms, for SECONDS (default 600). Fails on a stall (a
# one-second iperf3 interval in either direction that moved nothing), on a
# daemon that stops answering, on any error counter other than congestion
# tail drops (`drop_no_free_slots`: a tx ring still full after the
# forwarder's 2 ms wait, which the saturating TCP flows cause and recover
# from), on any ping lost (the pings are counted, not stopped by a signal,
# so the last one in flight is waited for: no tolerance is needed), and on
# a forwarding ledger that does not balance (a frame vtap took that was
# neither forwarded nor dropped under a named reason). Prints every
# data-path and offload counter that grew.
#
#   sudo scripts/soak.sh [SECONDS]      (CI runs 30)
#
# Two namespaces of its own, 198.18.13.0/24 only; everything is removed on
# exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
vtap=$PWD/target/release/vtap
cargo build --release -q -p vtap-cli
command -v iperf3 >/dev/null || { echo "soak: iperf3 missing: run scripts/setup.sh" >&2; exit 1; }
dir=$(mktemp -d)
tag=vsk$$
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$tag-a" 2>/dev/null || true
	ip netns del "$tag-b" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$tag-a"
ip netns add "$tag-b"
"$vtap" --socket "$dir/s" daemon 2>"$dir/daemon.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/s" ] && break; sleep 0.1; done
v() { VTAP_SOCKET=$dir/s "$vtap" "$@"; }
a=$(v create --host-ns "$tag-a" --host-ip4-addr 198.18.13.1/24 --gso --gro-coalesce)
b=$(v create --host-ns "$tag-b" --host-ip4-addr 198.18.13.2/24 --gso --gro-coalesce)
v xconnect "$a" "$b" >/dev/null
ip netns exec "$tag-a" ping -c 3 -i 0.2 -W 2 -q 198.18.13.2 >/dev/null
v show --json >"$dir/before.json"

ip netns exec "$tag-b" iperf3 -s -1 -B 198.18.13.2 >/dev/null 2>&1 &
pids+=($!)
sleep 0.5
ip netns exec "$tag-a" ping -i 0.01 -c "$((secs * 100))" -W 2 198.18.13.2 >"$dir/ping.txt" 2>&1 &
ping_pid=$!
pids+=($ping_pid)
status=0
ip netns exec "$tag-a" iperf3 -c 198.18.13.2 -t "$secs" -i 1 --bidir -J >"$dir/iperf3.json" || status=1
wait "$ping_pid" 2>/dev/null || true
v show --json >"$dir/after.json" || { echo "soak: the daemon no longer answers" >&2; status=1; }

python3 - "$dir" "$secs" <<'EOF' || status=1
import json, re, sys
d, secs = sys.argv[1], int(sys.argv[2])
ok = True
j = json.load(open(f"{d}/iperf3.json"))
if "error" in j:
    print(f"soak: iperf3: {j['error']}"); sys.exit(1)
stalls = {}
for iv in j["intervals"]:
    for s in iv["streams"]:
        if s["end"] - s["start"] >= 0.5 and s["bytes"] == 0:
            way = "B->A" if s.get("sender") is False else "A->B"
            stalls.setdefault(way, []).append(round(s["start"]))
e = j["end"]
rates = {k: e[k]["bits_per_second"] / 1e9 for k in ("sum_received", "sum_received_bidir_reverse") if k in e}
print(f"soak: {secs} s, A->B {rates.get('sum_received', 0):.2f} Gbit/s, "
      f"B->A {rates.get('sum_received_bidir_reverse', 0):.2f} Gbit/s")
if stalls:
    ok = False
    print(f"soak: STALL (a second with no progress) at {stalls}")
p = open(f"{d}/ping.txt").read()
m = re.search(r"(\d+) packets transmitted, (\d+) received", p)
rtt = re.search(r"= ([0-9.]+)/([0-9.]+)/([0-9.]+)/", p)
if not m:
    ok = False; print("soak: no ping summary")
else:
    tx, rx = int(m.group(1)), int(m.group(2))
    print(f"soak: ping {rx}/{tx} answered" + (f", rtt min/avg/max {rtt.group(1)}/{rtt.group(2)}/{rtt.group(3)} ms" if rtt else ""))
    if rx != tx:
        ok = False; print(f"soak: {tx - rx} pings lost")
before = {t["name"]: t for t in json.load(open(f"{d}/before.json"))}
for t in json.load(open(f"{d}/after.json")):
    acc = (t.get("datapath") or {}).get("accounting") or {}
    if not (acc.get("rx_balanced") and acc.get("tx_balanced")):
        ok = False; print(f"soak: {t['name']}: the forwarding ledger does not balance: {acc}")
    b = before.get(t["name"], {})
    dp, db = t.get("datapath") or {}, b.get("datapath") or {}
    def counters(x):
        out = {}
        for side in ("rx", "tx"):
            for i, q in enumerate(x.get(side, [])):
                for k, v in q["counters"].items():
                    out[f"{side}{i}.{k}"] = v
        for k, v in (x.get("offload") or {}).items():
            out[f"offload.{k}"] = v
        return out
    ca, cb = counters(dp), counters(db)
    grew = {k: v - cb.get(k, 0) for k, v in ca.items() if isinstance(v, int) and v != cb.get(k, 0)}
    drops = {k: v for k, v in grew.items() if "drop" in k or "bad" in k or "err" in k}
    print(f"soak: {t['name']} grew: " + ", ".join(f"{k} +{v}" for k, v in sorted(grew.items())))
    congestion = {k: v for k, v in drops.items() if k.endswith("drop_no_free_slots")}
    if congestion:
        sent = sum(v for k, v in grew.items() if k.startswith("tx") and k.endswith(".packets"))
        print(f"soak: {t['name']} congestion tail drops {congestion} of {sent} frames sent")
    other = {k: v for k, v in drops.items() if k not in congestion}
    if other:
        ok = False
        print(f"soak: {t['name']} ERRORS: {other}")
sys.exit(0 if ok else 1)
EOF
exit $status
