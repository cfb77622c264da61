// Model-file metadata, tensor layout, binding of views (plain, per rank, merged) and the
// memory-mapped weight store.
#include "offload/model_file.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "quant/compress.h"
#include "quant/sat_checkpoint.h"
#include "quant/tp.h"

namespace glm {
namespace {

struct ConfigKey {
  const char* key;
  int ModelConfig::*field;
};
// glm130b.* integer keys <-> ModelConfig fields (one table for the writer and the reader).
constexpr ConfigKey kIntKeys[] = {
    {"glm130b.block_count", &ModelConfig::num_layers},
    {"glm130b.embedding_length", &ModelConfig::hidden},
    {"glm130b.feed_forward_length", &ModelConfig::inner},
    {"glm130b.attention.head_count", &ModelConfig::num_heads},
    {"glm130b.attention.key_length", &ModelConfig::head_dim},
    {"glm130b.vocab_size", &ModelConfig::vocab},
    {"glm130b.context_length", &ModelConfig::max_seq},
};
struct TokenKey {
  const char* key;
  int32_t SpecialTokens::*field;
};
constexpr TokenKey kTokenKeys[] = {
    {"glm130b.token.mask", &SpecialTokens::mask},   {"glm130b.token.gmask", &SpecialTokens::gmask},
    {"glm130b.token.smask", &SpecialTokens::smask}, {"glm130b.token.sop", &SpecialTokens::sop},
    {"glm130b.token.eop", &SpecialTokens::eop},     {"glm130b.token.eos", &SpecialTokens::eos},
};
constexpr char kEpsKey[] = "glm130b.attention.layer_norm_epsilon";
constexpr char kWeightTypeKey[] = "glmstream.weight_type";
constexpr char kSchemeKey[] = "glmstream.quant.scheme";
constexpr char kGroupKey[] = "glmstream.quant.group_size";
constexpr char kTpKey[] = "glmstream.tensor_parallel";

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// "blk.3.attn_qkv.weight" -> "blk.3.tp1.attn_qkv.weight" for files with several ranks.
std::string RankName(const std::string& name, int rank, int tp) {
  if (tp == 1) return name;
  const size_t second_dot = name.find('.', name.find('.') + 1);
  return name.substr(0, second_dot + 1) + StrFormat("tp%d.", rank) + name.substr(second_dot + 1);
}

}  // namespace

std::string ModelFileFormat::ToString() const {
  return StrFormat("%s, TP=%d", quant.ToString().c_str(), tp);
}

uint64_t FileTensor::bytes() const {
  uint64_t n = type == GgmlType::kF16 ? 2 : type == GgmlType::kF32 ? 4 : 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

void WriteModelMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name) {
  WriteModelMetadata(w, cfg, name, ModelFileFormat{});
}

void WriteModelMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name,
                        const ModelFileFormat& fmt) {
  w.SetString("general.architecture", kArchitecture);
  w.SetString("general.name", name);
  for (const ConfigKey& k : kIntKeys) w.SetU32(k.key, uint32_t(cfg.*(k.field)));
  w.SetF32(kEpsKey, cfg.layernorm_eps);
  for (const TokenKey& k : kTokenKeys) w.SetU32(k.key, uint32_t(cfg.tokens.*(k.field)));
  w.SetString(kWeightTypeKey, fmt.quant.quantized() ? StrFormat("int%d", fmt.quant.bits) : "f16");
  if (fmt.quant.quantized()) {
    w.SetString(kSchemeKey, fmt.quant.group_size > 0 ? "group" : "row");
    w.SetU32(kGroupKey, uint32_t(fmt.quant.group_size));
  }
  w.SetU32(kTpKey, uint32_t(fmt.tp));
}

