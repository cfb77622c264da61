// Generation (spec §4-5): input construction and layouts for each mask type on hand-built
// sequences, the rendering of filled spans, and on the tiny golden model: greedy blank filling
// equal to the PyTorch reference's step-by-step argmax (tests/golden/tiny/greedy.txt), beam
// search with cache reordering equal to full recomputation, batches equal to single runs, and
// per-query errors.
#include "runtime/generation.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <sstream>

#include "offload/model_file.h"
#include "quant/convert.h"
#include "runtime/model.h"
#include "tests/test_util.h"

namespace glm {
namespace {

const std::string kTokenizer = std::string(GLM_SOURCE_DIR) + "/tests/data/tokenizer/demo.model";
const SpecialTokens kGlm;  // GLM-130B's ids

std::unique_ptr<Tokenizer> DemoTokenizer() {
  auto t = Tokenizer::Open(kTokenizer, kGlm, 150528);
  GLM_CHECK_MSG(t.ok(), "%s", t.status().message().c_str());
  return std::move(t).value();
}

std::vector<int32_t> Cat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Positions of the context + [sop] + n generated tokens, as the model derives them.
std::vector<int32_t> Positions(std::vector<int32_t> ids, int generated) {
  ids.push_back(kGlm.sop);
  for (int i = 0; i < generated; ++i) ids.push_back(20100 + i);
  return DeriveLayout(ids, kGlm).value().positions;
}

// spec §1.8's worked example: "A B [MASK] C" -> tok("A B ") [MASK] tok(" C") </s>, [sop] and
// every generated token at the mask's position.
TEST(BuildInput, MaskSplitsTheTextAndAppendsEos) {
  auto tok = DemoTokenizer();
  auto in = BuildInput("A B [MASK] C", *tok, 2048);
  ASSERT_TRUE(in.ok()) << in.status().message();
  // spm_encode: "A B " -> 67 389, " C" -> 318.
  EXPECT_EQ(in->ids, (std::vector<int32_t>{20067, 20389, kGlm.mask, 20318, kGlm.eos}));
  EXPECT_EQ(in->mode, MaskMode::kMask);
  EXPECT_EQ(in->text, "A B [MASK] C");
  EXPECT_EQ(Positions(in->ids, 3), (std::vector<int32_t>{0, 1, 2, 3, 4, 2, 2, 2, 2}));
  auto layout = DeriveLayout(Cat({in->ids, {kGlm.sop}}), kGlm).value();
  EXPECT_EQ(layout.prefix_len, 5);  // the context, eos included, is visible to every row
  EXPECT_EQ(layout.mask_position, 2);
}

TEST(BuildInput, NoMaskAppendsGMaskAndNoEos) {
  auto tok = DemoTokenizer();
  auto in = BuildInput("A B", *tok, 2048);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->ids, Cat({tok->Encode("A B"), {kGlm.gmask}}));
  EXPECT_EQ(in->mode, MaskMode::kGMask);
  EXPECT_EQ(in->text, "A B [gMASK]");  // the text now ends in "MASK]": no eos
  EXPECT_EQ(Positions(in->ids, 3), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6}));
  // An explicit [gMASK] at the end is the same thing, except for the piece's trailing space.
  auto explicit_g = BuildInput("A B [gMASK]", *tok, 2048);
  ASSERT_TRUE(explicit_g.ok());
  EXPECT_EQ(explicit_g->ids, Cat({tok->Encode("A B "), {kGlm.gmask}}));
  EXPECT_EQ(explicit_g->text, "A B [gMASK]");
}

TEST(BuildInput, GMaskInsideTheTextKeepsEosAndPlainPositions) {
  auto tok = DemoTokenizer();
  auto in = BuildInput("Memory [gMASK] is slow.", *tok, 2048);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->ids,
            Cat({tok->Encode("Memory "), {kGlm.gmask}, tok->Encode(" is slow."), {kGlm.eos}}));
  EXPECT_EQ(in->mode, MaskMode::kGMask);
  const int64_t n = int64_t(in->ids.size());
  std::vector<int32_t> want(n + 1 + 2);
  for (int64_t i = 0; i < n + 3; ++i) want[i] = int32_t(i);
  EXPECT_EQ(Positions(in->ids, 2), want);
}

