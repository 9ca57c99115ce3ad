#!/usr/bin/env python3
"""Markdown tables from bench/run.py's results.json: medians with min-max,
ratios against the peers of the same run, and the issue's targets; and one
SVG chart per test (every peer: the median as a bar, min-max as a line).

    bench/report.py bench/out/<session>/results.json [--svg DIR]
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
           f"{doc['dur']} s per test, {doc['reps']} repetition(s), "
           f"{'pinned (forwarders on CPU 1, traffic on CPU 0)' if doc.get('pinned') else 'unpinned'}"
           f"{' (--quick: harness check only, figures meaningless)' if doc['quick'] else ''}.", ""]

    g = lambda p, t, k: med(values(res, p, t, k))
    veth_tcp1, veth_tcp4 = g("veth", "tcp1", "gbps"), g("veth", "tcp4", "gbps")
    veth_tcp8 = g("veth", "tcp8", "gbps")
    out += ["#### TCP (iperf3 A → B)", "",
            "| peer | 1 stream Gbit/s | ×veth | fwd CPU % | CPU % per Gbit/s | 4 streams Gbit/s | ×veth | fwd CPU % "
            "| 8 streams Gbit/s | ×veth |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for p in peers:
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            p, cell(values(res, p, "tcp1", "gbps")), ratio(g(p, "tcp1", "gbps"), veth_tcp1),
            cell(values(res, p, "tcp1", "fwd_cpu_pct"), "{:.0f}"),
            cell(values(res, p, "tcp1", "cpu_pct_per_gbps"), "{:.1f}"),
            cell(values(res, p, "tcp4", "gbps")), ratio(g(p, "tcp4", "gbps"), veth_tcp4),
            cell(values(res, p, "tcp4", "fwd_cpu_pct"), "{:.0f}"),
            cell(values(res, p, "tcp8", "gbps")), ratio(g(p, "tcp8", "gbps"), veth_tcp8)))

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

    out += ["", *targets(res, peers), *round_two_targets(res, peers), *uplink_targets(res, peers)]
    skipped = {r["peer"]: r["skipped"] for r in res if "skipped" in r}
    if skipped:
        out += ["", "Skipped:", ""] + [f"- {p}: {why}" for p, why in skipped.items()]
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


def best_peer(res, peers, test, key, among, higher=True):
    """(name, values) of the peer among `among` with the best median."""
    cands = [(p, values(res, p, test, key)) for p in peers if p in among and values(res, p, test, key)]
    if not cands:
        return None
    pick = max if higher else min
    return pick(cands, key=lambda x: med(x[1]))


def round_two_targets(res, peers):
    """Issue #18's targets, each against the best peer of this run."""
    v = lambda p, t, k: values(res, p, t, k)
    if DECLARED not in peers:
        return []
    rows = ["", f"#### Round-two targets (issue #18; declared configuration: `{DECLARED}`)", "",
            "| target | figures (median [min–max]) | met |", "|---|---|---|"]
    for test, factor, name in (("tcp4", 1.0, "TCP 4 streams ≥ 1.0× best userspace peer"),
                               ("tcp4", 1.2, "TCP 4 streams ≥ 1.2× best userspace peer (stretch)"),
                               ("tcp8", 1.0, "TCP 8 streams ≥ 1.0× best userspace peer (reported)"),
                               ("tcp1", 1.05, "TCP 1 stream ≥ 1.05× best userspace peer")):
        ours, best = v(DECLARED, test, "gbps"), best_peer(res, peers, test, "gbps", USERSPACE)
        if ours and best:
            rows.append(f"| {name} | vtap {span(ours)} / {best[0]} {span(best[1])} Gbit/s | "
                        f"{verdict(ours, best[1], factor)} |")
    ours, veth = v(DECLARED, "tcp1", "gbps"), v("veth", "tcp1", "gbps")
    if ours and veth:
        rows.append(f"| TCP 1 stream ≥ 0.9× veth | vtap {span(ours)} / veth {span(veth)} Gbit/s | "
                    f"{verdict(ours, veth, 0.9)} |")
    ours = v(DECLARED, "ping", "p50_us")
    best = best_peer(res, peers, "ping", "p50_us", ["offload", "offload-t", "naive"], higher=False)
    if ours and best:
        rows.append(f"| ping p50 (5 ms apart) ≤ 0.7× the best C forwarder | vtap {span(ours, '{:.0f}')} / "
                    f"{best[0]} {span(best[1], '{:.0f}')} µs | {verdict(ours, best[1], 0.7, higher_better=False)} |")
    # No peer to judge against: no table.
    return rows if len(rows) > 5 else []


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


