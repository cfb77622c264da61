// GgufFile: strict, pread-based GGUF v3 parser and extent checksum verification.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "offload/gguf.h"

namespace glm {
namespace {

static_assert(std::endian::native == std::endian::little,
              "GGUF is read little-endian by copying into host integers");

constexpr uint64_t kReadWindow = 1 << 20;        // header bytes fetched per pread
constexpr uint64_t kMaxKeyLen = 65535;           // gguf.md: keys are at most 2^16-1 bytes
constexpr uint64_t kMaxTensorName = 63;          // ggml's GGML_MAX_NAME (64) with the NUL
constexpr uint64_t kMaxStringLen = 16ull << 20;  // no real metadata string comes close
constexpr uint64_t kMaxArrayLen = 16ull << 20;   // vocabularies are ~150k; bounds our memory
constexpr uint32_t kMaxDims = 4;                 // GGML_MAX_DIMS
constexpr size_t kVerifyChunk = 16 << 20;

// Minimum encoded sizes, used to reject counts that cannot fit in the bytes left.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;                  // key length, type, a u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name length, n_dims, ne[0], ..

const char* const kExtentKeys[3] = {"glmstream.extent.offset", "glmstream.extent.size",
                                    "glmstream.extent.xxh64"};

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

// Keys and names in error messages come from the file: escape control bytes (no terminal
// escape sequences reach the user's screen) and cut long ones.
std::string Shown(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 96; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += c < 0x20 || c == 0x7f ? StrFormat("\\x%02x", c) : std::string(1, static_cast<char>(c));
  }
  return s.size() > 96 ? out + "..." : out;
}

// Reads the header sequentially through a window of pread'ed bytes. Every read is checked
// against the file size first; errors name the file, the item being parsed and the offset.
class Cursor {
 public:
  Cursor(int fd, uint64_t size, const std::string& path) : fd_(fd), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void SetContext(std::string ctx) { ctx_ = std::move(ctx); }

  Status Error(const char* fmt, ...) const __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    char detail[512];
    std::vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return Errorf("%s: %s: %s (at byte offset %" PRIu64 ")", path_.c_str(), ctx_.c_str(), detail,
                  pos_);
  }

  Status Read(void* dst, uint64_t n) {
    if (n > left()) {
      return Error("file truncated: need %" PRIu64 " bytes, %" PRIu64 " left of %" PRIu64, n,
                   left(), size_);
    }
    char* out = static_cast<char*>(dst);
    while (n > 0) {
      if (pos_ < win_pos_ || pos_ >= win_pos_ + win_.size()) RETURN_IF_ERROR(Fill());
      const uint64_t k = std::min<uint64_t>(n, win_pos_ + win_.size() - pos_);
      std::memcpy(out, win_.data() + (pos_ - win_pos_), k);
      out += k;
      pos_ += k;
      n -= k;
    }
    return Status::Ok();
  }

  template <typename T>
  Status Get(T* v) {
    return Read(v, sizeof(T));
  }

  Status String(std::string* s, uint64_t max_len, const char* what) {
    uint64_t n = 0;
    RETURN_IF_ERROR(Get(&n));
    if (n > max_len) return Error("%s length %" PRIu64 " exceeds %" PRIu64, what, n, max_len);
    if (n > left()) {
      return Error("%s length %" PRIu64 " runs past the end of the file (%" PRIu64
                   " bytes left; file truncated or corrupt)",
                   what, n, left());
    }
    s->resize(n);
    return Read(s->data(), n);
  }

 private:
  Status Fill() {
    win_pos_ = pos_;
    win_.resize(std::min(kReadWindow, left()));
    size_t got = 0;
    while (got < win_.size()) {
      ssize_t r =
          ::pread(fd_, win_.data() + got, win_.size() - got, static_cast<off_t>(win_pos_ + got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        const int err = r < 0 ? errno : 0;
        win_.clear();
        return Errorf("%s: read at byte offset %" PRIu64 ": %s", path_.c_str(), win_pos_ + got,
                      err ? std::strerror(err) : "unexpected end of file (file shrank?)");
      }
      got += static_cast<size_t>(r);
    }
    return Status::Ok();
  }

  int fd_;
  uint64_t size_, pos_ = 0, win_pos_ = 0;
  std::string path_, ctx_;
  std::string win_;
};

bool IsScalarType(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufValueType::kF64) &&
         t != static_cast<uint32_t>(GgufValueType::kArray);
}

