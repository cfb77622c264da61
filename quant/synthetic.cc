// Synthetic model files: presets and a streaming random-weight writer.
#include "quant/synthetic.h"

#include <xxhash.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "offload/model_file.h"
#include "quant/sat_checkpoint.h"
#include "quant/sat_writer.h"
#include "quant/tp.h"
#include "runtime/parallel.h"
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
    m.tokens = SpecialTokens{.mask = vocab - 8,
                             .gmask = vocab - 7,
                             .smask = vocab - 6,
                             .sop = vocab - 4,
                             .eop = vocab - 3,
                             .eos = vocab - 2};
  };
  if (name == "demo") {
    // GLM-130B's vocabulary and special ids (so icetk-style tokenizers fit) on a tiny body.
    c = ModelConfig{.num_layers = 4,
                    .hidden = 256,
                    .inner = 640,
                    .num_heads = 2,
                    .head_dim = 128,
                    .max_seq = 2048,
                    .tokens = {}};
  } else if (name == "tiny") {
    c = ModelConfig{.num_layers = 2,
                    .hidden = 256,
                    .inner = 512,
                    .num_heads = 2,
                    .head_dim = 128,
                    .max_seq = 512,
                    .tokens = {}};
    small_vocab(c, 1024);
  } else if (name == "small") {
    c = ModelConfig{.num_layers = 8,
                    .hidden = 1024,
                    .inner = 2816,
                    .num_heads = 8,
                    .head_dim = 128,
                    .max_seq = 2048,
                    .tokens = {}};
    small_vocab(c, 32768);
  } else if (name == "medium") {
    c = ModelConfig{.num_layers = 16,
                    .hidden = 2048,
                    .inner = 5504,
                    .num_heads = 16,
                    .head_dim = 128,
                    .max_seq = 2048,
                    .tokens = {}};
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

uint64_t SyntheticModelBytes(const ModelConfig& cfg) {
  uint64_t bytes = 0;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    bytes += uint64_t(s.shape[0]) * (s.ndim == 2 ? s.shape[1] : 1) * 2;
  });
  return bytes;
}

