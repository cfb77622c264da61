// The glmstream model file: a GGUF v3 file with architecture "glm130b" (ARCHITECTURE.md, "Model
// file"). This module names its metadata keys, lays out its tensors, reads the config and format
// back, binds views of a layer's tensors inside a buffer holding its bytes, and serves the weights
// to the forward loop from a memory-mapped file. The format is documented in docs/glm-quantize.md.
//
// Layout. Extent 0 holds the model-level tensors (embedding, final LayerNorm; never split).
// Extent 1 + l·N + r holds rank r's shard of layer l for a file with N tensor-parallel ranks
// (N = 1: extent 1 + l), each one contiguous 4096-aligned range a rank can read alone, with its
// tensors in LayerWeights order and each quantized weight followed by its scales:
//   blk.L.attn_qkv.weight        f16 [3HD, C], or I8 [3HD, C] (int8), or I8 [3HD, C/2] (int4)
//   blk.L.attn_qkv.weight_scale  f16 [3HD] (row scheme) or [3HD, C/G] (group scheme)
// For N > 1 every layer tensor of rank r is named blk.L.tpR.<name> and has the shard's shape
// (convert_tp.py's split, quant/tp.h); replicated tensors (LayerNorms, the two row-parallel
// biases) are stored in every rank's extent.
// Metadata: glmstream.weight_type = f16 | int8 | int4, glmstream.quant.scheme = row | group,
// glmstream.quant.group_size, glmstream.tensor_parallel = N; compressed files (quant/compress.h)
// add glmstream.compression and a logical tensor table.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "offload/gguf.h"
#include "quant/format.h"
#include "runtime/config.h"
#include "runtime/weights.h"

namespace glm {

inline constexpr char kArchitecture[] = "glm130b";
inline constexpr uint32_t kFileAlignment = 4096;  // O_DIRECT reads need block-aligned extents

// Extent holding layer l's tensors in a TP=1 file, and the one with the model-level tensors.
inline int LayerExtent(int layer) { return layer + 1; }
inline constexpr int kGlobalExtent = 0;
// Extent holding rank r's shard of layer l in a file with `tp` ranks.
inline int ShardExtent(int layer, int rank, int tp) { return 1 + layer * tp + rank; }

// How a file stores the weights.
struct ModelFileFormat {
  QuantScheme quant;  // the four linear weights per layer; everything else is f16
  int tp = 1;         // tensor-parallel ranks the layers are split into

  std::string ToString() const;  // "int4 group 128, TP=2"
};

// Writes general.* and glm130b.* metadata (config, special tokens) and the glmstream.* format
// keys. The first form writes an f16, TP=1 file's.
void WriteModelMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name);
void WriteModelMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name,
                        const ModelFileFormat& fmt);
// Reads the config back; errors name the missing or invalid key.
StatusOr<ModelConfig> ReadModelConfig(const GgufFile& f);
// Reads the format keys back (files without the quant keys are f16, without TP are TP=1).
StatusOr<ModelFileFormat> ReadModelFileFormat(const GgufFile& f);

// One tensor as stored in a model file.
struct FileTensor {
  enum class Role { kPlain, kQuantized, kScale };
  TensorSpec spec;  // the model tensor it stores (a shard of); spec.shape is the merged shape
  Role role = Role::kPlain;
  int rank = 0;  // tensor-parallel rank (0 for model-level tensors)
  std::string name;
  GgmlType type = GgmlType::kF16;
  std::vector<int64_t> shape;        // as stored: int4 data [N, K/2], scales [N] or [N, K/G]
  std::vector<int64_t> shard_shape;  // the shard's logical [rows, cols] (or [rows])
  int extent = 0;
  uint64_t bytes() const;
};
// Checks that `fmt` can store `cfg`: TP splits are exact, int4 rows even, groups divide rows.
Status CheckModelFileFormat(const ModelConfig& cfg, const ModelFileFormat& fmt);
// Visits every tensor of the file in file order (CheckModelFileFormat must hold).
void ForEachFileTensor(const ModelConfig& cfg, const ModelFileFormat& fmt,
                       const std::function<void(const FileTensor&)>& fn);
// Declares every tensor with its extent. The first form declares an f16, TP=1 file's.
void DeclareModelTensors(GgufWriter& w, const ModelConfig& cfg);
void DeclareModelTensors(GgufWriter& w, const ModelConfig& cfg, const ModelFileFormat& fmt);

