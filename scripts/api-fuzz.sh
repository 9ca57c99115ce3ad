#!/usr/bin/env bash
# Property-based fuzzing of the REST API against the committed OpenAPI spec
# (docs/openapi.json) with schemathesis: random valid and invalid requests
# for every operation; fails on any 5xx other than the documented 503
# (a kernel facility missing), on responses that break the spec, and on a
# daemon that dies.
#
#   sudo scripts/api-fuzz.sh [SECONDS]     (default 60)
#
# The daemon runs contained, so that what random requests create cannot touch
# this machine: its own network namespace (interfaces, addresses and routes
# land there), its own pid namespace (host-ns pid:N resolves there), an empty
# read-only /run/netns (host-ns NAME finds nothing), and a private mount
# namespace in which EVERY mount is read-only except this run's temporary
# directory: even a future route that took a path could not write outside it.
# The script proves the jail before fuzzing (a write outside must fail with
# EROFS, one inside must succeed). schemathesis reaches the Unix socket
# through socat on 127.0.0.1.
#
# The capture route (POST /v1/taps/{iface}/capture) answers with a pcap
# stream that lasts until frames arrive or the capture is stopped; it is
# left out of the random run (schemathesis would wait on it forever) and
# covered by crates/vtapd/tests/api.rs instead.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
venv=${VTAP_VENV:-$HOME/.cache/vtap/schemathesis}
if [ ! -x "$venv/bin/schemathesis" ]; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q schemathesis
fi
command -v socat >/dev/null || { echo "api-fuzz: socat missing: run scripts/setup.sh" >&2; exit 1; }
cargo build --release -q
vtap=$PWD/target/release/vtap
dir=$(mktemp -d)
ns=vt-apifuzz-$$
port=$((20000 + $$ % 20000))
pids=()
cleanup() {
	# unshare --fork waits for its child and does not pass SIGTERM on: stop
	# the daemon (its child) first, then the rest.
	for p in "${pids[@]}"; do pkill -TERM -P "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
# Inside the jail: $dir becomes a mount of its own (writable), then every
# other mount is remounted read-only (bind remounts: per mount, so nothing
# outside this mount namespace changes). Device nodes stay usable on a
# read-only mount (/dev/net/tun), regular files do not.
jail='set -e
mount --make-rprivate /
mount -t tmpfs -o ro none /run/netns
mount --bind "$0" "$0"
awk "{print \$5}" /proc/self/mountinfo | sort -r | while read -r m; do
	[ "$m" = "$0" ] && continue
	mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if touch /var/tmp/vtap-apifuzz-escape 2>/dev/null || touch /tmp/vtap-apifuzz-escape 2>/dev/null; then
	echo "api-fuzz: the jail leaks: a write outside $0 succeeded" >&2; exit 1
fi
touch "$0/jail-ok"
exec "$1" --socket "$0/vtap.sock" daemon'
ip netns exec "$ns" unshare --mount --pid --fork --kill-child --mount-proc \
	sh -c "$jail" "$dir" "$vtap" \
	2>"$dir/daemon.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/vtap.sock" ] && break; sleep 0.1; done
if [ ! -e "$dir/jail-ok" ]; then
	echo "api-fuzz: the daemon's read-only jail could not be set up" >&2
	cat "$dir/daemon.log" >&2
	exit 1
fi
socat "TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork" "UNIX-CONNECT:$dir/vtap.sock" &
pids+=($!)
sleep 0.3
status=0
spec=$PWD/docs/openapi.json
# schemathesis keeps a cache in the working directory: give it the scratch one.
(cd "$dir" && "$venv/bin/schemathesis" run "$spec" --url "http://127.0.0.1:$port" \
	--max-time "$secs" --workers 1 \
	--checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
	--exclude-operation-id start_capture \
	--suppress-health-check all ${VTAP_API_FUZZ_ARGS:-}) || status=$?
# The daemon must still be alive and answering.
if ! curl -sf --unix-socket "$dir/vtap.sock" http://localhost/v1/info >/dev/null; then
	echo "api-fuzz: the daemon no longer answers" >&2
	tail -20 "$dir/daemon.log" >&2
	status=1
fi
exit $status
