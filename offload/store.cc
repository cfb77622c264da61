// OpenWeightStore: picks the store for the budgets given.
#include "offload/store.h"

#include "offload/model_file.h"

namespace glm {

StatusOr<std::unique_ptr<WeightStore>> OpenWeightStore(const std::string& path,
                                                       const StoreOptions& opts) {
  if (opts.gpu_mem_bytes != 0) {
    return Errorf("--gpu-mem: this build has no GPU tier");
  }
  if (opts.host_mem_bytes != 0) {
    return Errorf("--host-mem: the streaming store is not implemented in this build yet");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<MmapStore> s, MmapStore::Open(path));
  return std::unique_ptr<WeightStore>(std::move(s));
}

}  // namespace glm