StatusOr<ModelConfig> ReadModelConfig(const GgufFile& f) {
  ASSIGN_OR_RETURN(std::string arch, f.GetString("general.architecture"));
  if (arch != kArchitecture) {
    return Errorf("%s: architecture is '%s', expected '%s'", f.path().c_str(), arch.c_str(),
                  kArchitecture);
  }
  ModelConfig cfg;
  for (const ConfigKey& k : kIntKeys) {
    ASSIGN_OR_RETURN(uint64_t v, f.GetUInt(k.key));
    if (v > (1u << 30))
      return Errorf("%s: %s = %llu is implausible", f.path().c_str(), k.key, (unsigned long long)v);
    cfg.*(k.field) = int(v);
  }
  for (const TokenKey& k : kTokenKeys) {
    ASSIGN_OR_RETURN(uint64_t v, f.GetUInt(k.key));
    cfg.tokens.*(k.field) = int32_t(v);
  }
  ASSIGN_OR_RETURN(double eps, f.GetFloat(kEpsKey));
  cfg.layernorm_eps = float(eps);
  RETURN_IF_ERROR(cfg.Validate().WithContext(f.path()));
  return cfg;
}

StatusOr<ModelFileFormat> ReadModelFileFormat(const GgufFile& f) {
  ModelFileFormat fmt;
  ASSIGN_OR_RETURN(std::string wtype, f.GetString(kWeightTypeKey));
  if (wtype == "int8" || wtype == "int4") {
    fmt.quant.bits = wtype == "int8" ? 8 : 4;
    ASSIGN_OR_RETURN(std::string scheme, f.GetString(kSchemeKey));
    if (scheme == "group") {
      ASSIGN_OR_RETURN(uint64_t g, f.GetUInt(kGroupKey));
      if (g == 0 || g > (1u << 24)) {
        return Errorf("%s: %s = %llu for the group scheme", f.path().c_str(), kGroupKey,
                      (unsigned long long)g);
      }
      fmt.quant.group_size = int(g);
    } else if (scheme != "row") {
      return Errorf("%s: %s is '%s', expected 'row' or 'group'", f.path().c_str(), kSchemeKey,
                    scheme.c_str());
    }
  } else if (wtype != "f16") {
    return Errorf("%s: %s is '%s', expected f16, int8 or int4", f.path().c_str(), kWeightTypeKey,
                  wtype.c_str());
  }
  if (f.Find(kTpKey)) {
    ASSIGN_OR_RETURN(uint64_t tp, f.GetUInt(kTpKey));
    if (tp == 0 || tp > 64) {
      return Errorf("%s: %s = %llu is implausible", f.path().c_str(), kTpKey,
                    (unsigned long long)tp);
    }
    fmt.tp = int(tp);
  }
  return fmt;
}

Status CheckModelFileFormat(const ModelConfig& cfg, const ModelFileFormat& fmt) {
  if (fmt.tp < 1 || fmt.tp > 64) return Errorf("tensor-parallel degree %d", fmt.tp);
  Status st;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    if (!st.ok() || s.layer < 0) return;
    const std::vector<int64_t> merged(s.shape, s.shape + s.ndim);
    const SatMergeRule rule = SatMergeRuleForKey(s.sat_key);
    st = CheckTpSplit(s.gguf_name, rule, merged, fmt.tp);
    if (st.ok() && s.quantizable) {
      st = fmt.quant.CheckShape(s.gguf_name, TpShardShape(rule, merged, fmt.tp)[1]);
    }
  });
  return st;
}

void ForEachFileTensor(const ModelConfig& cfg, const ModelFileFormat& fmt,
                       const std::function<void(const FileTensor&)>& fn) {
  // Group the table by layer so that each (layer, rank) extent is contiguous.
  std::vector<TensorSpec> globals;
  std::vector<std::vector<TensorSpec>> layers(size_t(cfg.num_layers));
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    (s.layer < 0 ? globals : layers[size_t(s.layer)]).push_back(s);
  });
  auto emit = [&](const TensorSpec& s, int rank, int extent) {
    const std::vector<int64_t> merged(s.shape, s.shape + s.ndim);
    FileTensor t;
    t.spec = s;
    t.rank = rank;
    t.extent = extent;
    t.shard_shape =
        s.layer < 0 ? merged : TpShardShape(SatMergeRuleForKey(s.sat_key), merged, fmt.tp);
    t.name = s.layer < 0 ? s.gguf_name : RankName(s.gguf_name, rank, fmt.tp);
    t.shape = t.shard_shape;
    if (!(s.quantizable && fmt.quant.quantized())) {
      fn(t);
      return;
    }
    const int64_t rows = t.shard_shape[0], K = t.shard_shape[1];
    t.role = FileTensor::Role::kQuantized;
    t.type = GgmlType::kI8;
    t.shape = {rows, QuantRowBytes(fmt.quant.dtype(), K)};
    fn(t);
    t.role = FileTensor::Role::kScale;
    t.name += "_scale";
    t.type = GgmlType::kF16;
    t.shape = fmt.quant.group_size > 0 ? std::vector<int64_t>{rows, fmt.quant.ScaleCols(K)}
                                       : std::vector<int64_t>{rows};
    fn(t);
  };
  for (const TensorSpec& s : globals) emit(s, 0, kGlobalExtent);
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (int r = 0; r < fmt.tp; ++r) {
      for (const TensorSpec& s : layers[size_t(l)]) emit(s, r, ShardExtent(l, r, fmt.tp));
    }
  }
}

