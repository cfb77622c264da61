// CPU kernels against independent double-precision references that apply the spec's fp16
// rounding points (spec §1.3-1.9), over odd sizes and misaligned pointers.
#include "kernels/cpu/kernels.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/linear_common.h"
#include "runtime/parallel.h"
#include "tests/test_util.h"

namespace glm {
namespace {

using test::AllClose;
using test::HalfUlp;

std::vector<Half> RandomHalf(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<Half> v(n);
  for (auto& h : v) h = FloatToHalf(dist(rng));
  return v;
}

double F(Half h) { return HalfToFloat(h); }
double R(double x) { return HalfToFloat(FloatToHalf(float(x))); }  // fp16 rounding

// ---- fp16 conversion: golden table, one case per line ----
TEST(Fp16, GoldenTable) {
  struct Case {
    float in;
    uint16_t bits;
  } cases[] = {
      {0.0f, 0x0000},              // +0
      {-0.0f, 0x8000},             // -0 keeps its sign
      {1.0f, 0x3c00},              // exact
      {65504.0f, 0x7bff},          // largest finite
      {65519.99f, 0x7bff},         // just below the overflow tie rounds down
      {65520.0f, 0x7c00},          // the tie rounds to even = inf
      {1e10f, 0x7c00},             // overflow -> inf
      {1.0f + 1.0f / 2048, 0x3c00},      // halfway between 1 and 1+2^-10: ties to even (down)
      {1.0f + 3.0f / 2048, 0x3c02},      // halfway between 1+2^-10 and 1+2^-9: ties to even (up)
      {5.9604644775390625e-08f, 0x0001},  // smallest subnormal 2^-24
      {2.98023223876953125e-08f, 0x0000}, // 2^-25: tie between 0 and 2^-24 -> even (0)
      {8.940696716308594e-08f, 0x0002},   // 1.5 * 2^-24: tie -> even (2)
      {6.097555160522461e-05f, 0x03ff},   // largest subnormal
      {6.103515625e-05f, 0x0400},         // smallest normal 2^-14
      {0.86596435f, 0x3aed},              // inv_freq[1] of the rotary table (spec §1.6)
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FloatToHalf(c.in).bits, c.bits) << "input " << c.in;
  }
  EXPECT_EQ(HalfToFloat(Half{0x3aed}), 0.86572265625f);  // the spec's rounded value
}

TEST(Fp16, RoundTripEveryHalfAndCompilerConversion) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const Half h{uint16_t(b)};
    const float f = HalfToFloat(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(FloatToHalf(f).bits, h.bits) << "bits " << b;
  }
  // Against the compiler's own _Float16 conversion (round-to-nearest-even) on random floats.
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    const float f = BitsFloat(u);
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t rb;
    std::memcpy(&rb, &ref, 2);
    ASSERT_EQ(FloatToHalf(f).bits, rb) << "float bits " << std::hex << u;
  }
}

// ---- LayerNorm (§1.4) ----
TEST(Kernels, LayerNormMatchesDoubleReference) {
  for (int64_t C : {1, 7, 64, 129, 1000}) {
    const int64_t T = 3;
    auto x = RandomHalf(T * C + 1, 2.0f, 1);  // +1: misaligned start
    auto g = RandomHalf(C, 1.0f, 2), b = RandomHalf(C, 0.3f, 3);
    std::vector<Half> out(T * C);
    LayerNorm(x.data() + 1, T, C, g.data(), b.data(), 1e-5f, out.data());
    std::vector<double> ref(T * C);
    for (int64_t t = 0; t < T; ++t) {
      double mean = 0, var = 0;
      for (int64_t c = 0; c < C; ++c) mean += F(x[1 + t * C + c]);
      mean /= C;
      for (int64_t c = 0; c < C; ++c) var += std::pow(F(x[1 + t * C + c]) - mean, 2);
      var /= C;
      for (int64_t c = 0; c < C; ++c) {
        const double n = R((F(x[1 + t * C + c]) - mean) / std::sqrt(var + 1e-5));
        ref[t * C + c] = R(F(g[c]) * n + F(b[c]));
      }
    }
    // fp32 statistics may move n across an fp16 rounding boundary: one ulp of n times |γ|,
    // plus one ulp of the output.
    EXPECT_TRUE(AllClose(test::ToDouble(out.data(), out.size()), ref,
                         [&](size_t i, double e) {
                           return HalfUlp(e) + std::fabs(F(g[i % C])) * HalfUlp(4.0) + 1e-7;
                         },
                         "layernorm C=" + std::to_string(C)));
  }
}

