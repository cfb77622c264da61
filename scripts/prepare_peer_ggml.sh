#!/usr/bin/env bash
# Packs the CPU part of a ggml source tree (the tensor library under llama.cpp) into
# .deps/ggml-src.tar.gz (git-ignored, under 1 MB), for bench/device_check.sh's optional `cpupeer`
# step: a GPU machine has no network, so the peer's source travels with the run (the device
# tool's `carry: [".deps"]`). Nothing of ggml enters the repository.
#
#   bash scripts/prepare_peer_ggml.sh SRC
#
# SRC: a ggml checkout, or a bare git directory of one (its HEAD is packed). Only the top-level
# CMake files, cmake/, include/, src/'s own files and src/ggml-cpu/ are kept: what a CPU-only
# build reads.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 SRC   (a ggml source directory or a bare git directory of one)" >&2
  exit 2
fi
src=$1
out=.deps/ggml-src.tar.gz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/ggml"
if [ -f "$src/HEAD" ] && [ -d "$src/objects" ]; then
  git --git-dir="$src" archive HEAD | tar -x -C "$tmp/ggml"
  rev=$(git --git-dir="$src" rev-parse HEAD)
else
  cp -a "$src/." "$tmp/ggml/"
  rev=$(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)
fi
g=$tmp/ggml
for need in CMakeLists.txt cmake include src/CMakeLists.txt src/ggml-cpu; do
  if [ ! -e "$g/$need" ]; then
    echo "prepare_peer_ggml: $src has no $need: not a ggml source tree" >&2
    exit 1
  fi
done
# Keep src/'s own files and the CPU backend; drop the other backends, tests, examples, docs.
find "$g/src" -mindepth 1 -maxdepth 1 -type d ! -name ggml-cpu -exec rm -rf {} +
find "$g" -mindepth 1 -maxdepth 1 ! -name CMakeLists.txt ! -name cmake ! -name include \
  ! -name src ! -name '*.in' -exec rm -rf {} +
echo "$rev" > "$g/PEER_COMMIT"
mkdir -p .deps
tar -czf "$out.tmp" -C "$tmp" ggml
mv "$out.tmp" "$out"
echo "prepare_peer_ggml: $out ($(du -h "$out" | cut -f1)), ggml $rev"