void DeclareModelTensors(GgufWriter& w, const ModelConfig& cfg) {
  DeclareModelTensors(w, cfg, ModelFileFormat{});
}

void DeclareModelTensors(GgufWriter& w, const ModelConfig& cfg, const ModelFileFormat& fmt) {
  ForEachFileTensor(cfg, fmt,
                    [&](const FileTensor& t) { w.AddTensor(t.name, t.type, t.shape, t.extent); });
}

const ModelLayout::Tensor* ModelLayout::Find(const std::string& name) const {
  for (const auto& [n, t] : tensors) {
    if (n == name) return &t;
  }
  return nullptr;
}

StatusOr<ModelLayout> ReadModelLayout(const GgufFile& f) {
  ModelLayout lay;
  ASSIGN_OR_RETURN(lay.format, ReadModelFileFormat(f));
  const auto& ext = f.extents();
  if (ext.empty()) return Errorf("%s: no glmstream.extent.* metadata", f.path().c_str());
  ASSIGN_OR_RETURN(CompressedTable table, ReadCompressedTable(f));
  lay.compressed = table.compressed;
  for (size_t e = 0; e < ext.size(); ++e) {
    ModelLayout::Extent x;
    x.file_offset = f.data_offset() + ext[e].offset;
    x.codec = lay.compressed ? table.codecs[e] : 0;
    x.stored_bytes = x.codec != 0 ? table.stored_bytes[e] : ext[e].size;
    x.raw_bytes = lay.compressed ? table.raw_bytes[e] : ext[e].size;
    lay.extents.push_back(x);
  }
  if (lay.compressed) {
    lay.tensors = std::move(table.tensors);
    return lay;
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    if (t.extent < 0) continue;
    lay.tensors.push_back({t.name, ModelLayout::Tensor{t.type, t.shape, t.extent,
                                                       t.offset - ext[t.extent].offset, t.bytes}});
  }
  return lay;
}

namespace {

// Finds tensors by name: straight from the GGUF tensor infos for plain files (cheap per call),
// from the layout for compressed ones.
class Lookup {
 public:
  Lookup(const GgufFile& f, const ModelLayout* layout) : f_(f), layout_(layout) {
    if (layout_) {
      for (size_t i = 0; i < layout_->tensors.size(); ++i) index_[layout_->tensors[i].first] = i;
    }
  }
  bool Find(const std::string& name, ModelLayout::Tensor* out) const {
    if (layout_) {
      auto it = index_.find(name);
      if (it == index_.end()) return false;
      *out = layout_->tensors[it->second].second;
      return true;
    }
    const GgufTensorInfo* t = f_.FindTensor(name);
    if (!t || t->extent < 0) return false;
    *out = {t->type, t->shape, t->extent, t->offset - f_.extents()[t->extent].offset, t->bytes};
    return true;
  }