// Encoded bytes of one element (strings: the minimum, their length field).
uint64_t MinElemBytes(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kU16:
    case GgufValueType::kI16:
      return 2;
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kF32:
      return 4;
    default:
      return 8;  // u64, i64, f64, string
  }
}

// Reads one scalar of type t, widened into *u / *i / *d.
Status ReadScalar(Cursor& c, GgufValueType t, uint64_t* u, int64_t* i, double* d) {
  auto get = [&](auto tag, auto* dst) -> Status {
    decltype(tag) x;
    RETURN_IF_ERROR(c.Get(&x));
    *dst = x;
    return Status::Ok();
  };
  switch (t) {
    case GgufValueType::kU8:
      return get(uint8_t{}, u);
    case GgufValueType::kI8:
      return get(int8_t{}, i);
    case GgufValueType::kU16:
      return get(uint16_t{}, u);
    case GgufValueType::kI16:
      return get(int16_t{}, i);
    case GgufValueType::kU32:
      return get(uint32_t{}, u);
    case GgufValueType::kI32:
      return get(int32_t{}, i);
    case GgufValueType::kU64:
      return get(uint64_t{}, u);
    case GgufValueType::kI64:
      return get(int64_t{}, i);
    case GgufValueType::kF32:
      return get(float{}, d);
    case GgufValueType::kF64:
      return get(double{}, d);
    case GgufValueType::kBool: {
      uint8_t b;
      RETURN_IF_ERROR(c.Get(&b));
      if (b > 1) return c.Error("bool value %u is neither 0 nor 1", b);
      *u = b;
      return Status::Ok();
    }
    default:
      break;
  }
  GLM_CHECK_MSG(false, "ReadScalar of type %u", static_cast<unsigned>(t));
}

Status ReadValue(Cursor& c, uint32_t raw_type, GgufValue* out) {
  if (raw_type > static_cast<uint32_t>(GgufValueType::kF64)) {
    return c.Error("unknown metadata value type %u", raw_type);
  }
  const auto t = static_cast<GgufValueType>(raw_type);
  out->type = t;
  if (t == GgufValueType::kString) {
    std::string s;
    RETURN_IF_ERROR(c.String(&s, kMaxStringLen, "string"));
    out->v = std::move(s);
    return Status::Ok();
  }
  if (t != GgufValueType::kArray) {
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    RETURN_IF_ERROR(ReadScalar(c, t, &u, &i, &d));
    switch (t) {
      case GgufValueType::kBool:
        out->v = u != 0;
        break;
      case GgufValueType::kF32:
      case GgufValueType::kF64:
        out->v = d;
        break;
      case GgufValueType::kI8:
      case GgufValueType::kI16:
      case GgufValueType::kI32:
      case GgufValueType::kI64:
        out->v = i;
        break;
      default:
        out->v = u;
    }
    return Status::Ok();
  }
  uint32_t raw_elem = 0;
  uint64_t n = 0;
  RETURN_IF_ERROR(c.Get(&raw_elem));
  if (raw_elem == static_cast<uint32_t>(GgufValueType::kArray)) {
    return c.Error("nested arrays are not supported");
  }
  if (!IsScalarType(raw_elem)) return c.Error("unknown array element type %u", raw_elem);
  const auto et = static_cast<GgufValueType>(raw_elem);
  out->elem_type = et;
  RETURN_IF_ERROR(c.Get(&n));
  if (n > kMaxArrayLen)
    return c.Error("array of %" PRIu64 " elements (limit %" PRIu64 ")", n, kMaxArrayLen);
  if (n * MinElemBytes(et) > c.left()) {  // n <= 2^24, so no overflow
    return c.Error("array of %" PRIu64 " %s elements needs at least %" PRIu64 " bytes, %" PRIu64
                   " left in the file (file truncated or corrupt)",
                   n, GgufValueTypeName(et), n * MinElemBytes(et), c.left());
  }
  // Sizes are now bounded by the bytes actually present, so reserving is safe.
  if (et == GgufValueType::kString) {
    std::vector<std::string> a(n);
    for (auto& s : a) RETURN_IF_ERROR(c.String(&s, kMaxStringLen, "array string"));
    out->v = std::move(a);
    return Status::Ok();
  }
  const bool is_signed = et == GgufValueType::kI8 || et == GgufValueType::kI16 ||
                         et == GgufValueType::kI32 || et == GgufValueType::kI64;
  const bool is_float = et == GgufValueType::kF32 || et == GgufValueType::kF64;
  std::vector<uint64_t> au;
  std::vector<int64_t> ai;
  std::vector<double> ad;
  if (is_float) {
    ad.resize(n);
  } else if (is_signed) {
    ai.resize(n);
  } else {
    au.resize(n);
  }
  for (uint64_t k = 0; k < n; ++k) {
    uint64_t u = 0;
    int64_t i = 0;
    double d = 0;
    RETURN_IF_ERROR(ReadScalar(c, et, &u, &i, &d));
    if (is_float) {
      ad[k] = d;
    } else if (is_signed) {
      ai[k] = i;
    } else {
      au[k] = u;
    }
  }
  if (is_float) {
    out->v = std::move(ad);
  } else if (is_signed) {
    out->v = std::move(ai);
  } else {
    out->v = std::move(au);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) return ErrnoError("open", path, errno);
  struct stat st;
  if (::fstat(f->fd_, &st) != 0) return ErrnoError("stat", path, errno);
  if (!S_ISREG(st.st_mode)) return Errorf("%s: not a regular file", path.c_str());
  f->file_size_ = static_cast<uint64_t>(st.st_size);
  RETURN_IF_ERROR(f->Parse());
  return f;
}

