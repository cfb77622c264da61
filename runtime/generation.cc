// Input construction, the fill_blanks loop and the batched generation session (spec §5).
#include "runtime/generation.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace glm {
namespace {

int32_t MaskId(MaskMode m, const SpecialTokens& t) {
  switch (m) {
    case MaskMode::kMask: return t.mask;
    case MaskMode::kSMask: return t.smask;
    case MaskMode::kGMask: return t.gmask;
  }
  return t.gmask;
}

bool Contains(std::span<const int32_t> v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

bool IsAscii(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return (unsigned char)c < 0x80; });
}

StatusOr<PromptInput> BuildInput(std::string_view text, const Tokenizer& tok, int max_seq) {
  if (text.empty()) return Errorf("empty input");
  const SpecialTokens& t = tok.tokens();
  PromptInput in;
  in.text = std::string(text);
  const std::string& raw = in.text;
  if (raw.find("[MASK]") != std::string::npos) {
    in.mode = MaskMode::kMask;
  } else if (raw.find("[sMASK]") != std::string::npos) {
    in.mode = MaskMode::kSMask;
  }
  // re.split(r"\[[sg]?MASK\]"): the three literals cannot match at the same '[', so the
  // leftmost match is the earliest of the three.
  const struct {
    const char* s;
    int32_t id;
  } kMasks[] = {{"[MASK]", t.mask}, {"[sMASK]", t.smask}, {"[gMASK]", t.gmask}};
  size_t pos = 0;
  for (;;) {
    size_t best = std::string::npos, len = 0;
    int32_t id = -1;
    for (const auto& m : kMasks) {
      const size_t p = raw.find(m.s, pos);
      if (p < best) {
        best = p;
        len = std::string_view(m.s).size();
        id = m.id;
      }
    }
    if (best == std::string::npos) break;
    const auto piece = tok.Encode(std::string_view(raw).substr(pos, best - pos));
    in.ids.insert(in.ids.end(), piece.begin(), piece.end());
    in.ids.push_back(id);
    pos = best + len;
  }
  const auto tail = tok.Encode(std::string_view(raw).substr(pos));
  in.ids.insert(in.ids.end(), tail.begin(), tail.end());
  if (raw.find("MASK]") == std::string::npos) {
    in.ids.push_back(t.gmask);
    in.text += " [gMASK]";
  }
  if (!in.text.ends_with("MASK]")) in.ids.push_back(t.eos);
  if (int64_t(in.ids.size()) + 1 > max_seq) {
    return Errorf("text too long: %zu tokens and [sop] exceed the model's maximum sequence "
                  "length of %d", in.ids.size(), max_seq);
  }
  return in;
}

std::string RenderOutput(const Tokenizer& tok, const FilledOutput& out, const RenderStyle& style) {
  if (!style.ansi) return tok.Decode(out.ids);
  const bool g = style.mode == MaskMode::kGMask;
  const char* on = g ? "\033[4m" : "\x1b[0;32m\033[4m";
  const char* off = g ? "\033[0m" : "\033[0m\x1b[0m";
  const char* space = style.english ? " " : "";
  const std::span<const int32_t> ids(out.ids);
  std::string s;
  int64_t last = 0;
  for (auto [b, e] : out.spans) {
    if (b < last || e > int64_t(ids.size())) continue;  // nested (a span inside a span)
    s += tok.Decode(ids.subspan(last, b - last));
    s += space;
    s += on;
    s += tok.Decode(ids.subspan(b, e - b));
    s += off;
    s += space;
    last = e;
  }
  s += tok.Decode(ids.subspan(last));
  return s;
}

// ---------------------------------------------------------------------------------------------
// The session.

struct GenerationSession::Impl {
  std::unique_ptr<ForwardEngine> engine;  // caches [max_batch * beams]: slot i's are i*beams..
  GenerationOptions opts;
  ModelConfig cfg;
  int64_t cap = 0;   // tokens per sequence
  int beams = 1;     // sequences per query
  std::vector<Half> logits;     // [max_batch * beams, V]
  SamplingScratch scratch;
  std::vector<int32_t> end_tokens, banned_with_end;