 private:
  const GgufFile& f_;
  const ModelLayout* layout_;
  std::map<std::string, size_t> index_;
};

// Binds the tensors of one extent (a layer's rank shard, or the globals for layer -1) to views
// into a buffer holding that extent's bytes, checking presence, extent, type and shape.
Status BindExtent(const GgufFile& f, const Lookup& lookup, const ModelFileFormat& fmt,
                  const ModelConfig& cfg, int layer, int rank, const void* extent_base,
                  LayerWeights* lw, GlobalWeights* gw) {
  const int extent = layer < 0 ? kGlobalExtent : ShardExtent(layer, rank, fmt.tp);
  if (extent >= int(f.extents().size())) {
    return Errorf("%s: no extent %d (the file has %zu)", f.path().c_str(), extent,
                  f.extents().size());
  }
  const char* base = static_cast<const char*>(extent_base);
  Status st;
  TensorView* pending = nullptr;  // the quantized view whose scales come next
  ForEachFileTensor(cfg, fmt, [&](const FileTensor& ft) {
    if (!st.ok() || ft.spec.layer != layer || ft.rank != rank) return;
    ModelLayout::Tensor t;
    if (!lookup.Find(ft.name, &t)) {
      st = Errorf("%s: tensor '%s' is missing", f.path().c_str(), ft.name.c_str());
      return;
    }
    if (t.type != ft.type || t.shape != ft.shape) {
      st = Errorf("%s: tensor '%s' is %s %s, expected %s %s (file format: %s)", f.path().c_str(),
                  ft.name.c_str(), GgmlTypeName(t.type), ShapeString(t.shape).c_str(),
                  GgmlTypeName(ft.type), ShapeString(ft.shape).c_str(), fmt.ToString().c_str());
      return;
    }
    if (t.extent != extent) {
      st = Errorf("%s: tensor '%s' is in extent %d, expected %d", f.path().c_str(), ft.name.c_str(),
                  t.extent, extent);
      return;
    }
    const char* data = base ? base + t.offset : nullptr;  // null base: checks only
    if (ft.role == FileTensor::Role::kScale) {
      pending->scales = reinterpret_cast<const Half*>(data);
      pending->group_size = fmt.quant.group_size;
      return;
    }
    TensorView v;
    v.dtype = ft.role == FileTensor::Role::kQuantized ? fmt.quant.dtype() : DType::kF16;
    v.ndim = int(ft.shard_shape.size());
    v.shape[0] = ft.shard_shape[0];
    v.shape[1] = v.ndim == 2 ? ft.shard_shape[1] : 1;
    v.data = data;
    TensorView* slot = layer < 0 ? &(gw->*(ft.spec.global_slot)) : &(lw->*(ft.spec.layer_slot));
    *slot = v;
    pending = slot;
  });
  return st;
}

Status CheckLayer(const ModelConfig& cfg, int layer) {
  if (layer < 0 || layer >= cfg.num_layers) {
    return Errorf("layer %d outside [0, %d)", layer, cfg.num_layers);
  }
  return Status::Ok();
}

// Gathers the shards of one split tensor into its merged layout, byte-wise: `row_bytes` per
// shard row (data or scales), rows per shard `rows`.
void GatherRows(SatMergeRule rule, const std::vector<const char*>& shards, int64_t rows,
                int64_t row_bytes, char* dst) {
  const int n = int(shards.size());
  if (rule == SatMergeRule::kCatDim1) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int r = 0; r < n; ++r) {
        std::memcpy(dst + (i * n + r) * row_bytes, shards[r] + i * row_bytes, size_t(row_bytes));
      }
    }
  } else if (rule == SatMergeRule::kGlu) {
    const int64_t half = rows / 2 * row_bytes;  // x1 rows, then x2 rows of each shard
    for (int part = 0; part < 2; ++part) {
      for (int r = 0; r < n; ++r) {
        std::memcpy(dst + (int64_t(part) * n + r) * half, shards[r] + part * half, size_t(half));
      }
    }
  } else {  // kCatDim0
    for (int r = 0; r < n; ++r) {
      std::memcpy(dst + r * rows * row_bytes, shards[r], size_t(rows * row_bytes));
    }
  }
}

