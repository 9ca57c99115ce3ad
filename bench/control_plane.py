#!/usr/bin/env python3
"""Control-plane speed and scale, vtap against iproute2.

    sudo bench/control_plane.py [--n N] [--scale M] [--scale-ns K] [--no-speed] [--quick]

Speed (N interfaces, default 100): create + fully configure (in its own
namespace: name, MAC, MTU, up, IPv4 address + default route, IPv6 address +
default route) + delete, per interface, done by

    iproute2   bench/iproute2-taps.sh: six `ip` commands, then `ip link del`
    iproute2-batch  bench/iproute2-batch.sh: one `ip -batch` per namespace,
               every `ip link del` in the background at once (the best an
               iproute2 user can do; ratios are reported against the best)
    vtap-cli   one `vtap create ...` and one `vtap delete` through the daemon
    vtap-rest  the daemon's REST API over one keep-alive connection
    vtap-rest-batch  the same, all N deleted in one request
               (POST /v1/taps/delete: the kernel's waits overlap)
    vtap-library, vtap-library-batch  the library in-process
               (examples/control_plane.rs), one by one and in one batch

vtap does more than the script: its taps have their queues open and a data
path running, and every step is read back from the kernel.

Scale (M interfaces, default 8192): M taps in one daemon (one namespace,
MTU set, up), created over the REST API: time, daemon RSS, fds and threads
per interface; then all deleted. --scale-ns K spreads them over K
namespaces made before the clock starts (K = M: one per tap, as pods have
them; one namespace is the kernel's worst case, its IPv6 routing table
walked on every link change grows with every tap).

Output: bench/out/control-plane-<session>.json and a markdown table on
stdout. --quick: N=5, M=64 (harness check for CI; no timing is asserted).
Addresses: 198.18.4.0/24 and 2001:db8:4::/64 inside the namespaces only.
"""

import argparse
import http.client
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VTAP = os.path.join(ROOT, "target", "release", "vtap")
TAG = f"vtc{os.getpid()}"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def call(conn, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={"content-type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return json.loads(data) if data else None


class Daemon:
    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "vtap.sock")
        # One fd per queue, eventfds, a thread per queue pair: the soft fd
        # limit goes up to the hard one (which bounds the scale run).
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        self.nofile = hard
        self.p = subprocess.Popen([VTAP, "--socket", self.sock, "daemon"],
                                  preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard)),
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "daemon.log"), "w"))
        for _ in range(100):
            if os.path.exists(self.sock):
                break
            time.sleep(0.05)
        self.pid = self.p.pid

    def status(self):
        with open(f"/proc/{self.pid}/status") as f:
            s = dict(l.split(":", 1) for l in f if ":" in l)
        with open("/proc/meminfo") as f:
            m = dict(l.split(":", 1) for l in f)
        return {"rss_kib": int(s["VmRSS"].split()[0]), "threads": int(s["Threads"]),
                "fds": len(os.listdir(f"/proc/{self.pid}/fd")),
                # The kernel's side of an interface (netdev, queues, qdiscs).
                "slab_kib": int(m["Slab"].split()[0])}

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def namespaces(n, tag):
    names = [f"{TAG}{tag}{i}" for i in range(n)]
    for ns in names:
        subprocess.run(["ip", "netns", "add", ns], check=True)
    return names


def drop_namespaces(names):
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    # A daemon killed with taps left holds none of them now: their links
    # went with its fds, and the namespaces with the mounts above.


def opts(ns, i):
    return {"host_ns": ns, "host_if_name": f"cp{i}", "host_mac_addr": f"02:fe:00:00:{i >> 8:02x}:{i & 255:02x}",
            "host_ip4_addr": "198.18.4.1/24", "host_ip4_gw": "198.18.4.254",
            "host_ip6_addr": "2001:db8:4::1/64", "host_ip6_gw": "2001:db8:4::fe", "host_mtu_size": 1400}


def cli_args(o):
    a = []
    for k, v in o.items():
        a += ["--" + k.replace("_", "-"), str(v)]
    return a


