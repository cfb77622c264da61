// BaseStrategy and BeamSearchStrategy (spec §5.2-5.3) with the reference's precision points.
#include "runtime/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace glm {
namespace {

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

const Half kFilterHalf = FloatToHalf(kFilterValue);

// Ascending order key of an fp16 value (NaN excluded by the callers; -0 sorts as +0).
inline uint32_t OrderKey(Half h) {
  uint32_t b = h.bits == 0x8000 ? 0 : h.bits;
  return (b & 0x8000u) ? (~b & 0xFFFFu) : (b | 0x8000u);
}

// Stable descending sort of the ids of `x` by value (ties: lower id first), by counting over
// the 65536 fp16 bit patterns: O(V) per step instead of a comparison sort.
void SortDescending(std::span<const Half> x, std::vector<int32_t>& buckets, int32_t* out) {
  std::fill(buckets.begin(), buckets.end(), 0);
  for (Half h : x) ++buckets[0xFFFFu - OrderKey(h)];
  int32_t start = 0;
  for (int32_t& b : buckets) {
    const int32_t n = b;
    b = start;
    start += n;
  }
  for (int32_t i = 0; i < int32_t(x.size()); ++i) out[buckets[0xFFFFu - OrderKey(x[i])]++] = i;
}

// Indices of the k largest values of v[0..n) (value descending, lower index first among
// equals), considering only entries with v > 0. Writes them to idx[0..) and returns how many.
int TopPositive(const float* v, int64_t n, int k, int32_t* idx) {
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] > 0) idx[m++] = int32_t(i);
  }
  const auto better = [v](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); };
  const int64_t kk = std::min<int64_t>(k, m);
  std::partial_sort(idx, idx + kk, idx + m, better);
  return int(kk);
}

}  // namespace

Rng::Rng(uint64_t seed) {
  uint64_t x = seed;
  for (uint64_t& s : s_) s = SplitMix64(x);
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

double Rng::Uniform() { return double(Next() >> 11) * 0x1.0p-53; }

double Rng::Exponential() { return -std::log1p(-Uniform()); }

uint64_t MixSeed(uint64_t seed, uint64_t stream) {
  uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ULL);
  SplitMix64(x);
  return SplitMix64(x);
}

SamplingScratch SamplingScratch::Allocate(int64_t vocab, int num_beams) {
  SamplingScratch s;
  const size_t n = size_t(vocab) * size_t(std::max(1, num_beams));
  s.f.resize(n);
  s.g.resize(n);
  s.idx.resize(n);
  s.h.resize(vocab);
  s.buckets.resize(65536);
  return s;
}

void FilterLogits(std::span<const Half> logits, const BaseOptions& opt,
                  std::span<const int32_t> banned, SamplingScratch& scratch, std::span<Half> out) {
  const int64_t V = int64_t(logits.size());
  GLM_CHECK(int64_t(out.size()) == V && int64_t(scratch.f.size()) >= V);
  const float inv_t = 1.0f / opt.temperature;
  for (int64_t i = 0; i < V; ++i) out[i] = FloatToHalf(HalfToFloat(logits[i]) * inv_t);
  for (int32_t id : banned) {
    if (id >= 0 && id < V) out[id] = kFilterHalf;
  }
  if (opt.top_k > 0 && opt.top_k < V) {
    float* f = scratch.f.data();
    for (int64_t i = 0; i < V; ++i) f[i] = HalfToFloat(out[i]);
    std::nth_element(f, f + opt.top_k - 1, f + V, std::greater<float>());
    const float kth = f[opt.top_k - 1];
    for (int64_t i = 0; i < V; ++i) {
      if (HalfToFloat(out[i]) < kth) out[i] = kFilterHalf;
    }
  }
  if (opt.top_p > 0.0f) {
    int32_t* order = scratch.idx.data();
    SortDescending(out, scratch.buckets, order);
    // F.softmax on the sorted fp16 row: fp32 internally (the sum is closer to the GPU's tree
    // reduction in double than in a sequential float), one rounding of each probability.
    const float mx = HalfToFloat(out[order[0]]);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(HalfToFloat(out[order[i]]) - mx));
    const float sum_f = float(sum);
    const float threshold = RoundHalf(opt.top_p);  // the comparison runs in fp16
    // torch.cumsum on an fp16 tensor rounds every partial sum to fp16; it never decreases, so
    // everything after the first position past the threshold is removed.
    float cum = 0;
    int64_t i = 0;
    for (; i < V; ++i) {
      const float p = RoundHalf(std::exp(HalfToFloat(out[order[i]]) - mx) / sum_f);
      cum = RoundHalf(cum + p);
      if (cum > threshold) break;
    }
    for (int64_t j = i + 1; j < V; ++j) out[order[j]] = kFilterHalf;
  }
}

