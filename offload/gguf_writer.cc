// GgufWriter: streams a GGUF v3 file to FILE.partial with checksummed extents, then renames it.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <set>
#include <type_traits>
#include <utility>

#include "offload/gguf.h"

namespace glm {
namespace {

static_assert(std::endian::native == std::endian::little,
              "GGUF is written little-endian by copying host integers");

constexpr size_t kWriteBuffer = 8 << 20;  // batches small writes; large ones go straight through
constexpr size_t kMaxTensorName = 63;     // ggml's GGML_MAX_NAME (64) includes the NUL

const char* const kExtentOffsetKey = "glmstream.extent.offset";
const char* const kExtentSizeKey = "glmstream.extent.size";
const char* const kExtentHashKey = "glmstream.extent.xxh64";

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

// Serialises header fields in the GGUF encoding.
class Sink {
 public:
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void Str(const std::string& s) {
    U64(s.size());
    out_.append(s);
  }
  void Raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  // One scalar (or array element) of type t whose value is held widened in the variant.
  void Scalar(GgufValueType t, uint64_t u, int64_t i, double d) {
    switch (t) {
      case GgufValueType::kU8:
        Put<uint8_t>(u);
        break;
      case GgufValueType::kBool:
        GLM_CHECK_MSG(u <= 1, "bool metadata value %llu", static_cast<unsigned long long>(u));
        Put<uint8_t>(u);
        break;
      case GgufValueType::kI8:
        Put<int8_t>(i);
        break;
      case GgufValueType::kU16:
        Put<uint16_t>(u);
        break;
      case GgufValueType::kI16:
        Put<int16_t>(i);
        break;
      case GgufValueType::kU32:
        Put<uint32_t>(u);
        break;
      case GgufValueType::kI32:
        Put<int32_t>(i);
        break;
      case GgufValueType::kU64:
        Put<uint64_t>(u);
        break;
      case GgufValueType::kI64:
        Put<int64_t>(i);
        break;
      case GgufValueType::kF32:
        Put<float>(static_cast<float>(d));
        break;
      case GgufValueType::kF64:
        Put<double>(d);
        break;
      default:
        GLM_CHECK_MSG(false, "not a scalar type: %u", static_cast<unsigned>(t));
    }
  }
  std::string& out() { return out_; }

