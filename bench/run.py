#!/usr/bin/env python3
"""vtap against real peers, side by side, in one run on one machine.

    sudo bench/run.py [--quick] [--dur S] [--reps N] [PEER ...]

Topology (per peer): two namespaces of this run, A (198.18.0.1/24,
2001:db8::1/64) and B (198.18.0.2/24, 2001:db8::2/64), joined by the peer:

    veth          kernel veth pair between A and B (the limit for this path)
    vtap          vtap daemon, two taps, cross-connect; gso + gro-coalesce;
                  backend auto (vhost-net where it exists, else direct: the
                  forwarder reads and writes the tap fds itself)
    vtap-poll     the same with rx-mode polling (the worker never sleeps)
    vtap-gso      the same with gso only (super-frames pass through)
    vtap-none     the same without offloads (the kernel segments)
    vtap-rings    gso + gro-coalesce on virtio rings served by vtap's
                  userspace backend (what vhost-net would do, in a thread)
    offload       C forwarder: IFF_VNET_HDR + TSO pass-through, poll loop
                  (the practical limit of a TAP forwarder without vhost-net)
    offload-t     the same C forwarder with a thread per direction
                  (`offload -t`: blocking read -> write)
    vtap-w2       `vtap` with two forwarding workers ([forwarding]
                  workers = 2, split_directions = true): a cross-connect's
                  directions on one each
    vtap-vhost    `vtap` on the kernel's vhost-net (--backend vhost-net):
                  skipped, with the reason, where /dev/vhost-net is absent
    vtap-uring    `vtap` on the io-uring backend (--backend io-uring): the
                  direct engine with 32 reads or writes per io_uring_enter
    vtap-mq2      `vtap` with two queue pairs per tap (--num-rx-queues 2
                  --num-tx-queues 2) and two workers: queue pair 0 on
                  worker 0, pair 1 on worker 1 (placed by load,
                  consistent-qp); the kernel spreads flows over the queues
    naive         C forwarder: one read()/write() per frame, no vnet header
    tunrs-tap     the tun-rs crate with offload(true), raw pass-through
    dpdk          dpdk-testpmd, two net_tap vdevs, io forwarding; no TSO/GSO
                  (net_tap offers testpmd's io mode none: the kernel segments),
                  --no-huge -m 512, lcores 0-1 (main + one forwarding core,
                  i.e. both CPUs of this machine), 32768 mbufs

Uplink path (issue #15): pod namespace A -> forwarder -> a veth pair
standing in for the NIC (IF_U in this namespace, IF_B in B, the "LAN"):

    uplink-bridge  the kernel: A's veth and IF_U in a Linux bridge
    vtap-uplink    vtap: a tap in A (gso + gro-coalesce) cross-connected to
                   `vtap host-interface create IF_U` (AF_PACKET)
    vtap-uplink-xdp  the same with `--mode af-xdp` (vtap's XDP program and
                   an XDP socket on IF_U, copy mode: veth has no zero-copy);
                   B's side has tx checksum off, as for dpdk-uplink
    dpdk-uplink-xdp  dpdk-testpmd, net_tap (A) + net_af_xdp (IF_U), io
                   forwarding; B's side has tx checksum off
    dpdk-uplink    dpdk-testpmd, net_tap (A) + net_af_packet (IF_U), io
                   forwarding, same EAL settings as `dpdk`; B's side has tx
                   checksum (and so TSO) off: net_af_packet has no
                   virtio-net header, so it needs finished frames, as a
                   real LAN delivers them

Uplink-to-uplink path (issue #15, the two modes against each other): A's
veth IF_A with its peer IF_V here, B's veth IF_B with its peer IF_U here:
two "NICs", and a forwarder between IF_V and IF_U. Frames enter and leave
the forwarder through uplinks only, so the uplink mode is all that differs:

    uu-bridge      the kernel: IF_V and IF_U in a Linux bridge
    vtap-uu        vtap: host-interface IF_V and IF_U (af-packet), cross-connected
    vtap-uu-xdp    the same, both `--mode af-xdp`; A's and B's veths have tx
                   checksum off (an XDP socket takes finished frames only)
    dpdk-uu-xdp    dpdk-testpmd, net_af_xdp on IF_V and IF_U, io forwarding,
                   same EAL settings as `dpdk`, finished frames as above

VXLAN path (issue #16, pod to pod across two nodes): A on node 1 and B on
node 2, each node an underlay namespace (U1 198.18.1.1, U2 198.18.1.2,
joined by a veth with GRO on at both ends, as a NIC has it), VNI 42, inner
MTU 1450 on A and B:

    vxlan-kernel      the kernel on both nodes: A's veth and a `vxlan`
                      device in a Linux bridge in U1, the same for B in U2
    vtap-vxlan        vtap on both nodes, a daemon each: a tap (gso +
                      gro-coalesce, host MTU 1450) and `vtap vxlan create`
                      in a bridge domain (the declared configuration);
                      the CPU column counts both daemons
    vtap-vxlan-linux  vtap on node 1 (as above), the kernel on node 2; U2's
                      underlay veth has tx checksum off (the kernel's inner
                      checksums finished before they cross, as on a wire)

For each: ping (200 requests 5 ms apart: the forwarder sleeps between
them in its default mode) and sockperf ping-pong latency (back to back: the
next request leaves when the reply is in), iperf3 TCP with 1, 4 and 8
streams, and the small-packet rate (trafgen sends 64-byte UDP frames into A's interface; what
arrives at B's interface is counted), with the forwarder's CPU time. The
repetitions are interleaved (repetition 1 of every peer, then 2, ...), every
test (latency too) is taken in every repetition, and the tables give medians
with min-max. The targets are judged on ONE declared vtap configuration,
`vtap` (the one the README recommends: gso + gro-coalesce, default rx mode);
the other vtap rows are extra information, never the claim. A target is met
only when vtap's min-max range clears the peer's; overlapping ranges are
"level". Output: bench/out/<session>/results.json (every
measurement), table.md (the markdown of docs/benchmarks.md), ratios
against the peers of the same run, and an SVG chart per test
(<session>-<test>.svg: every peer's median with its min-max).

--pin: every forwarder on CPU 1 and the traffic (iperf3, sockperf, ping,
trafgen, both ends) on CPU 0, the same for every peer: processes started
under `taskset -c 1` (vtap's daemon with all its threads; testpmd maps both
its lcores to CPU 1). Without it nothing is pinned. Pinned and unpinned are
two runs, each with its own ratios.

--quick (for CI): veth, vtap, offload, naive; 1 s per test, one repetition.
It checks that the harness works and asserts nothing about timings.

Addresses: 198.18.0.0/24 and 2001:db8::/64 only; everything this script
creates (namespaces, interfaces, processes) is removed on exit, also on
failure or Ctrl-C.
"""

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PEERS = os.path.join(BENCH, "peers")
VTAP = os.path.join(ROOT, "target", "release", "vtap")
TUNRS = os.path.join(PEERS, "tunrs-fwd", "target", "release", "tunrs-fwd")

