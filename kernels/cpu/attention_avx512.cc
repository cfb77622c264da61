// Self-attention with AVX-512, bit-identical to AttentionScalar (attention.cc): the algorithm of
// attention_avx2.cc with 16 lanes. Scores: a key block [D][16] of kernels.h's cache is one
// 16-wide load per d, a key per lane summing over d in order, eight blocks at a time (eight
// independent FMA chains). Σ_j p_j·v_j: 128 outputs at a time, j in order. Head dims that are not
// a multiple of 16 take the AVX2 kernel.
//
// Prefetch. A head's keys and values are two sequential reads of nk·D halves each, and a thread
// decodes one head at a time: one stream, which here reads at about two thirds of the memory's
// bandwidth. So the score pass fetches the next eight key blocks and the value pass the thread's
// next head's keys, each into L2 (bench/results/cpu_kernels.md). (With the softmax's exps in
// vectors, fetching the head's values during the softmax made it slower.)
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/target.h"
#include "runtime/fp16.h"

GLM_TARGET_PUSH("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
// GCC 12's AVX-512 headers initialise "undefined" vectors from themselves (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/attention_common.h"

namespace glm {
namespace {

inline __m512 Load16(const Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline __m512 RoundV(__m512 v) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

// fp16(s)·coeff of the 16·NB keys of blocks b0..b0+NB-1 (kh: the head's first block) into
// scores[16·b0 ...].
template <int NB>
inline void ScoreBlocks(const float* qs, int D, const Half* kh, int64_t b0, __m512 coeff,
                        float* scores) {
  const Half* k = kh + b0 * kKvKeyBlock * D;
  // The next NB blocks, NB·32 bytes a step (past the head's last block: the next head's, or
  // lines never read; prefetches do not fault). An address, not a pointer into the cache: it may
  // lie past the cache's end.
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(k) + NB * kKvKeyBlock * D * sizeof(Half);
  __m512 a[NB];
#pragma GCC unroll 8
  for (int u = 0; u < NB; ++u) a[u] = _mm512_setzero_ps();
  for (int d = 0; d < D; ++d) {
    if constexpr (NB == 8) {
      for (int64_t b = 0; b < NB * 2 * kKvKeyBlock; b += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(ahead + d * NB * 2 * kKvKeyBlock + b), 0,
                           2);  // PREFETCHT1
      }
    }
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

// One head of one row (a job of ForEachAttentionHead).
void OneHead(const AttentionHead& a, int D) {
  const __m512 rv = _mm512_set1_ps(a.r), cv = _mm512_set1_ps(a.coeff);
  for (int d = 0; d < D; d += 16) {
    _mm512_store_ps(a.query + d, RoundV(_mm512_mul_ps(Load16(a.q + d), rv)));
  }
  const int64_t blocks = (a.nk + kKvKeyBlock - 1) / kKvKeyBlock;
  int64_t kb = 0;
  for (; kb + 8 <= blocks; kb += 8) ScoreBlocks<8>(a.query, D, a.k, kb, cv, a.scores);
  for (; kb + 2 <= blocks; kb += 2) ScoreBlocks<2>(a.query, D, a.k, kb, cv, a.scores);
  for (; kb < blocks; ++kb) ScoreBlocks<1>(a.query, D, a.k, kb, cv, a.scores);
  AttentionSoftmax(a.scores, a.nk);
  // Σ_j p_j·v_j, 128 outputs at a time over the head's value rows.
  for (int d0 = 0; d0 < D; d0 += 128) {
    const int n16 = (D - d0 < 128 ? D - d0 : 128) / 16;
    __m512 acc[8];
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) acc[u] = _mm512_setzero_ps();
    if (n16 == 8) {
      // The next head's keys, as many bytes a key as its values (2·D), in the first 128 outputs'
      // pass.
      const char* next = d0 == 0 ? reinterpret_cast<const char*>(a.next_k) : nullptr;
      for (int64_t j = 0; j < a.nk; ++j) {
        if (next != nullptr) {
          for (int b = 0; b < 2 * D; b += 64) __builtin_prefetch(next + j * 2 * D + b, 0, 2);
        }
        const __m512 pj = _mm512_set1_ps(a.scores[j]);
        const Half* vj = a.v + j * D + d0;
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) acc[u] = _mm512_fmadd_ps(pj, Load16(vj + 16 * u), acc[u]);
      }
    } else {
      for (int64_t j = 0; j < a.nk; ++j) {
        const __m512 pj = _mm512_set1_ps(a.scores[j]);
        const Half* vj = a.v + j * D + d0;
        for (int u = 0; u < n16; ++u) acc[u] = _mm512_fmadd_ps(pj, Load16(vj + 16 * u), acc[u]);
      }
    }
    for (int u = 0; u < n16; ++u) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.out + d0 + 16 * u),
                          _mm512_cvtps_ph(acc[u], _MM_FROUND_TO_NEAREST_INT));
    }
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
  ForEachAttentionHead(qkv, T, start, H, D, k_cache, v_cache, capacity, prefix_len, layer, ctx,
                       scratch, [D](const AttentionHead& a) { OneHead(a, D); });
}

}  // namespace glm

GLM_TARGET_POP()