# (test, key, title, unit, higher is better)
CHARTS = [
    ("tcp1", "gbps", "TCP, 1 stream", "Gbit/s", True),
    ("tcp4", "gbps", "TCP, 4 streams", "Gbit/s", True),
    ("tcp8", "gbps", "TCP, 8 streams", "Gbit/s", True),
    ("small", "rx_kpps", "Small packets arrived", "kpps", True),
    ("ping", "p50_us", "ping round trip, p50", "µs", False),
    ("sockperf", "rtt_p50_us", "sockperf UDP round trip, p50", "µs", False),
]


def esc(t):
    return str(t).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chart(doc, test, key, title, unit, higher):
    """One horizontal bar per peer: the median, with its min-max range."""
    res = doc["results"]
    peers = list(dict.fromkeys(r["peer"] for r in res))
    rows = [(p, values(res, p, test, key)) for p in peers]
    rows = [(p, v) for p, v in rows if v]
    if not rows:
        return None
    top = max(max(v) for _, v in rows) or 1.0
    label_w, bar_w, row_h, pad = 150, 420, 26, 10
    w, h = label_w + bar_w + 120, pad * 2 + 40 + row_h * len(rows)
    x = lambda v: label_w + v / top * bar_w
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{pad}" y="{pad + 14}" font-size="14" font-weight="bold">{esc(title)} '
           f'({esc(unit)}, {"higher" if higher else "lower"} is better)</text>',
           f'<text x="{pad}" y="{pad + 30}" fill="#555">session {esc(doc["session"])}: '
           f'median of {doc["reps"]}, line = min-max</text>']
    for i, (p, v) in enumerate(rows):
        y = pad + 40 + i * row_h
        m = med(v)
        colour = "#2a7ab9" if p.startswith("vtap") else "#9a9a9a"
        out += [f'<text x="{label_w - 6}" y="{y + 16}" text-anchor="end">{esc(p)}</text>',
                f'<rect x="{label_w}" y="{y + 4}" width="{max(1.0, x(m) - label_w):.1f}" '
                f'height="{row_h - 8}" fill="{colour}"/>',
                f'<line x1="{x(min(v)):.1f}" x2="{x(max(v)):.1f}" y1="{y + row_h / 2:.1f}" '
                f'y2="{y + row_h / 2:.1f}" stroke="black" stroke-width="2"/>',
                f'<text x="{x(max(v)) + 6:.1f}" y="{y + 16}">{m:.3g}</text>']
    out.append("</svg>")
    return "\n".join(out) + "\n"


def charts(doc, outdir):
    """Writes <outdir>/<session>-<test>.svg per test with figures; returns
    the paths."""
    import os
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for test, key, title, unit, higher in CHARTS:
        svg = chart(doc, test, key, title, unit, higher)
        if svg is None:
            continue
        path = os.path.join(outdir, f"{doc['session']}-{test}.svg")
        with open(path, "w") as f:
            f.write(svg)
        paths.append(path)
    return paths


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        doc = json.load(f)
    if "--svg" in sys.argv:
        for path in charts(doc, sys.argv[sys.argv.index("--svg") + 1]):
            print(path, file=sys.stderr)
    print(render(doc), end="")