GgufFile::~GgufFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status GgufFile::Parse() {
  Cursor c(fd_, file_size_, path_);
  c.SetContext("header");
  char magic[4];
  RETURN_IF_ERROR(c.Read(magic, 4));
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    return Errorf("%s: not a GGUF file (magic bytes %02x %02x %02x %02x, expected \"GGUF\")",
                  path_.c_str(), static_cast<uint8_t>(magic[0]), static_cast<uint8_t>(magic[1]),
                  static_cast<uint8_t>(magic[2]), static_cast<uint8_t>(magic[3]));
  }
  RETURN_IF_ERROR(c.Get(&version_));
  if (version_ != 3) {
    return Errorf("%s: GGUF version %u is not supported (glmstream reads version 3)", path_.c_str(),
                  version_);
  }
  uint64_t tensor_count = 0, kv_count = 0;
  RETURN_IF_ERROR(c.Get(&tensor_count));
  RETURN_IF_ERROR(c.Get(&kv_count));
  if (kv_count > c.left() / kMinKvBytes || tensor_count > c.left() / kMinTensorInfoBytes) {
    return c.Error("%" PRIu64 " metadata entries and %" PRIu64 " tensors cannot fit in the %" PRIu64
                   " bytes left (file truncated or corrupt)",
                   kv_count, tensor_count, c.left());
  }

  for (uint64_t k = 0; k < kv_count; ++k) {
    c.SetContext(StrFormat("metadata entry #%" PRIu64, k));
    std::string key;
    RETURN_IF_ERROR(c.String(&key, kMaxKeyLen, "key"));
    if (key.empty()) return c.Error("empty key");
    c.SetContext(StrFormat("metadata entry #%" PRIu64 " '%s'", k, Shown(key).c_str()));
    if (kv_index_.count(key)) return c.Error("duplicate key");
    uint32_t raw_type = 0;
    RETURN_IF_ERROR(c.Get(&raw_type));
    GgufValue value;
    RETURN_IF_ERROR(ReadValue(c, raw_type, &value));
    kv_index_[key] = kv_.size();
    kv_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = Find("general.alignment")) {
    c.SetContext("general.alignment");
    if (a->type != GgufValueType::kU32) {
      return c.Error("is %s, expected u32", a->TypeName().c_str());
    }
    const uint64_t v = std::get<uint64_t>(a->v);
    if (v == 0 || (v & (v - 1)) != 0) return c.Error("%" PRIu64 " is not a power of two", v);
    alignment_ = static_cast<uint32_t>(v);
  }

  if (tensor_count > c.left() / kMinTensorInfoBytes) {
    return c.Error("%" PRIu64 " tensors cannot fit in the %" PRIu64
                   " bytes left (file truncated or corrupt)",
                   tensor_count, c.left());
  }
  for (uint64_t k = 0; k < tensor_count; ++k) {
    c.SetContext(StrFormat("tensor #%" PRIu64, k));
    GgufTensorInfo t;
    RETURN_IF_ERROR(c.String(&t.name, kMaxTensorName, "name"));
    c.SetContext(StrFormat("tensor #%" PRIu64 " '%s'", k, Shown(t.name).c_str()));
    if (tensor_index_.count(t.name)) return c.Error("duplicate tensor name");
    uint32_t n_dims = 0;
    RETURN_IF_ERROR(c.Get(&n_dims));
    if (n_dims < 1 || n_dims > kMaxDims) return c.Error("n_dims %u (must be 1..4)", n_dims);
    t.shape.assign(n_dims, 0);
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      RETURN_IF_ERROR(c.Get(&ne));
      if (ne > static_cast<uint64_t>(INT64_MAX))
        return c.Error("ne[%u] = %" PRIu64 " is out of range", d, ne);
      t.shape[n_dims - 1 - d] = static_cast<int64_t>(ne);  // ne is innermost first
    }
    uint32_t raw_type = 0;
    RETURN_IF_ERROR(c.Get(&raw_type));
    if (!IsKnownGgmlType(raw_type)) {
      return c.Error("unsupported tensor type %u (glmstream reads F32, F16, BF16, I8, I32)",
                     raw_type);
    }
    t.type = static_cast<GgmlType>(raw_type);
    RETURN_IF_ERROR(c.Get(&t.offset));
    if (t.offset % alignment_ != 0) {
      return c.Error("data offset %" PRIu64 " is not a multiple of the alignment %u", t.offset,
                     alignment_);
    }
    t.bytes = GgmlTypeSize(t.type);
    for (int64_t d : t.shape) {
      if (__builtin_mul_overflow(t.bytes, static_cast<uint64_t>(d), &t.bytes)) {
        return c.Error("shape overflows 64-bit byte counts");
      }
    }
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  data_offset_ = AlignUp(c.pos(), alignment_);
  const uint64_t data_size = data_offset_ <= file_size_ ? file_size_ - data_offset_ : 0;
  if (data_offset_ > file_size_ && !tensors_.empty()) {
    return Errorf("%s: file truncated: tensor data starts at byte %" PRIu64
                  " but the file has %" PRIu64 " bytes",
                  path_.c_str(), data_offset_, file_size_);
  }
  for (const auto& t : tensors_) {
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      return Errorf("%s: tensor '%s' [data offset %" PRIu64 ", %" PRIu64
                    " bytes] runs past the end of the file (data section has %" PRIu64
                    " bytes; truncated file?)",
                    path_.c_str(), Shown(t.name).c_str(), t.offset, t.bytes, data_size);
    }
  }
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : tensors_) {
    if (t.bytes > 0) by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const auto* a = by_offset[k - 1];
    const auto* b = by_offset[k];
    if (a->offset + a->bytes > b->offset) {
      return Errorf("%s: tensors '%s' [%" PRIu64 ", +%" PRIu64 ") and '%s' [%" PRIu64 ", +%" PRIu64
                    ") overlap",
                    path_.c_str(), Shown(a->name).c_str(), a->offset, a->bytes,
                    Shown(b->name).c_str(), b->offset, b->bytes);
    }
  }
  return ParseExtents();
}

