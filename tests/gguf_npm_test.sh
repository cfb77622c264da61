#!/usr/bin/env bash
# Independent reader check: our GGUF files parsed by @huggingface/gguf must match glm-inspect.
# Usage: bash tests/gguf_npm_test.sh BUILD_DIR SOURCE_DIR   (exit 77 = skipped, with the reason)
set -euo pipefail

BUILD=$(cd "${1:?usage: gguf_npm_test.sh BUILD_DIR SOURCE_DIR}" && pwd)
SOURCE=$(cd "${2:?usage: gguf_npm_test.sh BUILD_DIR SOURCE_DIR}" && pwd)
PKG_DIR="$SOURCE/tests/gguf_npm"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v node >/dev/null || skip "node is not installed (scripts/install-deps.sh installs nodejs)"
command -v npm >/dev/null || skip "npm is not installed (scripts/install-deps.sh installs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || skip "node $(node --version) is too old for @huggingface/gguf (needs >= 18)"
for bin in gguf_test glm-inspect; do
  [ -x "$BUILD/$bin" ] || fail "$BUILD/$bin is not built (build it before running this test)"
done

# Install the pinned reader unless that exact version is already there (works offline then).
want=$(node -p "require('$PKG_DIR/package.json').dependencies['@huggingface/gguf']")
have=$(node -p "try { require('$PKG_DIR/node_modules/@huggingface/gguf/package.json').version }
                catch { '' }")
if [ "$have" != "$want" ]; then
  if ! log=$(cd "$PKG_DIR" && npm install --no-audit --no-fund 2>&1); then
    echo "$log" | tail -n 20
    # A failing install with a reachable registry is a real error; an unreachable one is a skip.
    if ! (cd "$PKG_DIR" && timeout 60 npm ping >/dev/null 2>&1); then
      skip "the npm registry is unreachable, cannot install @huggingface/gguf@$want"
    fi
    fail "npm install of @huggingface/gguf@$want failed (registry reachable)"
  fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/gguf-npm.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# check FILE [--pattern]: glm-inspect's view and verification, then the independent reader's.
check() {
  local file=$1
  shift
  "$BUILD/glm-inspect" --json --array_elems=-1 "$file" >"$TMP/inspect.json" ||
    fail "glm-inspect --json $file failed"
  "$BUILD/glm-inspect" --verify "$file" >/dev/null || fail "glm-inspect --verify $file failed"
  node "$PKG_DIR/check.mjs" --gguf "$file" --json "$TMP/inspect.json" "$@"
}

GLM_GGUF_SAMPLE_OUT="$TMP/sample.gguf" "$BUILD/gguf_test" --gtest_filter='GgufSample.*' \
  >"$TMP/sample.log" 2>&1 || { cat "$TMP/sample.log"; fail "gguf_test could not write the sample"; }
[ -s "$TMP/sample.gguf" ] || { cat "$TMP/sample.log"; fail "gguf_test wrote no sample file"; }
check "$TMP/sample.gguf" --pattern

# A real converted checkpoint, once glm-quantize and the tiny golden checkpoint exist.
if [ -x "$BUILD/glm-quantize" ] && [ -e "$SOURCE/tests/golden/tiny/ckpt" ]; then
  "$BUILD/glm-quantize" --input "$SOURCE/tests/golden/tiny/ckpt" --output "$TMP/tiny.gguf" \
    --bits 16 --special-tokens mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2 \
    >"$TMP/quantize.log" 2>&1 || { cat "$TMP/quantize.log"; fail "glm-quantize failed"; }
  check "$TMP/tiny.gguf"
else
  echo "note: $BUILD/glm-quantize or $SOURCE/tests/golden/tiny/ckpt not there yet;" \
       "checked the gguf_test sample only"
fi
echo "PASS"
