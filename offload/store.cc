// OpenWeightStore: picks the store for the budgets given. A host budget plans residency
// (offload/planner.h) and opens the streaming store (offload/streaming_store.h) with the plan.
#include "offload/store.h"

#include <cstdio>

#include "offload/model_file.h"
#include "offload/planner.h"
#include "offload/streaming_store.h"

namespace glm {

StatusOr<std::unique_ptr<WeightStore>> OpenWeightStore(const std::string& path,
                                                       const StoreOptions& opts) {
  if (opts.gpu_mem_bytes != 0) {
    return Errorf("--gpu-mem: this build has no GPU tier");
  }
  if (opts.host_mem_bytes == 0 && !opts.huge_pages) {
    if (opts.verify_checksums) {  // the mapped pages are read as the model runs: check them first
      ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
      RETURN_IF_ERROR(f->VerifyAll());
    }
    ASSIGN_OR_RETURN(std::unique_ptr<MmapStore> s, MmapStore::Open(path));
    return std::unique_ptr<WeightStore>(std::move(s));
  }
  HostFootprint layout;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
    StatusOr<HostFootprint> got = ReadHostFootprint(*f);
    if (!got.ok() && opts.host_mem_bytes == 0) {  // a file only the mapped store runs
      return Errorf("--huge-pages: %s; without --huge-pages the file is mapped",
                    got.status().message().c_str());
    }
    ASSIGN_OR_RETURN(layout, std::move(got));
  }
  StreamingOptions so{.reader = opts.reader,
                      .resident = {},  // below
                      .verify_checksums = opts.verify_checksums,
                      .verbose = opts.verbose,
                      .huge_pages = opts.huge_pages,
                      .load_progress = opts.load_progress};
  if (opts.host_mem_bytes == 0) {  // huge pages, no budget: every layer resident
    so.resident.assign(size_t(layout.cfg.num_layers), true);
    so.staging_slots = 0;
    if (opts.verbose) {
      std::fprintf(stderr, "plan: the whole model read into memory on huge pages, no budget\n");
    }
  } else {
    const PlanInput in{.budget_bytes = opts.host_mem_bytes,
                       .globals_bytes = layout.globals_bytes,
                       .layer_bytes = layout.layer_bytes,
                       .disk_bytes_per_s = opts.disk_bytes_per_s,
                       .layer_compute_s = opts.layer_compute_s,
                       .globals_compute_s = opts.globals_compute_s,
                       .prefetch_depth = opts.prefetch_depth,
                       .kv_bytes = opts.kv_bytes,
                       .activation_bytes = opts.activation_bytes};
    ASSIGN_OR_RETURN(Plan plan, MakePlan(in));
    if (opts.verbose) std::fprintf(stderr, "plan: %s\n", plan.ToString().c_str());
    so.budget_bytes = opts.host_mem_bytes;
    so.resident = plan.resident;
    so.staging_slots = plan.staging_slots;
    so.prefetch_depth = plan.prefetch_depth;
    so.on_demand = plan.on_demand;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<StreamingStore> s, StreamingStore::Open(path, so));
  return std::unique_ptr<WeightStore>(std::move(s));
}

}  // namespace glm
