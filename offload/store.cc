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
  if (opts.host_mem_bytes == 0 && opts.huge_pages) {  // every layer resident, no budget
    int L = 0;
    {
      ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
      StatusOr<HostFootprint> layout = ReadHostFootprint(*f);
      if (!layout.ok()) {  // a file only the mapped store runs (compressed, TP > 1)
        return Errorf("--huge-pages: %s; without --huge-pages the file is mapped",
                      layout.status().message().c_str());
      }
      L = layout->cfg.num_layers;
    }
    if (opts.verbose) {
      std::fprintf(stderr, "plan: the whole model read into memory on huge pages, no budget\n");
    }
    const StreamingOptions so{.reader = opts.reader,
                              .resident = std::vector<bool>(size_t(L), true),
                              .staging_slots = 0,
                              .verify_checksums = opts.verify_checksums,
                              .verbose = opts.verbose,
                              .huge_pages = true,
                              .load_progress = opts.load_progress};
    ASSIGN_OR_RETURN(std::unique_ptr<StreamingStore> s, StreamingStore::Open(path, so));
    return std::unique_ptr<WeightStore>(std::move(s));
  }
  if (opts.host_mem_bytes == 0) {
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
    ASSIGN_OR_RETURN(layout, ReadHostFootprint(*f));
  }
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
  const StreamingOptions so{.reader = opts.reader,
                            .budget_bytes = opts.host_mem_bytes,
                            .resident = plan.resident,
                            .staging_slots = plan.staging_slots,
                            .prefetch_depth = plan.prefetch_depth,
                            .on_demand = plan.on_demand,
                            .verify_checksums = opts.verify_checksums,
                            .verbose = opts.verbose,
                            .huge_pages = opts.huge_pages,
                            .load_progress = opts.load_progress};
  ASSIGN_OR_RETURN(std::unique_ptr<StreamingStore> s, StreamingStore::Open(path, so));
  return std::unique_ptr<WeightStore>(std::move(s));
}

}  // namespace glm
