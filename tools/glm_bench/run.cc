// glm-bench's timed runs (run.h).
#include "tools/glm_bench/run.h"

#include <algorithm>
#include <chrono>

#include "runtime/model.h"

namespace glm {

using Clock = std::chrono::steady_clock;

StatusOr<RunTimes> RunSteps(WeightStore& store, int batch, int prompt, int steps,
                            const std::function<void(int)>& before,
                            const std::function<void(int)>& after) {
  const ModelConfig& cfg = store.config();
  const int64_t cap = prompt + steps;
  RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  std::vector<KvCache> kv;
  for (int b = 0; b < batch; ++b) kv.push_back(KvCache::Allocate(cfg, cap));
  Activations act = Activations::Allocate(cfg, int64_t(batch) * prompt, cap);
  std::vector<Half> logits(size_t(batch) * size_t(cfg.vocab));
  RunTimes t;
  t.kv_bytes = uint64_t(batch) * (kv[0].k.size() + kv[0].v.size()) * sizeof(Half);
  for (const auto* v : {&act.x, &act.y, &act.qkv, &act.ctx, &act.attn, &act.h, &act.z, &act.up,
                        &act.gated, &act.down}) {
    t.activation_bytes += v->size() * sizeof(Half);
  }
  t.activation_bytes += (act.f32.size() + act.attn_scratch.size()) * sizeof(float) +
                        logits.size() * sizeof(Half) + rope.cos.size() * 2 * sizeof(Half);
  const int vocab_used = std::min(cfg.vocab, 20000);
  std::vector<std::vector<int32_t>> ids(static_cast<size_t>(batch)), pos = ids;
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < prompt; ++i) {
      ids[size_t(b)].push_back(int32_t(1 + (b * 7919 + i * 104729) % (vocab_used - 1)));
      pos[size_t(b)].push_back(i);
    }
  }
  std::vector<SeqStep> seqs(static_cast<size_t>(batch));
  for (int step = 0; step <= steps; ++step) {
    for (int b = 0; b < batch; ++b) {
      seqs[size_t(b)] = SeqStep{.kv = &kv[size_t(b)],
                                .ids = ids[size_t(b)],
                                .positions = pos[size_t(b)],
                                .prefix_len = step == 0 ? prompt : 0};
    }
    if (before) before(step);
    const auto start = Clock::now();
    RETURN_IF_ERROR(ForwardBatch(store, rope, seqs, act, logits.data()));
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    (step == 0 ? t.prefill_s : t.decode_s.emplace_back()) = s;
    for (int b = 0; b < batch; ++b) {
      ids[size_t(b)] = {int32_t(1 + (b * 31 + step * 977) % (vocab_used - 1))};
      pos[size_t(b)] = {int32_t(kv[size_t(b)].length)};
    }
    if (after) after(step);
  }
  return t;
}

StatusOr<std::unique_ptr<DirectStore>> DirectStore::Of(StreamingStore& s) {
  std::unique_ptr<DirectStore> d(new DirectStore(s));
  for (int l = 0; l < s.config().num_layers; ++l) {
    ASSIGN_OR_RETURN(const LayerWeights* w, s.Acquire(l));
    s.Release(l);
    d->layers_.push_back(w);
  }
  return d;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace glm
