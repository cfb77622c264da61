#!/usr/bin/env bash
# One run of the CUDA backend on a fresh GPU machine (no network; the CUDA toolkit, CMake, a C++
# compiler and Python there, none of our Debian dev packages): sets up the build dependencies from
# .deps/*.deb (scripts/fetch_device_debs.sh downloads them; they are unpacked with dpkg -x into a
# private prefix, never into /), builds for sm_90 only, runs the GPU tests, then bench-gpu at full
# GLM-130B layer shapes with synthetic weights made in memory:
#   INT4, all 70 layers resident (~67 GB with the fp16 embedding), with --probe (each linear
#     kernel alone against the device bandwidth); again with group-wise scales (G = 128);
#   INT8 and FP16 streamed from pinned host memory under several --gpu-mem budgets;
#   glm-bench --gpu-mem on 4 layers (glm-bench's GPU mode runs bench-gpu: the wiring only);
#   last, glm-generate --gpu-mem on the synthetic demo model: all resident, then one layer resident
#     and three streamed, then on the CPU (greedy, the same queries; tokens/s each); and glm-bench
#     --gpu-mem --model on that file;
# each decode time printed against its bound, with the H2D and device bandwidths measured in the
# same run. Every step logs and has a timeout; a failing step does not stop the later ones; a
# summary ends the output. Designed to finish in under 8 minutes on an H100 with 16 cores.
#
#   bash bench/device_check.sh                 # all steps; output in $OUT (else build-device/out)
#   STEPS="env deps configure build tests" bash bench/device_check.sh   # a subset
#   Optional steps: probe (the linear-layer probe alone), variants (INT4 resident with the other
#   tensor-core GEMV variants), sass (the GEMV's instruction mix), ncu (Nsight Compute on the INT4
#   GEMV and on one decode step's kernels), cpu (bench-kernels on the host CPU into cpu.log: the
#   full run, the glm130b-L1 model, the AVX2 path, the GEMV on half the cores), cputests (the CPU
#   SIMD and golden tests on every path of the host CPU), cpuab (CPU kernel settings compared
#   call by call: CPU_AB, see step_cpuab, into cpuab.log), cpupages (a model's weights mapped,
#   read, and on huge pages: bench-kernels --only=pages, into cpupages.log), cpupipes (the host
#   CPU's vector pipes and its decode loops' own ceilings, into cpupipes.log: needs AVX-512),
#   cputokens (decode GEMVs of 1 to 64 tokens from memory, with the decode kernel's chunks and
#   without, on both paths, into cputokens.log: where chunks stop paying on this host), cpupeer
#   (the same GEMVs by ggml, the engine under llama.cpp, against ours: in cache and from memory
#   at GLM-130B's shapes, into cpupeer.log; needs .deps/ggml-src.tar.gz from
#   scripts/prepare_peer_ggml.sh). A run whose steps use no GPU builds only the CPU targets.
#   MMA_STEPS=n passes --mma_steps to bench-gpu.
#
# Files left in $OUT (at most 8, flat): summary.txt, device_check.log, build.log, tests.log,
# bench_int4.log, bench_int4g.log, bench_int8.log, bench_fp16.log (probe.log, sass.log, ncu.log,
# cpu.log, cpuab.log, cpupages.log, cpupipes.log, cputokens.log, cpupeer.log when asked for;
# with them, run a subset: at most 8 files come back from the device tool).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT_DIR=${OUT:-$ROOT/build-device/out}
BUILD=${GLM_DEVICE_BUILD:-$ROOT/build-device}
DEPS=${GLM_DEVICE_DEPS:-/tmp/glm-deps}
STEPS=${STEPS:-"env deps configure build tests bench_int4 bench_int4g bench_fp16 bench_int8 glmbench generate"}
JOBS=$(nproc 2>/dev/null || echo 4)
# Every step's timeout is cut to what is left before the deadline (default 470 s: done inside 8
# minutes); steps that would start with less than 15 s left are skipped.
DEADLINE_S=${GLM_DEVICE_DEADLINE_S:-470}
mkdir -p "$OUT_DIR" "$BUILD"
# cmake and ninja may live only in the Python environment's bin directory (pip packages).
for tool in cmake ninja; do
  if ! command -v $tool >/dev/null 2>&1; then
    pybin=$(python3 -c 'import sys, os; print(os.path.dirname(sys.executable))' 2>/dev/null)
    [ -n "$pybin" ] && [ -x "$pybin/$tool" ] && export PATH="$PATH:$pybin"
  fi
