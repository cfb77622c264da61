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
  CalibrateGhz(fma);
  std::printf("# ops per cycle, a cycle being the time of two 512-bit FMAs (%.2f GHz)\n", ghz);
  std::printf("# 512-bit ops\n");
  Row("fma", PerCycle(fma, fma));
  Row("mul", PerCycle(mul, mul));
  Row("add", PerCycle(add, add));
  Row("cvtdq2ps", PerCycle(cvt, cvt));
  Row("vpermps", PerCycle(perm, perm));
  Row("vpsrlvd", PerCycle(srlv, srlv));
  Row("vpmovsxbd", PerCycle(movsx, movsx));
  Row("vpaddd", PerCycle(padd, padd));
  Row("vpshufb", PerCycle(pshufb, pshufb));
  Row("vcvtph2ps", PerCycle(ph2ps, ph2ps));
  Row("vcvtps2ph", PerCycle(ps2ph, ps2ph));
  Row("fma+mul", PerCycle(fma, mul));
  Row("fma+add", PerCycle(fma, add));
  Row("fma+cvt", PerCycle(fma, cvt));
  Row("add+cvt", PerCycle(add, cvt));
  Row("fma+srlv", PerCycle(fma, srlv));
  Row("add+srlv", PerCycle(add, srlv));
  Row("fma+perm", PerCycle(fma, perm));
  Row("add+perm", PerCycle(add, perm));
  Row("perm+srlv", PerCycle(perm, srlv));
  Row("perm+movsx", PerCycle(perm, movsx));
  Row("fma+movsx", PerCycle(fma, movsx));
  Row("perm+padd", PerCycle(perm, padd));
  Row("fma+padd", PerCycle(fma, padd));
  // VPMULTISHIFTQB could take VPSRLVD's place in the int4 decoder (bits 0..3 of each dword's low
  // byte from any offset of its qword): which pipes?
  const __m512i offsets = _mm512_set1_epi64(0x1c1814100c080400LL);
  auto mshift = [&](__m512 a) {
    return _mm512_castsi512_ps(_mm512_multishift_epi64_epi8(offsets, _mm512_castps_si512(a)));
  };
  Row("vpmultishiftqb", PerCycle(mshift, mshift));
  Row("mshift+fma", PerCycle(mshift, fma));
  Row("mshift+add", PerCycle(mshift, add));
  Row("mshift+perm", PerCycle(mshift, perm));

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
  Row("vpshufb", PerCycle<__m256i>(pshufb8, pshufb8));
  Row("vpunpcklbw", PerCycle<__m256i>(unpack8, unpack8));
  Row("vpermps", PerCycle<__m256i>(perm8, perm8));
  Row("vpand", PerCycle<__m256i>(and8, and8));
  Row("pshufb+perm", PerCycle<__m256i>(pshufb8, perm8));
  Row("pshufb+fma", PerCycle<__m256i>(pshufb8, fma8));
  Row("pshufb+add", PerCycle<__m256i>(pshufb8, add8));
  Row("pshufb+unpack", PerCycle<__m256i>(pshufb8, unpack8));
  Row("unpack+fma", PerCycle<__m256i>(unpack8, fma8));
  Row("unpack+add", PerCycle<__m256i>(unpack8, add8));
  return 0;
}
