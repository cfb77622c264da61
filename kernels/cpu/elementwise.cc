// Elementwise ops of a GLM layer: GeGLU (spec §1.9), the DeepNorm residual (§1.3) and the
// embedding lookup (§1.2).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

namespace glm {

namespace {
const float kInvSqrt2 = 0.70710678118654752440f;

// fp16(gelu(x)) for an fp16 x, exactly as GeGluScalar evaluates it.
inline float GeluHalf(float x) { return RoundHalf(x * 0.5f * (1.0f + std::erf(x * kInvSqrt2))); }
}  // namespace

const float* GeluHalfTable() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = GeluHalf(HalfToFloat(Half{uint16_t(i)}));
    return t;
  }();
  return table.data();
}

// g = fp16(u1 · fp16(gelu(u2))), gelu(x) = 0.5·x·(1 + erf(x/√2)) in fp32 (exact, not tanh).
void GeGluScalar(const Half* u, int64_t T, int64_t F, Half* g) {
  const float* tab = HalfTable();
  for (int64_t t = 0; t < T; ++t) {
    const Half* lin = u + t * 2 * F;
    const Half* gate = lin + F;
    Half* out = g + t * F;
    for (int64_t f = 0; f < F; ++f) {
      const float gelu = GeluHalf(tab[gate[f].bits]);
      out[f] = FloatToHalf(tab[lin[f].bits] * gelu);
    }
  }
}

void DeepNormResidualScalar(const Half* ln_out, const Half* branch, float alpha, int64_t n,
                            Half* out) {
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
