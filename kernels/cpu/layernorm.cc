// LayerNorm as apex FusedLayerNorm computes it for fp16 input (spec §1.4):
//   μ, σ² (biased) in fp32; invstd = 1/sqrt(σ² + eps) in fp32; n = fp16(invstd·(x − μ));
//   out = fp16(γ·n + β) with the affine evaluated in fp32 and rounded once (γ·n is exact in fp32).
// Σx and Σ(x − μ)² are summed in the linear kernels' order (linear_common.h): 16 lane sums over
// c ≡ l (mod 16) in increasing c, folded by ReduceLanes, then the C mod 16 last terms in order.
// The SIMD kernels then sum 16 lanes at once; a sum in plain c order is one chain of C dependent
// adds (about 35 µs at C = 12288, per LayerNorm of a decode step).
#include <cmath>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/linear_common.h"
#include "kernels/cpu/simd.h"

namespace glm {

void LayerNormScalar(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta,
                     float eps, Half* out) {
  const float* tab = HalfTable();
  for (int64_t t = 0; t < T; ++t) {
    const Half* xr = x + t * C;
    Half* orow = out + t * C;
    // Two-pass mean/variance in fp32; matches Welford to within fp32 rounding.
    const int64_t C16 = C - C % kLinearLanes;
    float lane[kLinearLanes] = {};
    for (int64_t c = 0; c < C16; ++c) lane[c % kLinearLanes] += tab[xr[c].bits];
    float sum = ReduceLanes(lane);
    for (int64_t c = C16; c < C; ++c) sum += tab[xr[c].bits];
    const float mean = sum / float(C);
    for (float& l : lane) l = 0.f;
    for (int64_t c = 0; c < C16; ++c) {
      const float d = tab[xr[c].bits] - mean;
      lane[c % kLinearLanes] += d * d;
    }
    float sq = ReduceLanes(lane);
    for (int64_t c = C16; c < C; ++c) {
      const float d = tab[xr[c].bits] - mean;
      sq += d * d;
    }
    const float var = sq / float(C);
    const float invstd = 1.0f / std::sqrt(var + eps);
    for (int64_t c = 0; c < C; ++c) {
      const float n = RoundHalf(invstd * (tab[xr[c].bits] - mean));
      orow[c] = FloatToHalf(tab[gamma[c].bits] * n + tab[beta[c].bits]);
    }
  }
}

}  // namespace glm
