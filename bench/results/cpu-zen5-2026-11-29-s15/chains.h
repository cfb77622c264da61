// Throughput of vector ops by independent chains, for pipes.cc and
// ../cpu-zen5-2026-11-29-s16/bytepipes.cc (AVX-512 builds): PerCycle(opa, opb) runs 12 chains of
// each op (24 in all; opa = opb: one op alone) and returns ops per cycle, the cycle being 1/ghz
// (set by the program from the FMA's throughput).
#pragma once

#include <immintrin.h>

#include <cstdio>

#include "best.h"

constexpr long kIters = 20000000;
inline double ghz = 0;
inline volatile float sink;

#define R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(j) V a##j = Start<V>(j), c##j = Start<V>(j + 1);
#define STEP(j)     \
  a##j = opa(a##j); \
  c##j = opb(c##j);
#define KEEP(j) __asm__ volatile("" : "+v"(a##j), "+v"(c##j));
#define SINK(j) sink = Lane0(a##j) + Lane0(c##j);

template <class V>
V Start(int j);
template <>
inline __m512 Start<__m512>(int j) {
  return _mm512_set1_ps(float(j));
}
template <>
inline __m256i Start<__m256i>(int j) {
  return _mm256_set1_epi32(j);
}
inline float Lane0(__m512 v) { return _mm512_cvtss_f32(v); }
inline float Lane0(__m256i v) { return float(_mm256_cvtsi256_si32(v)); }

template <class V = __m512, class A, class B>
double PerCycle(A opa, B opb) {
  const double t = Best(
      [&] {
        R12(DECL)
        for (long i = 0; i < kIters; ++i) {
          R12(STEP)
          R12(KEEP)
        }
        R12(SINK)
      },
      1, 5);
  return 24.0 * kIters / t / 1e9 / ghz;
}

// Sets ghz from fma's throughput (two 512-bit FMAs a cycle) and returns it.
template <class Fma>
double CalibrateGhz(Fma fma) {
  ghz = 1.0;
  ghz = PerCycle(fma, fma) / 2;  // FMAs per ns / 2
  return ghz;
}

// One output line: an op's (or a pair's) name and its ops per cycle.
inline void Row(const char* name, double per_cycle) {
  std::printf("%-18s %5.2f\n", name, per_cycle);
}
