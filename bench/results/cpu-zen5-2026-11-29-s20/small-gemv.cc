// Small GEMVs on the kernel pool's threads (or one core with the argument `one`): in cache (one
// buffer, called 3000 times) against from memory (3000 calls rotating over copies filling 512
// MiB), medians and 10th percentiles in microseconds, and an empty ParallelFor. Built against a
// libglmstream.a, from the repository root (one line):
//   g++ -O2 -std=c++20 -I. bench/results/cpu-zen5-2026-11-29-s20/small-gemv.cc
//       build/libglmstream.a -o small-gemv -lpthread
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"
using namespace glm;
static double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
int main(int argc, char** argv) {
  const bool one = argc > 1 && std::strcmp(argv[1], "one") == 0;
  ThreadPool::InlineScope* scope = one ? new ThreadPool::InlineScope : nullptr;
  (void)scope;
  const CpuKernels& k = KernelsFor(BestCpuPath());
  auto& pool = ThreadPool::Global();
  {
    std::vector<double> t;
    for (int i = 0; i < 20000; ++i) {
      double t0 = Now();
      pool.ParallelFor(2, 1, [](int64_t, int64_t) {});
      t.push_back(Now() - t0);
    }
    std::sort(t.begin(), t.end());
    std::printf("empty ParallelFor(2): median %.2f us, p10 %.2f\n", t[t.size() / 2] * 1e6,
                t[t.size() / 10] * 1e6);
  }
  struct S {
    int64_t N, K;
    int fmt;
    int group;
  };  // fmt 0 f16 1 i8 2 i4
  std::vector<S> shapes = {{1024, 2048, 2, 0},   {1024, 2048, 2, 128}, {1024, 4096, 2, 0},
                           {1024, 4096, 2, 128}, {256, 16384, 2, 0},   {256, 16384, 2, 128},
                           {1024, 1024, 0, 0},   {1024, 1024, 1, 0},   {1024, 1024, 2, 0},
                           {1024, 1024, 2, 128}, {6144, 2048, 2, 0},   {6144, 2048, 2, 128},
                           {2048, 2048, 2, 0},   {2048, 5504, 2, 128}, {6144, 2048, 0, 0}};
  for (const S& s : shapes) {
    const int64_t bytes = s.fmt == 0 ? s.N * s.K * 2 : s.fmt == 1 ? s.N * s.K : s.N * s.K / 2;
    const int copies = std::max<int64_t>(2, (512ll << 20) / bytes);
    std::vector<std::vector<uint8_t>> q(copies, std::vector<uint8_t>(bytes));
    uint64_t state = 88172645463325252ull;
    for (auto& c : q)
      for (auto& b : c) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        b = uint8_t(state >> 24);
      }
    if (s.fmt == 0)
      for (auto& c : q)
        for (int64_t i = 0; i < bytes; i += 2) c[i + 1] &= 0x3b;  // finite halves
    const int64_t G = s.group ? s.K / s.group : 1;
    std::vector<Half> sc(s.N * G), x(s.K), out(s.N);
    for (size_t i = 0; i < sc.size(); ++i) {
      sc[i] = FloatToHalf(0.01f + 1e-5f * (i % 97));
      sc[i].bits &= 0xfff8;
    }
    for (auto& h : x) h = FloatToHalf((rand() % 2000 - 1000) / 1000.f);
    std::vector<float> scratch(s.K + 64);
    auto view = [&](int c) {
      TensorView v;
      v.dtype = s.fmt == 0 ? DType::kF16 : s.fmt == 1 ? DType::kI8 : DType::kI4;
      v.ndim = 2;
      v.shape[0] = s.N;
      v.shape[1] = s.K;
      v.data = q[c].data();
      if (s.fmt) {
        v.scales = sc.data();
        v.group_size = s.group;
      }
      return v;
    };
    for (int mode = 0; mode < 2; ++mode) {
      std::vector<double> t;
      for (int i = 0; i < 3000; ++i) {
        TensorView v = view(mode == 0 ? 0 : i % copies);
        double t0 = Now();
        k.linear(x.data(), 1, v, nullptr, out.data(), scratch.data());
        t.push_back(Now() - t0);
      }
      std::sort(t.begin(), t.end());
      double med = t[t.size() / 2];
      std::printf("fmt %d g%-3d [%lld,%lld] %s: median %.1f us (%.1f GB/s), p10 %.1f us\n", s.fmt,
                  s.group, (long long)s.N, (long long)s.K, mode == 0 ? "in cache" : "memory  ",
                  med * 1e6, bytes / med / 1e9, t[t.size() / 10] * 1e6);
    }
  }
}
