"""Golden PyTorch reference of the GLM-130B forward pass (SAT 0.2.12 + GLM-130B HEAD).

This is a readable transcription of the inference path described in
/work/shared/docs/glm130b-spec.md (section numbers below refer to that file).
It is parameterised by GLMConfig so that the same code runs the real 70-layer
shape or the tiny fixture model built by make_golden.py.

Numerics: the reference runs on GPU in fp16.  CPU fp16 kernels in torch 1.13
are incomplete (and would not round like cuBLAS anyway), so every rounding
point is made explicit here:

  * activations are kept as torch.float16 tensors between ops;
  * every op is evaluated in float32 and rounded to fp16 exactly where the
    spec says the GPU reference rounds (helper `f16`);
  * matmuls are evaluated in float32 (fp32 accumulate, as cuBLAS does) and
    rounded to fp16 once, with the bias fused into that single rounding.

Run with Debian's interpreter: /usr/bin/python3 (torch 1.13 + numpy).
"""

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

HALF = torch.float16
FP32 = torch.float32

# Matmul accumulation dtype.  float32 mirrors cuBLAS (fp32 accumulate); the
# generator can switch it to float64 for a sensitivity diagnostic only.
MATMUL_DTYPE = FP32


@dataclass(frozen=True)
class GLMConfig:
    num_layers: int      # L
    hidden: int          # C = num_heads * head_dim
    num_heads: int       # H
    head_dim: int        # D
    inner: int           # F (GeGLU inner size; h_to_4h produces 2F)
    vocab: int           # V (padded vocab; rows of word_embeddings)
    max_seq: int = 2048  # rotary cache length (§1.6: built once for max_sequence_length)
    layernorm_eps: float = 1e-5   # §1.1 / §1.4
    rotary_base: int = 10000      # §1.6


GLM130B_CONFIG = GLMConfig(num_layers=70, hidden=12288, num_heads=96, head_dim=128,
                           inner=32768, vocab=150528, max_seq=2048)


def f16(x):
    """Round a float32 tensor to fp16 (round-to-nearest-even)."""
    return x.to(HALF)


def _mm(a, b):
    """a @ b with fp32 accumulation (MATMUL_DTYPE); result NOT rounded to fp16."""
    return a.to(MATMUL_DTYPE) @ b.to(MATMUL_DTYPE)


# ---------------------------------------------------------------------------
# Elementary ops
# ---------------------------------------------------------------------------

def layer_norm(x, weight, bias, eps=1e-5):
    """§1.4 (apex FusedLayerNorm, cuApplyLayerNorm_).

    mean and biased variance in fp32; invstd = rsqrt(var + eps) in fp32;
    n = fp16(invstd * (x - mean)); out = fp16(float(g) * float(n) + float(b)),
    a single rounding of the affine (the fma.rn.f16 contraction of apex's
    `gamma * V(c_invvar*(x-mu)) + beta`).  float(g)*float(n) is exact in fp32
    (11-bit x 11-bit mantissas), so this equals fp16(fmaf(g, n, b)).
    """
    xf = x.float()
    mean = xf.mean(dim=-1, keepdim=True)
    var = ((xf - mean) ** 2).mean(dim=-1, keepdim=True)          # biased (divide by N)
    invstd = torch.rsqrt(var + torch.tensor(eps, dtype=FP32))    # fp32
    n = f16(invstd * (xf - mean))                                # rounding 1
    return f16(weight.float() * n.float() + bias.float())        # rounding 2 (single, affine)


def linear(x, weight, bias=None):
    """F.linear / ColumnParallelLinear (§1.3 "Linear bias add", §1.12 at TP=1):
    out = fp16(x @ W^T + b), fp32 accumulate, bias fused, one rounding."""
    out = _mm(x, weight.t())
    if bias is not None:
        out = out + bias.to(out.dtype)
    return f16(out)


def gelu_erf(x):
    """Exact erf GELU (F.gelu default), evaluated in fp32 (§1.9). Returns float32.
    Same expression as PyTorch's CUDA GeluKernel: x * 0.5f * (1 + erff(x * (float)M_SQRT1_2))."""
    xf = x.float()
    return xf * 0.5 * (1.0 + torch.erf(xf * torch.tensor(math.sqrt(0.5), dtype=FP32)))


# ---------------------------------------------------------------------------
# Rotary (§1.6)
# ---------------------------------------------------------------------------

