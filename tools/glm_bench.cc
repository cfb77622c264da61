// glm-bench: decode latency and throughput against the host memory budget, next to the physical
// bound max(streamed bytes / disk bandwidth, compute time). On a model file or a synthetic one it
// creates: measures the disk's sequential O_DIRECT bandwidth with the streaming reader, times
// compute alone (ComputeOnlyStore), then for every budget x batch x prefetch depth plans, runs a
// prefill and a few decode steps through the streaming store, and times the plain
// read-then-compute loop (buffered pread, no prefetch, cold page cache) at the same residency.
// Docs: docs/glm-bench.md.
#include <gflags/gflags.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include "offload/file_reader.h"
#include "offload/host_buffer.h"
#include "offload/model_file.h"
#include "offload/planner.h"
#include "offload/streaming_store.h"
#include "quant/synthetic.h"
#include "runtime/model.h"
#include "runtime/parallel.h"
#include "tools/glm_bench/report.h"
#include "tools/glm_bench/run.h"
#include "tools/tool_util.h"

DEFINE_string(model, "", "model file(s), comma-separated (e.g. an f16 and an int8 file)");
DEFINE_string(synthetic, "",
              "benchmark a synthetic model of this preset instead: tiny | small | "
              "medium | demo | glm130b-L<n> (GLM-130B's layer shapes, n layers)");
DEFINE_int32(layers, 0, "override the synthetic preset's layer count");
DEFINE_string(workdir, ".", "where --synthetic writes its model file (use a real disk)");
DEFINE_bool(keep, false, "keep the synthetic model file (and reuse it next time)");
DEFINE_string(host_mem, "0,50%,full",
              "host budgets, comma-separated: sizes (1.5G, 800M), "
              "percentages of the model, 0 (nothing resident) or full");
DEFINE_string(batch, "1", "batch sizes (sequences decoded together), comma-separated");
DEFINE_string(prefetch_depth, "auto", "prefetch depths, comma-separated; auto: the planner's");
DEFINE_int32(prompt, 8, "prompt tokens per sequence (the prefill step)");
DEFINE_int32(decode_steps, 4, "decode steps timed per configuration");
DEFINE_string(block_size, "4M", "I/O block size");
DEFINE_int32(queue_depth, 8, "I/O queue depth (blocks in flight)");
DEFINE_string(io_engine, "auto", "auto | uring | pread");
DEFINE_bool(o_direct, true, "read with O_DIRECT (falls back, logged, where refused)");
DEFINE_string(bw_bytes, "2G",
              "bytes read per pass to measure the disk's sequential bandwidth (256 MiB chunks "
              "spread over the whole file; see --probe_passes)");
DEFINE_int32(probe_passes, 3,
             "passes of the disk probe: the first warms the disk up, the mean rate of the "
             "others counts (with 1, that one)");
DEFINE_bool(probe_each, true,
            "measure the disk bandwidth again before every configuration (the "
            "bound then uses the disk as it is at that moment; shared disks drift)");
DEFINE_bool(paired_probe, true,
            "streamed configurations: a second pass of decode steps, each after a probe of "
            "the disk (one step's streamed bytes, the store's reads finished); prints "
            "measured / bound with each step's bound from the rate probed just before it");
DEFINE_bool(calibrate_each, true,
            "time compute alone again before every configuration (the "
            "bound then uses the CPU as it is at that moment; shared machines drift)");
DEFINE_bool(baseline, true, "also time the plain loop: buffered pread, no prefetch, cold cache");
DEFINE_bool(drop_system_caches, false,
            "also write 3 to /proc/sys/vm/drop_caches before the "
            "bandwidth probe and each baseline step (root; affects the whole machine)");
DEFINE_bool(huge_pages, false,
            "the globals and resident layers (and the compute calibration's copy) on 2 MiB "
            "transparent huge pages, as glm-generate --huge-pages holds them");
DEFINE_bool(verify, false, "verify every extent's checksum as it is read");
DEFINE_bool(json, false, "one JSON object per configuration on stdout (the table goes to stderr)");
DEFINE_bool(quiet, false, "no progress display");
DEFINE_bool(verbose, false, "per-layer read/wait/compute times and the allocation ledger");
DEFINE_string(gpu_mem, "",
              "GPU mode: device budgets, comma-separated (0: all device memory). Runs GLM-130B's "
              "layer shapes (--synthetic glm130b-L<n>, default 70 layers) with synthetic weights "
              "made in pinned host memory; see docs/glm-bench.md");