ALL_PEERS = ["veth", "vtap", "vtap-poll", "vtap-gso", "vtap-none", "vtap-rings", "vtap-w2", "vtap-mq2", "vtap-uring",
             "vtap-vhost",
             "offload", "offload-t",
             "naive", "tunrs-tap",
             "dpdk", "uplink-bridge", "vtap-uplink", "vtap-uplink-xdp", "dpdk-uplink", "dpdk-uplink-xdp",
             "uu-bridge", "vtap-uu", "vtap-uu-xdp", "dpdk-uu-xdp",
             "vxlan-kernel", "vtap-vxlan", "vtap-vxlan-linux"]
# A/B of vtap itself: `vtap-base` is the `vtap` configuration run by another
# build (VTAP_BASE_BIN=path/to/vtap), e.g. the commit before a refactor, so
# that before and after are measured interleaved in one run. Never in the
# default peer list.
OPTIONAL_PEERS = ["vtap-base", "vtap-uplink-base", "vtap-vxlan-base"]
QUICK_PEERS = ["veth", "vtap", "offload", "naive", "uplink-bridge", "vtap-uplink", "vtap-uplink-xdp"]
USERSPACE_PEERS = ["offload", "offload-t", "naive", "tunrs-tap", "dpdk"]

A4, B4 = "198.18.0.1", "198.18.0.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
CLK = os.sysconf("SC_CLK_TCK")
TAG = f"vtb{os.getpid()}"
NS_A, NS_B = f"{TAG}-a", f"{TAG}-b"
IF_A, IF_B = f"{TAG}a", f"{TAG}b"
# The uplink path: IF_U (this namespace) is the "NIC", its veth peer IF_B in
# B the LAN; IF_P and BR are the kernel bridge peer's.
IF_U, IF_P, BR = f"{TAG}u", f"{TAG}p", f"{TAG}br"
# The uplink-to-uplink path: IF_V here is IF_A's peer (a second "NIC").
IF_V = f"{TAG}v"
# The VXLAN path: two underlay namespaces (nodes) joined by IF_N1 <-> IF_N2.
NS_U1, NS_U2 = f"{TAG}-u1", f"{TAG}-u2"
IF_N1, IF_N2 = f"{TAG}n1", f"{TAG}n2"
U1, U2 = "198.18.1.1", "198.18.1.2"
VNI = "42"
# --pin: the CPU the forwarders run on, and the one the traffic runs on.
PIN = {"fwd": None, "load": None}


def on_fwd_cpu(argv):
    """`argv` under `taskset` on the forwarders' CPU (when pinned)."""
    return ["taskset", "-c", str(PIN["fwd"]), *argv] if PIN["fwd"] is not None else list(argv)


def on_load_cpu(argv):
    """`argv` under `taskset` on the traffic's CPU (when pinned)."""
    return ["taskset", "-c", str(PIN["load"]), *argv] if PIN["load"] is not None else list(argv)


class Skip(Exception):
    """A peer this machine cannot run, and why (reported, not an error)."""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, text=True, capture_output=True, **kw)


