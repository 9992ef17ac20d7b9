#!/usr/bin/env bash
# Makes sure SoftHSM2 (module and softhsm2-util) is installed: apt-get when
# root, otherwise one clear line saying what is missing.
set -euo pipefail
module="${KMS_PKCS11_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
if command -v softhsm2-util >/dev/null 2>&1 && [ -e "$module" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing softhsm2 (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq softhsm2 >/dev/null
  [ -e "$module" ] && exit 0
  echo "softhsm2 installed but $module is missing; set KMS_PKCS11_MODULE" >&2
  exit 1
fi
echo "SoftHSM2 is missing: run 'sudo apt-get install softhsm2' (or set KMS_PKCS11_MODULE to its module)" >&2
exit 1