def rotary_inv_freq(head_dim, base=10000):
    """inv_freq = 1/(base ** (arange(0, D, 2).float() / D)) in fp32, then .half()."""
    exponent = torch.arange(0, head_dim, 2).float() / head_dim
    return f16(1.0 / (base ** exponent))                          # fp16 [D/2]


def rotary_tables(head_dim, max_seq, base=10000):
    """RotaryEmbedding cache for positions 0..max_seq-1 (§1.6).

    t = arange(max_seq) as fp16 (exact up to 2048);
    ang = fp16(float(t) * float(inv_freq_h))  (einsum in fp16: one rounding of an
          exact fp32 product);
    emb = cat(ang, ang) over D; cos = fp16(cos(float(emb))), sin likewise.
    Returns (inv_freq fp16 [D/2], cos fp16 [max_seq, D], sin fp16 [max_seq, D]).
    """
    inv_freq = rotary_inv_freq(head_dim, base)
    t = torch.arange(max_seq, dtype=FP32).to(HALF)
    ang = f16(t.float()[:, None] * inv_freq.float()[None, :])     # [max_seq, D/2]
    emb = torch.cat((ang, ang), dim=-1)                           # [max_seq, D]
    return inv_freq, f16(torch.cos(emb.float())), f16(torch.sin(emb.float()))


def rotate_half(x):
    """NeoX style: cat(-x[..., D/2:], x[..., :D/2]) (not interleaved)."""
    d2 = x.shape[-1] // 2
    return torch.cat((-x[..., d2:], x[..., :d2]), dim=-1)


def apply_rotary(x, cos, sin, positions):
    """x: fp16 [T, H, D]; positions: long [T].  q' = fp16(q*cos + rotate_half(q)*sin)
    computed in fp32 with a single rounding (the jit-fused form, §1.6 [ambiguous])."""
    c = cos[positions].float()[:, None, :]                        # [T, 1, D]
    s = sin[positions].float()[:, None, :]
    return f16(x.float() * c + rotate_half(x).float() * s)


# ---------------------------------------------------------------------------
# Masks and position ids (§1.8, generate.py get_masks_and_position_ids)
# ---------------------------------------------------------------------------

@dataclass
class MaskInfo:
    mode: str              # "MASK", "sMASK" or "gMASK"
    context_length: int    # index of the first sop + 1
    prefix_len: int        # context_length - 1: columns visible to every row
    mask_position: int     # index of the first occurrence of the chosen mask id (-1 if absent)
    positions: torch.Tensor  # long [T]
    visible: torch.Tensor    # bool [T, T], True = may attend (the SAT mask is its negation)


def get_masks_and_position_ids(ids, mask_id, gmask_id, smask_id, sop_id):
    """Transcription of GLM-130B generate.py get_masks_and_position_ids for a whole
    given sequence (context + [sop] + generated tokens).

    Mask choice (fill_blanks, §5.4): [MASK] if any MASK id occurs before sop, else
    [sMASK] if any sMASK id occurs before sop, else [gMASK].  mask_position is the
    index of the first occurrence of the chosen mask id.

      context_length = index of first sop + 1
      attention_mask = ones(T, T).tril_(); attention_mask[:, :context_length-1] = 1
      position_ids = arange(T); if not gmask: position_ids[context_length-1:] = mask_position
    """
    ids = [int(t) for t in ids]
    T = len(ids)
    if sop_id not in ids:
        raise ValueError("sequence has no sop token")
    context_length = ids.index(sop_id) + 1
    prefix = ids[:context_length - 1]
    if mask_id in prefix:
        mode, chosen = "MASK", mask_id
    elif smask_id in prefix:
        mode, chosen = "sMASK", smask_id
    else:
        mode, chosen = "gMASK", gmask_id
    mask_position = prefix.index(chosen) if chosen in prefix else -1

    visible = torch.ones(T, T).tril_()
    visible[:, :context_length - 1] = 1
    visible = visible > 0.5

    positions = torch.arange(T, dtype=torch.long)
    if mode != "gMASK":
        positions[context_length - 1:] = mask_position
    return MaskInfo(mode, context_length, context_length - 1, mask_position, positions, visible)


# ---------------------------------------------------------------------------
# Attention (§1.5, §1.7)
# ---------------------------------------------------------------------------