 private:
  // Values are held widened; one that does not fit its declared type is a caller bug.
  template <typename T, typename V>
  void Put(V v) {
    if constexpr (std::is_integral_v<T>) {
      GLM_CHECK_MSG(std::in_range<T>(v), "metadata value %s does not fit its %zu-byte type",
                    std::to_string(v).c_str(), sizeof(T));
    }
    T t = static_cast<T>(v);
    Raw(&t, sizeof(T));
  }
  std::string out_;
};

enum class Held { kUInt, kInt, kFloat, kBool, kString };

// Which variant alternative holds a value of type t (CHECKs that t is a real type).
Held HeldAs(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kU16:
    case GgufValueType::kU32:
    case GgufValueType::kU64:
      return Held::kUInt;
    case GgufValueType::kI8:
    case GgufValueType::kI16:
    case GgufValueType::kI32:
    case GgufValueType::kI64:
      return Held::kInt;
    case GgufValueType::kF32:
    case GgufValueType::kF64:
      return Held::kFloat;
    case GgufValueType::kBool:
      return Held::kBool;
    case GgufValueType::kString:
      return Held::kString;
    case GgufValueType::kArray:
      break;
  }
  GLM_CHECK_MSG(false, "GgufValue of unsupported type %u", static_cast<unsigned>(t));
}

// The variant must hold what the declared type says; a mismatch is a bug in the caller.
void CheckValueShape(const std::string& key, const GgufValue& v) {
  if (v.type != GgufValueType::kArray) {
    const size_t want[] = {0, 1, 2, 3, 4};  // variant index per Held
    GLM_CHECK_MSG(v.v.index() == want[static_cast<int>(HeldAs(v.type))],
                  "metadata '%s': variant does not hold a %s", key.c_str(),
                  GgufValueTypeName(v.type));
    return;
  }
  // Arrays of bool are held as uint64_t (0/1), like the unsigned integers.
  Held h = HeldAs(v.elem_type);
  const size_t want_array[] = {5, 6, 7, 5, 8};
  GLM_CHECK_MSG(v.v.index() == want_array[static_cast<int>(h)],
                "metadata '%s': variant does not hold an array of %s", key.c_str(),
                GgufValueTypeName(v.elem_type));
}

void PutValue(Sink& s, const GgufValue& v) {
  s.U32(static_cast<uint32_t>(v.type));
  switch (v.v.index()) {
    case 0:
      s.Scalar(v.type, std::get<0>(v.v), 0, 0);
      break;
    case 1:
      s.Scalar(v.type, 0, std::get<1>(v.v), 0);
      break;
    case 2:
      s.Scalar(v.type, 0, 0, std::get<2>(v.v));
      break;
    case 3:
      s.Scalar(v.type, std::get<3>(v.v), 0, 0);
      break;
    case 4:
      s.Str(std::get<4>(v.v));
      break;
    default:
      s.U32(static_cast<uint32_t>(v.elem_type));
      s.U64(v.ArraySize());
      if (auto* a = std::get_if<std::vector<uint64_t>>(&v.v)) {
        for (uint64_t e : *a) s.Scalar(v.elem_type, e, 0, 0);
      } else if (auto* a = std::get_if<std::vector<int64_t>>(&v.v)) {
        for (int64_t e : *a) s.Scalar(v.elem_type, 0, e, 0);
      } else if (auto* a = std::get_if<std::vector<double>>(&v.v)) {
        for (double e : *a) s.Scalar(v.elem_type, 0, 0, e);
      } else {
        for (const std::string& e : std::get<std::vector<std::string>>(v.v)) s.Str(e);
      }
  }
}

}  // namespace

struct GgufWriter::Impl {
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    int extent;
    uint64_t bytes = 0;
    uint64_t offset = 0;  // relative to the data section
  };
  enum class State { kDeclaring, kWriting, kFinished, kFailed };

  std::string path, partial;
  uint32_t alignment = 0;
  std::vector<std::pair<std::string, GgufValue>> kv;
  std::vector<Tensor> tensors;
  std::vector<GgufExtent> extents;
  State state = State::kDeclaring;
  Status error;  // sticky: every call after a failure returns it

  int fd = -1;
  bool created = false;   // FILE.partial is ours to remove
  uint64_t file_pos = 0;  // file offset of buf[0]
  std::string buf;
  uint64_t hash_patch_at = 0;  // file offset of the first glmstream.extent.xxh64 element
  size_t cur = 0;              // tensor being written
  uint64_t cur_done = 0;       // its bytes written so far
  XXH64_state_t* hash = nullptr;

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (state != State::kFinished && created) ::unlink(partial.c_str());
    if (hash) XXH64_freeState(hash);
  }

  // Records the first failure, removes the partial file right away and returns the error.
  Status Fail(Status st) {
    if (fd >= 0) ::close(fd);
    fd = -1;
    if (created) ::unlink(partial.c_str());
    created = false;
    state = State::kFailed;
    error = st;
    return st;
  }

  Status WriteAt(const char* p, size_t n, uint64_t off) {
    while (n > 0) {
      ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        int err = w < 0 ? errno : EIO;
        return Fail(Errorf("write '%s' at byte offset %" PRIu64 " (%zu bytes): %s", partial.c_str(),
                           off, n, std::strerror(err)));
      }
      p += w;
      n -= static_cast<size_t>(w);
      off += static_cast<uint64_t>(w);
    }
    return Status::Ok();
  }

  Status Flush() {
    if (buf.empty()) return Status::Ok();
    RETURN_IF_ERROR(WriteAt(buf.data(), buf.size(), file_pos));
    file_pos += buf.size();
    buf.clear();
    return Status::Ok();
  }

  // Appends bytes at the end of the file; `hashed` bytes belong to the current extent.
  Status Emit(const void* data, size_t n, bool hashed) {
    if (hashed) XXH64_update(hash, data, n);
    if (buf.size() + n > kWriteBuffer) RETURN_IF_ERROR(Flush());
    if (n >= kWriteBuffer) {  // too big to be worth a copy
      RETURN_IF_ERROR(WriteAt(static_cast<const char*>(data), n, file_pos));
      file_pos += n;
      return Status::Ok();
    }
    buf.append(static_cast<const char*>(data), n);
    return Status::Ok();
  }

  Status EmitZeros(uint64_t n, bool hashed) {
    static const char kZeros[65536] = {};
    while (n > 0) {
      size_t k = n < sizeof(kZeros) ? n : sizeof(kZeros);
      RETURN_IF_ERROR(Emit(kZeros, k, hashed));
      n -= k;
    }
    return Status::Ok();
  }
};

