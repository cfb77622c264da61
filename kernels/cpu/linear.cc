// Linear layer y = x·Wᵀ + b for fp16 and quantized weights (spec §1.3, §3): fp32 accumulation
// and a single fp16 rounding after the bias, as PyTorch's fused addmm. Weight-stationary: each
// weight row is converted once and dotted with every token, so a decode step reads the weights
// exactly once. This scalar kernel defines the summation order every SIMD path reproduces.
#include <algorithm>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/linear_common.h"
#include "kernels/cpu/simd.h"
#include "quant/format.h"
#include "runtime/check.h"
#include "runtime/parallel.h"

namespace glm {
namespace {

// The reference order (linear_common.h): 16 lane sums, their fold, then the tail in order.
inline float Dot(const float* a, const float* b, int64_t n) {
  float acc[kLinearLanes] = {};
  int64_t k = 0;
  for (; k + kLinearLanes <= n; k += kLinearLanes) {
    for (int j = 0; j < kLinearLanes; ++j) acc[j] += a[k + j] * b[k + j];
  }
  float s = ReduceLanes(acc);
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

namespace {
// A byte count from `name`, or `unset` when it is not set (read once by the callers).
int64_t ByteCountFromEnv(const char* name, int64_t unset) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return unset;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  GLM_CHECK_MSG(*end == '\0' && v >= 0, "%s=%s: expected a byte count (0 turns the prefetch off)",
                name, env);
  return int64_t(v);
}
}  // namespace

DecodePrefetchDefaults DecodePrefetchDefaultsFor(const CpuIdentity& cpu) {
  if (cpu.vendor == CpuIdentity::kAmd && cpu.family == 0x1a) {
    return {"AMD family 1Ah", kPrefetchEveryRow, 0, 0, true};
  }
  return {"other CPUs", 3072, 512, 0, false};
}

namespace {
// This CPU's defaults, resolved once: PrefetchAheadBytes runs for every Linear call.
const DecodePrefetchDefaults& DefaultsHere() {
  static const DecodePrefetchDefaults d = DecodePrefetchDefaultsFor(IdentifyCpu());
  return d;
}
}  // namespace

int64_t PrefetchRowBytes() {
  static const int64_t bytes =
      ByteCountFromEnv("GLM_CPU_PREFETCH_ROW_BYTES", DefaultsHere().row_bytes);
  return bytes;
}

bool F16RowStreams() {
  static const bool on = [] {
    const char* env = std::getenv("GLM_CPU_F16_ROW_STREAMS");
    if (env == nullptr || *env == '\0') return DefaultsHere().f16_row_streams;
    GLM_CHECK_MSG((env[0] == '0' || env[0] == '1') && env[1] == '\0',
                  "GLM_CPU_F16_ROW_STREAMS=%s: expected 0 or 1", env);
    return env[0] == '1';
  }();
  return on;
}

int64_t PrefetchAheadBytes(bool quantized) {
  static const int64_t bytes = ByteCountFromEnv("GLM_CPU_PREFETCH_AHEAD", -1);
  if (bytes >= 0) return bytes;
  return quantized ? DefaultsHere().ahead_quantized : DefaultsHere().ahead_f16;
}

}  // namespace glm
