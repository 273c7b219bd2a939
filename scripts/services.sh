#!/usr/bin/env bash
# services.sh — install and run the real services Floe's tests need:
# PostgreSQL (Debian packages), MinIO and fake-gcs-server (built from the Go
# module proxy, binaries cached), kcat (Debian).
#
#   scripts/services.sh install   install/build what is missing (idempotent)
#   scripts/services.sh start     install, then start every service on a free
#                                 loopback port (reuses running ones)
#   scripts/services.sh env       print `export VAR=…` lines for the tests
#   scripts/services.sh stop      stop what start started
#   scripts/services.sh status    show what runs where
#
# Works as root on a fresh Debian machine with Go; quick when everything is
# already installed. PostgreSQL refuses to run as root, so it runs as the
# `postgres` user the Debian package creates, with a throwaway data directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${FLOE_TOOLS:-$HOME/.cache/floe-tools}"
BIN="$TOOLS/bin"
STATE="${FLOE_SERVICES_DIR:-$ROOT/.build/services}"
ENVFILE="$STATE/env"
# The last started environment is also published here so developers' shells
# and helpers in other checkouts can find it.
SHARED_ENV="$TOOLS/services.env"

MINIO_USER=floetest
MINIO_PASS=floetest-secret
MINIO_PKG="${FLOE_MINIO_PKG:-github.com/minio/minio@latest}"
FAKEGCS_PKG="${FLOE_FAKEGCS_PKG:-github.com/fsouza/fake-gcs-server@latest}"

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$BIN" "$STATE"