done
exec > >(tee -a "$OUT_DIR/device_check.log") 2>&1
T_START=$(date +%s)
SUMMARY=()

log() { echo "[device_check +$(( $(date +%s) - T_START ))s] $*"; }

# run NAME TIMEOUT_S LOGFILE CMD...: runs CMD (a command or one of the step functions below, in
# a child bash) under a timeout, logs its status and duration, never exits the script.
run() {
  local name=$1 limit=$2 logfile=$3
  shift 3
  local left=$(( T_START + DEADLINE_S - $(date +%s) ))
  if [ $left -lt 15 ]; then
    SUMMARY+=("$(printf '%-12s %-18s' "$name" "SKIPPED (no time)")")
    log "== $name: skipped, ${left}s left before the deadline"
    return 0
  fi
  [ $limit -gt $left ] && limit=$left
  log "== $name (timeout ${limit}s): $*"
  local t0 rc
  t0=$(date +%s)
  if [ "$logfile" = - ]; then
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@"
    rc=$?
  else
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" 2>&1 | tee -a "$OUT_DIR/$logfile"
    rc=${PIPESTATUS[0]}
  fi
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status=TIMEOUT
  elif [ $rc -ne 0 ]; then
    status="FAILED (exit $rc)"
  fi
  SUMMARY+=("$(printf '%-12s %-18s %4ss' "$name" "$status" $(( $(date +%s) - t0 )))")
  log "== $name: $status"
  return 0
}

want() { [[ " $STEPS " == *" $1 "* ]]; }

step_env() {
  log "host: $(uname -a)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv
  NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  "$NVCC" --version | tail -2
  cmake --version | head -1
  (ninja --version || echo "no ninja") | sed 's/^/ninja /'
  (c++ --version || g++ --version) | head -1
  echo "cores: $JOBS"; free -g | head -2; df -h "$ROOT" /tmp | tail -2
  ulimit -l | sed 's/^/memlock limit: /'
  ls /usr/local/cuda/lib64 2>/dev/null | grep -E '^libcu(blas|blasLt|dart)\.so' | head -5
}

