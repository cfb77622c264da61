#!/bin/bash
# The linear kernels' SIMD-equals-scalar tests (tests/kernels_simd_test.cc) with each decode
# prefetch variant, fp16 row streams on and off, the decode kernels' x as fp16 and as fp32
# (kernels/cpu/linear_common.h), and both pool chunkings (runtime/parallel.h), forced through the
# environment: by default only short quantized
# rows take the next-tile prefetch and only fp16 rows the in-row one, so the other template
# instantiations would go untested. None of these ever changes a result; this checks that every
# variant decodes the same. Also: a malformed setting is a fatal error naming the variable.
# Run by CTest as: bash kernels_prefetch_test.sh BUILD SOURCE.
set -u
build=${1:?build dir}
test_bin="$build/kernels_simd_test"
[ -x "$test_bin" ] || { echo "skip: $test_bin is not built"; exit 77; }
filter='*Linear*:*Int8*:*Int4*:*QuantizedRows*'
failed=""
run() {  # name, then VAR=value settings
  local name=$1
  shift
  echo "=== $name: $*"
  if ! env "$@" "$test_bin" --gtest_brief=1 --gtest_filter="$filter"; then failed="$failed $name"; fi
}
run "in-row everywhere" GLM_CPU_PREFETCH_ROW_BYTES=0 GLM_CPU_PREFETCH_AHEAD=192
run "next tile for every quantized row" GLM_CPU_PREFETCH_ROW_BYTES=1048576 GLM_CPU_PREFETCH_AHEAD=0
run "no prefetch" GLM_CPU_PREFETCH_ROW_BYTES=0 GLM_CPU_PREFETCH_AHEAD=0
# The next tile into L1 and into L2, whatever this CPU's default.
run "next tile into L1" GLM_CPU_PREFETCH_ROW_BYTES=1048576 GLM_CPU_PREFETCH_NEXT_L1=1
run "next tile into L2" GLM_CPU_PREFETCH_ROW_BYTES=1048576 GLM_CPU_PREFETCH_NEXT_L1=0
# fp16 decode tiles from row streams, and from consecutive rows, whatever this CPU's default; the
# first with the in-row prefetch (the rows' pointers follow the streams).
run "fp16 row streams, in-row prefetch" GLM_CPU_F16_ROW_STREAMS=1 GLM_CPU_PREFETCH_AHEAD=256
run "fp16 consecutive rows" GLM_CPU_F16_ROW_STREAMS=0
# The decode kernels' x read as fp16 and as fp32, whatever this CPU's default; the first also with
# every prefetch variant's tiles (next tile for every quantized row, in-row for fp16).
run "x as fp16" GLM_CPU_DECODE_X_HALF=1 GLM_CPU_PREFETCH_ROW_BYTES=1048576 GLM_CPU_PREFETCH_AHEAD=128
run "x as fp32" GLM_CPU_DECODE_X_HALF=0
run "x chosen by timing" GLM_CPU_DECODE_X_HALF=auto
# fp16 calls of 3 or 4 tokens with and without their own in-row prefetch, whatever this CPU's
# default (one token's prefetch off, so that only theirs differs).
run "fp16 at 3-4 tokens, in-row prefetch" GLM_CPU_PREFETCH_AHEAD=0 GLM_CPU_PREFETCH_AHEAD_TOKENS3=320
run "fp16 at 3-4 tokens, no prefetch" GLM_CPU_PREFETCH_AHEAD_TOKENS3=0
# Calls of more tokens than the decode kernel takes on its chunks up to 200 tokens (the tests'
# 125 too), and never (the prefill kernel from 5 tokens on), whatever the measured counts.
run "chunks up to 200 tokens" GLM_CPU_CHUNK_TOKENS=200
run "no chunks" GLM_CPU_CHUNK_TOKENS=0
# The prefill kernel without its prefetch of the next K block's weights, whatever the default.
run "no panel prefetch" GLM_CPU_PANEL_PREFETCH=0
# The pool's other chunking: which thread decodes which rows changes, never a result.
run "chunks from one shared counter" GLM_POOL_CHUNKS=counter
for bad in "GLM_CPU_PREFETCH_AHEAD=12x" "GLM_CPU_PREFETCH_ROW_BYTES=-1" "GLM_CPU_F16_ROW_STREAMS=2" \
  "GLM_CPU_DECODE_X_HALF=on" "GLM_POOL_CHUNKS=none" "GLM_CPU_PREFETCH_NEXT_L1=2" \
  "GLM_CPU_PREFETCH_AHEAD_TOKENS3=-5" "GLM_CPU_CHUNK_TOKENS=x" "GLM_CPU_PANEL_PREFETCH=2"; do
  out=$(env "$bad" "$test_bin" --gtest_filter='*LinearEqualsScalar*' 2>&1)
  rc=$?
  if [ $rc -eq 0 ] || ! grep -q "${bad%%=*}" <<<"$out"; then
    echo "$bad: expected a fatal error naming the variable, got rc $rc"
    failed="$failed malformed"
  fi
