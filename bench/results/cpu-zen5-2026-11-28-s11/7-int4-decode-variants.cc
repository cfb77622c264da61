// Throughput of four int4 decode steps (16 weights each) on one core, 8 rows of K = 2048 held in
// L1/L2: (a) the kernel's (linear_avx512.cc), (b) and (c) a repacked nibble order that needs
// fewer shifts, (d) an fp16 table looked up by word permute and converted. A measurement of the
// eleventh session (../cpu_kernels.md), not part of the build; the sums are not checked.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
constexpr int R = 8;
static double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
alignas(64) static int32_t kShift[16];

// (a) current: 8 bytes per step per row, broadcast + srlv + permps + fma
__attribute__((noinline)) void DecodeA(const uint8_t* q, int64_t row_bytes, int64_t steps,
                                       const float* x, const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i sh = _mm512_load_si512(kShift);
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  for (int64_t s = 0; s < steps; ++s) {
    const __m512 xv = _mm512_load_ps(x + s * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int64_t v;
      std::memcpy(&v, q + r * row_bytes + s * 8, 8);
      const __m512 w = _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi64(v), sh), t[r]);
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// (b) repacked: 64-byte blocks of 8 steps; loads at +0..+3, low nibbles direct, high nibbles >> 4
__attribute__((noinline)) void DecodeB(const uint8_t* q, int64_t row_bytes, int64_t steps,
                                       const float* x, const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  for (int64_t s = 0; s < steps; s += 8) {
    __m512 xv[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) xv[j] = _mm512_load_ps(x + (s + j) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = q + r * row_bytes + s * 8;
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(p + j);
        acc[r] = _mm512_fmadd_ps(xv[2 * j], _mm512_permutexvar_ps(v, t[r]), acc[r]);
        acc[r] = _mm512_fmadd_ps(xv[2 * j + 1],
                                 _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), t[r]), acc[r]);
      }
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// (c) repacked: one aligned load per 8 steps, shifts by 4j
__attribute__((noinline)) void DecodeC(const uint8_t* q, int64_t row_bytes, int64_t steps,
                                       const float* x, const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  for (int64_t s = 0; s < steps; s += 8) {
    __m512 xv[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) xv[j] = _mm512_load_ps(x + (s + j) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i v = _mm512_load_si512(q + r * row_bytes + s * 8);
      acc[r] = _mm512_fmadd_ps(xv[0], _mm512_permutexvar_ps(v, t[r]), acc[r]);
#pragma GCC unroll 7
      for (int j = 1; j < 8; ++j)
        acc[r] = _mm512_fmadd_ps(xv[j], _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4 * j), t[r]),
                                 acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// (d) fp16 table, 256-bit word permute, then convert: bcast8 -> vpsrlvw ymm -> vpermw ymm ->
// vcvtph2ps -> fma
alignas(32) static int16_t kWShift[16];
__attribute__((noinline)) void DecodeD(const uint8_t* q, int64_t row_bytes, int64_t steps,
                                       const float* x, const __m256i* htables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m256i sh = _mm256_load_si256(reinterpret_cast<const __m256i*>(kWShift));
  __m256i t[R];
  for (int r = 0; r < R; ++r) t[r] = htables[r];
  for (int64_t s = 0; s < steps; ++s) {
    const __m512 xv = _mm512_load_ps(x + s * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int64_t v;
      std::memcpy(&v, q + r * row_bytes + s * 8, 8);
      const __m256i idx = _mm256_srlv_epi16(_mm256_set1_epi64x(v), sh);
      const __m512 w = _mm512_cvtph_ps(_mm256_permutexvar_epi16(idx, t[r]));
      acc[r] = _mm512_fmadd_ps(xv, w, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

int main() {
  for (int L = 0; L < 16; ++L) kWShift[L] = int16_t(4 * (L / 4));
  alignas(32) __m256i htables[R];
  for (int r = 0; r < R; ++r) htables[r] = _mm256_set1_epi16(int16_t(0x3c00 + r));
  for (int L = 0; L < 16; ++L) kShift[L] = 8 * ((L >> 1) >> 1) + (((L >> 1) & 1) ? 0 : 4);
  const int64_t K = 2048, steps = K / 16, row_bytes = K / 2;
  std::vector<uint8_t> q(R * row_bytes + 64);
  std::mt19937 rng(1);
  for (auto& b : q) b = uint8_t(rng());
  std::vector<float> x(K + 64);
  for (auto& v : x) v = float(rng() % 100) / 100.f;
  float* xa =
      reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(x.data()) + 63) & ~uintptr_t(63));
  uint8_t* qa =
      reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(q.data()) + 63) & ~uintptr_t(63));
  alignas(64) __m512 tables[R];
  for (int r = 0; r < R; ++r) tables[r] = _mm512_set1_ps(float(r + 1));
  float out[R];
  const char* names[] = {
      "a current (bcast+srlv+perm+fma)", "b repacked, 4 unaligned loads + 4 shifts",
      "c repacked, 1 load + 7 shifts", "d fp16 table: srlvw+vpermw ymm+cvtph2ps+fma"};
  std::vector<double> ts[4];
  for (int rep = 0; rep < 3000; ++rep) {
    for (int k = 0; k < 4; ++k) {
      const int v = (rep + k) % 4;
      const double t0 = Now();
      for (int i = 0; i < 20; ++i) {
        if (v == 0) DecodeA(qa, row_bytes, steps, xa, tables, out);
        if (v == 1) DecodeB(qa, row_bytes, steps, xa, tables, out);
        if (v == 2) DecodeC(qa, row_bytes, steps, xa, tables, out);
        if (v == 3) DecodeD(qa, row_bytes, steps, xa, htables, out);
      }
      ts[v].push_back(Now() - t0);
    }
  }
  for (int v = 0; v < 4; ++v) {
    std::sort(ts[v].begin(), ts[v].end());
    const double row_steps = 20.0 * R * steps;
    std::printf("%-45s best %.3f  p25 %.3f  median %.3f  p75 %.3f G row-steps/s\n", names[v],
                row_steps / ts[v][0] / 1e9, row_steps / ts[v][ts[v].size() / 4] / 1e9,
                row_steps / ts[v][ts[v].size() / 2] / 1e9,
                row_steps / ts[v][ts[v].size() * 3 / 4] / 1e9);
  }
  std::printf("%f\n", out[0]);
}