  // One query in flight.
  struct Slot {
    bool active = false;
    size_t query = 0;
    Rng rng{0};
    MaskMode mode = MaskMode::kGMask;
    int32_t mask_id = 0;
    std::vector<int32_t> seq;                         // beam 0's filled sequence, no [sop]
    std::vector<std::pair<int64_t, int64_t>> spans;   // its filled blanks
    std::vector<FilledOutput> last;                   // the outputs of the last blank
    int blank = 0;
    // The current blank.
    int64_t mask_position = 0, ctx = 0, max_gen = 0, steps = 0;
    SequenceLayout layout;
    std::vector<int32_t> prefill;                     // seq + [sop]
    bool prefilling = false;
    std::vector<int32_t> gen;                         // BaseStrategy's tokens
    std::unique_ptr<BeamSearch> search;
    std::vector<int> cache_of;                        // live beam -> cache index
    std::vector<int32_t> feed_ids, feed_pos;          // per live beam: the next step's token
    QueryResult result;
    std::chrono::steady_clock::time_point start;
  };
  std::vector<Slot> slots;
  std::span<const Query> queries;
  const GenerationCallbacks* cb = nullptr;

  int64_t GenPosition(const Slot& s, int64_t index) const {
    // DeriveLayout's rule past [sop]: [gMASK] continues 0..T-1, [MASK]/[sMASK] repeat the
    // position of [sop], which is the mask's.
    return s.layout.mode == MaskMode::kGMask ? index : s.layout.positions[s.layout.sop_index];
  }