TEST(BuildInput, SMaskUsesTheFirstSMask) {
  auto tok = DemoTokenizer();
  auto in = BuildInput("[sMASK] is slow, [sMASK] is fast", *tok, 2048);
  ASSERT_TRUE(in.ok());
  // The text starts with a mask: the empty first piece gives no tokens.
  EXPECT_EQ(in->ids, Cat({{kGlm.smask},
                          tok->Encode(" is slow, "),
                          {kGlm.smask},
                          tok->Encode(" is fast"),
                          {kGlm.eos}}));
  EXPECT_EQ(in->mode, MaskMode::kSMask);
  const std::vector<int32_t> pos = Positions(in->ids, 2);
  const size_t n = in->ids.size();
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(pos[i], int32_t(i));
  EXPECT_EQ(pos[n], 0);      // [sop] at the first [sMASK]
  EXPECT_EQ(pos[n + 2], 0);  // and the generated tokens
}

TEST(BuildInput, MaskTakesPrecedenceAndATextEndingInMaskHasNoEos) {
  auto tok = DemoTokenizer();
  auto in = BuildInput("A [gMASK] B [sMASK] C [MASK]", *tok, 2048);
  ASSERT_TRUE(in.ok());
  EXPECT_EQ(in->ids, Cat({tok->Encode("A "),
                          {kGlm.gmask},
                          tok->Encode(" B "),
                          {kGlm.smask},
                          tok->Encode(" C "),
                          {kGlm.mask}}));
  EXPECT_EQ(in->mode, MaskMode::kMask);
  const int32_t mask_at = int32_t(in->ids.size()) - 1;
  EXPECT_EQ(Positions(in->ids, 1).back(), mask_at);
  EXPECT_EQ(DeriveLayout(Cat({in->ids, {kGlm.sop}}), kGlm)->mode, MaskMode::kMask);
}

TEST(BuildInput, EmptyAndTooLongAreErrors) {
  auto tok = DemoTokenizer();
  EXPECT_FALSE(BuildInput("", *tok, 2048).ok());
  // "Memory is slow." is 6 tokens, + [gMASK] = 7, + [sop] = 8.
  EXPECT_TRUE(BuildInput("Memory is slow.", *tok, 8).ok());
  auto too_long = BuildInput("Memory is slow.", *tok, 7);
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("text too long"), std::string::npos);
}

TEST(RenderOutput, MarksSpansOnATerminalAndIsPlainOtherwise) {
  auto tok = DemoTokenizer();
  // "▁M emory ▁is | ▁s low | ."
  FilledOutput out{.ids = tok->Encode("Memory is slow."), .spans = {{3, 5}}};
  EXPECT_EQ(RenderOutput(*tok, out, {.ansi = false}), "Memory is slow.");
  // generate.py: each part detokenized alone, spaces around the span for English text, green
  // underline for [MASK], underline only for [gMASK].
  EXPECT_EQ(RenderOutput(*tok, out, {.ansi = true, .english = true, .mode = MaskMode::kMask}),
            "Memory is \x1b[0;32m\033[4mslow\033[0m\x1b[0m .");
  EXPECT_EQ(RenderOutput(*tok, out, {.ansi = true, .english = false, .mode = MaskMode::kGMask}),
            "Memory is\033[4mslow\033[0m.");
  EXPECT_TRUE(IsAscii("plain text [MASK]"));
  EXPECT_FALSE(IsAscii("caf\xc3\xa9"));
}

// ---------------------------------------------------------------------------------------------
// The tiny golden model.

const std::string kTiny = std::string(GLM_SOURCE_DIR) + "/tests/golden/tiny";

class TinyModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    auto store = test::OpenGoldenModel(dir_->File("tiny.gguf"));
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(store).value().release();
  }
  static void TearDownTestSuite() {
    delete store_;
    delete dir_;
  }

  static std::unique_ptr<GenerationSession> Session(const GenerationOptions& o) {
    auto s = GenerationSession::Create(*store_, o);
    GLM_CHECK_MSG(s.ok(), "%s", s.status().message().c_str());
    return std::move(s).value();
  }

  // What glm-generate's vocabulary filter would ban on this model: the ids from [MASK] up,
  // except eop (eos is 2).
  static std::vector<int32_t> NonText() {
    std::vector<int32_t> ids;
    for (int32_t i = store_->config().tokens.mask; i < store_->config().vocab; ++i) {
      if (i != store_->config().tokens.eop) ids.push_back(i);
    }
    return ids;
  }

  static test::TempDir* dir_;
  static MmapStore* store_;
};
test::TempDir* TinyModel::dir_ = nullptr;
MmapStore* TinyModel::store_ = nullptr;

std::vector<int32_t> ParseIds(const std::string& s) {
  std::vector<int32_t> ids;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) ids.push_back(std::stoi(item));
  }
  return ids;
}

struct GreedyCase {
  std::string name;
  MaskMode mode = MaskMode::kGMask;
  int out_seq_length = 0;
  std::vector<int32_t> input;
  struct Variant {
    std::vector<std::vector<int32_t>> rounds;  // generated tokens per blank (with the end token)
    std::vector<int32_t> output;
    bool error = false;  // a blank generated [sop] before another blank: no valid layout
  };
  std::map<std::string, Variant> variants;
};

std::vector<GreedyCase> LoadGreedy() {
  std::ifstream in(kTiny + "/greedy.txt");
  GLM_CHECK_MSG(in.good(), "missing %s/greedy.txt", kTiny.c_str());
  std::vector<GreedyCase> cases;
  std::string line, variant;
  while (std::getline(in, line)) {
    std::stringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "case") {
      GreedyCase c;
      std::string mode, k2;
      ls >> c.name >> k2 >> mode >> k2 >> c.out_seq_length;
      c.mode = mode == "MASK"    ? MaskMode::kMask
               : mode == "sMASK" ? MaskMode::kSMask
                                 : MaskMode::kGMask;
      cases.push_back(c);
    } else if (key == "input") {
      std::string ids;
      ls >> ids;
      cases.back().input = ParseIds(ids);
    } else if (key == "greedy" || key == "ngram2") {
      variant = key;
      cases.back().variants[variant] = {};
    } else if (key == "error") {
      cases.back().variants[variant].error = true;
    } else if (key == "round" || key == "output") {
      std::string ids;
      ls >> ids;
      auto& v = cases.back().variants[variant];
      if (key == "round") {
        v.rounds.push_back(ParseIds(ids));
      } else {
        v.output = ParseIds(ids);
      }
    }
  }
  return cases;
}