# Build dependencies from .deps/*.deb, unpacked into $DEPS; environment for pkg-config, CMake,
# the compiler, the linker and the loader.
step_deps() {
  local missing=()
  for p in pkg-config; do command -v $p >/dev/null || missing+=("$p"); done
  for h in gflags/gflags.h xxhash.h liburing.h zstd.h sentencepiece_processor.h gtest/gtest.h; do
    [ -e /usr/include/$h ] || missing+=("$h")
  done
  log "missing on this machine: ${missing[*]:-nothing}"
  if ls .deps/*.deb >/dev/null 2>&1; then
    mkdir -p "$DEPS"
    for f in .deps/*.deb; do dpkg -x "$f" "$DEPS" || { log "dpkg -x $f failed"; return 1; }; done
    log "unpacked $(ls .deps/*.deb | wc -l) packages into $DEPS"
  elif [ ${#missing[@]} -gt 0 ]; then
    log "no .deps/*.deb and packages are missing: run scripts/fetch_device_debs.sh where apt works and carry .deps"
    return 1
  fi
  return 0
}

deps_env() {
  [ -d "$DEPS/usr" ] || return 0
  local a=x86_64-linux-gnu
  export PATH="$DEPS/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$DEPS/usr/lib/$a${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LIBRARY_PATH="$DEPS/usr/lib/$a${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export CPATH="$DEPS/usr/include${CPATH:+:$CPATH}"
  # Only the unpacked .pc files, their /usr paths moved under $DEPS.
  export PKG_CONFIG_LIBDIR="$DEPS/usr/lib/$a/pkgconfig:$DEPS/usr/share/pkgconfig:$DEPS/usr/lib/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$DEPS"
  unset PKG_CONFIG_PATH
  export CMAKE_PREFIX_PATH="$DEPS/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
}

step_configure() {
  local nvcc gen=()
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  command -v ninja >/dev/null && gen=(-G Ninja)
  local args=(-S "$ROOT" -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGLM_CUDA=ON
              -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90)
  # cuBLAS from the Python wheels when the toolkit lacks it.
  if ! ls "$(dirname "$(dirname "$nvcc")")"/lib64/libcublas.so* >/dev/null 2>&1; then
    local lib
    lib=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null)
    if [ -n "$lib" ]; then
      log "cuBLAS from the Python wheel at $lib"
      args+=(-DCUDA_cublas_LIBRARY="$(ls "$lib"/lib/libcublas.so.* | head -1)"
             -DCUDA_cublasLt_LIBRARY="$(ls "$lib"/lib/libcublasLt.so.* | head -1)"
             -DCMAKE_CXX_FLAGS="-I$lib/include" -DCMAKE_CUDA_FLAGS="-I$lib/include")
      echo "export LD_LIBRARY_PATH=\"$lib/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\"" \
        > "$BUILD/device_env.sh"
    fi
  fi
  rm -f "$BUILD/tests_built"
  if cmake "${args[@]}" -DGLM_BUILD_TESTS=ON; then touch "$BUILD/tests_built"; return 0; fi
  log "configure with tests failed; trying without GoogleTest (bench only)"
  rm -f "$BUILD/CMakeCache.txt"
  cmake "${args[@]}" -DGLM_BUILD_TESTS=OFF
}

step_build() {
  local targets=() s
  # The GPU targets only when a step that uses them was asked for (a CPU-only run builds less).
  for s in tests probe bench_int4 bench_int4g bench_fp16 bench_int8 glmbench generate variants \
           sass ncu; do
    want $s && targets=(bench-gpu glm-bench glm-generate glm-generate-gpu glm-synth) && break
  done
  { want cpu || want cpuab; } && targets+=(bench-kernels)
  want cpupages && targets+=(bench-kernels glm-synth glm-quantize)
  want cputests && targets+=(kernels_simd_test golden_test glm-logits)
  if want tests && [ -e "$BUILD/tests_built" ]; then
    targets+=(cuda_plan_test cuda_kernels_test cuda_model_test cuda_generate_test)
  fi
  cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}"
}

step_tests() {
  local rc=0
  for t in cuda_plan_test cuda_kernels_test cuda_model_test cuda_generate_test; do
    if [ ! -x "$BUILD/$t" ]; then log "$t was not built"; rc=1; continue; fi
    log "-- $t"
    timeout --kill-after=10 120 "$BUILD/$t" --gtest_color=no || rc=1
  done
  return $rc
}

bench() {
  if [ ! -x "$BUILD/bench-gpu" ]; then log "bench-gpu was not built"; return 1; fi
  "$BUILD/bench-gpu" ${MMA_STEPS:+--mma_steps=$MMA_STEPS} "$@"
}

# Optional (not in the default STEPS): Nsight Compute on the INT4 tensor-core GEMV at the qkv and
# dense shapes (every tiles-per-step variant), then the duration of every kernel of two layers of
# an INT4 decode step.
step_ncu() {
  local ncu
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
  if [ -z "$ncu" ]; then log "no ncu on this machine"; return 1; fi
  "$ncu" -k regex:quant_gemv_mma --launch-count 12 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    "$BUILD/bench-gpu" --probe_only --probe_dtypes i4 --probe_reps 1
  "$ncu" --launch-skip 300 --launch-count 30 --metrics gpu__time_duration.sum \
    "$BUILD/bench-gpu" --dtype i4 --gpu_mem 0 --prompt 1 --decode 1
}

# INT4 resident at GLM-130B's shapes again, once per entry of VARIANTS (';'-separated bench-gpu
# flags; "default" for none): by default the other tensor-core GEMV variants (the default ran in
# bench_int4), two tiles per warp step and two 16-row tiles per warp.
step_variants() {
  local v list
  IFS=';' read -ra list <<< "${VARIANTS:---mma_steps=2;--mma_row_tiles=2}"
  for v in "${list[@]}"; do
    [ "$v" = default ] && v=""
    log "-- bench-gpu --dtype i4 --gpu_mem 0 $v"
    # shellcheck disable=SC2086
    bench --dtype i4 --gpu_mem 0 --prompt 16 --decode 16 --quiet $v || return 1
  done
}

# Optional: the static instruction mix of every tensor-core GEMV instantiation (cuobjdump), by
# opcode, to see what the decode costs.
step_sass() {
  local dump obj
  dump=$(command -v cuobjdump || echo "$(dirname "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")/cuobjdump")
  obj=$(find "$BUILD" -name 'quant_gemv.cu.o' | head -1)
  [ -x "$dump" ] && [ -n "$obj" ] || { log "no cuobjdump or no quant_gemv object"; return 1; }
  "$dump" -sass "$obj" | awk '
    /Function : / { fn = $3; next }
    fn ~ /quant_gemv_mma/ && /^ +\/\*[0-9a-f]+\*\/ / {
      op = $2; if (op ~ /^@/) op = $3; sub(/\..*/, "", op); sub(/;$/, "", op)
      n[fn, op]++; total[fn]++; ops[op] = 1
    }
    END {
      for (f in total) {
        line = sprintf("%s total %d:", f, total[f])
        for (o in ops) if ((f, o) in n) line = line sprintf(" %s=%d", o, n[f, o])
        print line
      }
    }' | sed 's/_ZN3glm3gpu[^ ]*quant_gemv_mma_kernel/mma/' | sort
}