def nsx(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


# ---------------------------------------------------------------- set-up


def ensure_packages(peers):
    want = {"iperf3": "iperf3", "trafgen": "netsniff-ng", "sockperf": "sockperf",
            "gcc": "gcc", "ethtool": "ethtool", "ping": "iputils-ping"}
    if any(p.startswith("dpdk") for p in peers):
        want["dpdk-testpmd"] = "dpdk-dev"
    missing = sorted({pkg for cmd, pkg in want.items() if shutil.which(cmd) is None})
    if missing:
        log(f"installing {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)


def build(peers):
    if any(p.startswith("vtap") for p in peers):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "vtap-cli"], check=True, cwd=ROOT)
    for name, extra in (("naive", []), ("offload", ["-pthread"])):
        src, out = os.path.join(PEERS, f"{name}.c"), os.path.join(PEERS, name)
        wanted = name in peers or (name == "offload" and "offload-t" in peers)
        if wanted and (not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src)):
            subprocess.run(["gcc", "-O2", "-Wall", *extra, "-o", out, src], check=True)
    if "tunrs-tap" in peers:
        subprocess.run(["cargo", "build", "--release", "-q"], check=True,
                       cwd=os.path.join(PEERS, "tunrs-fwd"))


# -------------------------------------------------------------- topology


