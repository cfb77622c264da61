#!/usr/bin/env bash
# scripts/generate_demo.sh against the build under test: both prompts answered with a throughput.
# Usage (CTest): bash tests/generate_demo_test.sh BUILD_DIR SOURCE_DIR. Exit 77: skipped.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$2
for tool in glm-synth glm-generate; do
  [ -x "$build/$tool" ] || { echo "SKIP: $build/$tool is not built"; exit 77; }
done
log=$(bash "$src/scripts/generate_demo.sh" "$build" 2>&1) || { echo "$log"; echo "FAIL: exit $?"; exit 1; }
echo "$log"
fail() { echo "FAIL: $1"; exit 1; }
[ "$(grep -c '^Output: ' <<<"$log")" = 2 ] || fail "expected two Output: lines"
grep -q '^Input: A cache is a small, fast \[MASK\]' <<<"$log" || fail "no [MASK] prompt"
grep -q '^Input: Streaming works best when the transfer of the next layer \[gMASK\]' <<<"$log" \
  || fail "no [gMASK] prompt"
grep -q 'tokens/s' <<<"$log" || fail "no throughput"
grep -q 'gibberish' <<<"$log" || fail "no warning that the text is gibberish"
[ "$(ls "$build/generate-demo/samples" | wc -l)" -ge 2 ] || fail "no output files"
echo PASS
