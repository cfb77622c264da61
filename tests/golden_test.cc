// The whole path against the PyTorch transcription of the reference (tests/golden/): the SAT
// checkpoint (2 TP ranks) -> glm-quantize's converter -> GGUF -> CPU forward, compared layer by
// layer and at the logits for [gMASK], [MASK] and [sMASK] inputs with positions past 300.
// Also: decode with the KV cache equals full recomputation, bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>

#include "kernels/cpu/dispatch.h"
#include "offload/model_file.h"
#include "quant/convert.h"
#include "runtime/layout.h"
#include "runtime/model.h"
#include "runtime/npy.h"
#include "tests/test_util.h"

namespace glm {
namespace {

const std::string kDir = test::GoldenDir();
const auto& kCases = test::kGoldenCases;
NpyArray Load(const std::string& name) { return test::LoadGolden(name); }

class Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A path forced by GLM_CPU_PATH (golden_paths_test.sh) that this CPU or build lacks: every
    // test skips (SetUp) rather than let the first kernel call abort (a build may leave a path's
    // kernels out).
    if (const char* env = std::getenv("GLM_CPU_PATH"); env != nullptr && *env != '\0') {
      StatusOr<CpuPath> path = ParseCpuPath(env);
      if (path.ok() && !CpuPathSupported(*path)) {
        skip_ = new std::string(std::string("GLM_CPU_PATH=") + env + ": this CPU or build lacks " +
                                CpuPathFeatures(*path));
        return;
      }
    }
    auto kv = test::ReadGoldenConfig();
    ASSERT_FALSE(kv.empty()) << "missing " << kDir << "/config.txt";
    dir_ = new test::TempDir();
    auto store = test::OpenGoldenModel(dir_->File("tiny.gguf"));
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(store).value().release();
    const ModelConfig& cfg = store_->config();
    EXPECT_EQ(cfg.num_layers, kv["num_layers"]);
    EXPECT_EQ(cfg.hidden, kv["hidden"]);
    EXPECT_EQ(cfg.inner, kv["inner"]);
    EXPECT_EQ(cfg.num_heads, kv["num_heads"]);
    EXPECT_EQ(cfg.vocab, kv["vocab"]);
  }
  static void TearDownTestSuite() {
    delete store_;
    delete dir_;
    delete skip_;
  }
  void SetUp() override {
    if (skip_ != nullptr) GTEST_SKIP() << *skip_;
  }

  // Runs a whole case with every tap recorded; returns logits [T, V].
  std::vector<Half> RunFull(const std::vector<int32_t>& ids, const SequenceLayout& layout,
                            std::map<std::string, std::vector<Half>>* taps) {
    const ModelConfig& cfg = store_->config();
    const int64_t T = int64_t(ids.size());
    RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
    KvCache kv = KvCache::Allocate(cfg, T);
    Activations act = Activations::Allocate(cfg, T, T);
    TapFn tap = [&](const std::string& name, const Half* data, int64_t cols) {
      if (taps) (*taps)[name].assign(data, data + T * cols);
    };
    std::vector<Half> logits(T * cfg.vocab);
    ForwardArgs args{.ids = ids,
                     .positions = layout.positions,
                     .prefix_len = layout.prefix_len,
                     .all_logits = true,
                     .tap = &tap};
    Status st = Forward(*store_, rope, kv, act, args, logits.data());
    EXPECT_TRUE(st.ok()) << st.message();
    return logits;
  }

  static test::TempDir* dir_;
  static MmapStore* store_;
  static std::string* skip_;  // why every test skips, or null
};
test::TempDir* Golden::dir_ = nullptr;
MmapStore* Golden::store_ = nullptr;
std::string* Golden::skip_ = nullptr;

std::vector<int32_t> Ids(const std::string& c) { return test::GoldenIds(c); }

using test::ReadReorderBounds;
using test::ReorderBound;

::testing::AssertionResult CompareChained(const std::string& what, const Half* actual,
                                          const NpyArray& expected, const ReorderBound& b) {
  return test::CompareChained(what, actual, expected.as<Half>(), expected.numel(), b);
}

TEST_F(Golden, LayoutMatchesReference) {
  for (const char* c : kCases) {
    auto ids = Ids(c);
    auto layout = DeriveLayout(ids, store_->config().tokens);
    ASSERT_TRUE(layout.ok());
    NpyArray pos = Load(std::string(c) + ".positions"),
             prefix = Load(std::string(c) + ".prefix_len");
    EXPECT_EQ(layout->positions,
              std::vector<int32_t>(pos.as<int32_t>(), pos.as<int32_t>() + pos.numel()))
        << c;
    EXPECT_EQ(layout->prefix_len, prefix.as<int32_t>()[0]) << c;
  }
}

