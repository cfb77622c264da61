// int4 GEMV from memory at GLM-130B's qkv shape [36864, 12288], all threads, T = 1: groups of 128
// with scales of 11-bit significands (the split's tables), groups of 128 with 8-bit significands
// (the tables by one multiply), and rows, called in turn, the order rotated every round so that
// the host's bandwidth drift and the order fall on all three alike. The three variants read the
// same three copies of the weight bytes (the same physical pages) and differ only in their
// scales, since buffers of the same size can read at rates 30% apart by where their pages lie
// (placement.cc): the k-th call of a round reads copy k, and the variants take turns at the
// positions (a call never finds its weights in the last-level cache). Prints each variant's median
// and best in GB/s (weights + scales), and for each copy the ratio of the variants' medians on it
// (rates on one copy share its pages; the copies' pages differ). Built against a libglmstream.a:
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
  Copy copy[3];
  std::vector<double> gbps;
  std::vector<double> on_copy[3];  // the same rates, by the copy read
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
    for (int ci = 0; ci < 3; ++ci) {
      Copy& c = v.copy[ci];
      if (vi > 0) {  // every variant reads the first variant's weight bytes
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
      // The copy is the position in the round: over three rounds each variant reads each copy,
      // always at that copy's position, so neither the pages nor the position (what was read
      // just before) favours a variant.
      const size_t ci = i;
      const Copy& c = v.copy[ci];
      const double t0 = Now();
      k.linear(x.data(), 1, c.view, nullptr, out.data(), scratch.data());
      const double dt = Now() - t0;
      if (r >= 0) {
        v.gbps.push_back((c.q_bytes + c.scales.size() * 2.0) / dt / 1e9);
        v.on_copy[ci].push_back(v.gbps.back());
      }
    }
  }
  for (Variant& v : vs) {
    std::vector<double> g = v.gbps;
    std::sort(g.begin(), g.end());
    std::printf("%-26s median %6.2f GB/s  best %6.2f  worst %6.2f\n", v.name, g[g.size() / 2],
                g.back(), g.front());
  }
  auto median = [](std::vector<double> g) {
    std::sort(g.begin(), g.end());
    return g[g.size() / 2];
  };
  for (size_t i = 1; i < V; ++i) {
    std::printf("%-26s / %s, on copies 0, 1, 2:", vs[i].name, vs[0].name);
    for (int c = 0; c < 3; ++c)
      std::printf(" %.3f", median(vs[i].on_copy[c]) / median(vs[0].on_copy[c]));
    std::printf("\n");
  }
}
