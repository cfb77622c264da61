// QuantizeModel: weight source -> (re-shard, quantize) -> GgufWriter, one extent at a time, with
// a journal of extent checksums for --resume.
#include "quant/quantize.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "quant/tp.h"
#include "runtime/parallel.h"

namespace glm {
namespace {

constexpr char kJournalMagic[] = "glm-quantize journal v1";
constexpr char kFingerprintKey[] = "glmstream.quantize.fingerprint";

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

bool Exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

Status PRead(int fd, void* buf, size_t n, uint64_t off, const std::string& path) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return Errorf("read '%s' at offset %llu: %s", path.c_str(), (unsigned long long)off,
                    r < 0 ? std::strerror(errno) : "unexpected end of file");
    }
    p += r;
    n -= size_t(r);
    off += uint64_t(r);
  }
  return Status::Ok();
}

// "blk.3.tp1.attn_qkv.weight" -> "attn_qkv".
std::string TensorType(const std::string& gguf_name) {
  const size_t dot = gguf_name.find('.', gguf_name.find('.') + 1);
  const std::string rest = gguf_name.substr(dot + 1);
  return rest.substr(0, rest.find('.'));
}

// The file's tensors with their data offsets (the GgufWriter layout: each tensor aligned) and the
// extents they tile.
struct Plan {
  std::vector<FileTensor> tensors;
  std::vector<uint64_t> offset;                        // per tensor, relative to the data section
  std::vector<std::pair<uint64_t, uint64_t>> extents;  // offset, size
  uint64_t data_bytes = 0;
};

Plan MakePlan(const ModelConfig& cfg, const ModelFileFormat& fmt) {
  Plan p;
  ForEachFileTensor(cfg, fmt, [&](const FileTensor& t) { p.tensors.push_back(t); });
  uint64_t cursor = 0;
  for (const FileTensor& t : p.tensors) {
    const uint64_t at = AlignUp(cursor, kFileAlignment);
    p.offset.push_back(at);
    cursor = at + t.bytes();
    if (t.extent == int(p.extents.size())) p.extents.push_back({at, 0});
    p.extents.back().second = AlignUp(cursor, kFileAlignment) - p.extents.back().first;
  }
  p.data_bytes = AlignUp(cursor, kFileAlignment);
  return p;
}

std::string Hex(uint64_t v) { return StrFormat("%016llx", (unsigned long long)v); }

// Everything that determines the output bytes, hashed: a journal written for other inputs or
// options is never used.
std::string Fingerprint(const QuantizeOptions& o, const WeightSource& src, const ModelConfig& cfg,
                        const Plan& plan, const std::string& name) {
  std::string s = kJournalMagic;
  s +=
      "\n" + cfg.ToString() +
      StrFormat(" eps=%a tokens=%d,%d,%d,%d,%d,%d", cfg.layernorm_eps, cfg.tokens.mask,
                cfg.tokens.gmask, cfg.tokens.smask, cfg.tokens.sop, cfg.tokens.eop, cfg.tokens.eos);
  s += "\n" + o.format.ToString() + "\nname=" + name + "\n" + src.Fingerprint();
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const FileTensor& t = plan.tensors[i];
    s += StrFormat("\n%s %u %d %llu", t.name.c_str(), unsigned(t.type), t.extent,
                   (unsigned long long)plan.offset[i]);
  }
  return Hex(XXH64(s.data(), s.size(), 0));
}

// XXH64 of a byte range of a file.
StatusOr<uint64_t> HashRange(int fd, uint64_t off, uint64_t n, const std::string& path,
                             std::vector<char>* buf) {
  XXH64_state_t* st = XXH64_createState();
  XXH64_reset(st, 0);
  Status status;
  for (uint64_t done = 0; done < n && status.ok();) {
    const size_t k = size_t(std::min<uint64_t>(buf->size(), n - done));
    status = PRead(fd, buf->data(), k, off + done, path);
    XXH64_update(st, buf->data(), k);
    done += k;
  }
  const uint64_t h = XXH64_digest(st);
  XXH64_freeState(st);
  if (!status.ok()) return status;
  return h;
}