TEST_F(Golden, LayerByLayerAndLogits) {
  const ModelConfig& cfg = store_->config();
  const auto bounds = ReadReorderBounds();
  ASSERT_FALSE(bounds.empty()) << "missing " << kDir << "/reorder_bounds.txt";
  for (const char* c : kCases) {
    SCOPED_TRACE(c);
    std::printf("case %s\n", c);
    auto ids = Ids(c);
    auto layout = DeriveLayout(ids, cfg.tokens).value();
    std::map<std::string, std::vector<Half>> taps;
    std::vector<Half> logits = RunFull(ids, layout, &taps);
    const std::string p = std::string(c) + ".";
    // The embedding is a copy: exact.
    NpyArray embed = Load(p + "embed");
    for (int64_t i = 0; i < embed.numel(); ++i) {
      ASSERT_EQ(taps["embed"][i].bits, embed.as<Half>()[i].bits) << "embed " << i;
    }
    auto bound = [&](const std::string& t) {
      auto it = bounds.find(p + t);
      EXPECT_TRUE(it != bounds.end()) << "no reorder bound for " << p + t;
      return it == bounds.end() ? ReorderBound{} : it->second;
    };
    for (int l = 0; l < cfg.num_layers; ++l) {
      const std::string t = StrFormat("layer%d", l);
      EXPECT_TRUE(CompareChained(t, taps[StrFormat("l%d.out", l)].data(), Load(p + t), bound(t)));
    }
    EXPECT_TRUE(CompareChained("final_norm", taps["final_norm"].data(), Load(p + "final_norm"),
                               bound("final_norm")));
    EXPECT_TRUE(CompareChained("logits", logits.data(), Load(p + "logits"), bound("logits")));
  }
}

