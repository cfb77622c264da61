// ConvertSatToGguf: SAT reader -> tensor table -> GGUF writer, one tensor at a time.
#include "quant/convert.h"

#include <sys/stat.h>

#include <set>
#include <vector>

#include "offload/model_file.h"
#include "quant/quantize.h"
#include "runtime/weights.h"

namespace glm {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The reference keeps a rotary inv_freq buffer per layer; it is recomputed, never read (§2.2).
bool IsIgnoredKey(const std::string& key) {
  return EndsWith(key, ".attention.rotary_emb.inv_freq");
}

}  // namespace

StatusOr<ModelConfig> InferConfig(const SatCheckpoint& ckpt, const ConvertOptions& opts) {
  auto shape_of = [&](const std::string& key) -> StatusOr<std::vector<int64_t>> {
    const SatTensorInfo* t = ckpt.Find(key);
    if (!t) return Errorf("checkpoint has no tensor '%s'", key.c_str());
    return t->shape;
  };
  ModelConfig cfg;
  int layers = 0;
  for (const SatTensorInfo& t : ckpt.tensors()) {
    int l = -1;
    if (std::sscanf(t.key.c_str(), "transformer.layers.%d.", &l) == 1 && l + 1 > layers) {
      layers = l + 1;
    }
  }
  if (layers == 0) return Errorf("checkpoint has no 'transformer.layers.N.*' tensors");
  cfg.num_layers = layers;
  ASSIGN_OR_RETURN(auto ln, shape_of("transformer.final_layernorm.weight"));
  ASSIGN_OR_RETURN(auto emb, shape_of("transformer.word_embeddings.weight"));
  ASSIGN_OR_RETURN(auto down, shape_of("transformer.layers.0.mlp.dense_4h_to_h.weight"));
  if (ln.size() != 1 || emb.size() != 2 || down.size() != 2) {
    return Errorf("unexpected ranks: final_layernorm %s, word_embeddings %s, dense_4h_to_h %s",
                  ShapeString(ln).c_str(), ShapeString(emb).c_str(), ShapeString(down).c_str());
  }
  cfg.hidden = int(ln[0]);
  cfg.vocab = int(emb[0]);
  cfg.inner = int(down[1]);
  if (opts.num_heads > 0) {
    cfg.num_heads = opts.num_heads;
  } else if (cfg.hidden % 128 == 0) {
    cfg.num_heads = cfg.hidden / 128;
  } else {
    return Errorf("hidden size %d is not a multiple of GLM's head dim 128; pass --num-heads",
                  cfg.hidden);
  }
  if (cfg.hidden % cfg.num_heads != 0) {
    return Errorf("hidden size %d is not divisible by %d heads", cfg.hidden, cfg.num_heads);
  }
  cfg.head_dim = cfg.hidden / cfg.num_heads;
  cfg.max_seq = opts.max_seq;
  if (opts.tokens) {
    cfg.tokens = *opts.tokens;
  } else if (cfg.vocab < 150008) {
    return Errorf(
        "the vocabulary has %d ids, too few for GLM-130B's special ids (150000..150007);"
        " pass --special-tokens",
        cfg.vocab);
  }
  RETURN_IF_ERROR(cfg.Validate());

  // Every tensor of the model must be present with its shape, and nothing else may be.
  std::set<std::string> expected;
  Status st;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    expected.insert(s.sat_key);
    if (!st.ok()) return;
    const SatTensorInfo* t = ckpt.Find(s.sat_key);
    std::vector<int64_t> want(s.shape, s.shape + s.ndim);
    if (!t) {
      st = Errorf("checkpoint is missing tensor '%s' (expected shape %s)", s.sat_key.c_str(),
                  ShapeString(want).c_str());
    } else if (t->shape != want) {
      st = Errorf("tensor '%s' has shape %s, but the config %s expects %s", s.sat_key.c_str(),
                  ShapeString(t->shape).c_str(), cfg.ToString().c_str(), ShapeString(want).c_str());
    }
  });
  RETURN_IF_ERROR(st);
  for (const SatTensorInfo& t : ckpt.tensors()) {
    if (!expected.count(t.key) && !IsIgnoredKey(t.key)) {
      return Errorf("checkpoint has an unknown tensor '%s' %s: not part of a GLM model",
                    t.key.c_str(), ShapeString(t.shape).c_str());
    }
  }
  return cfg;
}

Status ConvertSatToGguf(const ConvertOptions& opts) {
  if (opts.bits != 16 && opts.bits != 8 && opts.bits != 4) {
    return Errorf("--bits %d: expected 16, 8 or 4", opts.bits);
  }
  QuantizeOptions q;
  q.input = opts.input_dir;
  q.output_path = opts.output_path;
  q.format.quant.bits = opts.bits;
  q.source.tokens = opts.tokens;
  q.source.num_heads = opts.num_heads;
  q.source.max_seq = opts.max_seq;
  q.overwrite = opts.overwrite;
  q.name = "GLM (converted from " + opts.input_dir + ")";
  if (opts.progress) {
    q.progress = [&](const QuantizeProgress& p) {
      ConvertProgress c;
      c.tensors_done = p.extents_done;
      c.tensors_total = p.extents_total;
      c.bytes_done = p.bytes_done;
      c.bytes_total = p.bytes_total;
      const std::string phase = p.phase;
      c.tensor = &phase;
      opts.progress(c);
    };
  }
  return QuantizeModel(q).status();
}

}  // namespace glm
