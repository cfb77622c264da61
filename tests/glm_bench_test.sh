#!/usr/bin/env bash
# glm-bench end to end on a small synthetic model: one JSON line per configuration with the
# issue's keys, the streamed rows with their disk figures (busy time, blocks in flight, the
# paired probe), the resident row with its store-vs-direct comparison, peak RSS within its limit;
# and bad flags refused with exit 1 and a message. Values are checked for presence and sense
# (positive, within the budget), never for speed.
# Usage (CTest): bash tests/glm_bench_test.sh BUILD_DIR SOURCE_DIR. Exit 77: skipped.
set -uo pipefail
build=$(cd "$1" && pwd)
[ -x "$build/glm-bench" ] || { echo "SKIP: $build/glm-bench is not built"; exit 77; }
command -v python3 > /dev/null || { echo "SKIP: python3 not found"; exit 77; }
work=$(mktemp -d "$build/glm-bench-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $1"; exit 1; }

"$build/glm-bench" --synthetic tiny --layers 4 --workdir "$work" --host-mem 0,50%,full \
  --batch 1,2 --decode_steps 2 --prompt 4 --bw_bytes 64M --json --quiet \
  > "$work/out.jsonl" 2> "$work/err.txt" || { cat "$work/err.txt"; fail "glm-bench exited $?"; }
cat "$work/out.jsonl"
[ ! -e "$work/glm-bench-tiny-L4.gguf" ] || fail "the synthetic model was kept without --keep"
grep -q 'paired probe: ' "$work/err.txt" || fail "no paired probe line on stderr"
grep -q 'blocks in flight on average' "$work/err.txt" || fail "no blocks-in-flight figure"
grep -q 'fully resident: .* through the store' "$work/err.txt" || fail "no store-vs-direct line"

python3 - "$work/out.jsonl" <<'EOF' || exit 1
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)
if len(rows) != 6:
    fail(f"expected 6 configurations (3 budgets x 2 batches), got {len(rows)}")
need = ["host_mem_bytes", "batch", "decode_ms_per_token", "bound_ms_per_token", "disk_gbps",
        "peak_rss_bytes", "rss_limit_bytes", "measured_over_bound", "mean_blocks_in_flight",
        "paired_disk_gbps", "measured_over_paired_bound", "resident_store_ms_per_step"]
for r in rows:
    if "error" in r:
        fail(f"configuration failed: {r}")
    for k in need:
        if k not in r:
            fail(f"key {k} missing in {r['budget']} batch {r['batch']}")
    tag = f"budget {r['budget']} batch {r['batch']}"
    for k in ["decode_ms_per_token", "bound_ms_per_token", "disk_gbps", "peak_rss_bytes"]:
        if not r[k] > 0:
            fail(f"{tag}: {k} = {r[k]}")
    if r["peak_rss_bytes"] > r["rss_limit_bytes"]:
        fail(f"{tag}: peak RSS {r['peak_rss_bytes']} over its limit {r['rss_limit_bytes']}")
    streamed = r["resident_layers"] < r["num_layers"]
    if streamed:
        if not (r["paired_disk_gbps"] > 0 and r["measured_over_paired_bound"] > 0):
            fail(f"{tag}: streamed, but no paired probe figures")
        if not 0 < r["mean_blocks_in_flight"] <= 8:
            fail(f"{tag}: {r['mean_blocks_in_flight']} blocks in flight (queue depth 8)")
        if r["resident_store_ms_per_step"] != 0:
            fail(f"{tag}: streamed, but a resident comparison")
    else:
        if r["measured_over_paired_bound"] != 0:
            fail(f"{tag}: fully resident, but a paired probe")
        if not (r["resident_store_ms_per_step"] > 0 and r["resident_direct_ms_per_step"] > 0):
            fail(f"{tag}: fully resident, but no store-vs-direct figures")
budgets = sorted({r["budget"] for r in rows})
if budgets != ["0", "50%", "full"]:
    fail(f"budgets {budgets}")
for r in rows:  # (open_huge_bytes may be > 0 where transparent huge pages are "always")
    if r.get("huge_pages") is not False or not r.get("open_huge_bytes", -1) >= 0:
        fail(f"without --huge_pages: {r.get('huge_pages')}, {r.get('open_huge_bytes')} bytes")
print("json: ok")
EOF

# --huge_pages: the resident layers asked for huge pages, and the JSON says so.
"$build/glm-bench" --synthetic tiny --layers 4 --workdir "$work" --host-mem full --huge_pages \
  --decode_steps 2 --prompt 4 --bw_bytes 64M --baseline=false --json --quiet \
  > "$work/huge.jsonl" 2> "$work/err.txt" || { cat "$work/err.txt"; fail "--huge_pages exited $?"; }
grep -q '"huge_pages":true' "$work/huge.jsonl" || fail "--huge_pages: no \"huge_pages\":true"

# Bad input: exit 1 with a message naming the problem.
expect_error() {  # expect_error "what" "message part" args...
  local what=$1 part=$2
  shift 2
  local out rc
  out=$("$build/glm-bench" --quiet "$@" 2>&1)
  rc=$?
  [ "$rc" = 1 ] || fail "$what: exit $rc, expected 1 ($out)"
  grep -q -- "$part" <<<"$out" || fail "$what: no '$part' in: $out"
  echo "refused as expected: $what"
}
expect_error "no model" "exactly one of --model" --host-mem 0
expect_error "missing file" "$work/none.gguf" --model "$work/none.gguf"
expect_error "bad budget" "--host-mem" --synthetic tiny --layers 2 --workdir "$work" --host-mem 150%
expect_error "bad batch" "--batch" --synthetic tiny --layers 2 --workdir "$work" --batch 0
echo "not a model" > "$work/junk.gguf"
expect_error "not a model file" "$work/junk.gguf" --model "$work/junk.gguf"
# GPU mode: refusals that come before any device is touched.
expect_error "GPU mode, model and synthetic" "not both" --gpu-mem 0 --model "$work/junk.gguf" \
  --synthetic glm130b-L2
# A model file in GPU mode: bench-gpu opens it before the device (built with CUDA: the file is
# named; without: bench-gpu is missing or a stub).
if [ -x "$build/glm-generate-gpu" ]; then
  expect_error "GPU mode on a junk model file" "$work/junk.gguf" --gpu-mem 0 --model "$work/junk.gguf"
else
  expect_error "GPU mode without CUDA" "bench-gpu" --gpu-mem 0 --model "$work/junk.gguf"
fi
expect_error "GPU mode, other shapes" "GLM-130B's layer" --gpu-mem 0 --synthetic tiny
expect_error "GPU mode, bad budget" "--gpu-mem" --gpu-mem 24G,x
echo PASS
