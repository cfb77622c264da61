// The GPU tier's planner: given a --gpu-mem budget, what the process must hold on the GPU anyway
// (CUDA context, cuBLAS workspace, KV cache, activations, the embedding) and the size of every
// layer, it decides which layers stay resident in device memory and how many staging slots the
// others stream through, and where their bytes wait on the host (pinned). Plain C++ arithmetic,
// no CUDA: unit-tested on machines without a GPU (tests/cuda_plan_test.cc). The store
// (gpu_store_cuda.h) allocates exactly what the plan accounts, so the plan's total is the
// process's device memory, and the plan is refused rather than exceeding the budget.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace glm {

// cudaMalloc hands out large allocations in 2 MiB pages: every buffer is accounted rounded up.
inline constexpr uint64_t kGpuAllocGranularity = 2ull << 20;
// Device memory the runtime takes after start-up beyond what it allocates itself: kernels loaded
// on first use (CUDA lazy loading, cuBLAS's kernels) and cuBLAS's internal allocations.
inline constexpr uint64_t kGpuLateReserve = 256ull << 20;

inline uint64_t GpuRound(uint64_t bytes) {
  return (bytes + kGpuAllocGranularity - 1) / kGpuAllocGranularity * kGpuAllocGranularity;
}

struct GpuPlanInput {
  uint64_t budget = 0;  // bytes the process may hold on the GPU, context included
  // Fixed costs, each as allocated (the planner rounds them to the granularity):
  uint64_t context = 0;  // measured device usage after context + cuBLAS creation
  uint64_t reserve = kGpuLateReserve;
  uint64_t workspace = 0;        // cuBLAS workspace and the small tables (rotary, GELU)
  uint64_t kv_cache = 0;         // all sequences at their capacity
  uint64_t activations = 0;      // activations and the linear-layer scratch
  uint64_t globals = 0;          // embedding and final LayerNorm (always resident)
  std::vector<uint64_t> layers;  // bytes of each layer's extent, layer 0 first
  int max_slots = 2;             // staging slots when streaming (2: copy one while computing one)
  int max_resident = -1;         // cap on resident layers (tests, benchmarks); -1: no cap
  // Host side of the streamed layers.
  bool source_pinned = false;  // the source already holds every layer in pinned host memory
  uint64_t host_budget = 0;    // pinned host bytes the store may allocate; 0: unlimited
  int max_host_slots = 4;      // host staging slots when the streamed layers do not fit it
};

enum class HostMode {
  kNone,          // nothing is streamed
  kSourcePinned,  // copies go straight from the source's pinned memory
  kPinnedCache,   // every streamed layer is read once into pinned host memory at start-up
  kHostSlots,     // streamed layers are read (pread) into host slots each pass
};
const char* HostModeName(HostMode m);

struct GpuPlan {
  int num_layers = 0;
  int resident = 0;         // layers [0, resident) live in device memory
  int slots = 0;            // device staging slots for layers [resident, L)
  uint64_t slot_bytes = 0;  // the largest streamed layer
  HostMode host_mode = HostMode::kNone;
  int host_slots = 0;       // kHostSlots only
  uint64_t host_bytes = 0;  // pinned host memory the store allocates (steady state)
  // Device memory, each part rounded as allocated; gpu_total = their sum <= budget.
  uint64_t gpu_fixed = 0;  // context + reserve + workspace + KV cache + activations
  uint64_t gpu_globals = 0;
  uint64_t gpu_resident = 0;  // one allocation for all resident layers
  uint64_t gpu_slots = 0;     // one allocation for all slots
  uint64_t gpu_total = 0;
  uint64_t budget = 0;
  uint64_t streamed_bytes = 0;  // host-to-device bytes per forward pass
  uint64_t weight_bytes = 0;    // every layer plus the globals: what a decode step reads

  // Multi-line description: each part, the total against the budget.
  std::string Describe() const;
};

// The plan with the most resident layers (a prefix of the layers) that fits the budget with
// max_slots staging slots, falling back to fewer slots (down to 1) only when even zero resident
// layers do not fit otherwise. Errors say which part does not fit and by how much.
StatusOr<GpuPlan> PlanGpuMemory(const GpuPlanInput& in);

// Lower bound of one decode step's time under the plan: the streamed bytes over the host-to-
// device bandwidth, or every weight byte (plus `extra_bytes`, e.g. the KV cache read) over the
// device memory bandwidth, whichever is larger. Bandwidths in bytes per second.
double StepLowerBoundSeconds(const GpuPlan& plan, double h2d_bytes_per_s, double hbm_bytes_per_s,
                             uint64_t extra_bytes = 0);

}  // namespace glm