// ---- Linear (§1.3) ----
TEST(Kernels, LinearMatchesDoubleReference) {
  struct Shape {
    int64_t T, N, K;
  } shapes[] = {{1, 1, 1}, {1, 13, 37}, {3, 64, 256}, {5, 33, 1001}, {17, 100, 64}};
  for (const Shape& s : shapes) {
    auto x = RandomHalf(s.T * s.K + 3, 1.0f, 11);
    auto w = RandomHalf(s.N * s.K + 1, 0.05f, 12);
    auto bias = RandomHalf(s.N, 0.1f, 13);
    TensorView wv;
    wv.ndim = 2;
    wv.shape[0] = s.N;
    wv.shape[1] = s.K;
    wv.data = w.data() + 1;  // misaligned
    std::vector<Half> out(s.T * s.N);
    std::vector<float> scratch(s.T * s.K);
    Linear(x.data() + 3, s.T, wv, bias.data(), out.data(), scratch.data());
    std::vector<double> ref(s.T * s.N), mag(s.T * s.N);
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t n = 0; n < s.N; ++n) {
        double acc = F(bias[n]), m = std::fabs(F(bias[n]));
        for (int64_t k = 0; k < s.K; ++k) {
          const double p = F(x[3 + t * s.K + k]) * F(w[1 + n * s.K + k]);
          acc += p;
          m += std::fabs(p);
        }
        ref[t * s.N + n] = R(acc);
        mag[t * s.N + n] = m;
      }
    }
    // One fp16 rounding of the result plus the fp32 accumulation error bound K·2^-24·Σ|x·w|.
    EXPECT_TRUE(AllClose(test::ToDouble(out.data(), out.size()), ref,
                         [&](size_t i, double e) {
                           return HalfUlp(e) + double(s.K + 1) * std::ldexp(mag[i], -24);
                         },
                         "linear"));
  }
}

// ---- Rotary (§1.6) ----
TEST(Kernels, RotaryTableIsTheFp16Table) {
  RotaryTable t = RotaryTable::Build(128, 2048);
  EXPECT_EQ(HalfToFloat(t.inv_freq[0]), 1.0f);
  EXPECT_EQ(HalfToFloat(t.inv_freq[1]), 0.86572265625f);  // spec §1.6 worked value
  for (int p : {0, 1, 2, 100, 301, 1000, 2047}) {
    for (int i = 0; i < 64; ++i) {
      const double ang = R(double(p) * HalfToFloat(t.inv_freq[i]));  // fp16 einsum
      ASSERT_NEAR(HalfToFloat(t.cos[p * 64 + i]), R(std::cos(ang)), HalfUlp(std::cos(ang)))
          << "p=" << p << " i=" << i;
      ASSERT_NEAR(HalfToFloat(t.sin[p * 64 + i]), R(std::sin(ang)), HalfUlp(std::sin(ang)));
    }
  }
  // At large positions the fp16 angle differs from the exact one by a lot (spec: ~0.46 rad at
  // p=1000): this is what makes the table part of the numerics.
  double worst = 0;
  for (int i = 0; i < 64; ++i) {
    const double exact = 1000.0 / std::pow(10000.0, 2.0 * i / 128.0);
    worst = std::max(worst, std::fabs(R(1000.0 * HalfToFloat(t.inv_freq[i])) - exact));
  }
  EXPECT_GT(worst, 0.1);
}