DEFINE_string(gpu_dtype, "i4", "GPU mode: linear weights f16, i8 or i4");
DEFINE_int32(gpu_group, 0, "GPU mode, quantized: 0 = one scale per row, else per G inputs");
DEFINE_int32(gpu_distinct, 2, "GPU mode: distinct layer copies in pinned host memory");
DEFINE_int32(gpu_slots, 2, "GPU mode: device staging slots for streamed layers");
DEFINE_bool(gpu_probe, false, "GPU mode: also time each linear kernel alone at GLM-130B's shapes");

namespace glm {
namespace {

const char* kTool = "glm-bench";
using Clock = std::chrono::steady_clock;

void DropSystemCaches() {
  if (!FLAGS_drop_system_caches) return;
  sync();
  std::ofstream f("/proc/sys/vm/drop_caches");
  if (f) f << "3\n";
  if (!f) WarnOnce("drop_caches", "cannot write /proc/sys/vm/drop_caches (not root?)");
}

struct Budget {
  std::string label;
  uint64_t bytes = 0;  // 0 with none/full: derived from the plan
  bool none = false, full = false;
};

constexpr int kResidentReps = 5;
// The part of the process's fixed overhead that appears after the RSS before opening is read:
// the store's I/O thread (stack, malloc arena), its io_uring ring, and code run for the first
// time. On the tiny model, repeated runs peaked from 0.26 MiB under to 0.18 MiB over the limit
// without it.
constexpr uint64_t kRssAllowance = 1ull << 20;
constexpr uint64_t kProbeChunk = 256ull << 20;  // the probe's read buffer

struct Bench {
  std::string path, name;
  HostFootprint fp;
  ReaderOptions reader;
  uint64_t bw_bytes = 0, data_offset = 0;
  double disk_bps = 0;
  Progress* progress = nullptr;
  double done_units = 0, total_units = 1;

  // The disk's sequential O_DIRECT bandwidth with the streaming reader, from the page cache's
  // point of view cold (O_DIRECT bypasses it; the file is dropped anyway).
  void Probe() {
    std::string why;
    if (!DropFileCache(path, &why)) WarnOnce("fadvise", "posix_fadvise DONTNEED: " + why);
    DropSystemCaches();
    auto f = GgufFile::Open(path);
    if (!f.ok()) Die(kTool, f.status());
    data_offset = (*f)->data_offset();
    // The sustained rate: the first pass warms the disk up and is not counted when there are
    // more; the rate is the mean over the others (total bytes / total time). A decode step
    // streams for seconds on end, so the sustained rate is the one it can get. On the
    // development VM's virtual disk the first pass after a pause read 1.4-1.65 GB/s and the
    // next ones 0.94-1.21, which is what streamed steps got (1.08-1.21); the fastest pass,
    // used at first, overstated the disk by up to 1.8x. On a local NVMe the passes agree.
    uint64_t bytes = 0;
    double seconds = 0;
    std::string passes, describe;
    const int n = std::max(1, FLAGS_probe_passes);
    for (int pass = 0; pass < n; ++pass) {
      auto one = MeasureSequentialRead(path, reader, data_offset, bw_bytes, kProbeChunk,
                                       /*spread=*/true);
      if (!one.ok()) Die(kTool, one.status());
      passes += StrFormat("%s%.2f", pass ? ", " : "", one->bytes_per_s / 1e9);
      if (pass > 0 || n == 1) {
        bytes += one->bytes;
        seconds += one->seconds;
      }
      describe = one->reader;
    }
    disk_bps = seconds > 0 ? double(bytes) / seconds : 0;
    std::fprintf(stderr, "\n%s: disk: %s in %.2f s = %.2f GB/s sustained (passes %s GB/s; %s)\n",
                 kTool, FormatBytes(bytes).c_str(), seconds, disk_bps / 1e9, passes.c_str(),
                 describe.c_str());
  }

  void Tick(const std::string& what, double units) {
    done_units += units;
    if (progress) progress->Update(std::min(1.0, done_units / total_units), what);
  }

  // Compute alone at this batch: every layer served from memory, after a warm-up step
  // (first-touch page faults, thread start-up). Cached per batch unless --calibrate_each.
  struct Calibration {
    RunTimes run;
    std::vector<double> layer_s;  // [L] seconds per decode step
  };
  std::map<int, Calibration> calibrations;

