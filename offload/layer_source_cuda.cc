// Layer sources of the GPU tier: the model file (io_uring + O_DIRECT, pread for unaligned parts)
// and packed host layers (copied from a store, or synthetic).
#include "offload/layer_source_cuda.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <thread>

#include "offload/file_reader.h"
#include "offload/model_file.h"
#include "offload/streaming_store.h"
#include "quant/format.h"

namespace glm {
namespace {

uint64_t AlignPack(uint64_t v) {
  return (v + kPackAlignment - 1) / kPackAlignment * kPackAlignment;
}

// ---- the model file ----

class FileLayerSource : public LayerSource {
 public:
  std::unique_ptr<GgufFile> file;
  std::unique_ptr<FileReader> reader;  // io_uring + O_DIRECT where the system allows them
  mutable std::mutex reader_mu;        // a FileReader serves one thread at a time
  ModelConfig cfg;

  const ModelConfig& config() const override { return cfg; }
  const GgufExtent& Extent(int extent) const {
    return file->extents()[extent < 0 ? kGlobalExtent : LayerExtent(extent)];
  }
  uint64_t ExtentBytes(int extent) const override { return Extent(extent).size; }
  Status Read(int extent, uint64_t offset, uint64_t bytes, void* dst) const override {
    const GgufExtent& e = Extent(extent);
    GLM_CHECK_MSG(offset + bytes <= e.size, "read past extent %d", extent);
    uint64_t pos = file->data_offset() + e.offset + offset;
    char* out = static_cast<char*>(dst);
    // The aligned whole blocks through the reader (the extents start on 4 KiB boundaries and the
    // staging buffers are page-aligned), what is left with pread.
    const uint64_t a = reader->alignment();
    const uint64_t head =
        pos % a == 0 && reinterpret_cast<uintptr_t>(out) % a == 0 ? bytes / a * a : 0;
    if (head > 0) {
      const ReadRequest r{.offset = pos, .bytes = head, .dst = out};
      std::lock_guard<std::mutex> lock(reader_mu);
      RETURN_IF_ERROR(
          reader->ReadAll(std::span(&r, 1)).WithContext(StrFormat("extent %d", extent)));
      pos += head;
      out += head;
      bytes -= head;
    }
    while (bytes > 0) {
      const ssize_t n =
          pread(file->fd(), out, size_t(std::min<uint64_t>(bytes, 1ull << 30)), off_t(pos));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return ErrnoError("pread", file->path(), errno)
            .WithContext(StrFormat("extent %d at offset %llu", extent, (unsigned long long)pos));
      }
      if (n == 0) {
        return Errorf("%s: unexpected end of file at offset %llu (extent %d)", file->path().c_str(),
                      (unsigned long long)pos, extent);
      }
      pos += uint64_t(n);
      out += n;
      bytes -= uint64_t(n);
    }
    return Status::Ok();
  }
  Status BindGlobals(const void* base, GlobalWeights* out) const override {
    return glm::BindGlobals(*file, cfg, base, out);
  }
  Status BindLayer(int layer, const void* base, LayerWeights* out) const override {
    return glm::BindLayer(*file, cfg, layer, base, out);
  }
  std::string Describe() const override {
    return "model file " + file->path() + " (" + reader->Describe() + ")";
  }
};

// ---- packed layers ----

PackedTensor MakePart(const TensorView& meta, uint64_t* offset) {
  PackedTensor t;
  t.meta = meta;
  t.meta.data = nullptr;
  t.meta.scales = nullptr;
  const int64_t rows = meta.rows(), cols = meta.cols();
  const bool quant = meta.dtype == DType::kI8 || meta.dtype == DType::kI4;
  t.data_bytes = quant ? uint64_t(rows) * QuantRowBytes(meta.dtype, cols) : meta.bytes();
  t.data_offset = *offset;
  *offset = AlignPack(*offset + t.data_bytes);
  if (quant) {
    const int64_t groups = meta.group_size > 0 ? cols / meta.group_size : 1;
    t.scales_bytes = uint64_t(rows) * groups * sizeof(Half);
    t.scales_offset = *offset;
    *offset = AlignPack(*offset + t.scales_bytes);
  }
  return t;
}

TensorView MetaOf(const TensorSpec& s, DType dtype, int group) {
  TensorView v;
  v.dtype = dtype;
  v.ndim = s.ndim;
  v.shape[0] = s.shape[0];
  v.shape[1] = s.ndim == 2 ? s.shape[1] : 1;
  v.group_size = group;
  return v;
}

PackedLayout Layout(const ModelConfig& cfg, int layer, const WeightFormat& fmt) {
  PackedLayout p;
  uint64_t off = 0;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    if (s.layer != layer) return;
    const bool q = s.quantizable && fmt.dtype != DType::kF16;
    PackedTensor t = MakePart(MetaOf(s, q ? fmt.dtype : DType::kF16, q ? fmt.group_size : 0), &off);
    t.layer_slot = s.layer_slot;
    t.global_slot = s.global_slot;
    p.tensors.push_back(t);
  });
  p.bytes = off;
  return p;
}