apt_updated=0
apt_install() {
	if [ "$(id -u)" != 0 ]; then
		die "need root to apt-get install $*"
	fi
	if [ $apt_updated = 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

pg_bindir() {
	local d
	for d in /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ]; then echo "$d"; fi
	done | sort -V | tail -1
}

# go_build_bg NAME PKG starts a background `go install` when the binary is
# missing. MinIO's first build takes minutes, so it overlaps the apt work.
go_build_bg() {
	local name=$1 pkg=$2
	if [ -x "$BIN/$name" ]; then return 0; fi
	log "building $name from the Go module proxy ($pkg); the first build takes minutes"
	(cd "$TOOLS" && GOBIN="$BIN" GOFLAGS=-mod=mod go install "$pkg" >"$STATE/build-$name.log" 2>&1) &
	echo $! >"$STATE/build-$name.pid"
}

go_build_wait() {
	local name=$1
	if [ -f "$STATE/build-$name.pid" ]; then
		local pid
		pid=$(cat "$STATE/build-$name.pid")
		if ! wait "$pid" 2>/dev/null; then
			# Not our child (another invocation started it): poll.
			while kill -0 "$pid" 2>/dev/null; do sleep 2; done
		fi
		rm -f "$STATE/build-$name.pid"
	fi
	[ -x "$BIN/$name" ] || die "building $name failed: $(tail -20 "$STATE/build-$name.log" 2>/dev/null)"
}

install() {
	command -v go >/dev/null || die "go is not on PATH"
	go_build_bg minio "$MINIO_PKG"
	go_build_bg fake-gcs-server "$FAKEGCS_PKG"
	local pkgs=()
	[ -n "$(pg_bindir)" ] || pkgs+=(postgresql)
	command -v kcat >/dev/null || pkgs+=(kcat)
	if [ ${#pkgs[@]} -gt 0 ]; then
		log "installing ${pkgs[*]} from Debian"
		apt_install "${pkgs[@]}"
	fi
	[ -n "$(pg_bindir)" ] || die "PostgreSQL binaries not found after install"
	go_build_wait minio
	go_build_wait fake-gcs-server
}

# free_port prints a loopback TCP port nobody listens on, below the
# kernel's ephemeral range (32768+) so an outgoing connection cannot take it
# between this check and the server binding it.
free_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((15000 + RANDOM % 17000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

wait_tcp() {
	local port=$1 what=$2 i
	for i in $(seq 1 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	die "$what did not listen on 127.0.0.1:$port (see $STATE/$what.log)"
}

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

start_postgres() {
	if alive postgres; then
		# Started by an earlier run, perhaps of an older version of this
		# script: give it what the tests now need.
		configure_postgres
		return 0
	fi
	local bindir port pgdata
	bindir=$(pg_bindir)
	port=$(free_port)
	# The data directory lives outside the checkout so the postgres user can
	# reach it whatever the checkout's permissions are.
	pgdata="/tmp/floe-pg-$(echo "$STATE" | md5sum | cut -c1-10)"
	rm -rf "$pgdata"
	mkdir -p "$pgdata"
	chown postgres:postgres "$pgdata" 2>/dev/null || true
	chmod 700 "$pgdata"
	local as=()
	if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
	"${as[@]}" "$bindir/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >"$STATE/postgres-initdb.log" 2>&1 ||
		die "initdb failed: $(tail -5 "$STATE/postgres-initdb.log")"
	# Tuned for a throwaway test server; durability settings stay as shipped
	# (fsync and synchronous_commit on) so benchmarks measure honest commits.
	cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pgdata'
max_connections = 400
shared_buffers = 256MB
max_locks_per_transaction = 256
EOF
	"${as[@]}" "$bindir/postgres" -D "$pgdata" >"$STATE/postgres.log" 2>&1 &
	echo $! >"$STATE/postgres.pid"
	echo "$pgdata" >"$STATE/postgres.datadir"
	wait_tcp "$port" postgres
	local i
	for i in $(seq 1 100); do
		if "$bindir/pg_isready" -h 127.0.0.1 -p "$port" -q; then break; fi
		sleep 0.1
	done
	"$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE floe_test" >/dev/null
	echo "postgres://postgres@127.0.0.1:$port/floe_test?sslmode=disable" >"$STATE/postgres.url"
	configure_postgres
	log "PostgreSQL listens on 127.0.0.1:$port"
}

# pg_sql URL SQL runs SQL as the test server's superuser and prints the
# result unaligned.
pg_sql() { "$(pg_bindir)/psql" "$1" -v ON_ERROR_STOP=1 -Atqc "$2"; }

# configure_postgres gives the running server what the tests need beyond
# initdb's defaults, idempotently: start runs it on a server it just
# started and on one an earlier run left running, which may predate a
# setting here (CI with a kept FLOE_SERVICES_DIR, a developer's shared
# services). It reloads the server's configuration if need be, and never
# restarts it.
#
# Everyone is trusted but members of floe_password_auth, who must give
# their password: the tests of a password changed under a running catalog
# (catalog/postgres TestPasswordFileRotation) need a server that checks it.
# pg_hba.conf's first matching line wins.
configure_postgres() {
	local pgdata url hba rule loaded i
	pgdata=$(cat "$STATE/postgres.datadir")
	url=$(cat "$STATE/postgres.url")
	hba="$pgdata/pg_hba.conf"
	rule='host all +floe_password_auth 127.0.0.1/32 scram-sha-256'
	pg_sql "$url" "DO \$\$BEGIN
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'floe_password_auth') THEN
			CREATE ROLE floe_password_auth NOLOGIN;
		END IF;
	END\$\$" >/dev/null
	# sed -i keeps the file's owner (postgres) when run as root.
	grep -qxF "$rule" "$hba" || sed -i "1i $rule" "$hba"
	# PostgreSQL reads pg_hba.conf at start and at a reload only. Reload
	# unless the server loaded its configuration after the file last
	# changed (in whole seconds, so a tie reloads), then wait until new
	# sessions see the reload, which pg_reload_conf only signals.
	loaded=$(pg_sql "$url" "SELECT extract(epoch FROM pg_conf_load_time())")
	if [ "$(stat -c %Y "$hba")" -lt "${loaded%.*}" ]; then return 0; fi
	[ "$(pg_sql "$url" "SELECT pg_reload_conf()")" = t ] || die "PostgreSQL did not take the signal to reload"
	for i in $(seq 1 100); do
		if [ "$(pg_sql "$url" "SELECT extract(epoch FROM pg_conf_load_time()) > $loaded")" = t ]; then
			log "PostgreSQL reloaded its configuration ($hba)"
			return 0
		fi
		sleep 0.1
	done
	die "PostgreSQL did not reload its configuration (see $STATE/postgres.log)"
}

start_minio() {
	if alive minio; then return 0; fi
	local port cport
	port=$(free_port)
	cport=$(free_port)
	rm -rf "$STATE/minio-data"
	mkdir -p "$STATE/minio-data"
	MINIO_ROOT_USER=$MINIO_USER MINIO_ROOT_PASSWORD=$MINIO_PASS MINIO_BROWSER=off \
		"$BIN/minio" server --quiet --address "127.0.0.1:$port" --console-address "127.0.0.1:$cport" \
		"$STATE/minio-data" >"$STATE/minio.log" 2>&1 &
	echo $! >"$STATE/minio.pid"
	echo "127.0.0.1:$port" >"$STATE/minio.addr"
	wait_tcp "$port" minio
	log "MinIO listens on 127.0.0.1:$port"
}

start_fakegcs() {
	if alive fake-gcs; then return 0; fi
	local port
	port=$(free_port)
	"$BIN/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
		-public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
		-log-level warn >"$STATE/fake-gcs.log" 2>&1 &
	echo $! >"$STATE/fake-gcs.pid"
	echo "http://127.0.0.1:$port" >"$STATE/fake-gcs.url"
	wait_tcp "$port" fake-gcs
	log "fake-gcs-server listens on 127.0.0.1:$port"
}

write_env() {
	{
		echo "export FLOE_TEST_POSTGRES_URL='$(cat "$STATE/postgres.url")'"
		echo "export FLOE_TEST_MINIO_ENDPOINT='$(cat "$STATE/minio.addr")'"
		echo "export FLOE_TEST_MINIO_ACCESS_KEY='$MINIO_USER'"
		echo "export FLOE_TEST_MINIO_SECRET_KEY='$MINIO_PASS'"
		echo "export FLOE_TEST_MINIO_BIN='$BIN/minio'"
		echo "export FLOE_TEST_GCS_ENDPOINT='$(cat "$STATE/fake-gcs.url")'"
		echo "export FLOE_TEST_KCAT='$(command -v kcat)'"
	} >"$ENVFILE"
	# Only the checkout's default services are published; a run with its
	# own FLOE_SERVICES_DIR (CI, a second checkout) keeps to itself.
	if [ -z "${FLOE_SERVICES_DIR:-}" ]; then cp "$ENVFILE" "$SHARED_ENV"; fi
}

start() {
	install
	start_postgres
	start_minio
	start_fakegcs
	write_env
	log "environment in $ENVFILE (eval \"\$(scripts/services.sh env)\")"
}

stop_one() {
	local name=$1
	if alive "$name"; then
		local pid
		pid=$(cat "$STATE/$name.pid")
		kill "$pid" 2>/dev/null || true
		local i
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$STATE/$name.pid"
}

# stop_postgres shuts PostgreSQL down cleanly. Run as root, its pid file
# holds runuser's pid, and runuser answers SIGTERM by passing it on (a
# smart shutdown, which waits for every client to leave) and killing the
# server 2 s later: pg_ctl's fast shutdown rolls sessions back and
# checkpoints instead, then the wrapper exits on its own.
stop_postgres() {
	local pgdata bindir
	pgdata=$(cat "$STATE/postgres.datadir" 2>/dev/null || true)
	bindir=$(pg_bindir)
	if alive postgres && [ -n "$pgdata" ] && [ -f "$pgdata/postmaster.pid" ] && [ -n "$bindir" ]; then
		local as=()
		if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
		"${as[@]}" "$bindir/pg_ctl" stop -D "$pgdata" -m fast -w -t 30 >>"$STATE/postgres-stop.log" 2>&1 ||
			log "pg_ctl stop failed (see $STATE/postgres-stop.log); killing PostgreSQL"
	fi
	stop_one postgres
}

stop() {
	stop_one fake-gcs
	stop_one minio
	stop_postgres
	if [ -f "$STATE/postgres.datadir" ]; then rm -rf "$(cat "$STATE/postgres.datadir")"; fi
	rm -rf "$STATE/minio-data" "$ENVFILE"
	log "stopped"
}

status() {
	local s
	for s in postgres minio fake-gcs; do
		if alive "$s"; then echo "$s: running (pid $(cat "$STATE/$s.pid"))"; else echo "$s: stopped"; fi
	done
	[ -f "$ENVFILE" ] && cat "$ENVFILE"
	return 0
}

case "${1:-}" in
install) install ;;
start) start ;;
stop) stop ;;
status) status ;;
env)
	[ -f "$ENVFILE" ] || die "services are not started (run scripts/services.sh start)"
	cat "$ENVFILE"
	;;
*)
	echo "usage: $0 install|start|env|stop|status" >&2
	exit 2
	;;
esac
