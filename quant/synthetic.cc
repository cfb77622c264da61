// Synthetic model files: presets and a streaming random-weight writer.
#include "quant/synthetic.h"

#include <cstdlib>

#include "offload/model_file.h"
#include "runtime/weights.h"

namespace glm {
namespace {

// xorshift64*: fast and deterministic across platforms.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
  }
  // Uniform in [-a, a).
  float Uniform(float a) { return (float(Next() >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a; }
};

}  // namespace

std::vector<std::string> SyntheticPresetNames() {
  return {"demo", "tiny", "small", "medium", "glm130b-L<n>"};
}

StatusOr<ModelConfig> SyntheticPreset(const std::string& name) {
  ModelConfig c;
  // Small vocabularies put the special ids at the top of the vocabulary.
  auto small_vocab = [](ModelConfig& m, int vocab) {
    m.vocab = vocab;
    m.tokens = SpecialTokens{.mask = vocab - 8, .gmask = vocab - 7, .smask = vocab - 6,
                             .sop = vocab - 4, .eop = vocab - 3, .eos = vocab - 2};
  };
  if (name == "demo") {
    // GLM-130B's vocabulary and special ids (so icetk-style tokenizers fit) on a tiny body.
    c = ModelConfig{.num_layers = 4, .hidden = 256, .inner = 640, .num_heads = 2,
                    .head_dim = 128, .max_seq = 2048};
  } else if (name == "tiny") {
    c = ModelConfig{.num_layers = 2, .hidden = 256, .inner = 512, .num_heads = 2,
                    .head_dim = 128, .max_seq = 512};
    small_vocab(c, 1024);
  } else if (name == "small") {
    c = ModelConfig{.num_layers = 8, .hidden = 1024, .inner = 2816, .num_heads = 8,
                    .head_dim = 128, .max_seq = 2048};
    small_vocab(c, 32768);
  } else if (name == "medium") {
    c = ModelConfig{.num_layers = 16, .hidden = 2048, .inner = 5504, .num_heads = 16,
                    .head_dim = 128, .max_seq = 2048};
    small_vocab(c, 32768);
  } else if (name.rfind("glm130b-L", 0) == 0) {
    char* end = nullptr;
    const long n = std::strtol(name.c_str() + 9, &end, 10);
    if (*end != '\0' || n < 1 || n > 70) {
      return Errorf("synthetic preset '%s': expected glm130b-L<n> with 1 <= n <= 70", name.c_str());
    }
    c = ModelConfig::Glm130B();
    c.num_layers = int(n);
  } else {
    return Errorf("unknown synthetic preset '%s' (known: demo, tiny, small, medium, glm130b-L<n>)",
                  name.c_str());
  }
  RETURN_IF_ERROR(c.Validate());
  return c;
}

Status WriteSyntheticModel(const std::string& path, const ModelConfig& cfg, uint64_t seed,
                           const std::function<void(uint64_t, uint64_t)>& progress) {
  RETURN_IF_ERROR(cfg.Validate());
  GgufWriter w(path, kFileAlignment);
  WriteModelMetadata(w, cfg, "synthetic " + cfg.ToString());
  DeclareModelTensors(w, cfg);
  RETURN_IF_ERROR(w.Begin());
  uint64_t total = 0, done = 0;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    total += uint64_t(s.shape[0]) * (s.ndim == 2 ? s.shape[1] : 1) * 2;
  });
  Rng rng{seed * 0x9E3779B97F4A7C15ULL + 1};
  const float kUniformStd002 = 0.02f * 1.7320508f;  // uniform [-a, a) has std a/sqrt(3)
  std::vector<Half> chunk(1 << 20);
  Status st;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    if (!st.ok()) return;
    const bool is_norm_weight = s.ndim == 1 && s.gguf_name.find("norm.weight") != std::string::npos;
    const bool is_bias = s.ndim == 1 && !is_norm_weight;
    int64_t left = s.shape[0] * (s.ndim == 2 ? s.shape[1] : 1);
    while (left > 0 && st.ok()) {
      const int64_t n = std::min<int64_t>(left, int64_t(chunk.size()));
      for (int64_t i = 0; i < n; ++i) {
        chunk[i] = is_norm_weight ? FloatToHalf(1.0f)
                   : is_bias      ? Half{}
                                  : FloatToHalf(rng.Uniform(kUniformStd002));
      }
      st = w.WriteTensorData(chunk.data(), size_t(n) * sizeof(Half));
      left -= n;
      done += uint64_t(n) * sizeof(Half);
      if (progress) progress(done, total);
    }
  });
  RETURN_IF_ERROR(st);
  return w.Finish();
}

}  // namespace glm
