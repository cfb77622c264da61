#!/usr/bin/env bash
# The project's test command: installs dependencies, builds, runs every CTest suite, then a
# short fuzz run of the file readers. FUZZ_SECONDS=0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then bash scripts/fuzz.sh "${FUZZ_SECONDS:-30}"; fi