Status WriteSyntheticModel(const std::string& path, const ModelConfig& cfg, uint64_t seed,
                           const std::function<void(uint64_t, uint64_t)>& progress) {
  RETURN_IF_ERROR(cfg.Validate());
  GgufWriter w(path, kFileAlignment);
  WriteModelMetadata(w, cfg, "synthetic " + cfg.ToString());
  DeclareModelTensors(w, cfg);
  RETURN_IF_ERROR(w.Begin());
  const uint64_t total = SyntheticModelBytes(cfg);
  uint64_t done = 0;
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

namespace {

// splitmix64's finalizer: a counter-based generator (any element, any order, any thread).
inline uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Standard normal quantiles at (i + 0.5) / 65536, by bisection on erfc.
const std::array<float, 65536>& NormalTable() {
  static const auto* table = [] {
    auto* t = new std::array<float, 65536>();
    for (int i = 0; i < 32768; ++i) {
      const double p = (i + 0.5) / 65536.0;  // lower tail
      double lo = -10, hi = 0;
      for (int k = 0; k < 60; ++k) {
        const double mid = 0.5 * (lo + hi);
        (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
      }
      (*t)[size_t(i)] = float(0.5 * (lo + hi));
      (*t)[size_t(65535 - i)] = -float(0.5 * (lo + hi));
    }
    return t;
  }();
  return *table;
}

enum class Kind { kLinear, kEmbedding, kBias, kNormWeight, kNormBias, kInvFreq };

Kind KindOf(const std::string& key) {
  auto ends = [&](const char* s) {
    const size_t n = std::strlen(s);
    return key.size() >= n && key.compare(key.size() - n, n, s) == 0;
  };
  if (ends("inv_freq")) return Kind::kInvFreq;
  if (key.find("layernorm") != std::string::npos)
    return ends(".weight") ? Kind::kNormWeight : Kind::kNormBias;
  if (ends(".bias")) return Kind::kBias;
  if (key.find("word_embeddings") != std::string::npos) return Kind::kEmbedding;
  return Kind::kLinear;
}

struct ValueGen {
  uint64_t base;
  Kind kind;
  int64_t inv_freq_dim;
  bool outliers;
  const std::array<float, 65536>& table = NormalTable();
  Half operator()(int64_t idx) const {
    if (kind == Kind::kInvFreq) {
      return FloatToHalf(float(1.0 / std::pow(10000.0, double(2 * idx) / double(inv_freq_dim))));
    }
    const uint64_t h = Mix(base ^ uint64_t(idx));
    const float z = table[h & 0xffff];
    switch (kind) {
      case Kind::kLinear:
        return FloatToHalf(0.02f * z * (outliers && ((h >> 16) & 4095) == 0 ? 6.0f : 1.0f));
      case Kind::kEmbedding:
        return FloatToHalf(0.02f * z);
      case Kind::kBias:
        return FloatToHalf(0.01f * z);
      case Kind::kNormWeight:
        return FloatToHalf(1.0f + 0.05f * z);
      default:
        return FloatToHalf(0.02f * z);
    }
  }
};

ValueGen Generator(uint64_t seed, const std::string& key, const std::vector<int64_t>& shape,
                   bool outliers) {
  return ValueGen{Mix(XXH64(key.data(), key.size(), seed)), KindOf(key), shape[0] * 2, outliers};
}

Status MakeDir(const std::string& d) {
  std::error_code ec;
  std::filesystem::create_directories(d, ec);
  if (ec) return Errorf("mkdir -p '%s': %s", d.c_str(), ec.message().c_str());
  return Status::Ok();
}

}  // namespace

Half SyntheticSatValue(uint64_t seed, const std::string& sat_key, const std::vector<int64_t>& shape,
                       int64_t idx, bool outliers) {
  return Generator(seed, sat_key, shape, outliers)(idx);
}

Status WriteSyntheticSat(const std::string& dir, const ModelConfig& cfg,
                         const SyntheticSatOptions& opts) {
  RETURN_IF_ERROR(cfg.Validate());
  if (opts.tp < 1 || opts.tp > 64) return Errorf("--tp %d: expected 1..64", opts.tp);
  // Every key of spec §2.2 in the model's order, with inv_freq after each layer's qkv.
  std::vector<std::pair<std::string, std::vector<int64_t>>> keys;
  ForEachTensor(cfg, [&](const TensorSpec& s) {
    keys.push_back({s.sat_key, std::vector<int64_t>(s.shape, s.shape + s.ndim)});
    if (s.layer >= 0 && s.gguf_name.find("attn_qkv.bias") != std::string::npos) {
      keys.push_back({StrFormat("transformer.layers.%d.attention.rotary_emb.inv_freq", s.layer),
                      {cfg.head_dim / 2}});
    }
  });
  for (const auto& [key, shape] : keys) {
    RETURN_IF_ERROR(CheckTpSplit(key, SatMergeRuleForKey(key), shape, opts.tp));
  }
  RETURN_IF_ERROR(MakeDir(dir));
  RETURN_IF_ERROR(MakeDir(dir + "/1"));
  uint64_t total = 0, done = 0;
  for (const auto& [key, shape] : keys) {
    uint64_t n = 2;
    for (int64_t d : shape) n *= uint64_t(d);
    total += n * (SatMergeRuleForKey(key) == SatMergeRule::kReplicated ? uint64_t(opts.tp) : 1);
  }
  for (int r = 0; r < opts.tp; ++r) {
    std::vector<SatWriteTensor> tensors;
    for (const auto& [key, shape] : keys) {
      tensors.push_back({key, TpShardShape(SatMergeRuleForKey(key), shape, opts.tp)});
    }
    const std::string path = StrFormat("%s/1/mp_rank_%02d_model_states.pt", dir.c_str(), r);
    Status st = WriteSatRankFile(path, tensors, [&](size_t i, int64_t e0, int64_t n, Half* out) {
      const auto& [key, shape] = keys[i];
      const SatWriteTensor& t = tensors[i];
      const int64_t cols = t.shape.size() == 2 ? t.shape[1] : 1;
      GLM_CHECK(e0 % cols == 0 && n % cols == 0);  // chunks hold whole rows
      const ValueGen gen = Generator(opts.seed, key, shape, opts.outliers);
      // Shard rows -> element runs of the merged tensor (TP=1 source), generated in parallel.
      for (const TpRun& run :
           TpReshardRuns(SatMergeRuleForKey(key), shape, 1, opts.tp, r, e0 / cols, n / cols)) {
        ThreadPool::Global().ParallelFor(run.n, 1 << 16, [&](int64_t a, int64_t b) {
          for (int64_t k = a; k < b; ++k) out[run.dst + k] = gen(run.src + k);
        });
      }
      done += uint64_t(n) * 2;
      if (opts.progress) opts.progress(done, total);
      return Status::Ok();
    });
    RETURN_IF_ERROR(st.WithContext(path));
  }
  std::ofstream latest(dir + "/latest");
  latest << "1";
  if (!latest.good()) return Errorf("cannot write '%s/latest'", dir.c_str());
  return Status::Ok();
}

}  // namespace glm
