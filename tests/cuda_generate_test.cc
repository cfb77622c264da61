// Generation on the GPU (runtime/engine_cuda.h): greedy blank filling on the tiny golden model
// against the CPU, streamed layers against resident ones (beam search included), a copied KV
// cache continuing as its source, and glm-generate's --gpu-mem mode. Without a device every test
// skips with the reason; in a build without CUDA, glm-generate's --gpu-mem must say so.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "quant/synthetic.h"
#include "tests/test_util.h"

namespace glm {
namespace {

const std::string kTool = std::string(GLM_BINARY_DIR) + "/glm-generate";
const std::string kTokenizer = std::string(GLM_SOURCE_DIR) + "/tests/data/tokenizer/demo.model";

}  // namespace
}  // namespace glm

#if GLM_HAVE_CUDA

#include "offload/layer_source_cuda.h"
#include "runtime/device_cuda.h"
#include "runtime/engine_cuda.h"
#include "runtime/generation.h"
#include "runtime/model.h"

namespace glm {
namespace {

class CudaGenerate : public test::GoldenModelSuite<CudaDeviceAvailable> {
 public:
  // A session on the GPU over the golden model file; linears without tensor-core accumulation
  // unless asked, so that it stays within the CPU's tolerances.
  static std::unique_ptr<GenerationSession> GpuSession(const GenerationOptions& o,
                                                       GpuEngineOptions go = {.exact_fp32 = true}) {
    auto src = OpenFileLayerSource(*path_);
    GLM_CHECK_MSG(src.ok(), "%s", src.status().message().c_str());
    const ModelConfig cfg = (*src)->config();
    auto engine = OpenGpuEngine(std::move(src).value(), go, GenerationShape(cfg, o));
    GLM_CHECK_MSG(engine.ok(), "%s", engine.status().message().c_str());
    std::printf("  %s\n", (*engine)->Describe().c_str());
    auto s = GenerationSession::Create(std::move(engine).value(), o);
    GLM_CHECK_MSG(s.ok(), "%s", s.status().message().c_str());
    return std::move(s).value();
  }
  static std::unique_ptr<GenerationSession> CpuSession(const GenerationOptions& o) {
    auto s = GenerationSession::Create(*cpu_, o);
    GLM_CHECK_MSG(s.ok(), "%s", s.status().message().c_str());
    return std::move(s).value();
  }

  // The tokens of each query's first blank, as streamed.
  static std::vector<std::vector<int32_t>> Tokens(GenerationSession& s,
                                                  const std::vector<Query>& qs) {
    std::vector<std::vector<int32_t>> out(qs.size());
    GenerationCallbacks cb;
    cb.on_token = [&](size_t q, int blank, int32_t t) {
      if (blank == 0) out[q].push_back(t);
    };
    Status st = s.Run(qs, cb);
    GLM_CHECK_MSG(st.ok(), "%s", st.message().c_str());
    return out;
  }

  // The CPU's logits of the next token after the context, [sop] and `generated`.
  static std::vector<Half> CpuNextLogits(const Query& q, const std::vector<int32_t>& generated) {
    const ModelConfig& cfg = cpu_->config();
    std::vector<int32_t> ids = q.ids;
    ids.push_back(cfg.tokens.sop);
    ids.insert(ids.end(), generated.begin(), generated.end());
    const SequenceLayout layout = DeriveLayout(ids, cfg.tokens).value();
    const RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
    KvCache kv = KvCache::Allocate(cfg, int64_t(ids.size()));
    Activations act = Activations::Allocate(cfg, int64_t(ids.size()), int64_t(ids.size()));
    std::vector<Half> logits(cfg.vocab);
    const ForwardArgs args{
        .ids = ids, .positions = layout.positions, .prefix_len = layout.prefix_len};
    Status st = Forward(*cpu_, rope, kv, act, args, logits.data());
    GLM_CHECK_MSG(st.ok(), "%s", st.message().c_str());
    return logits;
  }

