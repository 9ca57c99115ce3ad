#!/usr/bin/env python3
"""Markdown tables from bench/run.py's results.json: medians with min-max,
ratios against the peers of the same run, and the issue's targets.

    bench/report.py bench/out/<session>/results.json
"""

import json
import statistics
import sys

USERSPACE = ["offload", "naive", "tunrs-tap", "dpdk"]


def values(results, peer, test, key):
    return [r[key] for r in results
            if r["peer"] == peer and r["test"] == test and r.get(key) is not None]


def med(v):
    return statistics.median(v) if v else None


def cell(v, fmt="{:.2f}"):
    if not v:
        return "–"
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(med(v))} [{fmt.format(min(v))}–{fmt.format(max(v))}]"


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "–"


def render(doc, **_):
    res = doc["results"]
    peers = list(dict.fromkeys(r["peer"] for r in res))
    m = doc["machine"]
    out = [f"Session `{doc['session']}`: kernel {m['kernel']}, {m['cpus']} CPUs ({m['cpu']}), "
           f"{m['mem_gib']} GiB, vhost-net {'present' if m['vhost_net'] else 'absent'}; "
           f"{doc['dur']} s per test, {doc['reps']} repetition(s), unpinned"
           f"{' (--quick: harness check only, figures meaningless)' if doc['quick'] else ''}.", ""]

    g = lambda p, t, k: med(values(res, p, t, k))
    veth_tcp1, veth_tcp4 = g("veth", "tcp1", "gbps"), g("veth", "tcp4", "gbps")
    out += ["#### TCP (iperf3 A → B)", "",
            "| peer | 1 stream Gbit/s | ×veth | fwd CPU % | CPU % per Gbit/s | 4 streams Gbit/s | ×veth | fwd CPU % |",
            "|---|---|---|---|---|---|---|---|"]
    for p in peers:
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            p, cell(values(res, p, "tcp1", "gbps")), ratio(g(p, "tcp1", "gbps"), veth_tcp1),
            cell(values(res, p, "tcp1", "fwd_cpu_pct"), "{:.0f}"),
            cell(values(res, p, "tcp1", "cpu_pct_per_gbps"), "{:.1f}"),
            cell(values(res, p, "tcp4", "gbps")), ratio(g(p, "tcp4", "gbps"), veth_tcp4),
            cell(values(res, p, "tcp4", "fwd_cpu_pct"), "{:.0f}")))

    tunrs = g("tunrs-tap", "small", "rx_kpps")
    out += ["", "#### Small packets (trafgen, 64-byte UDP frames into A; counted at B's interface)", "",
            "| peer | arrived kpps | offered kpps | ×tun-rs | fwd CPU % |", "|---|---|---|---|---|"]
    for p in peers:
        out.append("| {} | {} | {} | {} | {} |".format(
            p, cell(values(res, p, "small", "rx_kpps"), "{:.0f}"),
            cell(values(res, p, "small", "offered_kpps"), "{:.0f}"),
            ratio(g(p, "small", "rx_kpps"), tunrs),
            cell(values(res, p, "small", "fwd_cpu_pct"), "{:.0f}")))

    vp, vs = g("veth", "ping", "p50_us"), g("veth", "sockperf", "rtt_p50_us")
    out += ["", "#### Latency (round trip, µs)", "",
            "| peer | ping p50 | ping p99 | ×veth (p50) | sockperf UDP p50 | sockperf p99 | ×veth (p50) |",
            "|---|---|---|---|---|---|---|"]
    for p in peers:
        out.append("| {} | {} | {} | {} | {} | {} | {} |".format(
            p, cell(values(res, p, "ping", "p50_us"), "{:.0f}"), cell(values(res, p, "ping", "p99_us"), "{:.0f}"),
            ratio(g(p, "ping", "p50_us"), vp),
            cell(values(res, p, "sockperf", "rtt_p50_us"), "{:.0f}"),
            cell(values(res, p, "sockperf", "rtt_p99_us"), "{:.0f}"),
            ratio(g(p, "sockperf", "rtt_p50_us"), vs)))

    out += ["", *targets(res, peers)]
    errors = [r for r in res if "error" in r]
    if errors:
        out += ["", "Failed measurements:", ""] + [f"- {r['peer']} {r['test']}: {r['error'][:200]}" for r in errors]
    return "\n".join(out) + "\n"


def targets(res, peers):
    """The issue's targets, each with the figures it compares."""
    g = lambda p, t, k: med(values(res, p, t, k))
    vtap = [p for p in peers if p.startswith("vtap")]
    if not vtap or "veth" not in peers:
        return []
    best = max(vtap, key=lambda p: g(p, "tcp1", "gbps") or 0)
    tcp = g(best, "tcp1", "gbps") or 0
    users = [(p, g(p, "tcp1", "gbps")) for p in peers if p in USERSPACE and g(p, "tcp1", "gbps")]
    best_user = max(users, key=lambda x: x[1]) if users else (None, None)
    rows = ["#### Targets", "", "| target | figures | met |", "|---|---|---|"]

    def row(name, figures, ok):
        rows.append(f"| {name} | {figures} | {'yes' if ok else 'no' if ok is not None else 'n/a'} |")

    if best_user[0]:
        r = tcp / best_user[1]
        row("TCP 1 stream ≥ 1.05× best userspace peer",
            f"{best} {tcp:.2f} / {best_user[0]} {best_user[1]:.2f} = {r:.2f}×", r >= 1.05)
    veth = g("veth", "tcp1", "gbps")
    if veth:
        row("TCP 1 stream ≥ 0.9× veth", f"{tcp:.2f} / {veth:.2f} = {tcp / veth:.2f}×", tcp / veth >= 0.9)
    c_v, c_o = g(best, "tcp1", "cpu_pct_per_gbps"), g("offload", "tcp1", "cpu_pct_per_gbps")
    if c_v and c_o:
        row("less forwarder CPU per Gbit/s than the C forwarder",
            f"{best} {c_v:.1f} vs offload {c_o:.1f} %·s/Gbit", c_v < c_o)
    # Latency: the vtap configuration a latency-minded user would pick
    # (rx-mode is a per-interface knob), named in the figures.
    for test, key, label in (("ping", "p50_us", "ping"), ("sockperf", "rtt_p50_us", "sockperf")):
        have = [(p, g(p, test, key)) for p in vtap if g(p, test, key)]
        lveth = g("veth", test, key)
        if have and lveth:
            p, lv = min(have, key=lambda x: x[1])
            row(f"latency p50 ≤ 2× veth ({label})", f"{p} {lv:.0f} / {lveth:.0f} µs = {lv / lveth:.2f}×",
                lv / lveth <= 2)
    bs = max(vtap, key=lambda p: g(p, "small", "rx_kpps") or 0)
    sp, st = g(bs, "small", "rx_kpps"), g("tunrs-tap", "small", "rx_kpps")
    if sp and st:
        row("small-packet rate ≥ 1.5× tun-rs", f"{bs} {sp:.0f} / {st:.0f} kpps = {sp / st:.2f}×", sp / st >= 1.5)
    return rows


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(render(json.load(f)), end="")