int32_t SampleFromFiltered(std::span<const Half> filtered, Rng& rng, SamplingScratch& scratch) {
  const int64_t V = int64_t(filtered.size());
  float mx = -std::numeric_limits<float>::infinity();
  for (Half h : filtered) mx = std::max(mx, HalfToFloat(h));
  float* p = scratch.f.data();
  if (std::isinf(mx) && mx > 0) {
    for (int64_t i = 0; i < V; ++i) p[i] = HalfToFloat(filtered[i]) == mx ? 1.0f : 0.0f;
  } else {
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) {
      p[i] = std::exp(HalfToFloat(filtered[i]) - mx);
      sum += p[i];
    }
    const float sum_f = float(sum);
    for (int64_t i = 0; i < V; ++i) p[i] /= sum_f;
  }
  int32_t best = -1;
  double best_key = 0;
  for (int64_t i = 0; i < V; ++i) {
    if (!(p[i] > 0)) continue;  // also skips NaN
    const double key = double(p[i]) / rng.Exponential();
    if (best < 0 || key > best_key) {
      best = int32_t(i);
      best_key = key;
    }
  }
  return best;
}

int32_t SampleBase(std::span<const Half> logits, const BaseOptions& opt,
                   std::span<const int32_t> banned, Rng& rng, SamplingScratch& scratch) {
  std::span<Half> out(scratch.h.data(), logits.size());
  FilterLogits(logits, opt, banned, scratch, out);
  return SampleFromFiltered(out, rng, scratch);
}

BeamSearch::BeamSearch(const BeamOptions& opts, std::span<const int32_t> banned)
    : opts_(opts), banned_(banned.begin(), banned.end()) {
  GLM_CHECK(opts_.num_beams >= 1);
}

void BeamSearch::Start(std::span<const int32_t> context) {
  context_.assign(context.begin(), context.end());
  beams_.assign(1, Beam{});
  parents_.assign(1, 0);
  ended_.clear();
  length_generated_ = 0;
  done_ = false;
}

float BeamSearch::Penalize(float score, int64_t length) const {
  // Python: score / ((5.0 + len(beam)) / 6) ** lp, the divisor in double; a CUDA tensor divided
  // by a CPU scalar is multiplied by the scalar's fp32 reciprocal.
  const double d = std::pow((5.0 + double(length)) / 6.0, opts_.length_penalty);
  return score * (1.0f / float(d));
}

void BeamSearch::AddEnded(float score, std::vector<int32_t> generated) {
  const float pen = Penalize(score, int64_t(context_.size() + generated.size()));
  // The reference inserts before every ended beam whose score it reaches (ties: newest first).
  size_t i = ended_.size();
  while (i > 0 && !(pen < ended_[i - 1].penalized)) --i;
  ended_.insert(ended_.begin() + i, Hypothesis{std::move(generated), score, pen});
  if (int(ended_.size()) > opts_.num_beams) ended_.resize(opts_.num_beams);
}

void BeamSearch::BanNgrams(const Beam& b, float* row) const {
  const int n = opts_.no_repeat_ngram_size;
  const int64_t c = int64_t(context_.size()), S = c + int64_t(b.generated.size());
  auto at = [&](int64_t i) { return i < c ? context_[i] : b.generated[i - c]; };
  // A ban was recorded for each generated token j: key = the n-1 tokens before it.
  for (int64_t j = std::max<int64_t>(c, n - 1); j < S; ++j) {
    bool same = true;
    for (int t = 1; t < n && same; ++t) same = at(j - t) == at(S - t);
    if (same) row[at(j)] = kFilterValue;
  }
}

