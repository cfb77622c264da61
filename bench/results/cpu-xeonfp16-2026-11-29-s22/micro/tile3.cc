#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
alignas(64) static float panel[16 * 1024];
alignas(64) static float xt[16 * 1024];
alignas(64) static float out[64 * 16];
template <int TB, int NR, bool kBarrier, bool kWOuter>
__attribute__((noinline)) void tile(int steps) {
  __m512 acc[TB][NR];
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_setzero_ps();
  for (int s = 0; s < steps; ++s) {
    if (kWOuter) {
      __m512 wv[NR];
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) wv[r] = _mm512_load_ps(panel + r * 1024 + s * 16);
#pragma GCC unroll 16
      for (int t = 0; t < TB; ++t) {
        __m512 xv = _mm512_load_ps(xt + t * 1024 + s * 16);
        if (kBarrier) __asm__("" : "+v"(xv));
#pragma GCC unroll 16
        for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
      }
    } else {
      __m512 xv[TB];
#pragma GCC unroll 16
      for (int t = 0; t < TB; ++t) xv[t] = _mm512_load_ps(xt + t * 1024 + s * 16);
#pragma GCC unroll 16
      for (int r = 0; r < NR; ++r) {
        __m512 wv = _mm512_load_ps(panel + r * 1024 + s * 16);
        if (kBarrier) __asm__("" : "+v"(wv));
#pragma GCC unroll 16
        for (int t = 0; t < TB; ++t) acc[t][r] = _mm512_fmadd_ps(xv[t], wv, acc[t][r]);
      }
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 16
    for (int r = 0; r < NR; ++r) _mm512_store_ps(out + (t * NR + r) * 16, acc[t][r]);
}
template <int TB, int NR, bool B, bool W>
void run() {
  double best = 1e30;
  for (int rep = 0; rep < 30; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < 2000; ++it) tile<TB, NR, B, W>(64);
    double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ns / (2000.0 * 64 * TB * NR));
  }
  printf("%2d tokens x %d rows, barrier %d, w outer %d: %.3f ns per FMA = %.1f%% of 0.1325\n", TB,
         NR, B, W, best, 100 * 0.1325 / best);
}
int main() {
  run<6, 4, true, true>();
  run<6, 4, false, true>();
  run<4, 6, true, true>();
  run<4, 6, true, false>();
  run<6, 4, true, false>();
  run<8, 3, true, true>();
  run<3, 8, true, true>();
  run<3, 8, true, false>();
  run<5, 5, true, true>();
  run<7, 3, true, true>();
  run<2, 12, true, false>();
  run<4, 7, true, false>();
  run<7, 4, true, true>();
}