// Each op of the first and last layer, fed the reference's own inputs, against the reference's
// output. Tolerances: elementwise ops one fp16 ulp (our fp32 intermediates may sit on the other
// side of a rounding tie); reductions one ulp plus their fp32 accumulation bound
// (K·2^-24·Σ|terms| for a dot product; for attention a probability may move by one fp16 ulp,
// which moves the output by at most 2^-10·Σ_j p_j|v_j|).
TEST_F(Golden, EachOpFromReferenceInputs) {
  const ModelConfig& cfg = store_->config();
  auto ids = Ids("gmask");
  auto layout = DeriveLayout(ids, cfg.tokens).value();
  const int64_t T = int64_t(ids.size()), C = cfg.hidden, F = cfg.inner, H = cfg.num_heads,
                D = cfg.head_dim, HD = H * D;
  const auto half_tol = [](size_t, double e) { return test::HalfUlp(e); };
  for (int l : {0, cfg.num_layers - 1}) {
    SCOPED_TRACE(StrFormat("layer %d", l));
    const LayerWeights& w = *store_->Acquire(l).value();
    const std::string p = StrFormat("gmask.l%d.", l);
    auto in = [&](const std::string& n) { return Load(p + n); };
    NpyArray x = l == 0 ? Load("gmask.embed") : Load(StrFormat("gmask.layer%d", l - 1));
    auto check = [&](const char* name, const std::vector<Half>& got, const NpyArray& want,
                     const std::function<double(size_t, double)>& tol) {
      std::vector<double> e = test::ToDouble(want.as<Half>(), want.numel());
      int64_t exact = 0;
      for (int64_t i = 0; i < want.numel(); ++i) exact += got[i].bits == want.as<Half>()[i].bits;
      std::printf("  l%d %-10s %7.3f%% bit-identical\n", l, name, 100.0 * exact / want.numel());
      EXPECT_TRUE(test::AllClose(test::ToDouble(got.data(), got.size()), e, tol, name));
    };
    // Dot-product bound for y = x·Wᵀ (+b): one ulp plus K·2^-24·Σ|x·w|.
    auto linear_tol = [&](const NpyArray& xin, const TensorView& wt) {
      const int64_t N = wt.rows(), K = wt.cols();
      std::vector<double> mag(T * N);
      std::vector<float> wrow(K);
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < K; ++k) wrow[k] = HalfToFloat(wt.f16()[n * K + k]);
        for (int64_t t = 0; t < T; ++t) {
          double m = 0;
          for (int64_t k = 0; k < K; ++k) {
            m += std::fabs(HalfToFloat(xin.as<Half>()[t * K + k]) * wrow[k]);
          }
          mag[t * N + n] = m;
        }
      }
      return [mag, K](size_t i, double e) {
        return test::HalfUlp(e) + double(K) * std::ldexp(mag[i], -24);
      };
    };
    // LayerNorm: n = fp16(invstd·(x-μ)) may land one ulp away (fp32 statistics), which moves the
    // output by |γ|·ulp(n) even where β cancels γ·n; plus one ulp of the output.
    auto ln_tol = [&](const NpyArray& xin, const TensorView& gamma) {
      std::vector<double> bound(T * C);
      for (int64_t t = 0; t < T; ++t) {
        double mean = 0, var = 0;
        for (int64_t c = 0; c < C; ++c) mean += HalfToFloat(xin.as<Half>()[t * C + c]);
        mean /= C;
        for (int64_t c = 0; c < C; ++c)
          var += std::pow(HalfToFloat(xin.as<Half>()[t * C + c]) - mean, 2);
        const double invstd = 1 / std::sqrt(var / C + 1e-5);
        for (int64_t c = 0; c < C; ++c) {
          const double n = (HalfToFloat(xin.as<Half>()[t * C + c]) - mean) * invstd;
          bound[t * C + c] = std::fabs(HalfToFloat(gamma.f16()[c])) * test::HalfUlp(n);
        }
      }
      return [bound](size_t i, double e) { return test::HalfUlp(e) + bound[i]; };
    };
    std::vector<float> f32(T * std::max({C, F, HD}));
    std::vector<Half> out;

    out.resize(T * C);
    LayerNorm(x.as<Half>(), T, C, w.attn_norm_w.f16(), w.attn_norm_b.f16(), cfg.layernorm_eps,
              out.data());
    check("attn_norm", out, in("attn_norm"), ln_tol(x, w.attn_norm_w));

    NpyArray y = in("attn_norm");
    out.resize(T * 3 * HD);
    Linear(y.as<Half>(), T, w.qkv, w.qkv_b.f16(), out.data(), f32.data());
    check("qkv", out, in("qkv"), linear_tol(y, w.qkv));

    NpyArray qkv = in("qkv");
    std::vector<Half> rot(qkv.as<Half>(), qkv.as<Half>() + qkv.numel());
    RotaryTable rope = RotaryTable::Build(int(D), cfg.max_seq);
    ApplyRotary(rot.data(), T, int(H), int(D), layout.positions.data(), rope);
    std::vector<Half> q(T * HD), k(T * HD), v(T * HD);
    for (int64_t t = 0; t < T * H; ++t) {
      std::copy_n(rot.begin() + t * 3 * D, D, q.begin() + t * D);
      std::copy_n(rot.begin() + t * 3 * D + D, D, k.begin() + t * D);
      std::copy_n(rot.begin() + t * 3 * D + 2 * D, D, v.begin() + t * D);
    }
    check("q_rot", q, in("q_rot"), half_tol);
    check("k_rot", k, in("k_rot"), half_tol);

    // Attention on the reference's rotated q and k.
    NpyArray qr = in("q_rot"), kr = in("k_rot");
    std::vector<Half> qkv_ref(T * 3 * HD);
    for (int64_t t = 0; t < T * H; ++t) {
      std::copy_n(qr.as<Half>() + t * D, D, qkv_ref.begin() + t * 3 * D);
      std::copy_n(kr.as<Half>() + t * D, D, qkv_ref.begin() + t * 3 * D + D);
      std::copy_n(v.begin() + t * D, D, qkv_ref.begin() + t * 3 * D + 2 * D);
    }
    std::vector<Half> kc(KvLayerHalves(T, int(H), int(D))), vc(kc.size());
    AppendKv(qkv_ref.data(), T, int(H), int(D), 0, T, kc.data(), vc.data());
    std::vector<float> scratch(AttentionScratchFloats(T));
    out.resize(T * HD);
    Attention(qkv_ref.data(), T, 0, int(H), int(D), kc.data(), vc.data(), T, layout.prefix_len, l,
              out.data(), scratch.data());
    std::vector<double> vmax(HD, 0);  // Σ_j p_j|v_j| <= max_j |v_j| per head dim
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t c = 0; c < HD; ++c) {
        vmax[c] = std::max(vmax[c], double(std::fabs(HalfToFloat(v[t * HD + c]))));
      }
    }
    check("ctx", out, in("ctx"),
          [&](size_t i, double e) { return test::HalfUlp(e) + std::ldexp(vmax[i % HD], -10); });

    NpyArray ctx = in("ctx");
    out.resize(T * C);
    Linear(ctx.as<Half>(), T, w.dense, w.dense_b.f16(), out.data(), f32.data());
    check("attn_out", out, in("attn_out"), linear_tol(ctx, w.dense));

    DeepNormResidual(y.as<Half>(), in("attn_out").as<Half>(), cfg.Alpha(), T * C, out.data());
    check("h", out, in("h"), half_tol);

    LayerNorm(in("h").as<Half>(), T, C, w.ffn_norm_w.f16(), w.ffn_norm_b.f16(), cfg.layernorm_eps,
              out.data());
    check("ffn_norm", out, in("ffn_norm"), ln_tol(in("h"), w.ffn_norm_w));

    NpyArray z = in("ffn_norm");
    out.resize(T * 2 * F);
    Linear(z.as<Half>(), T, w.up, w.up_b.f16(), out.data(), f32.data());
    check("up", out, in("up"), linear_tol(z, w.up));

    out.resize(T * F);
    GeGlu(in("up").as<Half>(), T, F, out.data());
    check("gated", out, in("gated"), half_tol);

    NpyArray g = in("gated");
    out.resize(T * C);
    Linear(g.as<Half>(), T, w.down, w.down_b.f16(), out.data(), f32.data());
    check("down", out, in("down"), linear_tol(g, w.down));

    DeepNormResidual(z.as<Half>(), in("down").as<Half>(), cfg.Alpha(), T * C, out.data());
    check("layer out", out, Load(StrFormat("gmask.layer%d", l)), half_tol);
    store_->Release(l);
  }
}

