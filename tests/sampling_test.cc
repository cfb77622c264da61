// The reference's strategies (spec §5.2-5.3) on hand-made logits: fp16 temperature, top-k and
// top-p edges (the fp16 cumsum), draws, and beam search's ordering, length penalty, n-gram bans,
// minimum length, end tokens and stop rule.
#include "runtime/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace glm {
namespace {

std::vector<Half> H(std::initializer_list<float> v) {
  std::vector<Half> h;
  for (float x : v) h.push_back(FloatToHalf(x));
  return h;
}

std::vector<float> F(const std::vector<Half>& h) {
  std::vector<float> f;
  for (Half x : h) f.push_back(HalfToFloat(x));
  return f;
}

std::vector<float> Filter(const std::vector<Half>& logits, const BaseOptions& opt,
                          std::vector<int32_t> banned = {}) {
  SamplingScratch s = SamplingScratch::Allocate(int64_t(logits.size()), 1);
  std::vector<Half> out(logits.size());
  FilterLogits(logits, opt, banned, s, out);
  return F(out);
}

int Kept(const std::vector<float>& f) {
  return int(std::count_if(f.begin(), f.end(), [](float x) { return x != kFilterValue; }));
}

TEST(BaseStrategy, TemperatureDividesInFp16) {
  const std::vector<Half> x = H({3.140625f, -2.5f, 0.0f, 7.0f, -65504.0f});
  const std::vector<float> out = Filter(x, {.temperature = 0.7f});
  for (size_t i = 0; i < x.size(); ++i) {
    // x * (1.0f / float(T)) rounded to fp16, as CUDA divides a tensor by a scalar.
    EXPECT_EQ(out[i], RoundHalf(HalfToFloat(x[i]) * (1.0f / 0.7f))) << i;
  }
  // Small temperatures overflow fp16 to inf like the reference; the draw still picks the max.
  const std::vector<float> hot = Filter(H({1000.0f, 10.0f}), {.temperature = 0.01f});
  EXPECT_TRUE(std::isinf(hot[0]));
  SamplingScratch s = SamplingScratch::Allocate(2, 1);
  Rng rng(1);
  EXPECT_EQ(SampleBase(H({1000.0f, 10.0f}), {.temperature = 0.01f}, {}, rng, s), 0);
}

TEST(BaseStrategy, BannedIdsGetTheFilterValue) {
  const std::vector<float> out = Filter(H({1, 2, 3, 4}), {}, {1, 3, 99});
  EXPECT_EQ(out, (std::vector<float>{1, kFilterValue, 3, kFilterValue}));
}

TEST(BaseStrategy, TopKKeepsTiesWithTheKthValue) {
  const std::vector<Half> x = H({1, 5, 3, 3, 2, 3});
  EXPECT_EQ(Filter(x, {.top_k = 1}), (std::vector<float>{kFilterValue, 5, kFilterValue,
                                                         kFilterValue, kFilterValue, kFilterValue}));
  // The 2nd value is 3, shared by three ids: all of them stay (logits < kth are removed).
  EXPECT_EQ(Kept(Filter(x, {.top_k = 2})), 4);
  EXPECT_EQ(Kept(Filter(x, {.top_k = 5})), 5);
  EXPECT_EQ(Kept(Filter(x, {.top_k = 0})), 6);   // off
  EXPECT_EQ(Kept(Filter(x, {.top_k = 6})), 6);   // k = V
  EXPECT_EQ(Kept(Filter(x, {.top_k = 100})), 6);  // k > V: off (torch.topk would fail)
}

TEST(BaseStrategy, TopPAlwaysKeepsTheFirstToken) {
  const std::vector<Half> x = H({0, 4, 1, 4});
  // Ties sort by id: 1 before 3; the first is kept whatever top_p.
  EXPECT_EQ(Filter(x, {.top_p = 1e-4f}),
            (std::vector<float>{kFilterValue, 4, kFilterValue, kFilterValue}));
  // p = [0.0089, 0.4834, 0.0241, 0.4834]; sorted cum 0.4834, 0.9668, 0.9907, 1: a token goes
  // when the cum before it exceeds top_p.
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.5f})), 2);
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.96f})), 2);
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.97f})), 3);
}

// One logit 0 and 1000 logits -7: p = fp16(0.5230) and fp16(4.7696e-4). The fp16 cumsum adds
// one fp16 ulp (4.88e-4) per tiny token, more than the exact 4.77e-4, so it crosses 0.7 earlier:
// numpy.cumsum(float16) crosses after 365 tokens, exact arithmetic after 373.
TEST(BaseStrategy, TopPFollowsTheFp16Cumsum) {
  std::vector<Half> x(1001, FloatToHalf(-7.0f));
  x[0] = FloatToHalf(0.0f);
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.7f})), 365);
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.9f})), 774);  // exact: 792
}

