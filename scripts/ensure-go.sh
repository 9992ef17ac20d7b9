#!/usr/bin/env bash
# Stops with one clear line when the Go toolchain or a C compiler (cgo, for
# the PKCS#11 binding) is missing.
set -euo pipefail
command -v go >/dev/null 2>&1 || { echo "Go 1.26 or newer is required (go not found in PATH)" >&2; exit 1; }
command -v gcc >/dev/null 2>&1 || command -v cc >/dev/null 2>&1 || {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && apt-get install -y -qq gcc libc6-dev >/dev/null && exit 0
  fi
  echo "a C compiler is required for cgo (apt-get install gcc)" >&2; exit 1; }
