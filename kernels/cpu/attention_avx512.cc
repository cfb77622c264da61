// Self-attention with AVX-512, bit-identical to AttentionScalar (attention.cc): the algorithm of
// attention_avx2.cc with 16 lanes. Scores: a key block [D][16] of kernels.h's cache is one
// 16-wide load per d, a key per lane summing over d in order, eight blocks at a time (eight
// independent FMA chains). Σ_j p_j·v_j: 128 outputs at a time, j in order. Head dims that are not
// a multiple of 16 take the AVX2 kernel.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd.h"
#include "runtime/fp16.h"
#include "runtime/parallel.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// GCC 12's AVX-512 headers initialise "undefined" vectors from themselves (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace glm {
namespace {

inline __m512 Load16(const Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline float MaxF(float a, float b) { return a < b ? b : a; }  // as std::max
inline float RoundF(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }
inline __m512 RoundV(__m512 v) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

// fp16(s)·coeff of the 16·NB keys of blocks b0..b0+NB-1 (kh: the head's first block) into
// scores[16·b0 ...].
template <int NB>
inline void ScoreBlocks(const float* qs, int D, const Half* kh, int64_t b0, __m512 coeff,
                        float* scores) {
  const Half* k = kh + b0 * kKvKeyBlock * D;
  __m512 a[NB];
#pragma GCC unroll 8
  for (int u = 0; u < NB; ++u) a[u] = _mm512_setzero_ps();
  for (int d = 0; d < D; ++d) {
    const __m512 qd = _mm512_set1_ps(qs[d]);
#pragma GCC unroll 8
    for (int u = 0; u < NB; ++u) {
      a[u] = _mm512_fmadd_ps(qd, Load16(k + u * kKvKeyBlock * D + d * kKvKeyBlock), a[u]);
    }
  }
#pragma GCC unroll 8
  for (int u = 0; u < NB; ++u) {
    _mm512_storeu_ps(scores + (b0 + u) * kKvKeyBlock, _mm512_mul_ps(RoundV(a[u]), coeff));
  }
}

}  // namespace

void AttentionAvx512(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                     const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer,
                     Half* ctx, float* scratch) {
  if (D % 16 != 0) {
    return AttentionAvx2(qkv, T, start, H, D, k_cache, v_cache, capacity, prefix_len, layer, ctx,
                         scratch);
  }
  GLM_CHECK_MSG(D <= 1024, "head_dim %d > 1024", D);
  const int64_t total = start + T;
  GLM_CHECK_MSG(prefix_len <= total,
                "the bidirectional prefix (%lld tokens) must be in the cache before its rows "
                "attend (have %lld)",
                (long long)prefix_len, (long long)total);
  const float r = 1.0f / float(std::sqrt(double(D)) * double(layer + 1));
  const float coeff = float(layer + 1);
  const int64_t HD = int64_t(H) * D, head = KvPaddedTokens(capacity) * D;
  const int64_t per_thread = AttentionScratchPerThread(total);
  ThreadPool::Global().ParallelFor(T * H, 1, [&](int64_t b, int64_t e) {
    float* scores = scratch + ThreadPool::CurrentThreadIndex() * per_thread;
    float* qs = reinterpret_cast<float*>(
        (reinterpret_cast<uintptr_t>(scores + KvPaddedTokens(total)) + 63) & ~uintptr_t(63));
    const __m512 rv = _mm512_set1_ps(r), cv = _mm512_set1_ps(coeff);
    for (int64_t job = b; job < e; ++job) {
      const int64_t i = job / H;
      const int h = int(job % H);
      const int64_t nk =
          prefix_len > start + i + 1 ? prefix_len : start + i + 1;  // keys 0..nk-1 are visible
      const Half* q = qkv + (i * H + h) * int64_t(3 * D);
      for (int d = 0; d < D; d += 16) {
        _mm512_store_ps(qs + d, RoundV(_mm512_mul_ps(Load16(q + d), rv)));
      }
      const Half* kh = k_cache + h * head;
      const int64_t blocks = (nk + kKvKeyBlock - 1) / kKvKeyBlock;
      int64_t kb = 0;
      for (; kb + 8 <= blocks; kb += 8) ScoreBlocks<8>(qs, D, kh, kb, cv, scores);
      for (; kb + 2 <= blocks; kb += 2) ScoreBlocks<2>(qs, D, kh, kb, cv, scores);
      for (; kb < blocks; ++kb) ScoreBlocks<1>(qs, D, kh, kb, cv, scores);
      float mx = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) mx = MaxF(mx, scores[j]);
      float sum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      for (int64_t j = 0; j < nk; ++j) scores[j] = RoundF(scores[j] / sum);
      // Σ_j p_j·v_j, 128 outputs at a time over the head's value rows.
      const Half* vh = v_cache + h * head;
      Half* out = ctx + i * HD + int64_t(h) * D;
      for (int d0 = 0; d0 < D; d0 += 128) {
        const int n16 = (D - d0 < 128 ? D - d0 : 128) / 16;
        __m512 a[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) a[u] = _mm512_setzero_ps();
        if (n16 == 8) {
          for (int64_t j = 0; j < nk; ++j) {
            const __m512 pj = _mm512_set1_ps(scores[j]);
            const Half* vj = vh + j * D + d0;
#pragma GCC unroll 8
            for (int u = 0; u < 8; ++u) a[u] = _mm512_fmadd_ps(pj, Load16(vj + 16 * u), a[u]);
          }
        } else {
          for (int64_t j = 0; j < nk; ++j) {
            const __m512 pj = _mm512_set1_ps(scores[j]);
            const Half* vj = vh + j * D + d0;
            for (int u = 0; u < n16; ++u) a[u] = _mm512_fmadd_ps(pj, Load16(vj + 16 * u), a[u]);
          }
        }
        for (int u = 0; u < n16; ++u) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + d0 + 16 * u),
                              _mm512_cvtps_ph(a[u], _MM_FROUND_TO_NEAREST_INT));
        }
      }
    }
  });
}

}  // namespace glm

#pragma GCC pop_options
