// Elementwise ops of a GLM layer on the GPU, each bit-identical to kernels/cpu/elementwise.cc:
//   GeGLU (spec §1.9):  g = fp16(u1 · fp16(gelu_erf(u2))), the first half linear, the second
//     through the exact erf GELU. fp16(gelu_erf(x)) depends on the 16 bits of x only, so it is a
//     65536-entry table computed once by the CPU reference kernel (BuildGeluTable): no erff
//     implementation difference can creep in. u1 · gelu is exact in fp32; one rounding.
//   DeepNorm residual (§1.3):  out = fp16(fp16(ln_out·α) + branch), α in fp32.
//   Embedding (§1.2):  out[t] = E[ids[t]], a row copy.
//   Bias add (§3, quantized layers):  out = fp16(out + b).
#include "kernels/cpu/kernels.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernels.h"

namespace glm::gpu {
namespace {

constexpr int kThreads = 256;

__global__ void geglu_kernel(const __half* u, int64_t n, int64_t F, const uint16_t* table,
                             __half* g) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over T·F
  if (idx >= n) return;
  const int64_t t = idx / F, f = idx % F;
  const __half lin = u[t * 2 * F + f];
  const uint16_t gate = __half_as_ushort(u[t * 2 * F + F + f]);
  const float gelu = __half2float(__ushort_as_half(table[gate]));
  g[idx] = __float2half_rn(__half2float(lin) * gelu);
}

__global__ void deep_norm_residual_kernel(const __half* ln_out, const __half* branch, float alpha,
                                          int64_t n, __half* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = DeepNorm(ln_out[i], branch[i], alpha);
}

// One block per token; 16-byte copies when the rows allow them.
__global__ void embedding_kernel(const __half* table, int64_t V, int64_t C, const int32_t* ids,
                                 __half* out, bool vec) {
  const int32_t id = ids[blockIdx.x];
  if (id < 0 || id >= V) __trap();  // the caller checks ids on the host
  const __half* src = table + int64_t(id) * C;
  __half* dst = out + int64_t(blockIdx.x) * C;
  if (vec) {
    const uint4* s4 = reinterpret_cast<const uint4*>(src);
    uint4* d4 = reinterpret_cast<uint4*>(dst);
    for (int64_t c = threadIdx.x; c < C / 8; c += blockDim.x) d4[c] = s4[c];
  } else {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
  }
}

__global__ void add_bias_kernel(__half* out, int64_t n, int64_t N, const __half* bias) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = __float2half_rn(__half2float(out[i]) + __half2float(bias[i % N]));
}

unsigned Blocks(int64_t n) {
  GLM_CHECK_MSG(CeilDiv(n, kThreads) <= 0x7fffffff, "%lld elements exceed the grid", (long long)n);
  return unsigned(CeilDiv(n, kThreads));
}

}  // namespace

std::vector<Half> BuildGeluTable() {
  // u = [1, x] for every fp16 x: g = fp16(1 · fp16(gelu(x))) = fp16(gelu(x)), from the CPU kernel.
  std::vector<Half> u(2 * 65536), g(65536);
  for (uint32_t b = 0; b < 65536; ++b) {
    u[2 * b] = FloatToHalf(1.0f);
    u[2 * b + 1] = Half{uint16_t(b)};
  }
  glm::GeGlu(u.data(), 65536, 1, g.data());
  return g;
}

void GeGlu(const Half* u, int64_t T, int64_t F, const Half* gelu_table, Half* g,
           cudaStream_t stream) {
  GLM_CHECK_MSG(T >= 0 && F > 0, "GeGlu: bad shape T=%lld F=%lld", (long long)T, (long long)F);
  if (T == 0) return;
  GLM_CHECK(u && gelu_table && g);
  const int64_t n = T * F;
  geglu_kernel<<<Blocks(n), kThreads, 0, stream>>>(
      Dev(u), n, F, reinterpret_cast<const uint16_t*>(gelu_table), Dev(g));
  GLM_CHECK_LAUNCH();
}

void DeepNormResidual(const Half* ln_out, const Half* branch, float alpha, int64_t n, Half* out,
                      cudaStream_t stream) {
  GLM_CHECK_MSG(n >= 0, "DeepNormResidual: n = %lld", (long long)n);
  if (n == 0) return;
  GLM_CHECK(ln_out && branch && out);
  deep_norm_residual_kernel<<<Blocks(n), kThreads, 0, stream>>>(Dev(ln_out), Dev(branch), alpha, n,
                                                                Dev(out));
  GLM_CHECK_LAUNCH();
}

void Embedding(const Half* table, int64_t V, int64_t C, const int32_t* ids, int64_t T, Half* out,
               cudaStream_t stream) {
  GLM_CHECK_MSG(V > 0 && C > 0 && T >= 0 && T <= 0x7fffffff,
                "Embedding: bad shape V=%lld C=%lld T=%lld", (long long)V, (long long)C,
                (long long)T);
  if (T == 0) return;
  GLM_CHECK(table && ids && out);
  const bool vec = C % 8 == 0 && reinterpret_cast<uintptr_t>(table) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  embedding_kernel<<<unsigned(T), kThreads, 0, stream>>>(Dev(table), V, C, ids, Dev(out), vec);
  GLM_CHECK_LAUNCH();
}

void AddBias(Half* out, int64_t T, int64_t N, const Half* bias, cudaStream_t stream) {
  GLM_CHECK_MSG(T >= 0 && N > 0, "AddBias: bad shape T=%lld N=%lld", (long long)T, (long long)N);
  if (T == 0) return;
  GLM_CHECK(out && bias);
  const int64_t n = T * N;
  add_bias_kernel<<<Blocks(n), kThreads, 0, stream>>>(Dev(out), n, N, Dev(bias));
  GLM_CHECK_LAUNCH();
}

}  // namespace glm::gpu
