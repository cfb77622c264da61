#!/usr/bin/python3
"""Greedy blank filling on the tiny golden model, step by step with the PyTorch reference.

    /usr/bin/python3 tests/golden/make_greedy.py

Writes tests/golden/tiny/greedy.txt: for a few id prompts (each mask type, several blanks, a long
context, no room left), the tokens obtained by running glm_reference.forward on the whole
sequence at every step (no KV cache) and taking the argmax of the last row of the fp16 logits,
with generate.py's fill_blanks around it:

  * the mask type is [MASK] if one is in the prompt, else [sMASK], else [gMASK];
  * each blank: input = seq + [sop], positions and mask from get_masks_and_position_ids, at most
    out_seq_length - len(seq + [sop]) tokens, stopping after an end token (eop, eos);
  * the span (without its end token) replaces the first remaining mask of the type;
  * at the end one trailing eos is removed.

Two variants per prompt:
  greedy  plain argmax (glm-generate: BaseStrategy --top-k 1). On this random model with tied
          embeddings the last token's own logit wins by ~9.6, so it repeats [sop] for ever; with
          several blanks the next blank then has a generated [sop] in its context: recorded as
          'error layout' (see greedy_fill).
  ngram2  argmax after banning, as BeamSearchStrategy's no_repeat_ngram_size=2 does, every token
          that already followed the current last token in the generated part (glm-generate:
          BeamSearchStrategy --num-beams 1 --deterministic --no-repeat-ngram-size 2, which is
          greedy with the ban for one beam), with the special ids other than eop (1000-1004,
          1006-1023) banned as invalid_slices, as glm-generate's vocabulary filter does. Repeats
          and [sop] are banned, so the tokens are decided by the small logits, i.e. by attention,
          positions and masks.

Our fp16 logits may differ from the reference's by an ulp, so a prompt is kept only if at every
step the chosen logit beats the next allowed one by at least MARGIN (8 ulps at |logit| < 16);
prompts are drawn from a fixed seed until one passes. For ngram2 a prompt is also rejected if an
end token is among the 3 candidates of a step without being the first (then the one-beam search
would keep it as an ended beam that can win at the end). Deterministic: a re-run writes the same file.
"""

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import glm_reference as ref  # noqa: E402

TINY = os.path.join(HERE, "tiny")
OUT = os.path.join(TINY, "greedy.txt")
MARGIN = 0.0625

torch.set_num_threads(1)


def read_config():
    kv = {}
    with open(os.path.join(TINY, "config.txt")) as fh:
        for line in fh:
            k, v = line.split()
            kv[k] = int(v)
    cfg = ref.GLMConfig(num_layers=kv["num_layers"], hidden=kv["hidden"], num_heads=kv["num_heads"],
                        head_dim=kv["head_dim"], inner=kv["inner"], vocab=kv["vocab"],
                        max_seq=kv["max_seq"])
    return cfg, kv


CFG, KV = read_config()
MASK, GMASK, SMASK, SOP, EOP, EOS = (KV[k] for k in ("mask", "gmask", "smask", "sop", "eop", "eos"))
END = (EOP, EOS)
# The ids at and above [MASK] except eop: the reference's invalid_slices in the ngram2 variant, as
# glm-generate's vocabulary filter bans what is neither text nor an end token.
NON_TEXT = [i for i in range(MASK, CFG.vocab) if i != EOP]


def mode_of(ids):
    if MASK in ids:
        return "MASK", MASK
    if SMASK in ids:
        return "sMASK", SMASK
    return "gMASK", GMASK