TEST(Kernels, RotaryRotatesQAndKOnly) {
  const int H = 3, D = 8;
  const int64_t T = 4;
  RotaryTable table = RotaryTable::Build(D, 512);
  auto qkv = RandomHalf(T * H * 3 * D, 1.0f, 21);
  auto orig = qkv;
  const int32_t pos[T] = {0, 5, 300, 511};
  ApplyRotary(qkv.data(), T, H, D, pos, table);
  for (int64_t t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const size_t base = (t * H + h) * 3 * D;
      for (int part = 0; part < 3; ++part) {
        for (int i = 0; i < D; ++i) {
          const size_t idx = base + part * D + i;
          if (part == 2) {
            ASSERT_EQ(qkv[idx].bits, orig[idx].bits) << "v must not be rotated";
            continue;
          }
          const int j = i % (D / 2);
          const double c = HalfToFloat(table.cos[pos[t] * (D / 2) + j]);
          const double s = HalfToFloat(table.sin[pos[t] * (D / 2) + j]);
          const double a = F(orig[base + part * D + j]), b = F(orig[base + part * D + j + D / 2]);
          const double want = i < D / 2 ? R(a * c - b * s) : R(b * c + a * s);
          ASSERT_NEAR(F(qkv[idx]), want, HalfUlp(want)) << "t=" << t << " h=" << h << " i=" << i;
        }
      }
    }
  }
}

// ---- Attention (§1.7, §1.8) ----
std::vector<double> ReferenceAttention(const std::vector<Half>& qkv, int64_t T, int64_t start,
                                       int H, int D, int64_t S, const std::vector<Half>& kc,
                                       const std::vector<Half>& vc, int64_t prefix, int layer) {
  std::vector<double> out(T * H * D);
  const float r = 1.0f / float(std::sqrt(double(D)) * (layer + 1));
  for (int64_t i = 0; i < T; ++i) {
    for (int h = 0; h < H; ++h) {
      const int64_t nk = std::max(prefix, start + i + 1);
      std::vector<double> s(nk);
      double mx = -1e300;
      for (int64_t j = 0; j < nk; ++j) {
        double acc = 0;
        for (int d = 0; d < D; ++d) {
          acc += R(F(qkv[(i * H + h) * 3 * D + d]) * r) * F(kc[KvKeyIndex(S, D, h, j, d)]);
        }
        s[j] = R(acc) * (layer + 1);
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& v : s) sum += (v = std::exp(v - mx));
      for (int d = 0; d < D; ++d) {
        double acc = 0;
        for (int64_t j = 0; j < nk; ++j) acc += R(s[j] / sum) * F(vc[KvValueIndex(S, D, h, j, d)]);
        out[i * H * D + h * D + d] = R(acc);
      }
    }
  }
  return out;
}

TEST(Kernels, AttentionMatchesReferenceAndMask) {
  const int H = 2, D = 16, layer = 2;
  const int64_t S = 23, prefix = 9;
  auto kc = RandomHalf(KvLayerHalves(S, H, D), 1.0f, 31),
       vc = RandomHalf(KvLayerHalves(S, H, D), 1.0f, 32);
  // Prefill rows 0..12 (start 0), then a decode-like call on rows 13..14 (start 13).
  for (auto [start, T] : {std::pair<int64_t, int64_t>{0, 13}, {13, 2}, {20, 3}}) {
    auto qkv = RandomHalf(T * H * 3 * D, 1.0f, 33 + start);
    std::vector<Half> ctx(T * H * D);
    std::vector<float> scratch(AttentionScratchFloats(S));
    Attention(qkv.data(), T, start, H, D, kc.data(), vc.data(), S, prefix, layer, ctx.data(),
              scratch.data());
    auto ref = ReferenceAttention(qkv, T, start, H, D, S, kc, vc, prefix, layer);
    // Probabilities may round differently by one fp16 ulp: allow a few output ulps plus a term
    // for the sum of |v| weighted by one probability ulp.
    EXPECT_TRUE(AllClose(test::ToDouble(ctx.data(), ctx.size()), ref,
                         [&](size_t, double e) { return 4 * HalfUlp(e) + 4e-3; }, "attention"));

    // Keys a row must not see: changing them leaves that row bit-identical.
    auto kc2 = kc, vc2 = vc;
    for (int64_t j = std::max(prefix, start + 1); j < S; ++j) {
      for (int h = 0; h < H; ++h) {
        for (int d = 0; d < D; ++d) {
          kc2[KvKeyIndex(S, D, h, j, d)] = FloatToHalf(5.f);
          vc2[KvValueIndex(S, D, h, j, d)] = FloatToHalf(-3.f);
        }
      }
    }
    std::vector<Half> ctx2(T * H * D);
    Attention(qkv.data(), T, start, H, D, kc2.data(), vc2.data(), S, prefix, layer, ctx2.data(),
              scratch.data());
    for (int d = 0; d < H * D; ++d) {  // row 0 of this call (absolute index `start`)
      ASSERT_EQ(ctx[d].bits, ctx2[d].bits) << "row " << start << " saw a masked key";
    }
  }
}

