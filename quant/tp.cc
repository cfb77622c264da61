// convert_tp.py's merge/split rules (spec §2.3) as element runs between shards of two TP degrees.
#include "quant/tp.h"

#include <algorithm>

namespace glm {
namespace {

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Merged row of row j of rank r's shard (rows R merged, N ranks).
int64_t MergedRow(SatMergeRule rule, int64_t R, int N, int r, int64_t j) {
  switch (rule) {
    case SatMergeRule::kCatDim0:
      return int64_t(r) * (R / N) + j;
    case SatMergeRule::kGlu: {
      const int64_t part = R / 2 / N;  // rows of x1 (and of x2) per rank
      return j < part ? int64_t(r) * part + j : R / 2 + int64_t(r) * part + (j - part);
    }
    default:
      return j;  // kReplicated, kCatDim1: every rank has every row
  }
}

// Rank and shard row holding merged row m (for the row-splitting rules).
void ShardOfRow(SatMergeRule rule, int64_t R, int N, int64_t m, int* rank, int64_t* row) {
  if (rule == SatMergeRule::kCatDim0) {
    *rank = int(m / (R / N));
    *row = m % (R / N);
  } else if (rule == SatMergeRule::kGlu) {
    const int64_t part = R / 2 / N;
    const bool second = m >= R / 2;
    const int64_t i = second ? m - R / 2 : m;
    *rank = int(i / part);
    *row = (second ? part : 0) + i % part;
  } else {
    *rank = 0;
    *row = m;
  }
}

}  // namespace

std::vector<int64_t> TpShardShape(SatMergeRule rule, const std::vector<int64_t>& merged, int tp) {
  std::vector<int64_t> s = merged;
  if (tp == 1 || rule == SatMergeRule::kReplicated) return s;
  const size_t dim = rule == SatMergeRule::kCatDim1 ? 1 : 0;
  if (dim < s.size()) s[dim] /= tp;
  return s;
}

Status CheckTpSplit(const std::string& tensor, SatMergeRule rule,
                    const std::vector<int64_t>& merged, int tp) {
  if (tp < 1) return Errorf("tensor-parallel degree %d", tp);
  if (tp == 1 || rule == SatMergeRule::kReplicated) return Status::Ok();
  const size_t dim = rule == SatMergeRule::kCatDim1 ? 1 : 0;
  if (merged.size() <= dim || merged.size() > 2) {
    return Errorf("tensor '%s' %s cannot be split %d ways along dim %zu", tensor.c_str(),
                  ShapeStr(merged).c_str(), tp, dim);
  }
  const int64_t unit = rule == SatMergeRule::kGlu ? 2 * int64_t(tp) : tp;
  if (merged[dim] % unit != 0) {
    return Errorf(
        "tensor '%s' %s: dim %zu (%lld) is not divisible by %lld, so it cannot be "
        "split into %d tensor-parallel ranks%s",
        tensor.c_str(), ShapeStr(merged).c_str(), dim, (long long)merged[dim], (long long)unit, tp,
        rule == SatMergeRule::kGlu ? " (GLU halves are split separately)" : "");
  }
  return Status::Ok();
}

std::vector<TpRun> TpReshardRuns(SatMergeRule rule, const std::vector<int64_t>& merged, int tp_in,
                                 int tp_out, int rank, int64_t row0, int64_t nrows) {
  const int64_t R = merged.empty() ? 1 : merged[0];
  const int64_t K = merged.size() == 2 ? merged[1] : 1;
  const bool cols_split = rule == SatMergeRule::kCatDim1;
  const int in = rule == SatMergeRule::kReplicated ? 1 : tp_in;
  const int out = rule == SatMergeRule::kReplicated ? 1 : tp_out;
  const int r_out = rule == SatMergeRule::kReplicated ? 0 : rank;
  const int64_t k_in = cols_split ? K / in : K;                // columns of a source shard
  const int64_t k_out = cols_split ? K / out : K;              // columns of the target shard
  const int64_t c0 = cols_split ? int64_t(r_out) * k_out : 0;  // first merged column we need
  std::vector<TpRun> runs;
  auto add = [&](int s, int64_t src, int64_t n, int64_t dst) {
    if (!runs.empty()) {
      TpRun& b = runs.back();
      if (b.src_rank == s && b.src + b.n == src && b.dst + b.n == dst) {
        b.n += n;
        return;
      }
    }
    runs.push_back({s, src, n, dst});
  };
  for (int64_t j = row0; j < row0 + nrows; ++j) {
    const int64_t m = MergedRow(rule, R, out, r_out, j);
    const int64_t dst_row = (j - row0) * k_out;
    if (cols_split) {
      // Merged columns [c0, c0 + k_out) come from the source ranks that hold them.
      for (int64_t c = c0; c < c0 + k_out;) {
        const int s = int(c / k_in);
        const int64_t end = std::min(c0 + k_out, int64_t(s + 1) * k_in);
        add(s, m * k_in + (c - int64_t(s) * k_in), end - c, dst_row + (c - c0));
        c = end;
      }
    } else {
      int s;
      int64_t i;
      ShardOfRow(rule, R, in, m, &s, &i);
      add(s, i * K, K, dst_row);
    }
  }
  std::stable_sort(runs.begin(), runs.end(), [](const TpRun& a, const TpRun& b) {
    return a.src_rank != b.src_rank ? a.src_rank < b.src_rank : a.src < b.src;
  });
  return runs;
}

}  // namespace glm
