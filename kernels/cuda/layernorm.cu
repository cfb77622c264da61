// LayerNorm as apex FusedLayerNorm computes it for fp16 input (spec §1.4), one block per row:
//   μ = Σx / C and σ² = Σ(x − μ)² / C (biased), block reductions in fp32;
//   invstd = 1 / sqrt(σ² + eps) (IEEE division and square root, as on the CPU);
//   n = fp16(invstd·(x − μ));  out = fp16(γ·n + β), γ·n exact in fp32, so one rounding.
// Same formula as kernels/cpu/layernorm.cc; μ and σ² are summed in another order than the CPU's
// sequential loop, so n can land one fp16 ulp away where invstd·(x − μ) sits within fp32 rounding
// of a tie (ulp-level). The block size depends on C only: a row's result does not depend on T.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernels.h"

namespace glm::gpu {
namespace {

__global__ void layer_norm_kernel(const __half* x, int C, const __half* gamma, const __half* beta,
                                  float eps, __half* out) {
  __shared__ float smem[32];
  const __half* xr = x + int64_t(blockIdx.x) * C;
  __half* orow = out + int64_t(blockIdx.x) * C;
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += __half2float(xr[c]);
  const float mean = BlockReduce<false>(s, smem) / float(C);
  float q = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = __half2float(xr[c]) - mean;
    q += d * d;
  }
  const float var = BlockReduce<false>(q, smem) / float(C);
  const float invstd = 1.0f / sqrtf(var + eps);
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float n = RoundHalf(invstd * (__half2float(xr[c]) - mean));
    orow[c] = __float2half_rn(__half2float(gamma[c]) * n + __half2float(beta[c]));
  }
}

}  // namespace

void LayerNorm(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta, float eps,
               Half* out, cudaStream_t stream) {
  GLM_CHECK_MSG(T >= 0 && C > 0 && C <= (1 << 30), "LayerNorm: bad shape [%lld, %lld]",
                (long long)T, (long long)C);
  GLM_CHECK_MSG(T <= 0x7fffffff, "LayerNorm: %lld rows exceed the grid", (long long)T);
  GLM_CHECK(x && gamma && beta && out);
  if (T == 0) return;
  // About 8 elements per thread: C = 12288 runs 1024 threads, the tiny test model 32.
  const int threads = int(std::min<int64_t>(1024, std::max<int64_t>(32, CeilDiv(C, 8 * 32) * 32)));
  layer_norm_kernel<<<unsigned(T), threads, 0, stream>>>(Dev(x), int(C), Dev(gamma), Dev(beta), eps,
                                                         Dev(out));
  GLM_CHECK_LAUNCH();
}

}  // namespace glm::gpu
