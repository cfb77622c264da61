#!/bin/bash
# The golden model test (tests/golden_test.cc) on every CPU kernel path this machine supports,
# each forced with GLM_CPU_PATH: every path must pass it, decode-equals-recompute and
# batch-equals-separate-runs included. Run by CTest as: bash golden_paths_test.sh BUILD SOURCE.
set -u
build=${1:?build dir}
test_bin="$build/golden_test"
[ -x "$test_bin" ] || { echo "skip: $test_bin is not built"; exit 77; }
has() { grep -qw "$1" /proc/cpuinfo; }
paths="scalar"
if has avx2 && has fma && has f16c; then
  paths="$paths avx2"
  if has avx512f && has avx512bw && has avx512vl && has avx512dq; then
    paths="$paths avx512"
    if has avx512_fp16; then paths="$paths avx512fp16"; fi
  fi
fi
# A path the CPU has but this build left out (avx512fp16 from a compiler that cannot target it)
# makes golden_test skip every test: reported as skipped, not passed.
failed="" passed="" skipped=""
for p in $paths; do
  echo "=== GLM_CPU_PATH=$p"
  out=$(GLM_CPU_PATH=$p "$test_bin" --gtest_brief=1 2>&1)
  rc=$?
  echo "$out"
  if [ $rc -ne 0 ]; then
    failed="$failed $p"
  elif echo "$out" | grep -q 'PASSED  \] 0 tests'; then
    skipped="$skipped $p"
  else
    passed="$passed $p"
  fi
done
[ -n "$skipped" ] && echo "golden test skipped on:$skipped (not in this build)"
if [ -n "$failed" ]; then
  echo "golden test failed on:$failed"
  exit 1
fi
echo "golden test passed on:$passed"
