#!/usr/bin/env bash
# run-in-vm.sh - run one Linux x86_64 program as root inside a throw-away QEMU
# guest that boots a stock Debian kernel with tun + vhost_net loaded.
#
# vtap's copy of the project's VM harness: tests/vm/run.sh uses it to run the
# test binaries that need the kernel's vhost-net (this project's CI machines
# have none). Cache: ~/.cache/vtap-vm.
#
# Usage: run-in-vm.sh <program> [args...]
#
# The program may be static (gcc -static, Rust +crt-static, musl) or
# dynamically linked (its `ldd` libraries and loader are copied in).
# The script exits with the program's exit status (parsed from the guest's
# "VM-EXIT-STATUS=N" line on the serial console), or 125 if the VM never
# reported one (boot failure, timeout, kernel panic).
#
# Rust: works as a cargo target runner, one VM per test binary:
#   CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=/path/run-in-vm.sh cargo test
# (plain glibc builds work; RUSTFLAGS="-C target-feature=+crt-static" with
# --target x86_64-unknown-linux-gnu gives a static-pie binary.)
# Several programs in one boot: pass a /bin/sh script and the binaries it
# runs via VM_FILES (they land in /test, which is on PATH).
#
# Environment:
#   VM_CACHE        cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/vtap-vm)
#   VM_KERNEL_PKG   Debian kernel package (default linux-image-cloud-amd64;
#                   linux-image-amd64 also works)
#   VM_MODULES      modules to load, deps resolved (default "tun vhost_net veth bridge")
#   VM_MEM          guest memory (default 512M)
#   VM_SMP          guest vCPUs (default 2)
#   VM_ACCEL        tcg (default) or kvm (kvm does NOT work on the PVM-only
#                   /dev/kvm of this project's Firecracker-style machines)
#   VM_TIMEOUT      seconds before the VM is killed (default 300)
#   VM_ENV          "K=V K2=V2" exported to the program (no spaces in values)
#   VM_FILES        extra host files copied into the guest's /test/ (space separated)
#   VM_VERBOSE=1    show kernel boot messages and qemu command line
#   VM_KEEP=1       keep the per-run staging dir (path printed)
#   VM_LOG          also write the console log to this file
set -euo pipefail

HARNESS_VERSION=4
die() { echo "run-in-vm: $*" >&2; exit 125; }
log() { [ "${VM_VERBOSE:-0}" = 1 ] && echo "run-in-vm: $*" >&2 || true; }

[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 125; }
PROG=$1; shift
[ -f "$PROG" ] && [ -x "$PROG" ] || die "not an executable file: $PROG"

CACHE=${VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vtap-vm}
KPKG=${VM_KERNEL_PKG:-linux-image-cloud-amd64}
MODULES=${VM_MODULES:-tun vhost_net veth bridge}
MEM=${VM_MEM:-512M}
SMP=${VM_SMP:-2}
ACCEL=${VM_ACCEL:-tcg}
TIMEOUT=${VM_TIMEOUT:-300}
mkdir -p "$CACHE"

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

# ------------------------------------------------------------ host tools
apt_ready() {
	# apt lists present and the kernel package known?
	apt-cache show "$KPKG" >/dev/null 2>&1
}
APTLOG="$CACHE/apt.log"
need_apt_update() {
	apt_ready && return 0
	echo "run-in-vm: apt-get update" >&2
	$SUDO apt-get update -q >>"$APTLOG" 2>&1 || { tail -20 "$APTLOG" >&2; die "apt-get update failed"; }
}
if ! command -v qemu-system-x86_64 >/dev/null; then
	need_apt_update
	echo "run-in-vm: installing qemu-system-x86 (log: $APTLOG)" >&2
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		qemu-system-x86 >>"$APTLOG" 2>&1 || { tail -20 "$APTLOG" >&2; die "cannot install qemu-system-x86"; }
fi
for t in dpkg-deb gzip flock timeout; do
	command -v $t >/dev/null || die "missing host tool: $t"
done

# ------------------------------------------------------------ base image
# vmlinuz + base.cpio.gz (busybox, modules, /init), built once per
# (kernel package, module list, harness version), under a lock.
exec 9>"$CACHE/.lock"
flock 9

