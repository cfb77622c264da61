// Elementwise ops of a GLM layer: GeGLU (spec §1.9), the DeepNorm residual (§1.3) and the
// embedding lookup (§1.2).
#include <cmath>
#include <cstring>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"

namespace glm {

// g = fp16(u1 · fp16(gelu(u2))), gelu(x) = 0.5·x·(1 + erf(x/√2)) in fp32 (exact, not tanh).
void GeGlu(const Half* u, int64_t T, int64_t F, Half* g) {
  const float* tab = HalfTable();
  const float kInvSqrt2 = 0.70710678118654752440f;
  for (int64_t t = 0; t < T; ++t) {
    const Half* lin = u + t * 2 * F;
    const Half* gate = lin + F;
    Half* out = g + t * F;
    for (int64_t f = 0; f < F; ++f) {
      const float x = tab[gate[f].bits];
      const float gelu = RoundHalf(x * 0.5f * (1.0f + std::erf(x * kInvSqrt2)));
      out[f] = FloatToHalf(tab[lin[f].bits] * gelu);
    }
  }
}

void DeepNormResidual(const Half* ln_out, const Half* branch, float alpha, int64_t n, Half* out) {
  const float* tab = HalfTable();
  for (int64_t i = 0; i < n; ++i) {
    out[i] = FloatToHalf(RoundHalf(tab[ln_out[i].bits] * alpha) + tab[branch[i].bits]);
  }
}

Status Embedding(const TensorView& table, const int32_t* ids, int64_t T, Half* out) {
  const int64_t V = table.rows(), C = table.cols();
  const Half* e = table.f16();
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) {
      return Errorf("token id %d at index %lld is outside the vocabulary [0, %lld)", ids[t],
                    (long long)t, (long long)V);
    }
    std::memcpy(out + t * C, e + int64_t(ids[t]) * C, size_t(C) * sizeof(Half));
  }
  return Status::Ok();
}

}  // namespace glm
