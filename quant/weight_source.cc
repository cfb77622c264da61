// Weight sources for glm-quantize: SAT checkpoints and f16 model files, re-sharded on read.
#include "quant/weight_source.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "offload/model_file.h"
#include "quant/convert.h"
#include "quant/sat_checkpoint.h"
#include "quant/tp.h"

namespace glm {
namespace {

std::string FileIdentity(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return path + " (missing)";
  return StrFormat("%s size=%lld mtime=%lld.%09ld", path.c_str(), (long long)st.st_size,
                   (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

class SatSource final : public WeightSource {
 public:
  SatSource(std::string dir, std::unique_ptr<SatCheckpoint> ck, ModelConfig cfg)
      : dir_(std::move(dir)), ck_(std::move(ck)), cfg_(cfg) {}
  const ModelConfig& config() const override { return cfg_; }
  int tp() const override { return ck_->tp(); }
  std::string Describe() const override {
    return StrFormat("SAT checkpoint %s (iteration %s, %d rank%s)", dir_.c_str(),
                     ck_->iteration().c_str(), ck_->tp(), ck_->tp() == 1 ? "" : "s");
  }
  std::string Fingerprint() const override {
    std::string s = "sat " + ck_->iteration();
    for (int r = 0; r < ck_->tp(); ++r) {
      s += "\n" + FileIdentity(StrFormat("%s/%s/mp_rank_%02d_model_states.pt", dir_.c_str(),
                                         ck_->iteration().c_str(), r));
    }
    return s;
  }
  uint64_t DataBytes() const override {
    uint64_t n = 0;
    for (const SatTensorInfo& t : ck_->tensors()) {
      uint64_t e = t.dtype == DType::kF32 ? 4 : 2;
      for (int64_t d : t.shape) e *= uint64_t(d);
      n += e;
    }
    return n;
  }
  Status ReadShardRows(const TensorSpec& spec, int tp, int rank, int64_t row0, int64_t nrows,
                       Half* out) const override {
    const int64_t cols = spec.ndim == 2 ? spec.shape[1] : 1;
    const SatMergeRule rule = SatMergeRuleForKey(spec.sat_key);
    const int64_t shard_cols = rule == SatMergeRule::kCatDim1 ? cols / tp : cols;
    return ck_
        ->ReadShardRows(spec.sat_key, tp, rank, row0, nrows, DType::kF16, out,
                        size_t(nrows * shard_cols) * sizeof(Half))
        .WithContext(dir_);
  }

 private:
  std::string dir_;
  std::unique_ptr<SatCheckpoint> ck_;
  ModelConfig cfg_;
};

class ModelFileSource final : public WeightSource {
 public:
  ModelFileSource(std::unique_ptr<GgufFile> f, ModelConfig cfg, ModelFileFormat fmt)
      : f_(std::move(f)), cfg_(cfg), fmt_(fmt) {}
  const ModelConfig& config() const override { return cfg_; }
  int tp() const override { return fmt_.tp; }
  std::string Describe() const override {
    return StrFormat("model file %s (%s)", f_->path().c_str(), fmt_.ToString().c_str());
  }
  std::string Fingerprint() const override { return "gguf\n" + FileIdentity(f_->path()); }
  uint64_t DataBytes() const override {
    uint64_t n = 0;
    for (const GgufTensorInfo& t : f_->tensors()) n += t.bytes;
    return n;
  }
  Status ReadShardRows(const TensorSpec& spec, int tp, int rank, int64_t row0, int64_t nrows,
                       Half* out) const override {
    const std::vector<int64_t> merged(spec.shape, spec.shape + spec.ndim);
    const SatMergeRule rule =
        spec.layer < 0 ? SatMergeRule::kReplicated : SatMergeRuleForKey(spec.sat_key);
    const int tp_in = spec.layer < 0 ? 1 : fmt_.tp;
    RETURN_IF_ERROR(CheckTpSplit(spec.gguf_name, rule, merged, tp));
    const std::vector<TpRun> runs = TpReshardRuns(rule, merged, tp_in, tp, rank, row0, nrows);
    std::vector<Half> scratch;
    for (size_t a = 0; a < runs.size();) {
      size_t b = a;
      while (b < runs.size() && runs[b].src_rank == runs[a].src_rank) ++b;
      const int s = runs[a].src_rank;
      std::string name = spec.gguf_name;
      if (spec.layer >= 0 && tp_in > 1) {  // blk.L.x -> blk.L.tpS.x
        const size_t dot = name.find('.', name.find('.') + 1);
        name = name.substr(0, dot + 1) + StrFormat("tp%d.", s) + name.substr(dot + 1);
      }
      const GgufTensorInfo* t = f_->FindTensor(name);
      if (!t || t->type != GgmlType::kF16) {
        return Errorf("%s: no f16 tensor '%s'", f_->path().c_str(), name.c_str());
      }
      const uint64_t base = f_->data_offset() + t->offset;
      // Read the span the runs cover in bounded chunks and scatter (runs are sorted by src).
      const int64_t first = runs[a].src, last = runs[b - 1].src + runs[b - 1].n;
      if (uint64_t(last) * 2 > t->bytes)
        return Errorf("%s: tensor '%s' is too small", f_->path().c_str(), name.c_str());
      const int64_t chunk = std::min<int64_t>(last - first, 32 << 20);
      scratch.resize(size_t(chunk));
      size_t ri = a;
      for (int64_t c0 = first; c0 < last; c0 += chunk) {
        const int64_t c1 = std::min(last, c0 + chunk);
        RETURN_IF_ERROR(PRead(scratch.data(), size_t(c1 - c0) * 2, base + uint64_t(c0) * 2));
        while (ri < b && runs[ri].src + runs[ri].n <= c0) ++ri;
        for (size_t j = ri; j < b && runs[j].src < c1; ++j) {
          const int64_t lo = std::max(runs[j].src, c0), hi = std::min(runs[j].src + runs[j].n, c1);
          std::copy(scratch.data() + (lo - c0), scratch.data() + (hi - c0),
                    out + runs[j].dst + (lo - runs[j].src));
        }
      }
      a = b;
    }
    return Status::Ok();
  }

 private:
  Status PRead(void* buf, size_t n, uint64_t off) const {
    char* p = static_cast<char*>(buf);
    while (n > 0) {
      const ssize_t r = ::pread(f_->fd(), p, n, off_t(off));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        return Errorf("read '%s' at offset %llu: %s", f_->path().c_str(), (unsigned long long)off,
                      r < 0 ? std::strerror(errno) : "unexpected end of file");
      }
      p += r;
      n -= size_t(r);
      off += uint64_t(r);
    }
    return Status::Ok();
  }

  std::unique_ptr<GgufFile> f_;
  ModelConfig cfg_;
  ModelFileFormat fmt_;
};

}  // namespace

StatusOr<std::unique_ptr<WeightSource>> OpenWeightSource(const std::string& path,
                                                         const SourceOptions& opts) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("open input", path, errno);
  if (S_ISDIR(st.st_mode)) {
    ASSIGN_OR_RETURN(std::unique_ptr<SatCheckpoint> ck, SatCheckpoint::Open(path));
    ConvertOptions co;
    co.tokens = opts.tokens;
    co.num_heads = opts.num_heads;
    co.max_seq = opts.max_seq;
    StatusOr<ModelConfig> cfg = InferConfig(*ck, co);
    if (!cfg.ok()) return cfg.status().WithContext(path);
    return std::unique_ptr<WeightSource>(new SatSource(path, std::move(ck), cfg.value()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  ASSIGN_OR_RETURN(ModelConfig cfg, ReadModelConfig(*f));
  ASSIGN_OR_RETURN(ModelLayout lay, ReadModelLayout(*f));
  if (lay.format.quant.quantized()) {
    return Errorf(
        "%s holds %s weights; quantizing them again would compound the error: convert "
        "from the SAT checkpoint or an f16 model file",
        path.c_str(), lay.format.quant.ToString().c_str());
  }
  if (lay.compressed) {
    return Errorf("%s is zstd-compressed; convert from the uncompressed file or the SAT checkpoint",
                  path.c_str());
  }
  return std::unique_ptr<WeightSource>(new ModelFileSource(std::move(f), cfg, lay.format));
}

}  // namespace glm
