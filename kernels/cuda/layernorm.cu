// LayerNorm as apex FusedLayerNorm computes it for fp16 input (spec §1.4), one block per row:
//   μ = Σx / C and σ² = Σ(x − μ)² / C (biased), block reductions in fp32;
//   invstd = 1 / sqrt(σ² + eps) (IEEE division and square root, as on the CPU);
//   n = fp16(invstd·(x − μ));  out = fp16(γ·n + β), γ·n exact in fp32, so one rounding.
// Same formula as kernels/cpu/layernorm.cc; μ and σ² are summed in another order than the CPU's
// 16 lane sums, so n can land one fp16 ulp away where invstd·(x − μ) sits within fp32 rounding
// of a tie (ulp-level). The block size depends on C only: a row's result does not depend on T.
// Rows of up to 8·2·1024 elements (C a multiple of 8, 16-byte aligned) are read once, in 16-byte
// pieces, and held in registers for the three passes; a decode step's LayerNorm (one row) is
// latency-bound, and the general kernel reads the row three times.
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

// Thread i holds the 16-byte pieces i, i + blockDim.x, ... (kVec of them at most).
template <int kVec>
__global__ void layer_norm_reg_kernel(const __half* x, int C, const __half* gamma,
                                      const __half* beta, float eps, __half* out) {
  __shared__ float smem[32];
  const int pieces = C / 8;
  const uint4* xr = reinterpret_cast<const uint4*>(x + int64_t(blockIdx.x) * C);
  uint4* orow = reinterpret_cast<uint4*>(out + int64_t(blockIdx.x) * C);
  float v[kVec][8];
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int p = threadIdx.x + j * blockDim.x;
    uint4 raw = make_uint4(0, 0, 0, 0);
    if (p < pieces) raw = xr[p];
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      v[j][2 * i] = f.x;
      v[j][2 * i + 1] = f.y;
    }
    if (p < pieces) {
#pragma unroll
      for (int i = 0; i < 8; ++i) s += v[j][i];
    }
  }
  const float mean = BlockReduce<false>(s, smem) / float(C);
  float q = 0.f;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    if (threadIdx.x + j * blockDim.x < pieces) {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const float d = v[j][i] - mean;
        q += d * d;
      }
    }
  }
  const float var = BlockReduce<false>(q, smem) / float(C);
  const float invstd = 1.0f / sqrtf(var + eps);
  const uint4* gr = reinterpret_cast<const uint4*>(gamma);
  const uint4* br = reinterpret_cast<const uint4*>(beta);
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int p = threadIdx.x + j * blockDim.x;
    if (p >= pieces) continue;
    const uint4 graw = gr[p], braw = br[p];
    const __half* gh = reinterpret_cast<const __half*>(&graw);
    const __half* bh = reinterpret_cast<const __half*>(&braw);
    uint4 res;
    __half* rh = reinterpret_cast<__half*>(&res);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float n = RoundHalf(invstd * (v[j][i] - mean));
      rh[i] = __float2half_rn(__half2float(gh[i]) * n + __half2float(bh[i]));
    }
    orow[p] = res;
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void LayerNorm(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta, float eps,
               Half* out, cudaStream_t stream) {
  GLM_CHECK_MSG(T >= 0 && C > 0 && C <= (1 << 30), "LayerNorm: bad shape [%lld, %lld]",
                (long long)T, (long long)C);
  GLM_CHECK_MSG(T <= 0x7fffffff, "LayerNorm: %lld rows exceed the grid", (long long)T);
  GLM_CHECK(x && gamma && beta && out);
  if (T == 0) return;
  const int64_t pieces = C / 8;
  if (C % 8 == 0 && pieces <= 2 * 1024 && Aligned16(x) && Aligned16(out) && Aligned16(gamma) &&
      Aligned16(beta)) {
    // One or two pieces per thread, at least a warp: C = 12288 runs 768 threads.
    const int vec = pieces <= 1024 ? 1 : 2;
    const int threads = int(std::max<int64_t>(32, CeilDiv(CeilDiv(pieces, vec), 32) * 32));
    if (vec == 1) {
      layer_norm_reg_kernel<1><<<unsigned(T), threads, 0, stream>>>(Dev(x), int(C), Dev(gamma),
                                                                    Dev(beta), eps, Dev(out));
    } else {
      layer_norm_reg_kernel<2><<<unsigned(T), threads, 0, stream>>>(Dev(x), int(C), Dev(gamma),
                                                                    Dev(beta), eps, Dev(out));
    }
    GLM_CHECK_LAUNCH();
    return;
  }
  // About 8 elements per thread: C = 12288 runs 1024 threads, the tiny test model 32.
  const int threads = int(std::min<int64_t>(1024, std::max<int64_t>(32, CeilDiv(C, 8 * 32) * 32)));
  layer_norm_kernel<<<unsigned(T), threads, 0, stream>>>(Dev(x), int(C), Dev(gamma), Dev(beta), eps,
                                                         Dev(out));
  GLM_CHECK_LAUNCH();
}

}  // namespace glm::gpu