GgufWriter::GgufWriter(std::string path, uint32_t alignment)
    : impl_(std::make_unique<Impl>()), path_(std::move(path)) {
  GLM_CHECK_MSG(alignment >= 8 && (alignment & (alignment - 1)) == 0,
                "GGUF alignment %u is not a power of two >= 8", alignment);
  impl_->path = path_;
  impl_->alignment = alignment;
}

GgufWriter::~GgufWriter() = default;

void GgufWriter::Set(const std::string& key, GgufValue v) {
  GLM_CHECK_MSG(impl_->state == Impl::State::kDeclaring, "metadata '%s' set after Begin()",
                key.c_str());
  GLM_CHECK_MSG(key != "general.alignment" && key.rfind("glmstream.extent.", 0) != 0,
                "metadata '%s' is written by GgufWriter itself", key.c_str());
  GLM_CHECK_MSG(!key.empty(), "empty metadata key");
  CheckValueShape(key, v);
  Sink probe;  // encoding now CHECKs value ranges where the caller can see the bad call
  PutValue(probe, v);
  for (auto& [k, old] : impl_->kv) {
    if (k == key) {
      old = std::move(v);
      return;
    }
  }
  impl_->kv.emplace_back(key, std::move(v));
}

namespace {
GgufValue Scalar(GgufValueType t, decltype(GgufValue::v) v) {
  GgufValue g;
  g.type = t;
  g.v = std::move(v);
  return g;
}
template <typename E>
GgufValue Array(GgufValueType elem, E values) {
  GgufValue g;
  g.type = GgufValueType::kArray;
  g.elem_type = elem;
  g.v = std::move(values);
  return g;
}
}  // namespace

void GgufWriter::SetU32(const std::string& key, uint32_t v) {
  Set(key, Scalar(GgufValueType::kU32, uint64_t{v}));
}
void GgufWriter::SetI32(const std::string& key, int32_t v) {
  Set(key, Scalar(GgufValueType::kI32, int64_t{v}));
}
void GgufWriter::SetU64(const std::string& key, uint64_t v) {
  Set(key, Scalar(GgufValueType::kU64, v));
}
void GgufWriter::SetF32(const std::string& key, float v) {
  Set(key, Scalar(GgufValueType::kF32, double{v}));
}
void GgufWriter::SetBool(const std::string& key, bool v) {
  Set(key, Scalar(GgufValueType::kBool, v));
}
void GgufWriter::SetString(const std::string& key, const std::string& v) {
  Set(key, Scalar(GgufValueType::kString, v));
}
void GgufWriter::SetArrayU64(const std::string& key, const std::vector<uint64_t>& v) {
  Set(key, Array(GgufValueType::kU64, v));
}
void GgufWriter::SetArrayI32(const std::string& key, const std::vector<int32_t>& v) {
  Set(key, Array(GgufValueType::kI32, std::vector<int64_t>(v.begin(), v.end())));
}
void GgufWriter::SetArrayString(const std::string& key, const std::vector<std::string>& v) {
  Set(key, Array(GgufValueType::kString, v));
}