// With logits -8.25 the tiny probabilities (2.07e-4) are below half an fp16 ulp of the running
// sum (0.793): the fp16 cumsum never moves past p0, never exceeds 0.9, and nothing is removed,
// where exact arithmetic would keep 519 tokens.
TEST(BaseStrategy, TopPFp16CumsumSaturates) {
  std::vector<Half> x(1001, FloatToHalf(-8.25f));
  x[0] = FloatToHalf(0.0f);
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.9f})), 1001);
  EXPECT_EQ(Kept(Filter(x, {.top_p = 0.7f})), 1);
}

TEST(BaseStrategy, TopKThenTopP) {
  const std::vector<Half> x = H({3, 2, 1, 0, -1});
  // top-k 3 leaves {3, 2, 1}; their softmax is [0.665, 0.245, 0.090]: 0.8 keeps two.
  EXPECT_EQ(Filter(x, {.top_k = 3, .top_p = 0.8f}),
            (std::vector<float>{3, 2, kFilterValue, kFilterValue, kFilterValue}));
}

TEST(BaseStrategy, DrawsFollowTheProbabilities) {
  // log2 spacing: p = [1/2, 1/4, 1/8, 1/8, 0].
  const float l2 = std::log(2.0f);
  std::vector<Half> x = H({3 * l2, 2 * l2, l2, l2, -65504.0f});
  SamplingScratch s = SamplingScratch::Allocate(5, 1);
  Rng rng(42);
  std::map<int, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[SampleBase(x, {}, {}, rng, s)];
  EXPECT_EQ(count[4], 0);  // zero probability: never
  const double want[] = {0.5, 0.25, 0.125, 0.125};
  for (int i = 0; i < 4; ++i) {
    // 5 standard deviations of a binomial proportion.
    EXPECT_NEAR(count[i] / double(n), want[i], 5 * std::sqrt(want[i] * (1 - want[i]) / n)) << i;
  }
}

TEST(BaseStrategy, TopK1IsArgmaxAndSeedsReproduce) {
  const std::vector<Half> x = H({0.5f, 2.0f, 1.999f, -3.0f});
  SamplingScratch s = SamplingScratch::Allocate(4, 1);
  Rng g(3);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleBase(x, {.top_k = 1}, {}, g, s), 1);
  Rng a(7), b(7), c(8);
  std::vector<int> da, db, dc;
  for (int i = 0; i < 64; ++i) {
    da.push_back(SampleBase(x, {}, {}, a, s));
    db.push_back(SampleBase(x, {}, {}, b, s));
    dc.push_back(SampleBase(x, {}, {}, c, s));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
  EXPECT_NE(MixSeed(1234, 0), MixSeed(1234, 1));
}

TEST(BaseStrategy, NanLogitsAreReportedNotSampled) {
  std::vector<Half> x(3, Half{0x7E00});  // NaN
  SamplingScratch s = SamplingScratch::Allocate(3, 1);
  Rng rng(1);
  EXPECT_EQ(SampleBase(x, {}, {}, rng, s), -1);
}

// ---------------------------------------------------------------------------------------------
// BeamSearchStrategy. V = 8, end tokens 6 (eop) and 7 (eos), context "1 5" (5 plays [sop]).

constexpr int64_t kV = 8;
const std::vector<int32_t> kContext = {1, 5};

BeamOptions Beams(int nb, double lp = 0.0) {
  return {.num_beams = nb, .length_penalty = lp, .deterministic = true, .end_tokens = {6, 7}};
}

// A logits row: `v` at the listed ids, -10 elsewhere.
std::vector<float> Row(std::initializer_list<std::pair<int, float>> v) {
  std::vector<float> r(kV, -10.0f);
  for (auto [i, x] : v) r[i] = x;
  return r;
}

void Step(BeamSearch& bs, const std::vector<std::vector<float>>& rows, uint64_t seed = 1) {
  std::vector<Half> h;
  for (const auto& r : rows) {
    for (float x : r) h.push_back(FloatToHalf(x));
  }
  SamplingScratch s = SamplingScratch::Allocate(kV, 4);
  Rng rng(seed);
  bs.Step(h, kV, rng, s);
}

double LogSoftmax(const std::vector<float>& row, int i) {
  double sum = 0;
  for (float x : row) sum += std::exp(double(RoundHalf(x)));
  return RoundHalf(row[i]) - std::log(sum);
}

