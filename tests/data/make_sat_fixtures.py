# Writes the small SAT checkpoints under tests/data/sat/ that tests/sat_checkpoint_test.cc reads.
#
# Run with the Debian interpreter that has torch 1.13:
#   /usr/bin/python3 tests/data/make_sat_fixtures.py
# The shards are made with tools/convert_tp.py's split rule and the expected tensors with its merge
# rule (spec §2.3), applied to the files as torch.load reads them back, so the C++ reader is
# checked against the reference semantics, not against itself.
import argparse
import io
import os
import random
import shutil
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "sat")

# A GLM-shaped model, tiny: C hidden, F inner (GeGLU half), V vocab, L layers, D/2 rotary freqs.
C, F, V, L, HALF_D = 12, 24, 18, 2, 4

# tools/convert_tp.py, verbatim lists.
SEQUENTIAL_LAYERS = [
    "input_layernorm.weight", "input_layernorm.bias", "attention.dense.bias",
    "post_attention_layernorm.weight", "post_attention_layernorm.bias", "mlp.dense_4h_to_h.bias",
    "attention.rotary_emb.inv_freq", "final_layernorm.weight", "final_layernorm.bias",
]
GLU_LAYERS = ["mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias"]
LAYER_CONCAT_DIM = {"attention.dense.weight": 1, "mlp.dense_4h_to_h.weight": 1}


def name_of(key):
    return ".".join(key.split(".")[3 if key.startswith("transformer.layers") else 1:])


