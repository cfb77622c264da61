// The GLM forward pass on a GPU: the same plain layer loop as runtime/model.h, on device buffers,
// with the kernels of kernels/cuda. Weights come from any WeightStore whose views point into
// device memory (GpuWeightStore, offload/gpu_store_cuda.h); the loop does not know which layers
// are resident and which stream. Everything is allocated once, for the maximum shape: the
// context's stream, cuBLAS handle and workspace and tables (GpuContext), the KV cache of each
// sequence (GpuKvCache) and the activations (GpuActivations); nothing allocates per step.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <memory>
#include <span>

#include "kernels/cuda/kernels.h"
#include "runtime/config.h"
#include "runtime/device_cuda.h"
#include "runtime/model.h"
#include "runtime/weights.h"

namespace glm {

struct GpuContextOptions {
  int device = 0;
  uint64_t workspace_bytes = 32ull << 20;  // cuBLAS workspace (NVIDIA's size for Hopper)
  // Linear layers without tensor-core accumulation (gpu::LinearContext::exact_fp32): slower;
  // for tests that hold the GPU to the CPU's tolerances.
  bool exact_fp32 = false;
};

// One device's compute stream, cuBLAS handle (bound to the stream, with its workspace), and the
// rotary and GELU tables of the model. Create it first: it measures the memory the CUDA context
// takes, which the planner charges to the budget.
class GpuContext {
 public:
  static StatusOr<std::unique_ptr<GpuContext>> Create(const ModelConfig& cfg,
                                                      const GpuContextOptions& opts = {});
  ~GpuContext();
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;

  cudaStream_t stream() const { return stream_.get(); }
  cublasHandle_t cublas() const { return cublas_; }
  const gpu::RotaryTableView& rope() const { return rope_; }
  const Half* gelu_table() const { return gelu_.as<Half>(); }
  const DeviceInfo& device() const { return info_; }
  bool exact_fp32() const { return exact_fp32_; }
  // Device memory in use once the context and the cuBLAS handle existed (all processes on the
  // device; on a shared GPU that over-counts, which keeps the budget safe).
  uint64_t context_bytes() const { return context_bytes_; }
  // What this object allocated: workspace and tables.
  uint64_t owned_bytes() const { return owned_bytes_; }

  // Quantized GEMV kernel choice (tests force each path).
  gpu::QuantGemvPath gemv_path = gpu::QuantGemvPath::kAuto;

 private:
  GpuContext() = default;
  DeviceInfo info_;
  CudaStream stream_;
  cublasHandle_t cublas_ = nullptr;
  DeviceBuffer workspace_, rope_buf_, gelu_;
  gpu::RotaryTableView rope_;
  uint64_t context_bytes_ = 0, owned_bytes_ = 0;
  bool exact_fp32_ = false;
};

// Post-RoPE keys and unscaled values of every layer for one sequence, in device memory.
struct GpuKvCache {
  int64_t capacity = 0;  // S: tokens it can hold
  int64_t length = 0;    // tokens already processed
  DeviceBuffer k, v;     // [L, S, H*D] fp16 each

  static uint64_t Bytes(const ModelConfig& cfg, int64_t capacity);
  static StatusOr<GpuKvCache> Allocate(const ModelConfig& cfg, int64_t capacity);
  Half* K(int layer, int64_t hd) { return k.as<Half>() + size_t(layer) * capacity * hd; }
  Half* V(int layer, int64_t hd) { return v.as<Half>() + size_t(layer) * capacity * hd; }
};

// Device scratch for up to max_tokens tokens per step and max_logit_rows rows of logits, in one
// allocation. The pointers are views into `buf`.
struct GpuActivations {
  int64_t max_tokens = 0, max_logit_rows = 0;
  DeviceBuffer buf;
  Half *x = nullptr, *y = nullptr;     // [T, C] layer stream / input LayerNorm output
  Half* qkv = nullptr;                 // [T, 3*H*D]
  Half* ctx = nullptr;                 // [T, H*D]
  Half *attn = nullptr, *h = nullptr;  // [T, C] attention.dense output / after the residual
  Half *z = nullptr, *down = nullptr;  // [T, C] post-attention LN output / dense_4h_to_h output
  Half* up = nullptr;                  // [T, 2F]
  Half* gated = nullptr;               // [T, F]
  Half* logits = nullptr;              // [max_logit_rows, V]
  int32_t *ids = nullptr, *positions = nullptr;  // [T]
  float* f32 = nullptr;                          // linear scratch (fp16 weights with a bias)
  int64_t f32_elems = 0;
  Half* deq = nullptr;  // dequantized rows (quantized weights, T > 8)
  int64_t deq_elems = 0;
  PinnedBuffer host_ids;  // [2, T] int32 staging for the uploads

  static uint64_t Bytes(const ModelConfig& cfg, int64_t max_tokens, int64_t max_logit_rows);
  static StatusOr<GpuActivations> Allocate(const ModelConfig& cfg, int64_t max_tokens,
                                           int64_t max_logit_rows);
};

// One sequence's share of a step (as SeqStep in runtime/model.h).
struct GpuSeqStep {
  GpuKvCache* kv = nullptr;
  std::span<const int32_t> ids;
  std::span<const int32_t> positions;
  int64_t prefix_len = 0;
  bool all_logits = false;
};

// ForwardBatch on the GPU: same contract and errors as runtime/model.h. `logits` is host memory
// [rows, V] (pinned is faster), or null to leave them in act.logits; the call returns after the
// step has finished on the device. `tap` copies each named tensor to the host (debugging and
// tests; slow).
Status ForwardBatchCuda(WeightStore& store, GpuContext& ctx, std::span<const GpuSeqStep> seqs,
                        GpuActivations& act, Half* logits, const TapFn* tap = nullptr);

}  // namespace glm