  const Calibration& Calibrate(int batch) {
    auto it = calibrations.find(batch);
    if (it != calibrations.end() && !FLAGS_calibrate_each) return it->second;
    auto cstore = ComputeOnlyStore::Open(path, reader, FLAGS_huge_pages);
    if (!cstore.ok()) Die(kTool, cstore.status());
    auto warm = RunSteps(**cstore, batch, FLAGS_prompt, 1, nullptr, nullptr);
    if (!warm.ok()) Die(kTool, warm.status());
    auto run = RunSteps(
        **cstore, batch, FLAGS_prompt, FLAGS_decode_steps,
        [&](int step) {
          if (step == 1) (*cstore)->ResetStats();
        },
        [&](int step) {
          Tick(StrFormat("compute alone, batch %d", batch), 1.0 / (FLAGS_decode_steps + 1));
        });
    if (!run.ok()) Die(kTool, run.status());
    Calibration& c = calibrations[batch];
    c.run = *run;
    c.layer_s = (*cstore)->layer_compute_s();
    for (double& x : c.layer_s) x /= FLAGS_decode_steps;
    std::fprintf(stderr, "\n%s: compute alone, batch %d: prefill %.1f ms, decode %.1f ms/step\n",
                 kTool, batch, c.run.prefill_s * 1e3, c.run.DecodeMean() * 1e3);
    return c;
  }

  // The plan for a budget at this batch, from the measured bandwidth and compute.
  StatusOr<Plan> PlanFor(const Budget& b, int depth, const RunTimes& compute,
                         const std::vector<double>& layer_s) {
    const int L = fp.cfg.num_layers;
    double sum_layers = 0;
    for (double s : layer_s) sum_layers += s;
    PlanInput in{.globals_bytes = fp.globals_bytes,
                 .layer_bytes = fp.layer_bytes,
                 .disk_bytes_per_s = disk_bps,
                 .layer_compute_s = sum_layers / L,
                 .globals_compute_s = std::max(0.0, compute.DecodeMean() - sum_layers),
                 .prefetch_depth = depth,
                 .kv_bytes = compute.kv_bytes,
                 .activation_bytes = compute.activation_bytes};
    uint64_t total = fp.globals_bytes;
    for (uint64_t x : fp.layer_bytes) total += x;
    if (b.full) {
      in.budget_bytes = total;
      return MakePlan(in);
    }
    if (!b.none) {
      in.budget_bytes = b.bytes;
      return MakePlan(in);
    }
    in.stream_all = true;  // "0": no resident layer, the best slot count
    return MakePlan(in);
  }

  // The bound taken step by step: a second pass of decode steps, each one preceded (untimed)
  // by a probe of as many bytes as a step streams, read once the store's own reads (the
  // read-ahead into the step) have finished. A step is then set against the disk as it was
  // seconds before, not minutes: on a shared or virtual disk whose rate swings by tens of per
  // cent within a minute, the one probe per configuration cannot bound each step. A step's
  // bytes are those its reads completed inside it; the step starts with the staging slots
  // already filled, so those reads are fewer than a step streams and its time is set against
  // only them (the bound errs low, against us).
  void PairedPass(StreamingStore& s, const Plan& plan, Result* r) {
    const uint64_t streamed = plan.streamed_bytes_per_step;
    const int steps = FLAGS_decode_steps;
    std::vector<double> rates, step_bytes;
    uint64_t before = 0;
    auto run = RunSteps(
        s, r->batch, FLAGS_prompt, steps,
        [&](int step) {
          if (step == 0) return;
          s.WaitForReads();
          auto p = MeasureSequentialRead(path, reader, data_offset, streamed, kProbeChunk,
                                         /*spread=*/true);
          if (!p.ok()) Die(kTool, p.status());
          rates.push_back(p->bytes_per_s);
          before = s.stats().bytes_read;
        },
        [&](int step) {
          if (step > 0) step_bytes.push_back(double(s.stats().bytes_read - before));
          Tick(StrFormat("paired probe %s batch %d: step %d/%d", r->budget_label.c_str(), r->batch,
                         step + 1, steps + 1),
               1.0 / (steps + 1));
        });
    if (!run.ok()) Die(kTool, run.status());
    std::vector<double> ratios;
    std::string pairs;
    for (size_t i = 0; i < run->decode_s.size(); ++i) {
      const double bound = std::max(step_bytes[i] / rates[i], r->compute_ms_step / 1e3);
      ratios.push_back(run->decode_s[i] / bound);
      pairs += StrFormat("%s%.0f/%.0f ms at %.2f GB/s", i ? ", " : "", run->decode_s[i] * 1e3,
                         bound * 1e3, rates[i] / 1e9);
    }
    r->paired_disk_gbps = Median(rates) / 1e9;
    r->paired_ratio = Median(ratios);
    std::fprintf(stderr,
                 "paired probe: %s per probe; step/bound: %s -> median measured / bound %.2fx "
                 "(disk %.2f GB/s)\n",
                 FormatBytes(streamed).c_str(), pairs.c_str(), r->paired_ratio,
                 r->paired_disk_gbps);
  }

