#!/usr/bin/env bash
# Makes sure wrk (the REST rows' load generator in make bench) is
# installed: apt-get when root. Without it kmsbench measures with its own
# Go client, which costs more CPU per request than wrk; so a missing wrk
# is said in one line, not an error.
set -uo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing wrk (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get install -y -qq wrk || { apt-get update -qq && apt-get install -y -qq wrk; }; } >/dev/null 2>&1
  command -v wrk >/dev/null 2>&1 && exit 0
fi
echo "wrk is missing (apt-get install wrk): the REST rows use kmsbench's own client" >&2
exit 0
