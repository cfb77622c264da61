// The reference summation order's fold (ReduceLanes, linear_common.h) for AVX2 kernels that hold
// the 16 lane sums in two ymm (lanes 0..7 and 8..15). Internal to kernels/cpu: include it after the
// file's `GLM_TARGET_PUSH("avx2,...")` (target.h), so that it is compiled for AVX2.
#pragma once

#include <immintrin.h>

namespace glm {

// ReduceLanes of [lo, hi]: lanes j + (j+8), then ((0+4)+(1+5)) + ((2+6)+(3+7)). Static: each
// file compiles its own copy for its own target options.
static inline float ReduceLanesAvx2(__m256 lo, __m256 hi) {
  const __m256 e = _mm256_add_ps(lo, hi);
  const __m128 f = _mm_add_ps(_mm256_castps256_ps128(e), _mm256_extractf128_ps(e, 1));
  const __m128 g = _mm_hadd_ps(f, f);  // [(e0+e4)+(e1+e5), (e2+e6)+(e3+e7), ..]
  return _mm_cvtss_f32(_mm_add_ss(g, _mm_movehdup_ps(g)));
}

}  // namespace glm
