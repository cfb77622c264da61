// The CPU engine (runtime/engine.h): KvCaches, Activations and the rotary table of
// runtime/model.h, allocated once, and ForwardBatch.
#include "runtime/engine.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "runtime/model.h"
#include "runtime/parallel.h"

namespace glm {

Status CheckEngineSteps(std::span<const EngineStep> steps, const EngineShape& shape) {
  if (steps.empty()) return Errorf("a forward step needs at least one sequence");
  if (int64_t(steps.size()) > shape.max_logit_rows) {
    return Errorf("%zu sequences in one step, the engine holds logits for %lld", steps.size(),
                  (long long)shape.max_logit_rows);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const int c = steps[i].cache;
    if (c < 0 || c >= shape.caches) {
      return Errorf("KV cache %d does not exist (the engine has %lld)", c, (long long)shape.caches);
    }
    for (size_t j = 0; j < i; ++j) {
      if (steps[j].cache == c) return Errorf("KV cache %d is used twice in one step", c);
    }
  }
  return Status::Ok();
}

Status CheckEngineCopy(int src, int dst, const EngineShape& shape) {
  if (src < 0 || src >= shape.caches || dst < 0 || dst >= shape.caches) {
    return Errorf("KV cache copy %d -> %d: the engine has %lld caches", src, dst,
                  (long long)shape.caches);
  }
  return Status::Ok();
}

namespace {

class CpuEngine : public ForwardEngine {
 public:
  CpuEngine(WeightStore& store, const EngineShape& shape)
      : store_(store),
        shape_(shape),
        rope_(RotaryTable::Build(store.config().head_dim, store.config().max_seq)) {
    const ModelConfig& cfg = store.config();
    caches_.reserve(shape.caches);
    for (int64_t i = 0; i < shape.caches; ++i)
      caches_.push_back(KvCache::Allocate(cfg, shape.capacity));
    act_ = Activations::Allocate(cfg, shape.max_tokens, shape.capacity);
  }

  const ModelConfig& config() const override { return store_.config(); }
  const EngineShape& shape() const override { return shape_; }

  Status Forward(std::span<const EngineStep> steps, Half* logits) override {
    RETURN_IF_ERROR(ToSeqSteps(steps, shape_, caches_, &seqs_));
    return ForwardBatch(store_, rope_, seqs_, act_, logits);
  }

  int64_t Length(int cache) const override { return caches_.at(cache).length; }
  void Reset(int cache) override { caches_.at(cache).length = 0; }

  Status Copy(int src, int dst) override {
    RETURN_IF_ERROR(CheckEngineCopy(src, dst, shape_));
    if (src == dst) return Status::Ok();
    const ModelConfig& cfg = store_.config();
    const int H = cfg.num_heads, D = cfg.head_dim;
    const KvCache& from = caches_[src];
    KvCache& to = caches_[dst];
    // Per head: whole key blocks (the last may be partial) and the value rows.
    const int64_t n = from.length, key_halves = KvPaddedTokens(n) * D;
    for (int l = 0; l < cfg.num_layers; ++l) {
      for (int h = 0; h < H; ++h) {
        std::copy_n(from.K(l) + KvKeyIndex(from.capacity, D, h, 0, 0), key_halves,
                    to.K(l) + KvKeyIndex(to.capacity, D, h, 0, 0));
        std::copy_n(from.V(l) + KvValueIndex(from.capacity, D, h, 0, 0), n * D,
                    to.V(l) + KvValueIndex(to.capacity, D, h, 0, 0));
      }
    }
    to.length = from.length;
    return Status::Ok();
  }

  std::string Describe() const override {
    return StrFormat("CPU (%s, %d threads)", CpuPathName(ActiveCpuPath()),
                     ThreadPool::Global().size());
  }

 private:
  WeightStore& store_;
  EngineShape shape_;
  RotaryTable rope_;
  std::vector<KvCache> caches_;
  Activations act_;
  std::vector<SeqStep> seqs_;
};

}  // namespace

std::unique_ptr<ForwardEngine> MakeCpuEngine(WeightStore& store, const EngineShape& shape) {
  return std::make_unique<CpuEngine>(store, shape);
}

}  // namespace glm