  void Complete(Slot& s) {
    s.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.start).count();
    s.active = false;
    if (cb->on_done) cb->on_done(s.query, s.result);
  }

  void Fail(Slot& s, Status st) {
    s.result.status = std::move(st);
    s.result.outputs.clear();
    Complete(s);
  }

  void StartQuery(Slot& s, size_t q) {
    const Query& query = queries[q];
    s = Slot{};
    s.active = true;
    s.query = q;
    s.start = std::chrono::steady_clock::now();
    s.rng = Rng(query.seed);
    s.mode = query.mode;
    s.mask_id = MaskId(query.mode, cfg.tokens);
    s.seq = query.ids;
    if (s.seq.empty()) return Fail(s, Errorf("empty input"));
    for (int32_t id : s.seq) {
      if (id < 0 || id >= cfg.vocab) {
        return Fail(s, Errorf("token id %d is outside the vocabulary [0, %d)", id, cfg.vocab));
      }
    }
    if (opts.strategy == Strategy::kBeamSearch) {
      BeamOptions bo = opts.beam;
      bo.end_tokens = end_tokens;
      bo.min_gen_length = opts.min_gen_length;
      s.search = std::make_unique<BeamSearch>(bo, opts.banned_ids);
    }
    s.last.assign(1, FilledOutput{.ids = s.seq});
    StartBlank(s);
  }

  // Begins the next blank of `s`, or completes the query when no mask of its type is left.
  void StartBlank(Slot& s) {
    const auto it = std::find(s.seq.begin(), s.seq.end(), s.mask_id);
    if (it == s.seq.end()) return FinishQuery(s);
    s.mask_position = it - s.seq.begin();
    s.ctx = int64_t(s.seq.size()) + 1;
    if (s.ctx > cfg.max_seq) {
      return Fail(s, Errorf("text too long: %lld tokens with [sop] exceed the model's maximum "
                            "sequence length of %d", (long long)s.ctx, cfg.max_seq));
    }
    s.max_gen = cap - s.ctx;
    s.steps = 0;
    s.gen.clear();
    if (s.max_gen <= 0) {
      if (cb->on_blank) cb->on_blank(s.query, s.blank, s.mask_position);
      // generate.py pads by out_seq_length - len(seq + [sop]) <= 0 and generates nothing.
      s.result.notes.push_back(StrFormat(
          "blank %d left empty: the sequence is %lld tokens with [sop], and --out-seq-length "
          "allows %lld", s.blank + 1, (long long)s.ctx, (long long)cap));
      std::vector<std::vector<int32_t>> empty(beams);
      return FinishBlank(s, empty, std::vector<float>(beams, 0.0f));
    }
    s.prefill = s.seq;
    s.prefill.push_back(cfg.tokens.sop);
    auto layout = DeriveLayout(s.prefill, cfg.tokens);
    if (!layout.ok()) return Fail(s, layout.status());
    s.layout = std::move(layout).value();
    // fill_blanks's own rule (context = seq, the mask type from the text, the first mask of that
    // type) must agree with the model's rule; they can only differ when an earlier span holds
    // generated [sop] or mask ids.
    if (s.layout.sop_index != s.ctx - 1 || s.layout.mode != s.mode ||
        (s.mode != MaskMode::kGMask && s.layout.mask_position != s.mask_position)) {
      return Fail(s, Errorf("blank %d: an earlier blank generated [sop] or mask tokens, so the "
                            "sequence no longer has a well-defined layout (ban them: they are "
                            "excluded when generating with a tokenizer)", s.blank + 1));
    }
    if (cb->on_blank) cb->on_blank(s.query, s.blank, s.mask_position);
    const int base = int(&s - slots.data()) * beams;
    s.cache_of.assign(1, base);
    engine->Reset(base);
    s.prefilling = true;
    if (s.search) s.search->Start(s.prefill);
  }

  // Splices the blank's generated spans (best first) into the sequence, as fill_blanks does.
  void FinishBlank(Slot& s, const std::vector<std::vector<int32_t>>& gens,
                   const std::vector<float>& scores) {
    const int64_t mp = s.mask_position;
    std::vector<FilledOutput> outs;
    for (size_t i = 0; i < gens.size(); ++i) {
      std::vector<int32_t> g = gens[i];
      if (!g.empty() && Contains(end_tokens, g.back())) g.pop_back();
      const int64_t L = int64_t(g.size());
      FilledOutput o;
      o.score = scores[i];
      o.ids.assign(s.seq.begin(), s.seq.begin() + mp);
      o.ids.insert(o.ids.end(), g.begin(), g.end());
      o.ids.insert(o.ids.end(), s.seq.begin() + mp + 1, s.seq.end());
      for (auto [b, e] : s.spans) {
        if (b > mp) {
          b += L - 1;
          e += L - 1;
        } else if (e > mp) {
          e += L - 1;
        }
        o.spans.push_back({b, e});
      }
      o.spans.push_back({mp, mp + L});
      std::sort(o.spans.begin(), o.spans.end());
      outs.push_back(std::move(o));
    }
    s.seq = outs[0].ids;
    s.spans = outs[0].spans;
    s.last = std::move(outs);
    ++s.blank;
    ++s.result.blanks;
    s.prefilling = false;
    StartBlank(s);
  }

  void FinishQuery(Slot& s) {
    for (FilledOutput& o : s.last) {
      if (!o.ids.empty() && o.ids.back() == cfg.tokens.eos) o.ids.pop_back();
      for (auto& [b, e] : o.spans) {
        b = std::min<int64_t>(b, int64_t(o.ids.size()));
        e = std::min<int64_t>(e, int64_t(o.ids.size()));
      }
    }
    s.result.outputs = std::move(s.last);
    Complete(s);
  }

  // Beam b's cache now holds its parent's tokens: a parent's first child keeps the parent's
  // cache, further children get a copy in a cache no child kept (there are exactly enough).
  Status ReorderCaches(Slot& s) {
    const BeamSearch& bs = *s.search;
    const int base = int(&s - slots.data()) * beams;
    std::vector<int> next(bs.live(), -1);
    std::vector<bool> kept(s.cache_of.size(), false), used(beams, false);
    for (int j = 0; j < bs.live(); ++j) {
      const int p = bs.parent(j);
      if (!kept[p]) {
        kept[p] = true;
        next[j] = s.cache_of[p];
        used[next[j] - base] = true;
      }
    }
    for (int j = 0; j < bs.live(); ++j) {
      if (next[j] >= 0) continue;
      int free = 0;
      while (used[free]) ++free;
      used[free] = true;
      next[j] = base + free;
      RETURN_IF_ERROR(engine->Copy(s.cache_of[bs.parent(j)], next[j]));
    }
    s.cache_of = std::move(next);
    return Status::Ok();
  }

  // Samples from the slot's logits rows; continues, finishes the blank or fails the query. The
  // returned Status is the engine's (a failed cache copy stops everything).
  Status Advance(Slot& s, const Half* rows) {
    const int64_t V = cfg.vocab;
    if (s.prefilling) s.result.prompt_tokens += int64_t(s.prefill.size());
    s.prefilling = false;
    ++s.steps;
    ++s.result.generated_tokens;
    if (!s.search) {
      const bool ban_end = s.steps - 1 < opts.min_gen_length;
      const int32_t token = SampleBase(std::span(rows, V), opts.base,
                                       ban_end ? banned_with_end : opts.banned_ids, s.rng, scratch);
      if (token < 0) {
        Fail(s, Errorf("the model produced NaN logits"));
        return Status::Ok();
      }
      const bool end = Contains(end_tokens, token);
      if (!end) {
        s.gen.push_back(token);
        if (cb->on_token) cb->on_token(s.query, s.blank, token);
      }
      if (end || s.steps >= s.max_gen) {
        FinishBlank(s, {s.gen}, {0.0f});
        return Status::Ok();
      }
      s.feed_ids.assign(1, token);
      s.feed_pos.assign(1, int32_t(GenPosition(s, s.ctx + s.steps - 1)));
      return Status::Ok();
    }
    BeamSearch& bs = *s.search;
    bs.Step(std::span(rows, size_t(bs.live()) * V), V, s.rng, scratch);
    if (bs.done() || s.steps >= s.max_gen || bs.live() == 0) {
      std::vector<Hypothesis> hyps = bs.Finish();
      if (hyps.empty()) {
        Fail(s, Errorf("beam search ended without a hypothesis"));
        return Status::Ok();
      }
      std::vector<std::vector<int32_t>> gens;
      std::vector<float> scores;
      for (Hypothesis& h : hyps) {
        gens.push_back(std::move(h.generated));
        scores.push_back(h.penalized);
      }
      FinishBlank(s, gens, scores);
      return Status::Ok();
    }
    RETURN_IF_ERROR(ReorderCaches(s));
    s.feed_ids.resize(bs.live());
    s.feed_pos.resize(bs.live());
    for (int j = 0; j < bs.live(); ++j) {
      s.feed_ids[j] = bs.generated(j).back();
      s.feed_pos[j] = int32_t(GenPosition(s, s.ctx + s.steps - 1));
    }
    return Status::Ok();
  }

  Status Run(std::span<const Query> qs, const GenerationCallbacks& callbacks) {
    queries = qs;
    cb = &callbacks;
    size_t next = 0;
    std::vector<EngineStep> steps;
    std::vector<std::pair<Slot*, int64_t>> rows;  // slot, its first logits row
    for (;;) {
      for (Slot& s : slots) {
        while (!s.active && next < qs.size()) StartQuery(s, next++);
      }
      steps.clear();
      rows.clear();
      int64_t row = 0;
      for (Slot& s : slots) {
        if (!s.active) continue;
        rows.push_back({&s, row});
        if (s.prefilling) {
          steps.push_back({.cache = s.cache_of[0],
                           .ids = s.prefill,
                           .positions = s.layout.positions,
                           .prefix_len = s.layout.prefix_len});
          row += 1;
        } else {
          for (size_t b = 0; b < s.cache_of.size(); ++b) {
            steps.push_back({.cache = s.cache_of[b],
                             .ids = std::span(&s.feed_ids[b], 1),
                             .positions = std::span(&s.feed_pos[b], 1),
                             .prefix_len = s.layout.prefix_len});
          }
          row += int64_t(s.cache_of.size());
        }
      }
      if (steps.empty()) return Status::Ok();
      RETURN_IF_ERROR(engine->Forward(steps, logits.data()));
      for (auto [s, r] : rows) RETURN_IF_ERROR(Advance(*s, logits.data() + r * cfg.vocab));
    }
  }
};