void GgufWriter::AddTensor(const std::string& name, GgmlType type,
                           const std::vector<int64_t>& shape, int extent) {
  GLM_CHECK_MSG(impl_->state == Impl::State::kDeclaring, "tensor '%s' added after Begin()",
                name.c_str());
  GLM_CHECK_MSG(IsKnownGgmlType(static_cast<uint32_t>(type)), "tensor '%s': unknown type %u",
                name.c_str(), static_cast<unsigned>(type));
  GLM_CHECK_MSG(!shape.empty() && shape.size() <= 4, "tensor '%s': %zu dims (1..4 allowed)",
                name.c_str(), shape.size());
  const int prev = impl_->tensors.empty() ? -1 : impl_->tensors.back().extent;
  GLM_CHECK_MSG(extent == prev || extent == prev + 1,
                "tensor '%s': extent %d follows extent %d (ids must be 0,1,2,... in order)",
                name.c_str(), extent, prev);
  uint64_t bytes = GgmlTypeSize(type);
  for (int64_t d : shape) {
    GLM_CHECK_MSG(d > 0, "tensor '%s': dimension %lld", name.c_str(), static_cast<long long>(d));
    GLM_CHECK_MSG(!__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) &&
                      bytes < (uint64_t{1} << 62),
                  "tensor '%s': size overflows", name.c_str());
  }
  impl_->tensors.push_back({name, type, shape, extent, bytes, 0});
}

Status GgufWriter::Begin() {
  Impl& m = *impl_;
  GLM_CHECK_MSG(m.state == Impl::State::kDeclaring, "Begin() called twice");
  m.partial = path_ + ".partial";
  std::set<std::string> names;
  for (const auto& t : m.tensors) {
    if (t.name.empty() || t.name.size() > kMaxTensorName) {
      return m.Fail(Errorf("%s: tensor name '%s' must have 1..%zu bytes (ggml's limit)",
                           path_.c_str(), t.name.c_str(), kMaxTensorName));
    }
    if (!names.insert(t.name).second) {
      return m.Fail(Errorf("%s: tensor '%s' declared twice", path_.c_str(), t.name.c_str()));
    }
  }

  // Layout: every tensor at the next aligned offset; extent e spans the aligned start of its
  // first tensor to the aligned end of its last, so extents tile the data section.
  uint64_t cursor = 0;
  for (auto& t : m.tensors) {
    t.offset = AlignUp(cursor, m.alignment);
    cursor = t.offset + t.bytes;
    if (t.extent == static_cast<int>(m.extents.size())) m.extents.push_back({t.offset, 0, 0});
    m.extents.back().size = AlignUp(cursor, m.alignment) - m.extents.back().offset;
  }

  Sink s;
  s.Raw("GGUF", 4);
  s.U32(3);
  s.U64(m.tensors.size());
  s.U64(m.kv.size() + 4);  // + general.alignment and the three extent arrays
  for (const auto& [key, value] : m.kv) {
    s.Str(key);
    PutValue(s, value);
  }
  s.Str("general.alignment");
  s.U32(static_cast<uint32_t>(GgufValueType::kU32));
  s.U32(m.alignment);
  auto extent_array = [&](const char* key, auto field) {
    s.Str(key);
    s.U32(static_cast<uint32_t>(GgufValueType::kArray));
    s.U32(static_cast<uint32_t>(GgufValueType::kU64));
    s.U64(m.extents.size());
    if (std::string(key) == kExtentHashKey) m.hash_patch_at = s.out().size();
    for (const auto& e : m.extents) s.U64(field(e));
  };
  extent_array(kExtentOffsetKey, [](const GgufExtent& e) { return e.offset; });
  extent_array(kExtentSizeKey, [](const GgufExtent& e) { return e.size; });
  extent_array(kExtentHashKey, [](const GgufExtent&) { return uint64_t{0}; });  // patched
  for (const auto& t : m.tensors) {
    s.Str(t.name);
    s.U32(static_cast<uint32_t>(t.shape.size()));
    for (auto d = t.shape.rbegin(); d != t.shape.rend(); ++d) s.U64(static_cast<uint64_t>(*d));
    s.U32(static_cast<uint32_t>(t.type));
    s.U64(t.offset);
  }
  s.out().resize(AlignUp(s.out().size(), m.alignment), '\0');

  if (::unlink(m.partial.c_str()) != 0 && errno != ENOENT) {  // a stale one from a crash
    return m.Fail(ErrnoError("remove stale", m.partial, errno));
  }
  m.fd = ::open(m.partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (m.fd < 0) return m.Fail(ErrnoError("create", m.partial, errno));
  m.created = true;
  m.hash = XXH64_createState();
  GLM_CHECK(m.hash != nullptr);
  XXH64_reset(m.hash, 0);
  m.state = Impl::State::kWriting;
  return m.Emit(s.out().data(), s.out().size(), /*hashed=*/false);
}

Status GgufWriter::WriteTensorData(const void* data, size_t bytes) {
  Impl& m = *impl_;
  if (m.state == Impl::State::kFailed) return m.error;
  GLM_CHECK_MSG(m.state == Impl::State::kWriting, "WriteTensorData() outside Begin()..Finish()");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    if (m.cur == m.tensors.size()) {
      return m.Fail(Errorf("%s: %zu bytes of tensor data beyond the %zu declared tensors",
                           m.partial.c_str(), bytes, m.tensors.size()));
    }
    const Impl::Tensor& t = m.tensors[m.cur];
    const uint64_t take = std::min<uint64_t>(bytes, t.bytes - m.cur_done);
    RETURN_IF_ERROR(m.Emit(p, take, /*hashed=*/true));
    p += take;
    bytes -= take;
    m.cur_done += take;
    if (m.cur_done < t.bytes) break;
    // Tensor complete: its padding belongs to its extent, which closes when the next tensor
    // starts another one (or there is none).
    RETURN_IF_ERROR(m.EmitZeros(AlignUp(t.bytes, m.alignment) - t.bytes, /*hashed=*/true));
    const bool last_in_extent =
        m.cur + 1 == m.tensors.size() || m.tensors[m.cur + 1].extent != t.extent;
    if (last_in_extent) {
      m.extents[t.extent].xxh64 = XXH64_digest(m.hash);
      XXH64_reset(m.hash, 0);
    }
    ++m.cur;
    m.cur_done = 0;
  }
  return Status::Ok();
}

