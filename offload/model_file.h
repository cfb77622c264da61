// The glmstream model file: a GGUF v3 file with architecture "glm130b" (ARCHITECTURE.md, "Model
// file"). This module names its metadata keys, lays out its tensors (extent 0 = embedding and
// final LayerNorm, extent 1+l = layer l, each one contiguous 4096-aligned range), reads the
// config back, and serves the weights to the forward loop from a memory-mapped file.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "offload/gguf.h"
#include "runtime/config.h"
#include "runtime/weights.h"

namespace glm {

inline constexpr char kArchitecture[] = "glm130b";
inline constexpr uint32_t kFileAlignment = 4096;  // O_DIRECT reads need block-aligned extents

// Extent holding layer l's tensors, and the one with the model-level tensors.
inline int LayerExtent(int layer) { return layer + 1; }
inline constexpr int kGlobalExtent = 0;

// Writes general.* and glm130b.* metadata (config, special tokens, weight type).
void WriteModelMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name);
// Declares every tensor of ForEachTensor in file order with its extent (f16 weights).
void DeclareModelTensors(GgufWriter& w, const ModelConfig& cfg);
// Reads the config back; errors name the missing or invalid key.
StatusOr<ModelConfig> ReadModelConfig(const GgufFile& f);

// Views of layer `layer`'s tensors inside a buffer holding the bytes of its extent
// (`extent_base` = the extent's first byte, wherever it was loaded: mapping, staging slot, GPU).
// Checks every tensor's presence, extent, type and shape; errors name the file and tensor.
Status BindLayer(const GgufFile& f, const ModelConfig& cfg, int layer, const void* extent_base,
                 LayerWeights* out);
// The same for the model-level tensors (extent kGlobalExtent).
Status BindGlobals(const GgufFile& f, const ModelConfig& cfg, const void* extent_base,
                   GlobalWeights* out);

// Serves weights straight from a read-only mapping of the file: the page cache holds what is
// used. Every tensor of the model is checked (present, type, shape) at Open.
class MmapStore : public WeightStore {
 public:
  static StatusOr<std::unique_ptr<MmapStore>> Open(const std::string& path);
  ~MmapStore() override;

  const ModelConfig& config() const override { return cfg_; }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> Acquire(int layer) override;
  void Release(int layer) override {}
  const GgufFile& file() const { return *file_; }

 private:
  MmapStore() = default;
  std::unique_ptr<GgufFile> file_;
  ModelConfig cfg_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  GlobalWeights globals_;
  std::vector<LayerWeights> layers_;
};

}  // namespace glm
