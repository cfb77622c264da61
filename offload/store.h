// Opening a model file as a WeightStore under memory budgets: the one entry point the tools use,
// so that a budget switches from the fully mapped store to the streaming store without the
// callers knowing which one they got.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/check.h"
#include "runtime/weights.h"

namespace glm {

struct StoreOptions {
  uint64_t host_mem_bytes = 0;  // 0: no budget (the whole model may be resident)
  uint64_t gpu_mem_bytes = 0;   // 0: no GPU tier
  int prefetch_depth = -1;      // -1: the planner decides
  bool verbose = false;         // print the plan
};

StatusOr<std::unique_ptr<WeightStore>> OpenWeightStore(const std::string& path,
                                                       const StoreOptions& opts);

}  // namespace glm
