#!/usr/bin/env python3
"""The daemon's CPU when nothing moves: N interfaces, cross-connected in
pairs, no traffic (issue #18: <= 1 % of a core with 100 interfaces).

    sudo bench/idle.py [--n 100] [--secs 10] [--window-us US]

Starts its own daemon on a private socket, creates N taps (N/2 namespaces
of this run, two taps each, cross-connected, addresses 198.18.0.0/24 only),
lets one ping cross each pair so that every worker has moved frames (and
its poll window has opened and closed), waits 2 s, then reads the daemon's
CPU time (utime + stime of /proc/PID/stat) over --secs seconds. Prints one
JSON line and removes everything, also on failure.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VTAP = os.path.join(ROOT, "target", "release", "vtap")
CLK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--window-us", type=int, help="[forwarding] poll_window_us (default: the daemon's)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/idle.py: run as root")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vtap-cli"], cwd=ROOT, check=True)
    tmp = tempfile.mkdtemp(prefix="vtap-idle-")
    tag = f"vti{os.getpid()}"
    nss = [f"{tag}-{i}" for i in range(a.n // 2)]
    daemon = None
    try:
        sock = os.path.join(tmp, "vtap.sock")
        args = [VTAP, "--socket", sock, "daemon"]
        if a.window_us is not None:
            conf = os.path.join(tmp, "vtap.toml")
            with open(conf, "w") as f:
                f.write(f"[forwarding]\npoll_window_us = {a.window_us}\n")
            args += ["--config", conf]
        daemon = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        env = dict(os.environ, VTAP_SOCKET=sock)
        vtap = lambda *x: subprocess.run([VTAP, *x], env=env, check=True, capture_output=True,
                                         text=True).stdout.strip()
        for ns in nss:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            names = [vtap("create", "--host-ns", ns, "--host-if-name", f"i{k}",
                          "--host-ip4-addr", f"198.18.0.{k + 1}/24") for k in range(2)]
            vtap("xconnect", *names)
        # Two taps of one namespace on one subnet: a ping from one address
        # to the other stays local; force it out of i0 to cross vtap.
        for ns in nss:
            subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", "-q", "-I", "i0",
                            "198.18.0.99"], capture_output=True)
        time.sleep(2)
        t0, c0 = time.time(), cpu_ticks(daemon.pid)
        time.sleep(a.secs)
        t1, c1 = time.time(), cpu_ticks(daemon.pid)
        pct = 100.0 * (c1 - c0) / CLK / (t1 - t0)
        print(json.dumps({"interfaces": 2 * len(nss), "xconnects": len(nss), "secs": round(t1 - t0, 2),
                          "cpu_ticks": c1 - c0, "cpu_pct_of_a_core": round(pct, 3),
                          "poll_window_us": a.window_us}))
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait(10)
        for ns in nss:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
