#!/usr/bin/env bash
# Makes sure the AWS CLI is installed, for the test that follows
# docs/aws-compat.md with it: apt-get when root, otherwise one line saying
# that the test will skip.
set -euo pipefail
if command -v aws >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing awscli (apt-get)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq awscli >/dev/null && exit 0
fi
echo "the AWS CLI is missing: its test skips ('sudo apt-get install awscli' to run it)" >&2
exit 0