  Result RunConfig(const Budget& b, int batch, int depth) {
    Result r;
    r.model = name;
    r.budget_label = b.label;
    r.batch = batch;
    r.layers = fp.cfg.num_layers;
    if (FLAGS_probe_each) Probe();
    const Calibration& cal = Calibrate(batch);  // copies: a later call may replace it
    const RunTimes compute = cal.run;
    const std::vector<double> layer_s = cal.layer_s;
    r.disk_gbps = disk_bps / 1e9;
    auto plan = PlanFor(b, depth, compute, layer_s);
    if (!plan.ok()) {
      r.error = plan.status().message();
      std::fprintf(stderr, "\n%s: budget %s, batch %d: %s\n", kTool, b.label.c_str(), batch,
                   r.error.c_str());
      Tick("skipped", 1 + FLAGS_baseline + FLAGS_paired_probe);
      return r;
    }
    const uint64_t budget = b.none || b.full ? plan->total_bytes() : b.bytes;
    plan->budget_bytes = budget;
    r.budget_bytes = budget;
    r.resident = plan->resident_count;
    r.slots = plan->staging_slots;
    r.depth = plan->prefetch_depth;
    r.on_demand = plan->on_demand;
    r.bound_ms_step = plan->bound_s * 1e3;
    r.predicted_ms_step = plan->predicted_s * 1e3;
    r.compute_ms_step = plan->compute_s * 1e3;
    const double io_prefill = plan->io_s;
    r.prefill_bound_ms_tok =
        std::max(io_prefill, compute.prefill_s) * 1e3 / (double(batch) * FLAGS_prompt);
    std::fprintf(stderr, "\n== budget %s, batch %d, depth %s\n%s\n", b.label.c_str(), batch,
                 depth < 0 ? "auto" : std::to_string(depth).c_str(), plan->ToString().c_str());

    // Ours: O_DIRECT through io_uring, prefetch as planned.
    ResetPeakRss();
    const uint64_t rss0 = CurrentRssBytes();
    {
      const auto t0 = Clock::now();
      auto store =
          StreamingStore::Open(path, StreamingOptions{.reader = reader,
                                                      .budget_bytes = budget,
                                                      .resident = plan->resident,
                                                      .staging_slots = plan->staging_slots,
                                                      .prefetch_depth = plan->prefetch_depth,
                                                      .on_demand = plan->on_demand,
                                                      .verify_checksums = FLAGS_verify,
                                                      .verbose = FLAGS_verbose,
                                                      .huge_pages = FLAGS_huge_pages});
      if (!store.ok()) {
        r.error = store.status().message();
        Tick("failed", 1 + FLAGS_baseline + FLAGS_paired_probe);
        return r;
      }
      r.open_s = std::chrono::duration<double>(Clock::now() - t0).count();
      StreamingStore& s = **store;
      r.huge_pages = FLAGS_huge_pages;
      r.open_huge_bytes = s.stats().open_huge_bytes;
      ReaderStats reader0;
      const int steps = FLAGS_decode_steps;
      auto run = RunSteps(
          s, batch, FLAGS_prompt, steps,
          [&](int step) {
            if (step == 1) {
              s.ResetStats();
              reader0 = s.stats().reader;
            }
          },
          [&](int step) {
            Tick(StrFormat("budget %s batch %d: step %d/%d", b.label.c_str(), batch, step + 1,
                           steps + 1),
                 1.0 / (steps + 1));
          });
      if (!run.ok()) {
        r.error = run.status().message();
        return r;
      }
      const StreamingStats st = s.stats();
      const double io_busy = st.reader.busy_s - reader0.busy_s;
      r.mean_in_flight = io_busy > 0 ? (st.reader.block_s - reader0.block_s) / io_busy : 0;
      r.peak_rss = PeakRssBytes();
      r.kv_bytes = run->kv_bytes;
      r.act_bytes = run->activation_bytes;
      r.rss_limit = rss0 + budget + run->kv_bytes + run->activation_bytes + kRssAllowance;
      r.prefill_ms_tok = run->prefill_s * 1e3 / (double(batch) * FLAGS_prompt);
      r.decode_ms_step = run->DecodeMean() * 1e3;
      double wait = 0, decode_total = run->DecodeMean() * steps;
      double busy = 0;
      for (const LayerTiming& lt : st.layers) {
        wait += lt.wait_s;
        busy += lt.read_s;
      }
      r.wait_ms_step = wait * 1e3 / steps;
      r.busy_ms_step = busy * 1e3 / steps;
      r.busy_gbps = busy > 0 ? double(st.bytes_read) / busy / 1e9 : 0;
      r.read_gbps = decode_total > 0 ? double(st.bytes_read) / decode_total / 1e9 : 0;
      std::fprintf(
          stderr,
          "\nmeasured: decode %.1f ms/step (%.1f ms/token), predicted %.1f (%.2fx), "
          "bound %.1f (%.2fx); prefill %.2f ms/token (bound %.2f); read %.2f GB/s of "
          "%.2f; waited %.1f ms/step; open %.2f s\n"
          "disk: busy %.1f ms/step (%.0f%% of the step) at %.2f GB/s while busy, %.1f of %d "
          "blocks in flight on average -> measured / max(busy, compute) %.2fx\n"
          "memory: peak RSS %s <= %s = RSS before open %s + budget %s + KV %s + "
          "activations %s + %s (the store's I/O thread and ring, code first run): %s\n",
          r.decode_ms_step, r.decode_ms_step / batch, r.predicted_ms_step,
          r.predicted_ms_step > 0 ? r.decode_ms_step / r.predicted_ms_step : 0, r.bound_ms_step,
          r.bound_ms_step > 0 ? r.decode_ms_step / r.bound_ms_step : 0, r.prefill_ms_tok,
          r.prefill_bound_ms_tok, r.read_gbps, r.disk_gbps, r.wait_ms_step, r.open_s,
          r.busy_ms_step, r.decode_ms_step > 0 ? 100.0 * r.busy_ms_step / r.decode_ms_step : 0.0,
          r.busy_gbps, r.mean_in_flight, reader.queue_depth,
          r.decode_ms_step / std::max({r.busy_ms_step, r.compute_ms_step, 1e-9}),
          FormatBytes(r.peak_rss).c_str(), FormatBytes(r.rss_limit).c_str(),
          FormatBytes(rss0).c_str(), FormatBytes(budget).c_str(), FormatBytes(r.kv_bytes).c_str(),
          FormatBytes(r.act_bytes).c_str(), FormatBytes(kRssAllowance).c_str(),
          r.peak_rss <= r.rss_limit ? "ok" : "OVER");
      if (FLAGS_paired_probe && plan->resident_count < r.layers) {
        PairedPass(s, *plan, &r);
      } else if (FLAGS_paired_probe) {
        Tick("", 1);
      }
      if (plan->resident_count == r.layers) {
        // The store against the same resident layers without it, alternated so that the
        // machine's drift (this VM's compute rate moves by +-20% within minutes) cancels.
        auto direct = DirectStore::Of(s);
        if (!direct.ok()) Die(kTool, direct.status());
        std::vector<double> through, without;
        for (int rep = 0; rep < kResidentReps; ++rep) {
          auto a = RunSteps(**direct, batch, FLAGS_prompt, steps, nullptr, nullptr);
          auto b2 = RunSteps(s, batch, FLAGS_prompt, steps, nullptr, nullptr);
          if (!a.ok()) Die(kTool, a.status());
          if (!b2.ok()) Die(kTool, b2.status());
          without.push_back(a->DecodeMean());
          through.push_back(b2->DecodeMean());
        }
        r.resident_store_ms_step = Median(through) * 1e3;
        r.resident_direct_ms_step = Median(without) * 1e3;
        std::string pairs;
        for (int rep = 0; rep < kResidentReps; ++rep) {
          pairs += StrFormat("%s%.1f/%.1f", rep ? ", " : "", through[size_t(rep)] * 1e3,
                             without[size_t(rep)] * 1e3);
        }
        std::fprintf(stderr,
                     "fully resident: %.1f ms/step through the store, %.1f ms/step on the same "
                     "layers without it (medians of %d alternated runs: %s) -> %.3fx\n",
                     r.resident_store_ms_step, r.resident_direct_ms_step, kResidentReps,
                     pairs.c_str(), r.resident_store_ms_step / r.resident_direct_ms_step);
      }
      if (FLAGS_verbose) {
        std::fprintf(stderr, "layer  resident  reads  read ms  wait ms/step  compute ms/step\n");
        for (int l = 0; l < r.layers; ++l) {
          const LayerTiming& lt = st.layers[size_t(l)];
          std::fprintf(stderr, "%5d  %8s  %5lld  %7.2f  %12.2f  %15.2f\n", l,
                       plan->resident[size_t(l)] ? "yes" : "no", (long long)lt.reads,
                       lt.reads ? lt.read_s * 1e3 / double(lt.reads) : 0.0, lt.wait_s * 1e3 / steps,
                       lt.compute_s * 1e3 / steps);
        }
      }
    }
    if (FLAGS_baseline && plan->resident_count < r.layers) {
      // The plain loop: same residency, each streamed layer read when asked for, through the
      // page cache after dropping the file from it (cold, as a model larger than RAM would be).
      auto store =
          StreamingStore::Open(path, StreamingOptions{.reader = {.engine = IoEngine::kPread,
                                                                 .o_direct = false,
                                                                 .block_bytes = reader.block_bytes,
                                                                 .queue_depth = 1},
                                                      .resident = plan->resident,
                                                      .staging_slots = 1,
                                                      .prefetch_depth = 0,
                                                      .on_demand = true});
      if (store.ok()) {
        auto run = RunSteps(
            **store, batch, FLAGS_prompt, FLAGS_decode_steps,
            [&](int) {
              DropFileCache(path);
              DropSystemCaches();
            },
            [&](int step) {
              Tick(StrFormat("baseline %s batch %d: step %d", b.label.c_str(), batch, step + 1),
                   1.0 / (FLAGS_decode_steps + 1));
            });
        if (run.ok()) {
          r.baseline_ms_step = run->DecodeMean() * 1e3;
          std::fprintf(stderr,
                       "\nbaseline (buffered pread, no prefetch, cold): decode %.1f "
                       "ms/step -> speed-up %.2fx\n",
                       r.baseline_ms_step, r.baseline_ms_step / r.decode_ms_step);
        }
      }
    } else if (FLAGS_baseline) {
      Tick("", 1);
    }
    return r;
  }
};

StatusOr<std::vector<Budget>> ParseBudgets(const std::string& spec, uint64_t model_bytes) {
  std::vector<Budget> out;
  for (const std::string& item : SplitItems(spec)) {
    if (item.empty()) continue;
    Budget b{.label = item};
    if (item == "0" || item == "none") {
      b.none = true;
    } else if (item == "full" || item == "all") {
      b.full = true;
    } else if (item.back() == '%') {
      const double pct = std::strtod(item.c_str(), nullptr);
      if (!(pct > 0 && pct <= 100)) return Errorf("--host-mem: bad percentage '%s'", item.c_str());
      b.bytes = uint64_t(double(model_bytes) * pct / 100);
    } else {
      ASSIGN_OR_RETURN(b.bytes, ParseBytes(item));
    }
    out.push_back(b);
  }
  if (out.empty()) return Errorf("--host-mem: no budget given");
  return out;
}

StatusOr<std::vector<int>> ParseInts(const std::string& spec, const char* flag, int lo,
                                     bool allow_auto) {
  std::vector<int> out;
  for (const std::string& item : SplitItems(spec)) {
    if (item.empty()) continue;
    if (allow_auto && item == "auto") {
      out.push_back(-1);
      continue;
    }
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (*end != '\0' || v < lo || v > 4096) {
      return Errorf("%s: '%s' is not an integer >= %d", flag, item.c_str(), lo);
    }
    out.push_back(int(v));
  }
  if (out.empty()) return Errorf("%s: empty list", flag);
  return out;
}

// Writes the synthetic model (or reuses a kept one). Returns the path and whether we created it.
std::pair<std::string, bool> SyntheticModel(bool quiet) {
  auto cfg = SyntheticPreset(FLAGS_synthetic);
  if (!cfg.ok()) Die(kTool, cfg.status());
  if (FLAGS_layers > 0) cfg->num_layers = FLAGS_layers;
  const std::string path = FLAGS_workdir + "/glm-bench-" + FLAGS_synthetic +
                           (FLAGS_layers > 0 ? StrFormat("-L%d", cfg->num_layers) : std::string()) +
                           ".gguf";
  if (access(path.c_str(), R_OK) == 0) {
    auto f = GgufFile::Open(path);
    if (f.ok() && ReadModelConfig(**f).ok()) {
      std::fprintf(stderr, "%s: reusing %s\n", kTool, path.c_str());
      return {path, false};
    }
  }
  std::fprintf(stderr, "%s: writing synthetic model %s (%s) to %s\n", kTool,
               FLAGS_synthetic.c_str(), cfg->ToString().c_str(), path.c_str());
  Progress progress(quiet);
  const Status st = WriteSyntheticModel(path, *cfg, 1, [&](uint64_t done, uint64_t total) {
    progress.Update(double(done) / double(total),
                    StrFormat("%.2f/%.2f GB", done / 1e9, total / 1e9));
  });
  progress.Done();
  if (!st.ok()) Die(kTool, st, "--workdir must be writable with room for the model");
  return {path, true};
}

// Runs bench-gpu (args[0]) to completion with the given arguments; returns its exit status. A
// bench-gpu built without CUDA (status 77) ends glm-bench with the reason.
int RunBenchGpu(std::vector<std::string> args) {
  std::vector<char*> argv;
  std::string line;
  for (std::string& a : args) {
    argv.push_back(a.data());
    line += (line.empty() ? "" : " ") + a;
  }
  argv.push_back(nullptr);
  std::fprintf(stderr, "%s: running %s\n", kTool, line.c_str());
  std::fflush(stdout);
  pid_t pid = 0;
  const int err = posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ);
  if (err != 0) Die(kTool, Errorf("cannot run %s: %s", argv[0], std::strerror(err)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  if (code == 77) {
    Die(kTool, Errorf("%s was built without CUDA", argv[0]),
        "configure with -DGLM_CUDA=ON where nvcc is installed");
  }
  return code;
}

// --gpu-mem: the GPU benchmark is bench-gpu's (bench/bench_gpu.cc, which the device check
// runs). glm-bench runs that program from its own directory, once per batch size, rather than
// link the CUDA libraries: loading them costs every CPU run about 150 MiB of RSS.
int MainGpu() {
  // Model files (each run through the GPU tier's file source), or synthetic GLM-130B layers.
  std::vector<std::string> models;
  int layers = 0;
  if (!FLAGS_model.empty()) {
    if (!FLAGS_synthetic.empty()) Die(kTool, Errorf("give --model or --synthetic, not both"));
    for (const std::string& m : SplitItems(FLAGS_model)) {
      if (m.empty()) Die(kTool, Errorf("--model '%s' has an empty item", FLAGS_model.c_str()));
      models.push_back(m);
    }
  } else {
    const std::string preset = FLAGS_synthetic.empty() ? "glm130b-L70" : FLAGS_synthetic;
    if (preset.rfind("glm130b-L", 0) != 0) {
      Die(kTool, Errorf("--gpu-mem with --synthetic %s: the GPU benchmark has GLM-130B's layer "
                        "shapes only (--synthetic glm130b-L<n>), or a model file (--model)",
                        preset.c_str()));
    }
    auto cfg = SyntheticPreset(preset);
    if (!cfg.ok()) Die(kTool, cfg.status());
    layers = FLAGS_layers > 0 ? FLAGS_layers : cfg->num_layers;
    models.push_back("");
  }
  auto budgets = ParseByteList(FLAGS_gpu_mem);
  if (!budgets.ok()) Die(kTool, budgets.status().WithContext("--gpu-mem"));
  auto batches = ParseInts(FLAGS_batch, "--batch", 1, false);
  if (!batches.ok()) Die(kTool, batches.status());
  const std::string exe = SiblingProgram("bench-gpu");
  if (access(exe.c_str(), X_OK) != 0) {
    Die(kTool, Errorf("--gpu-mem runs %s, which is not built", exe.c_str()),
        "it needs CUDA: configure where nvcc is installed, then build the bench-gpu target");
  }
  int rc = 0;
  for (const std::string& model : models) {
    for (int batch : *batches) {
      std::vector<std::string> args = {
          exe,
          model.empty() ? "--dtype=" + FLAGS_gpu_dtype : "--model=" + model,
          StrFormat("--group=%d", FLAGS_gpu_group),
          StrFormat("--layers=%d", layers),
          "--gpu_mem=" + FLAGS_gpu_mem,
          StrFormat("--prompt=%d", FLAGS_prompt),
          StrFormat("--decode=%d", FLAGS_decode_steps),
          StrFormat("--batch=%d", batch),
          StrFormat("--distinct=%d", FLAGS_gpu_distinct),
          StrFormat("--slots=%d", FLAGS_gpu_slots),
          FLAGS_gpu_probe ? "--probe" : "--noprobe",
          FLAGS_quiet ? "--quiet" : "--noquiet"};
      rc = std::max(rc, RunBenchGpu(std::move(args)));
    }
  }
  return rc;
}

int Main() {
  if (!FLAGS_gpu_mem.empty()) return MainGpu();
  if (FLAGS_model.empty() == FLAGS_synthetic.empty()) {
    Die(kTool, Errorf("give exactly one of --model FILE or --synthetic PRESET"));
  }
  if (FLAGS_prompt < 1 || FLAGS_decode_steps < 1) {
    Die(kTool, Errorf("--prompt and --decode_steps must be >= 1"));
  }
  auto batches = ParseInts(FLAGS_batch, "--batch", 1, false);
  if (!batches.ok()) Die(kTool, batches.status());
  auto depths = ParseInts(FLAGS_prefetch_depth, "--prefetch_depth", 0, true);
  if (!depths.ok()) Die(kTool, depths.status());
  auto block = ParseBytes(FLAGS_block_size);
  if (!block.ok()) Die(kTool, block.status().WithContext("--block_size"));
  auto bw_bytes = ParseBytes(FLAGS_bw_bytes);
  if (!bw_bytes.ok()) Die(kTool, bw_bytes.status().WithContext("--bw_bytes"));
  ReaderOptions reader{
      .o_direct = FLAGS_o_direct, .block_bytes = *block, .queue_depth = FLAGS_queue_depth};
  if (FLAGS_io_engine == "uring") {
    reader.engine = IoEngine::kUring;
  } else if (FLAGS_io_engine == "pread") {
    reader.engine = IoEngine::kPread;
  } else if (FLAGS_io_engine != "auto") {
    Die(kTool, Errorf("--io_engine: '%s' (auto, uring or pread)", FLAGS_io_engine.c_str()));
  }

  std::vector<std::pair<std::string, bool>> models;  // path, created by us
  if (!FLAGS_synthetic.empty()) {
    models.push_back(SyntheticModel(FLAGS_quiet));
  } else {
    for (const std::string& m : SplitItems(FLAGS_model)) {
      if (!m.empty()) models.push_back({m, false});
    }
  }
  std::fprintf(stderr, "%s: machine: %s\n", kTool, MachineLine(models[0].first).c_str());
  std::fprintf(stderr,
               "%s: prompt %d tokens, %d decode steps, batches %s, budgets %s, depth %s, "
               "%s blocks, queue depth %d\n",
               kTool, FLAGS_prompt, FLAGS_decode_steps, FLAGS_batch.c_str(), FLAGS_host_mem.c_str(),
               FLAGS_prefetch_depth.c_str(), FormatBytes(reader.block_bytes).c_str(),
               reader.queue_depth);

  std::vector<Result> results;
  Progress progress(FLAGS_quiet);
  for (const auto& [path, created] : models) {
    Bench bench;
    bench.path = path;
    bench.name = path.substr(path.rfind('/') + 1);
    bench.reader = reader;
    bench.progress = &progress;
    {
      auto f = GgufFile::Open(path);
      if (!f.ok()) Die(kTool, f.status(), "create one with glm-synth or glm-quantize");
      auto fp = ReadHostFootprint(**f);
      if (!fp.ok()) Die(kTool, fp.status());
      bench.fp = *fp;
      uint64_t total = fp->globals_bytes;
      for (uint64_t x : fp->layer_bytes) total += x;
      std::fprintf(stderr, "%s: model %s: %s, %s weights, %s (globals %s, %d layers of %s)\n",
                   kTool, path.c_str(), fp->cfg.ToString().c_str(), fp->weight_type.c_str(),
                   FormatBytes(total).c_str(), FormatBytes(fp->globals_bytes).c_str(),
                   fp->cfg.num_layers, FormatBytes(fp->layer_bytes[0]).c_str());
      auto budgets = ParseBudgets(FLAGS_host_mem, total);
      if (!budgets.ok()) Die(kTool, budgets.status());
      bench.bw_bytes = *bw_bytes;
      bench.Probe();
      bench.total_units = double(batches->size() * budgets->size() * depths->size()) *
                          (1 + FLAGS_baseline + FLAGS_calibrate_each + FLAGS_paired_probe);
      for (int batch : *batches) {
        for (int depth : *depths) {
          for (const Budget& b : *budgets) {
            results.push_back(bench.RunConfig(b, batch, depth));
            if (FLAGS_json) std::printf("%s\n", JsonLine(results.back()).c_str());
            std::fflush(stdout);
          }
        }
      }
    }
    if (created && !FLAGS_keep) unlink(path.c_str());
  }
  progress.Done();

  FILE* out = FLAGS_json ? stderr : stdout;
  PrintTable(out, results);
  return 0;
}

}  // namespace
}  // namespace glm

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "glm-bench (--model FILE | --synthetic PRESET) [--host-mem 0,1.5G,full] [--batch 1,4] "
      "[--prefetch-depth auto,1,2] [--json]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  return glm::Main();
}