def speed(n, tmp):
    rows = []
    nss = namespaces(n, "i")
    try:
        t = time.time()
        out = subprocess.run([os.path.join(ROOT, "bench", "iproute2-taps.sh"), *nss], check=True,
                             capture_output=True, text=True).stdout.split("\n")
        pairs = [tuple(map(float, l.split())) for l in out if l.strip()]
        rows.append({"tool": "iproute2", "n": n, "total_ms": (time.time() - t) * 1e3,
                     "create_ms": [p[0] for p in pairs], "delete_ms": [p[1] for p in pairs]})
    finally:
        drop_namespaces(nss)
    # The best an iproute2 user can do: one `ip -batch` per namespace,
    # deletions in the background (per-interface figures are totals / n).
    nss = namespaces(n, "b")
    try:
        t = time.time()
        out = subprocess.run([os.path.join(ROOT, "bench", "iproute2-batch.sh"), *nss], check=True,
                             capture_output=True, text=True).stdout.split()
        c, dl = float(out[0]) / n, float(out[1]) / n
        rows.append({"tool": "iproute2-batch", "n": n, "total_ms": (time.time() - t) * 1e3,
                     "create_ms": [c] * n, "delete_ms": [dl] * n})
    finally:
        drop_namespaces(nss)

    d = Daemon(tmp)
    env = dict(os.environ, VTAP_SOCKET=d.sock)
    nss = namespaces(n, "c")
    try:
        create, delete = [], []
        t = time.time()
        for i, ns in enumerate(nss):
            t0 = time.time()
            r = subprocess.run([VTAP, "create", *cli_args(opts(ns, i))], env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"vtap create: {r.stderr.strip()}")
            name = r.stdout.strip()
            t1 = time.time()
            subprocess.run([VTAP, "delete", name], env=env, check=True, capture_output=True)
            create.append((t1 - t0) * 1e3)
            delete.append((time.time() - t1) * 1e3)
        rows.append({"tool": "vtap-cli", "n": n, "total_ms": (time.time() - t) * 1e3,
                     "create_ms": create, "delete_ms": delete})
        conn = UnixHTTP(d.sock)
        create, delete = [], []
        t = time.time()
        for i, ns in enumerate(nss):
            t0 = time.time()
            info = call(conn, "POST", "/v1/taps", opts(ns, i))
            t1 = time.time()
            call(conn, "DELETE", f"/v1/taps/{info['name']}")
            create.append((t1 - t0) * 1e3)
            delete.append((time.time() - t1) * 1e3)
        rows.append({"tool": "vtap-rest", "n": n, "total_ms": (time.time() - t) * 1e3,
                     "create_ms": create, "delete_ms": delete})
        # The same, deleting all in one request (POST /v1/taps/delete): the
        # kernel's RCU waits overlap; each interface is charged 1/n of it.
        create, names = [], []
        t = time.time()
        for i, ns in enumerate(nss):
            t0 = time.time()
            names.append(call(conn, "POST", "/v1/taps", opts(ns, i))["name"])
            create.append((time.time() - t0) * 1e3)
        t1 = time.time()
        res = call(conn, "POST", "/v1/taps/delete", {"interfaces": names})
        if res["failed"]:
            raise RuntimeError(f"batch delete: {res['failed'][:3]}")
        each = (time.time() - t1) * 1e3 / n
        rows.append({"tool": "vtap-rest-batch", "n": n, "total_ms": (time.time() - t) * 1e3,
                     "create_ms": create, "delete_ms": [each] * n})
    finally:
        d.stop()
        drop_namespaces(nss)

    r = subprocess.run(["cargo", "run", "--release", "-q", "-p", "vtap", "--example", "control_plane", str(n)],
                       cwd=ROOT, check=True, capture_output=True, text=True)
    for line in r.stdout.strip().splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def scale(m, tmp, spread=1):
    """`m` taps in one daemon, over `spread` namespaces (tap i in namespace
    i mod spread; 1: all in one, the kernel's worst case; `m`: one each, as
    pods have them). The namespaces are made before the clock starts."""
    d = Daemon(tmp)
    nss = namespaces(spread, "s")
    conn = UnixHTTP(d.sock)
    res = {"n": m, "namespaces": spread, "nofile_limit": d.nofile}
    try:
        before = d.status()
        t = time.time()
        create = []
        made = 0
        for i in range(m):
            t0 = time.time()
            try:
                call(conn, "POST", "/v1/taps", {"host_ns": nss[i % spread], "host_if_name": f"s{i}",
                                                "host_mtu_size": 1400})
            except RuntimeError as e:
                res["stopped_at"] = i
                res["error"] = str(e)
                break
            create.append((time.time() - t0) * 1e3)
            made += 1
        res["created"] = made
        res["create_total_s"] = time.time() - t
        res["create_median_ms"] = statistics.median(create) if create else None
        after = d.status()
        links = sum(len(json.loads(subprocess.run(["ip", "-n", ns, "-j", "link", "show"], check=True,
                                                  capture_output=True, text=True).stdout)) - 1
                    for ns in nss)
        res.update(before=before, after=after, kernel_links=links)
        if made:
            res["rss_kib_per_if"] = round((after["rss_kib"] - before["rss_kib"]) / made, 1)
            res["fds_per_if"] = round((after["fds"] - before["fds"]) / made, 2)
            res["threads_per_if"] = round((after["threads"] - before["threads"]) / made, 2)
            res["kernel_slab_kib_per_if"] = round((after["slab_kib"] - before["slab_kib"]) / made, 1)
        t = time.time()
        for tap in call(conn, "GET", "/v1/taps"):
            try:
                call(conn, "DELETE", f"/v1/taps/{tap['name']}")
            except RuntimeError as e:
                res.setdefault("delete_errors", []).append(str(e)[:300])
        res["delete_total_s"] = time.time() - t
        res["after_delete"] = d.status()
    finally:
        try:
            d.stop()
        finally:
            drop_namespaces(nss)
    return res


