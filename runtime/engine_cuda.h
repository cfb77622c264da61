// The GPU engine (runtime/engine.h): ForwardBatchCuda (runtime/model_cuda.h) over the GPU weight
// tier (offload/gpu_store_cuda.h), with the KV caches and activations in device memory. It owns
// the context, the store and every buffer, so a tool needs nothing else to generate on a GPU.
// The planner charges the context, cuBLAS workspace, KV caches and activations of the shape to
// the --gpu-mem budget, then keeps as many layers resident as fit and streams the others.
#pragma once

#include <cstdint>
#include <memory>

#include "offload/layer_source_cuda.h"
#include "runtime/check.h"
#include "runtime/engine.h"

namespace glm {

struct GpuEngineOptions {
  int device = 0;
  uint64_t gpu_mem_bytes = 0;    // everything on the GPU, context included; 0: the device's total
  uint64_t host_mem_bytes = 0;   // pinned host memory for the streamed layers; 0: unlimited
  int staging_slots = 2;         // device slots for streamed layers
  int max_resident_layers = -1;  // cap (--gpu-layers, tests); -1: as many as the budget holds
  bool exact_fp32 = false;       // linears without tensor-core accumulation (tests)
  bool verbose = false;          // print the plan to stderr
};

// Opens `source` on the GPU for `shape`. Errors: no device, a budget too small for the fixed
// costs (the message says which part does not fit), out of memory, read errors of the source.
StatusOr<std::unique_ptr<ForwardEngine>> OpenGpuEngine(std::unique_ptr<LayerSource> source,
                                                       const GpuEngineOptions& opts,
                                                       const EngineShape& shape);

}  // namespace glm
