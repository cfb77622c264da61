// Model-file metadata, tensor layout and the memory-mapped weight store.
#include "offload/model_file.h"

#include <sys/mman.h>

#include <cerrno>

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
    {"glm130b.token.mask", &SpecialTokens::mask}, {"glm130b.token.gmask", &SpecialTokens::gmask},
    {"glm130b.token.smask", &SpecialTokens::smask}, {"glm130b.token.sop", &SpecialTokens::sop},
    {"glm130b.token.eop", &SpecialTokens::eop},     {"glm130b.token.eos", &SpecialTokens::eos},
};
constexpr char kEpsKey[] = "glm130b.attention.layer_norm_epsilon";

std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

void WriteModelMetadata(GgufWriter& w, const ModelConfig& cfg, const std::string& name) {
  w.SetString("general.architecture", kArchitecture);
  w.SetString("general.name", name);
  for (const ConfigKey& k : kIntKeys) w.SetU32(k.key, uint32_t(cfg.*(k.field)));
  w.SetF32(kEpsKey, cfg.layernorm_eps);
  for (const TokenKey& k : kTokenKeys) w.SetU32(k.key, uint32_t(cfg.tokens.*(k.field)));
  w.SetString("glmstream.weight_type", "f16");
  w.SetU32("glmstream.tensor_parallel", 1);
}

void DeclareModelTensors(GgufWriter& w, const ModelConfig& cfg) {
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    std::vector<int64_t> shape(s.shape, s.shape + s.ndim);
    w.AddTensor(s.gguf_name, GgmlType::kF16, shape,
                s.layer < 0 ? kGlobalExtent : LayerExtent(s.layer));
  });
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
    if (v > (1u << 30)) return Errorf("%s: %s = %llu is implausible", f.path().c_str(), k.key,
                                      (unsigned long long)v);
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

namespace {

// Binds the tensors of one extent (layer >= 0, or the globals for layer -1) to views into a
// buffer holding that extent's bytes, checking presence, extent, type and shape.
Status BindExtent(const GgufFile& f, const ModelConfig& cfg, int layer, const void* extent_base,
                  LayerWeights* lw, GlobalWeights* gw) {
  const int extent = layer < 0 ? kGlobalExtent : LayerExtent(layer);
  if (extent >= int(f.extents().size())) {
    return Errorf("%s: no extent %d (the file has %zu)", f.path().c_str(), extent,
                  f.extents().size());
  }
  const uint64_t extent_offset = f.extents()[extent].offset;
  Status st;
  ForEachTensor(cfg, [&](const TensorSpec& spec) {
    if (!st.ok() || spec.layer != layer) return;
    const GgufTensorInfo* t = f.FindTensor(spec.gguf_name);
    if (!t) {
      st = Errorf("%s: tensor '%s' is missing", f.path().c_str(), spec.gguf_name.c_str());
      return;
    }
    std::vector<int64_t> want(spec.shape, spec.shape + spec.ndim);
    if (t->type != GgmlType::kF16 || t->shape != want) {
      st = Errorf("%s: tensor '%s' is %s %s, expected f16 %s", f.path().c_str(),
                  spec.gguf_name.c_str(), GgmlTypeName(t->type), ShapeStr(t->shape).c_str(),
                  ShapeStr(want).c_str());
      return;
    }
    if (t->extent != extent) {
      st = Errorf("%s: tensor '%s' is in extent %d, expected %d", f.path().c_str(),
                  spec.gguf_name.c_str(), t->extent, extent);
      return;
    }
    TensorView v;
    v.dtype = DType::kF16;
    v.ndim = spec.ndim;
    v.shape[0] = spec.shape[0];
    v.shape[1] = spec.ndim == 2 ? spec.shape[1] : 1;
    v.data = static_cast<const char*>(extent_base) + (t->offset - extent_offset);
    if (layer < 0) {
      gw->*(spec.global_slot) = v;
    } else {
      lw->*(spec.layer_slot) = v;
    }
  });
  return st;
}

}  // namespace

Status BindLayer(const GgufFile& f, const ModelConfig& cfg, int layer, const void* extent_base,
                 LayerWeights* out) {
  GLM_CHECK(layer >= 0 && layer < cfg.num_layers);
  return BindExtent(f, cfg, layer, extent_base, out, nullptr);
}

Status BindGlobals(const GgufFile& f, const ModelConfig& cfg, const void* extent_base,
                   GlobalWeights* out) {
  return BindExtent(f, cfg, -1, extent_base, nullptr, out);
}

StatusOr<std::unique_ptr<MmapStore>> MmapStore::Open(const std::string& path) {
  std::unique_ptr<MmapStore> s(new MmapStore());
  ASSIGN_OR_RETURN(s->file_, GgufFile::Open(path));
  ASSIGN_OR_RETURN(s->cfg_, ReadModelConfig(*s->file_));
  ASSIGN_OR_RETURN(std::string wtype, s->file_->GetString("glmstream.weight_type"));
  if (wtype != "f16") {
    return Errorf("%s: weight type '%s' is not supported by this build (f16 only)", path.c_str(),
                  wtype.c_str());
  }
  s->map_bytes_ = s->file_->file_size();
  s->map_ = mmap(nullptr, s->map_bytes_, PROT_READ, MAP_SHARED, s->file_->fd(), 0);
  if (s->map_ == MAP_FAILED) {
    s->map_ = nullptr;
    return ErrnoError("mmap", path, errno);
  }
  const char* data = static_cast<const char*>(s->map_) + s->file_->data_offset();
  const auto& extents = s->file_->extents();
  RETURN_IF_ERROR(BindGlobals(*s->file_, s->cfg_, data + extents[kGlobalExtent].offset,
                              &s->globals_));
  s->layers_.resize(s->cfg_.num_layers);
  for (int l = 0; l < s->cfg_.num_layers; ++l) {
    RETURN_IF_ERROR(BindLayer(*s->file_, s->cfg_, l, data + extents[LayerExtent(l)].offset,
                              &s->layers_[l]));
  }
  return s;
}

MmapStore::~MmapStore() {
  if (map_) munmap(map_, map_bytes_);
}

StatusOr<const LayerWeights*> MmapStore::Acquire(int layer) {
  if (layer < 0 || layer >= cfg_.num_layers) {
    return Errorf("layer %d outside [0, %d)", layer, cfg_.num_layers);
  }
  return &layers_[layer];
}

}  // namespace glm