def full_state_dict(gen):
    """TP=1 fp32 weights with GLM key names and shapes (spec §2.2, scaled down)."""
    sd = OrderedDict()
    sd["transformer.word_embeddings.weight"] = torch.randn(V, C, generator=gen)
    for i in range(L):
        p = f"transformer.layers.{i}."
        sd[p + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        sd[p + "input_layernorm.bias"] = 0.1 * torch.randn(C, generator=gen)
        sd[p + "attention.query_key_value.weight"] = torch.randn(3 * C, C, generator=gen) / 4
        sd[p + "attention.query_key_value.bias"] = torch.randn(3 * C, generator=gen) / 8
        sd[p + "attention.dense.weight"] = torch.randn(C, C, generator=gen) / 4
        sd[p + "attention.dense.bias"] = torch.randn(C, generator=gen) / 8
        sd[p + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
        sd[p + "post_attention_layernorm.bias"] = 0.1 * torch.randn(C, generator=gen)
        sd[p + "mlp.dense_h_to_4h.weight"] = torch.randn(2 * F, C, generator=gen) / 4
        sd[p + "mlp.dense_h_to_4h.bias"] = torch.randn(2 * F, generator=gen) / 8
        sd[p + "mlp.dense_4h_to_h.weight"] = torch.randn(C, F, generator=gen) / 4
        sd[p + "mlp.dense_4h_to_h.bias"] = torch.randn(C, generator=gen) / 8
        sd[p + "attention.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(HALF_D) / HALF_D))
    sd["transformer.final_layernorm.weight"] = 1 + 0.1 * torch.randn(C, generator=gen)
    sd["transformer.final_layernorm.bias"] = 0.1 * torch.randn(C, generator=gen)
    # Values where fp32/bf16 -> fp16 rounding matters: ties to even, subnormals, overflow, -0, nan.
    e = sd["transformer.word_embeddings.weight"].view(-1)
    e[:12] = torch.tensor([1 + 2**-11, 1 + 3 * 2**-11, -(1 + 2**-11), 2**-24 * 1.5, 2**-25,
                           3e-6, 65519.0, 65520.0, 1e6, -0.0, float("nan"), 6.1e-5])
    return sd


def split(sd, tp, clone=True):
    """convert_tp.py create_checkpoint/merge_weights for original_tp=1 -> target_tp=tp."""
    ranks = [OrderedDict() for _ in range(tp)]
    for key, w in sd.items():
        name = name_of(key)
        for r in range(tp):
            if name in SEQUENTIAL_LAYERS:
                ranks[r][key] = w
            elif name in GLU_LAYERS:
                chunks = torch.chunk(w, tp * 2, dim=0)
                ranks[r][key] = torch.cat([chunks[r], chunks[tp + r]], dim=0)
            else:
                part = torch.chunk(w, tp, dim=LAYER_CONCAT_DIM.get(name, 0))[r]
                ranks[r][key] = part.clone() if clone else part  # no clone: a view
    return ranks


def merge(rank_sds):
    """convert_tp.py merge for original_tp=len(rank_sds) -> target_tp=1."""
    out = OrderedDict()
    for key in rank_sds[0]:
        name = name_of(key)
        if name in SEQUENTIAL_LAYERS:
            out[key] = rank_sds[0][key]
        elif name in GLU_LAYERS and len(rank_sds) > 1:
            part1, part2 = [], []
            for sd in rank_sds:
                c = torch.chunk(sd[key], 2, dim=0)
                part1.append(c[0])
                part2.append(c[1])
            out[key] = torch.cat(part1 + part2, dim=0)
        else:
            out[key] = torch.cat([sd[key] for sd in rank_sds], dim=LAYER_CONCAT_DIM.get(name, 0))
    return out


def rank_path(ckpt, iteration, r):
    return os.path.join(ckpt, iteration, f"mp_rank_{r:02d}_model_states.pt")


def write_checkpoint(name, iteration, rank_sds, extra=None, protocol=2, latest_text=None):
    ckpt = os.path.join(OUT, name)
    os.makedirs(os.path.join(ckpt, iteration))
    with open(os.path.join(ckpt, "latest"), "w") as f:
        f.write(latest_text if latest_text is not None else iteration)
    for r, sd in enumerate(rank_sds):
        top = {"module": sd}
        top.update(extra or {})
        torch.save(top, rank_path(ckpt, iteration, r), pickle_protocol=protocol)
    # Expected values: merge what torch.load reads back.
    loaded = [torch.load(rank_path(ckpt, iteration, r))["module"] for r in range(len(rank_sds))]
    merged = merge(loaded)
    f16 = [t.half().reshape(-1) for t in merged.values()]
    f32 = [t.float().reshape(-1) for t in merged.values()]
    np.save(os.path.join(ckpt, "expected.f16.npy"), torch.cat(f16).numpy())
    np.save(os.path.join(ckpt, "expected.f32.npy"), torch.cat(f32).numpy())
    with open(os.path.join(ckpt, "expected.txt"), "w") as f:
        for k, t in merged.items():
            f.write(" ".join([k, str(t.dtype).replace("torch.", "")] + [str(d) for d in t.shape]))
            f.write("\n")


def save_bad(name, obj):
    os.makedirs(os.path.join(OUT, "bad"), exist_ok=True)
    torch.save(obj, os.path.join(OUT, "bad", name))


def malicious_pickle():
    """A state dict whose one value is REDUCE(os.system, ('echo pwned',)), written opcode by opcode
    so that nothing here (or in any test) ever unpickles it."""
    def unicode(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b
    p = b"\x80\x02}q\x00(" + unicode("module") + b"}q\x01("
    p += unicode("transformer.final_layernorm.bias")
    p += b"cos\nsystem\nq\x02" + unicode("echo pwned") + b"\x85R" + b"u" + unicode("iteration")
    p += b"K\x01u."
    return p


def write_malicious():
    ckpt = os.path.join(OUT, "malicious")
    os.makedirs(os.path.join(ckpt, "1"))
    with open(os.path.join(ckpt, "latest"), "w") as f:
        f.write("1\n")
    with zipfile.ZipFile(rank_path(ckpt, "1", 0), "w", zipfile.ZIP_STORED) as z:
        # A fixed timestamp keeps the fixture byte-identical across runs.
        z.writestr(zipfile.ZipInfo("mp_rank_00_model_states/data.pkl", (2022, 8, 1, 0, 0, 0)),
                   malicious_pickle())
        z.writestr(zipfile.ZipInfo("mp_rank_00_model_states/version", (2022, 8, 1, 0, 0, 0)),
                   "3\n")


def main():
    parser = argparse.ArgumentParser()
    parser.parse_args()
    if os.path.exists(OUT):
        shutil.rmtree(OUT)
    gen = torch.Generator().manual_seed(130)
    torch.manual_seed(130)  # the saved torch_rng_state
    np.random.seed(130)
    random.seed(130)
    sd = full_state_dict(gen)

    # (a) TP=1 fp32, the default pickle protocol 2.
    write_checkpoint("tp1_fp32", "1000", split(sd, 1), latest_text="1000\n")

    # (b) TP=3 bf16 with the GLU-aware split; pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL).
    bf16 = OrderedDict((k, v.bfloat16()) for k, v in sd.items())
    write_checkpoint("tp3_bf16", "49300", split(bf16, 3), protocol=4)

    # (c)+(d) TP=2 fp16, latest = "release", module as a real state_dict (OrderedDict with
    # _metadata) holding nn.Parameters, and the extra top-level keys SAT's save_checkpoint writes.
    f16 = OrderedDict((k, v.half()) for k, v in sd.items())
    ranks = split(f16, 2)
    for r in range(2):
        m = OrderedDict((k, torch.nn.Parameter(v, requires_grad=False)) if "dense" in k else (k, v)
                        for k, v in ranks[r].items())
        m._metadata = OrderedDict({"": {"version": 1}, "transformer": {"version": 1}})
        ranks[r] = m
    args = argparse.Namespace(hidden_size=C, num_layers=L, fp16=True, lr=1e-4, name="glm",
                              tags={"a", "b"}, sizes=(1, 2), layers=slice(0, 2))
    extra = {"iteration": 1000, "args": args, "np_rng_state": np.random.get_state(),
             "random_rng_state": random.getstate(), "torch_rng_state": torch.get_rng_state(),
             "rng_tracker_states": {"model-parallel-rng": torch.get_rng_state()},
             "np_scalar": np.float32(0.5), "client_lr_scheduler": {}}
    write_checkpoint("tp2_fp16_release", "release", ranks, extra=extra, latest_text="release\n")

    # (f) TP=2 fp16 views: shards saved without convert_tp's clone(), so each rank file holds the
    # whole storage, with storage offsets and (for dim-1 splits) non-contiguous strides; GLU shards
    # and qkv are saved transposed-in-memory. Pickle protocol 5.
    views = split(f16, 2, clone=False)
    for r in range(2):
        for k in views[r]:
            if "dense_h_to_4h" in k or "query_key_value.weight" in k:
                views[r][k] = views[r][k].t().contiguous().t() if views[r][k].dim() == 2 else \
                    views[r][k]
    write_checkpoint("tp2_views_fp16", "7", views, protocol=5)

    # (e) a pickle that names os.system.
    write_malicious()

    # Single rank files for the disagreement tests: each replaces rank 1 of tp2_fp16_release
    # (or rank 0 for the module-level errors).
    base = split(f16, 2)
    r1 = OrderedDict(base[1])
    qkv = "transformer.layers.1.attention.query_key_value.weight"
    r1[qkv] = torch.zeros(3 * C // 2 - 2, C).half()
    save_bad("rank1_shape_mismatch.pt", {"module": r1})
    r1 = OrderedDict(base[1])
    del r1["transformer.layers.1.mlp.dense_4h_to_h.bias"]
    save_bad("rank1_missing_key.pt", {"module": r1})
    r1 = OrderedDict(base[1])
    r1["transformer.layers.1.mlp.extra.weight"] = torch.zeros(2).half()
    save_bad("rank1_extra_key.pt", {"module": r1})
    r1 = OrderedDict((k, v.bfloat16()) for k, v in base[1].items())
    save_bad("rank1_dtype_mismatch.pt", {"module": r1})
    save_bad("no_module.pt", {"iteration": 5, "model": base[0]})
    r0 = OrderedDict(base[0])
    r0["transformer.layers.0.attention.dense.bias"] = [1, 2, 3]
    save_bad("module_not_tensor.pt", {"module": r0})
    r0 = OrderedDict(base[0])
    r0["transformer.final_layernorm.bias"] = r0["transformer.final_layernorm.bias"].double()
    save_bad("double_dtype.pt", {"module": r0})

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT}: {total} bytes")
    assert total < 1_500_000


if __name__ == "__main__":
    main()
