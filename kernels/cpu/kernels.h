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

// attention.cc: causal-with-prefix attention for T new rows at absolute indices
// start..start+T-1, keys 0..start+T-1 from the cache (§1.7, §1.8). Row i sees key j iff
// j < prefix_len or j <= i. q'' = fp16(q·r), r = 1/(√D·(l+1)) in fp32; s = fp16(q''·k);
// p = fp16(softmax_fp32(float(s)·(l+1))); ctx = fp16(Σ p·v).
// qkv: [T, H, 3D] rotated; k_cache/v_cache: [S, H, D] already holding rows 0..start+T-1.
// ctx: [T, H*D]. scratch: AttentionScratchFloats(start+T) floats or more.
void Attention(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
               const Half* v_cache, int64_t prefix_len, int layer, Half* ctx, float* scratch);
// Heads a SIMD attention job takes together: a key's rows of those heads are adjacent in the
// cache, so they are read together (one page visit instead of one per head).
inline constexpr int kAttentionHeadGroup = 8;
int64_t AttentionScratchFloats(int64_t max_keys);

// geglu.cc: g[t, f] = fp16(u[t, f] · fp16(gelu_erf(u[t, F+f]))) (§1.9).
void GeGlu(const Half* u, int64_t T, int64_t F, Half* g);

// residual.cc: out = fp16(fp16(ln_out·α) + branch), α in fp32 (§1.3 DeepNorm).
void DeepNormResidual(const Half* ln_out, const Half* branch, float alpha, int64_t n, Half* out);

// embedding.cc: out[t] = E[ids[t]]; an id outside [0, V) is an error naming it.
Status Embedding(const TensorView& table, const int32_t* ids, int64_t T, Half* out);

}  // namespace glm
