// glm-bench's results: one configuration's figures, its JSON line and the summary table, and the
// machine description printed with them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace glm {

struct Result {
  std::string model, budget_label, error;
  uint64_t budget_bytes = 0, peak_rss = 0, rss_limit = 0, kv_bytes = 0, act_bytes = 0;
  int batch = 1, resident = 0, layers = 0, slots = 0, depth = 0;
  bool on_demand = false;
  double prefill_ms_tok = 0, decode_ms_step = 0, wait_ms_step = 0, read_gbps = 0, disk_gbps = 0;
  double bound_ms_step = 0, predicted_ms_step = 0, compute_ms_step = 0, prefill_bound_ms_tok = 0;
  double baseline_ms_step = 0, open_s = 0;
  // --huge_pages: asked for, and the bytes of the open's load the kernel put on 2 MiB pages.
  bool huge_pages = false;
  uint64_t open_huge_bytes = 0;
  // The disk's busy time per step (the reader had a streamed layer in flight) and the rate it
  // delivered while busy: they separate the executor's own overhead (the disk left idle) from
  // the disk's speed during the run, which on shared or virtual disks drifts from the probe.
  double busy_ms_step = 0, busy_gbps = 0;
  // Blocks in flight, averaged over the time the reader had any (the device's queue depth).
  double mean_in_flight = 0;
  // Streamed only, with --paired_probe: a second pass of decode steps, each one preceded
  // (untimed, the store's reads finished) by a probe of the disk of one step's streamed bytes.
  // Each step's bound is max(bytes it read / the rate probed just before it, compute); the
  // medians over the steps of the probed rate and of measured / that bound.
  double paired_disk_gbps = 0, paired_ratio = 0;
  // Fully resident only: decode through the store and, on the same resident layers, without
  // it (DirectStore), alternated (medians of kResidentReps each).
  double resident_store_ms_step = 0, resident_direct_ms_step = 0;
};

// One JSON object (no newline).
std::string JsonLine(const Result& r);

// The summary table, one row per result.
void PrintTable(FILE* out, const std::vector<Result>& results);

// CPU, cores, RAM, kernel, the disk holding `path`, date and load: where the numbers came from.
std::string MachineLine(const std::string& path);

}  // namespace glm
