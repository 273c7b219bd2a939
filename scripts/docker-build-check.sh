#!/usr/bin/env bash
# docker-build-check.sh checks what docker/Dockerfile ships, without a Docker
# engine:
#   1. builds the binary with the image's own build command (docker/build.sh);
#   2. checks it is static (CGO off, no ELF interpreter) and version-stamped;
#   3. runs it the way the image's default command does (`floe dev` with the
#      image's FLOE_LISTEN / FLOE_ADMIN_LISTEN environment) and checks it
#      answers Kafka ApiVersions + Metadata (kcat -L), its HEALTHCHECK
#      (`floe healthcheck`) and the admin CLI (`floe cluster`, `floe topics`);
#   4. stops it with SIGTERM and expects a clean exit.
#
#   scripts/docker-build-check.sh      (exit 0 on success; needs go and kcat)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/floe-docker-check.XXXXXX")"
VERSION="docker-build-check-$$"
BIN="$WORK/floe"
pid=""

log() { echo "docker-build-check: $*" >&2; }
die() {
	log "FAIL: $*"
	exit 1
}
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	if [[ -f "$WORK/floe.log" && "${keep_log:-0}" == 1 ]]; then
		log "agent log:"
		tail -50 "$WORK/floe.log" >&2 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
keep_log=1

# free_port prints a loopback port nobody listens on, below the kernel's
# ephemeral range: a port in that range can be taken at any moment as the
# local end of some outgoing connection, and then bind fails.
free_port() {
	local p i lo=20000 hi=32767 eph
	if read -r eph _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null && ((eph - 1 < hi)); then
		hi=$((eph - 1))
	fi
	((hi - lo > 1000)) || lo=1024
	for i in $(seq 1 200); do
		p=$((lo + RANDOM % (hi - lo)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port"
}

command -v kcat >/dev/null || die "kcat is not installed (apt-get install kcat, or scripts/services.sh install)"

log "building with docker/build.sh (the Dockerfile's build step)"
"$ROOT/docker/build.sh" "$BIN" "$VERSION"

# Static: built without cgo, and no dynamic loader requested.
buildinfo=$(go version -m "$BIN")
[[ $buildinfo == *CGO_ENABLED=0* ]] || die "binary was built with cgo"
[[ $buildinfo == *-trimpath=true* ]] || die "binary was built without -trimpath"
if command -v file >/dev/null; then
	[[ $(file "$BIN") == *"statically linked"* ]] || die "file(1) says not static: $(file "$BIN")"
fi
if ldd "$BIN" >/dev/null 2>&1; then
	die "ldd lists shared libraries: $(ldd "$BIN" 2>&1)"
fi
[[ $("$BIN" version 2>&1) == *"$VERSION"* ]] || die "'floe version' does not print the stamped version $VERSION (is there a 'var version' in cmd/floe?): $("$BIN" version 2>&1 | head -3)"
log "static, stripped, version-stamped: ok ($(du -h "$BIN" | cut -f1))"

kport=$(free_port)
aport=$(free_port)
# The image's ENV and CMD, with loopback addresses instead of 0.0.0.0.
FLOE_LISTEN="127.0.0.1:$kport" FLOE_ADMIN_LISTEN="127.0.0.1:$aport" \
	"$BIN" dev --data "$WORK/data" >"$WORK/floe.log" 2>&1 &
pid=$!

for i in $(seq 1 300); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null; then break; fi
	kill -0 "$pid" 2>/dev/null || die "floe dev exited early"
	sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null || die "floe dev did not listen on 127.0.0.1:$kport"

meta=$(kcat -b "127.0.0.1:$kport" -L -m 10 2>&1) || die "kcat -L failed: $meta"
grep -q "1 brokers" <<<"$meta" || die "kcat -L did not list one broker: $meta"
log "Kafka ApiVersions + Metadata via kcat: ok"

ok=0
for i in $(seq 1 100); do
	if FLOE_ADMIN_LISTEN="127.0.0.1:$aport" "$BIN" healthcheck --timeout 2s >/dev/null 2>&1; then
		ok=1
		break
	fi
	sleep 0.1
done
[[ $ok == 1 ]] || die "HEALTHCHECK (floe healthcheck) failed: $(FLOE_ADMIN_LISTEN="127.0.0.1:$aport" "$BIN" healthcheck 2>&1)"
log "HEALTHCHECK (floe healthcheck on the admin port): ok"

"$BIN" cluster --bootstrap "127.0.0.1:$kport" >"$WORK/cluster.out" || die "floe cluster failed: $(cat "$WORK/cluster.out")"
"$BIN" topics create docker-check --partitions 2 --bootstrap "127.0.0.1:$kport" >/dev/null || die "floe topics create failed"
[[ $("$BIN" topics list --bootstrap "127.0.0.1:$kport") == *docker-check* ]] || die "floe topics list does not show the new topic"
log "admin CLI: ok"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
[[ $rc == 0 ]] || die "floe dev exited $rc after SIGTERM"
keep_log=0
log "SIGTERM drain: ok"
echo "docker-build-check: 1 passed, 0 failed"
