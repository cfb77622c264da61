// The GPU tier of the weight store: a WeightStore whose views point into device memory, for the
// GPU forward (runtime/model_cuda.h). Under a --gpu-mem budget (planned by gpu_plan_cuda.h) the
// first layers stay resident on the GPU; the others stream through a ring of device staging
// slots, copied with cudaMemcpyAsync on a copy stream from pinned host memory: the source's own
// (PackedLayerSource pinned), a pinned cache filled once at open, or host slots that an I/O
// thread refills with pread from the model file each pass.
//
// Ordering, all on the device, never a host-side synchronize in the decode loop:
//   copy of slot s  --event copied-->   compute of the layer in s   (Acquire: stream wait)
//   compute of s    --event released--> next copy into s            (Release: record)
//   copy from a host slot --event host_free--> the next pread into it (I/O thread syncs)
// The I/O thread runs ahead by at most the number of slots, wrapping around from the last
// streamed layer to the first, so the next forward pass's first layers arrive while this pass
// computes its resident layers. Streamed layers must be acquired in order 0..L-1 (as the forward
// loop does); an out-of-order Acquire is an error.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "offload/gpu_plan_cuda.h"
#include "offload/layer_source_cuda.h"
#include "runtime/device_cuda.h"
#include "runtime/weights.h"

namespace glm {

struct GpuStoreOptions {
  uint64_t gpu_mem_bytes = 0;    // budget for everything on the GPU; 0: the device's total
  uint64_t host_mem_bytes = 0;   // pinned host bytes for streamed layers; 0: unlimited
  int staging_slots = 2;         // device slots when streaming
  int host_slots = 4;            // host slots when the streamed layers exceed the host budget
  int max_resident_layers = -1;  // cap (tests, benchmarks); -1: the planner decides
  // Device memory held besides the store, for the plan (see GpuContext, GpuKvCache and
  // GpuActivations in runtime/model_cuda.h).
  uint64_t context_bytes = 0;
  uint64_t workspace_bytes = 0;
  uint64_t kv_cache_bytes = 0;
  uint64_t activation_bytes = 0;
  bool verbose = false;  // print the plan
};

// Counters for benchmarks.
struct GpuStoreStats {
  uint64_t h2d_bytes = 0;  // streamed bytes copied so far
  uint64_t copies = 0;
  double acquire_wait_s = 0;  // host time Acquire waited for the I/O thread to issue a copy
};

class GpuWeightStore : public WeightStore {
 public:
  // Plans, allocates and uploads the globals and the resident layers (synchronously), then
  // starts streaming. `compute` is the stream the forward pass runs on; the store orders its
  // copies against it with events. The current CUDA device is the store's.
  static StatusOr<std::unique_ptr<GpuWeightStore>> Open(std::unique_ptr<LayerSource> source,
                                                        const GpuStoreOptions& opts,
                                                        cudaStream_t compute);
  ~GpuWeightStore() override;
  GpuWeightStore(const GpuWeightStore&) = delete;
  GpuWeightStore& operator=(const GpuWeightStore&) = delete;

  const ModelConfig& config() const override { return source_->config(); }
  const GlobalWeights& globals() const override { return globals_; }  // device views
  StatusOr<const LayerWeights*> Acquire(int layer) override;          // device views
  void Release(int layer) override;

  const GpuPlan& plan() const { return plan_; }
  const LayerSource& source() const { return *source_; }
  GpuStoreStats stats() const;

 private:
  GpuWeightStore() = default;
  Status Upload(int extent, void* device_dst);  // synchronous, for open
  void IoLoop();

  struct Slot {
    char* base = nullptr;  // device; inside slots_buf_
    CudaEvent copied, released;
    LayerWeights views;
  };

  std::unique_ptr<LayerSource> source_;
  GpuPlan plan_;
  cudaStream_t compute_ = nullptr;
  int device_ = 0;
  CudaStream copy_;
  DeviceBuffer globals_buf_, resident_buf_, slots_buf_;
  GlobalWeights globals_;
  std::vector<LayerWeights> resident_;  // views of layers [0, plan_.resident)
  std::vector<Slot> slots_;
  PinnedBuffer host_cache_;               // kPinnedCache: every streamed layer
  std::vector<uint64_t> host_offsets_;    // offset of streamed layer R+i in host_cache_
  std::vector<PinnedBuffer> host_slots_;  // kHostSlots
  std::vector<CudaEvent> host_free_;

  // Pipeline state. Indices count streamed-layer uses cyclically: use i is layer
  // R + i % (L - R) in slot i % slots.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int64_t issued_ = 0;    // copies issued (guarded by mu_)
  int64_t released_ = 0;  // uses released (guarded by mu_)
  bool stop_ = false;     // guarded by mu_
  Status io_error_;       // guarded by mu_
  int64_t acquired_ = 0;  // compute thread only: uses acquired
  GpuStoreStats stats_;   // guarded by mu_
  std::thread io_;
};

}  // namespace glm
