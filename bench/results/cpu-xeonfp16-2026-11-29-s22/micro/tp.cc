#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
alignas(64) static char buf[4096];
#define N 12
template <class F>
void run(const char* name, F f) {
  double best = 1e30;
  for (int rep = 0; rep < 9; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    f(1000000);
    double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    if (ns < best) best = ns;
  }
  printf("%-40s %.3f cycles per iteration (at 3.89 GHz)\n", name, best / 1e6 * 3.89);
}
int main() {
  // each iteration: 12 independent instructions
#define LOOP(NAME, BODY)                                            \
  run(NAME, [](int n) {                                             \
    __m512i acc = _mm512_setzero_si512();                           \
    __m512 accf = _mm512_setzero_ps();                              \
    for (int it = 0; it < n; ++it) {                                \
      _Pragma("GCC unroll 12") for (int i = 0; i < N; ++i) { BODY } \
      __asm__ volatile("" : "+v"(acc), "+v"(accf)::"memory");       \
    }                                                               \
    __asm__ volatile("" ::"v"(acc), "v"(accf));                     \
  })
  LOOP("vpmovsxbw zmm,m256 x12", {
    __m512i v = _mm512_cvtepi8_epi16(_mm256_load_si256((const __m256i*)(buf + 32 * i)));
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vpmovsxbd zmm,m128 x12", {
    __m512i v = _mm512_cvtepi8_epi32(_mm_load_si128((const __m128i*)(buf + 16 * i)));
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vcvtph2ps zmm,m256 x12", {
    __m512 v = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(buf + 32 * i)));
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vcvtph2ps zmm,ymm x12", {
    __m256i y = _mm256_load_si256((const __m256i*)(buf + 32 * i));
    __asm__ volatile("" : "+v"(y));
    __m512 v = _mm512_cvtph_ps(y);
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vcvtw2ph zmm x12", {
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    __m512h v = _mm512_cvtepi16_ph(y);
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vmulph zmm x12", {
    __m512h y = _mm512_castsi512_ph(_mm512_load_si512(buf + 64 * i));
    __asm__ volatile("" : "+v"(y));
    __m512h v = _mm512_mul_ph(y, y);
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vpermps zmm x12", {
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    __m512 v = _mm512_permutexvar_ps(y, _mm512_castsi512_ps(y));
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vpsrlvd zmm x12", {
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    __m512i v = _mm512_srlv_epi32(y, y);
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vpbroadcastq zmm,m64 x12", {
    int64_t q;
    __builtin_memcpy(&q, buf + 8 * i, 8);
    __m512i v = _mm512_set1_epi64(q);
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vcvtdq2ps zmm x12", {
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    __m512 v = _mm512_cvtepi32_ps(y);
    __asm__ volatile("" ::"v"(v));
  });
  LOOP("vmovdqa64 load zmm x12", {
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" ::"v"(y));
  });
  LOOP("vcvtph2ps m256 + vpermps x12", {
    __m512 v = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(buf + 32 * i)));
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    __m512 u = _mm512_permutexvar_ps(y, _mm512_castsi512_ps(y));
    __asm__ volatile("" ::"v"(v), "v"(u));
  });
  LOOP("vcvtph2ps m256 + vpsrlvd x12", {
    __m512 v = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(buf + 32 * i)));
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    __m512i u = _mm512_srlv_epi32(y, y);
    __asm__ volatile("" ::"v"(v), "v"(u));
  });
  LOOP("store zmm + 2x load ymm fwd x12", {
    __m512i y = _mm512_load_si512(buf + 64 * i);
    __asm__ volatile("" : "+v"(y));
    _mm512_store_si512(buf + 2048 + 64 * i, y);
    __m512 a = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(buf + 2048 + 64 * i)));
    __m512 b = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(buf + 2048 + 64 * i + 32)));
    __asm__ volatile("" ::"v"(a), "v"(b));
  });
  return 0;
}
