// glm-quantize's engine: a SAT checkpoint or f16 model file of any TP degree -> a model file with
// f16, int8 or int4 (row or group scheme) weights at any TP degree, optionally zstd-compressed
// (docs/glm-quantize.md).
//
// Memory: one shard (or, with max_memory, one block of rows of it) at a time: a fixed amount plus
// the largest single tensor, independent of the model size.
// Safety: the file is written as OUT.partial and renamed when complete (GgufWriter). After every
// extent (a layer's rank shard) OUT.partial.journal records the extent's XXH64; --resume checks
// the extents of the interrupted file against it, reuses the verified prefix (copied into a fresh
// OUT.partial, so the result is byte-identical to an uninterrupted run) and converts the rest.
// Any error removes OUT.partial; no final file exists unless everything succeeded.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "offload/model_file.h"
#include "quant/compress.h"
#include "quant/format.h"
#include "quant/weight_source.h"

namespace glm {

struct QuantizeProgress {
  const char* phase = "";  // "verify", "copy", "convert", "compress"
  int layers_done = 0, layers_total = 0;
  int extents_done = 0, extents_total = 0;
  uint64_t bytes_done = 0, bytes_total = 0;  // bytes of the output's tensor data
};

struct QuantizeOptions {
  std::string input;        // SAT checkpoint directory or f16 model file
  std::string output_path;  // the model file to write
  SourceOptions source;
  ModelFileFormat format;   // bits, scheme, group size, TP degree of the output
  int zstd_level = 0;       // 0: not compressed
  bool zstd_planes = true;  // codec 2 (byte planes) for f16-only extents
  uint64_t max_memory = 0;  // 0: whole shards; else rows are converted in blocks of about this
  bool resume = false;      // continue an interrupted conversion of the same input and options
  bool overwrite = false;   // replace an existing output file
  std::string name;         // general.name (default: "GLM (<source>)")
  std::function<void(const QuantizeProgress&)> progress;
  // Called after each extent is complete and journaled (tests kill the process here).
  std::function<void(int extent)> on_extent_done;
  const WeightSource* source_override = nullptr;  // tests: read from this instead of `input`
};

struct QuantizeReport {
  std::string source;  // description of the input
  ModelConfig cfg;
  ModelFileFormat format;
  uint64_t input_bytes = 0;   // tensor bytes of the input
  uint64_t output_bytes = 0;  // size of the final file
  double seconds = 0;
  int extents_total = 0, extents_reused = 0;  // reused: verified and copied by --resume
  std::vector<std::string> warnings;
  // Per quantized tensor type ("attn_qkv", "attn_output", "ffn_up", "ffn_down"), over all layers
  // and ranks, as converted in this run (extents reused by --resume are not re-measured).
  std::vector<std::pair<std::string, QuantError>> errors;
  std::optional<CompressStats> zstd;
};

StatusOr<QuantizeReport> QuantizeModel(const QuantizeOptions& opts);

}  // namespace glm
