#!/usr/bin/env bash
# bench-kernels runs and keeps its output contract (issue: one JSON object per line with at least
# kernel, weights, shape, threads, gbps, mem_bw_gbps), on the default path and the scalar one;
# bad flags are refused with exit 2 and a message. Values are checked for presence and sense
# (positive), never for speed. A few seconds: the quick set's smallest sections, one repetition.
# Usage (CTest): bash tests/bench_kernels_test.sh BUILD_DIR SOURCE_DIR. Exit 77: skipped.
set -uo pipefail
build=$(cd "$1" && pwd)
bench="$build/bench-kernels"
[ -x "$bench" ] || { echo "SKIP: $bench is not built"; exit 77; }
command -v python3 > /dev/null || { echo "SKIP: python3 not found"; exit 77; }
work=$(mktemp -d "$build/bench-kernels-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $1"; exit 1; }

"$bench" --quick --reps=1 --only=ops,core,layer --json > "$work/best.jsonl" 2> "$work/err.txt" ||
  { cat "$work/err.txt"; fail "bench-kernels --json exited $?"; }
"$bench" --quick --reps=1 --only=ops --json --path=scalar > "$work/scalar.jsonl" \
  2> "$work/err.txt" || { cat "$work/err.txt"; fail "bench-kernels --path=scalar exited $?"; }

# The model section on the tiny preset, its file written into (and removed from) a directory of
# the test's own.
mkdir "$work/models"
"$bench" --quick --reps=1 --only=model --model_preset=tiny --model_dir="$work/models" --json \
  > "$work/model.jsonl" 2> "$work/err.txt" || { cat "$work/err.txt"; fail "--only=model exited $?"; }
[ -z "$(ls -A "$work/models")" ] || fail "the synthetic model was left in --model_dir: $(ls "$work/models")"
for weights in int4-row int4-group; do
  grep -q "\"kernel\":\"model-decode\",\"weights\":\"$weights\",\"shape\":\"tiny\"" \
    "$work/model.jsonl" || fail "no $weights model-decode row for the tiny preset"
done

# The pages section: a model file (glm-synth's tiny preset) decoded mapped, read into memory and
# read onto huge pages, one step of each in turn: three parts of a step for each variant.
"$build/glm-synth" --preset tiny --output "$work/pages.gguf" > /dev/null 2>&1 ||
  fail "glm-synth could not write the pages section's model"
"$bench" --quick --only=pages --pages_model="$work/pages.gguf" --pages_rounds=3 --json \
  > "$work/pages.jsonl" 2> "$work/err.txt" || { cat "$work/err.txt"; fail "--only=pages exited $?"; }
python3 - "$work/pages.jsonl" <<'EOF' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
pages = [r for r in rows if r["kernel"].startswith("pages-")]
want = {(k, v) for k in ("pages-decode", "pages-layers", "pages-logits")
        for v in ("map", "read", "huge")}
got = {(r["kernel"], r["variant"]) for r in pages}
if got != want or len(pages) != len(want):
    print(f"FAIL: pages rows {sorted(got)}, expected {sorted(want)}")
    sys.exit(1)
for r in pages:
    if r["weights"] != "fp16" or r["shape"] != "L2" or not r["gbps"] > 0:
        print(f"FAIL: pages row out of sense: {r}")
        sys.exit(1)
    if abs(r["paired_pct_bw"] * r["x_paired_bound"] / 100 - 1) > 0.01:
        print(f"FAIL: pages row's paired figures are not reciprocal: {r}")
        sys.exit(1)
    if r["variant"] == "map" and r["vs_first_pct"] != 0:
        print(f"FAIL: the first variant against itself: {r}")
        sys.exit(1)
for v in ("map", "read", "huge"):
    part = {r["kernel"]: r for r in pages if r["variant"] == v}
    step = part["pages-decode"]["seconds"]
    if not (part["pages-layers"]["seconds"] < step and part["pages-logits"]["seconds"] < step):
        print(f"FAIL: a part of the step took longer than the step: {part}")
        sys.exit(1)
print(f"ok: {len(pages)} pages rows")
EOF
# With --ab, each store variant runs under each setting (the GEMV section ab does not run).
"$bench" --quick --only=pages --pages_model="$work/pages.gguf" --pages_variants=map \
  --ab="default;GLM_POOL_CHUNKS=counter" --pages_rounds=3 --json > "$work/pages_ab.jsonl" \
  2> "$work/err.txt" || { cat "$work/err.txt"; fail "--only=pages --ab exited $?"; }