Status GgufFile::ParseExtents() {
  const GgufValue* v[3];
  int present = 0;
  for (int k = 0; k < 3; ++k) present += (v[k] = Find(kExtentKeys[k])) != nullptr;
  if (present == 0) return Status::Ok();  // a plain GGUF file: no checksums to verify
  std::vector<uint64_t> a[3];
  for (int k = 0; k < 3; ++k) {
    if (!v[k]) {
      return Errorf("%s: metadata has some glmstream.extent.* keys but not '%s'", path_.c_str(),
                    kExtentKeys[k]);
    }
    if (v[k]->type != GgufValueType::kArray || v[k]->elem_type != GgufValueType::kU64) {
      return Errorf("%s: metadata key '%s' is %s, expected array<u64>", path_.c_str(),
                    kExtentKeys[k], v[k]->TypeName().c_str());
    }
    a[k] = std::get<std::vector<uint64_t>>(v[k]->v);
  }
  if (a[0].size() != a[1].size() || a[0].size() != a[2].size()) {
    return Errorf("%s: extent arrays differ in length (offset %zu, size %zu, xxh64 %zu)",
                  path_.c_str(), a[0].size(), a[1].size(), a[2].size());
  }
  const uint64_t data_size = data_offset_ <= file_size_ ? file_size_ - data_offset_ : 0;
  for (size_t e = 0; e < a[0].size(); ++e) {
    const GgufExtent x{a[0][e], a[1][e], a[2][e]};
    if (x.offset % alignment_ != 0 || x.size % alignment_ != 0) {
      return Errorf("%s: extent %zu [data offset %" PRIu64 ", %" PRIu64
                    " bytes] is not aligned to %u",
                    path_.c_str(), e, x.offset, x.size, alignment_);
    }
    if (x.offset > data_size || x.size > data_size - x.offset) {
      return Errorf("%s: extent %zu [data offset %" PRIu64 ", %" PRIu64
                    " bytes] runs past the end of the file (truncated file?)",
                    path_.c_str(), e, x.offset, x.size);
    }
    if (e > 0 && extents_.back().offset + extents_.back().size > x.offset) {
      return Errorf("%s: extent %zu starts at data offset %" PRIu64
                    ", inside or before extent %zu (extents must be sorted and disjoint)",
                    path_.c_str(), e, x.offset, e - 1);
    }
    extents_.push_back(x);
  }
  // Every tensor must sit inside one extent, so that every tensor byte is checksummed.
  for (auto& t : tensors_) {
    auto it = std::upper_bound(extents_.begin(), extents_.end(), t.offset,
                               [](uint64_t off, const GgufExtent& x) { return off < x.offset; });
    if (it != extents_.begin()) {
      const GgufExtent& x = *(it - 1);
      if (t.offset + t.bytes <= x.offset + x.size)
        t.extent = static_cast<int>(it - 1 - extents_.begin());
    }
    if (t.extent < 0 && t.bytes > 0) {
      return Errorf("%s: tensor '%s' [data offset %" PRIu64 ", %" PRIu64
                    " bytes] is not inside any extent",
                    path_.c_str(), t.name.c_str(), t.offset, t.bytes);
    }
  }
  return Status::Ok();
}

