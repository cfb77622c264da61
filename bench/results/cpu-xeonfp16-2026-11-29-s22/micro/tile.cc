#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
constexpr int TB = 6, NR = 4;
alignas(64) static float panel[64 * 1040];
alignas(64) static float xt[6 * 1040];
alignas(64) static float spill[6 * 64 * 16];
template <int LD, bool SPILL, int PF = 0>
__attribute__((noinline)) void tile(const float* p, const float* x, int steps, float* sp,
                                    bool first) {
  __m512 acc[TB][NR];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
      acc[t][r] = (!SPILL || first) ? _mm512_setzero_ps() : _mm512_load_ps(sp + (t * 64 + r) * 16);
  for (int s = 0; s < steps; ++s) {
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = _mm512_load_ps(p + r * LD + s * 16);
    if (PF) {
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) __builtin_prefetch(p + r * LD + s * 16 + PF, 0, 3);
    }
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      __m512 xv = _mm512_load_ps(x + t * LD + s * 16);
      __asm__("" : "+v"(xv));
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) _mm512_store_ps(sp + (t * 64 + r) * 16, acc[t][r]);
}
template <int LD, bool SPILL, int PF = 0>
void run(const char* name, int rows, int steps) {
  double best = 1e30;
  for (int rep = 0; rep < 20; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    long fmas = 0;
    for (int it = 0; it < 200; ++it)
      for (int r = 0; r < rows; r += 4) {
        tile<LD, SPILL, PF>(panel + r * LD, xt, steps, spill + r * 16, false);
        fmas += 24L * steps;
      }
    double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ns / fmas);
  }
  printf("%-40s %.3f cycles per FMA (3.89 GHz)\n", name, best * 3.89);
}
int main() {
  for (int i = 0; i < 64 * 1040; ++i) panel[i] = 1e-3f * (i % 7);
  for (int i = 0; i < 6 * 1040; ++i) xt[i] = 1e-3f * (i % 5);
  run<1024, true>("4 rows x 1024 (L1), spill", 4, 64);
  run<1024, true, 64>("64 rows (L2), prefetch 256 B ahead", 64, 64);
  run<1024, true, 128>("64 rows (L2), prefetch 512 B ahead", 64, 64);
  run<1024, true, 256>("64 rows (L2), prefetch 1 KiB ahead", 64, 64);
  run<1024, true>("64 rows x 1024 (L2), spill", 64, 64);
  run<1040, true>("64 rows x 1024 padded (L2), spill", 64, 64);
  run<1024, false>("64 rows x 1024 (L2), no spill", 64, 64);
  run<256, true>("64 rows x 256 (L1+), spill", 64, 16);
  run<512, true>("32 rows x 512 , spill", 32, 32);
  run<1024, true>("4 rows x 512 steps (L1), spill", 4, 32);
}