GenerationSession::GenerationSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GenerationSession::~GenerationSession() = default;

Status ValidateGenerationOptions(const GenerationOptions& opts) {
  const BaseOptions& b = opts.base;
  if (!(b.temperature > 0) || !std::isfinite(b.temperature)) {
    return Errorf("temperature must be > 0, got %g (top-k 1 gives greedy decoding)", b.temperature);
  }
  if (b.top_k < 0) return Errorf("top-k must be >= 0, got %d", b.top_k);
  if (!(b.top_p >= 0) || !std::isfinite(b.top_p)) return Errorf("top-p must be >= 0, got %g", b.top_p);
  if (opts.beam.num_beams < 1) return Errorf("num-beams must be >= 1, got %d", opts.beam.num_beams);
  if (!std::isfinite(opts.beam.length_penalty)) return Errorf("length-penalty must be finite");
  if (opts.beam.no_repeat_ngram_size < 0) {
    return Errorf("no-repeat-ngram-size must be >= 0, got %d", opts.beam.no_repeat_ngram_size);
  }
  if (opts.min_gen_length < 0) return Errorf("min-gen-length must be >= 0, got %d", opts.min_gen_length);
  if (opts.out_seq_length < 1) return Errorf("out-seq-length must be >= 1, got %d", opts.out_seq_length);
  if (opts.max_batch < 1) return Errorf("batch size must be >= 1, got %d", opts.max_batch);
  return Status::Ok();
}