python3 - "$work/pages_ab.jsonl" <<'EOF' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
got = sorted((r["kernel"], r["variant"]) for r in rows if r["kernel"] not in ("limits", "limits-end"))
want = sorted((k, v) for k in ("pages-decode", "pages-layers", "pages-logits")
              for v in ("map default", "map GLM_POOL_CHUNKS=counter"))
if got != want:
    print(f"FAIL: pages --ab rows {got}, expected {want}")
    sys.exit(1)
print(f"ok: {len(got)} pages --ab rows")
EOF

# An interrupted run leaves nothing in --model_dir either (its default, /dev/shm, is RAM): SIGTERM
# as soon as the small preset's file (270 MB, written in about a second) shows up.
mkdir "$work/killed"
"$bench" --quick --reps=1 --only=model --model_preset=small --model_dir="$work/killed" \
  > /dev/null 2> "$work/err.txt" &
pid=$!
for _ in $(seq 1 3000); do  # up to a minute (the limits are measured first)
  [ -n "$(ls -A "$work/killed")" ] && break
  kill -0 "$pid" 2> /dev/null || break
  sleep 0.02
done
seen=$(ls -A "$work/killed")
kill -TERM "$pid" 2> /dev/null
wait "$pid"
rc=$?
[ -n "$seen" ] || { cat "$work/err.txt"; fail "no model file in --model_dir to interrupt (exit $rc)"; }
[ $rc -eq 143 ] || fail "bench-kernels, sent SIGTERM while writing $seen, exited $rc (expected 143)"
[ -z "$(ls -A "$work/killed")" ] ||
  fail "an interrupted run left $(ls "$work/killed") in --model_dir (it had $seen)"

# The pool's chunking from the environment shows in the limits line.
GLM_POOL_CHUNKS=counter "$bench" --quick --reps=1 --only=ops --json > "$work/counter.jsonl" \
  2> "$work/err.txt" || { cat "$work/err.txt"; fail "GLM_POOL_CHUNKS=counter exited $?"; }
grep -q '"pool_chunks":"counter"' "$work/counter.jsonl" ||
  fail "GLM_POOL_CHUNKS=counter: no \"pool_chunks\":\"counter\" in the limits line"
# So does the decode kernels' x setting, both ways.
for v in 0 1 auto; do
  GLM_CPU_DECODE_X_HALF=$v "$bench" --quick --reps=1 --only=ops --json > "$work/xhalf.jsonl" \
    2> "$work/err.txt" || { cat "$work/err.txt"; fail "GLM_CPU_DECODE_X_HALF=$v exited $?"; }
  grep -q "\"decode_x_half\":\"$v\"" "$work/xhalf.jsonl" ||
    fail "GLM_CPU_DECODE_X_HALF=$v: no \"decode_x_half\":\"$v\" in the limits line"