def med(v):
    return statistics.median(v)


def table(rows, sc):
    if not rows:
        return scale_line(sc) + "\n" if sc else ""
    ip = next(r for r in rows if r["tool"] == "iproute2")
    per_if = lambda r: med([c + d for c, d in zip(r["create_ms"], r["delete_ms"])])
    base = per_if(ip)
    # The ratio that counts is against the best iproute2 can do.
    best = min((r for r in rows if r["tool"].startswith("iproute2")), key=per_if)
    out = [f"| tool | create + configure, median ms | delete, median ms | total for {ip['n']} s "
           f"| × iproute2 script | × best iproute2 ({best['tool']}) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        per = per_if(r)
        out.append(f"| {r['tool']} | {med(r['create_ms']):.2f} | {med(r['delete_ms']):.2f} | "
                   f"{r['total_ms'] / 1e3:.2f} | {base / per:.1f}× | {per_if(best) / per:.1f}× |")
    if sc:
        out += ["", scale_line(sc)]
    return "\n".join(out) + "\n"


def scale_line(sc):
    return (f"Scale: {sc['created']} of {sc['n']} taps in one daemon, over {sc.get('namespaces', 1)} "
            f"namespace(s), in {sc['create_total_s']:.1f} s "
            f"(median {sc['create_median_ms']:.2f} ms each); kernel shows {sc['kernel_links']}; "
            f"RSS {sc['before']['rss_kib'] // 1024} → {sc['after']['rss_kib'] // 1024} MiB "
            f"({sc.get('rss_kib_per_if', 0):.0f} KiB per interface; kernel slab "
            f"{sc.get('kernel_slab_kib_per_if', 0):.0f} KiB per interface), "
            f"{sc.get('fds_per_if', 0)} fds and {sc.get('threads_per_if', 0)} threads per interface; "
            f"all deleted in {sc['delete_total_s']:.1f} s"
            + (f"; stopped: {sc['error']} (fd limit {sc['nofile_limit']})" if "error" in sc else "") + ".")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int)
    ap.add_argument("--scale", type=int)
    ap.add_argument("--scale-ns", type=int, default=1,
                    help="namespaces the scale run's taps are spread over (default 1; = --scale: one per tap)")
    ap.add_argument("--no-speed", action="store_true", help="the scale run only")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/control_plane.py: run as root")
    n = a.n or (5 if a.quick else 100)
    m = a.scale if a.scale is not None else (64 if a.quick else 8192)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vtap-cli"], cwd=ROOT, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [] if a.no_speed else speed(n, tmp)
        sc = scale(m, tmp, max(1, a.scale_ns)) if m else None
    session = time.strftime("%Y%m%dT%H%M%S")
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "out", f"control-plane-{session}.json")
    with open(path, "w") as f:
        json.dump({"session": session, "speed": rows, "scale": sc}, f, indent=1)
    print(table(rows, sc), end="")
    print(f"(raw: {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
