// One core, in L1: the AVX-512 decode loops' own ceilings, without the kernels' tiles, prefetches
// and reductions; 8 rows, G weights/s, best of 7 runs of each. int4 by VPERMPS as the kernel does
// it (a broadcast qword, a per-lane VPSRLVD) and with weights repacked so that one 64-byte load
// feeds 8 steps by an immediate shift (not a layout the files have: it measures what the
// per-lane shift costs); int8 by the split (linear_common.h), by the round trip through fp16, and
// by the split with q converted by an integer add and a subtract. Build and run:
//   g++ -O2 -march=native -std=c++20 loops-avx512.cc -o loops-avx512 && ./loops-avx512
#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "best.h"

namespace {
constexpr int R = 8;
constexpr int K = 2048;
alignas(64) uint8_t W4[R][K / 2];
alignas(64) int8_t W8[R][K];
alignas(64) float X[K];
alignas(64) int32_t kShift[16];
volatile float sink;

float Sum(const __m512 (&acc)[R]) {
  float s = 0;
  for (int r = 0; r < R; ++r) s += _mm512_reduce_add_ps(acc[r]);
  return s;
}

// int4, the kernel's decoder: 8 bytes broadcast, a per-lane shift, VPERMPS, FMA.
__attribute__((noinline)) void Int4Kernel(const __m512* table) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i shift = _mm512_load_si512(kShift);
  for (int k = 0; k < K; k += 16) {
    const __m512 xv = _mm512_load_ps(X + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int64_t v;
      std::memcpy(&v, &W4[r][k / 2], 8);
      const __m512 w =
          _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi64(v), shift), table[r]);
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  sink = Sum(acc);
}

// int4 repacked: a 64-byte load, VPERMPS on its nibble 0, then VPSRLD by 4 for the next step.
__attribute__((noinline)) void Int4Repacked(const __m512* table) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int k = 0; k < K; k += 128) {
    __m512i w[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) w[r] = _mm512_load_si512(&W4[r][k / 2]);
#pragma GCC unroll 8
    for (int p = 0; p < 8; ++p) {
      const __m512 xv = _mm512_load_ps(X + k + 16 * p);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[r] = _mm512_fmadd_ps(xv, _mm512_permutexvar_ps(w[r], table[r]), acc[r]);
        w[r] = _mm512_srli_epi32(w[r], 4);
      }
    }
  }
  sink = Sum(acc);
}

// int8 by the split: VPMOVSXBD, VCVTDQ2PS, then c = q·(s·8193), d = c - q·s, w = c - d.
// kAddConvert: q converted as float(q + 2^23) - 2^23 (an integer add on any pipe and a subtract)
// instead of VCVTDQ2PS.
template <bool kAddConvert>
__attribute__((noinline)) void Int8Split(const float* scale) {
  __m512 acc[R], s[R], ss[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    s[r] = _mm512_set1_ps(scale[r]);
    ss[r] = _mm512_set1_ps(scale[r] * 8193.f);
  }
  const __m512i magic = _mm512_set1_epi32(0x4B000000);
  const __m512 magic_f = _mm512_set1_ps(8388608.f);
  for (int k = 0; k < K; k += 16) {
    const __m512 xv = _mm512_load_ps(X + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i qi =
          _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(&W8[r][k])));
      const __m512 q =
          kAddConvert ? _mm512_sub_ps(_mm512_castsi512_ps(_mm512_add_epi32(qi, magic)), magic_f)
                      : _mm512_cvtepi32_ps(qi);
      __m512 c = _mm512_mul_ps(q, ss[r]);
      __asm__("" : "+v"(c));
      const __m512 w = _mm512_sub_ps(c, _mm512_fnmadd_ps(q, s[r], c));
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  sink = Sum(acc);
}

// int8 rounded by VCVTPS2PH + VCVTPH2PS instead of the split.
__attribute__((noinline)) void Int8RoundTrip(const float* scale) {
  __m512 acc[R], s[R];
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    s[r] = _mm512_set1_ps(scale[r]);
  }
  for (int k = 0; k < K; k += 16) {
    const __m512 xv = _mm512_load_ps(X + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 q = _mm512_cvtepi32_ps(
          _mm512_cvtepi8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(&W8[r][k]))));
      const __m512 w = _mm512_cvtph_ps(
          _mm512_cvtps_ph(_mm512_mul_ps(q, s[r]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  sink = Sum(acc);
}

}  // namespace

int main() {
  for (int r = 0; r < R; ++r) {
    for (int i = 0; i < K / 2; ++i) W4[r][i] = uint8_t(rand());
    for (int i = 0; i < K; ++i) W8[r][i] = int8_t(rand());
  }
  for (int i = 0; i < K; ++i) X[i] = 1e-3f * float(i % 7);
  for (int i = 0; i < 16; ++i) kShift[i] = 2 * i;
  __m512 table[R];
  float scale[R];
  for (int r = 0; r < R; ++r) {
    table[r] = _mm512_set1_ps(0.5f + float(r));
    scale[r] = 0.01f * float(r + 1);
  }
  const int reps = 20000;
  const double weights = double(R) * K * reps;
  for (int round = 0; round < 3; ++round) {
    std::printf("int4 kernel decoder   %6.2f G weights/s\n",
                weights / Best([&] { Int4Kernel(table); }, reps) / 1e9);
    std::printf("int4 repacked         %6.2f G weights/s\n",
                weights / Best([&] { Int4Repacked(table); }, reps) / 1e9);
    std::printf("int8 split            %6.2f G weights/s\n",
                weights / Best([&] { Int8Split<false>(scale); }, reps) / 1e9);
    std::printf("int8 fp16 round trip  %6.2f G weights/s\n",
                weights / Best([&] { Int8RoundTrip(scale); }, reps) / 1e9);
    std::printf("int8 split, add conv  %6.2f G weights/s\n",
                weights / Best([&] { Int8Split<true>(scale); }, reps) / 1e9);
  }
  return 0;
}
