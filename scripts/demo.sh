#!/usr/bin/env bash
# End-to-end on the built-in tiny model (no downloads): installs dependencies, builds, converts the
# committed 2-rank SAT checkpoint to a model file, verifies its checksums, and computes logits for
# a [MASK] blank-filling input whose positions pass 300.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
out=build/demo
mkdir -p "$out"
tokens=mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2
echo "== glm-quantize: SAT checkpoint (2 TP ranks) -> $out/tiny.gguf"
build/glm-quantize --input tests/golden/tiny/ckpt --output "$out/tiny.gguf" --bits 16 \
  --special-tokens "$tokens" --max-seq 512 --force
echo "== glm-inspect --verify"
build/glm-inspect --verify "$out/tiny.gguf" | tail -n 4
# 310 context tokens, [MASK], 19 more, </s>, [sop], then two generated tokens.
ids=$(seq -s, 10 319),1000,$(seq -s, 400 418),2,1004,77,78
echo "== glm-logits on a [MASK] input of 334 tokens"
build/glm-logits --model "$out/tiny.gguf" --ids "$ids" --output "$out/logits.npy" --verbose
