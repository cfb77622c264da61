#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cc) with clang, ASan and UBSan, and runs each
# for SECONDS (default 30) from its seed corpus. Exits non-zero on any crash or sanitizer report.
# -march=native: the SIMD kernel files select their ISA with GCC's target pragma, which clang does
# not extend to lambdas; the fuzzers exercise the file readers, not the kernels, on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build=${GLM_FUZZ_BUILD:-build-fuzz}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DGLM_FUZZ=ON -DGLM_BUILD_TESTS=OFF \
  -DCMAKE_CXX_FLAGS="-march=native -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" >/dev/null
targets=$(cd tests/fuzz && ls fuzz_*.cc | sed 's/\.cc$//')
cmake --build "$build" -j"$(nproc)" --target $targets
status=0
for t in $targets; do
  # Seeds: tests/fuzz/corpus_<name> where <name> starts fuzz_<name...> (corpus_sat -> fuzz_sat_*).
  corpus_src=""
  for d in tests/fuzz/corpus_*/; do
    d=${d%/}; name=${d##*/corpus_}
    case "${t#fuzz_}" in "$name"*) corpus_src=$d ;; esac
  done
  work=$(mktemp -d)
  if [ -n "$corpus_src" ]; then cp -r "$corpus_src"/. "$work"/; fi
  echo "fuzz: $t for ${seconds}s (seeds: $(ls "$work" | wc -l))"
  if ! (cd "$work" && UBSAN_OPTIONS=halt_on_error=1 "$OLDPWD/$build/$t" -max_total_time="$seconds" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$work" >"$work.log" 2>&1); then
    echo "fuzz: $t FAILED; last lines of its log:"; tail -40 "$work.log"; status=1
  else
    grep -E "stat::number_of_executed_units|Done" "$work.log" | sed "s/^/  /" | tail -2
  fi
  rm -rf "$work" "$work.log"
done
exit $status
