// Zen 5 vector pipes as the decode kernels use them: the throughput of each 512-bit op alone (24
// independent chains), and of pairs of ops (12 chains of each), in ops per cycle, the cycle taken
// as the time of half the 512-bit FMA's throughput (two FMA pipes, as on Zen 5 and most AVX-512
// server cores; the clock this implies is printed first); then the 256-bit ops of the AVX2 int4
// decoders. Where a pair sums to less than its two ops alone, they share pipes. Build and run (an
// AVX-512 CPU):
//   g++ -O3 -march=native -std=c++20 pipes.cc -o pipes && ./pipes
#include <cstdio>

#include "chains.h"

int main() {
  const __m512 t = _mm512_set1_ps(3), b = _mm512_set1_ps(1.0000001f);
  const __m512i one = _mm512_set1_epi32(1);
  auto fma = [&](__m512 a) { return _mm512_fmadd_ps(a, b, t); };
  auto mul = [&](__m512 a) { return _mm512_mul_ps(a, b); };
  auto add = [&](__m512 a) { return _mm512_add_ps(a, b); };
  auto cvt = [&](__m512 a) { return _mm512_cvtepi32_ps(_mm512_castps_si512(a)); };
  auto perm = [&](__m512 a) { return _mm512_permutexvar_ps(_mm512_castps_si512(a), t); };
  auto srlv = [&](__m512 a) {
    return _mm512_castsi512_ps(_mm512_srlv_epi32(_mm512_castps_si512(a), one));
  };
  auto movsx = [&](__m512 a) {
    return _mm512_castsi512_ps(
        _mm512_cvtepi8_epi32(_mm512_castsi512_si128(_mm512_castps_si512(a))));
  };
  auto padd = [&](__m512 a) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), one));
  };
  auto ph2ps = [&](__m512 a) {
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_castps_si512(a)));
  };
  auto ps2ph = [&](__m512 a) {
    return _mm512_castsi512_ps(
        _mm512_castsi256_si512(_mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  };
  auto pshufb = [&](__m512 a) {
    return _mm512_castsi512_ps(_mm512_shuffle_epi8(_mm512_castps_si512(t), _mm512_castps_si512(a)));
  };
  ghz = 1.0;
  ghz = PerCycle(fma, fma) / 2;  // FMAs per ns / 2
  std::printf("# ops per cycle, a cycle being the time of two 512-bit FMAs (%.2f GHz)\n", ghz);
  std::printf("# 512-bit ops\n");
  auto row = [](const char* name, double v) { std::printf("%-18s %5.2f\n", name, v); };
  row("fma", PerCycle(fma, fma));
  row("mul", PerCycle(mul, mul));
  row("add", PerCycle(add, add));
  row("cvtdq2ps", PerCycle(cvt, cvt));
  row("vpermps", PerCycle(perm, perm));
  row("vpsrlvd", PerCycle(srlv, srlv));
  row("vpmovsxbd", PerCycle(movsx, movsx));
  row("vpaddd", PerCycle(padd, padd));
  row("vpshufb", PerCycle(pshufb, pshufb));
  row("vcvtph2ps", PerCycle(ph2ps, ph2ps));
  row("vcvtps2ph", PerCycle(ps2ph, ps2ph));
  row("fma+mul", PerCycle(fma, mul));
  row("fma+add", PerCycle(fma, add));
  row("fma+cvt", PerCycle(fma, cvt));
  row("add+cvt", PerCycle(add, cvt));
  row("fma+srlv", PerCycle(fma, srlv));
  row("add+srlv", PerCycle(add, srlv));
  row("fma+perm", PerCycle(fma, perm));
  row("add+perm", PerCycle(add, perm));
  row("perm+srlv", PerCycle(perm, srlv));
  row("perm+movsx", PerCycle(perm, movsx));
  row("fma+movsx", PerCycle(fma, movsx));
  row("perm+padd", PerCycle(perm, padd));
  row("fma+padd", PerCycle(fma, padd));
  // VPMULTISHIFTQB could take VPSRLVD's place in the int4 decoder (bits 0..3 of each dword's low
  // byte from any offset of its qword): which pipes?
  const __m512i offsets = _mm512_set1_epi64(0x1c1814100c080400LL);
  auto mshift = [&](__m512 a) {
    return _mm512_castsi512_ps(_mm512_multishift_epi64_epi8(offsets, _mm512_castps_si512(a)));
  };
  row("vpmultishiftqb", PerCycle(mshift, mshift));
  row("mshift+fma", PerCycle(mshift, fma));
  row("mshift+add", PerCycle(mshift, add));
  row("mshift+perm", PerCycle(mshift, perm));

  std::printf("# 256-bit ops\n");
  const __m256i bytes = _mm256_set1_epi32(0x01020304), seven = _mm256_set1_epi32(7);
  const __m256 b8 = _mm256_set1_ps(1.0000001f), t8 = _mm256_set1_ps(3);
  auto fma8 = [&](__m256i a) {
    return _mm256_castps_si256(_mm256_fmadd_ps(_mm256_castsi256_ps(a), b8, t8));
  };
  auto add8 = [&](__m256i a) {
    return _mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(a), b8));
  };
  auto pshufb8 = [&](__m256i a) { return _mm256_shuffle_epi8(bytes, a); };
  auto unpack8 = [&](__m256i a) { return _mm256_unpacklo_epi8(seven, a); };
  auto perm8 = [&](__m256i a) {
    return _mm256_castps_si256(_mm256_permutevar8x32_ps(_mm256_castsi256_ps(bytes), a));
  };
  auto and8 = [&](__m256i a) { return _mm256_and_si256(a, seven); };
  row("vpshufb", PerCycle<__m256i>(pshufb8, pshufb8));
  row("vpunpcklbw", PerCycle<__m256i>(unpack8, unpack8));
  row("vpermps", PerCycle<__m256i>(perm8, perm8));
  row("vpand", PerCycle<__m256i>(and8, and8));
  row("pshufb+perm", PerCycle<__m256i>(pshufb8, perm8));
  row("pshufb+fma", PerCycle<__m256i>(pshufb8, fma8));
  row("pshufb+add", PerCycle<__m256i>(pshufb8, add8));
  row("pshufb+unpack", PerCycle<__m256i>(pshufb8, unpack8));
  row("unpack+fma", PerCycle<__m256i>(unpack8, fma8));
  row("unpack+add", PerCycle<__m256i>(unpack8, add8));
  return 0;
}
