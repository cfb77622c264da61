// What the SIMD attention kernels share (internal to kernels/cpu): the job loop and its scratch,
// and the reference's softmax with F16C roundings. Include it after the file's `#pragma GCC target`
// (which must enable f16c), so that it is compiled for that target.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"
#include "runtime/parallel.h"

namespace glm {

// AttentionScalar's softmax over scores[0..nk): max as std::max (in key order), exp(s - max)
// summed in key order, then p = fp16(e / sum). Static: each file compiles its own copy for its
// own target options.
static inline void AttentionSoftmax(float* scores, int64_t nk) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < nk; ++j) mx = mx < scores[j] ? scores[j] : mx;
  float sum = 0.f;
  for (int64_t j = 0; j < nk; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  for (int64_t j = 0; j < nk; ++j) {
    scores[j] = _cvtsh_ss(_cvtss_sh(scores[j] / sum, _MM_FROUND_TO_NEAREST_INT));
  }
}

// One job of a SIMD attention kernel: head h of row i, its visible keys 0..nk-1.
struct AttentionHead {
  int64_t nk;
  const Half* q;   // the row's query of head h (D halves)
  const Half* k;   // the head's key blocks (kernels.h)
  const Half* v;   // the head's value rows
  Half* out;       // ctx of row i, head h
  float* scores;   // the thread's scores, whole key blocks
  float* query;    // the thread's D floats for the scaled query, 64-byte aligned
  float r, coeff;  // q'' = fp16(q·r); s·coeff before the softmax
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
      const int h = int(n % H);
      job(AttentionHead{
          prefix_len > start + i + 1 ? prefix_len : start + i + 1,  // keys 0..nk-1 are visible
          qkv + (i * H + h) * int64_t(3 * D), k_cache + h * head, v_cache + h * head,
          ctx + i * HD + int64_t(h) * D, scores, query, r, coeff});
    }
  });
}

}  // namespace glm