// Where every tensor's bytes are, whether or not the file is compressed: offsets are relative to
// the start of the tensor's extent once decoded.
struct ModelLayout {
  struct Tensor {
    GgmlType type = GgmlType::kF16;
    std::vector<int64_t> shape;
    int extent = 0;
    uint64_t offset = 0;  // within the decoded extent
    uint64_t bytes = 0;
  };
  struct Extent {
    uint64_t file_offset = 0;   // absolute offset of the stored bytes
    uint64_t stored_bytes = 0;  // as stored (the GGUF extent's size)
    uint64_t raw_bytes = 0;     // once decoded
    int codec = 0;              // quant/compress.h: 0 stored as is, 1 zstd, 2 zstd of byte planes
  };
  ModelFileFormat format;
  bool compressed = false;
  std::vector<std::pair<std::string, Tensor>> tensors;  // file order
  std::vector<Extent> extents;
  const Tensor* Find(const std::string& name) const;
};
StatusOr<ModelLayout> ReadModelLayout(const GgufFile& f);

// Views of layer `layer`'s tensors inside a buffer holding the bytes of its extent
// (`extent_base` = the extent's first byte, wherever it was loaded: mapping, staging slot, GPU).
// Checks every tensor's presence, extent, type and shape; errors name the file and tensor (a null
// extent_base only checks, leaving the views' data null). Quantized files give kI8/kI4 views
// with their scales. The file must have TP=1 (see below). For a zstd-compressed file the buffer
// must hold the DECODED extent (quant/compress.h DecodeExtent, with ModelLayout::extents[e]); a
// plain file's extent is used as stored.
Status BindLayer(const GgufFile& f, const ModelConfig& cfg, int layer, const void* extent_base,
                 LayerWeights* out);
// The same for the model-level tensors (extent kGlobalExtent).
Status BindGlobals(const GgufFile& f, const ModelConfig& cfg, const void* extent_base,
                   GlobalWeights* out);
// Views of rank `rank`'s shard of layer `layer` (shard shapes) inside its extent's bytes: what a
// tensor-parallel runtime binds on each device.
Status BindLayerShard(const GgufFile& f, const ModelConfig& cfg, int layer, int rank,
                      const void* extent_base, LayerWeights* out);
// A TP=N layer as one merged (TP=1) layer for a single device, the ranks' extents at
// rank_bases[0..N-1]. Replicated tensors point into rank 0's extent; split tensors are gathered
// into `merge` (resized as needed; owned by the caller, e.g. the store, and valid as long as the
// views): column-parallel shards are concatenated with the GLU order restored, and a
// row-parallel quantized weight whose per-rank scales each cover K/N inputs becomes a group-wise
// weight (group size K/N for the row scheme, unchanged for the group scheme).
Status BindLayerMerged(const GgufFile& f, const ModelConfig& cfg, int layer,
                       const std::vector<const void*>& rank_bases, std::vector<uint8_t>* merge,
                       LayerWeights* out);
// The same three, with a layout read once (compressed files need it; it saves work otherwise).
Status BindLayerShard(const GgufFile& f, const ModelLayout& layout, const ModelConfig& cfg,
                      int layer, int rank, const void* extent_base, LayerWeights* out);
Status BindLayerMerged(const GgufFile& f, const ModelLayout& layout, const ModelConfig& cfg,
                       int layer, const std::vector<const void*>& rank_bases,
                       std::vector<uint8_t>* merge, LayerWeights* out);
Status BindGlobals(const GgufFile& f, const ModelLayout& layout, const ModelConfig& cfg,
                   const void* extent_base, GlobalWeights* out);

// Serves weights from a read-only mapping of the file: the page cache holds what is used. Every
// tensor of the model is checked (present, type, shape) at Open. Plain TP=1 files are served in
// place; for TP>1 or compressed files each acquired layer is decoded (zstd) and/or merged into
// one of a few owned slots, so memory stays at a few layers.
class MmapStore : public WeightStore {
 public:
  static StatusOr<std::unique_ptr<MmapStore>> Open(const std::string& path);
  ~MmapStore() override;

  const ModelConfig& config() const override { return cfg_; }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> Acquire(int layer) override;
  void Release(int layer) override;
  const GgufFile& file() const { return *file_; }
  const ModelLayout& layout() const { return layout_; }

 private:
  struct Slot {
    int layer = -1;
    int users = 0;
    uint64_t last_use = 0;
    std::vector<std::vector<uint8_t>> decoded;  // per rank, compressed files only
    std::vector<uint8_t> merge;
    LayerWeights weights;
  };
  static constexpr int kSlots = 2;

  MmapStore() = default;
  Status Materialize(int layer, Slot* slot);
  const char* ExtentBytes(int extent) const;

  std::unique_ptr<GgufFile> file_;
  ModelConfig cfg_;
  ModelLayout layout_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<uint8_t> decoded_globals_;
  GlobalWeights globals_;
  std::vector<LayerWeights> layers_;  // plain TP=1 files: bound at Open
  std::mutex mu_;
  Slot slots_[kSlots];
  uint64_t uses_ = 0;
};

}  // namespace glm
