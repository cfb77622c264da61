// SAT checkpoint reader (spec §2.1-2.3): finds the rank files, parses each data.pkl with the safe
// interpreter, checks that the ranks agree, and merges shards exactly as tools/convert_tp.py.
#include "quant/sat_checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "quant/pickle.h"
#include "quant/tp.h"
#include "quant/zip.h"
#include "runtime/fp16.h"

namespace glm {
namespace {

static_assert(std::endian::native == std::endian::little, "storages are read as little-endian");

// data.pkl of a GLM-130B rank is ~100 KB; this only stops a corrupt size from claiming RAM.
constexpr uint64_t kMaxPickleBytes = 256ull << 20;
// Bounded scratch for dtype conversion and for gathering strided views (memory bound: one tensor
// plus this).
constexpr int64_t kScratchBytes = 64ll << 20;
constexpr int64_t kMaxNumel = int64_t(1) << 50;
constexpr int kMaxTp = 1024;

std::string JoinPath(const std::string& a, const std::string& b) {
  return (!a.empty() && a.back() == '/') ? a + b : a + "/" + b;
}

int64_t ElementSize(DType t) { return t == DType::kF32 ? 4 : 2; }

// Product of dims, or -1 past kMaxNumel (fuzzed shapes must not overflow int64).
int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d == 0) return 0;
    if (__builtin_mul_overflow(n, d, &n) || n > kMaxNumel) return -1;
  }
  return n;
}

bool IsContiguous(const SatShard& s) {
  int64_t expect = 1;
  for (size_t d = s.shape.size(); d-- > 0;) {
    if (s.shape[d] != 1 && s.strides[d] != expect) return false;
    expect *= s.shape[d];
  }
  return true;
}

// One past the last storage element a view touches (numel > 0), or -1 on overflow.
int64_t StorageEnd(const SatShard& s) {
  int64_t end = s.storage_offset;
  for (size_t d = 0; d < s.shape.size(); ++d) {
    int64_t span;
    if (__builtin_mul_overflow(s.shape[d] - 1, s.strides[d], &span) ||
        __builtin_add_overflow(end, span, &end)) {
      return -1;
    }
  }
  return end < kMaxNumel ? end + 1 : -1;
}

struct RankFile {
  std::string path;
  std::unique_ptr<ZipReader> zip;
  std::vector<SatShard> shards;
};

