"""Golden INT8/INT4 tensors of GLM-130B's quantization (tools/convert_tp.py) on the tiny checkpoint.

A PyTorch transcription of what `convert_tp.py --target-tp N --quantization-bit-width B` computes
on the GPU (spec §2.3 and §3), run on the committed 2-rank checkpoint tests/golden/tiny/ckpt for
target TP 1 and 2 and 8 and 4 bits. Writes tests/golden/quant/:

  manifest.txt   one line per quantized tensor:
                 tp bits rank layer name rows packed_cols scale_count crc32(q bytes) crc32(scale bytes)
                 (CRC-32 as zlib.crc32 of the little-endian bytes)
  *.q.bin / *.scale.bin   the full bytes of a few tensors (layer 0 attention.dense, the
                 row-parallel weight whose scales depend on TP), for readable failures

Run with Debian's interpreter (torch 1.13): /usr/bin/python3 tests/golden/make_quant_golden.py
Every output is a deterministic function of the checkpoint; a re-run rewrites identical files.
"""

import os
import sys
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import glm_reference as ref  # noqa: E402

OUT = os.path.join(HERE, "quant")
QUANTIZED_LAYERS = ("attention.query_key_value.weight", "attention.dense.weight",
                    "mlp.dense_h_to_4h.weight", "mlp.dense_4h_to_h.weight")
# glmstream's tensor names for the manifest (runtime/weights.cc).
GGUF_NAME = {"attention.query_key_value.weight": "attn_qkv",
             "attention.dense.weight": "attn_output",
             "mlp.dense_h_to_4h.weight": "ffn_up",
             "mlp.dense_4h_to_h.weight": "ffn_down"}
FULL = {("attention.dense.weight", 0)}  # (name, layer) whose bytes are written in full


def quantize(weight, bits):
    """convert_tp.py's quantization of one target-rank fp16 weight [out, in], as on CUDA:

        weight_scale = (weight.abs().max(dim=-1).values / (2 ** (bits - 1) - 1)).half()
        weight = torch.round(weight / weight_scale[:, None]).to(torch.int8)
        if bits == 4: weight = compress_int4_weight(weight)

    Rounding points of the CUDA kernels, made explicit (CPU fp16 ops in torch 1.13 differ):
      * tensor / python scalar: BinaryDivTrueKernel multiplies by the fp32 reciprocal
        opmath(1) / opmath(127), then rounds the product to fp16;
      * half / half: computed in fp32 (opmath), rounded to fp16;
      * torch.round on half: nearbyint in fp32 (half to even), exact in fp16;
      * .to(int8) of the NaN that 0/0 gives for an all-zero row: CUDA's float->int conversion
        yields 0 (no such row occurs in this checkpoint; kept explicit for the transcription).
    """
    assert weight.dtype == torch.float16 and weight.dim() == 2
    qmax = 2 ** (bits - 1) - 1
    absmax = weight.abs().max(dim=-1).values                               # fp16, exact
    inv = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(float(qmax), dtype=torch.float32)
    scale = (absmax.float() * inv).half()                                  # [out] fp16
    quot = (weight.float() / scale.float()[:, None]).half()                # fp16(w / s)
    q = torch.round(quot.float())
    q = torch.where(scale.float()[:, None] == 0, torch.zeros_like(q), q)
    assert q.abs().max() <= qmax, "degenerate row (subnormal scale) in the fixture"
    q = q.to(torch.int8)
    if bits == 4:
        # cuda/quantization.cu int4WeightCompression: out[r, j] = (in[r, 2j] << 4) | (in[r, 2j+1] & 0xF)
        hi = q[:, 0::2].to(torch.int16)
        lo = q[:, 1::2].to(torch.int16)
        q = ((hi << 4) | (lo & 0x0F)).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def crc(t):
    return zlib.crc32(t.numpy().tobytes()) & 0xFFFFFFFF


def main():
    torch.set_num_threads(1)
    merged = ref.load_sat_checkpoint(os.path.join(HERE, "tiny", "ckpt"))
    os.makedirs(OUT, exist_ok=True)
    lines = ["# tp bits rank layer name rows packed_cols scale_count crc32_q crc32_scale"]
    for tp in (1, 2):
        shards = [merged] if tp == 1 else ref.split_state_dict(merged, tp)
        # The split must be what convert_tp.py writes: merging it back gives the checkpoint.
        for key, t in ref.merge_state_dicts(shards).items():
            assert torch.equal(t, merged[key]), key
        for bits in (8, 4):
            for rank, sd in enumerate(shards):
                for key, w in sd.items():
                    name = ref.convert_tp_name(key)
                    if name not in QUANTIZED_LAYERS:
                        continue
                    layer = int(key.split(".")[2])
                    q, s = quantize(w, bits)
                    lines.append(f"{tp} {bits} {rank} {layer} {GGUF_NAME[name]} {q.shape[0]} "
                                 f"{q.shape[1]} {s.numel()} {crc(q):08x} {crc(s.view(torch.int16)):08x}")
                    if (name, layer) in FULL:
                        stem = os.path.join(OUT, f"tp{tp}_int{bits}.r{rank}.l{layer}.{GGUF_NAME[name]}")
                        with open(stem + ".q.bin", "wb") as fh:
                            fh.write(q.numpy().tobytes())
                        with open(stem + ".scale.bin", "wb") as fh:
                            fh.write(s.view(torch.int16).numpy().tobytes())
    with open(os.path.join(OUT, "manifest.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 1} tensors to {OUT}/manifest.txt")


if __name__ == "__main__":
    main()
