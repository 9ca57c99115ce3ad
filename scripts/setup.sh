#!/usr/bin/env bash
# Installs what vtap's build and tests need on a fresh Debian/Ubuntu machine.
# Run as root. Idempotent.
set -euo pipefail

PKGS=(
	iproute2    # ip: the tests read the kernel's state back with `ip -j`
	ethtool     # ethtool -k: the tests check offloads as the kernel shows them
	iputils-ping # ping from the host side through the data path
	tcpdump     # reads the pcap files of vtap capture back in tests
	iperf3      # vtap demo measures TCP with it when installed
	tshark      # reads the pcap files back too (a second, independent reader)
	util-linux  # setpriv, unshare, mount: tests of missing privileges, /dev/net/tun, a full state file
	procps      # sysctl: the accounting test turns IPv6 off in its namespaces
	gcc         # some crates build C
	clang       # compiles the XDP program of af-xdp uplinks (crates/vtap/bpf) at build time
	linux-libc-dev # <linux/bpf.h>, which that program includes
	curl        # the tests read /metrics the way an operator would (curl --unix-socket)
	socat       # api-fuzz.sh: schemathesis speaks TCP, the daemon a Unix socket
	python3-venv # api-fuzz.sh installs schemathesis from PyPI into a venv
	containernetworking-plugins # host-local: the real IPAM plugin vtap-cni delegates to in its tests
	podman      # a real CNI runtime for vtap-cni's test (its CNI backend)
	runc        # podman's runtime here (crun refuses hybrid cgroups)
	busybox-static # the containers' root file system in that test (no registry)
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}" >&2
	# tshark asks whether non-root users may capture: answer "no" up front.
	echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The tun module: /dev/net/tun must exist.
if [ ! -c /dev/net/tun ]; then
	modprobe tun 2>/dev/null || true
fi
[ -c /dev/net/tun ] || { echo "setup: /dev/net/tun is missing and the tun module could not be loaded" >&2; exit 1; }
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
echo "setup: ok" >&2
