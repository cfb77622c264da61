// Text generation as GLM-130B's generate.py does it (spec §4, §5): the input construction of
// fill_blanks, the blank-filling loop (one mask type per query, masks filled left to right, each
// generated span replacing its mask), and a session that runs many queries together through
// ForwardBatch (one weight pass per step for the whole batch) with BaseStrategy or
// BeamSearchStrategy, streaming tokens through a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/check.h"
#include "runtime/engine.h"
#include "runtime/layout.h"
#include "runtime/sampling.h"
#include "runtime/tokenizer.h"
#include "runtime/weights.h"

namespace glm {

// The context of one query as fill_blanks builds it, before [sop].
struct PromptInput {
  std::vector<int32_t> ids;  // text pieces and mask ids, [gMASK] if no mask, eos unless "MASK]" ends it
  MaskMode mode = MaskMode::kGMask;  // the mask type that is filled
  std::string text;          // the text as the reference echoes it (" [gMASK]" appended if added)
};

// generate.py: the mode is [MASK] if "[MASK]" occurs in the text, else [sMASK] if "[sMASK]"
// does, else [gMASK]; the text is split on \[[sg]?MASK\], each piece tokenized separately and
// the mask ids put between; [gMASK] is appended when the text has no mask, eos when the text
// does not end in "MASK]". Errors: an empty text, and "text too long" when the context and
// [sop] do not fit in max_seq tokens.
StatusOr<PromptInput> BuildInput(std::string_view text, const Tokenizer& tok, int max_seq);

enum class Strategy { kBase, kBeamSearch };

struct GenerationOptions {
  Strategy strategy = Strategy::kBase;
  BaseOptions base{};            // BaseStrategy: temperature, top-k, top-p
  BeamOptions beam{};            // BeamSearchStrategy (its end_tokens and min_gen_length are
                                 // filled in from the fields below)
  int min_gen_length = 0;        // both strategies (the reference's BaseStrategy ignores it)
  int out_seq_length = 256;      // per blank: context + [sop] + generated <= this
  std::vector<int32_t> banned_ids{};  // never generated (e.g. Tokenizer::NonTextIds)
  int max_batch = 1;             // queries in flight together
};

struct Query {
  std::vector<int32_t> ids{};        // context without [sop] (PromptInput::ids)
  MaskMode mode = MaskMode::kGMask;  // which mask type to fill
  uint64_t seed = 0;                 // its own random stream: results do not depend on batching
};

// One answer: the filled sequence and where the generated spans are in it.
struct FilledOutput {
  std::vector<int32_t> ids;  // every mask of the mode replaced by its span; one trailing eos removed
  std::vector<std::pair<int64_t, int64_t>> spans{};  // [begin, end) of each blank, left to right
  float score = 0;           // beam search: penalized score of the last blank's beam
};

struct QueryResult {
  Status status;                     // per-query errors (e.g. text too long); others still run
  std::vector<FilledOutput> outputs;  // 1 (BaseStrategy) or num_beams, best first
  int blanks = 0;                    // blanks filled
  int64_t prompt_tokens = 0;         // tokens prefilled, all blanks
  int64_t generated_tokens = 0;      // decode steps, all blanks (a step of all beams counts once)
  double seconds = 0;                // from the query's start to its end
  std::vector<std::string> notes;    // e.g. a blank left empty for lack of room
};

struct GenerationCallbacks {
  // A blank of query q starts (blank counts from 0); its mask is at `mask_position`.
  std::function<void(size_t q, int blank, int64_t mask_position)> on_blank;
  // BaseStrategy: a token was sampled for query q (end tokens are not reported).
  std::function<void(size_t q, int blank, int32_t token)> on_token;
  // Query q is complete (in completion order, which with batching is not input order).
  std::function<void(size_t q, QueryResult& result)> on_done;
};

// The options' own checks (temperature, top-k, beams, lengths, batch), made by Create; tools call
// it before loading a model so that a bad flag fails fast.
Status ValidateGenerationOptions(const GenerationOptions& opts);

// What a session needs of its engine: max_batch * beams caches of out_seq_length tokens (capped
// at the model's max_seq), steps of up to max_batch * max(capacity, beams) tokens and one logits
// row per cache.
EngineShape GenerationShape(const ModelConfig& cfg, const GenerationOptions& opts);

// Runs on an engine with the caches for max_batch queries (num_beams sequences each), and holds
// the sampling scratch; everything is allocated once.
class GenerationSession {
 public:
  // On the CPU, over `store` (which must outlive the session).
  static StatusOr<std::unique_ptr<GenerationSession>> Create(WeightStore& store,
                                                             const GenerationOptions& opts);
  // On any engine at least GenerationShape(engine->config(), opts) large.
  static StatusOr<std::unique_ptr<GenerationSession>> Create(std::unique_ptr<ForwardEngine> engine,
                                                             const GenerationOptions& opts);
  ~GenerationSession();

  // Runs the queries, max_batch at a time: a finished query's place goes to the next one at the
  // next step, so prefill and decode of different queries share steps. The returned Status is
  // for failures that stop everything (the weight store); per-query errors go to the results.
  Status Run(std::span<const Query> queries, const GenerationCallbacks& callbacks);
  // Run() collecting the results in input order.
  StatusOr<std::vector<QueryResult>> RunAll(std::span<const Query> queries);

  const GenerationOptions& options() const;
  int64_t capacity() const;  // tokens per sequence
  const ForwardEngine& engine() const;

 private:
  struct Impl;
  explicit GenerationSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// How an answer is shown. The spans are marked as generate.py does on a terminal: ANSI underline
// (green too for [MASK]/[sMASK]), each part detokenized on its own, with a space on either side
// of a span when the text is ASCII (is_english); `ansi` false gives the plain text, as in files.
struct RenderStyle {
  bool ansi = false;
  bool english = true;
  MaskMode mode = MaskMode::kGMask;
};
std::string RenderOutput(const Tokenizer& tok, const FilledOutput& out, const RenderStyle& style);

// The reference's isEnglish: the text is plain ASCII.
bool IsAscii(std::string_view text);

}  // namespace glm
