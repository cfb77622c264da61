// Self-attention with AVX2 + FMA + F16C, bit-identical to AttentionScalar (attention.cc):
//   q'' = fp16(q·r); s_j = fp16(q''·k_j); p = fp16(softmax_fp32(float(s)·(l+1))); ctx = fp16(Σ p·v)
// The scores of eight keys are computed at once, one key per lane (8x8 transposes of the key
// block), each summing over d in order like the scalar loop; a partial last group repeats a
// visible key and drops its lanes. Σ_j p_j·v_j runs over j in order with one lane per output d.
// Every product is of two fp16 values, exact in fp32, so FMA = the scalar multiply-then-add.
// exp, the sum and the division are the scalar kernel's. Each (row, head) depends only on its
// own query and keys 0..nk-1, never on T or on the other heads.
// A job takes up to kAttentionHeadGroup heads of one row. A key's rows of those heads are
// adjacent in the cache, while one head's keys are H·D apart (a page each at GLM-130B's
// shapes): the group's scores run key block by key block, and P·V in blocks of kKeyBlock keys
// for each head (bench/results/cpu_kernels.md: 1.7× at 2048 keys).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd.h"
#include "runtime/fp16.h"
#include "runtime/parallel.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

namespace glm {
namespace {

inline __m256 Load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline int64_t MinI(int64_t a, int64_t b) { return a < b ? a : b; }
inline float MaxF(float a, float b) { return a < b ? b : a; }  // as std::max
inline float RoundF(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }

// Columns of an 8x8 block: c[i] = [r0[i], r1[i], ..., r7[i]].
inline void Transpose8x8(__m256 (&r)[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// Scores of keys [j0, j0+8) (key index clamped to `last`) for head h, one key per lane, each the
// scalar kernel's sum s += q''[d]·k[d] in increasing d (products of fp16 values are exact, so
// the FMA rounds as its multiply-add); returned as fp16(s) in fp32.
inline __m256 ScoreGroup(const float* qs, int D, const Half* k_cache, int64_t HD, int h, int64_t j0,
                         int64_t last) {
  const Half* k[8];
#pragma GCC unroll 8
  for (int u = 0; u < 8; ++u) k[u] = k_cache + MinI(j0 + u, last) * HD + int64_t(h) * D;
  // Keys are H·D apart (a new page each at GLM-130B's 24 KiB), which the hardware prefetchers
  // do not follow: fetch the group after next ahead.
  for (int u = 0; u < 8; ++u) {
    const char* next =
        reinterpret_cast<const char*>(k_cache + MinI(j0 + 16 + u, last) * HD + int64_t(h) * D);
    for (int off = 0; off < 2 * D; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
  }
  __m256 acc = _mm256_setzero_ps();
  for (int d = 0; d < D; d += 8) {
    __m256 c[8];
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) c[u] = Load8(k[u] + d);
    Transpose8x8(c);
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) acc = _mm256_fmadd_ps(_mm256_broadcast_ss(qs + d + i), c[i], acc);
  }
  return _mm256_cvtph_ps(_mm256_cvtps_ph(acc, _MM_FROUND_TO_NEAREST_INT));
}

// Σ_j p_j·v_j over keys [j0, j1) for one head (v: its first key's row), added to acc[0..D) in
// increasing j per lane: 8 accumulators of 8 lanes at a time, loaded from and stored to acc.
inline void PvBlock(const float* p, const Half* v, int64_t HD, int D, int64_t j0, int64_t j1,
                    int64_t nk, float* acc) {
  for (int d0 = 0; d0 < D; d0 += 64) {
    const int dn = int(MinI(64, D - d0));
    __m256 a[8];
    for (int u = 0; u < dn / 8; ++u) a[u] = _mm256_load_ps(acc + d0 + 8 * u);
    const Half* vd = v + d0;
    if (dn == 64) {
      for (int64_t j = j0; j < j1; ++j) {
        const __m256 pj = _mm256_broadcast_ss(p + j);
        const Half* vj = vd + j * HD;
        // Values are H·D apart too: fetched 8 keys ahead.
        const char* ahead = reinterpret_cast<const char*>(vd + MinI(j + 8, nk - 1) * HD);
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) a[u] = _mm256_fmadd_ps(pj, Load8(vj + 8 * u), a[u]);
      }
    } else {
      for (int64_t j = j0; j < j1; ++j) {
        const __m256 pj = _mm256_broadcast_ss(p + j);
        const Half* vj = vd + j * HD;
        for (int u = 0; u < dn / 8; ++u) a[u] = _mm256_fmadd_ps(pj, Load8(vj + 8 * u), a[u]);
      }
    }
    for (int u = 0; u < dn / 8; ++u) _mm256_store_ps(acc + d0 + 8 * u, a[u]);
  }
}

}  // namespace

void AttentionAvx2(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                   const Half* v_cache, int64_t prefix_len, int layer, Half* ctx, float* scratch) {
  if (D % 8 != 0)
    return AttentionScalar(qkv, T, start, H, D, k_cache, v_cache, prefix_len, layer, ctx, scratch);
  GLM_CHECK_MSG(D <= 1024, "head_dim %d > 1024", D);
  const int64_t total = start + T;
  GLM_CHECK_MSG(prefix_len <= total,
                "the bidirectional prefix (%lld tokens) must be in the cache before its rows "
                "attend (have %lld)",
                (long long)prefix_len, (long long)total);
  const float r = 1.0f / float(std::sqrt(double(D)) * double(layer + 1));
  const float coeff = float(layer + 1);
  const int64_t HD = int64_t(H) * D;
  constexpr int kG = kAttentionHeadGroup;
  constexpr int64_t kKeyBlock = 64;
  // Heads per job: up to kG, fewer where that would leave under two jobs per thread (decode on
  // many cores: T = 1 and GLM-130B's 96 heads are 12 jobs of 8).
  const int64_t threads = ThreadPool::Global().size();
  const int G = int(std::clamp<int64_t>(T * H / (2 * threads), 1, kG));
  const int groups = (H + G - 1) / G;
  // AttentionScratchFloats' layout, per thread: scores [kG][total], then 32-byte aligned the
  // scaled queries [kG][D] and the P·V accumulators [kG][D].
  const int64_t per_thread = AttentionScratchFloats(total) / threads;
  ThreadPool::Global().ParallelFor(T * groups, 1, [&](int64_t b, int64_t e) {
    float* base = scratch + ThreadPool::CurrentThreadIndex() * per_thread;
    float* qs_all = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(base + kG * total) + 31) &
                                             ~uintptr_t(31));
    float* acc_all = qs_all + kG * 1024;
    const __m256 rv = _mm256_set1_ps(r), cv = _mm256_set1_ps(coeff);
    for (int64_t job = b; job < e; ++job) {
      const int64_t i = job / groups;
      const int h0 = int(job % groups) * G, gn = H - h0 < G ? H - h0 : G;
      const int64_t nk =
          prefix_len > start + i + 1 ? prefix_len : start + i + 1;  // keys 0..nk-1 are visible
      for (int g = 0; g < gn; ++g) {
        const Half* q = qkv + (i * H + h0 + g) * int64_t(3 * D);
        for (int d = 0; d < D; d += 8) {
          _mm256_store_ps(qs_all + g * D + d,
                          _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(Load8(q + d), rv),
                                                          _MM_FROUND_TO_NEAREST_INT)));
        }
      }
      // Scores: each block of 8 keys for every head of the group, so a key's rows of the group
      // (gn·D halves, contiguous) are read together.
      __m256 mxv[kG];
      for (int g = 0; g < gn; ++g) mxv[g] = _mm256_set1_ps(-INFINITY);
      int64_t j = 0;
      for (; j + 8 <= nk; j += 8) {
        for (int g = 0; g < gn; ++g) {
          const __m256 s =
              _mm256_mul_ps(ScoreGroup(qs_all + g * D, D, k_cache, HD, h0 + g, j, nk - 1), cv);
          _mm256_storeu_ps(base + g * total + j, s);
          mxv[g] = _mm256_max_ps(mxv[g], s);
        }
      }
      for (int g = 0; g < gn; ++g) {
        float* scores = base + g * total;
        alignas(32) float lanes[8];
        _mm256_store_ps(lanes, mxv[g]);
        float mx = -INFINITY;
        for (float v : lanes) mx = MaxF(mx, v);
        if (j < nk) {
          _mm256_store_ps(
              lanes,
              _mm256_mul_ps(ScoreGroup(qs_all + g * D, D, k_cache, HD, h0 + g, j, nk - 1), cv));
          for (int64_t u = 0; j + u < nk; ++u) {
            scores[j + u] = lanes[u];
            mx = MaxF(mx, lanes[u]);
          }
        }
        float sum = 0.f;
        for (int64_t k = 0; k < nk; ++k) {
          scores[k] = std::exp(scores[k] - mx);
          sum += scores[k];
        }
        for (int64_t k = 0; k < nk; ++k) scores[k] = RoundF(scores[k] / sum);
      }
      // Σ_j p_j·v_j in increasing j per lane, in blocks of kKeyBlock keys: each block's V rows of
      // the group (kKeyBlock · gn·D halves) serve every head while they are in cache; the
      // accumulators wait in scratch between blocks (fp32 store and load: exact).
      for (int g = 0; g < gn; ++g) {
        for (int d = 0; d < D; d += 8) _mm256_store_ps(acc_all + g * D + d, _mm256_setzero_ps());
      }
      for (int64_t j0 = 0; j0 < nk; j0 += kKeyBlock) {
        const int64_t j1 = j0 + kKeyBlock < nk ? j0 + kKeyBlock : nk;
        for (int g = 0; g < gn; ++g) {
          PvBlock(base + g * total, v_cache + int64_t(h0 + g) * D, HD, D, j0, j1, nk,
                  acc_all + g * D);
        }
      }
      for (int g = 0; g < gn; ++g) {
        Half* out = ctx + i * HD + int64_t(h0 + g) * D;
        for (int d = 0; d < D; d += 8) {
          _mm_storeu_si128(
              reinterpret_cast<__m128i*>(out + d),
              _mm256_cvtps_ph(_mm256_load_ps(acc_all + g * D + d), _MM_FROUND_TO_NEAREST_INT));
        }
      }
    }
  });
}

}  // namespace glm

#pragma GCC pop_options