// The journal's extent digests, if it was written for `fingerprint`.
std::map<int, uint64_t> ReadJournal(const std::string& path, const std::string& fingerprint) {
  std::map<int, uint64_t> out;
  std::ifstream in(path);
  std::string magic, line;
  if (!std::getline(in, magic) || magic != kJournalMagic) return out;
  if (!std::getline(in, line) || line != "fingerprint " + fingerprint) return out;
  while (std::getline(in, line)) {
    int e;
    unsigned long long h;
    char tail;
    if (std::sscanf(line.c_str(), "extent %d %llx%c", &e, &h, &tail) == 2) out[e] = h;
  }
  return out;
}

class Journal {
 public:
  Status Open(const std::string& path, const std::string& fingerprint,
              const std::map<int, uint64_t>& kept) {
    path_ = path;
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return ErrnoError("create", path, errno);
    std::string head = std::string(kJournalMagic) + "\nfingerprint " + fingerprint + "\n";
    for (const auto& [e, h] : kept) head += StrFormat("extent %d %s\n", e, Hex(h).c_str());
    return Append(head);
  }
  Status Record(int extent, uint64_t hash) {
    return Append(StrFormat("extent %d %s\n", extent, Hex(hash).c_str()));
  }
  void Remove() {
    Close();
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  ~Journal() { Close(); }

 private:
  Status Append(const std::string& s) {
    if (::write(fd_, s.data(), s.size()) != ssize_t(s.size()))
      return ErrnoError("write", path_, errno);
    if (::fdatasync(fd_) != 0) return ErrnoError("fsync", path_, errno);
    return Status::Ok();
  }
  std::string path_;
  int fd_ = -1;
};

// An interrupted file whose first `verified` extents match the journal.
struct Candidate {
  std::string path;
  std::unique_ptr<GgufFile> file;
  int verified = 0;
};

// Opens an interrupted FILE.partial (extended, sparse, to cover its declared size so that the
// GGUF reader accepts it), checks its tensor table against the plan and counts the extents that
// match the journal, in order.
Candidate Evaluate(const std::string& path, const Plan& plan,
                   const std::map<int, uint64_t>& journal, std::vector<char>* buf) {
  Candidate c;
  c.path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || journal.empty()) return c;
  if (::truncate(path.c_str(), off_t(uint64_t(st.st_size) + plan.data_bytes + (1 << 20))) != 0)
    return c;
  auto f = GgufFile::Open(path);
  if (!f.ok()) return c;
  const auto& ts = f.value()->tensors();
  if (ts.size() != plan.tensors.size()) return c;
  for (size_t i = 0; i < ts.size(); ++i) {
    if (ts[i].name != plan.tensors[i].name || ts[i].offset != plan.offset[i] ||
        ts[i].type != plan.tensors[i].type || ts[i].shape != plan.tensors[i].shape) {
      return c;
    }
  }
  const GgufFile& g = *f.value();
  for (size_t e = 0; e < plan.extents.size(); ++e) {
    auto it = journal.find(int(e));
    if (it == journal.end()) break;
    auto h = HashRange(g.fd(), g.data_offset() + plan.extents[e].first, plan.extents[e].second,
                       path, buf);
    if (!h.ok() || h.value() != it->second) break;
    c.verified = int(e) + 1;
  }
  c.file = std::move(f).value();
  return c;
}

// Reports the first NaN/Inf of fp16 rows with its tensor, rank and row.
Status CheckFinite(const FileTensor& t, int tp, const Half* data, int64_t row0, int64_t rows,
                   int64_t cols) {
  for (int64_t i = 0; i < rows * cols; ++i) {
    if ((data[i].bits & 0x7c00u) != 0x7c00u) continue;
    const char* what = (data[i].bits & 0x3ffu) ? "NaN" : "Inf";
    const int64_t row = row0 + i / cols, col = i % cols;
    if (tp == 1 || t.spec.layer < 0) {
      return Errorf("tensor '%s' has a %s at row %lld, column %lld", t.spec.sat_key.c_str(), what,
                    (long long)row, (long long)col);
    }
    return Errorf(
        "tensor '%s' has a %s at row %lld, column %lld of tensor-parallel rank %d's "
        "shard (of %d)",
        t.spec.sat_key.c_str(), what, (long long)row, (long long)col, t.rank, tp);
  }
  return Status::Ok();
}