# The host CPU: model, cores, caches and its AVX-512/AMX flags.
cpu_id() {
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node|L[123]|CPU max|Hypervisor)'
  grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx512|amx|avx_vnni)' | tr '\n' ' '
  echo
}

# Optional: the CPU kernels on this machine's host CPU (issue 7's benchmark on a server CPU):
# the full bench-kernels on every core, the whole model at GLM-130B's shapes (one layer and the
# logits, 7.3 GB), the AVX2 path, then the GEMV on half the cores.
step_cpu() {
  if [ ! -x "$BUILD/bench-kernels" ]; then log "bench-kernels was not built"; return 1; fi
  cpu_id
  "$BUILD/bench-kernels" || return 1
  "$BUILD/bench-kernels" --only=model --model_preset=glm130b-L1 || return 1
  "$BUILD/bench-kernels" --path=avx2 --quick --only=gemv,core
  # Half the threads: does the GEMV need every core to reach the bandwidth?
  GLM_THREADS=$(( JOBS / 2 )) "$BUILD/bench-kernels" --quick --only=gemv
}

# Optional: decode settings compared on the host CPU. CPU_AB is ';'-separated, each entry
# "default" or space-separated VAR=value of the GLM_CPU_PREFETCH_* (NEXT_L1 included),
# GLM_CPU_F16_ROW_STREAMS, GLM_CPU_DECODE_X_HALF, GLM_CPU_PANEL_PREFETCH, GLM_POOL_CHUNKS and
# GLM_CPU_PATH variables; bench-kernels --ab alternates them call by call in one process
# (GLM-130B's GEMV shapes and two short-row ones, every format), CPU_AB_ROUNDS rounds (default 31:
# the default x-half choice, auto, times its first calls both ways), and is run twice.
# CPU_AB_TOKENS=128 (default 1) compares the prefill's calls of 128 tokens instead (bench-kernels
# --ab_tokens; each call does 128 times a decode call's work, so give fewer rounds, or the step
# more than its default 240 s in CPU_AB_SECONDS: on a 2-core VM the two processes of one round
# did not fit in 240 s). Unset, CPU_AB compares the defaults with the avx512 path (on a CPU with
# AVX512-FP16 the default is avx512fp16), without the in-row prefetch (GLM_CPU_PREFETCH_AHEAD=0,
# every format's: such CPUs prefetch quantized rows too since the twenty-second session), with x
# as fp32 and as fp16 fixed, and with the pool's other chunking. It needs AVX-512.
step_cpuab() {
  if [ ! -x "$BUILD/bench-kernels" ]; then log "bench-kernels was not built"; return 1; fi
  local r ab=${CPU_AB:-default;GLM_CPU_PATH=avx512;GLM_CPU_PREFETCH_AHEAD=0;GLM_CPU_DECODE_X_HALF=0;GLM_CPU_DECODE_X_HALF=1;GLM_POOL_CHUNKS=counter}
  for r in 1 2; do
    log "-- process $r: --ab='$ab'"
    "$BUILD/bench-kernels" --only=ab --ab="$ab" --reps="${CPU_AB_ROUNDS:-31}" \
      --ab_tokens="${CPU_AB_TOKENS:-1}" ||
      return 1
  done
}