TEST_F(Golden, DecodeWithCacheEqualsFullRecompute) {
  const ModelConfig& cfg = store_->config();
  for (const char* c : kCases) {
    SCOPED_TRACE(c);
    auto ids = Ids(c);
    auto layout = DeriveLayout(ids, cfg.tokens).value();
    ASSERT_GE(layout.sop_index, 0);
    std::vector<Half> full = RunFull(ids, layout, nullptr);
    const int64_t T = int64_t(ids.size()), V = cfg.vocab;
    RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
    KvCache kv = KvCache::Allocate(cfg, T);
    Activations act = Activations::Allocate(cfg, T, T);
    std::vector<Half> step(V);
    // Prefill up to and including [sop], then one token at a time.
    for (int64_t begin = 0; begin < T;) {
      const int64_t n = begin == 0 ? layout.sop_index + 1 : 1;
      ForwardArgs args{.ids = std::span(ids).subspan(begin, n),
                       .positions = std::span(layout.positions).subspan(begin, n),
                       .prefix_len = layout.prefix_len};
      Status st = Forward(*store_, rope, kv, act, args, step.data());
      ASSERT_TRUE(st.ok()) << st.message();
      const int64_t row = begin + n - 1;
      for (int64_t v = 0; v < V; ++v) {
        ASSERT_EQ(step[v].bits, full[row * V + v].bits) << "row " << row << " vocab " << v;
      }
      begin += n;
    }
  }
}

// Several sequences in one step (batched prefill, then batched decode) give exactly the logits
// of each sequence run alone: the batch shares the weights, nothing else.
TEST_F(Golden, BatchEqualsSeparateRuns) {
  const ModelConfig& cfg = store_->config();
  const int64_t V = cfg.vocab;
  std::vector<std::vector<int32_t>> ids;
  std::vector<SequenceLayout> layouts;
  std::vector<std::vector<Half>> full;
  std::vector<KvCache> caches;
  int64_t total = 0;
  for (const char* c : {"gmask", "mask", "smask", "short"}) {
    ids.push_back(Ids(c));
    layouts.push_back(DeriveLayout(ids.back(), cfg.tokens).value());
    full.push_back(RunFull(ids.back(), layouts.back(), nullptr));
    caches.push_back(KvCache::Allocate(cfg, int64_t(ids.back().size())));
    total += int64_t(ids.back().size());
  }
  RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  Activations act = Activations::Allocate(cfg, total, 512);
  std::vector<int64_t> done(ids.size(), 0);
  std::vector<Half> logits(ids.size() * V);
  for (int step = 0;; ++step) {
    std::vector<SeqStep> steps;
    std::vector<size_t> which;
    for (size_t b = 0; b < ids.size(); ++b) {
      const int64_t T = int64_t(ids[b].size());
      if (done[b] >= T) continue;
      const int64_t n = step == 0 ? layouts[b].sop_index + 1 : 1;
      steps.push_back({.kv = &caches[b],
                       .ids = std::span(ids[b]).subspan(done[b], n),
                       .positions = std::span(layouts[b].positions).subspan(done[b], n),
                       .prefix_len = layouts[b].prefix_len});
      which.push_back(b);
    }
    if (steps.empty()) break;
    Status st = ForwardBatch(*store_, rope, steps, act, logits.data());
    ASSERT_TRUE(st.ok()) << st.message();
    for (size_t i = 0; i < steps.size(); ++i) {
      const size_t b = which[i];
      done[b] += int64_t(steps[i].ids.size());
      const int64_t row = done[b] - 1;
      for (int64_t v = 0; v < V; ++v) {
        ASSERT_EQ(logits[i * V + v].bits, full[b][row * V + v].bits)
            << "sequence " << b << " row " << row << " vocab " << v;
      }
    }
  }
}

