// The GPU tier of the weight store (see gpu_store_cuda.h).
#include "offload/gpu_store_cuda.h"

#include <chrono>
#include <cstdio>

namespace glm {
namespace {

constexpr uint64_t kBounceBytes = 64ull << 20;  // open-time uploads from unpinned sources

}  // namespace

StatusOr<std::unique_ptr<GpuWeightStore>> GpuWeightStore::Open(std::unique_ptr<LayerSource> source,
                                                               const GpuStoreOptions& opts,
                                                               cudaStream_t compute) {
  std::unique_ptr<GpuWeightStore> s(new GpuWeightStore());
  s->source_ = std::move(source);
  s->compute_ = compute;
  CUDA_CHECK(cudaGetDevice(&s->device_));
  const ModelConfig& cfg = s->source_->config();
  const int L = cfg.num_layers;

  GpuPlanInput in;
  in.budget = opts.gpu_mem_bytes ? opts.gpu_mem_bytes : GetGpuMemInfo().total;
  in.context = opts.context_bytes;
  in.workspace = opts.workspace_bytes;
  in.kv_cache = opts.kv_cache_bytes;
  in.activations = opts.activation_bytes;
  in.globals = s->source_->ExtentBytes(-1);
  for (int l = 0; l < L; ++l) in.layers.push_back(s->source_->ExtentBytes(l));
  in.max_slots = opts.staging_slots;
  in.max_resident = opts.max_resident_layers;
  in.source_pinned = true;
  for (int l = 0; l < L && in.source_pinned; ++l) in.source_pinned = s->source_->Pinned(l);
  in.host_budget = opts.host_mem_bytes;
  in.max_host_slots = opts.host_slots;
  ASSIGN_OR_RETURN(s->plan_, PlanGpuMemory(in));
  const GpuPlan& p = s->plan_;
  if (opts.verbose) {
    std::printf("%s\n  source: %s\n", p.Describe().c_str(), s->source_->Describe().c_str());
  }

  // Device memory: exactly the plan's parts.
  ASSIGN_OR_RETURN(s->globals_buf_, DeviceBuffer::Allocate(in.globals, "embedding and final norm"));
  uint64_t resident_bytes = 0;
  for (int l = 0; l < p.resident; ++l) resident_bytes += in.layers[l];
  ASSIGN_OR_RETURN(s->resident_buf_, DeviceBuffer::Allocate(resident_bytes, "resident layers"));
  ASSIGN_OR_RETURN(s->slots_buf_,
                   DeviceBuffer::Allocate(uint64_t(p.slots) * p.slot_bytes, "layer staging slots"));
  s->copy_ = CudaStream::Create();

  RETURN_IF_ERROR(s->Upload(-1, s->globals_buf_.data()));
  RETURN_IF_ERROR(s->source_->BindGlobals(s->globals_buf_.data(), &s->globals_));
  s->resident_.resize(p.resident);
  uint64_t off = 0;
  for (int l = 0; l < p.resident; ++l) {
    char* dst = s->resident_buf_.as<char>() + off;
    RETURN_IF_ERROR(s->Upload(l, dst));
    RETURN_IF_ERROR(s->source_->BindLayer(l, dst, &s->resident_[l]));
    off += in.layers[l];
  }
  if (p.resident == L) return s;

  // Streaming: slots, host memory, the I/O thread.
  for (int i = 0; i < p.slots; ++i) {
    Slot slot;
    slot.base = s->slots_buf_.as<char>() + uint64_t(i) * p.slot_bytes;
    slot.copied = CudaEvent::Create();
    slot.released = CudaEvent::Create();
    s->slots_.push_back(std::move(slot));
  }
  if (p.host_mode == HostMode::kPinnedCache) {
    ASSIGN_OR_RETURN(s->host_cache_, PinnedBuffer::Allocate(p.host_bytes, "streamed layers"));
    uint64_t hoff = 0;
    for (int l = p.resident; l < L; ++l) {
      s->host_offsets_.push_back(hoff);
      RETURN_IF_ERROR(s->source_->Read(l, 0, in.layers[l], s->host_cache_.data() + hoff));
      hoff += in.layers[l];
    }
  } else if (p.host_mode == HostMode::kHostSlots) {
    for (int i = 0; i < p.host_slots; ++i) {
      ASSIGN_OR_RETURN(PinnedBuffer b,
                       PinnedBuffer::Allocate(p.slot_bytes, StrFormat("host staging slot %d", i)));
      s->host_slots_.push_back(std::move(b));
      s->host_free_.push_back(CudaEvent::Create());
    }
  }
  s->io_ = std::thread([st = s.get()] { st->IoLoop(); });
  return s;
}

// Synchronous upload of one extent: straight from pinned source memory, else through two pinned
// bounce buffers (read one while the other is copied).
Status GpuWeightStore::Upload(int extent, void* device_dst) {
  const uint64_t bytes = source_->ExtentBytes(extent);
  char* dst = static_cast<char*>(device_dst);
  if (const void* pinned = source_->Pinned(extent)) {
    CUDA_CHECK(cudaMemcpyAsync(dst, pinned, bytes, cudaMemcpyHostToDevice, copy_.get()));
    CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
    return Status::Ok();
  }
  PinnedBuffer bounce[2];
  CudaEvent done[2];
  for (int i = 0; i < 2; ++i) {
    ASSIGN_OR_RETURN(bounce[i],
                     PinnedBuffer::Allocate(std::min(bytes, kBounceBytes), "upload bounce buffer"));
    done[i] = CudaEvent::Create();
  }
  int k = 0;
  for (uint64_t off = 0; off < bytes; off += kBounceBytes, k ^= 1) {
    const uint64_t n = std::min(kBounceBytes, bytes - off);
    CUDA_CHECK(cudaEventSynchronize(done[k].get()));  // its previous copy has finished
    RETURN_IF_ERROR(source_->Read(extent, off, n, bounce[k].data()));
    CUDA_CHECK(
        cudaMemcpyAsync(dst + off, bounce[k].data(), n, cudaMemcpyHostToDevice, copy_.get()));
    CUDA_CHECK(cudaEventRecord(done[k].get(), copy_.get()));
  }
  CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
  return Status::Ok();
}

void GpuWeightStore::IoLoop() {
  CUDA_CHECK(cudaSetDevice(device_));
  const int L = plan_.num_layers, R = plan_.resident, M = L - R, S = plan_.slots;
  for (int64_t i = 0;; ++i) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      // Slot i % S is free once use i - S has been released (its event recorded).
      cv_.wait(lk, [&] { return stop_ || i - S < released_; });
      if (stop_) return;
    }
    const int layer = R + int(i % M);
    Slot& slot = slots_[size_t(i % S)];
    const uint64_t bytes = source_->ExtentBytes(layer);
    const void* src = nullptr;
    int hs = -1;
    switch (plan_.host_mode) {
      case HostMode::kSourcePinned:
        src = source_->Pinned(layer);
        break;
      case HostMode::kPinnedCache:
        src = host_cache_.data() + host_offsets_[size_t(layer - R)];
        break;
      case HostMode::kHostSlots: {
        hs = int(i % int64_t(host_slots_.size()));
        CUDA_CHECK(cudaEventSynchronize(host_free_[size_t(hs)].get()));  // its last copy is done
        Status st = source_->Read(layer, 0, bytes, host_slots_[size_t(hs)].data());
        if (!st.ok()) {
          std::lock_guard<std::mutex> lk(mu_);
          io_error_ = st.WithContext(StrFormat("streaming layer %d", layer));
          cv_.notify_all();
          return;
        }
        src = host_slots_[size_t(hs)].data();
        break;
      }
      case HostMode::kNone:
        GLM_CHECK_MSG(false, "streaming without a host mode");
    }
    if (i >= S) CUDA_CHECK(cudaStreamWaitEvent(copy_.get(), slot.released.get(), 0));
    CUDA_CHECK(cudaMemcpyAsync(slot.base, src, bytes, cudaMemcpyHostToDevice, copy_.get()));
    CUDA_CHECK(cudaEventRecord(slot.copied.get(), copy_.get()));
    if (hs >= 0) CUDA_CHECK(cudaEventRecord(host_free_[size_t(hs)].get(), copy_.get()));
    {
      std::lock_guard<std::mutex> lk(mu_);
      issued_ = i + 1;
      stats_.h2d_bytes += bytes;
      stats_.copies += 1;
    }
    cv_.notify_all();
  }
}

