#!/bin/sh
# The database in /var/lib/hsmkms and the settings and PIN in /etc/hsmkms
# are never removed by the package, not even on purge: without the database
# no blob can be decrypted (docs/operations.md). The user stays too, owning them.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
