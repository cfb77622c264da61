#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
constexpr int TB = 6, NR = 4, KB = 1024, S = KB / 16;
alignas(64) static float panel[64 * 1040];
alignas(64) static float xt[6 * 1040];
alignas(64) static float spill[144 * 64 * 16];
// PS: panel step stride (floats) between steps; PR: between rows. XS, XT likewise for x.
template <int PS, int PR, int XS, int XT, int PF = 0>
__attribute__((noinline)) void tile(const float* p, const float* x, int steps, float* sp) {
  __m512 acc[TB][NR];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_load_ps(sp + (t * 64 + r) * 16);
  for (int s = 0; s < steps; ++s) {
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = _mm512_load_ps(p + r * PR + s * PS);
    if (PF) __builtin_prefetch(p + s * PS + PF, 0, 3);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      __m512 xv = _mm512_load_ps(x + t * XT + s * XS);
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
template <int PS, int PR, int XS, int XT, int PF = 0>
void run(const char* name, int rows, int tstride) {
  double best = 1e30;
  for (int rep = 0; rep < 30; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    long fmas = 0;
    for (int it = 0; it < 200; ++it)
      for (int r = 0; r < rows; r += 4) {
        // interleaved: a tile's block is contiguous (S*4*16 floats); row-major: 4 rows down.
        const float* p = PR == KB ? panel + r * KB : panel + (r / 4) * S * 64;
        tile<PS, PR, XS, XT, PF>(p, xt, S, spill + r * 16);
        fmas += 24L * S;
      }
    double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ns / fmas);
  }
  printf("%-48s %.3f cycles per FMA (3.89 GHz), %.1f%%\n", name, best * 3.89, 50 / (best * 3.89));
}
int main() {
  for (int i = 0; i < 64 * 1040; ++i) panel[i] = 1e-3f * (i % 7);
  for (int i = 0; i < 6 * 1040; ++i) xt[i] = 1e-3f * (i % 5);
  for (int k = 0; k < 3; ++k) {
    run<16, KB, 16, KB>("row-major, 4 rows (L1)", 4, 0);
    run<64, 16, 96, 16>("interleaved, 4 rows (L1)", 4, 0);
    run<16, KB, 96, 16>("row-major panel, interleaved x, 4 rows (L1)", 4, 0);
    run<64, 16, 16, KB>("interleaved panel, row-major x, 4 rows (L1)", 4, 0);
    run<16, KB, 16, KB>("row-major, 64 rows (L2)", 64, 0);
    run<64, 16, 96, 16>("interleaved, 64 rows (L2)", 64, 0);
    run<64, 16, 96, 16, 256>("interleaved, 64 rows (L2), pf 1 KiB", 64, 0);
    run<64, 16, 96, 16, 512>("interleaved, 64 rows (L2), pf 2 KiB", 64, 0);
    run<16, KB, 96, 16>("row-major panel, interleaved x, 64 rows (L2)", 64, 0);
    puts("");
  }
}