def attention_core(q_rot, k_rot, v, visible, layer_id, head_dim):
    """q_rot, k_rot, v: fp16 [T, H, D]; visible: bool [T, T].
    Returns (ctx fp16 [T, H*D], probs fp16 [H, T, T])."""
    coeff = float(layer_id + 1)                                   # query_key_layer_scaling_coeff
    # query_layer / (math.sqrt(D) * coeff): CUDA div by a CPU scalar = x * (1.0f/float(s))
    r = torch.tensor(1.0, dtype=FP32) / torch.tensor(math.sqrt(head_dim) * coeff, dtype=FP32)
    q2 = f16(q_rot.float() * r)                                   # q'' (fp16)
    qh = q2.permute(1, 0, 2)                                      # [H, T, D]
    kh = k_rot.permute(1, 0, 2)
    vh = v.permute(1, 0, 2)
    S = f16(_mm(qh, kh.transpose(1, 2)))                          # baddbmm, fp16 out [H, T, T]
    scores = S.float() * torch.tensor(coeff, dtype=FP32)          # FusedScaleMaskSoftmax scale=(l+1)
    scores = scores.masked_fill(~visible[None], -10000.0)         # masked -> -10000 (prob exactly 0)
    probs = f16(torch.softmax(scores, dim=-1))                    # fp32 softmax, fp16 out
    ctx = f16(_mm(probs, vh))                                     # bmm(P, V), fp32 accumulate
    T, H, D = q_rot.shape
    return ctx.permute(1, 0, 2).reshape(T, H * D), probs          # heads concatenated in order


# ---------------------------------------------------------------------------
# One layer (§1.3 DeepNorm + §1.9 GeGLU)
# ---------------------------------------------------------------------------

def layer_forward(x, w, prefix, cfg, layer_id, cos, sin, positions, visible, taps=None,
                  want_probs=False):
    """x: fp16 [T, C].  w: state dict (TP=1 keys); prefix = 'transformer.layers.{i}.'."""
    T = x.shape[0]
    H, D, Fi = cfg.num_heads, cfg.head_dim, cfg.inner
    alpha = torch.tensor(math.sqrt(2 * cfg.num_layers), dtype=FP32)  # (2*L)**0.5 -> fp32 in opmath

    y = layer_norm(x, w[prefix + "input_layernorm.weight"], w[prefix + "input_layernorm.bias"],
                   cfg.layernorm_eps)
    qkv = linear(y, w[prefix + "attention.query_key_value.weight"],
                 w[prefix + "attention.query_key_value.bias"])       # [T, 3*H*D]
    # §1.5: view [T, H, 3D], q = [..., :D], k = [..., D:2D], v = [..., 2D:3D]
    qkv3 = qkv.view(T, H, 3 * D)
    q, k, v = qkv3[..., :D], qkv3[..., D:2 * D], qkv3[..., 2 * D:]
    q_rot = apply_rotary(q, cos, sin, positions)
    k_rot = apply_rotary(k, cos, sin, positions)
    ctx, probs = attention_core(q_rot, k_rot, v, visible, layer_id, D)
    a = linear(ctx, w[prefix + "attention.dense.weight"], w[prefix + "attention.dense.bias"])
    # DeepNorm residual on the LN *output*: h = fp16(fp16(y*alpha) + a)
    h = f16(f16(y.float() * alpha).float() + a.float())

    z = layer_norm(h, w[prefix + "post_attention_layernorm.weight"],
                   w[prefix + "post_attention_layernorm.bias"], cfg.layernorm_eps)
    u = linear(z, w[prefix + "mlp.dense_h_to_4h.weight"], w[prefix + "mlp.dense_h_to_4h.bias"])
    u1, u2 = u[:, :Fi], u[:, Fi:]                                 # first half linear, second gate
    g = f16(u1.float() * f16(gelu_erf(u2)).float())
    m = linear(g, w[prefix + "mlp.dense_4h_to_h.weight"], w[prefix + "mlp.dense_4h_to_h.bias"])
    out = f16(f16(z.float() * alpha).float() + m.float())

    if taps is not None:
        taps.update(attn_norm=y, qkv=qkv, q_rot=q_rot, k_rot=k_rot, ctx=ctx, attn_out=a, h=h,
                    ffn_norm=z, up=u, gated=g, down=m)
        if want_probs:
            taps["probs"] = probs
    return out, probs


INTERMEDIATE_NAMES = ("attn_norm", "qkv", "q_rot", "k_rot", "ctx", "attn_out", "h",
                      "ffn_norm", "up", "gated", "down")


