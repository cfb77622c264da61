// Opening a model file as a WeightStore under memory budgets: the one entry point the tools use,
// so that a budget switches from the fully mapped store to the streaming store without the
// callers knowing which one they got.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "offload/file_reader.h"
#include "runtime/check.h"
#include "runtime/weights.h"

namespace glm {

struct StoreOptions {
  uint64_t host_mem_bytes = 0;  // 0: no budget (the whole model may be resident)
  uint64_t gpu_mem_bytes = 0;   // 0: no GPU tier
  int prefetch_depth = -1;      // -1: the planner decides
  bool verbose = false;         // print the plan

  // Streaming (host_mem_bytes != 0): how the file is read, and the planner's measurements
  // (0 = unknown; the planner then takes 3 staging slots). glm-bench measures them.
  ReaderOptions reader = {};
  double disk_bytes_per_s = 0;    // sequential read bandwidth
  double layer_compute_s = 0;     // one layer, one step
  double globals_compute_s = 0;   // embedding + final LayerNorm + logits, one step
  uint64_t kv_bytes = 0;          // stated in the plan as outside the budget
  uint64_t activation_bytes = 0;  // likewise
  // XXH64 of every extent: as each is read when streaming; all of them before mapping the file
  // when the whole model is resident (a full read of the file first).
  bool verify_checksums = false;
  // Weights held in RAM on transparent huge pages (StreamingOptions::huge_pages). With a host
  // budget: the globals and resident layers. Without one: the whole file is read into memory
  // at open, instead of being mapped (a mapped file's page cache stays on 4 KiB pages).
  bool huge_pages = false;
  // Progress of the load at open where the weights are read rather than mapped
  // (StreamingOptions::load_progress).
  std::function<void(uint64_t done, uint64_t total)> load_progress = nullptr;
};

StatusOr<std::unique_ptr<WeightStore>> OpenWeightStore(const std::string& path,
                                                       const StoreOptions& opts);

}  // namespace glm