# Optional: a model's weights on the host CPU mapped, read into memory and on huge pages
# (glm-generate --huge-pages), a decode step of each in turn (bench-kernels --only=pages): two
# layers of GLM-130B's shapes and the fp16 logits, int4-row (about 5.5 GB), written to $BUILD.
step_cpupages() {
  local f16="$BUILD/pages-f16.gguf" i4="$BUILD/pages-i4.gguf"
  "$BUILD/glm-synth" --preset glm130b-L2 --output "$f16" --quiet || return 1
  "$BUILD/glm-quantize" --input "$f16" --output "$i4" --bits 4 --quiet --force || return 1
  rm -f "$f16"
  local rc=0 r
  for r in 1 2; do
    "$BUILD/bench-kernels" --only=pages --pages_model="$i4" --pages_rounds=15 || rc=1
  done
  rm -f "$i4"
  return $rc
}

# Optional: the host CPU's vector pipes (ops alone and in pairs) and the AVX-512 decode loops'
# own ceilings in L1: the programs of bench/results/cpu-zen5-2026-11-29-s15/, built for this CPU
# (bench/results/cpu_kernels.md, section "Fifteenth session", reads them on Zen 5).
step_cpupipes() {
  local d="$ROOT/bench/results/cpu-zen5-2026-11-29-s15" p
  for p in pipes loops-avx512; do
    log "-- $p"
    g++ -O3 -march=native -std=c++20 "$d/$p.cc" -o "$BUILD/$p" 2>/dev/null ||
      { log "$p did not build (it needs AVX-512)"; return 1; }
    "$BUILD/$p" || return 1
  done
}

# Optional: decode GEMVs at GLM-130B's qkv shape from memory at 1 to 64 tokens, with the decode
# kernel's chunks as measured on Zen 5 and with none (GLM_CPU_CHUNK_TOKENS=0: the prefill kernel
# from 5 tokens on), on the AVX-512 and AVX2 paths (bench/results/cpu_kernels.md, section
# "Sixteenth session", reads them on Zen 5; the counts are in kernels/cpu/linear_avx*.cc).
step_cputokens() {
  local src="$ROOT/bench/results/cpu-zen5-2026-11-29-s16/tokens-gemv.cc" path chunks
  g++ -O2 -std=c++20 -I"$ROOT" "$src" "$BUILD/libglmstream.a" -o "$BUILD/tokens-gemv" -lpthread ||
    { log "tokens-gemv did not build"; return 1; }
  for path in avx512 avx2; do
    for chunks in "" 0; do
      log "-- path $path, GLM_CPU_CHUNK_TOKENS=${chunks:-unset}"
      GLM_CPU_CHUNK_TOKENS=$chunks "$BUILD/tokens-gemv" memory "$path" \
        tokens=1,2,3,4,5,6,8,12,16,24,32,48,64 || return 1
    done
  done
}