// splitmix64: a fresh, well-mixed stream per chunk, so the fill is deterministic whatever the
// number of threads.
struct Mix {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  float Uniform() { return float(Next() >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f; }  // [-1, 1)
};

enum class Fill { kWeight, kBias, kGamma, kBeta, kCodes, kScales };

void FillRange(Fill kind, DType dtype, char* base, uint64_t begin, uint64_t end, uint64_t seed) {
  Mix rng{seed};
  const float w_amp = 0.02f * std::sqrt(3.0f);  // uniform with std 0.02
  switch (kind) {
    case Fill::kWeight:
    case Fill::kBias:
    case Fill::kGamma:
    case Fill::kBeta: {
      Half* h = reinterpret_cast<Half*>(base);
      for (uint64_t i = begin; i < end; ++i) {
        const float u = rng.Uniform();
        const float v = kind == Fill::kWeight  ? u * w_amp
                        : kind == Fill::kBias  ? u * 0.01f
                        : kind == Fill::kGamma ? 1.0f + 0.1f * u
                                               : 0.05f * u;
        h[i] = FloatToHalf(v);
      }
      return;
    }
    case Fill::kCodes: {
      int8_t* q = reinterpret_cast<int8_t*>(base);
      for (uint64_t i = begin; i < end; ++i) {  // bytes
        const uint64_t r = rng.Next();
        if (dtype == DType::kI8) {
          q[i] = int8_t(int(r % 255) - 127);
        } else {
          const int hi = int(r % 15) - 7, lo = int((r >> 8) % 15) - 7;
          q[i] = int8_t(uint8_t((hi << 4) | (lo & 0xF)));
        }
      }
      return;
    }
    case Fill::kScales: {
      Half* h = reinterpret_cast<Half*>(base);
      const float qmax = dtype == DType::kI8 ? 127.0f : 7.0f;
      for (uint64_t i = begin; i < end; ++i) {
        h[i] = FloatToHalf(w_amp / qmax * (1.0f + 0.25f * rng.Uniform()));
      }
      return;
    }
  }
}

class PackedHostStore : public WeightStore {
 public:
  ModelConfig cfg;
  GlobalWeights globals_views;
  std::vector<LayerWeights> layers;
  const ModelConfig& config() const override { return cfg; }
  const GlobalWeights& globals() const override { return globals_views; }
  StatusOr<const LayerWeights*> Acquire(int layer) override {
    if (layer < 0 || layer >= int(layers.size())) return Errorf("layer %d out of range", layer);
    return &layers[layer];
  }
  void Release(int) override {}
};

}  // namespace

StatusOr<std::unique_ptr<LayerSource>> OpenFileLayerSource(const std::string& path) {
  auto s = std::make_unique<FileLayerSource>();
  ASSIGN_OR_RETURN(s->file, GgufFile::Open(path));
  // One extent per layer that the views can point into as read (TP=1, not compressed), any
  // weight type: f16, or int8/int4 with row or group scales.
  ASSIGN_OR_RETURN(HostFootprint fp, ReadHostFootprint(*s->file));
  s->cfg = fp.cfg;
  ASSIGN_OR_RETURN(s->reader, FileReader::Open(path, ReaderOptions{}));
  return std::unique_ptr<LayerSource>(std::move(s));
}

void PackedLayout::Bind(const void* base, LayerWeights* lw, GlobalWeights* gw) const {
  const char* b = static_cast<const char*>(base);
  for (const PackedTensor& t : tensors) {
    TensorView v = t.meta;
    v.data = b + t.data_offset;
    v.scales = t.scales_bytes ? reinterpret_cast<const Half*>(b + t.scales_offset) : nullptr;
    if (t.layer_slot) lw->*(t.layer_slot) = v;
    if (t.global_slot) gw->*(t.global_slot) = v;
  }
}

