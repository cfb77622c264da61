// Decode GEMVs at T = 1..4 tokens (batches, beam search), fp16 / int8 / int4 rows, in G
// token-weights/s (T·N·K per second). Default: one core, [32, 12288] in cache, fastest of 1000
// calls; `memory`: all threads, [36864, 12288] (GLM-130B's qkv) from memory, fastest of 8 (of 3
// above 16 tokens). `avx2` forces the AVX2 path, `fp16` runs the fp16 weights alone,
// `tokens=1,8,32` sets the token counts (default 1 to 4). Built against a libglmstream.a:
//   g++ -O2 -std=c++20 -I. bench/results/cpu-zen5-2026-11-29-s16/tokens-gemv.cc
//       build/libglmstream.a -o tokens-gemv -lpthread   (one line, from the repository root)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"
using namespace glm;
int main(int argc, char** argv) {
  bool avx2 = false, memory = false, fp16_only = false;
  std::vector<int> counts = {1, 2, 3, 4};
  for (int i = 1; i < argc; ++i) {
    avx2 = avx2 || std::strcmp(argv[i], "avx2") == 0;
    memory = memory || std::strcmp(argv[i], "memory") == 0;
    fp16_only = fp16_only || std::strcmp(argv[i], "fp16") == 0;
    if (std::strncmp(argv[i], "tokens=", 7) == 0) {
      counts.clear();
      for (const char* p = argv[i] + 7; *p != '\0';) {
        char* end = nullptr;
        const long t = std::strtol(p, &end, 10);
        if (end == p || t < 1 || t > 4096) {
          std::fprintf(stderr, "tokens-gemv: %s: expected token counts 1..4096\n", argv[i]);
          return 2;
        }
        counts.push_back(int(t));
        p = *end == ',' ? end + 1 : end;
      }
    }
  }
  int max_t = 1;
  for (int t : counts) max_t = t > max_t ? t : max_t;
  std::unique_ptr<ThreadPool::InlineScope> one;
  if (!memory) one = std::make_unique<ThreadPool::InlineScope>();
  const CpuKernels& k = KernelsFor(avx2 ? CpuPath::kAvx2 : BestCpuPath());
  const int64_t N = memory ? 36864 : 32, K = 12288;
  const int reps = memory ? (max_t > 16 ? 3 : 8) : 1000;
  for (DType dt : {DType::kF16, DType::kI8, DType::kI4}) {
    if (fp16_only && dt != DType::kF16) continue;
    std::vector<uint8_t> q(dt == DType::kF16 ? N * K * 2 : dt == DType::kI8 ? N * K : N * K / 2);
    // fp16: a random low byte under a fixed high byte (finite values near 0.06).
    for (size_t i = 0; i < q.size(); ++i) q[i] = dt == DType::kF16 && i % 2 ? 0x2c : rand();
    std::vector<Half> sc(N), x(max_t * K), out(max_t * N);
    for (auto& h : sc) h = FloatToHalf(0.01f);
    for (auto& h : x) h = FloatToHalf((rand() % 2000 - 1000) / 1000.f);
    TensorView v;
    v.dtype = dt;
    v.ndim = 2;
    v.shape[0] = N;
    v.shape[1] = K;
    v.data = q.data();
    v.scales = sc.data();
    std::vector<float> scratch(max_t * K + 64);
    std::printf("%-5s", DTypeName(dt));
    for (int T : counts) {
      double best = 1e9;
      for (int rep = 0; rep < reps; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
        k.linear(x.data(), T, v, nullptr, out.data(), scratch.data());
        const double d =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (d < best) best = d;
      }
      std::printf("  T=%d %6.2f", T, T * N * K / best / 1e9);
    }
    std::printf("  G token-weights/s\n");
  }
}