struct Converter {
  Converter(const QuantizeOptions& o, const WeightSource& s, GgufWriter& writer)
      : opts(o), src(s), w(writer) {}
  const QuantizeOptions& opts;
  const WeightSource& src;
  GgufWriter& w;
  XXH64_state_t* hash = nullptr;
  std::vector<Half> in;       // source rows (f16)
  std::vector<int8_t> qdata;  // quantized rows
  std::vector<Half> scales;   // scales of the last quantized tensor, written right after it
  std::map<std::string, QuantError> errors;
  uint64_t bytes_done = 0;
  std::function<void()> on_bytes;

  Status Emit(const void* p, size_t n) {
    XXH64_update(hash, p, n);
    RETURN_IF_ERROR(w.WriteTensorData(p, n));
    bytes_done += n;
    if (on_bytes) on_bytes();
    return Status::Ok();
  }
  Status Pad(uint64_t bytes) {
    static const char kZeros[kFileAlignment] = {};
    const uint64_t pad = AlignUp(bytes, kFileAlignment) - bytes;
    XXH64_update(hash, kZeros, size_t(pad));
    return Status::Ok();
  }

  // Rows per block for a tensor with `row_bytes` of working memory per row.
  int64_t BlockRows(int64_t rows, int64_t row_bytes) const {
    if (opts.max_memory == 0) return rows;
    return std::clamp<int64_t>(int64_t(opts.max_memory) / std::max<int64_t>(row_bytes, 1), 1, rows);
  }

  Status Convert(const FileTensor& t) {
    const int tp = t.spec.layer < 0 ? 1 : opts.format.tp;
    const int64_t rows = t.shard_shape[0];
    const int64_t cols = t.shard_shape.size() == 2 ? t.shard_shape[1] : 1;
    if (t.role == FileTensor::Role::kScale) {
      RETURN_IF_ERROR(Emit(scales.data(), scales.size() * sizeof(Half)));
      return Pad(scales.size() * sizeof(Half));
    }
    const bool quantize = t.role == FileTensor::Role::kQuantized;
    const QuantScheme& q = opts.format.quant;
    const int64_t qrow = quantize ? QuantRowBytes(q.dtype(), cols) : 0;
    const int64_t block = BlockRows(rows, cols * 2 + qrow);
    if (quantize) scales.assign(size_t(rows * q.ScaleCols(cols)), Half{});
    ThreadPool& pool = ThreadPool::Global();
    std::vector<QuantError> per_thread(size_t(pool.size()));
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      const int64_t n = std::min(block, rows - r0);
      in.resize(size_t(n * cols));
      RETURN_IF_ERROR(src.ReadShardRows(t.spec, tp, t.rank, r0, n, in.data()));
      RETURN_IF_ERROR(CheckFinite(t, tp, in.data(), r0, n, cols));
      if (!quantize) {
        RETURN_IF_ERROR(Emit(in.data(), in.size() * sizeof(Half)));
        continue;
      }
      // Quantize and emit in pieces of at most 64 MiB of output, so the output never doubles
      // the input's memory.
      const int64_t piece = std::max<int64_t>(1, (64 << 20) / std::max<int64_t>(qrow, 1));
      for (int64_t p0 = 0; p0 < n; p0 += piece) {
        const int64_t m = std::min(piece, n - p0);
        qdata.resize(size_t(m * qrow));
        const Half* x = in.data() + p0 * cols;
        Half* s = scales.data() + (r0 + p0) * q.ScaleCols(cols);
        pool.ParallelFor(m, 64, [&](int64_t a, int64_t b) {
          QuantizeRows(x + a * cols, b - a, cols, q, qdata.data() + a * qrow,
                       s + a * q.ScaleCols(cols));
          TensorView v;
          v.dtype = q.dtype();
          v.ndim = 2;
          v.shape[0] = b - a;
          v.shape[1] = cols;
          v.data = qdata.data() + a * qrow;
          v.scales = s + a * q.ScaleCols(cols);
          v.group_size = q.group_size;
          AccumulateQuantError(x + a * cols, v,
                               &per_thread[size_t(ThreadPool::CurrentThreadIndex())]);
        });
        RETURN_IF_ERROR(Emit(qdata.data(), qdata.size()));
      }
    }
    if (quantize) {
      QuantError& e = errors[TensorType(t.spec.gguf_name)];
      for (const QuantError& p : per_thread) e.Merge(p);
    }
    // Large buffers go back after each tensor, so the peak is one tensor's, not the sum of the
    // largest f16 tensor and the largest quantized one.
    // (swap with an empty vector: `v = {}` would keep the capacity). Freed before the next
    // tensor allocates, a growing buffer is never copied either.
    if (in.capacity() * sizeof(Half) > (64u << 20)) std::vector<Half>().swap(in);
    if (qdata.capacity() > (64u << 20)) std::vector<int8_t>().swap(qdata);
    return Pad(t.bytes());
  }
};

}  // namespace

