// The reference's decoding strategies (spec §5.2-5.3, GLM-130B generation/strategies.py with SAT
// 0.2.12's top_k_logits): BaseStrategy (temperature, top-k, top-p on fp16 logits, then one draw)
// and BeamSearchStrategy (cumulative log-probabilities, sampled or top-k candidates, end beams
// ranked with the OpenNMT length penalty, n-gram bans, minimum length). One object per sequence
// (a batch row), so batch > 1 works for both; they see fp16 logits rows and return token choices,
// and never touch the model.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/check.h"
#include "runtime/fp16.h"

namespace glm {

// The value the reference writes into filtered logits (fp16's lowest finite value).
inline constexpr float kFilterValue = -65504.0f;

// xoshiro256** seeded through splitmix64: the same stream on every platform, unlike the
// standard library's distributions. All randomness of a generation comes from one of these.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  double Uniform();      // [0, 1), 53 random bits
  double Exponential();  // Exp(1): -log(1 - U), finite

 private:
  uint64_t s_[4];
};

// Mixes a user seed with a stream index (query number), so that every query has its own
// reproducible stream whatever the batch it runs in.
uint64_t MixSeed(uint64_t seed, uint64_t stream);

struct BaseOptions {
  float temperature = 1.0f;  // > 0
  int top_k = 0;             // 0: off; k >= V: off
  float top_p = 0.0f;        // 0: off
};

// Scratch buffers for one vocabulary row; sized once, reused every step.
struct SamplingScratch {
  std::vector<float> f;       // [max(V, nb*V)]
  std::vector<float> g;       // [max(V, nb*V)]
  std::vector<int32_t> idx;   // [max(V, nb*V)]
  std::vector<Half> h;        // [V]
  std::vector<int32_t> buckets;  // [65536] counting sort by fp16 bit pattern
  static SamplingScratch Allocate(int64_t vocab, int num_beams);
};

// BaseStrategy steps 1-3 on one fp16 row, written to `out` (fp16, like the reference's tensor):
//   x = fp16(x * (1.0f / float(temperature)))   (CUDA divides by a scalar through its inverse)
//   x[banned] = -65504
//   top-k: x < (k-th largest x) -> -65504        (ties with the k-th value are kept)
//   top-p: sort descending (stable: lower id first among equal values), p = fp16(softmax) with an
//          fp32 sum, cum = sequential fp16 cumsum, remove where the previous cum > fp16(top_p)
//          (the first token is always kept) -> -65504.
void FilterLogits(std::span<const Half> logits, const BaseOptions& opt,
                  std::span<const int32_t> banned, SamplingScratch& scratch, std::span<Half> out);

// Step 4: probs = softmax(float(x)) and one draw. Like torch.multinomial(probs, 1) it takes
// argmax(p_i / E_i) with E_i ~ Exp(1), which draws i with probability p_i; zero-probability ids
// are never drawn. +inf logits (temperature overflow) share the probability equally.
int32_t SampleFromFiltered(std::span<const Half> filtered, Rng& rng, SamplingScratch& scratch);

// FilterLogits then SampleFromFiltered.
int32_t SampleBase(std::span<const Half> logits, const BaseOptions& opt,
                   std::span<const int32_t> banned, Rng& rng, SamplingScratch& scratch);

struct BeamOptions {
  int num_beams = 1;
  double length_penalty = 0.0;     // score / ((5 + len) / 6) ** length_penalty, len = whole beam
  int no_repeat_ngram_size = 0;    // 0 and 1: off (the reference's 1 bans nothing)
  int min_gen_length = 0;          // end tokens banned while fewer tokens were generated
  bool consider_end = true;        // at the end, unfinished beams join the ended ones
  bool deterministic = false;      // top-k candidates instead of sampled ones
  std::vector<int32_t> end_tokens{};  // eop, eos
};

// One finished (or, with consider_end, unfinished) hypothesis of a beam search.
struct Hypothesis {
  std::vector<int32_t> generated;  // tokens after [sop], with the end token when it ended
  float score = 0;                 // cumulative log-probability
  float penalized = 0;             // score / ((5 + len) / 6) ** length_penalty
};

// BeamSearchStrategy for one sequence. Start() with the context (up to and including [sop]);
// then per step Step() with one logits row per live beam; after each step the live beams are
// the children in score order, each with its parent among the previous live beams (the caller
// reorders its KV caches accordingly). Finish() returns the ended beams, best first.
class BeamSearch {
 public:
  BeamSearch(const BeamOptions& opts, std::span<const int32_t> banned);

  void Start(std::span<const int32_t> context);
  // logits: [live(), V] fp16. Candidates: (max(1, #end) + 1) * num_beams ids of the flattened
  // [live*V] distribution softmax(log_softmax(row) + beam score), drawn without replacement
  // (or the most likely ones with `deterministic`), visited in descending score: an end token
  // makes an ended beam, others continue until num_beams continue. At the first step only the
  // first row exists. Bans: banned ids, end tokens below min_gen_length, and n-grams already
  // generated by the beam (key: its last n-1 tokens, which may reach into the context).
  void Step(std::span<const Half> logits, int64_t vocab, Rng& rng, SamplingScratch& scratch);

  int live() const { return int(beams_.size()); }
  int parent(int b) const { return parents_[b]; }
  const std::vector<int32_t>& generated(int b) const { return beams_[b].generated; }
  float score(int b) const { return beams_[b].score; }
  int steps() const { return length_generated_; }
  // The reference's stop rule: num_beams ended beams, and the worst of them is at least the
  // best live score penalized at the next length.
  bool done() const { return done_; }
  // Ended beams, best first (at most num_beams); with consider_end the live beams of an
  // unfinished search are added first. Resets the search.
  std::vector<Hypothesis> Finish();

 private:
  struct Beam {
    std::vector<int32_t> generated;
    float score = 0;
  };
  void AddEnded(float score, std::vector<int32_t> generated);
  float Penalize(float score, int64_t length) const;
  void BanNgrams(const Beam& b, float* row) const;

  BeamOptions opts_;
  std::vector<int32_t> banned_;
  std::vector<int32_t> context_;
  std::vector<Beam> beams_, next_;
  std::vector<int> parents_;
  std::vector<Hypothesis> ended_;
  int length_generated_ = 0;
  bool done_ = false;
};

}  // namespace glm
