// Synthetic models: a model file of any GLM-shaped config filled with deterministic random
// weights of realistic scale, for benchmarks, demos and tests that need no checkpoint.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"

namespace glm {

// Named configs: "demo" (GLM-130B's 150528-id vocabulary and special ids on a 4-layer, 256-wide
// body), "tiny" (runs in milliseconds), "small", "medium", and "glm130b-L<n>" (GLM-130B's
// layer shapes and vocabulary with n layers). Unknown names are an error listing the presets.
StatusOr<ModelConfig> SyntheticPreset(const std::string& name);
std::vector<std::string> SyntheticPresetNames();

// Writes a model file (f16) for `cfg` with weights drawn from `seed`: linear weights uniform with
// std 0.02, biases 0, LayerNorm γ=1 β=0, embedding std 0.02. Streams tensor by tensor (memory
// bounded by the largest tensor's chunk). progress(bytes_done, bytes_total) is optional.
Status WriteSyntheticModel(const std::string& path, const ModelConfig& cfg, uint64_t seed,
                           const std::function<void(uint64_t, uint64_t)>& progress = nullptr);

}  // namespace glm
