// CUDA implementations of the GLM-130B ops (spec §1), one op family per .cu file in this folder,
// each opening with its formula. They reproduce the CPU reference kernels (kernels/cpu/kernels.h)
// rounding point for rounding point: elementwise ops are bit-identical to them; reductions
// (LayerNorm statistics, dot products, softmax sums) accumulate in fp32 in another order, so
// their fp16 outputs can differ by an ulp where a value lies within fp32 rounding of a tie.
//
// Contracts shared by every launcher: all pointers are device pointers (TensorView data and
// scales too) unless a parameter says "host"; work is enqueued on `stream` and nothing
// synchronizes; shapes and dtypes are checked with GLM_CHECK before the launch, and every launch
// is followed by CUDA_CHECK(cudaGetLastError()). Volta-clean: nothing here needs more than sm_70
// except the tensor-core quantized GEMV, which is chosen only on sm_80+ (with a CUDA-core path
// for older GPUs).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/fp16.h"
#include "runtime/tensor.h"

namespace glm::gpu {

// layernorm.cu: out[t] = fp16(γ·fp16(invstd·(x[t]−μ)) + β), μ and σ² in fp32 (§1.4).
void LayerNorm(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta, float eps,
               Half* out, cudaStream_t stream);

// rotary.cu: the reference's fp16 cos/sin tables (RotaryTable, kernels/cpu/kernels.h) in device
// memory. A view: the owner (GpuContext) must outlive it.
struct RotaryTableView {
  const Half* cos = nullptr;  // [max_seq, D/2] fp16
  const Half* sin = nullptr;  // [max_seq, D/2] fp16
  int head_dim = 0;
  int max_seq = 0;
};
// In place on the q and k parts of qkv [T, H, 3D] (§1.5, §1.6), one rounding per output:
// x'[i] = fp16(x[i]·cos − x[i+D/2]·sin), x'[i+D/2] = fp16(x[i+D/2]·cos + x[i]·sin).
// positions: device [T], each in [0, max_seq) (the caller checks them on the host; a position
// outside traps the kernel).
void ApplyRotary(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                 const RotaryTableView& table, cudaStream_t stream);

// attention.cu: copies the rotated k and the v of qkv [T, H, 3D] into rows start..start+T-1 of
// one layer's caches k_cache/v_cache [S, H*D] (post-RoPE keys, unscaled, §1.11).
void AppendKv(const Half* qkv, int64_t T, int H, int D, int64_t start, Half* k_cache, Half* v_cache,
              cudaStream_t stream);
// Causal-with-prefix attention for T rows at absolute indices start..start+T-1 over keys from
// the caches (which already hold rows 0..start+T-1): row i sees key j iff j < prefix_len or
// j <= i (§1.7, §1.8). q'' = fp16(q·r), r = 1/(√D·(l+1)) in fp32; s = fp16(q''·k);
// p = fp16(softmax_fp32(float(s)·(l+1))); ctx = fp16(Σ p·v). ctx: [T, H*D].
void Attention(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
               const Half* v_cache, int64_t prefix_len, int layer, Half* ctx, cudaStream_t stream);

// elementwise.cu: g[t, f] = fp16(u[t, f] · gelu_h(u[t, F+f])) (§1.9), where gelu_table holds
// gelu_h(x) = fp16(gelu_erf(x)) for all 65536 fp16 bit patterns (BuildGeluTable).
void GeGlu(const Half* u, int64_t T, int64_t F, const Half* gelu_table, Half* g,
           cudaStream_t stream);
// The table of fp16(gelu_erf(x)) for every fp16 x, computed by the CPU reference kernel GeGlu,
// so the GPU's GeGLU equals the CPU's bit for bit (host memory; upload it once).
std::vector<Half> BuildGeluTable();
// out = fp16(fp16(ln_out·α) + branch), α in fp32 (§1.3 DeepNorm).
void DeepNormResidual(const Half* ln_out, const Half* branch, float alpha, int64_t n, Half* out,
                      cudaStream_t stream);
// out[t] = table[ids[t]] for table [V, C] fp16 and device ids [T] (checked against V by the
// caller on the host; an id outside traps the kernel).
void Embedding(const Half* table, int64_t V, int64_t C, const int32_t* ids, int64_t T, Half* out,
               cudaStream_t stream);
// out[i] = fp16(out[i] + bias[i % N]) for out [T, N]: the quantized layers' separate bias add.
void AddBias(Half* out, int64_t T, int64_t N, const Half* bias, cudaStream_t stream);

// linear.cu and quant_gemv.cu.
// Which quantized GEMV kernel decodes with T <= kMaxGemvTokens: auto picks the tensor-core one
// on sm_80+ when the shape allows it (K a multiple of the 64/128-weight tile, groups a multiple
// of the 16/32-weight lane chunk, 16-byte aligned pointers), else the CUDA-core one. Tests force
// each.
enum class QuantGemvPath { kAuto, kCudaCore, kTensorCore };
inline constexpr int kMaxGemvTokens = 8;

// What Linear needs besides its operands; the buffers are allocated once by the owner
// (GpuContext / GpuActivations) and must outlive the call's execution on the stream.
struct LinearContext {
  cublasHandle_t cublas = nullptr;  // bound to `stream`, with its workspace set
  cudaStream_t stream = nullptr;
  float* f32 = nullptr;  // fp32 scratch for the fp16-weight path with a bias
  int64_t f32_elems = 0;
  Half* deq = nullptr;  // fp16 scratch for dequantized row blocks (quantized, T > 8)
  int64_t deq_elems = 0;
  QuantGemvPath gemv_path = QuantGemvPath::kAuto;
  // cuBLAS in plain IEEE fp32 (CUBLAS_COMPUTE_32F_PEDANTIC: no tensor cores). Tensor-core MMA
  // accumulates fp16 products in fp32 without rounding each addition to nearest (the products
  // are aligned and truncated inside the unit), so its sums stray a little further from the
  // exact sum than a sequential fp32 sum does. Tests use this mode to hold the GPU to the CPU's
  // tolerances; inference uses the default.
  bool exact_fp32 = false;
};

// DeepNorm's residual (§1.3) applied to a linear layer's output y: out = fp16(fp16(ln·α) + y),
// ln [T, N] (the LayerNorm output the branch started from). The quantized GEMV does it in its
// epilogue (no separate kernel, no round trip of y); the other paths run DeepNormResidual after.
// Bit-identical to Linear followed by DeepNormResidual. ln null: no residual.
struct ResidualAdd {
  const Half* ln = nullptr;
  float alpha = 0.f;
};

// out[t, n] for x [T, K] fp16 and weights w [N, K] (§1.3, §3):
//   f16 weights: out = fp16(Σ_k x·w + b) with fp32 accumulation and one rounding (cuBLAS
//     GemmEx, CUBLAS_COMPUTE_32F, _PEDANTIC with exact_fp32; with a bias the fp32 result goes
//     through `f32` and one kernel adds the bias and rounds, column blocks at a time).
//   i8/i4 weights (quant/format.h, row or group scales): the reference dequantization
//     w = fp16(fp16(q)·s), fp32 accumulation, then the bias as a separate fp16 add:
//     out = fp16(fp16(Σ x·w) + b). T <= kMaxGemvTokens: a GEMV that dequantizes in registers and
//     reads each weight once; larger T: blocks of rows dequantized into `deq`, then cuBLAS.
// bias: [N] fp16 or null; residual: see ResidualAdd. out must not alias x (it may alias
// residual.ln).
void Linear(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
            const LinearContext& ctx, ResidualAdd residual = {});

// quant_gemv.cu (used by Linear; exposed for tests and bench-gpu).
// The GEMV for T <= kMaxGemvTokens described above; returns the path it took.
QuantGemvPath QuantGemv(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                        QuantGemvPath path, cudaStream_t stream, ResidualAdd residual = {});
// Rows [row0, row0+rows) of a quantized weight, dequantized to fp16 [rows, K] (exact: the
// reference's fp16(fp16(q)·s)).
void DequantizeRows(const TensorView& w, int64_t row0, int64_t rows, Half* out,
                    cudaStream_t stream);
const char* QuantGemvPathName(QuantGemvPath p);
// Variants of the tensor-core GEMV (the sums' order depends on steps and row_tiles; every
// variant is checked against the CPU by the tests). A process-wide tuning knob for bench-gpu and
// the tests; not thread-safe.
struct QuantGemvMmaConfig {
  int steps = 1;      // tiles each warp loads before it decodes: 1 or 2
  int row_tiles = 1;  // 16-row MMA tiles per warp sharing one x fragment: 1 or 2
  std::string ToString() const;
};
void SetQuantGemvMmaConfig(const QuantGemvMmaConfig& config);
QuantGemvMmaConfig GetQuantGemvMmaConfig();

}  // namespace glm::gpu
