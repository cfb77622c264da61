// Zen 5's 512-bit byte permutes and unpacks (the ops an int8 decoder by byte tables would use:
// VPERMI2B looks up 128 bytes, VPERMB 64), alone and beside the FMA and the other decode ops, in
// ops per cycle, measured as pipes.cc (../cpu-zen5-2026-11-29-s15) measures: 24 independent
// chains, the cycle taken from the FMA's throughput. Where a pair sums to less than its two ops
// alone, they share pipes. Build and run (a CPU with AVX512-VBMI):
//   g++ -O3 -march=native -std=c++20 bytepipes.cc -o bytepipes && ./bytepipes
#include <cstdio>

#include "../cpu-zen5-2026-11-29-s15/chains.h"

int main() {
  const __m512 t = _mm512_set1_ps(3), b = _mm512_set1_ps(1.0000001f);
  const __m512i t0 = _mm512_set1_epi32(0x01020304), t1 = _mm512_set1_epi32(0x05060708);
  const __m512i seven = _mm512_set1_epi32(7);
  auto fma = [&](__m512 a) { return _mm512_fmadd_ps(a, b, t); };
  auto add = [&](__m512 a) { return _mm512_add_ps(a, b); };
  auto perm = [&](__m512 a) { return _mm512_permutexvar_ps(_mm512_castps_si512(a), t); };
  auto I = [](__m512 a) { return _mm512_castps_si512(a); };
  auto F = [](__m512i a) { return _mm512_castsi512_ps(a); };
  auto vpermi2b = [&](__m512 a) { return F(_mm512_permutex2var_epi8(t0, I(a), t1)); };
  auto vpermb = [&](__m512 a) { return F(_mm512_permutexvar_epi8(I(a), t0)); };
  auto unpackbw = [&](__m512 a) { return F(_mm512_unpacklo_epi8(seven, I(a))); };
  auto unpackwd = [&](__m512 a) { return F(_mm512_unpackhi_epi16(seven, I(a))); };
  auto blendb = [&](__m512 a) {
    return F(_mm512_mask_blend_epi8(0xaaaaaaaaaaaaaaaaull, I(a), t0));
  };
  auto movb2m = [&](__m512 a) { return F(_mm512_movm_epi8(_mm512_movepi8_mask(I(a)))); };
  auto maskperm = [&](__m512 a) {
    return F(_mm512_maskz_permutex2var_epi8(0xaaaaaaaaaaaaaaaaull, t0, I(a), t1));
  };
  auto por = [&](__m512 a) { return F(_mm512_or_si512(I(a), t0)); };
  CalibrateGhz(fma);
  std::printf("# ops per cycle (%.2f GHz)\n", ghz);
  Row("fma", PerCycle(fma, fma));
  Row("vpermi2b", PerCycle(vpermi2b, vpermi2b));
  Row("vpermi2b maskz", PerCycle(maskperm, maskperm));
  Row("vpermb", PerCycle(vpermb, vpermb));
  Row("vpunpcklbw", PerCycle(unpackbw, unpackbw));
  Row("vpunpckhwd", PerCycle(unpackwd, unpackwd));
  Row("vpblendmb", PerCycle(blendb, blendb));
  Row("vpor", PerCycle(por, por));
  Row("movb2m+movm", PerCycle(movb2m, movb2m));
  Row("vpermi2b+fma", PerCycle(vpermi2b, fma));
  Row("vpermi2b+add", PerCycle(vpermi2b, add));
  Row("vpermi2b+perm", PerCycle(vpermi2b, perm));
  Row("vpermi2b+unpack", PerCycle(vpermi2b, unpackbw));
  Row("unpack+fma", PerCycle(unpackbw, fma));
  Row("unpack+add", PerCycle(unpackbw, add));
  Row("unpack+perm", PerCycle(unpackbw, perm));
  Row("vpermb+fma", PerCycle(vpermb, fma));
  Row("vpermb+add", PerCycle(vpermb, add));
  Row("blend+fma", PerCycle(blendb, fma));
  Row("blend+vpermi2b", PerCycle(blendb, vpermi2b));
  return 0;
}
