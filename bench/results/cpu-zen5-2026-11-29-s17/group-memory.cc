// int4 GEMV from memory at GLM-130B's qkv shape [36864, 12288], all threads, T = 1: groups of 128
// with scales of 11-bit significands (the split's tables), groups of 128 with 8-bit significands
// (the tables by one multiply), and rows, called in turn, the order rotated every round so that
// the host's bandwidth drift and the order fall on all three alike. Each variant has two copies
// of its weights, used in turn (a call never finds its weights in the last-level cache); the two
// group variants share the same weight bytes (the same physical pages) and differ only in their
// scales, since buffers of the same size can read at rates 10% apart by where their pages lie
// (the row variant's own buffers do not compare as closely). Prints
// each variant's median and best in GB/s (weights + scales), and the per-round ratios. Built
// against a libglmstream.a:
//   g++ -O2 -std=c++20 -I. bench/results/cpu-zen5-2026-11-29-s17/group-memory.cc
//       build/libglmstream.a -o group-memory -lpthread   (one line, from the repository root)
// Argument: rounds (default 60).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"
using namespace glm;

namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
struct Copy {
  std::vector<uint8_t> own;  // the weight bytes, unless shared with another variant
  const uint8_t* q = nullptr;
  size_t q_bytes = 0;
  std::vector<Half> scales;
  TensorView view;
};
struct Variant {
  const char* name;
  int group;
  bool exact;
  Copy copy[2];
  std::vector<double> gbps;
};
}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 60;
  const int64_t N = 36864, K = 12288;
  const CpuKernels& k = KernelsFor(BestCpuPath());
  std::vector<Variant> vs(3);
  vs[0] = {"int4 g128, 11-bit scales", 128, false};
  vs[1] = {"int4 g128, 8-bit scales", 128, true};
  vs[2] = {"int4 row", 0, false};
  uint32_t seed = 1;
  for (size_t vi = 0; vi < vs.size(); ++vi) {
    Variant& v = vs[vi];
    for (int ci = 0; ci < 2; ++ci) {
      Copy& c = v.copy[ci];
      if (vi == 1) {  // the 8-bit variant reads the 11-bit variant's weight bytes
        c.q = vs[0].copy[ci].q;
      } else {
        c.own.resize(N * K / 2);
        for (auto& b : c.own) b = uint8_t((seed = seed * 1664525u + 1013904223u) >> 24);
        c.q = c.own.data();
      }
      c.q_bytes = N * K / 2;
      const int64_t G = v.group ? K / v.group : 1;
      c.scales.resize(N * G);
      for (size_t i = 0; i < c.scales.size(); ++i) {
        c.scales[i] = FloatToHalf(0.01f + 1e-5f * (i % 97));
        if (v.exact) c.scales[i].bits &= 0xfff8;
      }
      c.view.dtype = DType::kI4;
      c.view.ndim = 2;
      c.view.shape[0] = N;
      c.view.shape[1] = K;
      c.view.data = c.q;
      c.view.scales = c.scales.data();
      c.view.group_size = v.group;
    }
  }
  std::vector<Half> x(K), out(N);
  for (int64_t i = 0; i < K; ++i) x[i] = FloatToHalf(float(int(i % 17) - 8) / 8.f);
  std::vector<float> scratch(K + 64);
  const size_t V = vs.size();
  for (int r = -2; r < rounds; ++r) {  // two untimed rounds first
    for (size_t i = 0; i < V; ++i) {
      const size_t vi = (i + size_t(r + 2)) % V;
      Variant& v = vs[vi];
      // The two group variants read opposite copies in a round, so neither reads right after
      // the other from the same pages.
      const Copy& c = v.copy[(r + 2 + (vi == 1)) % 2];
      const double t0 = Now();
      k.linear(x.data(), 1, c.view, nullptr, out.data(), scratch.data());
      const double dt = Now() - t0;
      if (r >= 0) v.gbps.push_back((c.q_bytes + c.scales.size() * 2.0) / dt / 1e9);
    }
  }
  for (Variant& v : vs) {
    std::vector<double> g = v.gbps;
    std::sort(g.begin(), g.end());
    std::printf("%-26s median %6.2f GB/s  best %6.2f  worst %6.2f\n", v.name, g[g.size() / 2],
                g.back(), g.front());
  }
  for (size_t i = 1; i < V; ++i) {
    std::vector<double> ratio;
    for (size_t j = 0; j < vs[i].gbps.size(); ++j) ratio.push_back(vs[i].gbps[j] / vs[0].gbps[j]);
    std::sort(ratio.begin(), ratio.end());
    std::printf("%-26s / %s, per round: median %.3f (quartiles %.3f..%.3f)\n", vs[i].name,
                vs[0].name, ratio[ratio.size() / 2], ratio[ratio.size() / 4],
                ratio[3 * ratio.size() / 4]);
  }
}
