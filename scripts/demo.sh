#!/usr/bin/env bash
# End to end with no download: installs dependencies, builds, converts the committed 2-rank SAT
# checkpoint of a tiny GLM to a model file, verifies its checksums and computes logits for a [MASK]
# input whose positions pass 300; then generates text on the synthetic "demo" model (GLM-130B's
# vocabulary) with the weights streamed under a small host-memory budget, and measures decode time
# against its bound with glm-bench.
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
echo
echo "== glm-generate on the demo model, weights streamed under a 96 MiB host budget"
HOST_MEM=96M bash scripts/generate_demo.sh build
echo
echo "== glm-bench: decode time per token against the bound, streamed and resident"
build/glm-bench --synthetic tiny --layers 8 --workdir "$out" --host-mem 0,50%,full --batch 1
