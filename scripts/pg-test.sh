#!/usr/bin/env bash
# pg-test.sh: a throwaway PostgreSQL cluster for the store tests.
#
#   url=$(scripts/pg-test.sh start [DIR])   # prints the URL; DIR: default mktemp -d
#   KMS_TEST_POSTGRES=$url go test -race -count=1 ./store/
#   scripts/pg-test.sh stop DIR             # stops the cluster, removes DIR
#
# The cluster listens on 127.0.0.1 on a free port, trusts local connections
# (user postgres, no password), keeps its socket in DIR, and runs without
# fsync: it is for tests only. PostgreSQL refuses to run as root, so under
# root the cluster runs as the unprivileged user hsmkms-test (created if
# missing; nobody if useradd is unavailable). Messages go to stderr; only
# the URL goes to stdout.
set -euo pipefail

die() { echo "pg-test.sh: $*" >&2; exit 1; }

# find_pgbin prints the directory of initdb/pg_ctl: on PATH, via pg_config,
# or in Debian's versioned directory (which is not on PATH); nothing if absent.
find_pgbin() {
	local d
	if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
	if command -v pg_config >/dev/null 2>&1; then
		d=$(pg_config --bindir)
		[ -x "$d/initdb" ] && { echo "$d"; return; }
	fi
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
	if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

# pgbin is find_pgbin, installing PostgreSQL first (once) under root.
pgbin() {
	local d
	d=$(find_pgbin)
	if [ -z "$d" ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "pg-test.sh: installing postgresql with apt-get" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 ||
			{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; } ||
			die "apt-get install postgresql failed"
		d=$(find_pgbin)
	fi
	[ -n "$d" ] || die "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql (Debian: apt-get install postgresql)"
	echo "$d"
}

# runas runs a command as the cluster's user: ourselves, or an unprivileged
# user when we are root.
RUN_USER=""
pick_user() {
	[ "$(id -u)" -eq 0 ] || return 0
	if ! id hsmkms-test >/dev/null 2>&1 && command -v useradd >/dev/null 2>&1; then
		useradd --system --no-create-home --shell /usr/sbin/nologin hsmkms-test >&2 || true
	fi
	if id hsmkms-test >/dev/null 2>&1; then RUN_USER=hsmkms-test; else RUN_USER=nobody; fi
}
runas() {
	if [ -z "$RUN_USER" ]; then "$@"; return; fi
	if command -v runuser >/dev/null 2>&1; then
		runuser -u "$RUN_USER" -- "$@"
	else
		su -s /bin/sh "$RUN_USER" -c "$(printf '%q ' "$@")"
	fi
}

# free_port picks a random port on 127.0.0.1 that nothing answers on. A race
# with another process is possible; start retries with a new port.
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
	die "no free port found on 127.0.0.1"
}

start() {
	local dir=${1:-} bin port
	bin=$(pgbin)
	pick_user
	[ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/hsmkms-pg.XXXXXX")
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ -z "$RUN_USER" ] || chown "$RUN_USER" "$dir"
	chmod 700 "$dir"
	# Non-bytewise default collation (ICU) when available, so that the
	# tests catch ORDER BY that would differ from SQLite's.
	if ! runas "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
		--locale-provider=icu --icu-locale=en-US >"$dir/initdb.log" 2>&1; then
		rm -rf "$dir/data"
		runas "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
			>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
	fi
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		if runas "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 start \
			-o "-k $dir -h 127.0.0.1 -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
			>/dev/null; then
			echo "$port" >"$dir/port"
			echo "pg-test.sh: running in $dir; stop with: $0 stop $dir" >&2
			echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			return
		fi
		# A start that timed out may have left a server running: stop it
		# before trying another port on the same data directory.
		runas "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	done
	tail -n 20 "$dir/postgres.log" >&2 || true
	rm -rf "$dir"
	die "pg_ctl start failed"
}

stop() {
	local dir=${1:-} bin
	[ -n "$dir" ] || die "usage: $0 stop DIR"
	if [ ! -d "$dir/data" ]; then
		rm -rf "$dir" # a start that failed, or nothing: nothing runs
		return
	fi
	bin=$(pgbin)
	pick_user
	if ! runas "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 &&
		runas "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
		die "could not stop the cluster in $dir"
	fi
	rm -rf "$dir"
}

case "${1:-start}" in
start) start "${2:-}" ;;
stop) stop "${2:-}" ;;
*) die "usage: $0 [start [DIR]] | stop DIR" ;;
esac
