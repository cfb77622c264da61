#!/usr/bin/env bash
# Regenerates the demo SentencePiece model (tests/data/tokenizer/demo.model) from the committed
# prose in tests/data/tokenizer/corpus.txt with Debian's spm_train. The demo and the tests use it in
# place of GLM-130B's ice_text.model (icetk), which real use needs. The output is deterministic
# (paths are repo-relative because spm_train stores them in the model).
#
# BPE because a unigram model cannot reach 1000 pieces on a 13 KB corpus; ids 0-3 are <unk>, <s>,
# </s>, <pad> as in ice_text.model, so with icetk's +20000 offset </s> is GLM-130B's eos 20002.
# Normalisation: only tabs and line breaks become spaces (whitespace.tsv; ice_text.model also turns
# "\n" into a space), no NFKC table: the file stays small and decode(encode(x)) == x for text made
# of the corpus's characters.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v spm_train >/dev/null || { echo "spm_train not found: apt-get install sentencepiece" >&2; exit 1; }
spm_train --input=tests/data/tokenizer/corpus.txt --model_prefix=tests/data/tokenizer/demo \
  --vocab_size=1000 --model_type=bpe --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 \
  --character_coverage=1.0 --normalization_rule_tsv=tests/data/tokenizer/whitespace.tsv \
  --num_threads=1 >/dev/null 2>&1 \
  || { echo "spm_train failed; rerun without the redirect to see why" >&2; exit 1; }
rm -f tests/data/tokenizer/demo.vocab
echo "wrote tests/data/tokenizer/demo.model ($(stat -c %s tests/data/tokenizer/demo.model) bytes," \
  "md5 $(md5sum < tests/data/tokenizer/demo.model | cut -c1-32))"