Status ParseRank(const std::string& path, RankFile* rank) {
  rank->path = path;
  ASSIGN_OR_RETURN(rank->zip, ZipReader::Open(path));
  const ZipReader& zip = *rank->zip;
  // torch.save names entries "<archive name>/data.pkl", "<archive name>/data/<storage key>".
  const ZipEntry* pkl = nullptr;
  for (const ZipEntry& e : zip.entries()) {
    const std::string_view n = e.name;
    if (n.size() > 9 && n.substr(n.size() - 9) == "/data.pkl") {
      if (pkl != nullptr) return Errorf("'%s' has two data.pkl entries", path.c_str());
      pkl = &e;
    }
  }
  if (pkl == nullptr) {
    return Errorf("no '<name>/data.pkl' entry in '%s': not a torch.save zip checkpoint",
                  path.c_str());
  }
  const std::string prefix = pkl->name.substr(0, pkl->name.size() - 9);
  if (const ZipEntry* bo = zip.Find(prefix + "/byteorder")) {
    ASSIGN_OR_RETURN(std::string order, zip.ReadEntry(*bo, 64));
    if (order != "little") {
      return Errorf("'%s' stores tensors in '%.20s' byte order; only little-endian is supported",
                    path.c_str(), order.c_str());
    }
  }
  ASSIGN_OR_RETURN(std::string pickle, zip.ReadEntry(*pkl, kMaxPickleBytes));
  ASSIGN_OR_RETURN(std::unique_ptr<UnpickledValue> value, Unpickle(pickle, path + ":" + pkl->name));
  const PyObject* root = value->root();
  if (root->kind != PyKind::kDict) {
    return Errorf("top-level object of '%s' is %s, not a dict", path.c_str(),
                  PyShortRepr(root).c_str());
  }
  // spec §2.1: load_checkpoint uses sd['module'] and ignores every other key.
  const PyObject* module = PyDictGet(root, "module");
  if (module == nullptr) {
    std::string keys;
    for (size_t i = 0; i < root->items.size() && i < 40; i += 2) {
      keys += (i ? ", " : "") + PyShortRepr(root->items[i]);
    }
    return Errorf("no 'module' key in '%s'; found keys: %s", path.c_str(),
                  keys.empty() ? "(none)" : keys.c_str());
  }
  if (module->kind != PyKind::kDict) {
    return Errorf("'module' in '%s' is %s, not a dict", path.c_str(), PyShortRepr(module).c_str());
  }
  std::unordered_map<std::string, size_t> seen;  // a repeated key replaces the value in place
  for (size_t i = 0; i + 1 < module->items.size(); i += 2) {
    const PyObject* k = module->items[i];
    const PyObject* v = module->items[i + 1];
    if (k->kind != PyKind::kStr) {
      return Errorf("non-string key %s in 'module' of '%s'", PyShortRepr(k).c_str(), path.c_str());
    }
    const char* key = k->text.c_str();
    if (v->kind != PyKind::kTensor) {
      return Errorf("module key '%s' in '%s' is %s, not a tensor", key, path.c_str(),
                    PyShortRepr(v).c_str());
    }
    const TorchTensorDesc& t = *v->tensor;
    SatShard s;
    s.key = k->text;
    const std::string& type = t.storage.type_name;
    if (type == "HalfStorage")
      s.dtype = DType::kF16;
    else if (type == "BFloat16Storage")
      s.dtype = DType::kBF16;
    else if (type == "FloatStorage")
      s.dtype = DType::kF32;
    else {
      return Errorf(
          "tensor '%s' in '%s' has dtype %s; only float16, bfloat16 and float32 are "
          "supported",
          key, path.c_str(), type.c_str());
    }
    s.shape = t.shape;
    s.strides = t.strides;
    s.storage_offset = t.storage_offset;
    s.storage_entry = prefix + "/data/" + t.storage.key;
    const ZipEntry* data = zip.Find(s.storage_entry);
    if (data == nullptr) {
      return Errorf("tensor '%s' in '%s': storage entry '%s' is missing from the archive", key,
                    path.c_str(), s.storage_entry.c_str());
    }
    s.storage_bytes = data->size;
    const int64_t numel = Numel(s.shape);
    if (numel < 0) {
      return Errorf("tensor '%s' in '%s' has an absurd shape %s", key, path.c_str(),
                    ShapeString(s.shape).c_str());
    }
    if (numel > 0) {
      const int64_t end = StorageEnd(s);
      if (end < 0 || uint64_t(end) > data->size / ElementSize(s.dtype)) {
        return Errorf(
            "tensor '%s' in '%s' (shape %s, strides %s, offset %lld) reaches past its "
            "storage '%s' of %llu bytes",
            key, path.c_str(), ShapeString(s.shape).c_str(), ShapeString(s.strides).c_str(),
            (long long)s.storage_offset, s.storage_entry.c_str(), (unsigned long long)data->size);
      }
    }
    auto [it, inserted] = seen.emplace(s.key, rank->shards.size());
    if (inserted)
      rank->shards.push_back(std::move(s));
    else
      rank->shards[it->second] = std::move(s);
  }
  return Status::Ok();
}

// Converts n elements; buffers may be unaligned (memcpy per element).
void Convert(DType src, const uint8_t* s, DType dst, uint8_t* d, int64_t n) {
  if (src == dst) {
    std::memcpy(d, s, size_t(n * ElementSize(src)));
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    float f;
    if (src == DType::kF32) {
      std::memcpy(&f, s + 4 * i, 4);
    } else {
      uint16_t b;
      std::memcpy(&b, s + 2 * i, 2);
      f = src == DType::kF16 ? HalfToFloat(Half{b}) : BFloat16ToFloat(BFloat16{b});
    }
    if (dst == DType::kF32) {
      std::memcpy(d + 4 * i, &f, 4);
    } else {
      // Round-to-nearest-even as torch's .half(). NaNs become sign|0x7e00 as in c10::Half
      // (fp16_ieee_from_fp32_value); FloatToHalf keeps the payload like F16C instead.
      Half h = FloatToHalf(f);
      if (f != f) h.bits = uint16_t((h.bits & 0x8000u) | 0x7e00u);
      std::memcpy(d + 2 * i, &h.bits, 2);
    }
  }
}

