// Device helpers shared by the kernels of this folder: fp16 rounding, warp and block reductions
// in a fixed order (so results do not depend on scheduling), and launch arithmetic.
#pragma once

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/check.h"
#include "runtime/fp16.h"

namespace glm::gpu {

inline constexpr int kWarp = 32;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Host Half and device __half have the same bits.
inline const __half* Dev(const Half* p) { return reinterpret_cast<const __half*>(p); }
inline __half* Dev(Half* p) { return reinterpret_cast<__half*>(p); }

// fp16(x) as a float: the spec's rounding point.
__device__ __forceinline__ float RoundHalf(float x) { return __half2float(__float2half_rn(x)); }

// DeepNorm's residual for one element (§1.3): fp16(fp16(ln·α) + branch), α in fp32. The
// residual kernel and the quantized GEMV's fused epilogue both compute it here.
__device__ __forceinline__ __half DeepNorm(__half ln, __half branch, float alpha) {
  return __float2half_rn(RoundHalf(__half2float(ln) * alpha) + __half2float(branch));
}

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum (kMax = false) or max over the block; every thread gets the result. `smem` holds 32
// floats; blockDim.x is a multiple of 32. The order is fixed by blockDim, so a row's result does
// not depend on the other rows of the launch.
template <bool kMax>
__device__ __forceinline__ float BlockReduce(float v, float* smem) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  v = kMax ? WarpMax(v) : WarpSum(v);
  __syncthreads();  // smem may still be read from the previous call
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float t = lane < warps ? smem[lane] : (kMax ? -INFINITY : 0.f);
    t = kMax ? WarpMax(t) : WarpSum(t);
    if (lane == 0) smem[0] = t;
  }
  __syncthreads();
  return smem[0];
}

}  // namespace glm::gpu

// After every launch: a bad configuration shows up here, with the launcher's file:line.
#define GLM_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
