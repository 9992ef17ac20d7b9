#!/usr/bin/env bash
# make package: the Debian package of hsmkms, built by nfpm (run through the
# Go toolchain at a pinned version) from the binaries of every command under
# cmd/ that ships (kmsd, kmsctl, and kms-k8s-plugin once it exists; not the
# benchmark), the systemd unit and the settings file under packaging/.
# Usage: scripts/package.sh OUTDIR VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}" version="${2:-}"
GO="${GO:-go}"
NFPM="github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2"
[ -n "$version" ] || version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Debian versions start with a digit: v1.2.3 -> 1.2.3, a bare commit -> 0~git<commit>.
debver=${version#v}
[[ $debver =~ ^[0-9] ]] || debver="0~git${debver}"
debver=${debver//-/+}

# nfpm.yaml names this directory (its paths take no variables).
stage=build/pkg
rm -rf "$stage"
trap 'rm -rf build' EXIT
mkdir -p "$stage/usr/bin" "$out"
ldflags="-s -w -X github.com/hsmkms/hsmkms/internal/buildinfo.version=$version -X github.com/hsmkms/hsmkms/internal/buildinfo.commit=$commit"
# kmsd loads the HSM's PKCS#11 library: cgo. The clients are static.
for cmd in kmsd kmsctl kms-k8s-plugin; do
  [ -d "cmd/$cmd" ] || { echo "package: cmd/$cmd does not exist (yet): not packaged"; continue; }
  cgo=0
  [ "$cmd" = kmsd ] && cgo=1
  CGO_ENABLED=$cgo "$GO" build -trimpath -ldflags "$ldflags" -o "$stage/usr/bin/$cmd" "./cmd/$cmd"
done
arch=$("$GO" env GOARCH)
VERSION="$debver" ARCH="$arch" \
  "$GO" run "$NFPM" package --config packaging/nfpm.yaml --packager deb --target "$out/hsmkms_${debver}_${arch}.deb"