def forward(weights, cfg, ids, positions, visible, intermediate_layers=None, keep_probs=False):
    """Full forward pass (§1.2) for one sequence.

    weights: state dict with the TP=1 SAT key names (§2.2), fp16 tensors.
    ids: long [T]; positions: long [T]; visible: bool [T, T] (True = may attend).
    intermediate_layers: layer indices whose intermediates are returned
      (default: 0 and L-1).
    Returns dict: 'embed', 'layers' (list of fp16 [T, C]), 'final_norm', 'logits',
      'intermediates' {l: {name: tensor}}, and 'probs' {l: fp16 [H, T, T]} if keep_probs.
    """
    L = cfg.num_layers
    if intermediate_layers is None:
        intermediate_layers = sorted({0, L - 1})
    ids = torch.as_tensor(ids, dtype=torch.long)
    positions = torch.as_tensor(positions, dtype=torch.long)
    if int(positions.max()) >= cfg.max_seq:
        raise ValueError("position beyond the rotary cache")
    _, cos, sin = rotary_tables(cfg.head_dim, cfg.max_seq, cfg.rotary_base)

    E = weights["transformer.word_embeddings.weight"]
    x = E[ids]                                                    # embedding rows, fp16, no scaling
    out = {"embed": x, "layers": [], "intermediates": {}, "probs": {}}
    for l in range(L):
        taps = {} if l in intermediate_layers else None
        x, probs = layer_forward(x, weights, "transformer.layers.%d." % l, cfg, l, cos, sin,
                                 positions, visible, taps)
        out["layers"].append(x)
        if taps is not None:
            out["intermediates"][l] = taps
        if keep_probs:
            out["probs"][l] = probs
    xf = layer_norm(x, weights["transformer.final_layernorm.weight"],
                    weights["transformer.final_layernorm.bias"], cfg.layernorm_eps)
    out["final_norm"] = xf
    out["logits"] = linear(xf, E)                                 # tied embedding, no bias (§1.10)
    return out


# ---------------------------------------------------------------------------
# Checkpoint split / merge (§2.3, tools/convert_tp.py)
# ---------------------------------------------------------------------------

SEQUENTIAL_LAYERS = (
    "input_layernorm.weight", "input_layernorm.bias",
    "attention.dense.bias", "post_attention_layernorm.weight", "post_attention_layernorm.bias",
    "mlp.dense_4h_to_h.bias", "attention.rotary_emb.inv_freq",
    "final_layernorm.weight", "final_layernorm.bias",
)
GLU_LAYERS = ("mlp.dense_h_to_4h.weight", "mlp.dense_h_to_4h.bias")
LAYER_CONCAT_DIM = {"attention.dense.weight": 1, "mlp.dense_4h_to_h.weight": 1}


def convert_tp_name(key):
    """Strip 'transformer.layers.N.' (3 components) or 'transformer.' (1 component)."""
    parts = key.split(".")
    if parts[1] == "layers":
        return ".".join(parts[3:])
    return ".".join(parts[1:])


def split_state_dict(sd, tp):
    """convert_tp.py split (tp up from 1): list of tp OrderedDicts."""
    shards = [OrderedDict() for _ in range(tp)]
    for key, t in sd.items():
        name = convert_tp_name(key)
        for r in range(tp):
            if name in SEQUENTIAL_LAYERS:
                shards[r][key] = t.clone()
            elif name in GLU_LAYERS:
                chunks = torch.chunk(t, 2 * tp, dim=0)
                shards[r][key] = torch.cat((chunks[r], chunks[tp + r]), dim=0).clone()
            else:
                shards[r][key] = torch.chunk(t, tp, dim=LAYER_CONCAT_DIM.get(name, 0))[r].clone()
    return shards


def merge_state_dicts(shards):
    """convert_tp.py merge (tp down to 1)."""
    merged = OrderedDict()
    for key in shards[0]:
        name = convert_tp_name(key)
        parts = [s[key] for s in shards]
        if name in SEQUENTIAL_LAYERS:
            merged[key] = parts[0].clone()
        elif name in GLU_LAYERS:
            halves = [torch.chunk(p, 2, dim=0) for p in parts]
            merged[key] = torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
        else:
            merged[key] = torch.cat(parts, dim=LAYER_CONCAT_DIM.get(name, 0))
    return merged


def load_sat_checkpoint(ckpt_dir):
    """Read <ckpt_dir>/latest and <iter>/mp_rank_XX_model_states.pt; return the TP=1 state dict."""
    import glob
    import os
    with open(os.path.join(ckpt_dir, "latest")) as fh:
        it = fh.read().strip()
    files = sorted(glob.glob(os.path.join(ckpt_dir, it, "mp_rank_*_model_states.pt")))
    shards = [torch.load(f, map_location="cpu")["module"] for f in files]
    return merge_state_dicts(shards)
