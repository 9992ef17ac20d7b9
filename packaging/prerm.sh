#!/bin/sh
# Stop kmsd when the package is removed (not on upgrade: postinst restarts it).
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl disable --now kmsd.service || true
fi
