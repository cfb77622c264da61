#!/usr/bin/env bash
# Standard GGUF readers parse every kind of file glm-quantize writes: int8/int4 (row and group),
# tensor-parallel shards and zstd-compressed extents, checked by @huggingface/gguf against
# glm-inspect (tests/gguf_npm/check.mjs), plus glm-inspect --verify of every extent checksum.
# Usage: bash tests/quantize_readers_test.sh BUILD_DIR SOURCE_DIR   (exit 77 = skipped)
set -euo pipefail

BUILD=$(cd "${1:?usage: quantize_readers_test.sh BUILD_DIR SOURCE_DIR}" && pwd)
SOURCE=$(cd "${2:?usage: quantize_readers_test.sh BUILD_DIR SOURCE_DIR}" && pwd)
PKG_DIR="$SOURCE/tests/gguf_npm"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v node >/dev/null || skip "node is not installed (scripts/install-deps.sh installs nodejs)"
[ -d "$PKG_DIR/node_modules/@huggingface/gguf" ] ||
  skip "@huggingface/gguf is not installed yet (tests/gguf_npm_test.sh installs it)"
for bin in glm-quantize glm-inspect; do
  [ -x "$BUILD/$bin" ] || fail "$BUILD/$bin is not built (build it before running this test)"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/quantize-readers.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
CKPT="$SOURCE/tests/golden/tiny/ckpt"
IDS=mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2

n=0
while read -r name args; do
  # shellcheck disable=SC2086
  "$BUILD/glm-quantize" --input "$CKPT" --output "$TMP/$name.gguf" --special-tokens "$IDS" \
    --quiet $args >"$TMP/$name.log" 2>&1 || { cat "$TMP/$name.log"; fail "glm-quantize $args"; }
  "$BUILD/glm-inspect" --verify "$TMP/$name.gguf" >/dev/null || fail "glm-inspect --verify $name"
  "$BUILD/glm-inspect" --json --array_elems=-1 "$TMP/$name.gguf" >"$TMP/$name.json" ||
    fail "glm-inspect --json $name"
  node "$PKG_DIR/check.mjs" --gguf "$TMP/$name.gguf" --json "$TMP/$name.json"
  n=$((n + 1))
done <<'LIST'
int8_row      --bits 8
int4_row      --bits 4
int4_group64  --bits 4 --scheme group --group-size 64
int8_tp2      --bits 8 --tp 2
f16_tp4_zstd  --bits 16 --tp 4 --zstd 3
int4_zstd     --bits 4 --zstd 19
LIST
echo "PASS: $n files"