def greedy_fill(weights, ids, out_seq_length, ngram):
    """Returns (mode, final ids or None, [generated tokens per blank], smallest decisive margin).

    None: a blank generated [sop] (or a mask id of a higher-priority type), so the next blank's
    context holds a [sop] before the real one. get_masks_and_position_ids (and DeriveLayout) then
    takes the generated [sop] as the end of the context, and generate.py's splice (bog = the first
    [sop]) breaks as well; glm-generate reports the query as an error (the vocabulary filter
    prevents it)."""
    mode, mask_id = mode_of(ids)
    seq, rounds, margin = list(ids), [], float("inf")
    while mask_id in seq:
        if SOP in seq or mode_of(seq)[0] != mode:
            return mode, None, rounds, margin
        mp = seq.index(mask_id)
        ctx = seq + [SOP]
        max_gen = min(out_seq_length, CFG.max_seq) - len(ctx)
        gen = []
        for _ in range(max(0, max_gen)):
            full = ctx + gen
            info = ref.get_masks_and_position_ids(full, MASK, GMASK, SMASK, SOP)
            out = ref.forward(weights, CFG, full, info.positions, info.visible,
                              intermediate_layers=[])
            row = out["logits"][-1].float()
            if ngram == 2:
                row[NON_TEXT] = -65504.0
                # Bigram bans of the generated part: (previous, token) pairs already produced.
                for j in range(len(ctx), len(full)):
                    if full[j - 1] == full[-1]:
                        row[full[j]] = -65504.0
            top = torch.topk(row, 3)
            margin = min(margin, float(top.values[0] - top.values[1]))
            tok = int(torch.argmax(row))
            if ngram == 2 and any(int(i) in END for i in top.indices[1:]):
                # A one-beam search keeps an end token among its 3 candidates as an ended beam
                # that may outscore the longer live beam at the end: not plain greedy any more.
                margin = -1.0
            gen.append(tok)
            if tok in END:
                break
        rounds.append(gen)
        span = gen[:-1] if gen and gen[-1] in END else gen
        seq = seq[:mp] + span + seq[mp + 1:]
    if seq and seq[-1] == EOS:
        seq = seq[:-1]
    return mode, seq, rounds, margin


def prompt(rng, kind):
    def ctx(n):
        return [int(x) for x in rng.integers(3, 1000, size=n)]

    if kind == "gmask":          # "A B ... [gMASK]": no eos (ends in MASK])
        return ctx(10) + [GMASK], 26
    if kind == "mask":           # "A [MASK] B": eos appended
        return ctx(6) + [MASK] + ctx(5) + [EOS], 28
    if kind == "smask2":         # two [sMASK] blanks filled left to right
        return ctx(4) + [SMASK] + ctx(4) + [SMASK] + ctx(3) + [EOS], 24
    if kind == "mask2_gmask":    # two [MASK]s; the [gMASK] stays as ordinary context
        return ctx(3) + [GMASK] + ctx(3) + [MASK] + ctx(4) + [MASK] + [EOS], 26
    if kind == "gmask_long":     # positions past 300
        return ctx(300) + [GMASK], 314
    if kind == "no_room":        # out_seq_length leaves no room: the blank stays empty
        return ctx(8) + [MASK] + ctx(3) + [EOS], 10
    raise ValueError(kind)


def main():
    weights = ref.load_sat_checkpoint(os.path.join(TINY, "ckpt"))
    rng = np.random.default_rng(2024)
    lines = ["# Greedy fill_blanks on the tiny model, from tests/golden/make_greedy.py.",
             "# case NAME mode MODE out_seq_length N; input IDS; then per variant (greedy, ngram2):",
             "# VARIANT min_margin M / round IDS (one line per blank, generated tokens) / output IDS,"
             "# or 'error layout' when a blank generated [sop] before another blank"]
    for kind in ("gmask", "mask", "smask2", "mask2_gmask", "gmask_long", "no_room"):
        for attempt in range(1000):
            ids, out_len = prompt(rng, kind)
            results = {v: greedy_fill(weights, ids, out_len, n) for v, n in (("greedy", 0),
                                                                               ("ngram2", 2))}
            if all(r[3] >= MARGIN for r in results.values()):
                break
        else:
            raise AssertionError("no prompt of kind %s with margin >= %g" % (kind, MARGIN))
        mode = results["greedy"][0]
        lines.append("case %s mode %s out_seq_length %d" % (kind, mode, out_len))
        lines.append("input " + ",".join(map(str, ids)))
        for variant, (_, final, rounds, margin) in results.items():
            print("%-12s attempt %3d %-6s: %d blanks, %s tokens, min margin %.4f" % (
                kind, attempt, variant, len(rounds), [len(r) for r in rounds], margin))
            lines.append("%s min_margin %.4f" % (variant, margin if margin != float("inf") else -1))
            for r in rounds:
                lines.append("round " + ",".join(map(str, r)))
            lines.append("error layout" if final is None else "output " + ",".join(map(str, final)))
    with open(OUT, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