// ---- GeGLU (§1.9), DeepNorm residual (§1.3), embedding ----
TEST(Kernels, GeGluUsesExactErfOnTheSecondHalf) {
  const int64_t T = 2, Fi = 37;
  auto u = RandomHalf(T * 2 * Fi, 2.0f, 41);
  std::vector<Half> g(T * Fi);
  GeGlu(u.data(), T, Fi, g.data());
  std::vector<double> ref(T * Fi);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t f = 0; f < Fi; ++f) {
      const double x = F(u[t * 2 * Fi + Fi + f]);
      ref[t * Fi + f] = R(F(u[t * 2 * Fi + f]) * R(0.5 * x * (1 + std::erf(x / std::sqrt(2.0)))));
    }
  }
  EXPECT_TRUE(AllClose(test::ToDouble(g.data(), g.size()), ref,
                       [](size_t, double e) { return HalfUlp(e) * 1.01; }, "geglu"));
}

TEST(Kernels, DeepNormResidualRoundsTwice) {
  auto y = RandomHalf(101, 1.0f, 51), b = RandomHalf(101, 1.0f, 52);
  std::vector<Half> out(101);
  const float alpha = float(std::sqrt(140.0));
  DeepNormResidual(y.data(), b.data(), alpha, 101, out.data());
  for (int i = 0; i < 101; ++i) {
    const double want = R(R(F(y[i]) * double(alpha)) + F(b[i]));
    ASSERT_NEAR(F(out[i]), want, HalfUlp(want)) << i;
  }
}

TEST(Kernels, EmbeddingCopiesRowsAndRejectsBadIds) {
  auto table = RandomHalf(10 * 4, 1.0f, 61);
  TensorView tv;
  tv.ndim = 2;
  tv.shape[0] = 10;
  tv.shape[1] = 4;
  tv.data = table.data();
  std::vector<Half> out(2 * 4);
  const int32_t ids[2] = {7, 0};
  ASSERT_TRUE(Embedding(tv, ids, 2, out.data()).ok());
  for (int c = 0; c < 4; ++c) EXPECT_EQ(out[c].bits, table[28 + c].bits);
  const int32_t bad[1] = {10};
  Status st = Embedding(tv, bad, 1, out.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("token id 10"), std::string::npos) << st.message();
}

// Sets a chunking for the scope (SetChunking is process-wide).
class ChunkingScope {
 public:
  explicit ChunkingScope(ThreadPool::Chunking c) : saved_(ThreadPool::CurrentChunking()) {
    ThreadPool::SetChunking(c);
  }
  ~ChunkingScope() { ThreadPool::SetChunking(saved_); }

 private:
  ThreadPool::Chunking saved_;
};
constexpr ThreadPool::Chunking kChunkings[] = {ThreadPool::Chunking::kShares,
                                               ThreadPool::Chunking::kSharedCounter};

TEST(ThreadPool, CoversEveryIndexOnce) {
  ThreadPool pool(3);
  for (ThreadPool::Chunking c : kChunkings) {
    ChunkingScope scope(c);
    for (int64_t n : {1, 2, 7, 1000}) {
      std::vector<int> hits(n);
      pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(hits[i], 1) << "chunking " << int(c) << " n=" << n << " i=" << i;
      }
    }
  }
}

