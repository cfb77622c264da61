// Throughput of int4 decode steps (16 weights each) on one core, 8 rows of K = 2048 held in L1/L2
// (twelfth session, ../cpu_kernels.md): (a) the kernel's step; (i), (j) broadcasts of 16 and 32
// bytes (a repacked nibble order, two and four steps each); (k) (a) with the broadcast in inline
// asm; (n) (a) without the shift (wrong sums: the bound a shift-free decoder could reach). Not part
// of the build; the sums are not checked.
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
alignas(64) static int32_t kShift[16], kSh2A[16], kSh2B[16], kSh4[4][16];
__attribute__((noinline)) void DecodeA(const uint8_t* q, int64_t rb, int64_t steps, const float* x,
                                       const __m512* tables, float* out) {
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
      std::memcpy(&v, q + r * rb + s * 8, 8);
      acc[r] = _mm512_fmadd_ps(
          xv, _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi64(v), sh), t[r]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}
// (i) 16-byte broadcast per 2 steps
__attribute__((noinline)) void DecodeI(const uint8_t* q, int64_t rb, int64_t steps, const float* x,
                                       const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i sa = _mm512_load_si512(kSh2A), sb = _mm512_load_si512(kSh2B);
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  for (int64_t s = 0; s < steps; s += 2) {
    const __m512 x0 = _mm512_load_ps(x + s * 16), x1 = _mm512_load_ps(x + s * 16 + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i v =
          _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i*)(q + r * rb + s * 8)));
      acc[r] = _mm512_fmadd_ps(x0, _mm512_permutexvar_ps(_mm512_srlv_epi32(v, sa), t[r]), acc[r]);
      acc[r] = _mm512_fmadd_ps(x1, _mm512_permutexvar_ps(_mm512_srlv_epi32(v, sb), t[r]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}
// (j) 32-byte broadcast per 4 steps
__attribute__((noinline)) void DecodeJ(const uint8_t* q, int64_t rb, int64_t steps, const float* x,
                                       const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  __m512i sh[4];
  for (int j = 0; j < 4; ++j) sh[j] = _mm512_load_si512(kSh4[j]);
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  for (int64_t s = 0; s < steps; s += 4) {
    __m512 xv[4];
    for (int j = 0; j < 4; ++j) xv[j] = _mm512_load_ps(x + (s + j) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512i v =
          _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(q + r * rb + s * 8)));
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j)
        acc[r] = _mm512_fmadd_ps(xv[j], _mm512_permutexvar_ps(_mm512_srlv_epi32(v, sh[j]), t[r]),
                                 acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}
// (k) 16-byte broadcast, rows 2 at a time interleaved? -- (k) = A but loads 8 bytes via
// vmovq+vpbroadcastq reg
__attribute__((noinline)) void DecodeK(const uint8_t* q, int64_t rb, int64_t steps, const float* x,
                                       const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i sh = _mm512_load_si512(kShift);
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  for (int64_t s = 0; s < steps; ++s) {
    const __m512 xv = _mm512_load_ps(x + s * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m512i b;
      __asm__("vpbroadcastq %1, %0" : "=v"(b) : "m"(*(const int64_t*)(q + r * rb + s * 8)));
      acc[r] = _mm512_fmadd_ps(xv, _mm512_permutexvar_ps(_mm512_srlv_epi32(b, sh), t[r]), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}
// (n) no decode: fma with broadcast as weights (load+fma only), upper bound for loads
__attribute__((noinline)) void DecodeN(const uint8_t* q, int64_t rb, int64_t steps, const float* x,
                                       const __m512* tables, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  __m512 t[R];
  for (int r = 0; r < R; ++r) t[r] = tables[r];
  const __m512i sh = _mm512_load_si512(kShift);
  for (int64_t s = 0; s < steps; ++s) {
    const __m512 xv = _mm512_load_ps(x + s * 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int64_t v;
      std::memcpy(&v, q + r * rb + s * 8, 8);
      acc[r] = _mm512_fmadd_ps(xv, _mm512_permutexvar_ps(_mm512_set1_epi64(v), t[r]), acc[r]);
    }
  }
  (void)sh;
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}
int main() {
  for (int L = 0; L < 16; ++L) kShift[L] = 8 * ((L >> 1) >> 1) + (((L >> 1) & 1) ? 0 : 4);
  for (int L = 0; L < 16; ++L) {
    kSh2A[L] = 4 * (L / 4);
    kSh2B[L] = 16 + 4 * (L / 4);
  }
  for (int j = 0; j < 4; ++j)
    for (int L = 0; L < 16; ++L) kSh4[j][L] = 8 * j + 4 * (L / 8);
  const int64_t K = 2048, steps = K / 16, rb = K / 2;
  std::vector<uint8_t> qv(R * rb + 64);
  std::mt19937 rng(1);
  for (auto& b : qv) b = uint8_t(rng());
  std::vector<float> xv(K + 64);
  for (auto& v : xv) v = float(rng() % 100) / 100.f;
  float* xa = (float*)(((uintptr_t)xv.data() + 63) & ~uintptr_t(63));
  uint8_t* qa = (uint8_t*)(((uintptr_t)qv.data() + 63) & ~uintptr_t(63));
  alignas(64) __m512 tables[R];
  for (int r = 0; r < R; ++r) tables[r] = _mm512_set1_ps(float(r + 1));
  float out[R];
  const int NV = 5;
  const char* names[NV] = {"a current bcast8+srlv+perm+fma", "i bcast16 per 2 steps",
                           "j bcast32 per 4 steps", "k a via asm vpbroadcastq",
                           "n bcast8+perm+fma (no shift)"};
  std::vector<double> ts[NV];
  for (int rep = 0; rep < 3000; ++rep)
    for (int k = 0; k < NV; ++k) {
      const int v = (rep + k) % NV;
      const double t0 = Now();
      for (int i = 0; i < 20; ++i) {
        if (v == 0) DecodeA(qa, rb, steps, xa, tables, out);
        if (v == 1) DecodeI(qa, rb, steps, xa, tables, out);
        if (v == 2) DecodeJ(qa, rb, steps, xa, tables, out);
        if (v == 3) DecodeK(qa, rb, steps, xa, tables, out);
        if (v == 4) DecodeN(qa, rb, steps, xa, tables, out);
      }
      ts[v].push_back(Now() - t0);
    }
  for (int v = 0; v < NV; ++v) {
    std::sort(ts[v].begin(), ts[v].end());
    const double rs = 20.0 * R * steps;
    std::printf("%-36s best %.3f median %.3f G row-steps/s  (%.2f/cycle at 4.1 GHz, median)\n",
                names[v], rs / ts[v][0] / 1e9, rs / ts[v][ts[v].size() / 2] / 1e9,
                rs / ts[v][ts[v].size() / 2] / 1e9 / 4.1);
  }
  std::printf("%f\n", out[0]);
}
