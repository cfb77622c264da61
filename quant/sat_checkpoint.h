// Reader for SAT checkpoints as GLM-130B is distributed (spec §2.1-2.3): a directory with
// `latest` and `<iteration>/mp_rank_XX_model_states.pt`, each a torch.save zip archive whose
// pickle holds {"module": state_dict, ...}. Tensor-parallel shards are merged exactly as the
// reference tools/convert_tp.py does. Memory stays bounded: the pickles are small and are parsed
// at Open(); tensor bytes are read from the archives one tensor at a time.
// The pickle interpreter never executes anything (see quant/pickle.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/tensor.h"

namespace glm {

// One tensor of the merged (TP=1) state dict.
struct SatTensorInfo {
  std::string key;              // "transformer.layers.0.attention.query_key_value.weight"
  DType dtype = DType::kF16;    // stored dtype: kF16, kBF16 or kF32
  std::vector<int64_t> shape;   // merged shape
  std::vector<int64_t> rank_shape;  // shape of the shard on each rank
};

class SatCheckpoint {
 public:
  // Opens `dir`: reads `latest`, finds every mp_rank_XX_model_states.pt of that iteration
  // (ranks 00..N-1, none missing), parses each pickle, and checks that the ranks agree (same
  // keys, dtypes, and shard shapes consistent with the TP rule of each key).
  static StatusOr<std::unique_ptr<SatCheckpoint>> Open(const std::string& dir);
  virtual ~SatCheckpoint() = default;

  virtual int tp() const = 0;
  virtual const std::string& iteration() const = 0;
  // Every tensor key of the state dict, sorted as in the rank-0 pickle.
  virtual const std::vector<SatTensorInfo>& tensors() const = 0;
  virtual const SatTensorInfo* Find(const std::string& key) const = 0;

  // Reads the merged tensor `key` and converts it to `out_dtype` (kF16 or kF32; bf16 and f32
  // sources are rounded to f16 with round-to-nearest-even). `out` must hold exactly
  // numel * sizeof(out_dtype) bytes. Reads only this tensor's bytes from each rank file.
  virtual Status ReadMerged(const std::string& key, DType out_dtype, void* out,
                            size_t out_bytes) const = 0;

  // Reads rows [row0, row0 + nrows) of rank `rank`'s shard of `key` re-split `tp` ways by
  // convert_tp.py's rules (quant/tp.h), converted to `out_dtype` (kF16 or kF32), row-major.
  // Reads only the bytes of those rows from the rank files (for a column split, whole source
  // rows). ReadShardRows(key, 1, 0, 0, rows, ...) equals ReadMerged. 1-D tensors have one column.
  virtual Status ReadShardRows(const std::string& key, int tp, int rank, int64_t row0,
                               int64_t nrows, DType out_dtype, void* out,
                               size_t out_bytes) const = 0;
};

// How convert_tp.py merges a key across ranks (by name, spec §2.3).
enum class SatMergeRule {
  kReplicated,  // SEQUENTIAL_LAYERS: taken from rank 0
  kCatDim0,
  kCatDim1,     // attention.dense.weight, mlp.dense_4h_to_h.weight
  kGlu,         // mlp.dense_h_to_4h.weight / .bias
};
SatMergeRule SatMergeRuleForKey(const std::string& key);

// One tensor of one rank file as stored, before merging. Exposed for tests, tools and the fuzzer.
struct SatShard {
  std::string key;
  DType dtype = DType::kF16;  // kF16, kBF16 or kF32
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // elements; torch views (slices, transposes) are not contiguous
  int64_t storage_offset = 0;    // elements
  std::string storage_entry;     // archive entry holding the storage: "<prefix>/data/<key>"
  uint64_t storage_bytes = 0;
};

// Parses one rank file (zip + pickle, spec §2.1) and lists the tensors under 'module' in pickle
// order, with every check Open() applies to a single rank (allowed globals, dtypes, storage
// bounds). Reads only the archive directory and data.pkl.
StatusOr<std::vector<SatShard>> SatListRankFile(const std::string& path);

}  // namespace glm