EngineShape GenerationShape(const ModelConfig& cfg, const GenerationOptions& opts) {
  const int64_t cap = std::min<int64_t>(opts.out_seq_length, cfg.max_seq);
  const int64_t beams = opts.strategy == Strategy::kBeamSearch ? opts.beam.num_beams : 1;
  const int64_t seqs = int64_t(opts.max_batch) * beams;
  return {.caches = seqs,
          .capacity = cap,
          .max_tokens = opts.max_batch * std::max<int64_t>(cap, beams),
          .max_logit_rows = seqs};
}

StatusOr<std::unique_ptr<GenerationSession>> GenerationSession::Create(
    WeightStore& store, const GenerationOptions& opts) {
  RETURN_IF_ERROR(ValidateGenerationOptions(opts));
  return Create(MakeCpuEngine(store, GenerationShape(store.config(), opts)), opts);
}

StatusOr<std::unique_ptr<GenerationSession>> GenerationSession::Create(
    std::unique_ptr<ForwardEngine> engine, const GenerationOptions& opts) {
  RETURN_IF_ERROR(ValidateGenerationOptions(opts));
  GLM_CHECK(engine != nullptr);
  const EngineShape need = GenerationShape(engine->config(), opts), have = engine->shape();
  if (have.caches < need.caches || have.capacity < need.capacity ||
      have.max_tokens < need.max_tokens || have.max_logit_rows < need.max_logit_rows) {
    return Errorf(
        "the engine holds %lld caches of %lld tokens, %lld tokens and %lld logits rows "
        "a step; the session needs %lld, %lld, %lld and %lld",
        (long long)have.caches, (long long)have.capacity, (long long)have.max_tokens,
        (long long)have.max_logit_rows, (long long)need.caches, (long long)need.capacity,
        (long long)need.max_tokens, (long long)need.max_logit_rows);
  }
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.cfg = engine->config();
  m.engine = std::move(engine);
  m.opts = opts;
  m.cap = need.capacity;
  m.beams = int(need.caches / opts.max_batch);
  m.end_tokens = {m.cfg.tokens.eop, m.cfg.tokens.eos};
  m.banned_with_end = opts.banned_ids;
  m.banned_with_end.insert(m.banned_with_end.end(), m.end_tokens.begin(), m.end_tokens.end());
  m.logits.resize(size_t(need.caches) * m.cfg.vocab);
  m.scratch = SamplingScratch::Allocate(m.cfg.vocab, m.beams);
  m.slots.resize(opts.max_batch);
  return std::unique_ptr<GenerationSession>(new GenerationSession(std::move(impl)));
}

Status GenerationSession::Run(std::span<const Query> queries, const GenerationCallbacks& cb) {
  return impl_->Run(queries, cb);
}

StatusOr<std::vector<QueryResult>> GenerationSession::RunAll(std::span<const Query> queries) {
  std::vector<QueryResult> results(queries.size());
  GenerationCallbacks cb;
  cb.on_done = [&](size_t q, QueryResult& r) { results[q] = std::move(r); };
  RETURN_IF_ERROR(Run(queries, cb));
  return results;
}

const GenerationOptions& GenerationSession::options() const { return impl_->opts; }
int64_t GenerationSession::capacity() const { return impl_->cap; }
const ForwardEngine& GenerationSession::engine() const { return *impl_->engine; }

}  // namespace glm
