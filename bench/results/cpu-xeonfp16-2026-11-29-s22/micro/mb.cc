// Microbenchmark: int8 decode step variants, 8 rows x 1 token, in cache.
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
constexpr int R = 8;
static int K = 2048;
alignas(64) static int8_t q[R][1 << 16];
alignas(64) static float x[1 << 16];
alignas(64) static _Float16 xh[1 << 16];
static float s[R];
static _Float16 sh[R];

__attribute__((noinline)) void split_variant(float* out) {
  __m512 acc[R], sc[R], ss[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    sc[r] = _mm512_set1_ps(s[r]);
    ss[r] = _mm512_set1_ps(s[r] * 8193.f);
  }
  for (int k = 0; k < K; k += 16) {
    __m512 xv = _mm512_load_ps(x + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m512 qf =
          _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(q[r] + k))));
      __m512 c = _mm512_mul_ps(qf, ss[r]);
      __asm__("" : "+v"(c));
      __m512 w = _mm512_sub_ps(c, _mm512_fnmadd_ps(qf, sc[r], c));
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// AVX512-FP16: 32 weights as fp16(q*s) in three instructions, widened to fp32 from registers
// (kMem false) or through a store and two reloads (kMem true).
template <bool kMem>
__attribute__((noinline)) void fp16_variant(float* out) {
  __m512 acc[R];
  __m512h sc[R];
  alignas(64) uint16_t buf[R][32];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    sc[r] = _mm512_set1_ph(sh[r]);
  }
  for (int k = 0; k < K; k += 32) {
    __m512 x0 = _mm512_load_ps(x + k), x1 = _mm512_load_ps(x + k + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m512i qw = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)(q[r] + k)));
      __m512i wi = _mm512_castph_si512(_mm512_mul_ph(_mm512_cvtepi16_ph(qw), sc[r]));
      __m512 w0, w1;
      if (kMem) {
        _mm512_store_si512(buf[r], wi);
        __asm__ volatile("" ::: "memory");
        w0 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)buf[r]));
        w1 = _mm512_cvtph_ps(_mm256_load_si256((const __m256i*)(buf[r] + 16)));
      } else {
        w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(wi));
        w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(wi, 1));
      }
      acc[r] = _mm512_fmadd_ps(x0, w0, acc[r]);
      acc[r] = _mm512_fmadd_ps(x1, w1, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// int4 reference point: broadcast qword, srlv, permps, fma.
alignas(64) static uint8_t q4[R][1 << 15];
__attribute__((noinline)) void int4_variant(float* out) {
  __m512 acc[R], tab[R];
  const __m512i shift = _mm512_setr_epi32(4, 20, 0, 16, 12, 28, 8, 24, 4, 20, 0, 16, 12, 28, 8, 24);
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    tab[r] = _mm512_mul_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1),
                           _mm512_set1_ps(s[r]));
  }
  for (int k = 0; k < K; k += 16) {
    __m512 xv = _mm512_load_ps(x + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int64_t v;
      memcpy(&v, q4[r] + k / 2, 8);
      __m512 w = _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi64(v), shift), tab[r]);
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

template <class F>
double bench(F f, const char* name, int reps) {
  float out[R];
  double best = 1e30;
  for (int rep = 0; rep < 7; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      f(out);
      __asm__ volatile("" ::: "memory");
    }
    double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ns / reps);
  }
  double per_step = best / (double(R) * K / 16);
  printf("%-12s K=%5d  %.3f ns per row-step (16 weights)  %.2f G weights/s  out0 %a\n", name, K,
         per_step, 16 / per_step, out[0]);
  return per_step;
}

int main(int argc, char** argv) {
  if (argc > 1) K = atoi(argv[1]);
  srand(1);
  for (int r = 0; r < R; ++r) {
    for (int k = 0; k < K; ++k) q[r][k] = int8_t(rand() % 255 - 127);
    for (int k = 0; k < K / 2; ++k) q4[r][k] = rand();
    float f = 0.001f + (rand() % 1000) * 1e-5f;
    sh[r] = (_Float16)f;
    s[r] = (float)sh[r];
  }
  for (int k = 0; k < K; ++k) {
    xh[k] = (_Float16)((rand() % 2000 - 1000) * 0.001f);
    x[k] = (float)xh[k];
  }
  int reps = int(2e8 / (double(R) * K));
  bench(split_variant, "split", reps);
  bench(fp16_variant<false>, "fp16-reg", reps);
  bench(fp16_variant<true>, "fp16-mem", reps);
  bench(int4_variant, "int4", reps);
  return 0;
}