// Restores an environment variable as it was (set or not) at the end of the scope.
class EnvRestore {
 public:
  explicit EnvRestore(const char* name) : name_(name) {
    const char* v = std::getenv(name);
    was_set_ = v != nullptr;
    if (was_set_) value_ = v;
  }
  ~EnvRestore() {
    if (was_set_) {
      ::setenv(name_, value_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool was_set_ = false;
  std::string value_;
};

// GLM_POOL_CHUNKS=shares|counter sets the chunking at start; anything else stops with a message
// naming the variable. Each check runs in a fresh process, which reads the variable anew.
TEST(ThreadPool, ChunkingFromTheEnvironment) {
  ThreadPool::Chunking c = ThreadPool::Chunking::kShares;
  EXPECT_TRUE(ThreadPool::ParseChunking("counter", &c));
  EXPECT_EQ(c, ThreadPool::Chunking::kSharedCounter);
  EXPECT_TRUE(ThreadPool::ParseChunking("shares", &c));
  EXPECT_EQ(c, ThreadPool::Chunking::kShares);
  EXPECT_FALSE(ThreadPool::ParseChunking("", &c));
  EXPECT_STREQ(ThreadPool::ChunkingName(ThreadPool::Chunking::kShares), "shares");
  EXPECT_STREQ(ThreadPool::ChunkingName(ThreadPool::Chunking::kSharedCounter), "counter");

  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EnvRestore restore("GLM_POOL_CHUNKS");
  const auto exit_code = [] { std::exit(10 + int(ThreadPool::CurrentChunking())); };
  ::unsetenv("GLM_POOL_CHUNKS");
  EXPECT_EXIT(exit_code(), ::testing::ExitedWithCode(10 + int(ThreadPool::Chunking::kShares)), "");
  ::setenv("GLM_POOL_CHUNKS", "counter", 1);
  EXPECT_EXIT(exit_code(),
              ::testing::ExitedWithCode(10 + int(ThreadPool::Chunking::kSharedCounter)), "");
  for (const char* bad : {"Shares", "count", "1", " shares"}) {
    ::setenv("GLM_POOL_CHUNKS", bad, 1);
    EXPECT_DEATH(ThreadPool::CurrentChunking(),
                 std::string("GLM_POOL_CHUNKS=") + bad + ": expected shares or counter")
        << bad;
  }
}

// GLM_THREADS: a count from 1 to kMaxThreads sizes the pool; anything else stops with a message
// naming the variable instead of silently running on one thread.
TEST(ThreadPool, ThreadCountFromTheEnvironment) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EnvRestore restore("GLM_THREADS");
  ::unsetenv("GLM_THREADS");  // unset: one thread per CPU this process may run on
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  EXPECT_EQ(ThreadPool().size(), CPU_COUNT(&set));
  EXPECT_EQ(ThreadPool::AvailableCpus(), CPU_COUNT(&set));
  ::setenv("GLM_THREADS", "3", 1);
  EXPECT_EQ(ThreadPool().size(), 3);
  for (const char* bad : {"abc", "0", "-2", "4x", "100000"}) {
    ::setenv("GLM_THREADS", bad, 1);
    EXPECT_DEATH(ThreadPool(), std::string("GLM_THREADS=") + bad + ": expected a thread count")
        << bad;
  }
}

// Chunks are at least the grain (all but one ending at n; with the shares they start at its
// multiples), cover [0, n) once, and shrink to the grain as the work runs out, so that the threads
// finish together.
TEST(ThreadPool, ChunksRespectTheGrainAndShrinkAtTheEnd) {
  ThreadPool pool(5);
  for (auto [c, grain] : {std::pair{kChunkings[0], 1},
                          {kChunkings[0], 16},
                          {kChunkings[0], 300},
                          {kChunkings[1], 1},
                          {kChunkings[1], 16},
                          {kChunkings[1], 300}}) {
    ChunkingScope scope(c);
    const int64_t n = 10007;
    std::mutex mu;
    std::vector<std::pair<int64_t, int64_t>> chunks;
    pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lock(mu);
      chunks.emplace_back(b, e);
    });
    std::sort(chunks.begin(), chunks.end());
    int64_t next = 0, smallest = n;
    for (auto [b, e] : chunks) {
      ASSERT_EQ(b, next) << "grain " << grain;
      if (c == ThreadPool::Chunking::kShares) {
        EXPECT_EQ(b % grain, 0) << "grain " << grain;
      }
      ASSERT_GT(e, b);
      if (e != n) {
        EXPECT_GE(e - b, grain) << "grain " << grain;
      }
      smallest = std::min(smallest, e - b);
      next = e;
    }
    EXPECT_EQ(next, n);
    EXPECT_LE(smallest, 2 * grain) << "grain " << grain;
  }
}

