// Tensor-parallel re-sharding as tools/convert_tp.py does it (spec §2.3), in terms of element
// runs: which elements of which source shard make up rows of a target shard. A source of any TP
// degree M (a SAT checkpoint, a model file) is re-sharded to any degree N without materializing
// the merged tensor: the merged (TP=1) tensor is only the coordinate system.
//   kReplicated  every rank holds the whole tensor (rank 0's copy is the one read)
//   kCatDim0     rank r holds rows [r·R/N, (r+1)·R/N)
//   kGlu         rank r holds rows [r·F/N, (r+1)·F/N) of the first half (x1) followed by the same
//                rows of the second half (x2), F = R/2: chunk(2N) -> cat(chunk[r], chunk[N+r])
//   kCatDim1     rank r holds columns [r·K/N, (r+1)·K/N) of every row
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quant/sat_checkpoint.h"

namespace glm {

// Shape of one rank's shard of a tensor of merged shape `merged` (1-D or 2-D) split `tp` ways.
std::vector<int64_t> TpShardShape(SatMergeRule rule, const std::vector<int64_t>& merged, int tp);
// Checks that the split is exact (convert_tp.py's torch.chunk would otherwise give unequal
// shards); the error names the tensor and the dimension.
Status CheckTpSplit(const std::string& tensor, SatMergeRule rule,
                    const std::vector<int64_t>& merged, int tp);

// `n` consecutive elements of source shard `src_rank` starting at element `src` (row-major within
// that shard) land at element `dst` of the output.
struct TpRun {
  int src_rank = 0;
  int64_t src = 0, n = 0, dst = 0;
};

// Runs that assemble rows [row0, row0 + nrows) of rank `rank`'s shard (TP degree `tp_out`) from
// the shards of a source with `tp_in` ranks, into a row-major [nrows, shard cols] output.
// Sorted by (src_rank, src); adjacent runs are coalesced. Both splits must be exact.
std::vector<TpRun> TpReshardRuns(SatMergeRule rule, const std::vector<int64_t>& merged, int tp_in,
                                 int tp_out, int rank, int64_t row0, int64_t nrows);

}  // namespace glm
