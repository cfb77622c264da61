// The whole path against the PyTorch transcription of the reference (tests/golden/): the SAT
// checkpoint (2 TP ranks) -> glm-quantize's converter -> GGUF -> CPU forward, compared layer by
// layer and at the logits for [gMASK], [MASK] and [sMASK] inputs with positions past 300.
// Also: decode with the KV cache equals full recomputation, bit for bit.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "offload/model_file.h"
#include "quant/convert.h"
#include "runtime/layout.h"
#include "runtime/model.h"
#include "runtime/npy.h"
#include "tests/test_util.h"

namespace glm {
namespace {

const std::string kDir = std::string(GLM_SOURCE_DIR) + "/tests/golden/tiny";
const char* kCases[] = {"short", "gmask", "mask", "smask", "mask_with_gmask"};

NpyArray Load(const std::string& name) {
  auto a = ReadNpy(kDir + "/" + name + ".npy");
  GLM_CHECK_MSG(a.ok(), "%s", a.status().message().c_str());
  return std::move(a).value();
}

std::map<std::string, long> ReadConfigTxt() {
  std::ifstream in(kDir + "/config.txt");
  std::map<std::string, long> kv;
  std::string k;
  long v;
  while (in >> k >> v) kv[k] = v;
  return kv;
}

class Golden : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto kv = ReadConfigTxt();
    ASSERT_FALSE(kv.empty()) << "missing " << kDir << "/config.txt";
    dir_ = new test::TempDir();
    ConvertOptions opts;
    opts.input_dir = kDir + "/ckpt";
    opts.output_path = dir_->File("tiny.gguf");
    opts.max_seq = int(kv["max_seq"]);
    opts.tokens = SpecialTokens{.mask = int32_t(kv["mask"]), .gmask = int32_t(kv["gmask"]),
                                .smask = int32_t(kv["smask"]), .sop = int32_t(kv["sop"]),
                                .eop = int32_t(kv["eop"]), .eos = int32_t(kv["eos"])};
    Status st = ConvertSatToGguf(opts);
    ASSERT_TRUE(st.ok()) << st.message();
    auto store = MmapStore::Open(opts.output_path);
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
    ForwardArgs args{.ids = ids, .positions = layout.positions, .prefix_len = layout.prefix_len,
                     .all_logits = true, .tap = &tap};
    Status st = Forward(*store_, rope, kv, act, args, logits.data());
    EXPECT_TRUE(st.ok()) << st.message();
    return logits;
  }

  static test::TempDir* dir_;
  static MmapStore* store_;
};
test::TempDir* Golden::dir_ = nullptr;
MmapStore* Golden::store_ = nullptr;

std::vector<int32_t> Ids(const std::string& c) {
  NpyArray a = Load(c + ".ids");
  return std::vector<int32_t>(a.as<int32_t>(), a.as<int32_t>() + a.numel());
}

// Our kernels accumulate in fp32 in another order than cuBLAS/PyTorch, so any fp16 rounding
// point may land one ulp away; LayerNorm keeps such differences from growing through layers.
// Tolerance per element: `ulps` fp16 ulps at the element's magnitude plus the same at the
// tensor's RMS (a 1-ulp difference in a large input moves small outputs by that much).
::testing::AssertionResult Compare(const std::string& what, const Half* actual,
                                   const NpyArray& expected, double ulps) {
  const int64_t n = expected.numel();
  std::vector<double> e = test::ToDouble(expected.as<Half>(), n), a = test::ToDouble(actual, n);
  double rms = 0;
  int64_t exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    rms += e[i] * e[i];
    exact += (actual[i].bits == expected.as<Half>()[i].bits);
  }
  rms = std::sqrt(rms / n);
  std::printf("  %-28s %7.3f%% bit-identical\n", what.c_str(), 100.0 * exact / n);
  return test::AllClose(a, e, [&](size_t, double x) {
    return ulps * (test::HalfUlp(x) + test::HalfUlp(rms));
  }, what);
}