StatusOr<QuantizeReport> QuantizeModel(const QuantizeOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  QuantizeReport report;
  std::unique_ptr<WeightSource> owned;
  if (!opts.source_override) {
    ASSIGN_OR_RETURN(owned, OpenWeightSource(opts.input, opts.source));
  }
  const WeightSource& src = opts.source_override ? *opts.source_override : *owned;
  const ModelConfig cfg = src.config();
  RETURN_IF_ERROR(CheckModelFileFormat(cfg, opts.format));
  if (opts.format.tp > 1 && cfg.num_heads % opts.format.tp != 0) {
    report.warnings.push_back(StrFormat(
        "%d heads do not divide into %d ranks: the rank shards split heads (as convert_tp.py "
        "would), so a tensor-parallel runtime cannot use the file; single-device runs can",
        cfg.num_heads, opts.format.tp));
  }
  if (opts.zstd_level < 0 || opts.zstd_level > 22)
    return Errorf("--zstd %d: expected 1..22 (0: off)", opts.zstd_level);
  if (!opts.overwrite && Exists(opts.output_path)) {
    return Errorf("output '%s' exists; pass --force to replace it", opts.output_path.c_str());
  }
  report.source = src.Describe();
  report.cfg = cfg;
  report.format = opts.format;
  report.input_bytes = src.DataBytes();

  // With zstd the plain file is a stage, compressed at the end.
  const std::string stage =
      opts.zstd_level > 0 ? opts.output_path + ".uncompressed" : opts.output_path;
  const std::string partial = stage + ".partial", prev = stage + ".prev",
                    journal_path = partial + ".journal";
  const Plan plan = MakePlan(cfg, opts.format);
  const std::string name = opts.name.empty() ? "GLM (" + src.Describe() + ")" : opts.name;
  const std::string fingerprint = Fingerprint(opts, src, cfg, plan, name);
  const int E = int(plan.extents.size());
  report.extents_total = E;

  QuantizeProgress prog;
  prog.layers_total = cfg.num_layers;
  prog.extents_total = E;
  prog.bytes_total = plan.data_bytes;
  auto tell = [&](const char* phase) {
    prog.phase = phase;
    if (opts.progress) opts.progress(prog);
  };

  // --resume: the interrupted file (or the copy a previous resume was reading) with the longest
  // verified prefix.
  std::vector<char> io(opts.resume ? 16 << 20 : 0);  // reading an interrupted file
  Candidate best;
  std::map<int, uint64_t> journal;
  bool stage_done = false;
  if (opts.resume && opts.zstd_level > 0 && Exists(stage)) {
    auto f = GgufFile::Open(stage);
    stage_done = f.ok() && f.value()->GetString(kFingerprintKey).ok() &&
                 f.value()->GetString(kFingerprintKey).value() == fingerprint;
  }
  if (opts.resume && !stage_done) {
    journal = ReadJournal(journal_path, fingerprint);
    tell("verify");
    for (const std::string& p : {partial, prev}) {
      Candidate c = Evaluate(p, plan, journal, &io);
      if (c.verified > best.verified) best = std::move(c);
    }
  }
  if (best.verified > 0 && best.path != prev) {
    ::unlink(prev.c_str());
    if (::rename(best.path.c_str(), prev.c_str()) != 0)
      return ErrnoError("rename", best.path, errno);
    best.path = prev;  // the open descriptor follows the file
  } else if (best.verified == 0) {
    ::unlink(prev.c_str());
  }
  report.extents_reused = best.verified;

  if (!stage_done) {
    GgufWriter w(stage, kFileAlignment);
    WriteModelMetadata(w, cfg, name, opts.format);
    w.SetString("glmstream.quantize.source", src.Describe());
    w.SetString(kFingerprintKey, fingerprint);
    DeclareModelTensors(w, cfg, opts.format);
    RETURN_IF_ERROR(w.Begin());
    std::map<int, uint64_t> kept;
    for (int e = 0; e < best.verified; ++e) kept[e] = journal[e];
    Journal jr;
    RETURN_IF_ERROR(jr.Open(journal_path, fingerprint, kept));
    Converter conv(opts, src, w);
    conv.hash = XXH64_createState();
    std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> hash_owner(conv.hash,
                                                                                 XXH64_freeState);
    auto last_tell = std::chrono::steady_clock::now();
    conv.on_bytes = [&] {
      prog.bytes_done = conv.bytes_done;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_tell > std::chrono::milliseconds(200)) {
        last_tell = now;
        tell(prog.extents_done < best.verified ? "copy" : "convert");
      }
    };
    Status st;
    size_t ti = 0;
    for (int e = 0; e < E && st.ok(); ++e) {
      XXH64_reset(conv.hash, 0);
      for (; ti < plan.tensors.size() && plan.tensors[ti].extent == e && st.ok(); ++ti) {
        const FileTensor& t = plan.tensors[ti];
        if (e < best.verified) {  // verified: copy the bytes over
          io.resize(16 << 20);
          const uint64_t at = best.file->data_offset() + plan.offset[ti];
          for (uint64_t done = 0; done < t.bytes() && st.ok();) {
            const size_t k = size_t(std::min<uint64_t>(io.size(), t.bytes() - done));
            st = PRead(best.file->fd(), io.data(), k, at + done, best.path);
            if (st.ok()) st = conv.Emit(io.data(), k);
            done += k;
          }
        } else {
          st = conv.Convert(t);
        }
      }
      if (!st.ok()) break;
      if (e >= best.verified) st = jr.Record(e, XXH64_digest(conv.hash));
      prog.extents_done = e + 1;
      prog.layers_done = e == 0 ? 0 : (e - 1) / opts.format.tp + ((e % opts.format.tp) == 0);
      tell(e < best.verified ? "copy" : "convert");
      if (st.ok() && e >= best.verified && opts.on_extent_done) opts.on_extent_done(e);
    }
    if (st.ok()) st = w.Finish();
    if (!st.ok()) {
      // GgufWriter removed FILE.partial; a verified FILE.prev stays for another --resume.
      if (best.verified == 0) jr.Remove();
      return st;
    }
    jr.Remove();
    if (best.file) {
      best.file.reset();
      ::unlink(prev.c_str());
    }
    for (const auto& [type, err] : conv.errors) report.errors.emplace_back(type, err);
  }

  if (opts.zstd_level > 0) {
    CompressOptions co;
    co.level = opts.zstd_level;
    co.planes = opts.zstd_planes;
    co.progress = [&](uint64_t done, uint64_t total) {
      prog.bytes_done = done;
      prog.bytes_total = total;
      tell("compress");
    };
    ASSIGN_OR_RETURN(report.zstd, CompressModelFile(stage, opts.output_path, co));
    ::unlink(stage.c_str());
  }
  struct stat st;
  if (::stat(opts.output_path.c_str(), &st) == 0) report.output_bytes = uint64_t(st.st_size);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace glm