PackedLayout LayoutLayer(const ModelConfig& cfg, const WeightFormat& fmt) {
  return Layout(cfg, 0, fmt);
}
PackedLayout LayoutGlobals(const ModelConfig& cfg) { return Layout(cfg, -1, WeightFormat{}); }

StatusOr<PackedLayerSource::Pack> PackedLayerSource::NewPack(PackedLayout layout, bool pinned,
                                                             const std::string& what) {
  Pack p;
  p.layout = std::move(layout);
  if (pinned) {
    ASSIGN_OR_RETURN(p.pinned, PinnedBuffer::Allocate(p.layout.bytes, what));
    p.data = p.pinned.data();
  } else {
    const uint64_t bytes = (std::max<uint64_t>(p.layout.bytes, 1) + 4095) / 4096 * 4096;
    p.heap.reset(static_cast<char*>(std::aligned_alloc(4096, bytes)));
    if (!p.heap)
      return Errorf("allocating %s of host memory for %s failed", GiBString(bytes).c_str(),
                    what.c_str());
    p.data = p.heap.get();
  }
  return p;
}

StatusOr<std::unique_ptr<PackedLayerSource>> PackedLayerSource::FromStore(WeightStore& store,
                                                                          bool pinned) {
  std::unique_ptr<PackedLayerSource> s(new PackedLayerSource());
  s->cfg_ = store.config();
  s->pinned_ = pinned;
  // One extent's layout from its views (whatever their formats), then the bytes.
  auto pack_views = [&](int layer, const LayerWeights* lw,
                        const GlobalWeights* gw) -> StatusOr<Pack> {
    PackedLayout layout;
    uint64_t off = 0;
    std::vector<const TensorView*> views;
    ForEachTensor(s->cfg_, [&](const TensorSpec& spec) {
      if (spec.layer != layer) return;
      const TensorView& v = lw ? lw->*(spec.layer_slot) : gw->*(spec.global_slot);
      PackedTensor t = MakePart(v, &off);
      t.layer_slot = spec.layer_slot;
      t.global_slot = spec.global_slot;
      layout.tensors.push_back(t);
      views.push_back(&v);
    });
    layout.bytes = off;
    ASSIGN_OR_RETURN(Pack p, s->NewPack(std::move(layout), pinned,
                                        layer < 0 ? "globals" : StrFormat("layer %d", layer)));
    for (size_t i = 0; i < views.size(); ++i) {
      const PackedTensor& t = p.layout.tensors[i];
      std::memcpy(p.data + t.data_offset, views[i]->data, t.data_bytes);
      if (t.scales_bytes) std::memcpy(p.data + t.scales_offset, views[i]->scales, t.scales_bytes);
    }
    return p;
  };
  ASSIGN_OR_RETURN(s->globals_, pack_views(-1, nullptr, &store.globals()));
  for (int l = 0; l < s->cfg_.num_layers; ++l) {
    ASSIGN_OR_RETURN(const LayerWeights* lw, store.Acquire(l));
    auto p = pack_views(l, lw, nullptr);
    store.Release(l);
    if (!p.ok()) return p.status();
    s->layers_.push_back(std::move(p).value());
  }
  return s;
}

