// One core, in L1: the AVX2 int4 decode loops without the kernels' tiles, prefetches and
// reductions; 4 rows, G weights/s, best of 7 runs of each. "permute": the decoder linear_avx2.cc
// keeps for group-wise weights (a broadcast dword, VPSRLVD, two 8-entry VPERMPS tables and a blend
// on bit 3). "byte tables": its pair decoder for row-wise weights (two rows per ymm, three VPSHUFB
// tables for bytes 1..3 of the fp32 values, byte and word unpacks); "byte tables, x broadcast"
// loads x as the kernel does (4 values broadcast to both lanes) rather than pre-duplicated.
// Build and run:
//   g++ -O2 -mavx2 -mfma -mf16c -std=c++20 loops-avx2.cc -o loops-avx2 && ./loops-avx2
#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "best.h"

namespace {
constexpr int R = 4;
constexpr int K = 2048;
alignas(64) uint8_t W[R][K / 2];
alignas(64) float X[2 * K];
volatile float sink;

float HorizontalSum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_hadd_ps(a, a);
  return _mm_cvtss_f32(_mm_hadd_ps(a, a));
}

__attribute__((noinline)) void Permute(const __m256* lo, const __m256* hi) {
  __m256 acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  const __m256i shift = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24);
  for (int k = 0; k < K; k += 8) {
    const __m256 xv = _mm256_load_ps(X + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t word;
      std::memcpy(&word, &W[r][k / 2], 4);
      const __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32(word), shift);
      const __m256 a = _mm256_permutevar8x32_ps(lo[r], idx),
                   b = _mm256_permutevar8x32_ps(hi[r], idx);
      const __m256 w = _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
      acc[r][(k / 8) & 1] = _mm256_fmadd_ps(xv, w, acc[r][(k / 8) & 1]);
    }
  }
  float s = 0;
  for (int r = 0; r < R; ++r) s += HorizontalSum(acc[r][0]) + HorizontalSum(acc[r][1]);
  sink = s;
}

template <bool kBroadcastX>
__attribute__((noinline)) void ByteTables(const __m256i* t1, const __m256i* t2, const __m256i* t3) {
  constexpr int P = R / 2;
  __m256 acc[P][4];
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < 4; ++j) acc[p][j] = _mm256_setzero_ps();
  const __m256i m = _mm256_set1_epi8(0x0f), z = _mm256_setzero_si256();
  for (int k = 0; k < K; k += 32) {
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) {
      const __m256i v = _mm256_inserti128_si256(
          _mm256_castsi128_si256(
              _mm_load_si128(reinterpret_cast<const __m128i*>(&W[2 * p][k / 2]))),
          _mm_load_si128(reinterpret_cast<const __m128i*>(&W[2 * p + 1][k / 2])), 1);
      const __m256i ids[2] = {_mm256_and_si256(_mm256_srli_epi16(v, 4), m), _mm256_and_si256(v, m)};
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256i b1 = _mm256_shuffle_epi8(t1[p], ids[h]),
                      b2 = _mm256_shuffle_epi8(t2[p], ids[h]),
                      b3 = _mm256_shuffle_epi8(t3[p], ids[h]);
        const __m256i l01 = _mm256_unpacklo_epi8(z, b1), h01 = _mm256_unpackhi_epi8(z, b1);
        const __m256i l23 = _mm256_unpacklo_epi8(b2, b3), h23 = _mm256_unpackhi_epi8(b2, b3);
        const __m256 d[4] = {_mm256_castsi256_ps(_mm256_unpacklo_epi16(l01, l23)),
                             _mm256_castsi256_ps(_mm256_unpackhi_epi16(l01, l23)),
                             _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01, h23)),
                             _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01, h23))};
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) {
          const __m256 xv =
              kBroadcastX
                  ? _mm256_broadcast_ps(reinterpret_cast<const __m128*>(X + k + 16 * h + 4 * j))
                  : _mm256_load_ps(X + 2 * k + 32 * h + 8 * j);
          acc[p][2 * h + j % 2] = _mm256_fmadd_ps(xv, d[j], acc[p][2 * h + j % 2]);
        }
      }
    }
  }
  float s = 0;
  for (int p = 0; p < P; ++p)
    for (int j = 0; j < 4; ++j) s += HorizontalSum(acc[p][j]);
  sink = s;
}
}  // namespace

int main() {
  for (int r = 0; r < R; ++r)
    for (int i = 0; i < K / 2; ++i) W[r][i] = uint8_t(rand());
  for (int i = 0; i < 2 * K; ++i) X[i] = 1e-3f * float(i % 7);
  __m256 lo[R], hi[R];
  __m256i t1[R], t2[R], t3[R];
  for (int r = 0; r < R; ++r) {
    lo[r] = _mm256_set1_ps(0.5f + float(r));
    hi[r] = _mm256_set1_ps(-0.5f - float(r));
    t1[r] = _mm256_set1_epi8(char(r));
    t2[r] = _mm256_set1_epi8(char(0x30 + r));
    t3[r] = _mm256_set1_epi8(0x3c);
  }
  const int reps = 20000;
  const double weights = double(R) * K * reps;
  for (int round = 0; round < 3; ++round) {
    std::printf("permute                    %6.2f G weights/s\n",
                weights / Best([&] { Permute(lo, hi); }, reps) / 1e9);
    std::printf("byte tables                %6.2f G weights/s\n",
                weights / Best([&] { ByteTables<false>(t1, t2, t3); }, reps) / 1e9);
    std::printf("byte tables, x broadcast   %6.2f G weights/s\n",
                weights / Best([&] { ByteTables<true>(t1, t2, t3); }, reps) / 1e9);
  }
  return 0;
}
