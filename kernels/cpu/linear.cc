// Linear layer y = x·Wᵀ + b for fp16 and quantized weights (spec §1.3, §3): fp32 accumulation
// and a single fp16 rounding after the bias, as PyTorch's fused addmm. Weight-stationary: each
// weight row is converted once and dotted with every token, so a decode step reads the weights
// exactly once. This scalar kernel defines the summation order every SIMD path reproduces.
#include <algorithm>
#include <vector>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"
#include "quant/format.h"
#include "runtime/parallel.h"

namespace glm {
namespace {

// Eight independent accumulators let the compiler vectorise without reassociating a single sum.
inline float Dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[k + j] * b[k + j];
  }
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; k < n; ++k) s += a[k] * b[k];
  return s;
}

}  // namespace

void LinearScalar(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                  float* scratch) {
  CheckLinearWeight(w);
  const int64_t N = w.rows(), K = w.cols();
  const float* tab = HalfTable();
  const bool quantized = w.dtype != DType::kF16;
  for (int64_t t = 0; t < T; ++t) HalfToFloatRow(x + t * K, K, scratch + t * K);
  const float* xf = scratch;
  ThreadPool::Global().ParallelFor(N, 16, [&](int64_t n0, int64_t n1) {
    thread_local std::vector<float> wrow;
    if (int64_t(wrow.size()) < K) wrow.resize(K);  // grows once per thread, then reused
    for (int64_t n = n0; n < n1; ++n) {
      DequantizeRow(w, n, wrow.data());  // fp16 or the reference dequantization (quant/format.h)
      const float b = bias ? tab[bias[n].bits] : 0.f;
      for (int64_t t = 0; t < T; ++t) {
        const float acc = Dot(xf + t * K, wrow.data(), K);
        // The quantized reference (W8A16Linear) adds the bias as a separate fp16 op (spec §3).
        out[t * N + n] = FloatToHalf(quantized ? RoundHalf(acc) + b : acc + b);
      }
    }
  });
}

}  // namespace glm