done
# And the on/off prefetch settings: where the next tile goes, and the prefill's next K block.
for setting in GLM_CPU_PREFETCH_NEXT_L1:prefetch_next_l1 GLM_CPU_PANEL_PREFETCH:panel_prefetch; do
  var=${setting%%:*} key=${setting#*:}
  for v in 0 1; do
    env "$var=$v" "$bench" --quick --reps=1 --only=ops --json > "$work/onoff.jsonl" \
      2> "$work/err.txt" || { cat "$work/err.txt"; fail "$var=$v exited $?"; }
    want=$([ $v = 1 ] && echo true || echo false)
    grep -q "\"$key\":$want" "$work/onoff.jsonl" ||
      fail "$var=$v: no \"$key\":$want in the limits line"
  done
done

# Decode settings compared call by call (--ab): one row per format and setting.
"$bench" --quick --reps=3 --only=ab \
  --ab="default;GLM_CPU_F16_ROW_STREAMS=0 GLM_CPU_PREFETCH_AHEAD=64;GLM_POOL_CHUNKS=counter" \
  --json > "$work/ab.jsonl" 2> "$work/err.txt" || { cat "$work/err.txt"; fail "--only=ab exited $?"; }
python3 - "$work/ab.jsonl" <<'EOF' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ab = [r for r in rows if r["kernel"] == "gemv-ab"]
want = {(w, v) for w in ("fp16", "int8-row", "int4-row", "int4-group")
        for v in ("default", "GLM_CPU_F16_ROW_STREAMS=0 GLM_CPU_PREFETCH_AHEAD=64",
                  "GLM_POOL_CHUNKS=counter")}
got = {(r["weights"], r["variant"]) for r in ab}
if got != want or len(ab) != len(want):
    print(f"FAIL: --ab rows {sorted(got)}, expected {sorted(want)}")
    sys.exit(1)
for w in ("fp16", "int8-row", "int4-row", "int4-group"):
    first, *others = [r for r in ab if r["weights"] == w]
    for other in others:
        # The rate against the first setting's: its time over this one's.
        want_pct = 100 * (first["seconds"] / other["seconds"] - 1)
        # vs_first_pct is printed to 4 significant digits: half a unit of its last one.
        allowed = 0.01 + 5e-4 * abs(want_pct)
        if first["vs_first_pct"] != 0 or abs(other["vs_first_pct"] - want_pct) > allowed:
            print(f"FAIL: vs_first_pct is not the rate against the first setting: {first} {other}")
            sys.exit(1)
print(f"ok: {len(ab)} gemv-ab rows")
EOF
# The same for calls of several tokens (--ab_tokens): gemm-ab rows, bound by the FMA peak.
"$bench" --quick --reps=1 --only=ab --ab_tokens=8 --ab="default;GLM_CPU_PANEL_PREFETCH=0" \
  --json > "$work/abgemm.jsonl" 2> "$work/err.txt" ||
  { cat "$work/err.txt"; fail "--only=ab --ab_tokens=8 exited $?"; }
python3 - "$work/abgemm.jsonl" <<'EOF' || exit 1
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ab = [r for r in rows if "variant" in r]
got = sorted((r["kernel"], r["weights"], r["variant"], r["T"]) for r in ab)
want = sorted(("gemm-ab", w, v, 8) for w in ("fp16", "int8-row", "int4-row", "int4-group")
              for v in ("default", "GLM_CPU_PANEL_PREFETCH=0"))
if got != want:
    print(f"FAIL: --ab_tokens=8 rows {got}, expected {want}")
    sys.exit(1)
for r in ab:
    n, k = (int(v) for v in r["shape"].strip("[]").split(","))
    if abs(r["gflops"] * r["seconds"] / (2e-9 * n * k * 8) - 1) > 2e-3:
        print(f"FAIL: a gemm-ab row's GFLOP/s is not 2·N·K·T over its time: {r}")
        sys.exit(1)
print(f"ok: {len(ab)} gemm-ab rows")
EOF
"$bench" --only=ab --ab_tokens=0 --ab=default > /dev/null 2> "$work/err.txt" &&
  fail "--ab_tokens=0 was accepted"
grep -q -- "--ab_tokens=0" "$work/err.txt" || fail "--ab_tokens=0: no message naming it"

python3 - "$work/best.jsonl" "$work/scalar.jsonl" "$work/model.jsonl" <<'EOF' || exit 1
import json, os, sys
def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)
def rows_of(path):
    rows = []
    for line in open(path):
        if line.startswith("#"):  # the header and the total stay comments in --json
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            fail(f"{path}: not JSON: {line!r}")
    return rows
need = ["kernel", "weights", "shape", "threads", "gbps", "mem_bw_gbps"]
def check_paired(path, results, kernel):
    # Memory-bound rows are also timed against a probe pass before each call: the median rate
    # ratio and the median time ratio of the same calls (an odd count) are reciprocal.
    paired = [r for r in results if "probe_pass_gbps" in r]
    if kernel is not None and not any(r["kernel"] == kernel for r in paired):
        fail(f"{path}: no {kernel} row with the paired figures")
    for r in paired:
        if not (r["probe_pass_gbps"] > 0 and r["paired_pct_bw"] > 0):
            fail(f"{path}: paired figures out of sense: {r}")
        if abs(r["paired_pct_bw"] * r["x_paired_bound"] / 100 - 1) > 0.01:
            fail(f"{path}: paired_pct_bw and x_paired_bound are not reciprocal: {r}")