// Greedy blank filling equals the reference's step-by-step argmax (full recomputation in
// PyTorch at every step), for every mask type, several blanks, positions past 300 and a blank
// with no room: BaseStrategy with top-k 1, and one-beam deterministic beam search with bigram
// bans (where the small logits decide, so positions and masks matter).
TEST_F(TinyModel, GreedyEqualsTheReferenceStepByStep) {
  const std::vector<GreedyCase> cases = LoadGreedy();
  ASSERT_EQ(cases.size(), 6u);
  const int32_t eop = store_->config().tokens.eop, eos = store_->config().tokens.eos;
  for (const GreedyCase& c : cases) {
    for (const auto& [name, want] : c.variants) {
      SCOPED_TRACE(c.name + " " + name);
      GenerationOptions o{.out_seq_length = c.out_seq_length};
      if (name == "greedy") {
        o.base.top_k = 1;
      } else {
        o.strategy = Strategy::kBeamSearch;
        o.beam = {.num_beams = 1, .no_repeat_ngram_size = 2, .deterministic = true};
        o.banned_ids = NonText();
      }
      auto session = Session(o);
      std::vector<std::vector<int32_t>> streamed;
      GenerationCallbacks cb;
      cb.on_blank = [&](size_t, int blank, int64_t) { streamed.resize(blank + 1); };
      cb.on_token = [&](size_t, int blank, int32_t t) { streamed[blank].push_back(t); };
      QueryResult r;
      cb.on_done = [&](size_t, QueryResult& res) { r = std::move(res); };
      const Query q{.ids = c.input, .mode = c.mode, .seed = 1};
      ASSERT_TRUE(session->Run(std::span(&q, 1), cb).ok());
      if (want.error) {
        // The reference's own splice breaks here too (bog = the first [sop]); we refuse.
        EXPECT_NE(r.status.message().find("well-defined layout"), std::string::npos)
            << r.status.message();
        ASSERT_EQ(streamed.size(), want.rounds.size());
        for (size_t i = 0; i < want.rounds.size(); ++i) EXPECT_EQ(streamed[i], want.rounds[i]);
        continue;
      }
      ASSERT_TRUE(r.status.ok()) << r.status.message();
      ASSERT_EQ(r.outputs.size(), 1u);
      EXPECT_EQ(r.outputs[0].ids, want.output);
      EXPECT_EQ(r.blanks, int(want.rounds.size()));
      int64_t steps = 0;
      std::vector<std::vector<int32_t>> spans;
      for (auto g : want.rounds) {
        steps += int64_t(g.size());
        if (!g.empty() && (g.back() == eop || g.back() == eos)) g.pop_back();
        spans.push_back(g);
      }
      EXPECT_EQ(r.generated_tokens, steps);
      if (name == "greedy") {
        EXPECT_EQ(streamed, spans);
      }
      // The spans point at each blank's tokens in the final sequence.
      ASSERT_EQ(r.outputs[0].spans.size(), spans.size());
      for (size_t i = 0; i < spans.size(); ++i) {
        auto [b, e] = r.outputs[0].spans[i];
        EXPECT_EQ(std::vector<int32_t>(r.outputs[0].ids.begin() + b, r.outputs[0].ids.begin() + e),
                  spans[i])
            << "blank " << i;
      }
      if (c.name == "no_room") {
        ASSERT_EQ(r.notes.size(), 1u);
        EXPECT_NE(r.notes[0].find("left empty"), std::string::npos);
      }
    }
  }
}