// A run of `n` shard elements (row-major logical order from `src`) that lands at `dst` in the
// merged tensor. Runs are sorted by src and disjoint.
struct Run {
  int64_t src, n, dst;
};

// convert_tp.py merge_weights (spec §2.3) for rank r of tp, expressed as element runs.
std::vector<Run> MergeRuns(SatMergeRule rule, const std::vector<int64_t>& shape, int tp, int r) {
  const int64_t numel = Numel(shape);
  if (numel == 0) return {};
  if (rule == SatMergeRule::kReplicated || tp == 1) return {{0, numel, 0}};
  if (rule == SatMergeRule::kCatDim0) return {{0, numel, r * numel}};
  const int64_t rows = shape[0], row = numel / rows;
  if (rule == SatMergeRule::kGlu) {
    // chunk(2) of each rank; cat(first halves of all ranks, then second halves).
    const int64_t half = rows / 2 * row;
    return {{0, half, r * half}, {half, half, (tp + r) * half}};
  }
  std::vector<Run> runs;  // kCatDim1: each row of the shard is a slice of the merged row
  runs.reserve(size_t(rows));
  for (int64_t i = 0; i < rows; ++i) runs.push_back({i * row, row, (i * tp + r) * row});
  return runs;
}

class SatCheckpointImpl final : public SatCheckpoint {
 public:
  static StatusOr<std::unique_ptr<SatCheckpoint>> Open(const std::string& dir);

  int tp() const override { return int(ranks_.size()); }
  const std::string& iteration() const override { return iteration_; }
  const std::vector<SatTensorInfo>& tensors() const override { return tensors_; }
  const SatTensorInfo* Find(const std::string& key) const override {
    auto it = index_.find(key);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  Status ReadMerged(const std::string& key, DType out_dtype, void* out,
                    size_t out_bytes) const override;
  Status ReadShardRows(const std::string& key, int tp, int rank, int64_t row0, int64_t nrows,
                       DType out_dtype, void* out, size_t out_bytes) const override;

 private:
  Status Build();
  Status CopyShard(const RankFile& rank, const SatShard& s, const std::vector<Run>& runs,
                   DType out_dtype, uint8_t* out, std::vector<uint8_t>* scratch) const;

  std::string dir_, iteration_;
  std::vector<RankFile> ranks_;
  std::vector<SatTensorInfo> tensors_;
  std::vector<SatMergeRule> rules_;
  std::vector<std::vector<const SatShard*>> shards_;  // [tensor][rank]
  std::unordered_map<std::string, size_t> index_;
};

StatusOr<std::string> ReadLatest(const std::string& dir) {
  const std::string path = JoinPath(dir, "latest");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("open", path, errno)
        .WithContext("SAT checkpoint '" + dir + "' has no readable 'latest' file");
  }
  std::string text(4097, '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t r = ::read(fd, text.data() + got, text.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      Status s = ErrnoError("read", path, errno);
      ::close(fd);
      return s;
    }
    if (r == 0) break;
    got += size_t(r);
  }
  ::close(fd);
  if (got > 4096) return Errorf("'%s' is larger than 4 KiB; expected an iteration", path.c_str());
  text.resize(got);
  // SAT writes the iteration without a newline; editors and `echo` add one.
  const size_t b = text.find_first_not_of(" \t\r\n");
  text = b == std::string::npos ? "" : text.substr(b, text.find_last_not_of(" \t\r\n") - b + 1);
  bool ok = !text.empty() && text != "." && text != "..";
  for (char c : text) ok = ok && c != '/' && uint8_t(c) >= 0x20 && c != 0x7f;
  if (!ok) {
    return Errorf(
        "'%s' does not name an iteration folder (content '%s'); expected e.g. '49300' "
        "or 'release'",
        path.c_str(), text.substr(0, 64).c_str());
  }
  return text;
}