TEST(BeamSearch, CandidatesInScoreOrderEndTokensEndBeams) {
  BeamSearch bs(Beams(2), {});
  bs.Start(kContext);
  const auto r = Row({{1, 3.0f}, {6, 2.5f}, {3, 2.0f}, {2, 1.0f}});
  Step(bs, {r});
  // Candidates 1, 6, 3, 2, ...: 1 continues, 6 ends a beam, 3 continues, then two live: stop.
  ASSERT_EQ(bs.live(), 2);
  EXPECT_EQ(bs.generated(0), std::vector<int32_t>{1});
  EXPECT_EQ(bs.generated(1), std::vector<int32_t>{3});
  EXPECT_EQ(bs.parent(0), 0);
  EXPECT_EQ(bs.parent(1), 0);
  EXPECT_NEAR(bs.score(0), LogSoftmax(r, 1), 1e-5);
  EXPECT_NEAR(bs.score(1), LogSoftmax(r, 3), 1e-5);
  EXPECT_FALSE(bs.done());  // one ended beam of two

  // Step 2: scores add up. Beam 0 (-0.75) is unsure (log p -2.08 for every token), beam 1
  // (-1.75) is sure of 4: its child comes first, with parent 1 (the caller copies caches by
  // these parents), then beam 0's children in id order (equal scores).
  const std::vector<float> r0(kV, 0.0f);
  const auto r1 = Row({{4, 5.0f}});
  Step(bs, {r0, r1});
  ASSERT_EQ(bs.live(), 2);
  EXPECT_EQ(bs.parent(0), 1);
  EXPECT_EQ(bs.parent(1), 0);
  EXPECT_EQ(bs.generated(0), (std::vector<int32_t>{3, 4}));
  EXPECT_EQ(bs.generated(1), (std::vector<int32_t>{1, 0}));
  EXPECT_NEAR(bs.score(0), LogSoftmax(r, 3) + LogSoftmax(r1, 4), 1e-5);
  EXPECT_NEAR(bs.score(1), LogSoftmax(r, 1) + LogSoftmax(r0, 0), 1e-5);
  EXPECT_FALSE(bs.done());

  // consider_end: the live beams join the ended one, best first, num_beams of them.
  std::vector<Hypothesis> h = bs.Finish();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].generated, std::vector<int32_t>{6});       // -1.25
  EXPECT_EQ(h[1].generated, (std::vector<int32_t>{3, 4}));  // -1.75; [1 0] at -2.83 is out
}

// score / ((5 + len) / 6) ** lp with len the whole beam (context + generated + end token): a
// longer beam with a lower raw score can rank first.
TEST(BeamSearch, LengthPenaltyUsesTheWholeBeamLength) {
  const double lp = 1.0;
  BeamSearch bs(Beams(2, lp), {});
  bs.Start(kContext);
  Step(bs, {Row({{6, 2.0f}, {2, 1.95f}, {3, 1.85f}})});  // [6] ends; [2], [3] live
  ASSERT_EQ(bs.live(), 2);
  Step(bs, {Row({{7, 10.0f}}), Row({{4, 10.0f}})});       // [2 7] ends
  EXPECT_TRUE(bs.done());  // two ended beams and no live beam can beat the worse one
  std::vector<Hypothesis> h = bs.Finish();
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].generated, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(h[1].generated, std::vector<int32_t>{6});
  EXPECT_LT(h[0].score, h[1].score);  // raw order is the other way round
  for (const Hypothesis& x : h) {
    const double len = double(kContext.size() + x.generated.size());
    EXPECT_FLOAT_EQ(x.penalized, x.score / std::pow((5.0 + len) / 6.0, lp));
  }
  // lp = 0: no penalty, raw order.
  BeamSearch flat(Beams(2, 0.0), {});
  flat.Start(kContext);
  Step(flat, {Row({{6, 2.0f}, {2, 1.95f}, {3, 1.85f}})});
  Step(flat, {Row({{7, 10.0f}}), Row({{4, 10.0f}})});
  h = flat.Finish();
  EXPECT_EQ(h[0].generated, std::vector<int32_t>{6});
  EXPECT_EQ(h[0].penalized, h[0].score);
}

TEST(BeamSearch, DoneOnlyWhenNoLiveBeamCanWin) {
  // One beam: the end token is the best candidate, so nothing live can beat it.
  BeamSearch a(Beams(1), {});
  a.Start(kContext);
  Step(a, {Row({{6, 3.0f}, {2, 1.0f}})});
  EXPECT_TRUE(a.done());
  EXPECT_EQ(a.Finish()[0].generated, std::vector<int32_t>{6});
  // The end token second: its beam ended, but the live one scores higher: go on.
  BeamSearch b(Beams(1), {});
  b.Start(kContext);
  Step(b, {Row({{2, 3.0f}, {6, 1.0f}})});
  EXPECT_FALSE(b.done());
  EXPECT_EQ(b.generated(0), std::vector<int32_t>{2});
}