KEY=$(printf '%s|%s|%s' "$KPKG" "$MODULES" "$HARNESS_VERSION" | md5sum | cut -c1-12)
BASE="$CACHE/base-$KEY"
if [ ! -f "$BASE/.done" ]; then
	echo "run-in-vm: building kernel + base initramfs in $BASE (one-time)" >&2
	need_apt_update
	rm -rf "$BASE"; mkdir -p "$BASE/debs" "$BASE/kroot" "$BASE/bbroot" "$BASE/root"
	# resolve the meta package to the versioned image package
	REAL=$(apt-cache depends "$KPKG" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[ -n "$REAL" ] || REAL=$KPKG
	(cd "$BASE/debs" && apt-get download -q -o APT::Sandbox::User=root "$REAL" busybox-static \
		>>"$APTLOG" 2>&1) || { tail -20 "$APTLOG" >&2; die "apt-get download $REAL busybox-static failed"; }
	dpkg-deb -x "$BASE"/debs/linux-image-*.deb "$BASE/kroot"
	dpkg-deb -x "$BASE"/debs/busybox-static_*.deb "$BASE/bbroot"
	VMLINUZ=$(ls "$BASE"/kroot/boot/vmlinuz-* | head -1)
	KVER=${VMLINUZ##*/vmlinuz-}
	cp "$VMLINUZ" "$BASE/vmlinuz"
	cp "$BASE/kroot/boot/config-$KVER" "$BASE/config"
	BB="$BASE/bbroot/bin/busybox"
	[ -x "$BB" ] || die "busybox-static did not unpack"

	R="$BASE/root"
	mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,test,lib/modules/vm}
	cp "$BB" "$R/bin/busybox"
	# initial console for the kernel to open (only possible as root; /init
	# re-opens /dev/console from devtmpfs anyway)
	if [ "$(id -u)" = 0 ]; then
		mknod -m 600 "$R/dev/console" c 5 1
		mknod -m 666 "$R/dev/null" c 1 3
	fi

	# modules: index by name, resolve depends= from .modinfo, load in dep order
	declare -A MODPATH=() SEEN=()
	while IFS= read -r f; do
		n=${f##*/}; n=${n%%.ko*}; n=${n//-/_}; MODPATH[$n]=$f
	done < <(find "$BASE/kroot/lib/modules/$KVER" -name '*.ko*')
	ORDER=()
	modfile() { # copy (decompressing) a module into the image as <name>.ko
		local src=$1 dst="$R/lib/modules/vm/$2.ko"
		case "$src" in
		*.ko) cp "$src" "$dst" ;;
		*.ko.xz) xz -dc "$src" >"$dst" ;;
		*.ko.zst) zstd -qdc "$src" >"$dst" ;;
		*.ko.gz) gzip -dc "$src" >"$dst" ;;
		*) die "unknown module format $src" ;;
		esac
	}
	add_mod() {
		local m=${1//-/_} d deps
		[ -n "${SEEN[$m]:-}" ] && return 0
		SEEN[$m]=1
		if [ -z "${MODPATH[$m]:-}" ]; then
			# built into the kernel? (modules.builtin lists kernel/.../name.ko)
			sed 's#.*/##; s/\.ko.*//; s/-/_/g' "$BASE/kroot/lib/modules/$KVER/modules.builtin" |
				grep -qx "$m" && return 0
			die "module $m not found in $REAL"
		fi
		modfile "${MODPATH[$m]}" "$m"
		deps=$(tr '\0' '\n' <"$R/lib/modules/vm/$m.ko" | sed -n 's/^depends=//p' | head -1)
		for d in ${deps//,/ }; do add_mod "$d"; done
		ORDER+=("$m")
	}
	for m in $MODULES; do add_mod "$m"; done
	printf '%s\n' "${ORDER[@]}" >"$R/etc/vm-modules"

	cat >"$R/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
for m in $(cat /etc/vm-modules); do
	insmod /lib/modules/vm/$m.ko || echo "VM-HARNESS: insmod $m failed"
done
ip link set lo up
hostname vm
echo "VM-HARNESS: kernel $(uname -r); modules: $(cat /etc/vm-modules | tr '\n' ' ')"
[ -c /dev/vhost-net ] || echo "VM-HARNESS: WARNING: no /dev/vhost-net"
cd /test
/bin/sh /test/run.sh
rc=$?
printf '\nVM-EXIT-STATUS=%d\n' "$rc"
poweroff -f
EOF
	chmod 755 "$R/init"
	(cd "$R" && find . | "$BB" cpio -o -H newc 2>/dev/null | gzip -6 >"$BASE/base.cpio.gz") ||
		die "cpio failed"
	cp "$BB" "$BASE/busybox"
	echo "$REAL $KVER" >"$BASE/kernel-version"
	rm -rf "$BASE/kroot" "$BASE/bbroot" "$BASE/root" "$BASE/debs"
	touch "$BASE/.done"
	echo "run-in-vm: base ready: $(cat "$BASE/kernel-version"), modules: ${ORDER[*]}" >&2
fi
flock -u 9
exec 9>&-

# ------------------------------------------------------------ per-run cpio
RUN=$(mktemp -d "${TMPDIR:-/tmp}/run-in-vm.XXXXXX")
cleanup() { [ "${VM_KEEP:-0}" = 1 ] && echo "run-in-vm: kept $RUN" >&2 || rm -rf "$RUN"; }
trap cleanup EXIT
S="$RUN/root"; mkdir -p "$S/test"
NAME=$(basename "$PROG")
cp -L "$PROG" "$S/test/$NAME"; chmod 755 "$S/test/$NAME"
for f in ${VM_FILES:-}; do cp -L "$f" "$S/test/"; done

# dynamic executables: copy loader + libraries from `ldd` to the same paths
if LDD=$(ldd "$PROG" 2>/dev/null) && ! grep -q 'statically linked' <<<"$LDD"; then
	if grep -q 'not found' <<<"$LDD"; then
		die "$PROG: unresolved shared libraries: $(grep 'not found' <<<"$LDD" | xargs)"
	fi
	while read -r lib; do
		[ -n "$lib" ] || continue
		mkdir -p "$S$(dirname "$lib")"
		cp -L "$lib" "$S$lib"
	done < <(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i}' <<<"$LDD" | sort -u)
	log "copied shared libraries: $(cd "$S" && find . -name '*.so*' | tr '\n' ' ')"
fi

q() { local s=${1//\'/\'\\\'\'}; printf "'%s'" "$s"; }
{
	echo "export PATH=/test:/bin:/sbin:/usr/bin:/usr/sbin HOME=/tmp"
	for kv in ${VM_ENV:-}; do echo "export $(q "$kv")"; done
	printf 'exec /test/%s' "$(q "$NAME")"
	for a in "$@"; do printf ' %s' "$(q "$a")"; done
	echo
} >"$S/test/run.sh"

(cd "$S" && find . | "$BASE/busybox" cpio -o -H newc 2>/dev/null | gzip -1 >"$RUN/run.cpio.gz")
cat "$BASE/base.cpio.gz" "$RUN/run.cpio.gz" >"$RUN/initrd"

# ------------------------------------------------------------ boot
APPEND="console=ttyS0 panic=-1 oops=panic rdinit=/init mitigations=off tsc=reliable"
[ "${VM_VERBOSE:-0}" = 1 ] || APPEND="$APPEND quiet loglevel=1"
case "$ACCEL" in
kvm) ACCEL_ARGS=(-accel kvm -cpu host) ;;
tcg) ACCEL_ARGS=(-accel tcg,thread=multi -cpu max) ;;
*) die "VM_ACCEL must be tcg or kvm" ;;
esac
QEMU=(qemu-system-x86_64 -machine q35 "${ACCEL_ARGS[@]}" -m "$MEM" -smp "$SMP"
	-nodefaults -no-user-config -display none -nic none -no-reboot
	-serial stdio -monitor none
	-kernel "$BASE/vmlinuz" -initrd "$RUN/initrd" -append "$APPEND")
log "${QEMU[*]}"

CONSOLE="$RUN/console.log"
set +e
T0=$(date +%s.%N)
timeout -k 5 "$TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 | tr -d '\r' | tee "$CONSOLE"
QRC=${PIPESTATUS[0]}
T1=$(date +%s.%N)
set -e
[ -n "${VM_LOG:-}" ] && cp "$CONSOLE" "$VM_LOG"
STATUS=$(sed -n 's/^VM-EXIT-STATUS=\([0-9]*\).*/\1/p' "$CONSOLE" | tail -1)
if [ -z "$STATUS" ]; then
	[ "$QRC" = 124 ] && die "VM timed out after ${TIMEOUT}s (no VM-EXIT-STATUS line)"
	die "VM ended (qemu rc=$QRC) without a VM-EXIT-STATUS line"
fi
echo "run-in-vm: exit status $STATUS (qemu ran $(awk -v a="$T0" -v b="$T1" 'BEGIN{printf "%.1f", b-a}')s)" >&2
exit "$STATUS"
