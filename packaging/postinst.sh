#!/bin/sh
# kmsd is enabled but not started on a first install: it needs the PIN file
# and its settings first (docs/operations.md, "First start"). An upgrade
# restarts a running kmsd, which migrates the database at start.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	if [ "$1" = configure ] && [ -z "$2" ]; then
		systemctl enable kmsd.service || true
		echo "hsmkms: write the token PIN to /etc/hsmkms/pin (root, mode 0600), set /etc/hsmkms/kmsd.env, then: systemctl start kmsd"
	elif [ "$1" = configure ]; then
		systemctl try-restart kmsd.service || true
	fi
fi