TEST_F(Golden, CapacityAndIdErrorsAreReported) {
  const ModelConfig& cfg = store_->config();
  RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  KvCache kv = KvCache::Allocate(cfg, 2);
  Activations act = Activations::Allocate(cfg, 4, 4);
  std::vector<Half> logits(cfg.vocab);
  const std::vector<int32_t> ids = {5, 6, 7}, pos = {0, 1, 2};
  ForwardArgs args{.ids = ids, .positions = pos, .prefix_len = 3};
  Status st = Forward(*store_, rope, kv, act, args, logits.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("KV cache capacity"), std::string::npos) << st.message();
  KvCache kv2 = KvCache::Allocate(cfg, 4);
  const std::vector<int32_t> bad = {5, cfg.vocab + 3, 7};
  ForwardArgs args2{.ids = bad, .positions = pos, .prefix_len = 3};
  st = Forward(*store_, rope, kv2, act, args2, logits.data());
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("outside the vocabulary"), std::string::npos) << st.message();
}

// The CLI: glm-logits on the converted file writes the same logits as the library.
TEST_F(Golden, GlmLogitsToolWritesLastRowAndAllRows) {
  const std::string tool = std::string(GLM_BINARY_DIR) + "/glm-logits";
  auto ids = Ids("mask");
  std::string list;
  for (size_t i = 0; i < ids.size(); ++i) list += (i ? "," : "") + std::to_string(ids[i]);
  const std::string out1 = dir_->File("last.npy"), out2 = dir_->File("all.npy");
  const std::string model = dir_->File("tiny.gguf");
  ASSERT_EQ(std::system(("'" + tool + "' --model " + model + " --ids " + list + " --output " +
                         out1 + " 2>/dev/null")
                            .c_str()),
            0);
  ASSERT_EQ(std::system(("'" + tool + "' --model " + model + " --ids " + list + " --output " +
                         out2 + " --all 2>/dev/null")
                            .c_str()),
            0);
  NpyArray last = ReadNpy(out1).value(), all = ReadNpy(out2).value();
  const int64_t V = store_->config().vocab, T = int64_t(ids.size());
  ASSERT_EQ(last.shape, (std::vector<int64_t>{V}));
  ASSERT_EQ(all.shape, (std::vector<int64_t>{T, V}));
  auto layout = DeriveLayout(ids, store_->config().tokens).value();
  std::vector<Half> full = RunFull(ids, layout, nullptr);
  for (int64_t i = 0; i < T * V; ++i) {
    ASSERT_EQ(all.as<float>()[i], HalfToFloat(full[i])) << i;
  }
  for (int64_t v = 0; v < V; ++v) ASSERT_EQ(last.as<float>()[v], all.as<float>()[(T - 1) * V + v]);
  // Bad input: a clear error and a non-zero exit, no output file.
  const std::string bad = dir_->File("bad.npy");
  EXPECT_NE(std::system(("'" + tool + "' --model " + model + " --ids 1,x,3 --output " + bad +
                         " 2>/dev/null")
                            .c_str()),
            0);
  EXPECT_NE(std::system(("'" + tool + "' --model /nonexistent.gguf --ids 1 --output " + bad +
                         " 2>/dev/null")
                            .c_str()),
            0);
  EXPECT_NE(std::system(("'" + tool + "' --model " + model + " --ids 1,99999 --output " + bad +
                         " 2>/dev/null")
                            .c_str()),
            0);
  EXPECT_FALSE(std::ifstream(bad).good());
}

}  // namespace
}  // namespace glm
