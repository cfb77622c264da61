// CPU implementations of the GLM-130B ops (spec §1). Activations are fp16 with the reference's
// rounding points; reductions accumulate in fp32. Each op lives in its own file in this folder,
// whose header comment gives the formula. These are the reference kernels that the SIMD and CUDA
// kernels are tested against.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/fp16.h"
#include "runtime/tensor.h"

namespace glm {

// layernorm.cc: out[t] = fp16(γ·fp16(invstd·(x[t]-μ)) + β), μ/var in fp32 (§1.4).
void LayerNorm(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta,
               float eps, Half* out);

// linear.cc: out[t, n] = fp16(Σ_k x[t,k]·w[n,k] + b[n]), fp32 accumulation, one rounding
// (PyTorch's fused addmm, §1.3). x: [T, K] f16, w: [N, K], bias: [N] f16 or null, out: [T, N].
// Quantized weights (kI8/kI4, quant/format.h) are dequantized row by row as the reference does,
// and their bias is a separate fp16 add: fp16(fp16(x·W) + b).
// `scratch` holds at least T*K floats. Multi-threaded over N.
void Linear(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
            float* scratch);

// rotary.cc: the fp16 cos/sin tables of the reference RotaryEmbedding (§1.6).
struct RotaryTable {
  int head_dim = 0;        // D; the table has D/2 frequencies
  int max_seq = 0;
  std::vector<Half> cos;   // [max_seq, D/2] fp16
  std::vector<Half> sin;   // [max_seq, D/2] fp16
  std::vector<Half> inv_freq;  // [D/2] fp16

  static RotaryTable Build(int head_dim, int max_seq);
};
// In place on the q and k parts of qkv [T, H, 3D] (rows head*3D + {q,k,v}*D + d, §1.5):
// x'[i] = fp16(x[i]·cos_i − x[i+D/2]·sin_i), x'[i+D/2] = fp16(x[i+D/2]·cos_i + x[i]·sin_i).
// Positions must be in [0, max_seq).
void ApplyRotary(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                 const RotaryTable& table);

// One layer's KV cache on the CPU: the post-RoPE keys and the values (spec §1.11), head-major so
// that one head's keys and values are each one contiguous stream, for `capacity` tokens rounded up
// to whole blocks of kKvKeyBlock:
// - keys in blocks of 16 tokens, each block [D][16]: key j of head h, element d, at
//   KvKeyIndex(capacity, D, h, j, d). The scores of a block's 16 keys then take one 16-wide load
//   per d, each key in its own lane, with no transposes;
// - values [H][S][D]: value j of head h, element d, at KvValueIndex(capacity, D, h, j, d).
// bench/results/cpu_kernels.md measures it against the token-major [S, H, D] it replaced.
inline constexpr int64_t kKvKeyBlock = 16;
inline int64_t KvPaddedTokens(int64_t capacity) {
  return (capacity + kKvKeyBlock - 1) / kKvKeyBlock * kKvKeyBlock;
}
// Halves of one layer's keys (and as many of its values).
inline int64_t KvLayerHalves(int64_t capacity, int H, int D) {
  return KvPaddedTokens(capacity) * H * D;
}
inline int64_t KvKeyIndex(int64_t capacity, int D, int h, int64_t j, int d) {
  return (h * KvPaddedTokens(capacity) + (j - j % kKvKeyBlock)) * D + d * kKvKeyBlock +
         j % kKvKeyBlock;
}
inline int64_t KvValueIndex(int64_t capacity, int D, int h, int64_t j, int d) {
  return (h * KvPaddedTokens(capacity) + j) * D + d;
}
// attention.cc: writes the keys and values of T tokens at positions start..start+T-1 (qkv
// [T, H, 3D], rotated) into one layer's cache; start + T <= capacity.
void AppendKv(const Half* qkv, int64_t T, int H, int D, int64_t start, int64_t capacity,
              Half* k_cache, Half* v_cache);

// attention.cc: causal-with-prefix attention for T new rows at absolute indices
// start..start+T-1, keys 0..start+T-1 from the cache (§1.7, §1.8). Row i sees key j iff
// j < prefix_len or j <= i. q'' = fp16(q·r), r = 1/(√D·(l+1)) in fp32; s = fp16(q''·k);
// p = fp16(softmax_fp32(float(s)·(l+1))); ctx = fp16(Σ p·v).
// qkv: [T, H, 3D] rotated; k_cache/v_cache: one layer's cache of `capacity` tokens (above),
// already holding rows 0..start+T-1. ctx: [T, H*D]. scratch: AttentionScratchFloats(start+T)
// floats or more.
void Attention(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
               const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer, Half* ctx,
               float* scratch);
int64_t AttentionScratchFloats(int64_t max_keys);

// geglu.cc: g[t, f] = fp16(u[t, f] · fp16(gelu_erf(u[t, F+f]))) (§1.9).
void GeGlu(const Half* u, int64_t T, int64_t F, Half* g);

// residual.cc: out = fp16(fp16(ln_out·α) + branch), α in fp32 (§1.3 DeepNorm).
void DeepNormResidual(const Half* ln_out, const Half* branch, float alpha, int64_t n, Half* out);

// embedding.cc: out[t] = E[ids[t]]; an id outside [0, V) is an error naming it.
Status Embedding(const TensorView& table, const int32_t* ids, int64_t T, Half* out);

}  // namespace glm