StatusOr<std::unique_ptr<SatCheckpoint>> SatCheckpointImpl::Open(const std::string& dir) {
  std::unique_ptr<SatCheckpointImpl> ck(new SatCheckpointImpl);
  ck->dir_ = dir;
  ASSIGN_OR_RETURN(ck->iteration_, ReadLatest(dir));
  // spec §2.1: get_checkpoint_name -> <dir>/<iteration>/mp_rank_XX_model_states.pt; a 'latest'
  // of "release" names the folder "release", which needs no special case here.
  const std::string iter_dir = JoinPath(dir, ck->iteration_);
  DIR* d = ::opendir(iter_dir.c_str());
  if (d == nullptr) {
    return ErrnoError("open iteration folder", iter_dir, errno)
        .WithContext(StrFormat("'%s' names iteration '%s'", JoinPath(dir, "latest").c_str(),
                               ck->iteration_.c_str()));
  }
  std::vector<bool> present;
  int count = 0;
  Status bad_name;
  while (const dirent* ent = ::readdir(d)) {
    const std::string n = ent->d_name;
    constexpr std::string_view kPre = "mp_rank_", kSuf = "_model_states.pt";
    if (n.size() <= kPre.size() + kSuf.size() || n.compare(0, kPre.size(), kPre) != 0 ||
        n.compare(n.size() - kSuf.size(), kSuf.size(), kSuf) != 0) {
      continue;
    }
    const std::string digits = n.substr(kPre.size(), n.size() - kPre.size() - kSuf.size());
    const bool numeric =
        digits.size() <= 4 &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
    const int r = numeric ? std::stoi(digits) : -1;
    if (r < 0 || r >= kMaxTp || StrFormat("%02d", r) != digits) {
      bad_name = Errorf(
          "unexpected rank file '%s' in '%s' (expected mp_rank_%%02d_model_states.pt "
          "with rank < %d)",
          n.c_str(), iter_dir.c_str(), kMaxTp);
      continue;
    }
    if (present.size() <= size_t(r)) present.resize(r + 1, false);
    present[r] = true;
    ++count;
  }
  ::closedir(d);
  RETURN_IF_ERROR(bad_name);
  if (count == 0) {
    return Errorf("no rank files in '%s': expected mp_rank_00_model_states.pt ... (spec §2.1)",
                  iter_dir.c_str());
  }
  // convert_tp.py takes TP = the number of rank files; a gap means a lost or partial download.
  for (size_t r = 0; r < present.size(); ++r) {
    if (!present[r]) {
      return Errorf(
          "missing rank file '%s': found %d rank files up to mp_rank_%02zu, and every "
          "rank from 00 must be present",
          JoinPath(iter_dir, StrFormat("mp_rank_%02zu_model_states.pt", r)).c_str(), count,
          present.size() - 1);
    }
  }
  ck->ranks_.resize(present.size());
  for (size_t r = 0; r < present.size(); ++r) {
    const std::string p = JoinPath(iter_dir, StrFormat("mp_rank_%02zu_model_states.pt", r));
    RETURN_IF_ERROR(ParseRank(p, &ck->ranks_[r]));
  }
  RETURN_IF_ERROR(ck->Build());
  return std::unique_ptr<SatCheckpoint>(std::move(ck));
}

