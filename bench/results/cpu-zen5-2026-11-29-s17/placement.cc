// The same int4 row-wise GEMV ([36864, 12288], all threads, T = 1) on six buffers of the same
// size, allocated one after another and filled alike, called in turn (the order rotated every
// round, two untimed rounds first): whatever separates the buffers' rates is where their pages
// lie, since the host's drift falls on all six alike. Prints each buffer's median and quartiles
// in GB/s. Built against a libglmstream.a:
//   g++ -O2 -std=c++20 -I. bench/results/cpu-zen5-2026-11-29-s17/placement.cc
//       build/libglmstream.a -o placement -lpthread   (one line, from the repository root)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"
using namespace glm;

int main() {
  const int64_t N = 36864, K = 12288;
  constexpr int B = 6;
  auto now = [] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  std::vector<std::vector<uint8_t>> q(B);
  std::vector<Half> scales(N, FloatToHalf(0.01f));
  uint32_t seed = 1;
  for (auto& v : q) {
    v.resize(N * K / 2);
    for (auto& b : v) b = uint8_t((seed = seed * 1664525u + 1013904223u) >> 24);
  }
  const CpuKernels& k = KernelsFor(BestCpuPath());
  std::vector<Half> x(K, FloatToHalf(0.25f)), out(N);
  std::vector<float> scratch(K + 64);
  std::vector<std::vector<double>> gbps(B);
  for (int r = -2; r < 40; ++r) {
    for (int i = 0; i < B; ++i) {
      const int b = (i + r + 2) % B;
      TensorView v;
      v.dtype = DType::kI4;
      v.ndim = 2;
      v.shape[0] = N;
      v.shape[1] = K;
      v.data = q[b].data();
      v.scales = scales.data();
      const double t0 = now();
      k.linear(x.data(), 1, v, nullptr, out.data(), scratch.data());
      const double dt = now() - t0;
      if (r >= 0) gbps[b].push_back(double(N) * K / 2 / dt / 1e9);
    }
  }
  for (int b = 0; b < B; ++b) {
    std::vector<double> s = gbps[b];
    std::sort(s.begin(), s.end());
    std::printf("buffer %d: median %.1f GB/s (quartiles %.1f..%.1f)\n", b, s[s.size() / 2],
                s[s.size() / 4], s[3 * s.size() / 4]);
  }
}