# Optional: one token's GEMV by ggml (the engine under llama.cpp; its CPU backend built here for
# this CPU from .deps/ggml-src.tar.gz, scripts/prepare_peer_ggml.sh) against ours, through the
# program of bench/results/cpu-zen5-2026-11-29-s21/ (cpu_kernels.md, section "Twenty-first
# session", reads it on Zen 5): in cache on one core and on all, then from memory at two of
# GLM-130B's shapes, rounds of a probe pass and every variant in turn for CPU_PEER_SECONDS
# (default 30) a shape; about 3 minutes on two Zen 5 cores, most of it making the weights.
step_cpupeer() {
  local tarball="$ROOT/.deps/ggml-src.tar.gz" dir="$BUILD/peer" prog="$BUILD/ggml-gemv" gen=()
  if [ ! -f "$tarball" ]; then
    log "no $tarball: run scripts/prepare_peer_ggml.sh on a ggml source tree first"
    return 1
  fi
  if [ ! -f "$BUILD/libglmstream.a" ]; then log "libglmstream.a was not built"; return 1; fi
  rm -rf "$dir" && mkdir -p "$dir" && tar -xzf "$tarball" -C "$dir" || return 1
  log "ggml $(cat "$dir/ggml/PEER_COMMIT" 2>/dev/null)"
  command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
  cmake -S "$dir/ggml" -B "$dir/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >/dev/null ||
    { log "ggml did not configure"; return 1; }
  cmake --build "$dir/build" -j "$JOBS" >/dev/null || { log "ggml did not build"; return 1; }
  local lib="$dir/build/src"
  g++ -O2 -std=c++20 -I"$ROOT" -I"$dir/ggml/include" \
    "$ROOT/bench/results/cpu-zen5-2026-11-29-s21/ggml-gemv.cc" "$BUILD/libglmstream.a" \
    "$lib/libggml.a" "$lib/libggml-cpu.a" "$lib/libggml-base.a" -fopenmp -lpthread -o "$prog" ||
    { log "ggml-gemv did not build"; return 1; }
  cpu_id
  "$prog" cache 200 1 2048 4096 1024 12288 || return 1
  "$prog" cache 200 "$JOBS" 8192 4096 4096 12288 || return 1
  GGML_GEMV_SECONDS=${CPU_PEER_SECONDS:-30} "$prog" 100000 36864 12288 12288 32768 |
    grep -v '^  round' || return 1
}

# The CPU kernels' SIMD tests and the golden model test on every dispatch path of the host CPU.
step_cputests() {
  cpu_id
  local rc=0
  if [ -x "$BUILD/kernels_simd_test" ]; then
    "$BUILD/kernels_simd_test" --gtest_brief=1 --gtest_color=no || rc=1
  else
    log "kernels_simd_test was not built"; rc=1
  fi
  bash "$ROOT/tests/golden_paths_test.sh" "$BUILD" "$ROOT" || rc=1
  return $rc
}

# glm-generate on the GPU: the demo model (GLM-130B's vocabulary, small layers), three greedy
# queries; all layers resident, then one layer resident and the others streamed, then the CPU.
step_generate() {
  local model="$BUILD/demo.gguf" q="$BUILD/queries.txt"
  "$BUILD/glm-synth" --preset demo --output "$model" || return 1
  printf '%s\n' "The capital of France is [MASK]." "Memory is slow compared with" \
    "GPUs [MASK] layers from pinned host memory." > "$q"
  local args=(--model "$model" --tokenizer "$ROOT/tests/data/tokenizer/demo.model"
              --input-source "$q" --top-k 1 --out-seq-length 128 --color never)
  local rc=0
  log "-- resident"
  "$BUILD/glm-generate" "${args[@]}" --output-path "$BUILD/gen_gpu" --gpu-mem all --verbose || rc=1
  log "-- streamed (one layer resident)"
  "$BUILD/glm-generate" "${args[@]}" --output-path "$BUILD/gen_stream" --gpu-mem all --gpu-layers 1 \
    --verbose || rc=1
  log "-- CPU"
  "$BUILD/glm-generate" "${args[@]}" --output-path "$BUILD/gen_cpu" || rc=1
  log "-- glm-bench --model on the GPU, resident and with one layer resident"
  "$BUILD/glm-bench" --gpu-mem 0 --model "$model" --prompt 16 --decode-steps 8 || rc=1
  "$BUILD/bench-gpu" --model "$model" --gpu_mem 0 --max_resident 1 --prompt 16 --decode 8 \
    --quiet || rc=1
  return $rc
}

