#!/usr/bin/python3
"""Build the tiny GLM-130B-shaped fixture model and its golden outputs.

    /usr/bin/python3 tests/golden/make_golden.py [--diag]

Writes tests/golden/tiny/ (see tests/golden/README.md): a 2-rank SAT checkpoint
split exactly like tools/convert_tp.py, config.txt, and per-case .npy fixtures
computed by glm_reference.py.  Deterministic: a re-run rewrites byte-identical
files.  Fails loudly (AssertionError) if a self-check does not hold.

--diag additionally re-runs every case with float64 matmul accumulation and
reports how many fp16 outputs differ (sensitivity to the accumulation order;
nothing is written by it).
"""

import math
import os
import shutil
import sys
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import glm_reference as ref  # noqa: E402

OUT = os.path.join(HERE, "tiny")
CKPT = os.path.join(OUT, "ckpt")
ITERATION = 1
TP = 2
SEED = 130

CFG = ref.GLMConfig(num_layers=3, hidden=256, num_heads=2, head_dim=128, inner=320,
                    vocab=1024, max_seq=512)
SPECIAL = dict(mask=1000, gmask=1001, smask=1002, sop=1004, eop=1005, eos=2)
CTX_LOW, CTX_HIGH = 3, 1000      # random context / generated ids are drawn from [3, 1000)

torch.set_num_threads(1)         # fixed BLAS threading: byte-identical re-runs


def check(cond, msg):
    if not cond:
        raise AssertionError("SELF-CHECK FAILED: " + msg)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

def build_weights(rng):
    """Full (TP=1) state dict with the SAT key names of spec §2.2, all fp16."""
    C, H, D, Fi, V, L = CFG.hidden, CFG.num_heads, CFG.head_dim, CFG.inner, CFG.vocab, CFG.num_layers

    def t(shape, std, mean=0.0):
        return torch.from_numpy(rng.normal(mean, std, size=shape).astype(np.float16))

    inv_freq = ref.rotary_inv_freq(D, CFG.rotary_base)
    sd = OrderedDict()
    sd["transformer.word_embeddings.weight"] = t((V, C), 0.05)
    for i in range(L):
        p = "transformer.layers.%d." % i
        sd[p + "input_layernorm.weight"] = t((C,), 0.1, 1.0)
        sd[p + "input_layernorm.bias"] = t((C,), 0.05)
        sd[p + "attention.query_key_value.weight"] = t((3 * H * D, C), 0.08)
        sd[p + "attention.query_key_value.bias"] = t((3 * H * D,), 0.01)
        sd[p + "attention.dense.weight"] = t((C, H * D), 0.02)
        sd[p + "attention.dense.bias"] = t((C,), 0.01)
        sd[p + "attention.rotary_emb.inv_freq"] = inv_freq.clone()
        sd[p + "post_attention_layernorm.weight"] = t((C,), 0.1, 1.0)
        sd[p + "post_attention_layernorm.bias"] = t((C,), 0.05)
        sd[p + "mlp.dense_h_to_4h.weight"] = t((2 * Fi, C), 0.02)
        sd[p + "mlp.dense_h_to_4h.bias"] = t((2 * Fi,), 0.01)
        sd[p + "mlp.dense_4h_to_h.weight"] = t((C, Fi), 0.02)
        sd[p + "mlp.dense_4h_to_h.bias"] = t((C,), 0.01)
    sd["transformer.final_layernorm.weight"] = t((C,), 0.1, 1.0)
    sd["transformer.final_layernorm.bias"] = t((C,), 0.05)
    for k, v in sd.items():
        assert v.dtype == torch.float16, k
    return sd