// Cross-rank agreement and the merged shapes (spec §2.2 table, §2.3 rules).
Status SatCheckpointImpl::Build() {
  const int n = tp();
  const RankFile& r0 = ranks_[0];
  std::vector<std::unordered_map<std::string, const SatShard*>> by_key(n);
  for (int r = 0; r < n; ++r) {
    for (const SatShard& s : ranks_[r].shards) by_key[r][s.key] = &s;
  }
  for (int r = 1; r < n; ++r) {
    for (const SatShard& s : ranks_[r].shards) {
      if (by_key[0].count(s.key) == 0) {
        return Errorf("key '%s' is on rank %d ('%s') but not on rank 0 ('%s')", s.key.c_str(), r,
                      ranks_[r].path.c_str(), r0.path.c_str());
      }
    }
  }
  for (const SatShard& s0 : r0.shards) {
    const char* key = s0.key.c_str();
    const SatMergeRule rule = SatMergeRuleForKey(s0.key);
    std::vector<const SatShard*> shards(n);
    for (int r = 0; r < n; ++r) {
      auto it = by_key[r].find(s0.key);
      if (it == by_key[r].end()) {
        return Errorf("key '%s' is on rank 0 ('%s') but missing on rank %d ('%s')", key,
                      r0.path.c_str(), r, ranks_[r].path.c_str());
      }
      const SatShard& s = *it->second;
      if (s.dtype != s0.dtype) {
        return Errorf("key '%s' is %s on rank 0 ('%s') but %s on rank %d ('%s')", key,
                      DTypeName(s0.dtype), r0.path.c_str(), DTypeName(s.dtype), r,
                      ranks_[r].path.c_str());
      }
      if (s.shape != s0.shape) {
        return Errorf("key '%s' has shard shape %s on rank 0 ('%s') but %s on rank %d ('%s')", key,
                      ShapeString(s0.shape).c_str(), r0.path.c_str(), ShapeString(s.shape).c_str(), r,
                      ranks_[r].path.c_str());
      }
      shards[r] = &s;
    }
    SatTensorInfo info{.key = s0.key, .dtype = s0.dtype, .shape = s0.shape, .rank_shape = s0.shape};
    if (n > 1 && rule != SatMergeRule::kReplicated) {
      const size_t dim = rule == SatMergeRule::kCatDim1 ? 1 : 0;
      if (s0.shape.size() <= dim) {
        return Errorf(
            "key '%s' has shard shape %s in '%s': cannot concatenate %d ranks along "
            "dim %zu (spec §2.3)",
            key, ShapeString(s0.shape).c_str(), r0.path.c_str(), n, dim);
      }
      if (rule == SatMergeRule::kGlu && s0.shape[0] % 2 != 0) {
        return Errorf(
            "GLU key '%s' has an odd shard row count %lld in '%s'; the merge chunks "
            "each shard in two halves (spec §2.3)",
            key, (long long)s0.shape[0], r0.path.c_str());
      }
      info.shape[dim] *= n;
      if (Numel(info.shape) < 0) {
        return Errorf("merged shape of key '%s' is too large", key);
      }
    }
    index_[s0.key] = tensors_.size();
    tensors_.push_back(std::move(info));
    rules_.push_back(rule);
    shards_.push_back(std::move(shards));
  }
  return Status::Ok();
}