Status GgufWriter::Finish() {
  Impl& m = *impl_;
  if (m.state == Impl::State::kFailed) return m.error;
  GLM_CHECK_MSG(m.state == Impl::State::kWriting, "Finish() without a successful Begin()");
  if (m.cur < m.tensors.size()) {
    const auto& t = m.tensors[m.cur];
    return m.Fail(Errorf(
        "%s: tensor '%s' (#%zu of %zu) has %" PRIu64 " of %" PRIu64 " bytes written; not finishing",
        path_.c_str(), t.name.c_str(), m.cur, m.tensors.size(), m.cur_done, t.bytes));
  }
  RETURN_IF_ERROR(m.Flush());
  std::vector<uint64_t> digests;
  for (const auto& e : m.extents) digests.push_back(e.xxh64);
  RETURN_IF_ERROR(m.WriteAt(reinterpret_cast<const char*>(digests.data()), digests.size() * 8,
                            m.hash_patch_at));
  if (::fsync(m.fd) != 0) return m.Fail(ErrnoError("fsync", m.partial, errno));
  const int fd = m.fd;
  m.fd = -1;
  if (::close(fd) != 0) return m.Fail(ErrnoError("close", m.partial, errno));
  if (::rename(m.partial.c_str(), path_.c_str()) != 0) {
    return m.Fail(
        Errorf("rename '%s' to '%s': %s", m.partial.c_str(), path_.c_str(), std::strerror(errno)));
  }
  m.state = Impl::State::kFinished;
  m.created = false;
  // Make the rename itself durable; the file is complete either way, so failures are ignored.
  std::string dir = path_.substr(0, path_.find_last_of('/') + 1);
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

}  // namespace glm
