#!/usr/bin/env python3
"""Markdown tables from bench/run.py's results.json: medians with min-max,
ratios against the peers of the same run, and the issue's targets.

    bench/report.py bench/out/<session>/results.json
"""

import json
import statistics
import sys

USERSPACE = ["offload", "offload-t", "naive", "tunrs-tap", "dpdk"]


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

    out += ["", *targets(res, peers), *uplink_targets(res, peers)]
    errors = [r for r in res if "error" in r]
    if errors:
        out += ["", "Failed measurements:", ""] + [f"- {r['peer']} {r['test']}: {r['error'][:200]}" for r in errors]
    return "\n".join(out) + "\n"


# The one vtap configuration every target is judged on, declared before the
# run: what the README tells users to run (gso + gro-coalesce, default rx
# mode). Other vtap rows are reported, never claimed.
DECLARED = "vtap"


def verdict(ours, theirs, factor, higher_better=True):
    """'yes' only when the whole range of ours clears factor × the whole
    range of theirs; 'no' when it misses even at its best; else 'level'."""
    if not ours or not theirs:
        return None
    if higher_better:
        if min(ours) >= factor * max(theirs):
            return "yes"
        if max(ours) < factor * min(theirs):
            return "no"
    else:
        if max(ours) <= factor * min(theirs):
            return "yes"
        if min(ours) > factor * max(theirs):
            return "no"
    return "level"


def span(v, fmt="{:.2f}"):
    return f"{fmt.format(med(v))} [{fmt.format(min(v))}–{fmt.format(max(v))}]"


def targets(res, peers):
    """The targets, each judged on the declared configuration with the
    figures (medians and ranges) it compares."""
    v = lambda p, t, k: values(res, p, t, k)
    if DECLARED not in peers or "veth" not in peers:
        return []
    rows = [f"#### Targets (declared configuration: `{DECLARED}`; met only when the ranges clear)", "",
            "| target | figures (median [min–max]) | met |", "|---|---|---|"]

    def row(name, figures, ok):
        rows.append(f"| {name} | {figures} | {ok or 'n/a'} |")

    ours = v(DECLARED, "tcp1", "gbps")
    users = [(p, v(p, "tcp1", "gbps")) for p in peers if p in USERSPACE and v(p, "tcp1", "gbps")]
    if ours and users:
        bp, bv = max(users, key=lambda x: med(x[1]))
        row("TCP 1 stream ≥ 1.05× best userspace peer",
            f"vtap {span(ours)} / {bp} {span(bv)} Gbit/s", verdict(ours, bv, 1.05))
    veth = v("veth", "tcp1", "gbps")
    if ours and veth:
        row("TCP 1 stream ≥ 0.9× veth", f"vtap {span(ours)} / veth {span(veth)} Gbit/s",
            verdict(ours, veth, 0.9))
    cv, co = v(DECLARED, "tcp1", "cpu_pct_per_gbps"), v("offload", "tcp1", "cpu_pct_per_gbps")
    if cv and co:
        row("less forwarder CPU per Gbit/s than the C forwarder",
            f"vtap {span(cv, '{:.1f}')} vs offload {span(co, '{:.1f}')} %·s/Gbit",
            verdict(cv, co, 1.0, higher_better=False))
    for test, key, label in (("ping", "p50_us", "ping"), ("sockperf", "rtt_p50_us", "sockperf")):
        lv, lveth = v(DECLARED, test, key), v("veth", test, key)
        if lv and lveth:
            row(f"latency p50 ≤ 2× veth ({label})", f"vtap {span(lv, '{:.0f}')} / veth {span(lveth, '{:.0f}')} µs",
                verdict(lv, lveth, 2.0, higher_better=False))
    sp, st = v(DECLARED, "small", "rx_kpps"), v("tunrs-tap", "small", "rx_kpps")
    if sp and st:
        row("small-packet rate ≥ 1.5× tun-rs", f"vtap {span(sp, '{:.0f}')} / tun-rs {span(st, '{:.0f}')} kpps",
            verdict(sp, st, 1.5))
    rows += ["", "Noise: each figure is the median of the run's repetitions with its min-max; "
             "a target is met only when the declared configuration's whole range clears the "
             "peer's whole range scaled by the target, missed when even its best misses, and "
             "\"level\" otherwise. Ratios are never compared across runs."]
    return rows


# The uplink path's declared configuration (issue #15): a tap with gso +
# gro-coalesce cross-connected to an AF_PACKET uplink, default rx mode.
DECLARED_UPLINK = "vtap-uplink"


def uplink_targets(res, peers):
    """Issue #15's targets on the uplink path (pod -> forwarder -> NIC)."""
    v = lambda p, t, k: values(res, p, t, k)
    ours = v(DECLARED_UPLINK, "tcp1", "gbps")
    if not ours:
        return []
    rows = ["", f"#### Uplink targets (declared configuration: `{DECLARED_UPLINK}`; met only when the ranges clear)",
            "", "| target | figures (median [min–max]) | met |", "|---|---|---|"]
    for peer, factor, name in (("uplink-bridge", 0.8, "TCP 1 stream ≥ 0.8× the kernel bridge"),
                               ("dpdk-uplink", 1.5, "TCP 1 stream ≥ 1.5× testpmd (net_tap + net_af_packet)")):
        theirs = v(peer, "tcp1", "gbps")
        if theirs:
            rows.append(f"| {name} | vtap {span(ours)} / {peer} {span(theirs)} Gbit/s | "
                        f"{verdict(ours, theirs, factor)} |")
    return rows


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(render(json.load(f)), end="")