  static std::vector<Query> Prompts() {
    const SpecialTokens& t = cpu_->config().tokens;
    return {{.ids = {17, 230, 41, 999, 8, 512, t.gmask}, .mode = MaskMode::kGMask, .seed = 1},
            {.ids = {17, 230, t.mask, 41, 999, 8, 512, t.eos}, .mode = MaskMode::kMask, .seed = 2},
            {.ids = {300, t.smask, 5, 6, 7, 8, 9, 10, t.eos}, .mode = MaskMode::kSMask, .seed = 3},
            {.ids = {44, 45, 46, 47, 48, 49, 50, t.gmask}, .mode = MaskMode::kGMask, .seed = 4}};
  }
};

// Greedy decoding (top-k 1) on the GPU picks the CPU's tokens. The GPU's sums run in another
// order, so where the CPU's two best logits are nearly tied the GPU may take the other one: a
// divergence passes only if, at its first token, the CPU's logit of the GPU's choice is within
// kTie of the CPU's best (the rest of that sequence is then not comparable).
TEST_F(CudaGenerate, GreedyPicksTheCpuTokens) {
  constexpr double kTie = 0.02;
  const GenerationOptions o{.base = {.top_k = 1}, .out_seq_length = 96};
  const std::vector<Query> qs = Prompts();
  const auto cpu = Tokens(*CpuSession(o), qs);
  const auto gpu = Tokens(*GpuSession(o), qs);
  int exact = 0;
  for (size_t q = 0; q < qs.size(); ++q) {
    SCOPED_TRACE(StrFormat("query %zu", q));
    ASSERT_FALSE(cpu[q].empty());
    const size_t n = std::min(cpu[q].size(), gpu[q].size());
    size_t i = 0;
    while (i < n && cpu[q][i] == gpu[q][i]) ++i;
    if (i == cpu[q].size() && i == gpu[q].size()) {
      ++exact;
      continue;
    }
    // A divergence (or one side ended at an end token): the CPU's logits at that token. Top-k 1
    // takes the largest logit, so the GPU's choice must be within kTie of it.
    const std::vector<int32_t> prefix(cpu[q].begin(), cpu[q].begin() + i);
    const std::vector<Half> logits = CpuNextLogits(qs[q], prefix);
    double best = -INFINITY;
    for (Half h : logits) best = std::max<double>(best, HalfToFloat(h));
    const SpecialTokens& t = cpu_->config().tokens;
    const double ended = std::max(HalfToFloat(logits[t.eop]), HalfToFloat(logits[t.eos]));
    const double lg = i < gpu[q].size() ? HalfToFloat(logits[gpu[q][i]]) : ended;
    std::printf(
        "  query %zu: diverges at token %zu: CPU's best logit %.4f, the GPU's choice (%s) "
        "%.4f\n",
        q, i, best, i < gpu[q].size() ? StrFormat("%d", gpu[q][i]).c_str() : "end", lg);
    EXPECT_LE(best - lg, kTie) << "the GPU's choice is clearly below the CPU's best";
  }
  std::printf("  %d of %zu queries identical to the CPU\n", exact, qs.size());
  EXPECT_GE(exact, 1) << "every query diverged: suspicious even with near ties";
}

// Streaming layers through the staging slots gives exactly the resident results (the same
// kernels on the same bytes), for greedy and for beam search, whose beams copy KV caches.
TEST_F(CudaGenerate, StreamedEqualsResident) {
  GenerationOptions greedy{.base = {.top_k = 1}, .out_seq_length = 64};
  GenerationOptions beams{.strategy = Strategy::kBeamSearch, .out_seq_length = 64};
  beams.beam = {
      .num_beams = 3, .length_penalty = 1.0, .no_repeat_ngram_size = 3, .deterministic = true};
  const std::vector<Query> qs = Prompts();
  for (const GenerationOptions& o : {greedy, beams}) {
    SCOPED_TRACE(o.strategy == Strategy::kBase ? "greedy" : "beam search");
    auto resident = GpuSession(o, {.exact_fp32 = false})->RunAll(qs);
    auto streamed = GpuSession(o, {.max_resident_layers = 1})->RunAll(qs);
    ASSERT_TRUE(resident.ok() && streamed.ok());
    for (size_t q = 0; q < qs.size(); ++q) {
      const QueryResult& a = resident.value()[q];
      const QueryResult& b = streamed.value()[q];
      ASSERT_TRUE(a.status.ok() && b.status.ok()) << a.status.message() << b.status.message();
      ASSERT_EQ(a.outputs.size(), b.outputs.size()) << q;
      for (size_t j = 0; j < a.outputs.size(); ++j) {
        EXPECT_EQ(a.outputs[j].ids, b.outputs[j].ids) << "query " << q << " output " << j;
        EXPECT_EQ(a.outputs[j].score, b.outputs[j].score) << "query " << q << " output " << j;
      }
    }
  }
}

// A KV cache copied on the device continues exactly as its source: the same next token on both,
// in one step, gives the same logits bit for bit.
TEST_F(CudaGenerate, CopiedCacheContinuesAsItsSource) {
  const ModelConfig& cfg = cpu_->config();
  const SpecialTokens& t = cfg.tokens;
  auto src = OpenFileLayerSource(*path_);
  ASSERT_TRUE(src.ok()) << src.status().message();
  const EngineShape shape{.caches = 3, .capacity = 32, .max_tokens = 32, .max_logit_rows = 3};
  auto engine = OpenGpuEngine(std::move(src).value(), {}, shape);
  ASSERT_TRUE(engine.ok()) << engine.status().message();
  ForwardEngine& e = **engine;
  const std::vector<int32_t> ids = {17, 230, t.mask, 41, 999, t.eos, t.sop};
  const SequenceLayout layout = DeriveLayout(ids, t).value();
  const int64_t prefix = layout.prefix_len;
  std::vector<Half> logits(3 * size_t(cfg.vocab));
  const EngineStep prefill{
      .cache = 0, .ids = ids, .positions = layout.positions, .prefix_len = prefix};
  ASSERT_TRUE(e.Forward(std::span(&prefill, 1), logits.data()).ok());
  // Cache 2 first gets other tokens, so that the copy must overwrite them.
  const std::vector<int32_t> junk = {5, 6, 7, 8, 9, 10, 11, 12},
                             junk_pos = {0, 1, 2, 3, 4, 5, 6, 7};
  const EngineStep other{.cache = 2, .ids = junk, .positions = junk_pos, .prefix_len = 8};
  ASSERT_TRUE(e.Forward(std::span(&other, 1), logits.data()).ok());
  ASSERT_TRUE(e.Copy(0, 1).ok());
  ASSERT_TRUE(e.Copy(0, 2).ok());
  EXPECT_EQ(e.Length(2), int64_t(ids.size()));
  const std::vector<int32_t> next = {99}, next_pos = {2};
  std::vector<EngineStep> all;
  for (int c = 0; c < 3; ++c) {
    all.push_back({.cache = c, .ids = next, .positions = next_pos, .prefix_len = prefix});
  }
  ASSERT_TRUE(e.Forward(all, logits.data()).ok());
  for (int r = 1; r < 3; ++r) {
    for (int64_t i = 0; i < cfg.vocab; ++i) {
      ASSERT_EQ(logits[i].bits, logits[r * cfg.vocab + i].bits) << "cache " << r << " logit " << i;
    }
  }
  EXPECT_FALSE(e.Copy(0, 3).ok());
}

// glm-generate --gpu-mem: runs on the GPU (the header says so, every output is written), gives
// the same greedy outputs with a layer streamed (--gpu-layers 1), and a budget below the fixed
// costs is a clear error with exit status 1.
TEST_F(CudaGenerate, ToolRunsOnTheGpu) {
  if (!std::filesystem::exists(kTool)) GTEST_SKIP() << kTool << " is not built";
  const std::string model = dir_->File("cli.gguf");
  ASSERT_TRUE(WriteSyntheticModel(model, test::CliModelConfig(), 7).ok());
  const std::string in = dir_->File("queries.txt");
  std::ofstream(in) << "a\tThe capital of France is [MASK].\nb\tMemory is slow\n";
  const std::string base = "--model " + test::Quote(model) + " --tokenizer " +
                           test::Quote(kTokenizer) + " --input-source " + test::Quote(in) +
                           " --with-id --out-seq-length 48 --output-path ";
  const std::string out = dir_->File("out"), streamed = dir_->File("streamed");
  test::ToolRun r =
      test::RunTool(kTool, base + test::Quote(out) + " --top-k 1 --gpu-mem all --verbose");
  ASSERT_TRUE(r.exited(0)) << r.out;
  EXPECT_NE(r.out.find("on GPU "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Output: "), std::string::npos) << r.out;
  // One layer resident, the other streamed: the same greedy outputs.
  test::ToolRun s = test::RunTool(
      kTool, base + test::Quote(streamed) + " --top-k 1 --gpu-mem all --gpu-layers 1");
  ASSERT_TRUE(s.exited(0)) << s.out;
  EXPECT_NE(s.out.find("1 of 2 layers resident"), std::string::npos) << s.out;
  for (const char* id : {"a", "b"}) {
    const std::string file = std::string("/") + id + ".txt";
    ASSERT_TRUE(std::filesystem::exists(out + file)) << id << "\n" << r.out;
    EXPECT_EQ(test::ReadFile(out + file), test::ReadFile(streamed + file)) << id;
  }
  r = test::RunTool(kTool, base + test::Quote(dir_->File("out2")) + " --gpu-mem 16M");
  EXPECT_TRUE(r.exited(1)) << r.out;
  EXPECT_NE(r.out.find("below what the GPU must hold"), std::string::npos) << r.out;
}

// Built with CUDA on a machine without a device: --gpu-mem is a clear error, exit status 1.
TEST(CudaGenerateTool, NoDeviceIsAClearError) {
  if (CudaDeviceAvailable().ok()) GTEST_SKIP() << "a device is present (ToolRunsOnTheGpu runs)";
  if (!std::filesystem::exists(kTool)) GTEST_SKIP() << kTool << " is not built";
  test::TempDir dir;
  const std::string model = dir.File("cli.gguf"), in = dir.File("q.txt");
  ASSERT_TRUE(WriteSyntheticModel(model, test::CliModelConfig(), 7).ok());
  std::ofstream(in) << "Memory is [MASK].\n";
  test::ToolRun r =
      test::RunTool(kTool, "--model " + test::Quote(model) + " --tokenizer " +
                               test::Quote(kTokenizer) + " --input-source " + test::Quote(in) +
                               " --output-path " + test::Quote(dir.File("out")) + " --gpu-mem 8G");
  EXPECT_TRUE(r.exited(1)) << r.out;
  EXPECT_NE(r.out.find("no CUDA device"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--gpu-mem"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace glm

#else  // GLM_HAVE_CUDA

TEST(CudaGenerate, NotBuilt) { GTEST_SKIP() << "built without CUDA (GLM_CUDA=OFF or no nvcc)"; }

// This glm-generate has no GPU mode either, and says so.
TEST(CudaGenerate, ToolSaysItHasNoGpuMode) {
  if (!std::filesystem::exists(glm::kTool)) GTEST_SKIP() << glm::kTool << " is not built";
  glm::test::ToolRun r =
      glm::test::RunTool(glm::kTool, "--model m.gguf --tokenizer " +
                                         glm::test::Quote(glm::kTokenizer) + " --gpu-mem 8G");
  EXPECT_TRUE(r.exited(1)) << r.out;
  EXPECT_NE(r.out.find("built without the CUDA backend"), std::string::npos) << r.out;
}

#endif  // GLM_HAVE_CUDA
