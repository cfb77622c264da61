// Self-attention with GLM-130B's scaling and prefix-bidirectional mask (spec §1.7, §1.8):
//   q'' = fp16(q · r),  r = fp32(1 / (√D · (l+1)))      query_key_layer_scaling
//   s_j = fp16(q''·k_j)                                  baddbmm, fp32 accumulate
//   p   = fp16(softmax_fp32(float(s) · (l+1)))           over visible keys; masked keys get 0
//   ctx = fp16(Σ_j p_j · v_j)                            bmm, fp32 accumulate
// Row i (absolute) sees key j iff j < prefix_len or j <= i.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"
#include "runtime/parallel.h"

namespace glm {

int64_t AttentionScratchFloats(int64_t max_keys) {
  // Per thread, for a group of kAttentionHeadGroup heads: scores [group][max_keys], then the
  // scaled queries and the context accumulators [group][D] each (D <= 1024), 32-byte aligned.
  // The scalar kernel takes one head's share (max_keys + 2048) per thread.
  return int64_t(ThreadPool::Global().size()) * (kAttentionHeadGroup * (max_keys + 2048) + 8);
}

void AttentionScalar(const Half* qkv, int64_t T, int64_t start, int H, int D,
                     const Half* k_cache, const Half* v_cache, int64_t prefix_len, int layer,
                     Half* ctx, float* scratch) {
  GLM_CHECK_MSG(D <= 1024, "head_dim %d > 1024", D);
  const int64_t total = start + T;
  GLM_CHECK_MSG(prefix_len <= total,
                "the bidirectional prefix (%lld tokens) must be in the cache before its rows "
                "attend (have %lld)", (long long)prefix_len, (long long)total);
  const float* tab = HalfTable();
  const float r = 1.0f / float(std::sqrt(double(D)) * double(layer + 1));
  const float coeff = float(layer + 1);
  const int64_t per_thread = total + 2048;
  const int64_t HD = int64_t(H) * D;
  ThreadPool::Global().ParallelFor(T * H, 1, [&](int64_t b, int64_t e) {
    float* scores = scratch + ThreadPool::CurrentThreadIndex() * per_thread;
    float* qs = scores + total;
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
        const Half* k = k_cache + j * HD + int64_t(h) * D;
        float s = 0.f;
        for (int d = 0; d < D; ++d) s += qs[d] * tab[k[d].bits];
        scores[j] = RoundHalf(s) * coeff;
        mx = std::max(mx, scores[j]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      for (int d = 0; d < D; ++d) acc[d] = 0.f;
      for (int64_t j = 0; j < nk; ++j) {
        const float p = RoundHalf(scores[j] / sum);
        const Half* v = v_cache + j * HD + int64_t(h) * D;
        for (int d = 0; d < D; ++d) acc[d] += p * tab[v[d].bits];
      }
      Half* out = ctx + i * HD + int64_t(h) * D;
      for (int d = 0; d < D; ++d) out[d] = FloatToHalf(acc[d]);
    }
  });
}

}  // namespace glm