done
# The prefetches must be in the binary. A function that only prefetches has no effect a compiler
# must keep, and GCC 12 once deleted the calls to one (the Step functions of linear_common.h are
# forced inline since). Each decode tile compiled for kNextTile (TilePrefetch 1) must hold a
# PREFETCHT1, and each one for kNextTileL1 (2) or kInRow (3) a PREFETCHT0. Tiles inlined into
# their callers have no symbol of their own and are not checked; with no tile symbol at all this
# part is skipped, and tile symbols none of which reads as prefetching fail it (until 2026-11-29
# the pattern missed every tile, the prefetch variant being no longer the last template
# argument).
lib="$(cd "$build" && pwd)/libglmstream.a"
if command -v objdump >/dev/null && command -v ar >/dev/null && [ -f "$lib" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && ar x "$lib" linear_avx512.cc.o linear_avx2.cc.o 2>/dev/null)
  for o in "$tmp"/*.o; do
    [ -f "$o" ] || continue
    objdump -d -C --no-show-raw-insn "$o" | awk -v obj="$(basename "$o")" '
      function check() {
        if (fn == "") return
        if (mode == 1 && !t1) { print obj ": no PREFETCHT1 in " fn; bad++ }
        if (mode >= 2 && !t0) { print obj ": no PREFETCHT0 in " fn; bad++ }
        if (mode) tiles++
      }
      /^[0-9a-f]+ </ {
        check()
        fn = ""; mode = 0; t0 = 0; t1 = 0
        if ($0 ~ /DirectTile</) direct++
        if ($0 ~ /DirectTile</ && match($0, /TilePrefetch\)[123][,>]/)) {
          fn = substr($0, index($0, "<") + 1, 100); mode = substr($0, RSTART + 13, 1) + 0
        }
        next
      }
      /prefetcht0/ { t0 = 1 }
      /prefetcht1/ { t1 = 1 }
      END {
        check(); print obj ": " tiles + 0 " prefetching decode tiles checked"
        # Tiles of their own but none recognized: the symbols changed form under this check.
        if (direct > 0 && tiles == 0) { print obj ": no decode tile read as prefetching"; bad++ }
        exit bad > 0
      }
    ' || failed="$failed prefetch-missing"
  done
  # The AVX-512 prefill kernel's prefetch of the next K block (StridedPrefetch): a PREFETCHT1 in
  # its panel code for each of the three formats, inlined into RunPanel or not.
  if [ -f "$tmp/linear_avx512.cc.o" ]; then
    objdump -d -C --no-show-raw-insn "$tmp/linear_avx512.cc.o" | awk '
      /^[0-9a-f]+ </ {
        f = ""
        if ($0 ~ /(PanelRange|RunPanel)<\(glm::LinearWeight::Format\)[012]>/) {
          match($0, /Format\)[012]/); f = substr($0, RSTART + 7, 1)
        }
        next
      }
      f != "" && /prefetcht1/ { seen[f] = 1 }
      END {
        n = 0; for (k in seen) n++
        print "linear_avx512.cc.o: prefill panels with the next block prefetch, formats: " n
        exit n != 3
      }
    ' || failed="$failed panel-prefetch-missing"
  fi
else
  echo "skip the binary check: objdump, ar or $lib missing"
fi
if [ -n "$failed" ]; then
  echo "failed:$failed"
  exit 1
fi
echo "every prefetch variant decodes as the scalar reference"
