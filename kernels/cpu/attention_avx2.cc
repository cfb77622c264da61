// Self-attention with AVX2 + FMA + F16C, bit-identical to AttentionScalar (attention.cc):
//   q'' = fp16(q·r); s_j = fp16(q''·k_j); p = fp16(softmax_fp32(float(s)·(l+1))); ctx = fp16(Σ p·v)
// on the head-major cache of kernels.h. A job is one (row, head): its keys and values are two
// contiguous streams. Scores: a key block [D][16] gives the 16 keys' element d in one load, so
// each key sums over d in increasing order in its own lane, as the scalar loop does, four blocks
// at a time (eight independent FMA chains). Σ_j p_j·v_j runs over j in order, one lane per output
// d. Every product is of two fp16 values, exact in fp32, so FMA = the scalar multiply-then-add.
// exp, the sum and the division are the scalar kernel's. Each (row, head) depends only on its own
// query and keys 0..nk-1, never on T or on the other heads. Lanes of keys past nk in the last
// block are computed and dropped.
//
// Prefetch, as in attention_avx512.cc: the score pass fetches the next four key blocks and the
// value pass the thread's next head's keys, each into L2.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/target.h"
#include "runtime/fp16.h"

GLM_TARGET_PUSH("avx2,fma,f16c")

#include "kernels/cpu/attention_common.h"

namespace glm {
namespace {

inline __m256 Load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 RoundV(__m256 v) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

// fp16(s)·coeff of the 16·NB keys of blocks b0..b0+NB-1 (kh: the head's first block) into
// scores[16·b0 ...].
template <int NB>
inline void ScoreBlocks(const float* qs, int D, const Half* kh, int64_t b0, __m256 coeff,
                        float* scores) {
  const Half* k = kh + b0 * kKvKeyBlock * D;
  // The next NB blocks, NB·32 bytes a step (past the head's last block: the next head's, or
  // lines never read; prefetches do not fault). An address, not a pointer into the cache: it may
  // lie past the cache's end.
  const uintptr_t ahead = reinterpret_cast<uintptr_t>(k) + NB * kKvKeyBlock * D * sizeof(Half);
  __m256 a[NB][2];
#pragma GCC unroll 4
  for (int u = 0; u < NB; ++u) a[u][0] = a[u][1] = _mm256_setzero_ps();
  for (int d = 0; d < D; ++d) {
    if constexpr (NB == 4) {
      for (int64_t b = 0; b < NB * 2 * kKvKeyBlock; b += 64) {
        __builtin_prefetch(reinterpret_cast<const void*>(ahead + d * NB * 2 * kKvKeyBlock + b), 0,
                           2);  // PREFETCHT1
      }
    }
    const __m256 qd = _mm256_broadcast_ss(qs + d);
#pragma GCC unroll 4
    for (int u = 0; u < NB; ++u) {
      const Half* kd = k + u * kKvKeyBlock * D + d * kKvKeyBlock;
      a[u][0] = _mm256_fmadd_ps(qd, Load8(kd), a[u][0]);
      a[u][1] = _mm256_fmadd_ps(qd, Load8(kd + 8), a[u][1]);
    }
  }
#pragma GCC unroll 4
  for (int u = 0; u < NB; ++u) {
    float* s = scores + (b0 + u) * kKvKeyBlock;
    _mm256_storeu_ps(s, _mm256_mul_ps(RoundV(a[u][0]), coeff));
    _mm256_storeu_ps(s + 8, _mm256_mul_ps(RoundV(a[u][1]), coeff));
  }
}

// One head of one row (a job of ForEachAttentionHead).
void OneHead(const AttentionHead& a, int D) {
  const __m256 rv = _mm256_set1_ps(a.r), cv = _mm256_set1_ps(a.coeff);
  for (int d = 0; d < D; d += 8) {
    _mm256_store_ps(a.query + d, RoundV(_mm256_mul_ps(Load8(a.q + d), rv)));
  }
  const int64_t blocks = (a.nk + kKvKeyBlock - 1) / kKvKeyBlock;
  int64_t kb = 0;
  for (; kb + 4 <= blocks; kb += 4) ScoreBlocks<4>(a.query, D, a.k, kb, cv, a.scores);
  for (; kb < blocks; ++kb) ScoreBlocks<1>(a.query, D, a.k, kb, cv, a.scores);
  AttentionSoftmax(a.scores, a.nk);
  // Σ_j p_j·v_j, 64 outputs at a time over the head's value rows.
  for (int d0 = 0; d0 < D; d0 += 64) {
    const int n8 = (D - d0 < 64 ? D - d0 : 64) / 8;
    __m256 acc[8];
#pragma GCC unroll 8
    for (int u = 0; u < 8; ++u) acc[u] = _mm256_setzero_ps();
    if (n8 == 8) {
      // The next head's keys, as many bytes a key as its values (2·D), in the first pass.
      const char* next = d0 == 0 ? reinterpret_cast<const char*>(a.next_k) : nullptr;
      for (int64_t j = 0; j < a.nk; ++j) {
        if (next != nullptr) {
          for (int b = 0; b < 2 * D; b += 64) __builtin_prefetch(next + j * 2 * D + b, 0, 2);
        }
        const __m256 pj = _mm256_broadcast_ss(a.scores + j);
        const Half* vj = a.v + j * D + d0;
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(pj, Load8(vj + 8 * u), acc[u]);
      }
    } else {
      for (int64_t j = 0; j < a.nk; ++j) {
        const __m256 pj = _mm256_broadcast_ss(a.scores + j);
        const Half* vj = a.v + j * D + d0;
        for (int u = 0; u < n8; ++u) acc[u] = _mm256_fmadd_ps(pj, Load8(vj + 8 * u), acc[u]);
      }
    }
    for (int u = 0; u < n8; ++u) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(a.out + d0 + 8 * u),
                       _mm256_cvtps_ph(acc[u], _MM_FROUND_TO_NEAREST_INT));
    }
  }
}

}  // namespace

void AttentionAvx2(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                   const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer, Half* ctx,
                   float* scratch) {
  if (D % 8 != 0) {
    return AttentionScalar(qkv, T, start, H, D, k_cache, v_cache, capacity, prefix_len, layer, ctx,
                           scratch);
  }
  ForEachAttentionHead(qkv, T, start, H, D, k_cache, v_cache, capacity, prefix_len, layer, ctx,
                       scratch, [D](const AttentionHead& a) { OneHead(a, D); });
}

}  // namespace glm

GLM_TARGET_POP()
