#!/usr/bin/env bash
# The streaming tests and the thread pool's under ThreadSanitizer: builds the library and the
# reader, planner, streaming-store and kernel tests (kernels_test holds the pool's) with
# -DGLM_SANITIZE=thread into build-tsan, then runs them. Any data race fails the run
# (halt_on_error). Usage: scripts/tsan.sh [extra gtest args, e.g. --gtest_repeat=5]
set -euo pipefail
cd "$(dirname "$0")/.."
tests=(uring_reader_test planner_test streaming_test kernels_test)
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGLM_SANITIZE=thread \
  >/dev/null
ninja -C build-tsan -j"${JOBS:-$(nproc)}" "${tests[@]}"
# second_deadlock_stack: full reports if a lock-order problem shows up.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
for t in "${tests[@]}"; do
  echo "== $t (ThreadSanitizer)"
  "build-tsan/$t" "$@"
done
echo "tsan.sh: the streaming and kernel tests passed under ThreadSanitizer"
