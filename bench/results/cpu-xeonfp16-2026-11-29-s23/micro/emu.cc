// Emulates the prefill's PanelRange loop structure (no decode, no x conversion): where the
// register tile's time goes beyond the tile alone.
#include <immintrin.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
constexpr int TB = 6, NR = 4;
template <int NRr>
__attribute__((noinline)) void tile(const float* p, int ldp, const float* x, int ldx, int steps,
                                    float* sp, int ldt, bool first) {
  __m512 acc[TB][NRr];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NRr; ++r)
      acc[t][r] = first ? _mm512_setzero_ps() : _mm512_load_ps(sp + t * ldt + r * 16);
  for (int s = 0; s < steps; ++s) {
    __m512 wv[NRr];
#pragma GCC unroll 8
    for (int r = 0; r < NRr; ++r) wv[r] = _mm512_load_ps(p + r * ldp + s * 16);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      __m512 xv = _mm512_load_ps(x + t * ldx + s * 16);
      __asm__("" : "+v"(xv));
#pragma GCC unroll 8
      for (int r = 0; r < NRr; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NRr; ++r) _mm512_store_ps(sp + t * ldt + r * 16, acc[t][r]);
}
template <bool CX, bool CW>
__attribute__((noinline)) void tileF(const float* p, int ldp, const float* x, int ldx, int steps,
                                     float* sp, int ldt, bool first, const uint16_t* xh, long ldxh,
                                     const uint16_t* wh, long ldwh) {
  __m512 acc[TB][NR];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
      acc[t][r] = first ? _mm512_setzero_ps() : _mm512_load_ps(sp + t * ldt + r * 16);
  for (int s = 0; s < steps; ++s) {
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) {
      if (CW) {
        wv[r] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(wh + r * ldwh + s * 16)));
        _mm512_store_ps((float*)p + r * ldp + s * 16, wv[r]);
      } else {
        wv[r] = _mm512_load_ps(p + r * ldp + s * 16);
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      __m512 xv;
      if (CX) {
        xv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(xh + t * ldxh + s * 16)));
        _mm512_store_ps((float*)x + t * ldx + s * 16, xv);
      } else {
        xv = _mm512_load_ps(x + t * ldx + s * 16);
      }
      __asm__("" : "+v"(xv));
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) _mm512_store_ps(sp + t * ldt + r * 16, acc[t][r]);
}
struct Cfg { int rows, block, T; bool small_spill; const char* name; int conv = 0; };
static uint16_t* g_x;   // [128][12288] fp16
static uint16_t* g_w;   // [36864][12288] fp16
double run_thread(const Cfg& c, int K, int items, int tid) {
  float* panel = (float*)aligned_alloc(64, size_t(c.rows) * c.block * 4);
  float* xt = (float*)aligned_alloc(64, size_t(TB) * c.block * 4);
  int T6 = (c.T + 5) / 6 * 6;
  float* spill = (float*)aligned_alloc(64, size_t(T6) * c.rows * 64);
  for (long i = 0; i < long(c.rows) * c.block; ++i) panel[i] = 1e-3f * (i % 7);
  for (long i = 0; i < long(TB) * c.block; ++i) xt[i] = 1e-3f * (i % 5);
  for (long i = 0; i < long(T6) * c.rows * 16; ++i) spill[i] = 0;
  long fmas = 0;
  auto t0 = std::chrono::steady_clock::now();
  float* panel2 = (float*)aligned_alloc(64, size_t(c.rows) * c.block * 4);
  float* xt2 = (float*)aligned_alloc(64, size_t(TB) * c.block * 4);
  if (c.conv & 64) {
    for (int it = 0; it < items; ++it)
      for (int k0 = 0; k0 < K; k0 += c.block) {
        const uint16_t* w = g_w + (long(tid * items + it) * c.rows) * K;
        int wrow = 0;  // next block's rows decoded so far
        const int tiles = T6 / TB * (c.rows / NR);
        for (int tt = 0; tt < T6; tt += TB) {
          int xrow = 0;
          for (int r = 0; r < c.rows; r += NR) {
            const int i = (tt / TB) * (c.rows / NR) + r / NR;
            // decode next block's rows: row j due at tile j * tiles / rows
            while (wrow < c.rows && long(wrow) * tiles <= long(i) * c.rows) {
              const int kn = (k0 + c.block) % K;
              for (int k = 0; k < c.block; k += 16)
                _mm512_store_ps(panel2 + long(wrow) * c.block + k,
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w + long(wrow) * K + kn + k))));
              ++wrow;
            }
            while (xrow < TB && xrow * (c.rows / NR) <= (r / NR) * TB) {
              const int tn = (tt + TB + xrow) % 128;
              for (int k = 0; k < c.block; k += 16)
                _mm512_storeu_ps(xt2 + xrow * c.block + k,
                    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g_x + long(tn) * K + k0 + k))));
              ++xrow;
            }
            float* sp = spill + (long(tt) * c.rows + r) * 16;
            tile<NR>(panel + long(r) * c.block, c.block, xt, c.block, c.block / 16, sp, c.rows * 16, k0 == 0);
            fmas += 24L * (c.block / 16);
          }
          std::swap(xt, xt2);
        }
        std::swap(panel, panel2);
      }
  }
  if (c.conv & 128) {  // both conversions fused into the tiles that first need them
    for (int it = 0; it < items; ++it)
      for (int k0 = 0; k0 < K; k0 += c.block) {
        const uint16_t* w = g_w + (long(tid * items + it) * c.rows) * K + k0;
        for (int tt = 0; tt < T6; tt += TB) {
          const uint16_t* xh = g_x + long(tt % 128) * K + k0;
          for (int r = 0; r < c.rows; r += NR) {
            float* sp = spill + (long(tt) * c.rows + r) * 16;
            const float* pp = panel + long(r) * c.block;
            const int S = c.block / 16, ld = c.rows * 16;
            if (tt == 0 && r == 0) tileF<true, true>(pp, c.block, xt, c.block, S, sp, ld, k0 == 0, xh, K, w + long(r) * K, K);
            else if (tt == 0) tileF<false, true>(pp, c.block, xt, c.block, S, sp, ld, k0 == 0, xh, K, w + long(r) * K, K);
            else if (r == 0) tileF<true, false>(pp, c.block, xt, c.block, S, sp, ld, k0 == 0, xh, K, w, K);
            else tile<NR>(pp, c.block, xt, c.block, S, sp, ld, k0 == 0);
            fmas += 24L * S;
          }
        }
      }
  }
  for (int it = 0; it < (c.conv & 192 ? 0 : items); ++it)
    for (int k0 = 0; k0 < K; k0 += c.block) {
      if (c.conv & 2) {
        const uint16_t* w = g_w + (c.conv & 32 ? 0 : long(tid * items + it) * c.rows) * K;
        for (int r = 0; r < c.rows; ++r)
          for (int k = 0; k < c.block; k += 16)
            _mm512_store_ps(panel + long(r) * c.block + k,
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(w + long(r) * K + k0 + k))));
      }
      for (int tt = 0; tt < T6; tt += TB) {
        if (c.conv & 1) {
          for (int t = 0; t < TB; ++t)
            for (int k = 0; k < c.block; k += 16)
              _mm512_storeu_ps(xt + t * c.block + k,
                  _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(g_x + long((c.conv & 4 ? t : tt + t) % 128) * K + k0 + k))));
          if (c.conv & 8) {  // prefetch the next token tile's x into L2
            for (int t = 0; t < TB; ++t)
              for (int k = 0; k < c.block; k += 32)
                _mm_prefetch((const char*)(g_x + long((tt + TB + t) % 128) * K + k0 + k), _MM_HINT_T1);
          }
        }
        for (int r = 0; r < c.rows; r += NR) {
          if (c.conv & 16) {  // the next K block's weights, 12 lines a tile
            const long i = (tt / TB) * (c.rows / NR) + r / NR;  // tile index in the block
            const uint16_t* w = g_w + (long(tid * items + it) * c.rows) * K + k0 + c.block;
            for (long l = i * 12; l < i * 12 + 12 && l < c.rows * (c.block / 32); ++l) {
              const long row = l / (c.block / 32), col = l % (c.block / 32);
              _mm_prefetch((const char*)(w + row * K + col * 32), _MM_HINT_T1);
            }
          }
          float* sp = c.small_spill ? spill + r * 16 : spill + (long(tt) * c.rows + r) * 16;
          tile<NR>(panel + long(r) * c.block, c.block, xt, c.block, c.block / 16, sp, c.rows * 16, k0 == 0);
          fmas += 24L * (c.block / 16);
        }
      }
    }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  free(panel); free(xt); free(spill); free(panel2); free(xt2);
  return fmas * 32.0 / s / 1e9;  // GFLOP/s
}
int main(int argc, char** argv) {
  const double peak2 = 466.6;
  g_x = (uint16_t*)aligned_alloc(64, 128L * 12288 * 2);
  g_w = (uint16_t*)aligned_alloc(64, 36864L * 12288 * 2);
  for (long i = 0; i < 128L * 12288; ++i) g_x[i] = 0x3c00 + (i % 7);
  for (long i = 0; i < 36864L * 12288; ++i) g_w[i] = 0x3c00 + (i % 5);
  Cfg cfgs[] = {{64, 1024, 128, false, "kernel: 64 rows x 1024, spill T x rows"},
                {64, 1024, 128, false, "+ x conversion", 1},
                {64, 1024, 128, false, "+ x conversion, x of 6 tokens (L1/L2)", 5},
                {64, 1024, 128, false, "+ x conversion, next tile prefetched (at once)", 9},
                {64, 1024, 128, false, "+ panel decode", 2},
                {64, 1024, 128, false, "+ panel decode, weights prefetched", 18},
                {64, 1024, 128, false, "+ panel decode, weights in cache", 34},
                {64, 1024, 128, false, "+ both", 3},
                {64, 1024, 128, false, "both, interleaved with the tiles", 64},
                {64, 1024, 128, false, "both, fused into the first tiles", 128},
                {128, 1024, 128, false, "128 rows: + both", 3},
                {128, 512, 128, false, "128 rows x 512: + both", 3}};
  for (int rep = 0; rep < 2; ++rep)
    for (const Cfg& c : cfgs) {
      double g[2];
      std::thread a([&] { g[0] = run_thread(c, 12288, 4 * 64 / c.rows, 0); });
      std::thread b([&] { g[1] = run_thread(c, 12288, 4 * 64 / c.rows, 1); });
      a.join(); b.join();
      printf("%-44s %6.1f GFLOP/s  %.1f%% of the 2-thread peak\n", c.name, g[0] + g[1],
             100 * (g[0] + g[1]) / peak2);
    }
}