StatusOr<const LayerWeights*> GpuWeightStore::Acquire(int layer) {
  const int L = plan_.num_layers, R = plan_.resident;
  if (layer < 0 || layer >= L) return Errorf("layer %d outside [0, %d)", layer, L);
  if (layer < R) return &resident_[size_t(layer)];
  const int64_t i = acquired_;
  const int expected = R + int(i % (L - R));
  if (layer != expected) {
    return Errorf("GPU store: streamed layers are acquired in order; expected layer %d, got %d",
                  expected, layer);
  }
  {
    std::unique_lock<std::mutex> lk(mu_);
    const auto t0 = std::chrono::steady_clock::now();
    cv_.wait(lk, [&] { return issued_ > i || !io_error_.ok(); });
    stats_.acquire_wait_s +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (issued_ <= i) return io_error_;
  }
  Slot& slot = slots_[size_t(i % plan_.slots)];
  CUDA_CHECK(cudaStreamWaitEvent(compute_, slot.copied.get(), 0));
  RETURN_IF_ERROR(source_->BindLayer(layer, slot.base, &slot.views));
  acquired_ = i + 1;
  return &slot.views;
}

void GpuWeightStore::Release(int layer) {
  if (layer < plan_.resident) return;
  const int64_t i = acquired_ - 1;
  GLM_CHECK_MSG(
      i >= released_ && layer == plan_.resident + int(i % (plan_.num_layers - plan_.resident)),
      "GPU store: Release(%d) does not match the last Acquire", layer);
  CUDA_CHECK(cudaEventRecord(slots_[size_t(i % plan_.slots)].released.get(), compute_));
  {
    std::lock_guard<std::mutex> lk(mu_);
    released_ = i + 1;
  }
  cv_.notify_all();
}

GpuStoreStats GpuWeightStore::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

GpuWeightStore::~GpuWeightStore() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (io_.joinable()) io_.join();
  // Copies in flight write into slots_buf_; the forward's kernels may still read the slots.
  if (copy_.get()) CUDA_CHECK(cudaStreamSynchronize(copy_.get()));
  if (compute_) CUDA_CHECK(cudaStreamSynchronize(compute_));
}

}  // namespace glm