// Beam search through the session (KV caches of the beams reordered by copying) equals the same
// search fed with logits recomputed from scratch for every beam at every step, with the layout
// derived from the whole sequence: for each mask type.
TEST_F(TinyModel, BeamSearchWithCacheReorderEqualsRecompute) {
  const ModelConfig& cfg = store_->config();
  const SpecialTokens& t = cfg.tokens;
  const int nb = 3, out_len = 40;
  const std::vector<std::pair<MaskMode, std::vector<int32_t>>> prompts = {
      {MaskMode::kGMask, {17, 230, 41, 999, 8, 512, t.gmask}},
      {MaskMode::kMask, {17, 230, t.mask, 41, 999, 8, 512, t.eos}},
      {MaskMode::kSMask, {300, t.smask, 5, 6, 7, 8, 9, 10, t.eos}}};
  RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  for (const auto& [mode, ids] : prompts) {
    SCOPED_TRACE(MaskModeName(mode));
    GenerationOptions o{.strategy = Strategy::kBeamSearch, .out_seq_length = out_len};
    o.beam = {
        .num_beams = nb, .length_penalty = 1.0, .no_repeat_ngram_size = 3, .deterministic = true};
    auto session = Session(o);
    const Query q{.ids = ids, .mode = mode, .seed = 9};
    auto results = session->RunAll(std::span(&q, 1));
    ASSERT_TRUE(results.ok());
    const QueryResult& r = results.value()[0];
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    ASSERT_EQ(r.outputs.size(), size_t(nb));

    // The same search with full recomputation.
    BeamOptions bo = o.beam;
    bo.end_tokens = {t.eop, t.eos};
    BeamSearch bs(bo, {});
    std::vector<int32_t> context = ids;
    context.push_back(t.sop);
    bs.Start(context);
    SamplingScratch scratch = SamplingScratch::Allocate(cfg.vocab, nb);
    Rng rng(9);
    const int64_t max_gen = out_len - int64_t(context.size());
    for (int64_t step = 0; step < max_gen && !bs.done(); ++step) {
      std::vector<Half> logits(size_t(bs.live()) * cfg.vocab);
      for (int b = 0; b < bs.live(); ++b) {
        std::vector<int32_t> full = context;
        if (step > 0) full.insert(full.end(), bs.generated(b).begin(), bs.generated(b).end());
        auto layout = DeriveLayout(full, t).value();
        KvCache kv = KvCache::Allocate(cfg, int64_t(full.size()));
        Activations act = Activations::Allocate(cfg, int64_t(full.size()), int64_t(full.size()));
        ForwardArgs args{
            .ids = full, .positions = layout.positions, .prefix_len = layout.prefix_len};
        ASSERT_TRUE(Forward(*store_, rope, kv, act, args, logits.data() + b * cfg.vocab).ok());
      }
      bs.Step(logits, cfg.vocab, rng, scratch);
    }
    std::vector<Hypothesis> hyps = bs.Finish();
    ASSERT_EQ(hyps.size(), size_t(nb));
    const int32_t mask_id = mode == MaskMode::kMask    ? t.mask
                            : mode == MaskMode::kSMask ? t.smask
                                                       : t.gmask;
    const int64_t mp = std::find(ids.begin(), ids.end(), mask_id) - ids.begin();
    for (int i = 0; i < nb; ++i) {
      std::vector<int32_t> g = hyps[i].generated;
      if (!g.empty() && (g.back() == t.eop || g.back() == t.eos)) g.pop_back();
      std::vector<int32_t> want(ids.begin(), ids.begin() + mp);
      want.insert(want.end(), g.begin(), g.end());
      want.insert(want.end(), ids.begin() + mp + 1, ids.end());
      if (!want.empty() && want.back() == t.eos) want.pop_back();
      EXPECT_EQ(r.outputs[i].ids, want) << "beam " << i;
      EXPECT_EQ(r.outputs[i].score, hyps[i].penalized) << "beam " << i;
    }
  }
}