Status BindMerged(const GgufFile& f, const Lookup& lookup, const ModelFileFormat& fmt,
                  const ModelConfig& cfg, int layer, const std::vector<const void*>& rank_bases,
                  std::vector<uint8_t>* merge, LayerWeights* out) {
  RETURN_IF_ERROR(CheckLayer(cfg, layer));
  const int N = fmt.tp;
  if (int(rank_bases.size()) != N) {
    return Errorf("%s: %zu extent buffers for a file with %d tensor-parallel ranks",
                  f.path().c_str(), rank_bases.size(), N);
  }
  std::vector<LayerWeights> shards(static_cast<size_t>(N));
  for (int r = 0; r < N; ++r) {
    RETURN_IF_ERROR(
        BindExtent(f, lookup, fmt, cfg, layer, r, rank_bases[size_t(r)], &shards[r], nullptr));
  }
  // Size the buffer first (64-byte aligned pieces), so that views stay valid while it fills.
  struct Piece {
    const TensorSpec* spec;
    uint64_t data_at, scales_at;
  };
  std::vector<TensorSpec> specs;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    if (s.layer == layer) specs.push_back(s);
  });
  std::vector<Piece> pieces;
  uint64_t size = 0;
  for (const TensorSpec& s : specs) {
    if (SatMergeRuleForKey(s.sat_key) == SatMergeRule::kReplicated) continue;
    const TensorView& v = shards[0].*(s.layer_slot);
    Piece p{&s, AlignUp(size, 64), 0};
    size = p.data_at + uint64_t(N) * v.bytes();
    if (v.scales) {
      p.scales_at = AlignUp(size, 64);
      size = p.scales_at + uint64_t(N) * uint64_t(v.rows() * fmt.quant.ScaleCols(v.cols())) * 2;
    }
    pieces.push_back(p);
  }
  merge->resize(size);
  char* buf = reinterpret_cast<char*>(merge->data());
  for (const TensorSpec& s : specs) {
    if (SatMergeRuleForKey(s.sat_key) == SatMergeRule::kReplicated)
      out->*(s.layer_slot) = shards[0].*(s.layer_slot);
  }
  for (const Piece& p : pieces) {
    const TensorSpec& s = *p.spec;
    const SatMergeRule rule = SatMergeRuleForKey(s.sat_key);
    const TensorView& v0 = shards[0].*(s.layer_slot);
    std::vector<const char*> data(static_cast<size_t>(N)), scales(static_cast<size_t>(N));
    for (int r = 0; r < N; ++r) {
      const TensorView& v = shards[r].*(s.layer_slot);
      data[r] = static_cast<const char*>(v.data);
      scales[r] = reinterpret_cast<const char*>(v.scales);
    }
    const int64_t row_bytes =
        v0.dtype == DType::kF16 ? v0.cols() * 2 : QuantRowBytes(v0.dtype, v0.cols());
    GatherRows(rule, data, v0.rows(), row_bytes, buf + p.data_at);
    TensorView m = v0;
    m.data = buf + p.data_at;
    m.shape[0] = s.shape[0];
    m.shape[1] = s.ndim == 2 ? s.shape[1] : 1;
    if (v0.scales) {
      const int64_t scale_cols = fmt.quant.ScaleCols(v0.cols());
      GatherRows(rule, scales, v0.rows(), scale_cols * 2, buf + p.scales_at);
      m.scales = reinterpret_cast<const Half*>(buf + p.scales_at);
      // Row-parallel shards' row scales each cover K/N inputs: a group-wise weight.
      if (rule == SatMergeRule::kCatDim1 && fmt.quant.group_size == 0)
        m.group_size = int(v0.cols());
    }
    out->*(s.layer_slot) = m;
  }
  return Status::Ok();
}

}  // namespace

Status BindLayer(const GgufFile& f, const ModelConfig& cfg, int layer, const void* extent_base,
                 LayerWeights* out) {
  GLM_CHECK(layer >= 0 && layer < cfg.num_layers);
  ASSIGN_OR_RETURN(ModelFileFormat fmt, ReadModelFileFormat(f));
  if (fmt.tp != 1) {
    return Errorf(
        "%s: the file is split into %d tensor-parallel ranks; bind a rank's shard "
        "(BindLayerShard) or the merged layer (BindLayerMerged)",
        f.path().c_str(), fmt.tp);
  }
  if (f.Find(kCompressionKey)) {
    ASSIGN_OR_RETURN(ModelLayout layout, ReadModelLayout(f));
    return BindLayerShard(f, layout, cfg, layer, 0, extent_base, out);
  }
  return BindExtent(f, Lookup(f, nullptr), fmt, cfg, layer, 0, extent_base, out, nullptr);
}

