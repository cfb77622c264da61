// Self-attention with GLM-130B's scaling and prefix-bidirectional mask (spec §1.7, §1.8):
//   q'' = fp16(q · r),  r = fp32(1 / (√D · (l+1)))      query_key_layer_scaling
//   s_j = fp16(q''·k_j)                                  baddbmm, fp32 accumulate
//   p   = fp16(softmax_fp32(float(s) · (l+1)))           over visible keys; masked keys get 0
//                                                        (its exp: SoftmaxExp, softmax_exp.h)
//   ctx = fp16(Σ_j p_j · v_j)                            bmm, fp32 accumulate
// Row i (absolute) sees key j iff j < prefix_len or j <= i. The cache layout is kernels.h's.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/softmax_exp.h"
#include "runtime/parallel.h"

namespace glm {

int64_t AttentionScratchPerThread(int64_t keys) {
  // Scores of whole key blocks, then the scaled query and the context accumulators (D <= 1024
  // each), 64-byte aligned.
  return KvPaddedTokens(keys) + 2 * 1024 + 16;
}

void CheckAttention(int D, int64_t prefix_len, int64_t total) {
  GLM_CHECK_MSG(D <= 1024, "head_dim %d > 1024", D);
  GLM_CHECK_MSG(prefix_len <= total,
                "the bidirectional prefix (%lld tokens) must be in the cache before its rows "
                "attend (have %lld)",
                (long long)prefix_len, (long long)total);
}

int64_t AttentionScratchFloats(int64_t max_keys) {
  return int64_t(ThreadPool::Global().size()) * AttentionScratchPerThread(max_keys);
}

void AppendKv(const Half* qkv, int64_t T, int H, int D, int64_t start, int64_t capacity,
              Half* k_cache, Half* v_cache) {
  GLM_CHECK_MSG(start >= 0 && start + T <= capacity, "KV rows %lld..%lld in a cache of %lld",
                (long long)start, (long long)(start + T), (long long)capacity);
  for (int64_t t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const Half* src = qkv + (t * H + h) * int64_t(3 * D);
      Half* key = k_cache + KvKeyIndex(capacity, D, h, start + t, 0);  // element d at d·16
      for (int d = 0; d < D; ++d) key[d * kKvKeyBlock] = src[D + d];
      std::copy_n(src + 2 * D, D, v_cache + KvValueIndex(capacity, D, h, start + t, 0));
    }
  }
}

void AttentionScalar(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                     const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer,
                     Half* ctx, float* scratch) {
  const int64_t total = start + T;
  CheckAttention(D, prefix_len, total);
  const float* tab = HalfTable();
  const float r = 1.0f / float(std::sqrt(double(D)) * double(layer + 1));
  const float coeff = float(layer + 1);
  const int64_t per_thread = AttentionScratchPerThread(total);
  const int64_t HD = int64_t(H) * D;
  ThreadPool::Global().ParallelFor(T * H, 1, [&](int64_t b, int64_t e) {
    float* scores = scratch + ThreadPool::CurrentThreadIndex() * per_thread;
    float* qs = scores + KvPaddedTokens(total);
    float* acc = qs + 1024;
    for (int64_t job = b; job < e; ++job) {
      const int64_t i = job / H;
      const int h = int(job % H);
      const int64_t abs_i = start + i;
      const int64_t nk = std::max(prefix_len, abs_i + 1);  // keys 0..nk-1 are visible
      const Half* q = qkv + (i * H + h) * int64_t(3 * D);
      for (int d = 0; d < D; ++d) qs[d] = RoundHalf(tab[q[d].bits] * r);
      float mx = -INFINITY;
      for (int64_t j = 0; j < nk; ++j) {
        const Half* k = k_cache + KvKeyIndex(capacity, D, h, j, 0);  // element d at d·16
        float s = 0.f;
        for (int d = 0; d < D; ++d) s += qs[d] * tab[k[d * kKvKeyBlock].bits];
        scores[j] = RoundHalf(s) * coeff;
        mx = std::max(mx, scores[j]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        scores[j] = SoftmaxExp(scores[j] - mx);
        sum += scores[j];
      }
      for (int d = 0; d < D; ++d) acc[d] = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        const float p = RoundHalf(scores[j] / sum);
        const Half* v = v_cache + KvValueIndex(capacity, D, h, j, 0);
        for (int d = 0; d < D; ++d) acc[d] += p * tab[v[d].bits];
      }
      Half* out = ctx + i * HD + int64_t(h) * D;
      for (int d = 0; d < D; ++d) out[d] = FloatToHalf(acc[d]);
    }
  });
}

}  // namespace glm