// A batch gives every query exactly what it gets alone (each query has its own random stream
// and ForwardBatch shares only the weights), also when the batch is smaller than the number of
// queries and finished queries hand their place to the next one mid-run.
TEST_F(TinyModel, BatchEqualsSingleRuns) {
  const SpecialTokens& t = store_->config().tokens;
  std::vector<Query> qs;
  for (const GreedyCase& c : LoadGreedy()) {
    if (c.name != "gmask_long") qs.push_back({.ids = c.input, .mode = c.mode});
  }
  qs.push_back({.ids = {5, 6, t.mask, 7, t.mask, 8, t.mask, t.eos}, .mode = MaskMode::kMask});
  qs.push_back({.ids = {5, 9999}, .mode = MaskMode::kGMask});  // an error in the middle
  qs.push_back({.ids = {44, 45, 46, 47, 48, 49, 50, t.gmask}, .mode = MaskMode::kGMask});
  for (size_t i = 0; i < qs.size(); ++i) qs[i].seed = MixSeed(77, i);

  GenerationOptions sampling{.out_seq_length = 48};
  sampling.base = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f};
  GenerationOptions beams{
      .strategy = Strategy::kBeamSearch, .min_gen_length = 3, .out_seq_length = 48};
  beams.beam = {.num_beams = 3, .length_penalty = 1.0, .no_repeat_ngram_size = 3};
  for (const GenerationOptions& base : {sampling, beams}) {
    SCOPED_TRACE(base.strategy == Strategy::kBase ? "BaseStrategy" : "BeamSearchStrategy");
    std::vector<QueryResult> single;
    auto one = Session(base);
    for (const Query& q : qs) single.push_back(std::move(one->RunAll(std::span(&q, 1)).value()[0]));
    EXPECT_FALSE(single[qs.size() - 2].status.ok());
    for (int batch : {int(qs.size()), 3}) {
      SCOPED_TRACE(StrFormat("batch %d", batch));
      GenerationOptions o = base;
      o.max_batch = batch;
      auto results = Session(o)->RunAll(qs);
      ASSERT_TRUE(results.ok());
      for (size_t i = 0; i < qs.size(); ++i) {
        const QueryResult& a = single[i];
        const QueryResult& b = results.value()[i];
        EXPECT_EQ(a.status.message(), b.status.message()) << i;
        ASSERT_EQ(a.outputs.size(), b.outputs.size()) << i;
        for (size_t j = 0; j < a.outputs.size(); ++j) {
          EXPECT_EQ(a.outputs[j].ids, b.outputs[j].ids) << "query " << i << " output " << j;
          EXPECT_EQ(a.outputs[j].spans, b.outputs[j].spans) << "query " << i << " output " << j;
        }
        EXPECT_EQ(a.generated_tokens, b.generated_tokens) << i;
      }
    }
  }
}

TEST_F(TinyModel, MinGenLengthHoldsForBothStrategies) {
  const SpecialTokens& t = store_->config().tokens;
  // Ban everything but the end tokens and one id: without min_gen_length a blank would end at
  // once; with it, exactly 4 tokens come first.
  std::vector<int32_t> banned;
  for (int32_t i = 0; i < store_->config().vocab; ++i) {
    if (i != t.eop && i != t.eos && i != 77) banned.push_back(i);
  }
  for (Strategy s : {Strategy::kBase, Strategy::kBeamSearch}) {
    GenerationOptions o{.strategy = s, .min_gen_length = 4, .out_seq_length = 64};
    o.banned_ids = banned;
    o.base.top_k = 0;
    const Query q{.ids = {10, 11, t.gmask}, .mode = MaskMode::kGMask, .seed = 3};
    auto r = Session(o)->RunAll(std::span(&q, 1));
    ASSERT_TRUE(r.ok());
    const FilledOutput& out = r.value()[0].outputs[0];
    ASSERT_EQ(out.spans.size(), 1u);
    EXPECT_GE(out.spans[0].second - out.spans[0].first, 4);
  }
}

TEST_F(TinyModel, BadQueriesAndOptionsAreErrorsNotCrashes) {
  const SpecialTokens& t = store_->config().tokens;
  std::vector<Query> qs = {{.ids = {}},
                           {.ids = {1, 2000, t.gmask}},
                           {.ids = std::vector<int32_t>(600, 7)},
                           {.ids = {8, 9, t.gmask}}};
  qs[2].ids.push_back(t.gmask);
  auto r = Session({.max_batch = 2})->RunAll(qs);
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r.value()[0].status.message().find("empty input"), std::string::npos);
  EXPECT_NE(r.value()[1].status.message().find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(r.value()[2].status.message().find("text too long"), std::string::npos);
  EXPECT_TRUE(r.value()[3].status.ok());
  EXPECT_EQ(r.value()[3].outputs.size(), 1u);

  EXPECT_FALSE(GenerationSession::Create(*store_, {.base = {.temperature = 0}}).ok());
  EXPECT_FALSE(GenerationSession::Create(*store_, {.base = {.top_k = -1}}).ok());
  EXPECT_FALSE(GenerationSession::Create(*store_, {.beam = {.num_beams = 0}}).ok());
  EXPECT_FALSE(GenerationSession::Create(*store_, {.out_seq_length = 0}).ok());
  EXPECT_FALSE(GenerationSession::Create(*store_, {.max_batch = 0}).ok());
}

