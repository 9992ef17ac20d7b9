#!/usr/bin/env bash
# make bench: a throwaway SoftHSM token, kmsd on free loopback ports, then
# kmsbench, all in one run:
#   - the raw token ceiling and REST through kmsd on SQLite (the ratio);
#   - the same kmsd against a second one with KMS_AUDIT=off (audit cost);
#   - when PostgreSQL is available, one versus two kmsd replicas on one
#     throwaway PostgreSQL cluster and the same token;
#   - with BENCH_BASE=<commit>, a kmsd built from that commit beside this
#     one, measured interleaved in the same run (A/B).
# kmsd's CPU per request comes from /proc/<pid>/stat (-kmsd-pid).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-go.sh
scripts/ensure-softhsm.sh
scripts/ensure-wrk.sh
dir=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
pids=()
pgdir=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -n "$pgdir" ] && scripts/pg-test.sh stop "$pgdir" 2>/dev/null
  [ -n "$basetree" ] && git worktree remove --force "$basetree" 2>/dev/null
  rm -rf "$dir"
}
basetree=
trap cleanup EXIT
command -v curl >/dev/null 2>&1 || { echo "make bench needs curl (apt-get install curl)" >&2; exit 1; }
# freeport: a random loopback port nothing answers on.
freeport() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "bench.sh: no free port on 127.0.0.1" >&2; exit 1
}
# kmsd PORT DB [VAR=value...]: start one kmsd in the background.
kmsd() {
  local port=$1 db=$2; shift 2
  env KMS_LISTEN=127.0.0.1:$port KMS_DB="$db" KMS_BOOTSTRAP_TOKEN=$KMS_TOKEN \
    KMS_MAX_SESSIONS=32 "$@" "${KMSD_BIN:-$dir/kmsd}" 2>>"$dir/kmsd-$port.log" & pids+=($!)
}
ready() {
  local p ok
  for p in "$@"; do
    ok=
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && { ok=1; break; }; sleep 0.1; done
    [ -n "$ok" ] || { echo "bench.sh: kmsd on port $p did not become ready" >&2; exit 1; }
  done
}

mkdir -p "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf" KMS_TOKEN_LABEL=hsmkms-bench KMS_PIN=bench-pin-1234
export KMS_TOKEN=bench-admin-token-0123456789abcdef
softhsm2-util --init-token --free --label "$KMS_TOKEN_LABEL" --pin "$KMS_PIN" --so-pin bench-so-pin >/dev/null
go build -o "$dir/kmsd" ./cmd/kmsd
go build -o "$dir/kmsbench" ./cmd/kmsbench
if [ -n "${BENCH_BASE:-}" ]; then
  basetree="$dir/base-src"
  git worktree add --detach "$basetree" "$BENCH_BASE" >/dev/null
  (cd "$basetree" && go build -o "$dir/kmsd-base" ./cmd/kmsd)
fi

port=$(freeport) port2=$(freeport)
kmsd "$port" "sqlite:$dir/kms.db"
mainpid=${pids[-1]}
kmsd "$port2" "sqlite:$dir/kms-noaudit.db" KMS_AUDIT=off # exists for this measurement only
ready "$port" "$port2"
args=(-addr "http://127.0.0.1:$port" -kmsd-pid "$mainpid" -audit-off-addr "http://127.0.0.1:$port2")
if [ -n "$basetree" ]; then
  bport=$(freeport)
  KMSD_BIN="$dir/kmsd-base" kmsd "$bport" "sqlite:$dir/kms-base.db"
  ready "$bport"
  args+=(-base-addr "http://127.0.0.1:$bport" -base-pid "${pids[-1]}")
fi

pgdir=$(mktemp -d)
if [ -n "${BENCH_NO_PG:-}" ]; then
  echo "(BENCH_NO_PG: the replica comparison is skipped)" >&2
  rmdir "$pgdir"; pgdir=
elif url=$(scripts/pg-test.sh start "$pgdir" 2>/dev/null); then
  rp1=$(freeport) rp2=$(freeport)
  kmsd "$rp1" "$url"
  ready "$rp1" # the first one migrates and bootstraps; the second finds it done
  kmsd "$rp2" "$url"
  ready "$rp2"
  args+=(-replica-addrs "http://127.0.0.1:$rp1,http://127.0.0.1:$rp2")
else
  echo "(PostgreSQL not available: the replica comparison is skipped)" >&2
  rmdir "$pgdir" 2>/dev/null || true
  pgdir=
fi
dur=${BENCH_DURATION:-5s}
[ -n "${BENCH_SCALE_ONLY:-}" ] || "$dir/kmsbench" "${args[@]}" -duration "$dur" "$@"

# Scale (BENCH_KEYS=N): N keys through REST against the token's own
# generation rate, kmsd's start-up with them, then encrypt over many keys
# against one key.
if [ -n "${BENCH_KEYS:-}" ]; then
  common=(-addr "http://127.0.0.1:$port" -concurrency 32 -duration "$dur")
  echo
  "$dir/kmsbench" "${common[@]}" -kmsd-pid "$mainpid" -create-keys "$BENCH_KEYS" -key-file "$dir/keys.txt"
  kill "$mainpid"; wait "$mainpid" 2>/dev/null || true
  t0=$(date +%s.%N)
  kmsd "$port" "sqlite:$dir/kms.db"
  mainpid=${pids[-1]}
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    kill -0 "$mainpid" 2>/dev/null || { echo "bench.sh: kmsd did not restart" >&2; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  printf '\nkmsd start-up with %s keys (process start to /readyz 200, polled every 20 ms): %.2f s\n\n' \
    "$BENCH_KEYS" "$(echo "$t1 - $t0" | bc -l)"
  "$dir/kmsbench" "${common[@]}" -kmsd-pid "$mainpid" -key-file "$dir/keys.txt"
fi