void BeamSearch::Step(std::span<const Half> logits, int64_t V, Rng& rng,
                      SamplingScratch& scratch) {
  const int m = live();
  GLM_CHECK(int64_t(logits.size()) == m * V && int64_t(scratch.f.size()) >= m * V);
  const int64_t seq_len = int64_t(context_.size()) + length_generated_;
  float* scores = scratch.f.data();
  for (int b = 0; b < m; ++b) {
    float* row = scores + b * V;
    for (int64_t i = 0; i < V; ++i) row[i] = HalfToFloat(logits[b * V + i]);
    for (int32_t id : banned_) {
      if (id >= 0 && id < V) row[id] = kFilterValue;
    }
    if (opts_.min_gen_length > length_generated_) {
      for (int32_t id : opts_.end_tokens) {
        if (id >= 0 && id < V) row[id] = kFilterValue;
      }
    }
    if (opts_.no_repeat_ngram_size > 1 && seq_len > opts_.no_repeat_ngram_size) {
      BanNgrams(beams_[b], row);
    }
    // log_softmax in fp32, plus the beam's cumulative score.
    float mx = row[0];
    for (int64_t i = 1; i < V; ++i) mx = std::max(mx, row[i]);
    double sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(double(row[i] - mx));
    const float log_sum = float(std::log(sum));
    const float prev = beams_[b].score;
    for (int64_t i = 0; i < V; ++i) row[i] = ((row[i] - mx) - log_sum) + prev;
  }
  // softmax over the flattened [m*V] scores: the candidate distribution.
  const int64_t n = m * V;
  float mx = scores[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, scores[i]);
  double sum = 0;
  float* probs = scratch.g.data();
  for (int64_t i = 0; i < n; ++i) {
    probs[i] = std::exp(scores[i] - mx);
    sum += probs[i];
  }
  const float sum_f = float(sum);
  for (int64_t i = 0; i < n; ++i) probs[i] /= sum_f;
  const int k = (std::max<int>(1, int(opts_.end_tokens.size())) + 1) * opts_.num_beams;
  if (!opts_.deterministic) {
    // torch.multinomial without replacement: the k largest p_i / E_i, E_i ~ Exp(1).
    for (int64_t i = 0; i < n; ++i) {
      if (probs[i] > 0) probs[i] = float(double(probs[i]) / rng.Exponential());
    }
  }
  int32_t* cand = scratch.idx.data();
  const int nc = TopPositive(probs, n, k, cand);
  std::stable_sort(cand, cand + nc, [scores](int32_t a, int32_t b) { return scores[a] > scores[b]; });

  next_.clear();
  parents_.clear();
  for (int c = 0; c < nc; ++c) {
    const int parent = int(cand[c] / V);
    const int32_t token = int32_t(cand[c] % V);
    const bool is_end = std::find(opts_.end_tokens.begin(), opts_.end_tokens.end(), token) !=
                        opts_.end_tokens.end();
    if (!done_ && is_end) {
      std::vector<int32_t> g = beams_[parent].generated;
      g.push_back(token);
      AddEnded(scores[cand[c]], std::move(g));
    } else if (int(next_.size()) < opts_.num_beams) {
      Beam child{beams_[parent].generated, scores[cand[c]]};
      child.generated.push_back(token);
      next_.push_back(std::move(child));
      parents_.push_back(parent);
    } else {
      break;
    }
  }
  beams_.swap(next_);
  ++length_generated_;
  if (beams_.empty()) {
    done_ = true;  // only when fewer than k ids had a non-zero probability
  } else if (int(ended_.size()) == opts_.num_beams) {
    float best = beams_[0].score;
    for (const Beam& b : beams_) best = std::max(best, b.score);
    if (ended_.back().penalized >= Penalize(best, seq_len + 1)) done_ = true;
  }
}

std::vector<Hypothesis> BeamSearch::Finish() {
  if (opts_.consider_end && !done_) {
    for (Beam& b : beams_) AddEnded(b.score, std::move(b.generated));
  }
  std::vector<Hypothesis> out = std::move(ended_);
  ended_.clear();
  beams_.clear();
  parents_.clear();
  length_generated_ = 0;
  done_ = false;
  return out;
}

}  // namespace glm