# The step functions run in child bashes (under timeout): they see these.
export ROOT OUT_DIR BUILD DEPS JOBS T_START DEADLINE_S VARIANTS STEPS CPU_AB CPU_AB_ROUNDS \
  CPU_AB_TOKENS CPU_PEER_SECONDS
export -f log want step_env step_deps step_configure step_build step_tests bench step_ncu \
  step_generate step_variants step_sass step_cpu step_cpuab step_cpupages step_cpupipes \
  step_cputokens step_cpupeer step_cputests cpu_id

log "device check: steps '$STEPS', build $BUILD, output $OUT_DIR"
want env && run env 30 - step_env
want deps && run deps 60 - step_deps
deps_env
want configure && run configure 90 build.log step_configure
[ -f "$BUILD/device_env.sh" ] && . "$BUILD/device_env.sh"
want build && run build 240 build.log step_build
want tests && run tests 150 tests.log step_tests
# GLM-130B INT4: 70 layers + fp16 embedding resident (goal: <= 30 ms per decoded token).
want probe && run probe 60 probe.log bench --probe_only
want bench_int4 && run bench_int4 100 bench_int4.log bench --probe --dtype i4 --gpu_mem 0 --prompt 16 --decode 16
# The same with group-wise scales (128 inputs per scale).
want bench_int4g && run bench_int4g 60 bench_int4g.log bench --dtype i4 --group 128 --gpu_mem 0 --prompt 16 --decode 16
# Streamed from pinned host memory under three budgets (goal: within 1.15x of the PCIe bound).
want bench_fp16 && run bench_fp16 110 bench_fp16.log bench --dtype f16 --gpu_mem 24G,48G,72G --prompt 8 --decode 2
want bench_int8 && run bench_int8 70 bench_int8.log bench --dtype i8 --gpu_mem 24G,48G,72G --prompt 8 --decode 2
# glm-bench's GPU mode (the same benchmark behind other flags), on 4 layers: the wiring only.
want glmbench && run glmbench 40 - "$BUILD/glm-bench" --gpu-mem 0,10G --synthetic glm130b-L4 --gpu-dtype i8 --prompt 8 --decode-steps 2
want generate && run generate 60 - step_generate
want variants && run variants 60 - step_variants
want sass && run sass 30 sass.log step_sass
want cputests && run cputests 90 - step_cputests
want cpu && run cpu 300 cpu.log step_cpu
want cpuab && run cpuab "${CPU_AB_SECONDS:-240}" cpuab.log step_cpuab
want cpupages && run cpupages 240 cpupages.log step_cpupages
want cpupipes && run cpupipes 90 cpupipes.log step_cpupipes
want cputokens && run cputokens 240 cputokens.log step_cputokens
want cpupeer && run cpupeer 300 cpupeer.log step_cpupeer
want ncu && run ncu 150 ncu.log step_ncu

{
  echo "device check summary ($(date -u +%FT%TZ), $(( $(date +%s) - T_START )) s)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  echo
  printf '%s\n' "${SUMMARY[@]}"
  echo
  echo "tests (per binary: passed / skipped counts, then every failed test):"
  grep -hE '^\[  PASSED  \] [0-9]+ tests?|^\[  SKIPPED \] [0-9]+ tests?|^\[  FAILED  \] [0-9]+ tests?' \
    "$OUT_DIR/tests.log" 2>/dev/null
  grep -hE '^\[  FAILED  \] [A-Za-z_]+\.' "$OUT_DIR/tests.log" 2>/dev/null | sort -u | head -30
  echo
  echo "benchmarks:"
  grep -h '^device:\|^bandwidth:' "$OUT_DIR"/bench_*.log 2>/dev/null | sort -u | head -4
  grep -h -A28 '^== linear layers alone' "$OUT_DIR/bench_int4.log" 2>/dev/null
  grep -h '^RESULT' "$OUT_DIR"/bench_*.log 2>/dev/null
} > "$OUT_DIR/summary.txt"
cat "$OUT_DIR/summary.txt"
