// SAT checkpoint -> glmstream model file (GGUF): the config inference and the original entry point
// (TP=1, no compression), now a thin wrapper of QuantizeModel (quant/quantize.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "quant/sat_checkpoint.h"
#include "runtime/check.h"
#include "runtime/config.h"

namespace glm {

struct ConvertProgress {
  int tensors_done = 0, tensors_total = 0;
  uint64_t bytes_done = 0, bytes_total = 0;
  const std::string* tensor = nullptr;  // the tensor just written
};

struct ConvertOptions {
  std::string input_dir;
  std::string output_path;
  int bits = 16;                        // 16, or 8/4 for GLM-130B's row scheme
  std::optional<SpecialTokens> tokens;  // default: GLM-130B's ids (needs vocab >= 150008)
  int num_heads = 0;                    // 0: hidden / 128 (GLM's head dim)
  int max_seq = 2048;
  bool overwrite = false;                                // replace an existing output file
  std::function<void(const ConvertProgress&)> progress;  // tensors = extents here
};

// Infers the ModelConfig from the checkpoint's keys and shapes, and checks that the key set is
// exactly the model's (plus the ignored rotary inv_freq buffers, spec §2.2).
StatusOr<ModelConfig> InferConfig(const SatCheckpoint& ckpt, const ConvertOptions& opts);

Status ConvertSatToGguf(const ConvertOptions& opts);

}  // namespace glm