TEST(BeamSearch, MinGenLengthBansEndTokens) {
  BeamOptions o = Beams(1);
  o.min_gen_length = 2;
  BeamSearch bs(o, {});
  bs.Start(kContext);
  const auto r = Row({{6, 5.0f}, {7, 4.0f}, {2, 1.0f}});
  for (int i = 0; i < 3 && !bs.done(); ++i) Step(bs, {r});
  EXPECT_EQ(bs.Finish()[0].generated, (std::vector<int32_t>{2, 2, 6}));
}

TEST(BeamSearch, BannedIdsAreNeverChosen) {
  BeamSearch bs(Beams(1), std::vector<int32_t>{2});
  bs.Start(kContext);
  Step(bs, {Row({{2, 5.0f}, {3, 1.0f}})});
  EXPECT_EQ(bs.generated(0), std::vector<int32_t>{3});
}

// Bigram bans: a token that already followed the current last token is banned (the reference's
// cached_beam_ngram_bans, recorded for generated tokens only).
TEST(BeamSearch, NoRepeatNgramBansRepeatedBigrams) {
  BeamOptions o = Beams(1);
  o.no_repeat_ngram_size = 2;
  BeamSearch bs(o, {});
  bs.Start(kContext);
  const auto r = Row({{2, 5.0f}, {3, 4.0f}, {0, 0.0f}, {1, 0.0f}, {4, 0.0f}, {5, 0.0f}});
  for (int i = 0; i < 5; ++i) Step(bs, {r});
  // 2; 2 (no "2 2" yet); 3 ("2 2" done); 2; then "2 2" and "2 3" are both banned: 0.
  EXPECT_EQ(bs.generated(0), (std::vector<int32_t>{2, 2, 3, 2, 0}));
}

// Trigram bans use the last two tokens as the key, which may reach into the context.
TEST(BeamSearch, NgramKeysReachIntoTheContext) {
  BeamOptions o = Beams(1);
  o.no_repeat_ngram_size = 3;
  BeamSearch bs(o, {});
  const std::vector<int32_t> context = {5, 2};
  bs.Start(context);
  const auto r = Row({{2, 5.0f}, {5, 4.5f}, {3, 4.0f}});
  for (int i = 0; i < 5; ++i) Step(bs, {r});
  // Bans are checked once the sequence is longer than 3. Step 5's key "5 2" was recorded with
  // the context's "5 2" -> 2 at step 1, so 2 is banned there.
  EXPECT_EQ(bs.generated(0), (std::vector<int32_t>{2, 2, 5, 2, 5}));
}

TEST(BeamSearch, NgramSizeOneBansNothingLikeTheReference) {
  BeamOptions o = Beams(1);
  o.no_repeat_ngram_size = 1;  // the reference's key tokens[-0:] is the whole beam: never matches
  BeamSearch bs(o, {});
  bs.Start(kContext);
  for (int i = 0; i < 4; ++i) Step(bs, {Row({{2, 5.0f}})});
  EXPECT_EQ(bs.generated(0), (std::vector<int32_t>{2, 2, 2, 2}));
}

TEST(BeamSearch, SampledCandidatesAreReproducibleAndFollowTheScores) {
  BeamOptions o = Beams(2);  // 6 candidates drawn from the 6 non-end ids of equal probability
  o.deterministic = false;
  auto run = [&](uint64_t seed) {
    BeamSearch bs(o, {});
    bs.Start(kContext);
    const auto r = Row({{0, 0.0f}, {1, 0.0f}, {2, 0.3f}, {3, 0.0f}, {4, 0.0f}, {5, 0.0f}});
    Step(bs, {r}, seed);
    std::vector<std::vector<int32_t>> g;
    for (int b = 0; b < bs.live(); ++b) {
      g.push_back(bs.generated(b));
      if (b > 0) {
        EXPECT_GE(bs.score(b - 1), bs.score(b));  // live beams in score order
      }
    }
    return g;
  };
  EXPECT_EQ(run(5), run(5));
  bool differs = false;
  for (uint64_t seed = 6; seed < 30 && !differs; ++seed) differs = run(seed) != run(5);
  EXPECT_TRUE(differs) << "sampled candidates never changed with the seed";
}

}  // namespace
}  // namespace glm
