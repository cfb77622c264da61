#!/usr/bin/env bash
# Installs every Debian package glmstream needs to build and test (CI and fresh machines).
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev libgtest-dev libgmock-dev libgflags-dev
      libxxhash-dev liburing-dev libzstd-dev libsentencepiece-dev sentencepiece pkg-config)
# Node.js runs the independent GGUF reader check; a machine may already have it from another
# source that bundles npm (then Debian's npm package conflicts), so only ask for what is missing.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
# python3-torch regenerates golden fixtures; CI does not need it (fixtures are committed).
if [ "${GLM_WITH_TORCH:-0}" = 1 ]; then pkgs+=(python3-torch python3-numpy); fi
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all packages present"
