// Writer of SAT checkpoints as GLM-130B is distributed (spec §2.1): `latest`, and per rank an
// <iteration>/mp_rank_XX_model_states.pt holding torch.save({"module": OrderedDict(...)}) — a
// stored zip (archive/data.pkl, archive/data/<key>, archive/version) whose protocol-2 pickle
// rebuilds each tensor with torch._utils._rebuild_tensor_v2 from a persistent storage id
// ('storage', torch.HalfStorage, key, 'cpu', numel). Tensor bytes are streamed, so checkpoints
// of any size are written in bounded memory. torch.load reads the result (tests check it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/fp16.h"

namespace glm {

struct SatWriteTensor {
  std::string key;             // "transformer.layers.0.attention.dense.weight"
  std::vector<int64_t> shape;  // fp16, contiguous
};

// The data.pkl of a rank file: {"module": OrderedDict(key -> fp16 tensor)}, storage keys
// "0".."n-1".
std::string SatStateDictPickle(const std::vector<SatWriteTensor>& tensors);

// Writes one rank file. fill(i, elem0, n, out) produces elements [elem0, elem0 + n) of tensor i
// (row-major) in chunks of whole rows (of the last dimension), about 16M elements each.
using SatFill = std::function<Status(size_t tensor, int64_t elem0, int64_t n, Half* out)>;
Status WriteSatRankFile(const std::string& path, const std::vector<SatWriteTensor>& tensors,
                        const SatFill& fill);

}  // namespace glm
