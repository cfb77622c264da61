// The forward loop (spec §1.2-1.3). Reads like the reference's layer_forward: one plain loop.
#include "runtime/model.h"

#include <algorithm>

namespace glm {

KvCache KvCache::Allocate(const ModelConfig& cfg, int64_t capacity) {
  KvCache kv;
  kv.capacity = capacity;
  kv.layer_halves = KvLayerHalves(capacity, cfg.num_heads, cfg.head_dim);
  const size_t n = size_t(cfg.num_layers) * kv.layer_halves;
  kv.k.resize(n);
  kv.v.resize(n);
  return kv;
}

Activations Activations::Allocate(const ModelConfig& cfg, int64_t max_tokens, int64_t max_keys) {
  Activations a;
  const int64_t T = max_tokens, C = cfg.hidden, F = cfg.inner, HD = cfg.num_heads * cfg.head_dim;
  a.max_tokens = T;
  for (auto* v : {&a.x, &a.y, &a.attn, &a.h, &a.z, &a.down}) v->resize(T * C);
  a.qkv.resize(T * 3 * HD);
  a.ctx.resize(T * HD);
  a.up.resize(T * 2 * F);
  a.gated.resize(T * F);
  a.f32.resize(T * std::max({C, F, HD}));
  a.attn_scratch.resize(AttentionScratchFloats(max_keys));
  a.ids.resize(T);
  a.positions.resize(T);
  return a;
}

namespace {

// One GLM layer on the N tokens of a step (spec §1.3). Each sequence's new keys/values go to its
// cache before its attention so that bidirectional prefix rows see each other.
void Layer(const ModelConfig& cfg, int l, const LayerWeights& w, const RotaryTable& rope,
           std::span<const SeqStep> seqs, Activations& a, int64_t N, const TapFn* tap_fn) {
  const int64_t C = cfg.hidden, F = cfg.inner, H = cfg.num_heads, D = cfg.head_dim, HD = H * D;
  const float alpha = cfg.Alpha();
  auto tap = [&](const char* name, const std::vector<Half>& t, int64_t cols) {
    if (tap_fn) (*tap_fn)(StrFormat("l%d.%s", l, name), t.data(), cols);
  };

  LayerNorm(a.x.data(), N, C, w.attn_norm_w.f16(), w.attn_norm_b.f16(), cfg.layernorm_eps,
            a.y.data());  // y = LN_in(x)
  tap("attn_norm", a.y, C);
  Linear(a.y.data(), N, w.qkv, w.qkv_b.f16(), a.qkv.data(), a.f32.data());  // [N, H, 3D]
  tap("qkv", a.qkv, 3 * HD);
  ApplyRotary(a.qkv.data(), N, int(H), int(D), a.positions.data(), rope);
  tap("qkv_rot", a.qkv, 3 * HD);
  int64_t row = 0;
  for (const SeqStep& s : seqs) {
    const int64_t T = int64_t(s.ids.size());
    Half* kc = s.kv->K(l);
    Half* vc = s.kv->V(l);
    AppendKv(a.qkv.data() + row * 3 * HD, T, int(H), int(D), s.kv->length, s.kv->capacity, kc, vc);
    Attention(a.qkv.data() + row * 3 * HD, T, s.kv->length, int(H), int(D), kc, vc, s.kv->capacity,
              s.prefix_len, l, a.ctx.data() + row * HD, a.attn_scratch.data());
    row += T;
  }
  tap("ctx", a.ctx, HD);
  Linear(a.ctx.data(), N, w.dense, w.dense_b.f16(), a.attn.data(), a.f32.data());
  tap("attn_out", a.attn, C);
  DeepNormResidual(a.y.data(), a.attn.data(), alpha, N * C, a.h.data());  // h = y·α + attn
  tap("h", a.h, C);
  LayerNorm(a.h.data(), N, C, w.ffn_norm_w.f16(), w.ffn_norm_b.f16(), cfg.layernorm_eps,
            a.z.data());  // z = LN_post(h)
  tap("ffn_norm", a.z, C);
  Linear(a.z.data(), N, w.up, w.up_b.f16(), a.up.data(), a.f32.data());  // [N, 2F]
  tap("up", a.up, 2 * F);
  GeGlu(a.up.data(), N, F, a.gated.data());
  tap("gated", a.gated, F);
  Linear(a.gated.data(), N, w.down, w.down_b.f16(), a.down.data(), a.f32.data());
  tap("down", a.down, C);
  DeepNormResidual(a.z.data(), a.down.data(), alpha, N * C, a.x.data());  // x = z·α + mlp
  tap("out", a.x, C);
}

}  // namespace

Status CheckSeqStep(std::span<const int32_t> ids, std::span<const int32_t> positions,
                    int64_t kv_length, int64_t kv_capacity, int64_t prefix_len, int64_t max_seq,
                    int64_t vocab) {
  const int64_t T = int64_t(ids.size());
  if (T == 0) return Errorf("a sequence of the step has no tokens");
  if (int64_t(positions.size()) != T) {
    return Errorf("%lld ids but %lld positions", (long long)T, (long long)positions.size());
  }
  if (kv_length + T > kv_capacity) {
    return Errorf("sequence of %lld tokens exceeds the KV cache capacity %lld",
                  (long long)(kv_length + T), (long long)kv_capacity);
  }
  if (prefix_len > kv_length + T) {
    return Errorf(
        "the first step of a sequence must include its whole bidirectional prefix "
        "(%lld tokens), got %lld",
        (long long)prefix_len, (long long)(kv_length + T));
  }
  for (int32_t p : positions) {
    if (p < 0 || p >= max_seq) {
      return Errorf("position %d is outside [0, %lld) (max sequence length)", p,
                    (long long)max_seq);
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return Errorf("token id %d at index %lld is outside the vocabulary [0, %lld)", ids[t],
                    (long long)t, (long long)vocab);
    }
  }
  return Status::Ok();
}

Status ForwardBatch(WeightStore& store, const RotaryTable& rope, std::span<const SeqStep> seqs,
                    Activations& act, Half* logits, const TapFn* tap) {
  const ModelConfig& cfg = store.config();
  const int64_t C = cfg.hidden;
  ASSIGN_OR_RETURN(const StepSize size, CheckSteps(seqs, rope.max_seq, cfg.vocab, act.max_tokens));
  const int64_t N = size.tokens, rows = size.logit_rows;
  int64_t off = 0;
  for (const SeqStep& s : seqs) {
    std::copy(s.ids.begin(), s.ids.end(), act.ids.begin() + off);
    std::copy(s.positions.begin(), s.positions.end(), act.positions.begin() + off);
    off += int64_t(s.ids.size());
  }
  const GlobalWeights& g = store.globals();
  RETURN_IF_ERROR(Embedding(g.embedding, act.ids.data(), N, act.x.data()));
  if (tap) (*tap)("embed", act.x.data(), C);

  for (int l = 0; l < cfg.num_layers; ++l) {
    ASSIGN_OR_RETURN(const LayerWeights* w, store.Acquire(l));
    Layer(cfg, l, *w, rope, seqs, act, N, tap);
    store.Release(l);
  }

  // Final LayerNorm, then logits through the tied embedding (§1.10), for the rows asked for.
  int64_t src = 0, dst = 0;
  for (const SeqStep& s : seqs) {
    const int64_t T = int64_t(s.ids.size());
    s.kv->length += T;
    const int64_t first = s.all_logits ? 0 : T - 1;
    std::copy(act.x.begin() + (src + first) * C, act.x.begin() + (src + T) * C,
              act.h.begin() + dst * C);
    dst += T - first;
    src += T;
  }
  LayerNorm(act.h.data(), rows, C, g.final_norm_w.f16(), g.final_norm_b.f16(), cfg.layernorm_eps,
            act.y.data());
  if (tap) (*tap)("final_norm", act.y.data(), C);
  Linear(act.y.data(), rows, g.embedding, nullptr, logits, act.f32.data());
  return Status::Ok();
}

Status Forward(WeightStore& store, const RotaryTable& rope, KvCache& kv, Activations& act,
               const ForwardArgs& args, Half* logits) {
  const SeqStep step{.kv = &kv,
                     .ids = args.ids,
                     .positions = args.positions,
                     .prefix_len = args.prefix_len,
                     .all_logits = args.all_logits};
  return ForwardBatch(store, rope, std::span(&step, 1), act, logits, args.tap);
}

}  // namespace glm