def check_shards(full, shards):
    """Shard layout (spec §1.5, §1.9, §2.2) and convert_tp merge round trip (§2.3)."""
    C, H, D, Fi = CFG.hidden, CFG.num_heads, CFG.head_dim, CFG.inner
    hp, fp = H // TP, Fi // TP
    for r, s in enumerate(shards):
        check(list(s.keys()) == list(full.keys()), "shard key order")
        for i in range(CFG.num_layers):
            p = "transformer.layers.%d." % i
            W = full[p + "mlp.dense_h_to_4h.weight"]
            check(torch.equal(s[p + "mlp.dense_h_to_4h.weight"],
                              torch.cat((W[r * fp:(r + 1) * fp], W[Fi + r * fp:Fi + (r + 1) * fp]))),
                  "GLU split of h_to_4h rank %d" % r)
            Q = full[p + "attention.query_key_value.weight"]
            check(torch.equal(s[p + "attention.query_key_value.weight"],
                              Q[r * hp * 3 * D:(r + 1) * hp * 3 * D]), "qkv rows are whole heads")
            check(tuple(s[p + "attention.dense.weight"].shape) == (C, H * D // TP), "dense split")
            check(tuple(s[p + "mlp.dense_4h_to_h.weight"].shape) == (C, fp), "4h_to_h split")
        check(tuple(s["transformer.word_embeddings.weight"].shape) == (CFG.vocab // TP, C),
              "embedding split")
    merged = ref.merge_state_dicts(shards)
    check(list(merged.keys()) == list(full.keys()), "merged key order")
    for k in full:
        check(merged[k].dtype == full[k].dtype and torch.equal(merged[k], full[k]),
              "merge(split(W)) != W for " + k)


def save_checkpoint(shards):
    if os.path.isdir(CKPT):
        shutil.rmtree(CKPT)
    os.makedirs(os.path.join(CKPT, str(ITERATION)))
    with open(os.path.join(CKPT, "latest"), "w") as fh:
        fh.write(str(ITERATION))
    for r, s in enumerate(shards):
        torch.save({"module": s, "iteration": ITERATION},
                   os.path.join(CKPT, str(ITERATION), "mp_rank_%02d_model_states.pt" % r))


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

def build_cases(rng):
    S = SPECIAL

    def ctx(n):
        return [int(x) for x in rng.integers(CTX_LOW, CTX_HIGH, size=n)]

    cases = OrderedDict()
    cases["gmask"] = ctx(320) + [S["gmask"], S["sop"]] + ctx(15)
    c = ctx(330)
    c[310] = S["mask"]
    cases["mask"] = c + [S["eos"], S["sop"]] + ctx(12)
    c = ctx(330)
    c[302] = S["smask"]
    c[315] = S["smask"]
    cases["smask"] = c + [S["eos"], S["sop"]] + ctx(10)
    c = ctx(310)
    c[40] = S["gmask"]
    c[305] = S["mask"]
    cases["mask_with_gmask"] = c + [S["eos"], S["sop"]] + ctx(8)
    cases["short"] = ctx(3) + [S["gmask"], S["sop"]] + ctx(1)
    return cases


EXPECTED = {  # case: (mode, mask_position, prefix_len)
    "gmask": ("gMASK", 320, 321),
    "mask": ("MASK", 310, 331),
    "smask": ("sMASK", 302, 331),
    "mask_with_gmask": ("MASK", 305, 311),
    "short": ("gMASK", 3, 4),
}


def masks_for(ids):
    S = SPECIAL
    return ref.get_masks_and_position_ids(ids, S["mask"], S["gmask"], S["smask"], S["sop"])


# ---------------------------------------------------------------------------
# Self-checks
# ---------------------------------------------------------------------------

def rotary_self_check():
    D, base = CFG.head_dim, CFG.rotary_base
    inv_freq, cos, sin = ref.rotary_tables(D, CFG.max_seq, base)
    i = np.arange(0, D, 2, dtype=np.float64)
    inv64 = 1.0 / (float(base) ** (i / D))
    # the fp32 computation of inv_freq must round to the same fp16 as the exact value
    n_bad = int((inv_freq.numpy() != inv64.astype(np.float16)).sum())
    print("rotary: inv_freq fp16 entries differing from fp16(exact fp64): %d of %d" % (n_bad, D // 2))
    print("rotary: inv_freq[1] = %.11f (exact %.8f)" % (float(inv_freq[1]), inv64[1]))
    check(n_bad == 0, "inv_freq fp32 path disagrees with fp16(exact)")
    t = torch.arange(CFG.max_seq, dtype=torch.float32).half()
    ang_h = ref.f16(t.float()[:, None] * inv_freq.float()[None, :]).double().numpy()  # [P, D/2]
    exact = np.arange(CFG.max_seq, dtype=np.float64)[:, None] * inv64[None, :]
    ang_err = np.abs(ang_h - exact).max(axis=1)
    cos64 = np.cos(exact)
    cos_err = np.abs(cos.double().numpy()[:, :D // 2] - cos64).max(axis=1)
    figures = {}
    for p in (1, 100, 300, 500):
        print("rotary: p=%3d  max |angle_fp16 - angle_fp64| = %.3e rad   max |cos_fp16 - cos_fp64| = %.3e"
              % (p, ang_err[p], cos_err[p]))
        figures[p] = (float(ang_err[p]), float(cos_err[p]))
    # cos/sin from fp32 vs fp64 evaluation of the same fp16 angle: must round identically
    emb = torch.cat((torch.from_numpy(ang_h), torch.from_numpy(ang_h)), dim=-1)
    n_cos = int((torch.cos(emb).half() != cos).sum())
    n_sin = int((torch.sin(emb).half() != sin).sum())
    print("rotary: fp16 cos/sin table entries where fp32 and fp64 cos/sin round differently: %d / %d"
          % (n_cos, n_sin))
    small, large = ang_err[1:17].max(), ang_err[301:].max()
    csmall, clarge = cos_err[1:17].max(), cos_err[301:].max()
    print("rotary: max angle error p in [1,16] = %.3e, p in [301,%d] = %.3e; cos error %.3e vs %.3e"
          % (small, CFG.max_seq - 1, large, csmall, clarge))
    check(large > 10 * small, "fp16 angle rounding should matter far more past position 300")
    check(clarge > 10 * csmall, "cos table error should be far larger past position 300")
    check(ang_err[500] > ang_err[300] > ang_err[100] > ang_err[1], "angle error grows with p")
    return figures


def attention_self_check(name, info, out):
    pl = info.prefix_len
    T = info.positions.numel()
    stats = []
    for l, P in out["probs"].items():
        Pf = P.float()
        check(bool((Pf[:, :pl, pl:] == 0).all()),
              "%s layer %d: prefix rows attend to sop/generated columns" % (name, l))
        upper = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        upper[:, :pl] = False
        check(bool((Pf[:, upper] == 0).all()), "%s layer %d: causal part not causal" % (name, l))
        check(bool((Pf[:, pl:, pl:].diagonal(dim1=1, dim2=2) > 0).all()),
              "%s layer %d: generated rows must see themselves" % (name, l))
        rs = Pf.sum(-1)
        check(bool(((rs - 1).abs() < 0.05).all()), "%s layer %d: prob rows do not sum to 1" % (name, l))
        # non-uniformity: mean over rows of max prob * number of visible columns (1 = uniform)
        nvis = info.visible.sum(-1).float()
        stats.append(float((Pf.max(-1).values * nvis).mean()))
    return stats


def logits_self_check(name, out):
    lg = out["logits"].float()
    check(bool(torch.isfinite(lg).all()), name + ": non-finite logits")
    for l, x in enumerate(out["layers"]):
        check(bool(torch.isfinite(x.float()).all()), "%s: non-finite layer %d output" % (name, l))
    std = float(lg.std())
    check(std > 1e-2, name + ": degenerate logits (std %.3g)" % std)
    n_unique = torch.unique(out["logits"].view(torch.int16), dim=0).shape[0]
    check(n_unique == lg.shape[0], name + ": identical logit rows")
    check(float(lg.std(dim=1).min()) > 1e-3, name + ": a flat logit row")
    return std, float(lg.abs().max())


def prefix_invariance_check(name, weights, ids, info, out, rng_alt):
    """Changing [sop]-and-later tokens must leave every prefix row bit-identical."""
    pl = info.prefix_len
    alt = list(ids)
    for j in range(pl + 1, len(alt)):
        alt[j] = int(rng_alt.integers(CTX_LOW, CTX_HIGH))
    info2 = masks_for(alt)
    check(torch.equal(info2.positions, info.positions), name + ": positions changed")
    out2 = ref.forward(weights, CFG, alt, info2.positions, info2.visible)
    for l in range(CFG.num_layers):
        check(torch.equal(out["layers"][l][:pl], out2["layers"][l][:pl]),
              "%s: prefix rows of layer %d depend on generated tokens" % (name, l))
    check(torch.equal(out["logits"][:pl], out2["logits"][:pl]), name + ": prefix logits changed")


# ---------------------------------------------------------------------------

def save_npy(name, arr):
    np.save(os.path.join(OUT, name), arr, allow_pickle=False)


def t2n(x):
    return x.contiguous().numpy()


def main():
    diag = "--diag" in sys.argv[1:]
    rng = np.random.default_rng(SEED)
    full = build_weights(rng)

    shards = ref.split_state_dict(full, TP)
    check_shards(full, shards)
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith(".npy"):
            os.remove(os.path.join(OUT, f))
    save_checkpoint(shards)
    weights = ref.load_sat_checkpoint(CKPT)      # run the reference from the on-disk checkpoint
    for k in full:
        check(torch.equal(weights[k], full[k]) and weights[k].dtype == torch.float16,
              "checkpoint on disk does not merge back to the full weights: " + k)
    print("checkpoint: %d keys, TP=%d, merge(split) == full: OK" % (len(full), TP))

    with open(os.path.join(OUT, "config.txt"), "w") as fh:
        for k, v in [("num_layers", CFG.num_layers), ("hidden", CFG.hidden), ("inner", CFG.inner),
                     ("num_heads", CFG.num_heads), ("head_dim", CFG.head_dim), ("vocab", CFG.vocab),
                     ("max_seq", CFG.max_seq), ("mask", SPECIAL["mask"]), ("gmask", SPECIAL["gmask"]),
                     ("smask", SPECIAL["smask"]), ("sop", SPECIAL["sop"]), ("eop", SPECIAL["eop"]),
                     ("eos", SPECIAL["eos"]), ("seed", SEED)]:
            fh.write("%s %d\n" % (k, v))

    rotary_self_check()

    cases = build_cases(rng)
    bounds = ["# case tensor max_abs_diff rms_diff: reference with fp64 vs fp32 matmul accumulation"]
    rng_alt = np.random.default_rng(SEED + 1)
    for name, ids in cases.items():
        info = masks_for(ids)
        T = len(ids)
        mode, mpos, pl = EXPECTED[name]
        check((info.mode, info.mask_position, info.prefix_len) == (mode, mpos, pl),
              "%s: mode/mask_position/prefix_len = %s" % (name, (info.mode, info.mask_position,
                                                                   info.prefix_len)))
        pos = info.positions
        if mode == "gMASK":
            check(torch.equal(pos, torch.arange(T)), name + ": gMASK positions must be 0..T-1")
        else:
            check(bool((pos[pl:] == mpos).all()), name + ": sop/generated positions != mask index")
            check(torch.equal(pos[:pl], torch.arange(pl)), name + ": prefix positions")
        check(ids[pl] == SPECIAL["sop"], name + ": sop index")

        out = ref.forward(weights, CFG, ids, pos, info.visible, keep_probs=True)
        att = attention_self_check(name, info, out)
        std, amax = logits_self_check(name, out)
        if name in ("gmask", "mask"):
            prefix_invariance_check(name, weights, ids, info, out, rng_alt)
        print("case %-16s T=%3d mode=%-5s mask_position=%3d prefix_len=%3d positions %d..%d "
              "(sop/gen at %s)  logits std %.3f max|.| %.2f  attn peak x nvis %s"
              % (name, T, info.mode, info.mask_position, pl, int(pos.min()), int(pos.max()),
                 "%d.." % int(pos[pl]) if mode == "gMASK" else str(mpos), std, amax,
                 " ".join("%.1f" % a for a in att)))

        save_npy(name + ".ids.npy", np.asarray(ids, dtype=np.int32))
        save_npy(name + ".positions.npy", t2n(pos.to(torch.int32)))
        save_npy(name + ".prefix_len.npy", np.asarray([pl], dtype=np.int32))
        save_npy(name + ".embed.npy", t2n(out["embed"]))
        for l, x in enumerate(out["layers"]):
            save_npy("%s.layer%d.npy" % (name, l), t2n(x))
        save_npy(name + ".final_norm.npy", t2n(out["final_norm"]))
        save_npy(name + ".logits.npy", t2n(out["logits"]))
        if name == "gmask":
            for l, taps in out["intermediates"].items():
                for tap in ref.INTERMEDIATE_NAMES:
                    save_npy("%s.l%d.%s.npy" % (name, l, tap), t2n(taps[tap]))

        # How far a legitimate reordering of the reference's own sums moves each output: the
        # same model with float64 matmul accumulation instead of float32. The C++ golden test
        # allows a small multiple of this distance (tiny/reorder_bounds.txt).
        ref.MATMUL_DTYPE = torch.float64
        o64 = ref.forward(weights, CFG, ids, pos, info.visible)
        ref.MATMUL_DTYPE = torch.float32
        for key, a, b in ([("layer%d" % l, out["layers"][l], o64["layers"][l])
                           for l in range(CFG.num_layers)]
                          + [("final_norm", out["final_norm"], o64["final_norm"]),
                             ("logits", out["logits"], o64["logits"])]):
            d = (a.float() - b.float()).double()
            nd = int((a != b).sum())
            md = float(d.abs().max())
            rms = float(d.pow(2).mean().sqrt())
            bounds.append("%s %s %.9g %.9g" % (name, key, md, rms))
            if diag:
                print("  diag fp64-accumulate vs fp32: %-10s %6d of %7d fp16 values differ, "
                      "max |diff| %.3g, rms %.3g" % (key, nd, a.numel(), md, rms))

    with open(os.path.join(OUT, "reorder_bounds.txt"), "w") as fh:
        fh.write("\n".join(bounds) + "\n")

    total = 0
    for root, _, files in os.walk(OUT):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print("tests/golden/tiny: %.2f MB" % (total / 1e6))
    print("all self-checks passed")


if __name__ == "__main__":
    main()
