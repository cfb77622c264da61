#!/usr/bin/env bash
# Downloads (apt-get download, no install) the Debian packages that bench/device_check.sh unpacks
# on a GPU machine that has only the CUDA toolkit, CMake, a compiler and Python: the build's
# dependencies (pkg-config, gflags, xxhash, liburing, zstd, sentencepiece, GoogleTest) and their
# runtime libraries. They land in .deps/ (git-ignored); pass it along with the run, e.g. the
# device tool's `carry: [".deps"]`. The .debs are unpacked with `dpkg -x` into a private prefix
# there, never into /.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.deps
pkgs=(pkgconf pkgconf-bin libpkgconf3 pkg-config
      libgflags-dev libgflags2.2
      libxxhash-dev libxxhash0
      liburing-dev liburing2
      libzstd-dev libzstd1
      libsentencepiece-dev libsentencepiece0
      libgtest-dev libgmock-dev)
mkdir -p "$out"
rm -f "$out"/*.deb
if ! (cd "$out" && apt-get download "${pkgs[@]}" >/dev/null 2>&1); then
  echo "fetch_device_debs: apt-get download failed; refreshing the package lists" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  (cd "$out" && apt-get download "${pkgs[@]}")
fi
echo "fetch_device_debs: $(ls "$out"/*.deb | wc -l) packages, $(du -sh "$out" | cut -f1) in $out/"
ls "$out"