TEST_F(Golden, LayoutMatchesReference) {
  for (const char* c : kCases) {
    auto ids = Ids(c);
    auto layout = DeriveLayout(ids, store_->config().tokens);
    ASSERT_TRUE(layout.ok());
    NpyArray pos = Load(std::string(c) + ".positions"), prefix = Load(std::string(c) + ".prefix_len");
    EXPECT_EQ(layout->positions,
              std::vector<int32_t>(pos.as<int32_t>(), pos.as<int32_t>() + pos.numel()))
        << c;
    EXPECT_EQ(layout->prefix_len, prefix.as<int32_t>()[0]) << c;
  }
}

TEST_F(Golden, LayerByLayerAndLogits) {
  const ModelConfig& cfg = store_->config();
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
    EXPECT_TRUE(Compare("embed", taps["embed"].data(), embed, 0.0));
    for (int l = 0; l < cfg.num_layers; ++l) {
      EXPECT_TRUE(Compare(StrFormat("layer %d", l), taps[StrFormat("l%d.out", l)].data(),
                          Load(p + StrFormat("layer%d", l)), 4.0));
    }
    EXPECT_TRUE(Compare("final_norm", taps["final_norm"].data(), Load(p + "final_norm"), 4.0));
    EXPECT_TRUE(Compare("logits", logits.data(), Load(p + "logits"), 4.0));
  }
}

TEST_F(Golden, IntermediatesOfFirstAndLastLayer) {
  const ModelConfig& cfg = store_->config();
  auto ids = Ids("gmask");
  auto layout = DeriveLayout(ids, cfg.tokens).value();
  std::map<std::string, std::vector<Half>> taps;
  RunFull(ids, layout, &taps);
  const int64_t T = int64_t(ids.size()), H = cfg.num_heads, D = cfg.head_dim;
  for (int l : {0, cfg.num_layers - 1}) {
    std::printf("gmask layer %d\n", l);
    const std::string p = StrFormat("gmask.l%d.", l);
    // Split our rotated qkv [T, H, 3D] into q and k [T, H, D] as the reference taps them.
    const std::vector<Half>& qkv = taps[StrFormat("l%d.qkv_rot", l)];
    std::vector<Half> q(T * H * D), k(T * H * D);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t d = 0; d < D; ++d) {
          q[(t * H + h) * D + d] = qkv[(t * H + h) * 3 * D + d];
          k[(t * H + h) * D + d] = qkv[(t * H + h) * 3 * D + D + d];
        }
      }
    }
    EXPECT_TRUE(Compare("q_rot", q.data(), Load(p + "q_rot"), 4.0));
    EXPECT_TRUE(Compare("k_rot", k.data(), Load(p + "k_rot"), 4.0));
    for (const char* name : {"attn_norm", "qkv", "ctx", "attn_out", "h", "ffn_norm", "up",
                             "gated", "down"}) {
      EXPECT_TRUE(Compare(name, taps[StrFormat("l%d.%s", l, name)].data(), Load(p + name), 4.0));
    }
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
      steps.push_back({.kv = &caches[b], .ids = std::span(ids[b]).subspan(done[b], n),
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
                         out1 + " 2>/dev/null").c_str()), 0);
  ASSERT_EQ(std::system(("'" + tool + "' --model " + model + " --ids " + list + " --output " +
                         out2 + " --all 2>/dev/null").c_str()), 0);
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
                         " 2>/dev/null").c_str()), 0);
  EXPECT_NE(std::system(("'" + tool + "' --model /nonexistent.gguf --ids 1 --output " + bad +
                         " 2>/dev/null").c_str()), 0);
  EXPECT_NE(std::system(("'" + tool + "' --model " + model + " --ids 1,99999 --output " + bad +
                         " 2>/dev/null").c_str()), 0);
  EXPECT_FALSE(std::ifstream(bad).good());
}

}  // namespace
}  // namespace glm