Status GgufFile::VerifyExtentImpl(int i, const std::function<void(uint64_t)>& on_chunk) const {
  if (i < 0 || static_cast<size_t>(i) >= extents_.size()) {
    return Errorf("%s: no extent %d (the file has %zu)", path_.c_str(), i, extents_.size());
  }
  const GgufExtent& x = extents_[i];
  std::string buf(std::min<uint64_t>(x.size, kVerifyChunk), '\0');
  XXH64_state_t* state = XXH64_createState();
  GLM_CHECK(state != nullptr);
  XXH64_reset(state, 0);
  uint64_t done = 0;
  Status st;
  while (done < x.size) {
    const uint64_t at = data_offset_ + x.offset + done;
    const size_t want = std::min<uint64_t>(buf.size(), x.size - done);
    ssize_t r = ::pread(fd_, buf.data(), want, static_cast<off_t>(at));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      st = Errorf("%s: extent %d: read at byte offset %" PRIu64 ": %s", path_.c_str(), i, at,
                  r < 0 ? std::strerror(errno) : "unexpected end of file (file shrank?)");
      break;
    }
    XXH64_update(state, buf.data(), static_cast<size_t>(r));
    done += static_cast<uint64_t>(r);
    if (on_chunk) on_chunk(static_cast<uint64_t>(r));
  }
  const uint64_t digest = XXH64_digest(state);
  XXH64_freeState(state);
  RETURN_IF_ERROR(st);
  if (digest == x.xxh64) return Status::Ok();
  std::string names;
  const std::vector<int> in = TensorsInExtent(i);
  for (size_t k = 0; k < in.size() && k < 8; ++k) {
    names += (k ? ", " : "") + Shown(tensors_[in[k]].name);
  }
  if (in.size() > 8) names += StrFormat(", ... (%zu tensors)", in.size());
  return Errorf("%s: extent %d [file offset %" PRIu64 ", %" PRIu64
                " bytes] checksum mismatch: stored xxh64 %016" PRIx64 ", computed %016" PRIx64
                "; tensors: %s",
                path_.c_str(), i, data_offset_ + x.offset, x.size, x.xxh64, digest,
                names.empty() ? "(none)" : names.c_str());
}

Status GgufFile::VerifyExtent(int i) const { return VerifyExtentImpl(i, nullptr); }

Status GgufFile::VerifyAll(const std::function<void(uint64_t, uint64_t)>& progress) const {
  uint64_t total = 0, done = 0;
  for (const auto& x : extents_) total += x.size;
  std::vector<std::string> failures;
  for (size_t i = 0; i < extents_.size(); ++i) {
    Status st = VerifyExtentImpl(static_cast<int>(i), [&](uint64_t n) {
      done += n;
      if (progress) progress(done, total);
    });
    if (!st.ok()) failures.push_back(st.message());
  }
  if (failures.empty()) return Status::Ok();
  if (failures.size() == 1) return Status::Error(failures[0]);
  std::string msg =
      StrFormat("%zu of %zu extents failed verification:", failures.size(), extents_.size());
  for (const auto& f : failures) msg += "\n  " + f;
  return Status::Error(msg);
}

}  // namespace glm
