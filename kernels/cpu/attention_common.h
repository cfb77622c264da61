// What the SIMD attention kernels share (internal to kernels/cpu): the job loop and its scratch,
// and the reference's softmax with F16C roundings. Include it after the file's `GLM_TARGET_PUSH`
// (which must enable f16c), so that it is compiled for that target.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/softmax_exp.h"
#include "runtime/parallel.h"

namespace glm {

// SoftmaxExp (softmax_exp.h) of 8 values: its operations in the same order, so the same bits.
// Lanes outside [kLo, kHi] compute on a clamped value and are replaced at the end.
static inline __m256 SoftmaxExp8(__m256 x) {
  using C = SoftmaxExpConstants;
  const __m256 lo = _mm256_set1_ps(C::kLo), hi = _mm256_set1_ps(C::kHi);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(C::kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-C::kLn2Hi), xc);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-C::kLn2Lo), r);
  __m256 p = _mm256_set1_ps(C::kCoeff[0]);
  for (int k = 1; k < 8; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C::kCoeff[k]));
  const __m256i ni = _mm256_cvtps_epi32(n), a = _mm256_srai_epi32(ni, 1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 pa = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(a, bias), 23));
  const __m256 pb =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, a), bias), 23));
  __m256 e = _mm256_mul_ps(_mm256_mul_ps(p, pa), pb);
  e = _mm256_blendv_ps(e, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
  e = _mm256_blendv_ps(e, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
  return _mm256_blendv_ps(e, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// AttentionScalar's softmax over scores[0..nk): max as std::max (in key order), SoftmaxExp(s -
// max) summed in key order, then p = fp16(e / sum). Static: each file compiles its own copy for
// its own target options (AVX2 at least).
//
// The max, the exps and the division run 8 keys at a time with the same results; the sum stays
// in key order. std::max(mx, s) keeps mx when s is NaN, as VMAXPS(s, m) does (it returns its
// second operand); the max's other freedom, the sign of a zero maximum, does not reach
// exp(s - max), which is 1 for either zero. The subtraction, the division and the rounding
// through fp16 are the same IEEE operations in vector form.
static inline void AttentionSoftmax(float* scores, int64_t nk) {
  __m256 m8 = _mm256_set1_ps(-INFINITY);
  int64_t j8 = 0;
  for (; j8 + 8 <= nk; j8 += 8) m8 = _mm256_max_ps(_mm256_loadu_ps(scores + j8), m8);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ps(m4, _mm_movehdup_ps(m4));
  float mx = _mm_cvtss_f32(m4);
  for (int64_t j = j8; j < nk; ++j) mx = mx < scores[j] ? scores[j] : mx;
  const __m256 mx8 = _mm256_set1_ps(mx);
  int64_t je = 0;
  for (; je + 8 <= nk; je += 8) {
    _mm256_storeu_ps(scores + je, SoftmaxExp8(_mm256_sub_ps(_mm256_loadu_ps(scores + je), mx8)));
  }
  for (; je < nk; ++je) scores[je] = SoftmaxExp(scores[je] - mx);
  float sum = 0.f;
  for (int64_t j = 0; j < nk; ++j) sum += scores[j];
  const __m256 sum8 = _mm256_set1_ps(sum);
  int64_t j = 0;
  for (; j + 8 <= nk; j += 8) {
    const __m256 p = _mm256_div_ps(_mm256_loadu_ps(scores + j), sum8);
    _mm256_storeu_ps(scores + j, _mm256_cvtph_ps(_mm256_cvtps_ph(p, _MM_FROUND_TO_NEAREST_INT)));
  }
  for (; j < nk; ++j) {
    scores[j] = _cvtsh_ss(_cvtss_sh(scores[j] / sum, _MM_FROUND_TO_NEAREST_INT));
  }
}

// One job of a SIMD attention kernel: head h of row i, its visible keys 0..nk-1.
struct AttentionHead {
  int64_t nk;
  const Half* q;       // the row's query of head h (D halves)
  const Half* k;       // the head's key blocks (kernels.h)
  const Half* v;       // the head's value rows
  Half* out;           // ctx of row i, head h
  float* scores;       // the thread's scores, whole key blocks
  float* query;        // the thread's D floats for the scaled query, 64-byte aligned
  float r, coeff;      // q'' = fp16(q·r); s·coeff before the softmax
  const Half* next_k;  // the key blocks of the thread's next job, or null if it has none
};

// Checks the arguments and runs job(const AttentionHead&) for every (row, head) on the thread
// pool. Scratch: AttentionScratchPerThread(start + T) floats per thread.
template <class Job>
static inline void ForEachAttentionHead(const Half* qkv, int64_t T, int64_t start, int H, int D,
                                        const Half* k_cache, const Half* v_cache, int64_t capacity,
                                        int64_t prefix_len, int layer, Half* ctx, float* scratch,
                                        Job&& job) {
  const int64_t total = start + T;
  CheckAttention(D, prefix_len, total);
  const float r = 1.0f / float(std::sqrt(double(D)) * double(layer + 1));
  const float coeff = float(layer + 1);
  const int64_t HD = int64_t(H) * D, head = KvPaddedTokens(capacity) * D;
  const int64_t per_thread = AttentionScratchPerThread(total);
  ThreadPool::Global().ParallelFor(T * H, 1, [&](int64_t b, int64_t e) {
    float* scores = scratch + ThreadPool::CurrentThreadIndex() * per_thread;
    float* query = reinterpret_cast<float*>(
        (reinterpret_cast<uintptr_t>(scores + KvPaddedTokens(total)) + 63) & ~uintptr_t(63));
    for (int64_t n = b; n < e; ++n) {
      const int64_t i = n / H;
      const int h = int(n % H), next_h = int((n + 1) % H);
      job(AttentionHead{
          prefix_len > start + i + 1 ? prefix_len : start + i + 1,  // keys 0..nk-1 are visible
          qkv + (i * H + h) * int64_t(3 * D), k_cache + h * head, v_cache + h * head,
          ctx + i * HD + int64_t(h) * D, scores, query, r, coeff,
          n + 1 < e ? k_cache + next_h * head : nullptr});
    }
  });
}

}  // namespace glm
