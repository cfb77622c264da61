#!/usr/bin/env bash
# glm-generate end to end without a checkpoint: synthesizes the "demo" model (GLM-130B's 150528-id
# vocabulary and special ids on a 4-layer, 256-wide body with random weights), then fills a [MASK]
# blank and continues a [gMASK] prompt with the demo SentencePiece tokenizer, streaming the tokens
# and printing the throughput. Real use needs a converted GLM-130B model and icetk's
# ice_text.model (docs/glm-generate.md).
#
#   scripts/generate_demo.sh [BUILD_DIR]     (default: build; builds the two tools if missing)
#   HOST_MEM=1G scripts/generate_demo.sh     streams the weights under a host-memory budget
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [ ! -x "$build/glm-generate" ] || [ ! -x "$build/glm-synth" ]; then
  cmake -S . -B "$build" -G Ninja >/dev/null
  cmake --build "$build" --target glm-synth glm-generate
fi
out=$build/generate-demo
mkdir -p "$out"
"$build/glm-synth" --preset demo --output "$out/demo.gguf" --quiet
cat > "$out/prompts.txt" <<'PROMPTS'
A cache is a small, fast [MASK] that keeps copies of recently used data.
Streaming works best when the transfer of the next layer
PROMPTS
echo "== glm-generate on the demo model: random weights, so the generated text is gibberish."
echo "   That is expected: this shows the pipeline (tokenizer, blank filling, sampling, streaming),"
echo "   not a language model. Prompts: $out/prompts.txt"
"$build/glm-generate" --model "$out/demo.gguf" --tokenizer tests/data/tokenizer/demo.model \
  --input-source "$out/prompts.txt" --output-path "$out/samples" --out-seq-length 48 \
  --temperature 0.9 --top_k 40 --top_p 0.9 ${HOST_MEM:+--host-mem "$HOST_MEM"}
echo "== answers written to $out/samples/ (one file per prompt, plain text)"
