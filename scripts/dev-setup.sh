#!/usr/bin/env bash
# Prepares the development environment of `make run`: SoftHSM2 installed, a
# token "hsmkms" under var/softhsm (kept between runs), a random user PIN in
# var/pin and a random bearer token in var/bootstrap-token (both 0600).
# Running it again reuses all of them.
#
# SoftHSM's file store is not crash-safe: SoftHSM 2.6.1 rewrites a token's
# token.object in place at each C_Login, so a kill -9 of kmsd at the wrong
# moment leaves it empty and the token unusable. While no kmsd runs, each
# start therefore snapshots the token directory together with the database
# into var/backup/; a token found broken at the next start is moved aside
# into var/broken-DATE/ and both are restored from that snapshot.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-softhsm.sh
umask 077
mkdir -p var/softhsm/tokens
export SOFTHSM2_CONF="$PWD/softhsm.conf"
label="${KMS_TOKEN_LABEL:-hsmkms}"
lock=var/kmsd.lock
[ -s var/pin ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > var/pin
[ -s var/bootstrap-token ] || head -c 32 /dev/urandom | base64 | tr '/+' '_-' | tr -d '=' > var/bootstrap-token

# The Makefile runs kmsd under `flock var/kmsd.lock`: a held lock means a
# kmsd of another `make run` is using the token, and copying its files now
# could snapshot a half-written token. This script holds the lock itself
# until it exits, so no kmsd can start while it checks or copies.
exec 9>"$lock"
if ! flock -n 9; then
  echo "another 'make run' is using var/ (its kmsd holds $lock); stop it first" >&2
  exit 1
fi

# token_broken succeeds when a token directory has no usable token.object.
token_broken() {
  local d
  for d in var/softhsm/tokens/*/; do
    [ -d "$d" ] || continue
    [ -s "$d/token.object" ] || return 0
  done
  return 1
}

# db_files lists the SQLite database and its journal files that exist.
db_files() {
  local f
  for f in var/hsmkms.db var/hsmkms.db-wal var/hsmkms.db-shm; do
    [ -e "$f" ] && echo "$f"
  done
  return 0
}

if token_broken; then
  if [ ! -d var/backup/tokens ]; then
    echo "the SoftHSM token in var/softhsm/tokens is damaged (an empty token.object: kmsd was killed while SoftHSM rewrote it) and there is no backup in var/backup; move var/ aside to start afresh" >&2
    exit 1
  fi
  aside="var/broken-$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$aside"
  mv var/softhsm/tokens "$aside/tokens"
  for f in $(db_files); do mv "$f" "$aside/"; done
  cp -a var/backup/tokens var/softhsm/tokens
  for f in var/backup/hsmkms.db*; do [ -e "$f" ] && cp -a "$f" var/; done
  echo "the SoftHSM token was damaged (SoftHSM's file store is not crash-safe); restored token and database from the snapshot of $(cat var/backup/taken-at 2>/dev/null || echo 'an earlier start'); the damaged copies are in $aside; keys and versions made after the snapshot are lost" >&2
fi

if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *$"; then
  so_pin=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  softhsm2-util --init-token --free --label "$label" --pin "$(cat var/pin)" --so-pin "$so_pin" >/dev/null
  echo "created SoftHSM token '$label' in var/softhsm/tokens" >&2
fi

# Snapshot token and database together, replacing the previous one only
# once the new copy is complete.
rm -rf var/backup.new
mkdir -p var/backup.new
cp -a var/softhsm/tokens var/backup.new/tokens
for f in $(db_files); do cp -a "$f" var/backup.new/; done
date -u +%Y-%m-%dT%H:%M:%SZ > var/backup.new/taken-at
rm -rf var/backup.old
[ -d var/backup ] && mv var/backup var/backup.old
mv var/backup.new var/backup
rm -rf var/backup.old
