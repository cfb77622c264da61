// The bandwidth probe's read method, shared by bench-kernels and the measurement programs under
// bench/results that compare against it.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

// Reads n bytes as 8 interleaved sequential streams (one stream per thread reaches only about
// two thirds of the bandwidth on the VMs measured; the decode kernels read 8 rows at once). The
// variants also prefetch each stream kAhead bytes ahead into L1 (kHint 3) or L2 (kHint 2), for a
// core whose own loads alone cannot keep enough lines in flight (measured on a 16-core server).
template <int kAhead = 0, int kHint = 3>
__attribute__((target("avx2"))) float ReadSum(const uint8_t* p, size_t n) {
  constexpr int kStreams = 8;
  const size_t per = n / kStreams / 64 * 64;
  __m256 acc[kStreams];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (size_t i = 0; i < per; i += 64) {
    for (int s = 0; s < kStreams; ++s) {
      const float* q = reinterpret_cast<const float*>(p + s * per + i);
      if constexpr (kAhead > 0) __builtin_prefetch(p + s * per + i + kAhead, 0, kHint);
      acc[s] = _mm256_add_ps(acc[s], _mm256_add_ps(_mm256_load_ps(q), _mm256_load_ps(q + 8)));
    }
  }
  __m256 t = acc[0];
  for (int s = 1; s < kStreams; ++s) t = _mm256_add_ps(t, acc[s]);
  float out[8];
  _mm256_storeu_ps(out, t);
  return out[0] + out[7];
}
