// The residency planner: from a host byte budget, the model's extent sizes and the measured
// disk bandwidth and compute times, decides which layers stay resident, how many staging slots
// the streamed layers rotate through and how deep to prefetch, and predicts the time per step.
//
// What the budget covers (everything the streaming store allocates, all accounted):
//   - the model-level extent (embedding [V, C] + final LayerNorm), always resident;
//   - the resident layers' extents;
//   - the staging slots, each as large as the largest streamed layer extent.
// Outside the budget, stated in the plan: the KV cache and the activations (the caller owns them;
// their sizes follow from batch and context), and a fixed process overhead (code, thread stacks,
// the io_uring rings: a few MiB, measured by glm-bench as the RSS before the store opens).
//
// Rule: if everything fits, everything is resident. Otherwise, for each staging-slot count n
// (prefetch depth n-1), as many layers as fit in the rest are made resident, the *streamed*
// layers spread evenly through the stack (so the runs of resident layers, during which the disk
// reads ahead, are as short as possible), and the step time of that arrangement is predicted by
// simulating the pipeline (SimulateStep). The arrangement with the lowest prediction wins; within
// 1% the one with fewer slots (more resident layers, fewer bytes from disk). Without measurements
// the planner takes 3 slots (double buffering plus one for jitter).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace glm {

struct PlanInput {
  uint64_t budget_bytes = 0;          // host budget for globals + resident layers + slots
  uint64_t globals_bytes = 0;         // model-level extent (always resident)
  std::vector<uint64_t> layer_bytes;  // [L] bytes one layer occupies in memory
  double disk_bytes_per_s = 0;        // measured sequential read bandwidth; 0 = unknown
  double layer_compute_s = 0;         // compute of one layer in one step; 0 = unknown
  double globals_compute_s = 0;       // embedding + final LayerNorm + logits in one step
  int prefetch_depth = -1;            // >= 0: forced (slots = depth + 1; 0 = reads on demand)
                                      // -1: the planner picks (always a ring)
  int max_slots = 8;
  // No resident layer: the budget is ignored and becomes globals + the best slot count's slots
  // (glm-bench's budget "0"). Refused when those slots could hold the whole model.
  bool stream_all = false;
  // Outside the budget, stated in the printout and used for the RSS check.
  uint64_t kv_bytes = 0, activation_bytes = 0;
};

struct Plan {
  std::vector<bool> resident;  // [L]
  int resident_count = 0;
  int staging_slots = 0;   // 0 when every layer is resident
  int prefetch_depth = 0;  // slots - 1: reads in flight while one layer computes
  bool on_demand = false;  // forced depth 0: a read starts when compute asks (no prefetch)
  uint64_t slot_bytes = 0;
  uint64_t budget_bytes = 0, globals_bytes = 0, resident_bytes = 0, staging_bytes = 0;
  uint64_t kv_bytes = 0, activation_bytes = 0;
  uint64_t streamed_bytes_per_step = 0;  // bytes read from disk for every forward step
  // Seconds per forward step; 0 where a measurement is missing.
  double io_s = 0;         // streamed bytes / disk bandwidth
  double compute_s = 0;    // L * layer compute + globals compute
  double bound_s = 0;      // max(io_s, compute_s): no schedule can beat it
  double predicted_s = 0;  // SimulateStep of this arrangement (>= bound_s)

  uint64_t total_bytes() const { return globals_bytes + resident_bytes + staging_bytes; }
  int num_layers() const { return int(resident.size()); }
  // Multi-line description: budget ledger, resident layers, slots, depth, bound and prediction.
  std::string ToString() const;
  // "0-3,7,9-12" of the resident layers ("none").
  std::string ResidentList() const;
};

// Errors: a budget below the minimum (globals + one slot when not everything fits), naming the
// minimum; an empty model.
StatusOr<Plan> MakePlan(const PlanInput& in);

// Steady-state seconds per forward step of the streaming pipeline: one disk that reads streamed
// layers in cycle order (layer_bytes / bandwidth each, back to back when allowed) into a ring of
// `slots` staging slots, a read starting as soon as its slot is released (on demand: when
// compute asks for the layer). Compute runs the layers in order (layer_compute_s each, waiting for
// streamed ones), then globals_compute_s. This mirrors StreamingStore's scheduling rule.
double SimulateStep(const std::vector<bool>& resident, const std::vector<uint64_t>& layer_bytes,
                    double disk_bytes_per_s, double layer_compute_s, double globals_compute_s,
                    int slots, bool on_demand);

// Streamed layer positions spread evenly over [0, L): k of them.
std::vector<bool> SpreadResident(int num_layers, int streamed);

}  // namespace glm
