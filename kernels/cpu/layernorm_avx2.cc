// LayerNorm with AVX2 + F16C (spec §1.4), bit-identical to LayerNormScalar: μ and σ² are the
// scalar kernel's 16 lane sums (two ymm: lanes l and l + 8), folded in its order, then
// n = fp16(invstd·(x − μ)) and out = fp16(γ·n + β) eight at a time (γ·n is exact in fp32, so the
// FMA rounds once like the scalar expression). Tokens in parallel.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/target.h"
#include "runtime/fp16.h"
#include "runtime/parallel.h"

GLM_TARGET_PUSH("avx2,fma,f16c")

#include "kernels/cpu/lanes_avx2.h"

namespace glm {
namespace {

inline __m256 Load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float ToFloat(Half h) { return _cvtsh_ss(h.bits); }

}  // namespace

void LayerNormAvx2(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta,
                   float eps, Half* out) {
  const int64_t C8 = C - C % 8;
  ThreadPool::Global().ParallelFor(T, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const Half* xr = x + t * C;
      Half* orow = out + t * C;
      // The scalar kernel's statistics, in its order (no FMA: d·d is not exact).
      const int64_t C16 = C - C % 16;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t c = 0; c < C16; c += 16) {
        a0 = _mm256_add_ps(a0, Load8(xr + c));
        a1 = _mm256_add_ps(a1, Load8(xr + c + 8));
      }
      float sum = ReduceLanesAvx2(a0, a1);
      for (int64_t c = C16; c < C; ++c) sum += ToFloat(xr[c]);
      const float mean = sum / float(C);
      const __m256 mv = _mm256_set1_ps(mean);
      a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int64_t c = 0; c < C16; c += 16) {
        const __m256 d0 = _mm256_sub_ps(Load8(xr + c), mv),
                     d1 = _mm256_sub_ps(Load8(xr + c + 8), mv);
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(d0, d0));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(d1, d1));
      }
      float sq = ReduceLanesAvx2(a0, a1);
      for (int64_t c = C16; c < C; ++c) {
        const float d = ToFloat(xr[c]) - mean;
        sq += d * d;
      }
      const float var = sq / float(C);
      const float invstd = 1.0f / std::sqrt(var + eps);
      const __m256 m = _mm256_set1_ps(mean), is = _mm256_set1_ps(invstd);
      int64_t c = 0;
      for (; c < C8; c += 8) {
        const __m256 n = _mm256_cvtph_ps(_mm256_cvtps_ph(
            _mm256_mul_ps(is, _mm256_sub_ps(Load8(xr + c), m)), _MM_FROUND_TO_NEAREST_INT));
        const __m256 y = _mm256_fmadd_ps(Load8(gamma + c), n, Load8(beta + c));  // γ·n exact
        _mm_storeu_si128(reinterpret_cast<__m128i*>(orow + c),
                         _mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT));
      }
      for (; c < C; ++c) {
        const float n = _cvtsh_ss(_cvtss_sh(invstd * (ToFloat(xr[c]) - mean), 0));
        orow[c].bits = _cvtss_sh(ToFloat(gamma[c]) * n + ToFloat(beta[c]), 0);
      }
    }
  });
}

}  // namespace glm

GLM_TARGET_POP()