Status BindGlobals(const GgufFile& f, const ModelConfig& cfg, const void* extent_base,
                   GlobalWeights* out) {
  ASSIGN_OR_RETURN(ModelFileFormat fmt, ReadModelFileFormat(f));
  if (f.Find(kCompressionKey)) {
    ASSIGN_OR_RETURN(ModelLayout layout, ReadModelLayout(f));
    return BindGlobals(f, layout, cfg, extent_base, out);
  }
  return BindExtent(f, Lookup(f, nullptr), fmt, cfg, -1, 0, extent_base, nullptr, out);
}

Status BindLayerShard(const GgufFile& f, const ModelConfig& cfg, int layer, int rank,
                      const void* extent_base, LayerWeights* out) {
  ASSIGN_OR_RETURN(ModelLayout layout, ReadModelLayout(f));
  return BindLayerShard(f, layout, cfg, layer, rank, extent_base, out);
}

Status BindLayerMerged(const GgufFile& f, const ModelConfig& cfg, int layer,
                       const std::vector<const void*>& rank_bases, std::vector<uint8_t>* merge,
                       LayerWeights* out) {
  ASSIGN_OR_RETURN(ModelLayout layout, ReadModelLayout(f));
  return BindLayerMerged(f, layout, cfg, layer, rank_bases, merge, out);
}

Status BindLayerShard(const GgufFile& f, const ModelLayout& layout, const ModelConfig& cfg,
                      int layer, int rank, const void* extent_base, LayerWeights* out) {
  RETURN_IF_ERROR(CheckLayer(cfg, layer));
  if (rank < 0 || rank >= layout.format.tp) {
    return Errorf("%s: rank %d outside [0, %d)", f.path().c_str(), rank, layout.format.tp);
  }
  return BindExtent(f, Lookup(f, layout.compressed ? &layout : nullptr), layout.format, cfg, layer,
                    rank, extent_base, out, nullptr);
}

Status BindLayerMerged(const GgufFile& f, const ModelLayout& layout, const ModelConfig& cfg,
                       int layer, const std::vector<const void*>& rank_bases,
                       std::vector<uint8_t>* merge, LayerWeights* out) {
  if (layout.format.tp == 1) {
    if (rank_bases.size() != 1)
      return Errorf("%s: TP=1 file, %zu buffers", f.path().c_str(), rank_bases.size());
    merge->clear();
    return BindLayerShard(f, layout, cfg, layer, 0, rank_bases[0], out);
  }
  return BindMerged(f, Lookup(f, layout.compressed ? &layout : nullptr), layout.format, cfg, layer,
                    rank_bases, merge, out);
}

Status BindGlobals(const GgufFile& f, const ModelLayout& layout, const ModelConfig& cfg,
                   const void* extent_base, GlobalWeights* out) {
  return BindExtent(f, Lookup(f, layout.compressed ? &layout : nullptr), layout.format, cfg, -1, 0,
                    extent_base, nullptr, out);
}