// Each thread starts at the front of its share (blocks · t / size() blocks in) and runs on from
// where its last chunk ended, except after taking over part of another share. A barrier in
// every thread's first chunk keeps all of them in the job, so no share is taken before its
// thread starts. Chunks from one shared counter interleave between the threads instead.
TEST(ThreadPool, EachThreadRunsItsShareFrontToBack) {
  ChunkingScope scope(ThreadPool::Chunking::kShares);
  ThreadPool pool(4);
  const int64_t n = 1000, grain = 5, blocks = n / grain;
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<std::vector<std::pair<int64_t, int64_t>>> chunks(pool.size());
    std::vector<int> hits(n);
    std::atomic<int> arrived{0};
    std::atomic<bool> guard_expired{false};
    pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
      auto& mine = chunks[ThreadPool::CurrentThreadIndex()];  // one vector per thread
      if (mine.empty()) {
        arrived++;
        const auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (arrived.load() < pool.size() && !guard_expired.load()) {
          if (std::chrono::steady_clock::now() > guard) guard_expired = true;
          std::this_thread::yield();
        }
      }
      mine.emplace_back(b, e);
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    ASSERT_FALSE(guard_expired.load()) << "rep " << rep;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "rep " << rep << " i=" << i;
    int64_t followed = 0, total = 0;
    for (int t = 0; t < pool.size(); ++t) {
      ASSERT_FALSE(chunks[t].empty());
      EXPECT_EQ(chunks[t][0].first, blocks * t / pool.size() * grain)
          << "rep " << rep << ": thread " << t;
      for (size_t c = 1; c < chunks[t].size(); ++c) {
        followed += chunks[t][c].first == chunks[t][c - 1].second;
      }
      total += int64_t(chunks[t].size()) - 1;
    }
    // Only taking over part of another share breaks a thread's line: a few times per call.
    EXPECT_GE(4 * followed, 3 * total) << "rep " << rep << ": " << followed << " of " << total;
  }
}

// A thread held up in its first chunk does not hold up the rest of its share: the other thread
// takes it over (without that, this test waits for a 60 s guard and fails). Thread 0 starts only
// once thread 1 is held.
TEST(ThreadPool, TheOthersTakeOverTheShareOfAHeldUpThread) {
  ChunkingScope scope(ThreadPool::Chunking::kShares);
  ThreadPool pool(2);
  const int64_t n = 64;
  for (int rep = 0; rep < 20; ++rep) {
    std::atomic<int64_t> done{0};
    std::atomic<bool> held{false}, guard_expired{false};
    std::vector<int> ran_on(n, -1);
    const auto wait_until = [&](auto pred) {
      const auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (!pred() && !guard_expired.load()) {
        if (std::chrono::steady_clock::now() > guard) guard_expired = true;
        std::this_thread::yield();
      }
    };
    pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      const int self = ThreadPool::CurrentThreadIndex();
      for (int64_t i = b; i < e; ++i) ran_on[i] = self;
      if (self == 1 && !held.exchange(true)) {
        wait_until([&] { return done.load() == n - (e - b); });
      } else if (self == 0) {
        wait_until([&] { return held.load(); });
      }
      done += e - b;
    });
    ASSERT_FALSE(guard_expired.load()) << "rep " << rep;
    ASSERT_EQ(done.load(), n);
    for (int64_t i = 0; i < n; ++i) ASSERT_GE(ran_on[i], 0) << i;
    // Thread 1's share is [32, 64): it ran the front chunk and thread 0 the rest of it.
    EXPECT_EQ(ran_on[32], 1) << "rep " << rep;
    EXPECT_EQ(ran_on[n - 1], 0) << "rep " << rep;
    EXPECT_LT(std::count(ran_on.begin(), ran_on.end(), 1), 32) << "rep " << rep;
  }
}

}  // namespace
// The x-half chooser (kernels/cpu/linear_common.h) is shared by every Linear call in the process,
// whichever thread makes it: four threads choosing and recording for a few kinds at once (run
// under ThreadSanitizer by scripts/tsan.sh). Each kind ends with both variants timed.
TEST(Kernels, XHalfChooserTakesCallsFromManyThreads) {
  XHalfChooser c;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&c, t] {
      for (int i = 0; i < 2000; ++i) {
        const uint64_t kind = uint64_t(i % 3);
        const bool half = c.Choose(kind);
        c.Record(kind, half, half ? 1e-3 * (1 + t) : 2e-3);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (uint64_t kind = 0; kind < 3; ++kind) {
    double fp32 = 0, fp16 = 0;
    c.Averages(kind, &fp32, &fp16);
    EXPECT_GT(fp32, 0) << kind;
    EXPECT_GT(fp16, 0) << kind;
  }
}

}  // namespace glm
