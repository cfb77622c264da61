// The library's int4 decode with the experiment patch (3-library-exp-i4.diff.txt, the switch as a
// global g_exp_i4): kernel step (0) against the repacked step (1) on the same weight buffer, called
// in turn (the order alternating every round), each call paired with a read of the same buffer
// by all threads just before it. Prints per variant the median of (probe time / GEMV time).
// Prints too the median over rounds of the repacked step's paired rate over the kernel step's.
// Built against a libglmstream.a of 8e6964d with that patch applied:
//   g++ -O2 -std=c++20 -mavx512f -mavx512bw -I. bench/results/cpu-zen5-2026-11-29-s18/exp-memory.cc
//       build/libglmstream.a -o exp-memory -lpthread   (one line, from that tree's root)
// Arguments: rounds (default 40), group (0: rows; 128: groups of 128 with 8-bit scales).
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/results/cpu-zen5-2026-11-29-s18/plain_read.h"
#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"
namespace glm {
extern int g_exp_i4;
}
using namespace glm;
int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 40;
  const int group = argc > 2 ? std::atoi(argv[2]) : 0;
  const int64_t N = 36864, K = 12288;
  const CpuKernels& k = KernelsFor(BestCpuPath());
  const size_t qb = size_t(N) * K / 2;
  uint8_t* q = static_cast<uint8_t*>(std::aligned_alloc(64, qb));
  uint32_t seed = 1;
  for (size_t i = 0; i < qb; ++i) q[i] = uint8_t((seed = seed * 1664525u + 1013904223u) >> 24);
  const int64_t G = group ? K / group : 1;
  std::vector<Half> scales(N * G);
  for (size_t i = 0; i < scales.size(); ++i) {
    scales[i] = FloatToHalf(0.01f + 1e-5f * (i % 97));
    if (group) scales[i].bits &= 0xfff8;
  }
  TensorView view;
  view.dtype = DType::kI4;
  view.ndim = 2;
  view.shape[0] = N;
  view.shape[1] = K;
  view.data = q;
  view.scales = scales.data();
  view.group_size = group;
  std::vector<Half> x(K), out(N);
  for (int64_t i = 0; i < K; ++i) x[i] = FloatToHalf(float(int(i % 17) - 8) / 8.f);
  std::vector<float> scratch(K + 64);
  ThreadPool& pool = ThreadPool::Global();
  const int threads = pool.size();
  auto probe = [&] {
    const double t0 = Now();
    pool.ParallelFor(threads, 1, [&](int64_t a, int64_t b) {
      for (int64_t t = a; t < b; ++t) {
        const size_t share = qb / threads / 256 * 256;
        sink = PlainRead(q + t * share, share);
      }
    });
    return Now() - t0;
  };
  std::vector<double> pct[2], gbps[2], pgbps[2];
  for (int r = -2; r < rounds; ++r) {
    for (int i = 0; i < 2; ++i) {
      const int v = (i + r + 2) % 2;
      g_exp_i4 = v;
      const double tp = probe();
      const double t0 = Now();
      k.linear(x.data(), 1, view, nullptr, out.data(), scratch.data());
      const double tg = Now() - t0;
      if (r < 0) continue;
      pct[v].push_back(100 * tp / tg);
      gbps[v].push_back(qb / tg / 1e9);
      pgbps[v].push_back(qb / tp / 1e9);
    }
  }
  auto med = [](std::vector<double> g) {
    std::sort(g.begin(), g.end());
    return g[g.size() / 2];
  };
  for (int v = 0; v < 2; ++v) {
    std::printf("%s %s: median %.1f GB/s, probe %.1f GB/s, paired median %.1f%%\n",
                group ? "int4 g128" : "int4 row", v ? "repacked step" : "kernel step", med(gbps[v]),
                med(pgbps[v]), med(pct[v]));
  }
  std::vector<double> ratio;
  for (size_t i = 0; i < pct[0].size(); ++i) ratio.push_back(pct[1][i] / pct[0][i]);
  std::printf("round by round, repacked / kernel: median %.3f\n", med(ratio));
}
