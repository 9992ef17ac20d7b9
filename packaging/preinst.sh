#!/bin/sh
# The dedicated system user and group of kmsd, made before the files are
# unpacked (/etc/hsmkms belongs to its group).
set -e
if ! getent group hsmkms >/dev/null; then
	groupadd --system hsmkms
fi
if ! getent passwd hsmkms >/dev/null; then
	useradd --system --gid hsmkms --home-dir /var/lib/hsmkms --no-create-home \
		--shell /usr/sbin/nologin --comment "hsmkms key management service" hsmkms
fi