Status SatCheckpointImpl::CopyShard(const RankFile& rank, const SatShard& s,
                                    const std::vector<Run>& runs, DType out_dtype, uint8_t* out,
                                    std::vector<uint8_t>* scratch) const {
  const ZipEntry* entry = rank.zip->Find(s.storage_entry);
  GLM_CHECK(entry != nullptr);  // checked at Open
  const int64_t es = ElementSize(s.dtype), os = ElementSize(out_dtype);
  const int64_t numel = Numel(s.shape);
  if (numel == 0 || runs.empty()) return Status::Ok();
  if (IsContiguous(s)) {
    if (s.dtype == out_dtype && runs.size() <= 2) {
      // The common f16 -> f16 case: read straight into the caller's buffer.
      for (const Run& run : runs) {
        RETURN_IF_ERROR(rank.zip->ReadEntryBytes(*entry,
                                                 uint64_t((s.storage_offset + run.src) * es),
                                                 out + run.dst * os, size_t(run.n * es)));
      }
      return Status::Ok();
    }
    // Stream the span the runs cover through bounded scratch and scatter each chunk to its runs
    // (runs are sorted by src and disjoint).
    const int64_t first = runs.front().src, last = runs.back().src + runs.back().n;
    const int64_t chunk = std::min(last - first, kScratchBytes / es);
    scratch->resize(size_t(chunk * es));
    size_t ri = 0;
    for (int64_t c0 = first; c0 < last; c0 += chunk) {
      const int64_t c1 = std::min(last, c0 + chunk);
      RETURN_IF_ERROR(rank.zip->ReadEntryBytes(*entry, uint64_t((s.storage_offset + c0) * es),
                                               scratch->data(), size_t((c1 - c0) * es)));
      while (ri < runs.size() && runs[ri].src + runs[ri].n <= c0) ++ri;
      for (size_t j = ri; j < runs.size() && runs[j].src < c1; ++j) {
        const int64_t a = std::max(runs[j].src, c0);
        const int64_t b = std::min(runs[j].src + runs[j].n, c1);
        Convert(s.dtype, scratch->data() + (a - c0) * es, out_dtype,
                out + (runs[j].dst + a - runs[j].src) * os, b - a);
      }
    }
    return Status::Ok();
  }
  // A view (torch saves the whole storage of a slice or transpose): read the storage span it
  // covers once, then gather element by element.
  const int64_t lo = s.storage_offset, hi = StorageEnd(s);
  if ((hi - lo) * es > kScratchBytes) {
    return Errorf(
        "tensor '%s' in '%s' is a non-contiguous view (strides %s) spanning %lld bytes "
        "of its storage; strided tensors over %lld bytes are not supported (save a "
        ".contiguous() copy)",
        s.key.c_str(), rank.path.c_str(), ShapeString(s.strides).c_str(), (long long)((hi - lo) * es),
        (long long)kScratchBytes);
  }
  scratch->resize(size_t((hi - lo) * es));
  RETURN_IF_ERROR(
      rank.zip->ReadEntryBytes(*entry, uint64_t(lo * es), scratch->data(), scratch->size()));
  const size_t nd = s.shape.size();
  std::vector<int64_t> idx(nd);
  for (const Run& run : runs) {
    int64_t rem = run.src;  // unravel the run start, then step the multi-index
    for (size_t d = nd; d-- > 0;) {
      idx[d] = rem % s.shape[d];
      rem /= s.shape[d];
    }
    for (int64_t i = 0; i < run.n; ++i) {
      int64_t off = 0;
      for (size_t d = 0; d < nd; ++d) off += idx[d] * s.strides[d];
      Convert(s.dtype, scratch->data() + off * es, out_dtype, out + (run.dst + i) * os, 1);
      for (size_t d = nd; d-- > 0;) {
        if (++idx[d] < s.shape[d]) break;
        idx[d] = 0;
      }
    }
  }
  return Status::Ok();
}

Status SatCheckpointImpl::ReadMerged(const std::string& key, DType out_dtype, void* out,
                                     size_t out_bytes) const {
  auto it = index_.find(key);
  if (it == index_.end()) {
    return Errorf("no tensor '%s' in SAT checkpoint '%s'", key.c_str(), dir_.c_str());
  }
  const SatTensorInfo& info = tensors_[it->second];
  if (out_dtype != DType::kF16 && out_dtype != DType::kF32) {
    return Errorf("ReadMerged('%s'): output dtype %s is not supported (f16 or f32)", key.c_str(),
                  DTypeName(out_dtype));
  }
  const int64_t numel = Numel(info.shape);
  const uint64_t need = uint64_t(numel) * uint64_t(ElementSize(out_dtype));
  if (out_bytes != need || (need > 0 && out == nullptr)) {
    return Errorf("ReadMerged('%s'): buffer of %zu bytes, but shape %s as %s needs %llu",
                  key.c_str(), out_bytes, ShapeString(info.shape).c_str(), DTypeName(out_dtype),
                  (unsigned long long)need);
  }
  const SatMergeRule rule = rules_[it->second];
  const int n = rule == SatMergeRule::kReplicated ? 1 : tp();  // replicated: rank 0 only
  std::vector<uint8_t> scratch;
  for (int r = 0; r < n; ++r) {
    const SatShard& s = *shards_[it->second][r];
    RETURN_IF_ERROR(CopyShard(ranks_[r], s, MergeRuns(rule, s.shape, tp(), r), out_dtype,
                              static_cast<uint8_t*>(out), &scratch));
  }
  return Status::Ok();
}

