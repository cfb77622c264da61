// Where the GPU tier (gpu_store_cuda.h) gets the bytes of each layer: a LayerSource reads an
// extent (the model-level tensors, or one layer's) into host memory and binds views of its tensors
// inside any buffer that holds those bytes, host or device. Two sources:
//   - the model file (offload/model_file.h's extents and BindLayer), read by the io_uring reader
//     with O_DIRECT (offload/file_reader.h; pread where the system refuses either), the
//     unaligned head or tail of a range with pread;
//   - layers packed in host memory (PackedLayerSource): copied from any WeightStore, or
//     synthetic (any weight format, e.g. INT4 at GLM-130B's shapes for bench-gpu), optionally in
//     pinned memory and with several layers sharing one copy of their bytes.
// Plain C++ apart from pinned allocation; owns no device memory.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/device_cuda.h"
#include "runtime/weights.h"

namespace glm {

class LayerSource {
 public:
  virtual ~LayerSource() = default;
  virtual const ModelConfig& config() const = 0;
  // Extent -1 is the model-level tensors (embedding, final LayerNorm), 0..L-1 the layers.
  virtual uint64_t ExtentBytes(int extent) const = 0;
  // Copies bytes [offset, offset+bytes) of the extent into host memory `dst`. Thread-safe (the
  // store's I/O thread calls it while the compute thread runs). Errors name file, offset, errno.
  virtual Status Read(int extent, uint64_t offset, uint64_t bytes, void* dst) const = 0;
  // Views of the extent's tensors inside a buffer holding its bytes (`base` = its first byte).
  virtual Status BindGlobals(const void* base, GlobalWeights* out) const = 0;
  virtual Status BindLayer(int layer, const void* base, LayerWeights* out) const = 0;
  // The extent's bytes in pinned host memory the source owns (copies can start from there), or
  // null. The memory stays valid as long as the source.
  virtual const void* Pinned(int extent) const { return nullptr; }
  // One line: "model file /m/glm.gguf" or "packed in pinned memory, 2 distinct layers".
  virtual std::string Describe() const = 0;
};

// The model file (offload/model_file.h): TP=1, uncompressed, f16 or int8/int4 weights.
StatusOr<std::unique_ptr<LayerSource>> OpenFileLayerSource(const std::string& path);

// Format of the four linear weights of every layer (norms, biases and the embedding stay f16).
struct WeightFormat {
  DType dtype = DType::kF16;  // kF16, kI8 or kI4
  int group_size = 0;         // quantized: 0 = one scale per output row, else per G inputs
};

// Byte layout of one packed extent: every tensor's data, and scales for quantized ones, each
// part aligned to kPackAlignment. The same layout serves host and device copies.
inline constexpr uint64_t kPackAlignment = 256;
struct PackedTensor {
  TensorView meta;  // dtype, shape, group size; data/scales are offsets (as pointers)
  uint64_t data_offset = 0, data_bytes = 0;
  uint64_t scales_offset = 0, scales_bytes = 0;
  TensorView LayerWeights::*layer_slot = nullptr;
  TensorView GlobalWeights::*global_slot = nullptr;
};
struct PackedLayout {
  std::vector<PackedTensor> tensors;
  uint64_t bytes = 0;
  // Views of every tensor inside `base`.
  void Bind(const void* base, LayerWeights* lw, GlobalWeights* gw) const;
};
// The layout of a layer whose linear weights have format `fmt` at the shapes of `cfg`.
PackedLayout LayoutLayer(const ModelConfig& cfg, const WeightFormat& fmt);
PackedLayout LayoutGlobals(const ModelConfig& cfg);

struct SyntheticWeights {
  WeightFormat format;
  int distinct_layers = 2;  // layer l uses the bytes of packed layer l % distinct_layers
  uint64_t seed = 1;
  bool pinned = true;  // pinned host memory (bench-gpu streams straight from it)
  int threads = 0;     // fill threads; 0: hardware concurrency
};

class PackedLayerSource : public LayerSource {
 public:
  // Every layer and the globals of a host store (any weight formats), one packed copy per layer.
  static StatusOr<std::unique_ptr<PackedLayerSource>> FromStore(WeightStore& store, bool pinned);
  // Random weights of realistic scale: f16 linear weights with std 0.02, quantized ones with
  // random codes and scales of the same scale, small random biases, LayerNorm γ near 1.
  // Deterministic for a seed whatever the thread count.
  static StatusOr<std::unique_ptr<PackedLayerSource>> Synthetic(const ModelConfig& cfg,
                                                                const SyntheticWeights& opts);

  const ModelConfig& config() const override { return cfg_; }
  uint64_t ExtentBytes(int extent) const override;
  Status Read(int extent, uint64_t offset, uint64_t bytes, void* dst) const override;
  Status BindGlobals(const void* base, GlobalWeights* out) const override;
  Status BindLayer(int layer, const void* base, LayerWeights* out) const override;
  const void* Pinned(int extent) const override;
  std::string Describe() const override;

  // A host WeightStore over the packed bytes (the CPU forward on the same weights, for tests).
  std::unique_ptr<WeightStore> HostStore() const;
  // Host bytes the source holds.
  uint64_t HostBytes() const;

 private:
  struct Pack {
    PackedLayout layout;
    PinnedBuffer pinned;
    std::unique_ptr<char, void (*)(void*)> heap{nullptr, std::free};  // pageable, 4 KiB-aligned
    char* data = nullptr;
  };
  StatusOr<Pack> NewPack(PackedLayout layout, bool pinned, const std::string& what);
  const Pack& LayerPack(int layer) const { return layers_[size_t(layer) % layers_.size()]; }

  ModelConfig cfg_;
  bool pinned_ = false;
  Pack globals_;
  std::vector<Pack> layers_;
};

}  // namespace glm