StatusOr<std::unique_ptr<PackedLayerSource>> PackedLayerSource::Synthetic(
    const ModelConfig& cfg, const SyntheticWeights& opts) {
  RETURN_IF_ERROR(cfg.Validate());
  const WeightFormat& f = opts.format;
  if (f.dtype != DType::kF16 && f.dtype != DType::kI8 && f.dtype != DType::kI4) {
    return Errorf("synthetic weights: %s is not a weight format", DTypeName(f.dtype));
  }
  if (f.dtype != DType::kF16 && f.group_size != 0) {
    for (int64_t k : {int64_t(cfg.hidden), int64_t(cfg.inner)}) {
      if (f.group_size < 0 || k % f.group_size != 0 ||
          (f.dtype == DType::kI4 && f.group_size % 2)) {
        return Errorf("synthetic weights: group size %d does not divide K = %lld", f.group_size,
                      (long long)k);
      }
    }
  }
  std::unique_ptr<PackedLayerSource> s(new PackedLayerSource());
  s->cfg_ = cfg;
  s->pinned_ = opts.pinned;
  ASSIGN_OR_RETURN(s->globals_, s->NewPack(LayoutGlobals(cfg), opts.pinned, "globals"));
  const int distinct = std::max(1, std::min(opts.distinct_layers, cfg.num_layers));
  for (int d = 0; d < distinct; ++d) {
    ASSIGN_OR_RETURN(
        Pack p, s->NewPack(LayoutLayer(cfg, f), opts.pinned, StrFormat("synthetic layer %d", d)));
    s->layers_.push_back(std::move(p));
  }
  // Fill tasks: (pack, part, element range) in chunks of 1M elements, each with its own seed.
  struct Task {
    char* base;
    Fill kind;
    DType dtype;
    uint64_t begin, end, seed;
  };
  std::vector<Task> tasks;
  constexpr uint64_t kChunk = 1 << 20;
  auto add = [&](char* base, Fill kind, DType dtype, uint64_t n, uint64_t key) {
    for (uint64_t b = 0; b < n; b += kChunk) {
      tasks.push_back({base, kind, dtype, b, std::min(n, b + kChunk),
                       opts.seed * 0x100000001B3ULL + key * 0x9E3779B9ULL + b / kChunk});
    }
  };
  std::vector<Pack*> packs = {&s->globals_};
  for (Pack& p : s->layers_) packs.push_back(&p);
  uint64_t key = 0;
  for (Pack* p : packs) {
    for (const PackedTensor& t : p->layout.tensors) {
      ++key;
      char* data = p->data + t.data_offset;
      const bool quant = t.scales_bytes != 0;
      Fill kind = Fill::kWeight;
      if (t.meta.ndim == 1) {
        const bool norm_w = t.layer_slot == &LayerWeights::attn_norm_w ||
                            t.layer_slot == &LayerWeights::ffn_norm_w ||
                            t.global_slot == &GlobalWeights::final_norm_w;
        const bool norm_b = t.layer_slot == &LayerWeights::attn_norm_b ||
                            t.layer_slot == &LayerWeights::ffn_norm_b ||
                            t.global_slot == &GlobalWeights::final_norm_b;
        kind = norm_w ? Fill::kGamma : norm_b ? Fill::kBeta : Fill::kBias;
      }
      if (quant) {
        add(data, Fill::kCodes, t.meta.dtype, t.data_bytes, key);
        add(p->data + t.scales_offset, Fill::kScales, t.meta.dtype, t.scales_bytes / 2,
            key + (1ull << 32));
      } else {
        add(data, kind, DType::kF16, t.data_bytes / 2, key);
      }
    }
  }
  const int threads =
      opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < tasks.size();) {
      const Task& t = tasks[i];
      FillRange(t.kind, t.dtype, t.base, t.begin, t.end, t.seed);
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  return s;
}

uint64_t PackedLayerSource::ExtentBytes(int extent) const {
  return extent < 0 ? globals_.layout.bytes : LayerPack(extent).layout.bytes;
}

Status PackedLayerSource::Read(int extent, uint64_t offset, uint64_t bytes, void* dst) const {
  const Pack& p = extent < 0 ? globals_ : LayerPack(extent);
  GLM_CHECK_MSG(offset + bytes <= p.layout.bytes, "read past packed extent %d", extent);
  std::memcpy(dst, p.data + offset, bytes);
  return Status::Ok();
}

Status PackedLayerSource::BindGlobals(const void* base, GlobalWeights* out) const {
  globals_.layout.Bind(base, nullptr, out);
  return Status::Ok();
}

Status PackedLayerSource::BindLayer(int layer, const void* base, LayerWeights* out) const {
  if (layer < 0 || layer >= cfg_.num_layers) return Errorf("layer %d out of range", layer);
  LayerPack(layer).layout.Bind(base, out, nullptr);
  return Status::Ok();
}

const void* PackedLayerSource::Pinned(int extent) const {
  if (!pinned_) return nullptr;
  return extent < 0 ? globals_.data : LayerPack(extent).data;
}

std::string PackedLayerSource::Describe() const {
  return StrFormat("packed in %s host memory, %zu distinct layer(s) of %s for %d layers",
                   pinned_ ? "pinned" : "pageable", layers_.size(),
                   GiBString(layers_[0].layout.bytes).c_str(), cfg_.num_layers);
}

std::unique_ptr<WeightStore> PackedLayerSource::HostStore() const {
  auto st = std::make_unique<PackedHostStore>();
  st->cfg = cfg_;
  globals_.layout.Bind(globals_.data, nullptr, &st->globals_views);
  st->layers.resize(cfg_.num_layers);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    LayerPack(l).layout.Bind(LayerPack(l).data, &st->layers[l], nullptr);
  }
  return st;
}

uint64_t PackedLayerSource::HostBytes() const {
  uint64_t b = globals_.layout.bytes;
  for (const Pack& p : layers_) b += p.layout.bytes;
  return b;
}

}  // namespace glm
