#!/usr/bin/env bash
# Prepares the development environment of `make run`: SoftHSM2 installed, a
# token "hsmkms" under var/softhsm (kept between runs), a random user PIN in
# var/pin and a random bearer token in var/bootstrap-token (both 0600).
# Running it again reuses all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-softhsm.sh
umask 077
mkdir -p var/softhsm/tokens
export SOFTHSM2_CONF="$PWD/softhsm.conf"
label="${KMS_TOKEN_LABEL:-hsmkms}"
[ -s var/pin ] || head -c 18 /dev/urandom | base64 | tr -d '/+=' > var/pin
[ -s var/bootstrap-token ] || head -c 32 /dev/urandom | base64 | tr '/+' '_-' | tr -d '=' > var/bootstrap-token
if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label: *$label *$"; then
  so_pin=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
  softhsm2-util --init-token --free --label "$label" --pin "$(cat var/pin)" --so-pin "$so_pin" >/dev/null
  echo "created SoftHSM token '$label' in var/softhsm/tokens" >&2
fi