StatusOr<std::unique_ptr<MmapStore>> MmapStore::Open(const std::string& path) {
  std::unique_ptr<MmapStore> s(new MmapStore());
  ASSIGN_OR_RETURN(s->file_, GgufFile::Open(path));
  ASSIGN_OR_RETURN(s->cfg_, ReadModelConfig(*s->file_));
  ASSIGN_OR_RETURN(s->layout_, ReadModelLayout(*s->file_));
  const ModelLayout& lay = s->layout_;
  if (int(lay.extents.size()) != 1 + s->cfg_.num_layers * lay.format.tp) {
    return Errorf("%s: %zu extents, but %d layers x %d ranks need %d", path.c_str(),
                  lay.extents.size(), s->cfg_.num_layers, lay.format.tp,
                  1 + s->cfg_.num_layers * lay.format.tp);
  }
  RETURN_IF_ERROR(CheckModelFileFormat(s->cfg_, lay.format).WithContext(path));
  s->map_bytes_ = s->file_->file_size();
  s->map_ = mmap(nullptr, s->map_bytes_, PROT_READ, MAP_SHARED, s->file_->fd(), 0);
  if (s->map_ == MAP_FAILED) {
    s->map_ = nullptr;
    return ErrnoError("mmap", path, errno);
  }
  const char* globals = s->ExtentBytes(kGlobalExtent);
  if (lay.extents[kGlobalExtent].codec != 0) {
    s->decoded_globals_.resize(lay.extents[kGlobalExtent].raw_bytes);
    RETURN_IF_ERROR(DecodeExtent(lay.extents[kGlobalExtent].codec, globals,
                                 lay.extents[kGlobalExtent].stored_bytes,
                                 s->decoded_globals_.data(), s->decoded_globals_.size())
                        .WithContext(StrFormat("%s: extent 0", path.c_str())));
    globals = reinterpret_cast<const char*>(s->decoded_globals_.data());
  }
  RETURN_IF_ERROR(BindGlobals(*s->file_, lay, s->cfg_, globals, &s->globals_));
  if (lay.format.tp == 1 && !lay.compressed) {
    s->layers_.resize(s->cfg_.num_layers);
    for (int l = 0; l < s->cfg_.num_layers; ++l) {
      RETURN_IF_ERROR(
          BindLayer(*s->file_, s->cfg_, l, s->ExtentBytes(LayerExtent(l)), &s->layers_[l]));
    }
  } else {
    // Check every layer's tensors now (cheap, no decoding), so that errors show at Open.
    for (int l = 0; l < s->cfg_.num_layers; ++l) {
      for (int r = 0; r < lay.format.tp; ++r) {
        LayerWeights w;
        RETURN_IF_ERROR(BindLayerShard(*s->file_, lay, s->cfg_, l, r, nullptr, &w));
      }
    }
  }
  return s;
}

MmapStore::~MmapStore() {
  if (map_) munmap(map_, map_bytes_);
}

const char* MmapStore::ExtentBytes(int extent) const {
  return static_cast<const char*>(map_) + layout_.extents[size_t(extent)].file_offset;
}

Status MmapStore::Materialize(int layer, Slot* slot) {
  const int N = layout_.format.tp;
  std::vector<const void*> bases(static_cast<size_t>(N));
  slot->decoded.resize(size_t(N));
  for (int r = 0; r < N; ++r) {
    const int e = ShardExtent(layer, r, N);
    const ModelLayout::Extent& x = layout_.extents[size_t(e)];
    if (x.codec == 0) {
      bases[r] = ExtentBytes(e);
      continue;
    }
    slot->decoded[r].resize(x.raw_bytes);
    RETURN_IF_ERROR(
        DecodeExtent(x.codec, ExtentBytes(e), x.stored_bytes, slot->decoded[r].data(), x.raw_bytes)
            .WithContext(StrFormat("%s: extent %d", file_->path().c_str(), e)));
    bases[r] = slot->decoded[r].data();
  }
  return BindLayerMerged(*file_, layout_, cfg_, layer, bases, &slot->merge, &slot->weights);
}

StatusOr<const LayerWeights*> MmapStore::Acquire(int layer) {
  if (layer < 0 || layer >= cfg_.num_layers) {
    return Errorf("layer %d outside [0, %d)", layer, cfg_.num_layers);
  }
  if (!layers_.empty()) return &layers_[layer];
  std::lock_guard<std::mutex> lock(mu_);
  Slot* victim = nullptr;
  for (Slot& s : slots_) {
    if (s.layer == layer) {
      ++s.users;
      s.last_use = ++uses_;
      return &s.weights;
    }
    if (s.users == 0 && (!victim || s.last_use < victim->last_use)) victim = &s;
  }
  if (!victim) {
    return Errorf(
        "%s: more than %d layers acquired at once (each TP-merged or decompressed layer "
        "needs a slot)",
        file_->path().c_str(), kSlots);
  }
  victim->layer = -1;
  RETURN_IF_ERROR(Materialize(layer, victim));
  victim->layer = layer;
  victim->users = 1;
  victim->last_use = ++uses_;
  return &victim->weights;
}

void MmapStore::Release(int layer) {
  if (!layers_.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  for (Slot& s : slots_) {
    if (s.layer == layer && s.users > 0) --s.users;
  }
}

}  // namespace glm
