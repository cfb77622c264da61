// One core, in-cache int4 or int8 GEMV: row-wise against group-wise (group 64, 128, 256) at
// shapes whose weights fit the L2, fastest of 2000 calls, in G weights/s. Built against a
// libglmstream.a:
//   g++ -O2 -std=c++20 -I. bench/results/cpu-zen5-2026-11-29-s14/incache-gemv.cc
//       build/libglmstream.a -o incache-gemv -lpthread   (one line, from the repository root)
// Arguments: `int8` for int8 weights (default int4), `avx2` to force the AVX2 path, `exact` for
// scales with 8-bit significands (the low 3 bits of the fp16 field zero, as glm-quantize writes
// group-wise int4 scales since the seventeenth session).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"
using namespace glm;
int main(int argc, char** argv) {
  bool int8 = false, avx2 = false, exact = false;
  for (int i = 1; i < argc; ++i) {
    exact = exact || std::strcmp(argv[i], "exact") == 0;
    int8 = int8 || std::strcmp(argv[i], "int8") == 0;
    avx2 = avx2 || std::strcmp(argv[i], "avx2") == 0;
  }
  ThreadPool::InlineScope one;
  const CpuKernels& k = KernelsFor(avx2 ? CpuPath::kAvx2 : BestCpuPath());
  struct S {
    int64_t N, K;
    int group;
  };
  std::vector<S> shapes = {{512, 2048, 0}, {512, 2048, 128}, {64, 12288, 0},  {64, 12288, 128},
                           {32, 24576, 0}, {32, 24576, 128}, {64, 12288, 64}, {64, 12288, 256}};
  for (const S& s : shapes) {
    std::vector<uint8_t> q(int8 ? s.N * s.K : s.N * s.K / 2);
    for (auto& b : q) b = rand();
    const int64_t G = s.group ? s.K / s.group : 1;
    std::vector<Half> sc(s.N * G), x(s.K), out(s.N);
    for (size_t i = 0; i < sc.size(); ++i) {
      sc[i] = FloatToHalf(0.01f + 1e-5f * (i % 97));
      if (exact) sc[i].bits &= 0xfff8;
    }
    for (auto& h : x) h = FloatToHalf((rand() % 2000 - 1000) / 1000.f);
    TensorView v;
    v.dtype = int8 ? DType::kI8 : DType::kI4;
    v.ndim = 2;
    v.shape[0] = s.N;
    v.shape[1] = s.K;
    v.data = q.data();
    v.scales = sc.data();
    v.group_size = s.group;
    std::vector<float> scratch(s.K + 64);
    double best = 1e9;
    for (int rep = 0; rep < 2000; ++rep) {
      auto t0 = std::chrono::steady_clock::now();
      k.linear(x.data(), 1, v, nullptr, out.data(), scratch.data());
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (dt < best) best = dt;
    }
    std::printf("[%lld,%lld] g%-4d %.2f G weights/s\n", (long long)s.N, (long long)s.K, s.group,
                s.N * s.K / best / 1e9);
  }
}
