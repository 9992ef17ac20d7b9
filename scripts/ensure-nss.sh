#!/usr/bin/env bash
# Makes sure NSS softoken (libsoftokn3.so, package libnss3) and certutil
# (libnss3-tools) are installed, for the suite's second token: apt-get when
# root, otherwise one clear line saying what is missing. Prints the module.
set -euo pipefail
module="${KMS_NSS_MODULE:-/usr/lib/x86_64-linux-gnu/libsoftokn3.so}"
if ! command -v certutil >/dev/null 2>&1 || [ ! -e "$module" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing libnss3 and libnss3-tools (apt-get)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq libnss3 libnss3-tools >/dev/null
  fi
fi
if command -v certutil >/dev/null 2>&1 && [ -e "$module" ]; then
  echo "$module"
  exit 0
fi
echo "NSS softoken is missing: run 'sudo apt-get install libnss3 libnss3-tools' (or set KMS_NSS_MODULE to libsoftokn3.so)" >&2
exit 1
