#!/usr/bin/env bash
# make bench: a throwaway SoftHSM token and SQLite database, kmsd on a free
# loopback port, then kmsbench (raw token ceiling and REST, same run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-go.sh
scripts/ensure-softhsm.sh
dir=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
pid=
pid2=
cleanup() {
  for p in $pid $pid2; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$dir/tokens"
printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir" > "$dir/softhsm2.conf"
export SOFTHSM2_CONF="$dir/softhsm2.conf" KMS_TOKEN_LABEL=hsmkms-bench KMS_PIN=bench-pin-1234
softhsm2-util --init-token --free --label "$KMS_TOKEN_LABEL" --pin "$KMS_PIN" --so-pin bench-so-pin >/dev/null
go build -o "$dir/kmsd" ./cmd/kmsd
go build -o "$dir/kmsbench" ./cmd/kmsbench
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18080)
export KMS_TOKEN=bench-admin-token-0123456789abcdef
KMS_LISTEN=127.0.0.1:$port KMS_DB="sqlite:$dir/kms.db" KMS_BOOTSTRAP_TOKEN=$KMS_TOKEN KMS_LOG_LEVEL=warn \
  KMS_MAX_SESSIONS=32 "$dir/kmsd" & pid=$!
# A second kmsd with auditing off (KMS_AUDIT=off exists for this only), to
# measure what auditing costs in the same run.
port2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18081)
KMS_LISTEN=127.0.0.1:$port2 KMS_DB="sqlite:$dir/kms-noaudit.db" KMS_BOOTSTRAP_TOKEN=$KMS_TOKEN KMS_LOG_LEVEL=error \
  KMS_AUDIT=off KMS_MAX_SESSIONS=32 "$dir/kmsd" & pid2=$!
for p in $port $port2; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
done
"$dir/kmsbench" -addr "http://127.0.0.1:$port" -audit-off-addr "http://127.0.0.1:$port2" -duration "${BENCH_DURATION:-5s}" "$@"
