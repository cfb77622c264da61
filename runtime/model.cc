// The forward loop (spec §1.2-1.3). Reads like the reference's layer_forward: one plain loop.
#include "runtime/model.h"

#include <algorithm>

namespace glm {

KvCache KvCache::Allocate(const ModelConfig& cfg, int64_t capacity) {
  KvCache kv;
  kv.capacity = capacity;
  const size_t n = size_t(cfg.num_layers) * capacity * cfg.num_heads * cfg.head_dim;
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
  return a;
}

namespace {

// One GLM layer on T tokens (spec §1.3). Keys/values of the new tokens go to the cache first so
// that bidirectional prefix rows see each other.
void Layer(const ModelConfig& cfg, int l, const LayerWeights& w, const RotaryTable& rope,
           KvCache& kv, Activations& a, const ForwardArgs& args, int64_t T) {
  const int64_t C = cfg.hidden, F = cfg.inner, H = cfg.num_heads, D = cfg.head_dim, HD = H * D;
  const float alpha = cfg.Alpha();
  auto tap = [&](const char* name, const std::vector<Half>& t, int64_t cols) {
    if (args.tap) (*args.tap)(StrFormat("l%d.%s", l, name), t.data(), cols);
  };

  LayerNorm(a.x.data(), T, C, w.attn_norm_w.f16(), w.attn_norm_b.f16(), cfg.layernorm_eps,
            a.y.data());                                                   // y = LN_in(x)
  tap("attn_norm", a.y, C);
  Linear(a.y.data(), T, w.qkv, w.qkv_b.f16(), a.qkv.data(), a.f32.data());  // [T, H, 3D]
  tap("qkv", a.qkv, 3 * HD);
  ApplyRotary(a.qkv.data(), T, int(H), int(D), args.positions.data(), rope);
  tap("qkv_rot", a.qkv, 3 * HD);
  Half* kc = kv.K(l, HD);
  Half* vc = kv.V(l, HD);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      const Half* src = a.qkv.data() + (t * H + h) * 3 * D;
      std::copy(src + D, src + 2 * D, kc + (kv.length + t) * HD + h * D);
      std::copy(src + 2 * D, src + 3 * D, vc + (kv.length + t) * HD + h * D);
    }
  }
  Attention(a.qkv.data(), T, kv.length, int(H), int(D), kc, vc, args.prefix_len, l, a.ctx.data(),
            a.attn_scratch.data());
  tap("ctx", a.ctx, HD);
  Linear(a.ctx.data(), T, w.dense, w.dense_b.f16(), a.attn.data(), a.f32.data());
  tap("attn_out", a.attn, C);
  DeepNormResidual(a.y.data(), a.attn.data(), alpha, T * C, a.h.data());  // h = y·α + attn
  tap("h", a.h, C);
  LayerNorm(a.h.data(), T, C, w.ffn_norm_w.f16(), w.ffn_norm_b.f16(), cfg.layernorm_eps,
            a.z.data());                                                   // z = LN_post(h)
  tap("ffn_norm", a.z, C);
  Linear(a.z.data(), T, w.up, w.up_b.f16(), a.up.data(), a.f32.data());   // [T, 2F]
  tap("up", a.up, 2 * F);
  GeGlu(a.up.data(), T, F, a.gated.data());
  tap("gated", a.gated, F);
  Linear(a.gated.data(), T, w.down, w.down_b.f16(), a.down.data(), a.f32.data());
  tap("down", a.down, C);
  DeepNormResidual(a.z.data(), a.down.data(), alpha, T * C, a.x.data());  // x = z·α + mlp
  tap("out", a.x, C);
}

}  // namespace

Status Forward(WeightStore& store, const RotaryTable& rope, KvCache& kv, Activations& act,
               const ForwardArgs& args, Half* logits) {
  const ModelConfig& cfg = store.config();
  const int64_t T = int64_t(args.ids.size()), C = cfg.hidden;
  if (T == 0) return Errorf("Forward: no tokens");
  if (int64_t(args.positions.size()) != T) {
    return Errorf("Forward: %lld ids but %lld positions", (long long)T,
                  (long long)args.positions.size());
  }
  if (T > act.max_tokens) {
    return Errorf("Forward: %lld tokens exceed the activation capacity %lld", (long long)T,
                  (long long)act.max_tokens);
  }
  if (kv.length + T > kv.capacity) {
    return Errorf("sequence of %lld tokens exceeds the KV cache capacity %lld",
                  (long long)(kv.length + T), (long long)kv.capacity);
  }
  if (args.prefix_len > kv.length + T) {
    return Errorf("Forward: the first call must include the whole bidirectional prefix "
                  "(%lld tokens), got %lld", (long long)args.prefix_len, (long long)(kv.length + T));
  }
  for (int32_t p : args.positions) {
    if (p < 0 || p >= rope.max_seq) {
      return Errorf("position %d is outside [0, %d) (max sequence length)", p, rope.max_seq);
    }
  }
  const GlobalWeights& g = store.globals();
  RETURN_IF_ERROR(Embedding(g.embedding, args.ids.data(), T, act.x.data()));
  if (args.tap) (*args.tap)("embed", act.x.data(), C);

  for (int l = 0; l < cfg.num_layers; ++l) {
    ASSIGN_OR_RETURN(const LayerWeights* w, store.Acquire(l));
    Layer(cfg, l, *w, rope, kv, act, args, T);
    store.Release(l);
  }
  kv.length += T;

  // Final LayerNorm, then logits through the tied embedding (§1.10), for the rows asked for.
  const int64_t first = args.all_logits ? 0 : T - 1;
  const int64_t rows = T - first;
  LayerNorm(act.x.data() + first * C, rows, C, g.final_norm_w.f16(), g.final_norm_b.f16(),
            cfg.layernorm_eps, act.y.data());
  if (args.tap) (*args.tap)("final_norm", act.y.data(), C);
  Linear(act.y.data(), rows, g.embedding, nullptr, logits, act.f32.data());
  return Status::Ok();
}

}  // namespace glm
