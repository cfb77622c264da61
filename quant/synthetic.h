// Synthetic models: a model file of any GLM-shaped config filled with deterministic random
// weights of realistic scale, for benchmarks, demos and tests that need no checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/fp16.h"

namespace glm {

// Named configs: "demo" (GLM-130B's 150528-id vocabulary and special ids on a 4-layer, 256-wide
// body), "tiny" (runs in milliseconds), "small", "medium", and "glm130b-L<n>" (GLM-130B's
// layer shapes and vocabulary with n layers). Unknown names are an error listing the presets.
StatusOr<ModelConfig> SyntheticPreset(const std::string& name);
std::vector<std::string> SyntheticPresetNames();

// The bytes of tensor data WriteSyntheticModel writes for `cfg` (every tensor in fp16).
uint64_t SyntheticModelBytes(const ModelConfig& cfg);

// Writes a model file (f16) for `cfg` with weights drawn from `seed`: linear weights uniform with
// std 0.02, biases 0, LayerNorm γ=1 β=0, embedding std 0.02. Streams tensor by tensor (memory
// bounded by the largest tensor's chunk). progress(bytes_done, bytes_total) is optional.
Status WriteSyntheticModel(const std::string& path, const ModelConfig& cfg, uint64_t seed,
                           const std::function<void(uint64_t, uint64_t)>& progress = nullptr);

// A SAT checkpoint (quant/sat_writer.h) of `cfg` split `tp` ways as convert_tp.py splits, into
// `dir` (created if needed): `latest` = "1" and 1/mp_rank_XX_model_states.pt, with every key of
// spec §2.2 including the rotary inv_freq buffers. Weights are a deterministic function of
// (seed, key, element of the merged tensor), so checkpoints of any TP degree hold the same model
// and are written in parallel, shard by shard, in bounded memory:
//   linear weights  N(0, 0.02); with `outliers`, 1 in 4096 of them is multiplied by 6 (a
//                   heavy-tailed stress case: GLM-130B's own weights are narrow, which is why its
//                   per-row INT4 works, GLM-130B paper §4)
//   embedding       N(0, 0.02)        biases N(0, 0.01)
//   LayerNorm γ     1 + N(0, 0.05)    LayerNorm β N(0, 0.02)
//   inv_freq        1 / 10000^(2i/D) (spec §1.6)
// (normals come from a 65536-entry inverse-CDF table, so |z| <= 4.3 before outliers).
struct SyntheticSatOptions {
  int tp = 1;
  uint64_t seed = 1;
  bool outliers = false;
  std::function<void(uint64_t done, uint64_t total)> progress;  // bytes
};
Status WriteSyntheticSat(const std::string& dir, const ModelConfig& cfg,
                         const SyntheticSatOptions& opts);
// Element `idx` (row-major) of the merged tensor `sat_key` of shape `shape`, as written.
Half SyntheticSatValue(uint64_t seed, const std::string& sat_key, const std::vector<int64_t>& shape,
                       int64_t idx, bool outliers = false);

}  // namespace glm