for path, sections in ((sys.argv[1], {"ops", "core", "layer"}), (sys.argv[2], {"ops"})):
    rows = rows_of(path)
    limits = [r for r in rows if r["kernel"] == "limits"]
    if len(limits) != 1 or limits[0]["mem_bw_gbps"] <= 0 or limits[0]["peak_gflops"] <= 0:
        fail(f"{path}: expected one limits line with a bandwidth and a peak, got {limits}")
    chunks = os.environ.get("GLM_POOL_CHUNKS") or "shares"  # the default (runtime/parallel.h)
    if limits[0].get("pool_chunks") != chunks:
        fail(f"{path}: expected pool_chunks {chunks}, got {limits[0].get('pool_chunks')}")
    results = [r for r in rows if "weights" in r]
    kernels = {r["kernel"] for r in results}
    want = {"ops": {"layernorm", "geglu", "attention"}, "core": {"gemv-1core", "gemm-1core"},
            "layer": {"layer-decode"}}
    for s in sections:
        if not want[s] <= kernels:
            fail(f"{path}: section {s} printed {sorted(kernels)}, missing {want[s] - kernels}")
    for r in results:
        for k in need:
            if k not in r:
                fail(f"{path}: {r['kernel']} lacks {k}: {r}")
        if r["weights"] not in ("fp16", "int8-row", "int4-row", "int4-group"):
            fail(f"{path}: unknown weights {r['weights']}")
        if not (r["threads"] >= 1 and r["gbps"] > 0 and r["mem_bw_gbps"] > 0):
            fail(f"{path}: values out of sense: {r}")
    if "core" in sections:
        core = {r["weights"] for r in results if r["kernel"] == "gemv-1core"}
        if len(core) != 4:
            fail(f"{path}: gemv-1core covers {sorted(core)}, not the four formats")
        pool = limits[0]["threads"]
        for r in results:
            if r["kernel"] != "gemv-1core":
                continue
            # The decode's compute ceiling: the pool's threads at one core's in-cache rate.
            # Both figures are printed to 4 significant digits, each off by up to 5e-4 of itself.
            want_gbps = pool * r["best_gbps"]
            if abs(r.get("ceiling_gbps", 0) - want_gbps) > 1.5e-3 * want_gbps:
                fail(f"{path}: gemv-1core ceiling_gbps is not {pool} x best_gbps: {r}")
            # Recomputed from two rounded figures (4 significant digits each), so the
            # allowance grows with the figure: a 2-core ceiling can be 5x a slow host's bandwidth.
            want_pct = 100 * r["ceiling_gbps"] / r["mem_bw_gbps"]
            if abs(r.get("ceiling_pct_bw", -1) - want_pct) > 0.06 + 1.5e-3 * want_pct:
                fail(f"{path}: gemv-1core ceiling_pct_bw is not ceiling / bandwidth: {r}")
    check_paired(path, results, "layer-decode" if "layer" in sections else None)
    ends = [r for r in rows if r["kernel"] == "limits-end"]
    if ("layer" in sections) != (len(ends) == 1):
        fail(f"{path}: the end-of-run bandwidth probe: {ends}")
check_paired(sys.argv[3], [r for r in rows_of(sys.argv[3]) if "weights" in r], "model-decode")
scalar = [r for r in rows_of(sys.argv[2]) if "weights" in r]
if any(r["path"] != "scalar" for r in scalar):
    fail("--path=scalar rows ran on another path")
print(f"ok: {len(rows_of(sys.argv[1]))} + {len(scalar) + 1} lines")
EOF

for bad in "--path=avx9" "--only=nonsense" "--only=ops,,core" "--reps=-1" \
  "--only=model --model_preset=bogus" "--only=model --model_dir=$work/missing" "--only=ab" \
  "--ab=default;GLM_CPU_F16_ROW_STREAMS=2" "--ab=GLM_CPU_PREFETCH_AHEAD=12x" "--ab=GLM_NOPE=1" \
  "--ab=GLM_POOL_CHUNKS=shared" "--only=pages" \
  "--pages_model=$work/pages.gguf --pages_variants=map,mmap" \
  "--pages_model=$work/pages.gguf --pages_variants=map,map" \
  "--pages_model=$work/pages.gguf --pages_rounds=0" "--pages_model=$work/none.gguf"; do
  # shellcheck disable=SC2086  # $bad holds one or two flags
  "$bench" --quick $bad > "$work/out.txt" 2> "$work/err.txt"
  rc=$?
  [ $rc -eq 2 ] || fail "$bad: exit $rc, expected 2"
  [ -s "$work/err.txt" ] || fail "$bad: no message"
  ! grep -q "memory read bandwidth" "$work/out.txt" || fail "$bad: it ran before refusing"
  echo "refused $bad: $(head -1 "$work/err.txt")"
done
echo PASS