// The engine a session runs on: its step checks, the shape a session needs of it, and a copied
// cache that continues exactly as its source (what beam search relies on).
TEST_F(TinyModel, EngineChecksStepsAndCopiesCaches) {
  const ModelConfig& cfg = store_->config();
  const SpecialTokens& t = cfg.tokens;
  const EngineShape shape{.caches = 2, .capacity = 16, .max_tokens = 16, .max_logit_rows = 2};
  auto engine = MakeCpuEngine(*store_, shape);
  const std::vector<int32_t> ids = {17, 230, 41, t.gmask, t.sop};
  const SequenceLayout layout = DeriveLayout(ids, t).value();
  const std::vector<int32_t>& pos = layout.positions;
  const int64_t prefix = layout.prefix_len;
  std::vector<Half> logits(2 * size_t(cfg.vocab));
  auto error = [&](std::vector<EngineStep> steps) {
    return engine->Forward(steps, logits.data()).message();
  };
  const EngineStep step{.cache = 0, .ids = ids, .positions = pos, .prefix_len = prefix};
  EngineStep other = step;
  other.cache = 2;
  EXPECT_NE(error({other}).find("does not exist"), std::string::npos);
  other.cache = -1;
  EXPECT_NE(error({other}).find("does not exist"), std::string::npos);
  EXPECT_NE(error({step, step}).find("used twice"), std::string::npos);
  other.cache = 1;
  EXPECT_NE(error({step, other, step}).find("3 sequences"), std::string::npos);
  EXPECT_NE(error({}).find("at least one"), std::string::npos);
  EXPECT_EQ(engine->Length(0), 0);

  // Prefill cache 0, copy it to 1, then the same next token on both: identical logits, and the
  // same as the source continued alone.
  ASSERT_TRUE(engine->Forward(std::vector<EngineStep>{step}, logits.data()).ok());
  EXPECT_EQ(engine->Length(0), int64_t(ids.size()));
  ASSERT_TRUE(engine->Copy(0, 1).ok());
  EXPECT_EQ(engine->Length(1), int64_t(ids.size()));
  EXPECT_FALSE(engine->Copy(0, 2).ok());
  const std::vector<int32_t> next = {99}, next_pos = {5};
  std::vector<EngineStep> both = {
      {.cache = 0, .ids = next, .positions = next_pos, .prefix_len = prefix},
      {.cache = 1, .ids = next, .positions = next_pos, .prefix_len = prefix}};
  ASSERT_TRUE(engine->Forward(both, logits.data()).ok());
  for (int64_t i = 0; i < cfg.vocab; ++i) {
    ASSERT_EQ(logits[i].bits, logits[cfg.vocab + i].bits) << "logit " << i;
  }
  std::vector<Half> alone(cfg.vocab);
  auto fresh = MakeCpuEngine(*store_, shape);
  ASSERT_TRUE(fresh->Forward(std::vector<EngineStep>{step}, alone.data()).ok());
  both.resize(1);
  ASSERT_TRUE(fresh->Forward(both, alone.data()).ok());
  for (int64_t i = 0; i < cfg.vocab; ++i) ASSERT_EQ(alone[i].bits, logits[i].bits) << i;
  engine->Reset(1);
  EXPECT_EQ(engine->Length(1), 0);

  // A session refuses an engine smaller than it needs, naming both shapes.
  auto small = GenerationSession::Create(MakeCpuEngine(*store_, shape), {.out_seq_length = 32});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("the session needs"), std::string::npos)
      << small.status().message();
  auto fits = GenerationSession::Create(MakeCpuEngine(*store_, shape), {.out_seq_length = 16});
  EXPECT_TRUE(fits.ok()) << fits.status().message();
}

}  // namespace
}  // namespace glm