Status SatCheckpointImpl::ReadShardRows(const std::string& key, int tp, int rank, int64_t row0,
                                        int64_t nrows, DType out_dtype, void* out,
                                        size_t out_bytes) const {
  auto it = index_.find(key);
  if (it == index_.end()) {
    return Errorf("no tensor '%s' in SAT checkpoint '%s'", key.c_str(), dir_.c_str());
  }
  const SatTensorInfo& info = tensors_[it->second];
  const SatMergeRule rule = rules_[it->second];
  if (out_dtype != DType::kF16 && out_dtype != DType::kF32) {
    return Errorf("ReadShardRows('%s'): output dtype %s is not supported (f16 or f32)",
                  key.c_str(), DTypeName(out_dtype));
  }
  if (info.shape.empty() || info.shape.size() > 2) {
    return Errorf("ReadShardRows('%s'): shape %s is not 1-D or 2-D", key.c_str(),
                  ShapeString(info.shape).c_str());
  }
  RETURN_IF_ERROR(CheckTpSplit(key, rule, info.shape, tp));
  if (rank < 0 || rank >= tp) return Errorf("ReadShardRows('%s'): rank %d of %d", key.c_str(), rank, tp);
  const std::vector<int64_t> shard = TpShardShape(rule, info.shape, tp);
  const int64_t cols = shard.size() == 2 ? shard[1] : 1;
  if (row0 < 0 || nrows < 0 || row0 + nrows > shard[0]) {
    return Errorf("ReadShardRows('%s'): rows [%lld, %lld) outside the shard's %lld", key.c_str(),
                  (long long)row0, (long long)(row0 + nrows), (long long)shard[0]);
  }
  const uint64_t need = uint64_t(nrows * cols) * uint64_t(ElementSize(out_dtype));
  if (out_bytes != need || (need > 0 && out == nullptr)) {
    return Errorf("ReadShardRows('%s'): buffer of %zu bytes, %lld rows of %lld as %s need %llu",
                  key.c_str(), out_bytes, (long long)nrows, (long long)cols, DTypeName(out_dtype),
                  (unsigned long long)need);
  }
  const std::vector<TpRun> runs = TpReshardRuns(rule, info.shape, this->tp(), tp, rank, row0, nrows);
  std::vector<uint8_t> scratch;
  for (size_t a = 0; a < runs.size();) {
    size_t b = a;
    std::vector<Run> mine;
    while (b < runs.size() && runs[b].src_rank == runs[a].src_rank) {
      mine.push_back({runs[b].src, runs[b].n, runs[b].dst});
      ++b;
    }
    const int s = runs[a].src_rank;
    RETURN_IF_ERROR(CopyShard(ranks_[s], *shards_[it->second][s], mine, out_dtype,
                              static_cast<uint8_t*>(out), &scratch));
    a = b;
  }
  return Status::Ok();
}

}  // namespace

SatMergeRule SatMergeRuleForKey(const std::string& key) {
  // convert_tp.py: name = ".".join(key.split(".")[3 if key.startswith("transformer.layers")
  // else 1:]), i.e. drop "transformer.layers.N." or the first component of any other key.
  size_t cut = 0;
  const int parts = key.rfind("transformer.layers", 0) == 0 ? 3 : 1;
  for (int i = 0; i < parts && cut != std::string::npos; ++i) {
    cut = key.find('.', cut);
    if (cut != std::string::npos) ++cut;
  }
  const std::string name = cut == std::string::npos ? "" : key.substr(cut);
  static const std::unordered_set<std::string> kSequential = {
      "input_layernorm.weight",          "input_layernorm.bias",          "attention.dense.bias",
      "post_attention_layernorm.weight", "post_attention_layernorm.bias", "mlp.dense_4h_to_h.bias",
      "attention.rotary_emb.inv_freq",   "final_layernorm.weight",        "final_layernorm.bias"};
  if (kSequential.count(name)) return SatMergeRule::kReplicated;
  if (name == "mlp.dense_h_to_4h.weight" || name == "mlp.dense_h_to_4h.bias") {
    return SatMergeRule::kGlu;
  }
  if (name == "attention.dense.weight" || name == "mlp.dense_4h_to_h.weight") {
    return SatMergeRule::kCatDim1;
  }
  return SatMergeRule::kCatDim0;
}

StatusOr<std::unique_ptr<SatCheckpoint>> SatCheckpoint::Open(const std::string& dir) {
  return SatCheckpointImpl::Open(dir);
}

StatusOr<std::vector<SatShard>> SatListRankFile(const std::string& path) {
  RankFile rank;
  RETURN_IF_ERROR(ParseRank(path, &rank));
  return std::move(rank.shards);
}

}  // namespace glm
