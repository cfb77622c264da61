// The GPU engine: context, store, caches and activations, created in the order the planner needs
// (the context first, since its measured size is charged to the budget).
#include "runtime/engine_cuda.h"

#include <vector>

#include "offload/gpu_store_cuda.h"
#include "runtime/model_cuda.h"

namespace glm {
namespace {

class GpuEngine : public ForwardEngine {
 public:
  static StatusOr<std::unique_ptr<ForwardEngine>> Open(std::unique_ptr<LayerSource> source,
                                                       const GpuEngineOptions& o,
                                                       const EngineShape& shape) {
    GLM_CHECK(source != nullptr);
    if (shape.caches < 1 || shape.capacity < 1 || shape.max_tokens < 1 ||
        shape.max_logit_rows < 1) {
      return Errorf("GPU engine: empty shape (%lld caches of %lld tokens, %lld tokens a step)",
                    (long long)shape.caches, (long long)shape.capacity,
                    (long long)shape.max_tokens);
    }
    const ModelConfig cfg = source->config();
    std::unique_ptr<GpuEngine> e(new GpuEngine());
    e->shape_ = shape;
    ASSIGN_OR_RETURN(e->ctx_,
                     GpuContext::Create(cfg, {.device = o.device, .exact_fp32 = o.exact_fp32}));
    const GpuStoreOptions so{
        .gpu_mem_bytes = o.gpu_mem_bytes,
        .host_mem_bytes = o.host_mem_bytes,
        .staging_slots = o.staging_slots,
        .max_resident_layers = o.max_resident_layers,
        .context_bytes = e->ctx_->context_bytes(),
        .workspace_bytes = e->ctx_->owned_bytes(),
        .kv_cache_bytes = uint64_t(shape.caches) * GpuKvCache::Bytes(cfg, shape.capacity),
        .activation_bytes = GpuActivations::Bytes(cfg, shape.max_tokens, shape.max_logit_rows),
        .verbose = o.verbose};
    ASSIGN_OR_RETURN(e->store_, GpuWeightStore::Open(std::move(source), so, e->ctx_->stream()));
    e->kv_.reserve(shape.caches);
    for (int64_t i = 0; i < shape.caches; ++i) {
      ASSIGN_OR_RETURN(GpuKvCache kv, GpuKvCache::Allocate(cfg, shape.capacity));
      e->kv_.push_back(std::move(kv));
    }
    ASSIGN_OR_RETURN(e->act_,
                     GpuActivations::Allocate(cfg, shape.max_tokens, shape.max_logit_rows));
    return std::unique_ptr<ForwardEngine>(std::move(e));
  }

  const ModelConfig& config() const override { return store_->config(); }
  const EngineShape& shape() const override { return shape_; }

  Status Forward(std::span<const EngineStep> steps, Half* logits) override {
    RETURN_IF_ERROR(ToSeqSteps(steps, shape_, kv_, &seqs_));
    return ForwardBatchCuda(*store_, *ctx_, seqs_, act_, logits);
  }

  int64_t Length(int cache) const override { return kv_.at(cache).length; }
  void Reset(int cache) override { kv_.at(cache).length = 0; }

  // Every layer's first `length` rows in one strided copy per tensor, on the compute stream, so
  // that the next step sees them.
  Status Copy(int src, int dst) override {
    RETURN_IF_ERROR(CheckEngineCopy(src, dst, shape_));
    if (src == dst) return Status::Ok();
    const ModelConfig& cfg = store_->config();
    const int64_t HD = int64_t(cfg.num_heads) * cfg.head_dim;
    GpuKvCache& from = kv_[src];
    GpuKvCache& to = kv_[dst];
    if (from.length > 0) {
      const size_t pitch = size_t(shape_.capacity) * HD * sizeof(Half);
      const size_t width = size_t(from.length) * HD * sizeof(Half);
      CUDA_CHECK(cudaMemcpy2DAsync(to.K(0, HD), pitch, from.K(0, HD), pitch, width, cfg.num_layers,
                                   cudaMemcpyDeviceToDevice, ctx_->stream()));
      CUDA_CHECK(cudaMemcpy2DAsync(to.V(0, HD), pitch, from.V(0, HD), pitch, width, cfg.num_layers,
                                   cudaMemcpyDeviceToDevice, ctx_->stream()));
    }
    to.length = from.length;
    return Status::Ok();
  }

  std::string Describe() const override {
    const GpuPlan& p = store_->plan();
    return StrFormat("GPU %s: %d of %d layers resident, %s of %s budget",
                     ctx_->device().ToString().c_str(), p.resident, p.num_layers,
                     GiBString(p.gpu_total).c_str(), GiBString(p.budget).c_str());
  }

 private:
  GpuEngine() = default;

  // Destroyed in reverse: buffers, then the store (its copy stream waits on the compute stream),
  // then the context.
  EngineShape shape_;
  std::unique_ptr<GpuContext> ctx_;
  std::unique_ptr<GpuWeightStore> store_;
  std::vector<GpuKvCache> kv_;
  GpuActivations act_;
  std::vector<GpuSeqStep> seqs_;
};

}  // namespace

StatusOr<std::unique_ptr<ForwardEngine>> OpenGpuEngine(std::unique_ptr<LayerSource> source,
                                                       const GpuEngineOptions& opts,
                                                       const EngineShape& shape) {
  return GpuEngine::Open(std::move(source), opts, shape);
}

}  // namespace glm
