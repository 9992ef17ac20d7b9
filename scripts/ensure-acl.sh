#!/usr/bin/env bash
# Makes sure setfacl (Debian package acl) is installed, for the test of the
# PIN file's POSIX ACL check: apt-get when root, otherwise one line saying
# the test skips.
set -euo pipefail
command -v setfacl >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing acl (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq acl >/dev/null && exit 0
fi
echo "setfacl is missing: the PIN file ACL test skips ('sudo apt-get install acl' to run it)" >&2
exit 0