class Run:
    """Processes and namespaces of this run, all removed by cleanup()."""

    def __init__(self, out):
        self.out = out
        self.procs = []
        self.fwd_pid = None
        self.vtap_sock = None

    def spawn(self, args, name, **kw):
        f_out = open(os.path.join(self.out, f"{name}.out"), "w")
        f_err = open(os.path.join(self.out, f"{name}.err"), "w")
        p = subprocess.Popen(args, stdout=f_out, stderr=f_err, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        self.fwd_pid = None

    def down(self):
        self.stop_all()
        for ns in (NS_A, NS_B, NS_U1, NS_U2):
            sh("ip", "netns", "del", ns, check=False)
        for ifn in (IF_A, IF_B, IF_U, IF_V, IF_P, BR):
            sh("ip", "link", "del", ifn, check=False)
        shutil.rmtree("/var/run/dpdk/vtbench", ignore_errors=True)
        # Each peer starts from nothing: a vtap daemon restores what the
        # state file beside its socket says (uplinks always), so the next
        # one must not find the last one's.
        for d in (self.out, os.path.join(self.out, "node2")):
            for f in ("vtap.state.json", "vtap.state.json.lock"):
                try:
                    os.unlink(os.path.join(d, f))
                except FileNotFoundError:
                    pass


def mkns():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def cfg_if(ns, ifn, v4, v6):
    sh("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", ifn)
    sh("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", ifn, "nodad")
    sh("ip", "-n", ns, "link", "set", ifn, "up")


def wait_for(pred, secs, what):
    end = time.time() + secs
    while time.time() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timeout: {what}")


def move_taps(only_a=False):
    """A forwarder created IF_A and IF_B (only IF_A on the uplink path) in
    this namespace: move and address them."""
    mine = (IF_A,) if only_a else (IF_A, IF_B)
    wait_for(lambda: all(sh("ip", "link", "show", i, check=False).returncode == 0 for i in mine),
             10, "forwarder taps")
    if not only_a:
        mkns()
    sh("ip", "link", "set", IF_A, "netns", NS_A)
    cfg_if(NS_A, IF_A, A4, A6)
    if not only_a:
        sh("ip", "link", "set", IF_B, "netns", NS_B)
        cfg_if(NS_B, IF_B, B4, B6)


def lan():
    """The uplink path's NIC and LAN: IF_U here, its peer IF_B in B."""
    mkns()
    sh("ip", "link", "add", IF_U, "type", "veth", "peer", "name", IF_B, "netns", NS_B)
    sh("ip", "link", "set", IF_U, "up")
    cfg_if(NS_B, IF_B, B4, B6)


def two_nics(finished_frames=False):
    """The uplink-to-uplink path: IF_A (in A) <-> IF_V here, IF_B (in B)
    <-> IF_U here. `finished_frames`: A's and B's veths checksum in software
    (tx off), as a wire delivers frames."""
    mkns()
    sh("ip", "link", "add", IF_U, "type", "veth", "peer", "name", IF_B, "netns", NS_B)
    sh("ip", "link", "add", IF_V, "type", "veth", "peer", "name", IF_A, "netns", NS_A)
    for i in (IF_U, IF_V):
        sh("ip", "link", "set", i, "up")
    cfg_if(NS_A, IF_A, A4, A6)
    cfg_if(NS_B, IF_B, B4, B6)
    if finished_frames:
        nsx(NS_A, "ethtool", "-K", IF_A, "tx", "off")
        nsx(NS_B, "ethtool", "-K", IF_B, "tx", "off")


def underlay(finished_on_node2=False):
    """The VXLAN path's two nodes: U1 and U2 joined by a veth; A and B."""
    mkns()
    for ns in (NS_U1, NS_U2):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", IF_N1, "netns", NS_U1, "type", "veth", "peer", "name", IF_N2, "netns", NS_U2)
    for ns, ifn, a in ((NS_U1, IF_N1, U1), (NS_U2, IF_N2, U2)):
        sh("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", ifn)
        sh("ip", "-n", ns, "link", "set", ifn, "up")
        # GRO on, as a NIC has it (a veth's is off by default): received
        # datagrams of a flow are merged before the socket or the vxlan
        # device sees them, for every peer alike.
        nsx(ns, "ethtool", "-K", ifn, "gro", "on")
    if finished_on_node2:
        nsx(NS_U2, "ethtool", "-K", IF_N2, "tx", "off")


def linux_node(ns_u, local, remote, pod_ns, pod_if, v4, v6):
    """A Linux VTEP in `ns_u`: vxlan + bridge + a veth to the pod (MTU 1450)."""
    vx, br, port = f"{TAG}x", f"{TAG}r", f"{TAG}q"
    nsx(ns_u, "ip", "link", "add", vx, "type", "vxlan", "id", VNI, "local", local, "remote", remote,
        "dstport", "4789")
    nsx(ns_u, "ip", "link", "add", br, "type", "bridge")
    nsx(ns_u, "ip", "link", "set", vx, "master", br, "up")
    nsx(ns_u, "ip", "link", "add", port, "mtu", "1450", "type", "veth", "peer", "name", pod_if,
        "mtu", "1450", "netns", pod_ns)
    nsx(ns_u, "ip", "link", "set", port, "master", br, "up")
    nsx(ns_u, "ip", "link", "set", br, "up")
    cfg_if(pod_ns, pod_if, v4, v6)


def vtap_node(run, peer, sock_dir, ns_u, local, remote, pod_ns, pod_if, v4, v6, name=None):
    """A vtap VTEP: a daemon on its own socket, a tap in the pod namespace
    (gso + gro-coalesce, host MTU 1450) and a tunnel, in one bridge domain."""
    vtap, env = vtap_daemon(run, peer, sock_dir=sock_dir, name=name)
    run_ = lambda *a: subprocess.run([vtap, *a], env=env, check=True, text=True,
                                     capture_output=True).stdout.strip()
    tap = run_("create", "--host-ns", pod_ns, "--host-if-name", pod_if, "--host-ip4-addr", f"{v4}/24",
               "--host-ip6-addr", f"{v6}/64", "--host-mtu-size", "1450", "--gso", "--gro-coalesce")
    tun = run_("vxlan", "create", "--src", local, "--dst", remote, "--vni", VNI, "--underlay-ns", ns_u)
    run_("bridge", "create", "bd")
    run_("bridge", "add", "bd", tap)
    run_("bridge", "add", "bd", tun)


def start_vxlan(run, peer):
    underlay(finished_on_node2=peer == "vtap-vxlan-linux")
    if peer == "vxlan-kernel":
        linux_node(NS_U1, U1, U2, NS_A, IF_A, A4, A6)
    else:
        vtap_node(run, peer, run.out, NS_U1, U1, U2, NS_A, IF_A, A4, A6)
    if peer in ("vtap-vxlan", "vtap-vxlan-base"):
        first = run.fwd_pid
        vtap_node(run, peer, os.path.join(run.out, "node2"), NS_U2, U2, U1, NS_B, IF_B, B4, B6,
                  name=f"{peer}-node2")
        run.fwd_pid = [first, run.fwd_pid]
    else:
        linux_node(NS_U2, U2, U1, NS_B, IF_B, B4, B6)


def wait_ready(run, name, pattern, secs=30):
    path = os.path.join(run.out, f"{name}.out")
    wait_for(lambda: os.path.exists(path) and re.search(pattern, open(path).read()), secs,
             f"{name}: {pattern!r}")


def start_peer(run, peer):
    if peer == "veth":
        mkns()
        sh("ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B, "netns", NS_B)
        cfg_if(NS_A, IF_A, A4, A6)
        cfg_if(NS_B, IF_B, B4, B6)
    elif peer == "uplink-bridge":
        lan()
        sh("ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_P)
        sh("ip", "link", "add", BR, "type", "bridge")
        for i in (IF_P, IF_U):
            sh("ip", "link", "set", i, "master", BR)
            sh("ip", "link", "set", i, "up")
        sh("ip", "link", "set", BR, "up")
        cfg_if(NS_A, IF_A, A4, A6)
    elif peer == "uu-bridge":
        two_nics()
        sh("ip", "link", "add", BR, "type", "bridge")
        for i in (IF_V, IF_U):
            sh("ip", "link", "set", i, "master", BR)
        sh("ip", "link", "set", BR, "up")
    elif peer == "dpdk-uu-xdp":
        # testpmd's net_af_xdp on both "NICs" (libxdp's default program,
        # copy mode on veth); finished frames, as for vtap-uu-xdp.
        two_nics(finished_frames=True)
        start_testpmd(run, peer, f"net_af_xdp1,iface={IF_U}", first_vdev=f"net_af_xdp0,iface={IF_V}")
    elif peer == "dpdk-uplink-xdp":
        lan()
        nsx(NS_B, "ethtool", "-K", IF_B, "tx", "off")
        start_testpmd(run, peer, f"net_af_xdp0,iface={IF_U}")
        move_taps(only_a=True)
    elif peer == "dpdk-uplink":
        lan()
        # net_af_packet reads without a virtio-net header: a checksum-partial
        # or GSO frame from the LAN's veth would reach it unfinished. A real
        # LAN delivers finished frames, so the LAN side finishes them here.
        nsx(NS_B, "ethtool", "-K", IF_B, "tx", "off")
        start_testpmd(run, peer, f"net_af_packet0,iface={IF_U}")
        move_taps(only_a=True)
    elif peer in ("vxlan-kernel", "vtap-vxlan", "vtap-vxlan-base", "vtap-vxlan-linux"):
        start_vxlan(run, peer)
    elif peer.startswith("vtap"):
        start_vtap(run, peer)
    elif peer in ("naive", "offload", "offload-t"):
        binary, flags = {"offload-t": ("offload", ["-t"])}.get(peer, (peer, []))
        p = run.spawn(on_fwd_cpu([os.path.join(PEERS, binary), *flags, IF_A, IF_B]), peer)
        run.fwd_pid = p.pid
        wait_ready(run, peer, "READY")
        move_taps()
    elif peer == "tunrs-tap":
        p = run.spawn(on_fwd_cpu([TUNRS, "tap", IF_A, IF_B]), peer)
        run.fwd_pid = p.pid
        wait_ready(run, peer, "READY")
        move_taps()
    elif peer == "dpdk":
        start_testpmd(run, peer, f"net_tap1,iface={IF_B}")
        move_taps()
    else:
        raise ValueError(f"unknown peer {peer}")
    # The path works end to end before anything is measured.
    wait_for(lambda: nsx(NS_A, "ping", "-c1", "-W1", "-q", B4, check=False).returncode == 0, 20,
             f"{peer}: {B4} reachable from A")


def start_testpmd(run, peer, second_vdev, first_vdev=None):
    """dpdk-testpmd forwarding (io mode) between `first_vdev` (a net_tap on
    IF_A by default) and `second_vdev`. testpmd ends with read(0) ("Press
    enter to exit"): stdin must never reach EOF. Its queues re-open the taps
    by name at port start, so they may only move once it is forwarding (the
    caller moves them)."""
    fifo = os.path.join(run.out, "testpmd.in")
    if not os.path.exists(fifo):
        os.mkfifo(fifo)
    stdin = os.open(fifo, os.O_RDWR)
    p = run.spawn(["stdbuf", "-oL", "dpdk-testpmd", "--no-huge", "-m", "512", "--no-pci",
                   "--no-shconf", "--file-prefix=vtbench", f"--vdev={first_vdev or f'net_tap0,iface={IF_A}'}",
                   f"--vdev={second_vdev}",
                   *(["--lcores", f"(0,1)@{PIN['fwd']}"] if PIN["fwd"] is not None else ["-l", "0-1"]),
                   "--", "--forward-mode=io",
                   "--auto-start", "--nb-cores=1", "--total-num-mbufs=32768"], peer, stdin=stdin)
    os.close(stdin)
    run.fwd_pid = p.pid
    wait_ready(run, peer, "Press enter to exit", 60)


def vtap_daemon(run, peer, config=None, sock_dir=None, name=None):
    """Starts a vtap daemon for `peer` (the `*-base` peers run VTAP_BASE_BIN,
    another build) with `config` as its TOML, if any; returns the binary and
    the environment that reaches it."""
    vtap = VTAP
    if peer.endswith("-base"):
        vtap = os.environ.get("VTAP_BASE_BIN", "")
        if not os.access(vtap, os.X_OK):
            raise RuntimeError(f"{peer}: set VTAP_BASE_BIN to another build's vtap binary")
    sock_dir = sock_dir or run.out
    os.makedirs(sock_dir, exist_ok=True)
    sock = os.path.join(sock_dir, "vtap.sock")
    daemon = [vtap, "--socket", sock, "daemon"]
    if config:
        conf = os.path.join(run.out, f"{peer}.toml")
        with open(conf, "w") as f:
            f.write(config)
        daemon += ["--config", conf]
    p = run.spawn(on_fwd_cpu(daemon), name or peer)
    run.fwd_pid = p.pid
    wait_for(lambda: os.path.exists(sock), 10, "vtap daemon socket")
    return vtap, dict(os.environ, VTAP_SOCKET=sock)


def start_vtap(run, peer):
    if peer in ("vtap-uplink", "vtap-uplink-base", "vtap-uplink-xdp"):
        return start_vtap_uplink(run, peer)
    if peer in ("vtap-uu", "vtap-uu-xdp"):
        return start_vtap_uu(run, peer)
    flags = {"vtap": ["--gso", "--gro-coalesce"], "vtap-base": ["--gso", "--gro-coalesce"],
             "vtap-poll": ["--gso", "--gro-coalesce"],
             "vtap-gso": ["--gso"], "vtap-none": [],
             "vtap-rings": ["--gso", "--gro-coalesce", "--backend", "userspace"],
             "vtap-w2": ["--gso", "--gro-coalesce"],
             "vtap-mq2": ["--gso", "--gro-coalesce", "--num-rx-queues", "2", "--num-tx-queues", "2"],
             "vtap-uring": ["--gso", "--gro-coalesce", "--backend", "io-uring"],
             "vtap-vhost": ["--gso", "--gro-coalesce", "--backend", "vhost-net"]}[peer]
    if peer == "vtap-vhost" and not os.path.exists("/dev/vhost-net"):
        raise Skip("no /dev/vhost-net on this machine (the kernel's vhost-net is not loaded or not built)")
    config = {"vtap-w2": "[forwarding]\nworkers = 2\nsplit_directions = true\n",
              "vtap-mq2": "[forwarding]\nworkers = 2\n"}.get(peer)
    vtap, env = vtap_daemon(run, peer, config)
    mkns()
    names = []
    for ns, ifn, v4, v6 in ((NS_A, IF_A, A4, A6), (NS_B, IF_B, B4, B6)):
        r = subprocess.run([vtap, "create", "--host-ns", ns, "--host-if-name", ifn,
                            "--host-ip4-addr", f"{v4}/24", "--host-ip6-addr", f"{v6}/64", *flags],
                           env=env, check=True, text=True, capture_output=True)
        names.append(r.stdout.strip())
    subprocess.run([vtap, "xconnect", *names], env=env, check=True, capture_output=True)
    if peer == "vtap-poll":
        for n in names:
            subprocess.run([VTAP, "set", n, "rx-mode", "polling"], env=env, check=True, capture_output=True)


def start_vtap_uplink(run, peer):
    """The declared uplink configuration: a tap in A with gso +
    gro-coalesce, cross-connected to an AF_PACKET uplink on IF_U (default
    rx mode, one queue). `vtap-uplink-base` runs it on VTAP_BASE_BIN;
    `vtap-uplink-xdp` with `--mode af-xdp`."""
    vtap, env = vtap_daemon(run, peer)
    lan()
    mode = []
    if peer == "vtap-uplink-xdp":
        # An XDP socket gets frames without checksum metadata: the LAN side
        # finishes them, as a wire would (see dpdk-uplink).
        nsx(NS_B, "ethtool", "-K", IF_B, "tx", "off")
        mode = ["--mode", "af-xdp"]
    tap = subprocess.run([vtap, "create", "--host-ns", NS_A, "--host-if-name", IF_A, "--host-ip4-addr",
                          f"{A4}/24", "--host-ip6-addr", f"{A6}/64", "--gso", "--gro-coalesce"],
                         env=env, check=True, text=True, capture_output=True).stdout.strip()
    up = subprocess.run([vtap, "host-interface", "create", IF_U, *mode], env=env, check=True, text=True,
                        capture_output=True).stdout.strip()
    subprocess.run([vtap, "xconnect", tap, up], env=env, check=True, capture_output=True)


def start_vtap_uu(run, peer):
    """Two uplinks cross-connected (default rx mode, one queue each):
    af-packet for `vtap-uu`, af-xdp for `vtap-uu-xdp`."""
    vtap, env = vtap_daemon(run, peer)
    xdp = peer == "vtap-uu-xdp"
    two_nics(finished_frames=xdp)
    mode = ["--mode", "af-xdp"] if xdp else []
    names = [subprocess.run([vtap, "host-interface", "create", i, *mode], env=env, check=True, text=True,
                            capture_output=True).stdout.strip() for i in (IF_V, IF_U)]
    subprocess.run([vtap, "xconnect", *names], env=env, check=True, capture_output=True)


# ---------------------------------------------------------- measurements


def proc_ticks(pid):
    if isinstance(pid, list):
        return sum(proc_ticks(p) for p in pid)
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return 0


def sys_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v)
    return total - v[3] - v[4], total


class Cpu:
    """The forwarder's and the machine's CPU over a measurement."""

    def __init__(self, pid):
        self.pid = pid
        self.f0, self.s0, self.t0 = proc_ticks(pid), sys_ticks(), time.time()

    def result(self):
        f1, s1, t1 = proc_ticks(self.pid), sys_ticks(), time.time()
        r = {"sys_cpu_pct": round((s1[0] - self.s0[0]) / max(1, s1[1] - self.s0[1]) * 100 * os.cpu_count(), 1)}
        if self.pid:
            r["fwd_cpu_pct"] = round((f1 - self.f0) / CLK / (t1 - self.t0) * 100, 1)
        return r


def stat(ns, ifn, name):
    r = nsx(ns, "cat", f"/sys/class/net/{ifn}/statistics/{name}", check=False)
    return int(r.stdout.strip() or 0)


def iperf(run, peer, streams, dur):
    srv = run.spawn(["ip", "netns", "exec", NS_B, *on_load_cpu(["iperf3", "-s", "-1", "-B", B4])],
                    f"{peer}-iperf3-s")
    wait_for(lambda: "5201" in nsx(NS_B, "ss", "-Hltn", check=False).stdout, 5, "iperf3 server")
    cpu = Cpu(run.fwd_pid)
    r = nsx(NS_A, *on_load_cpu(["iperf3", "-c", B4, "-t", str(dur), "-P", str(streams), "-J"]), check=False,
            timeout=dur + 30)
    res = cpu.result()
    srv.wait(10)
    try:
        end = json.loads(r.stdout)["end"]
        res["gbps"] = round(end["sum_received"]["bits_per_second"] / 1e9, 3)
        res["retrans"] = end["sum_sent"].get("retransmits")
    except (ValueError, KeyError) as e:
        res["error"] = f"iperf3: {e}: {r.stdout[-300:]} {r.stderr[-300:]}"
    if "gbps" in res and res.get("fwd_cpu_pct") and res["gbps"] > 0:
        res["cpu_pct_per_gbps"] = round(res["fwd_cpu_pct"] / res["gbps"], 2)
    return res


def mac_of(ns, ifn):
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", "dev", ifn).stdout)[0]["address"]


def trafgen_conf(path, dst, src):
    """One 64-byte UDP frame (60 + FCS) A -> B, port 9, checksums right."""
    b = lambda mac: ", ".join(f"0x{x}" for x in mac.split(":"))
    with open(path, "w") as f:
        f.write(f"""{{
  {b(dst)}, {b(src)}, c16(0x0800),
  0x45, 0x00, c16(46), c16(0), c16(0x4000), 64, 17, csumip(14, 33),
  198, 18, 0, 1, 198, 18, 0, 2,
  c16(9), c16(9), c16(26), c16(0),
  fill(0x00, 18),
}}
""")


def small_packets(run, peer, dur):
    conf = os.path.join(run.out, "trafgen.cfg")
    trafgen_conf(conf, mac_of(NS_B, IF_B), mac_of(NS_A, IF_A))
    counters = lambda: (stat(NS_B, IF_B, "rx_packets"), stat(NS_B, IF_B, "rx_bytes"),
                        stat(NS_A, IF_A, "tx_packets") + stat(NS_A, IF_A, "tx_dropped"))
    before = counters()
    cpu = Cpu(run.fwd_pid)
    t0 = time.time()
    # --no-sock-mem: leave the machine's socket memory sysctls alone.
    # A process of the run (so that a run stopped half-way stops it too: a
    # trafgen left behind spins on its interface's ghost for ever).
    gen = run.spawn(["ip", "netns", "exec", NS_A, *on_load_cpu(["timeout", "-s", "INT", str(dur), "trafgen", "--dev",
                                                                IF_A, "--conf", conf, "--cpus", "1", "--no-sock-mem"])],
                    f"{peer}-trafgen")
    try:
        gen.wait(dur + 20)
    except subprocess.TimeoutExpired:
        gen.kill()
        gen.wait()
    time.sleep(0.2)  # what is still in flight arrives
    secs = time.time() - t0
    res = cpu.result()
    frames, nbytes, offered = (b - a for a, b in zip(before, counters()))
    # A forwarder that coalesces (vtap's gro-coalesce toward a USO tap) hands
    # B fewer, larger frames: each is 42 bytes of headers plus 18 bytes per
    # datagram, and so is every uncoalesced 60-byte frame. Count datagrams.
    datagrams = (nbytes - 42 * frames) // 18
    res.update(rx_kpps=round(datagrams / secs / 1e3, 1), offered_kpps=round(offered / secs / 1e3, 1),
               frames_kpps=round(frames / secs / 1e3, 1))
    return res


def ping(run, n):
    # 5 ms apart: long enough that a forwarder in its default mode has
    # gone to sleep before the next request (its poll window is 50 µs).
    r = nsx(NS_A, *on_load_cpu(["ping", "-c", str(n), "-i", "0.005", "-W", "1", B4]), check=False)
    t = sorted(float(x) for x in re.findall(r"time=([0-9.]+) ms", r.stdout))
    if not t:
        return {"error": "ping: no replies"}
    q = lambda p: t[min(len(t) - 1, max(0, round(p / 100 * len(t) + 0.5) - 1))]
    return {"n": len(t), "p50_us": round(q(50) * 1e3, 1), "p99_us": round(q(99) * 1e3, 1),
            "avg_us": round(sum(t) / len(t) * 1e3, 1)}


def sockperf(run, peer, dur):
    srv = run.spawn(["ip", "netns", "exec", NS_B, *on_load_cpu(["sockperf", "server", "-i", B4, "-p", "11111"])],
                    f"{peer}-sockperf-s")
    time.sleep(0.5)
    r = nsx(NS_A, *on_load_cpu(["sockperf", "ping-pong", "-i", B4, "-p", "11111", "-t", str(dur), "-m", "64"]),
            check=False, timeout=dur + 30)
    srv.terminate()
    srv.wait(5)
    out = r.stdout + r.stderr
    pct = {float(p): float(v) for p, v in re.findall(r"percentile\s+([0-9.]+)\s*=\s*([0-9.]+)", out)}
    if 50.0 not in pct:
        return {"error": f"sockperf: {out[-300:]}"}
    # sockperf reports half the round trip; the table shows the round trip.
    return {"rtt_p50_us": round(2 * pct[50.0], 1), "rtt_p99_us": round(2 * pct.get(99.0, 0), 1)}


def features(peer):
    r = nsx(NS_A, "ethtool", "-k", IF_A, check=False).stdout
    keys = ("tx-checksumming", "tcp-segmentation-offload", "tx-udp-segmentation", "generic-receive-offload")
    return {k: v.strip() for k, v in re.findall(r"^([a-z-]+): (.*)$", r, re.M) if k in keys}


def measure(run, peer, args, emit, rep):
    """One repetition of every test on one peer (latency included: it is
    taken in every repetition, like the rest)."""
    want = lambda t: not args.only or t in args.only
    if rep == 0:
        emit(peer, "features", features(peer))
    if want("ping"):
        emit(peer, "ping", ping(run, 40 if args.quick else 200), rep)
    if want("sockperf") and shutil.which("sockperf"):
        emit(peer, "sockperf", sockperf(run, peer, args.dur), rep)
    if want("tcp1"):
        emit(peer, "tcp1", iperf(run, peer, 1, args.dur), rep)
    if want("tcp4"):
        emit(peer, "tcp4", iperf(run, peer, 4, args.dur), rep)
    if want("tcp8"):
        emit(peer, "tcp8", iperf(run, peer, 8, args.dur), rep)
    if want("small"):
        emit(peer, "small", small_packets(run, peer, args.dur), rep)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("peers", nargs="*")
    ap.add_argument("--quick", action="store_true", help="CI: harness check, 1 s per test")
    ap.add_argument("--dur", type=int, help="seconds per test (default 10; quick 1)")
    ap.add_argument("--reps", type=int, help="repetitions (default 3; quick 1)")
    ap.add_argument("--out", help="output directory (default bench/out/<session>)")
    ap.add_argument("--pin", action="store_true",
                    help="forwarders on CPU 1, traffic on CPU 0 (every peer alike)")
    ap.add_argument("--only", action="append", choices=["ping", "sockperf", "tcp1", "tcp4", "tcp8", "small"],
                    help="run only this test (repeatable; A/B bisection)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/run.py: run as root (namespaces, taps)")
    peers = args.peers or (QUICK_PEERS if args.quick else ALL_PEERS)
    for p in peers:
        if p not in ALL_PEERS + OPTIONAL_PEERS:
            sys.exit(f"bench/run.py: unknown peer '{p}' (known: {', '.join(ALL_PEERS)})")
    if args.pin:
        if os.cpu_count() < 2:
            sys.exit("bench/run.py: --pin needs two CPUs")
        PIN.update(fwd=1, load=0)
    args.dur = args.dur or (1 if args.quick else 10)
    args.reps = args.reps or (1 if args.quick else 3)
    session = time.strftime("%Y%m%dT%H%M%S")
    out = args.out or os.path.join(BENCH, "out", session)
    os.makedirs(out, exist_ok=True)
    ensure_packages(peers)
    build(peers)

    run = Run(out)
    atexit.register(run.down)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []

    def emit(peer, test, r, rep=0):
        r = {"peer": peer, "test": test, "rep": rep, **r}
        results.append(r)
        log(json.dumps(r))

    # Interleaved: repetition 1 of every peer, then repetition 2, ... so
    # that drift (thermal, noisy neighbours) is shared by all peers instead
    # of landing on whoever ran last.
    for rep in range(args.reps):
        for peer in peers:
            log(f"=== {peer} (repetition {rep + 1} of {args.reps}) ===")
            try:
                start_peer(run, peer)
                measure(run, peer, args, emit, rep)
            except Skip as e:
                log(f"{peer}: skipped: {e}")
                emit(peer, "setup", {"skipped": str(e)}, rep)
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                log(f"{peer}: {e}")
                emit(peer, "setup", {"error": str(e)}, rep)
            finally:
                run.down()

    machine = machine_facts()
    doc = {"session": session, "machine": machine, "quick": args.quick, "dur": args.dur, "pinned": args.pin,
           "reps": args.reps, "results": results}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
    sys.path.insert(0, BENCH)
    import report  # noqa: E402  (beside this script)
    table = report.render(doc)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    # One SVG chart per test beside the table (docs/charts/ keeps the ones
    # docs/benchmarks.md shows).
    report.charts(doc, out)
    print(table)
    errors = [r for r in results if "error" in r]
    if errors:
        log(f"{len(errors)} measurement(s) failed: see {out}/results.json")
        sys.exit(1)


def machine_facts():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {"kernel": os.uname().release, "cpus": os.cpu_count(), "cpu": cpu, "mem_gib": mem,
            "vhost_net": os.path.exists("/dev/vhost-net")}


if __name__ == "__main__":
    main()
