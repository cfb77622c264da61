// What this folder's programs share: the plain read (n bytes from p, 64-byte aligned, as one
// sequential stream, four zmm loads an iteration; returns a sum so that the loads are not
// dropped), the clock and the sink for the sums.
#pragma once

#include <immintrin.h>

#include <chrono>
#include <cstddef>
#include <cstdint>

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline volatile float sink;

inline float PlainRead(const uint8_t* p, size_t n) {
  const __m512i* v = reinterpret_cast<const __m512i*>(p);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 4 <= n / 64; i += 4) {
    a0 = _mm512_add_epi32(a0, _mm512_load_si512(v + i));
    a1 = _mm512_add_epi32(a1, _mm512_load_si512(v + i + 1));
    a2 = _mm512_add_epi32(a2, _mm512_load_si512(v + i + 2));
    a3 = _mm512_add_epi32(a3, _mm512_load_si512(v + i + 3));
  }
  return float(_mm512_reduce_add_epi32(
      _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3))));
}
