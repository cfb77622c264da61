// Where glm-quantize reads weights from: a SAT checkpoint of any TP degree (as GLM-130B is
// distributed) or an f16 glmstream model file of any TP degree (to re-shard a converted file).
// Either way a reader asks for rows of one rank's shard at the TP degree it writes, and the
// source assembles them from its own shards with convert_tp.py's rules (quant/tp.h), reading
// only those rows.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/fp16.h"
#include "runtime/weights.h"

namespace glm {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  virtual const ModelConfig& config() const = 0;
  virtual int tp() const = 0;  // the source's own TP degree
  // "SAT checkpoint DIR (iteration 1, 2 ranks)"
  virtual std::string Describe() const = 0;
  // Identity of the input files (paths, sizes, modification times), for --resume.
  virtual std::string Fingerprint() const = 0;
  // Bytes of tensor data the source holds (f16/bf16/f32 as stored).
  virtual uint64_t DataBytes() const = 0;
  // Rows [row0, row0 + nrows) of rank `rank`'s shard of `spec` split `tp` ways, as fp16
  // (row-major, shard columns; 1-D tensors have one column). Model-level tensors are never split
  // (pass tp = 1).
  virtual Status ReadShardRows(const TensorSpec& spec, int tp, int rank, int64_t row0,
                               int64_t nrows, Half* out) const = 0;
};

struct SourceOptions {
  std::optional<SpecialTokens> tokens;  // SAT only: default GLM-130B's ids (needs vocab >= 150008)
  int num_heads = 0;                    // SAT only: 0 = hidden / 128
  int max_seq = 2048;                   // SAT only
};

// Opens a SAT checkpoint directory or a glmstream model file (f16, not compressed).
StatusOr<std::unique_ptr<WeightSource>> OpenWeightSource(const std::string& path,
                                                         const SourceOptions& opts);

}  // namespace glm
