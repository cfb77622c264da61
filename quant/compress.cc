// zstd compression of model-file extents (format in quant/compress.h).
#include "quant/compress.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

namespace glm {
namespace {

constexpr char kCodecKey[] = "glmstream.zstd.codec";
constexpr char kRawKey[] = "glmstream.zstd.raw_size";
constexpr char kStoredKey[] = "glmstream.zstd.stored_size";
constexpr char kNameKey[] = "glmstream.zstd.tensor.name";
constexpr char kTypeKey[] = "glmstream.zstd.tensor.type";
constexpr char kNdimKey[] = "glmstream.zstd.tensor.ndim";
constexpr char kDimsKey[] = "glmstream.zstd.tensor.dims";
constexpr char kExtentKey[] = "glmstream.zstd.tensor.extent";
constexpr char kOffsetKey[] = "glmstream.zstd.tensor.offset";
constexpr size_t kChunk = 16 << 20;  // bytes read per step while compressing

// A zstd return code as a Status (ZSTD_isError codes carry their own text).
Status ZstdStatus(size_t code, const char* what) {
  if (!ZSTD_isError(code)) return Status::Ok();
  return Errorf("zstd %s: %s", what, ZSTD_getErrorName(code));
}

struct CctxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

Status PReadAll(int fd, void* buf, size_t n, uint64_t off, const std::string& path) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return ErrnoError("read", path, errno)
          .WithContext(StrFormat("offset %llu", (unsigned long long)off));
    if (r == 0)
      return Errorf("read '%s': unexpected end of file at offset %llu", path.c_str(),
                    (unsigned long long)off);
    p += r;
    n -= size_t(r);
    off += uint64_t(r);
  }
  return Status::Ok();
}

Status PWriteAll(int fd, const void* buf, size_t n, uint64_t off, const std::string& path) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoError("write", path, w < 0 ? errno : EIO);
    p += w;
    n -= size_t(w);
    off += uint64_t(w);
  }
  return Status::Ok();
}

// Low bytes of the 16-bit words of `src` then their high bytes (codec 2), for part `plane`.
void ExtractPlane(const uint8_t* src, size_t n, int plane, uint8_t* dst) {
  for (size_t i = 0; i < n / 2; ++i) dst[i] = src[2 * i + size_t(plane)];
}

}  // namespace

StatusOr<CompressedTable> ReadCompressedTable(const GgufFile& f) {
  CompressedTable t;
  if (!f.Find(kCompressionKey)) return t;
  ASSIGN_OR_RETURN(std::string c, f.GetString(kCompressionKey));
  if (c != "zstd") {
    return Errorf("%s: %s is '%s'; this build reads 'zstd'", f.path().c_str(), kCompressionKey,
                  c.c_str());
  }
  t.compressed = true;
  const size_t extents = f.extents().size();
  ASSIGN_OR_RETURN(std::vector<uint64_t> codecs, f.GetArrayUInt(kCodecKey));
  ASSIGN_OR_RETURN(t.raw_bytes, f.GetArrayUInt(kRawKey));
  ASSIGN_OR_RETURN(t.stored_bytes, f.GetArrayUInt(kStoredKey));
  if (codecs.size() != extents || t.raw_bytes.size() != extents ||
      t.stored_bytes.size() != extents) {
    return Errorf("%s: compression arrays describe %zu/%zu/%zu extents, the file has %zu",
                  f.path().c_str(), codecs.size(), t.raw_bytes.size(), t.stored_bytes.size(),
                  extents);
  }
  for (size_t e = 0; e < extents; ++e) {
    if (codecs[e] > kCodecZstdPlanes) {
      return Errorf("%s: extent %zu has unknown codec %llu", f.path().c_str(), e,
                    (unsigned long long)codecs[e]);
    }
    const uint64_t size = f.extents()[e].size;
    const bool stored = codecs[e] == kCodecStored;
    if ((stored && t.raw_bytes[e] != size) || (!stored && t.stored_bytes[e] > size) ||
        t.raw_bytes[e] > (uint64_t(1) << 40) ||
        (codecs[e] == kCodecZstdPlanes && t.raw_bytes[e] % 2)) {
      return Errorf("%s: extent %zu: %llu bytes as stored, %llu stored, %llu raw: inconsistent",
                    f.path().c_str(), e, (unsigned long long)size,
                    (unsigned long long)t.stored_bytes[e], (unsigned long long)t.raw_bytes[e]);
    }
    t.codecs.push_back(int(codecs[e]));
  }
  const GgufValue* names = f.Find(kNameKey);
  if (!names || names->type != GgufValueType::kArray ||
      names->elem_type != GgufValueType::kString) {
    return Errorf("%s: %s is missing or not an array of strings", f.path().c_str(), kNameKey);
  }
  const auto& name = std::get<std::vector<std::string>>(names->v);
  ASSIGN_OR_RETURN(std::vector<uint64_t> type, f.GetArrayUInt(kTypeKey));
  ASSIGN_OR_RETURN(std::vector<uint64_t> ndim, f.GetArrayUInt(kNdimKey));
  ASSIGN_OR_RETURN(std::vector<uint64_t> dims, f.GetArrayUInt(kDimsKey));
  ASSIGN_OR_RETURN(std::vector<uint64_t> extent, f.GetArrayUInt(kExtentKey));
  ASSIGN_OR_RETURN(std::vector<uint64_t> offset, f.GetArrayUInt(kOffsetKey));
  const size_t n = name.size();
  if (type.size() != n || ndim.size() != n || extent.size() != n || offset.size() != n) {
    return Errorf("%s: the glmstream.zstd.tensor.* arrays differ in length", f.path().c_str());
  }
  size_t d = 0;
  for (size_t i = 0; i < n; ++i) {
    ModelLayout::Tensor x;
    if (!IsKnownGgmlType(uint32_t(type[i])) || ndim[i] < 1 || ndim[i] > 4 ||
        d + ndim[i] > dims.size() || extent[i] >= extents) {
      return Errorf("%s: compressed tensor #%zu ('%.64s') has an invalid type, rank or extent",
                    f.path().c_str(), i, name[i].c_str());
    }
    x.type = GgmlType(type[i]);
    x.extent = int(extent[i]);
    x.offset = offset[i];
    x.bytes = GgmlTypeSize(x.type);
    for (uint64_t k = 0; k < ndim[i]; ++k, ++d) {
      if (dims[d] == 0 || dims[d] > (uint64_t(1) << 40) ||
          __builtin_mul_overflow(x.bytes, dims[d], &x.bytes)) {
        return Errorf("%s: compressed tensor '%.64s' has an invalid shape", f.path().c_str(),
                      name[i].c_str());
      }
      x.shape.push_back(int64_t(dims[d]));
    }
    if (x.offset > t.raw_bytes[x.extent] || x.bytes > t.raw_bytes[x.extent] - x.offset) {
      return Errorf(
          "%s: compressed tensor '%.64s' [%llu, +%llu) lies outside its extent %d of "
          "%llu bytes",
          f.path().c_str(), name[i].c_str(), (unsigned long long)x.offset,
          (unsigned long long)x.bytes, x.extent, (unsigned long long)t.raw_bytes[x.extent]);
    }
    t.tensors.emplace_back(name[i], std::move(x));
  }
  if (d != dims.size())
    return Errorf("%s: %s has %zu extra dims", f.path().c_str(), kDimsKey, dims.size() - d);
  return t;
}

Status DecodeExtent(int codec, const void* src, uint64_t src_bytes, void* dst, uint64_t dst_bytes) {
  if (codec == kCodecStored) {
    if (src_bytes < dst_bytes)
      return Errorf("stored extent of %llu bytes, %llu expected", (unsigned long long)src_bytes,
                    (unsigned long long)dst_bytes);
    std::memcpy(dst, src, dst_bytes);
    return Status::Ok();
  }
  if (codec != kCodecZstd && codec != kCodecZstdPlanes) return Errorf("unknown codec %d", codec);
  std::unique_ptr<uint8_t[]> planes;
  void* out = dst;
  if (codec == kCodecZstdPlanes) {
    planes.reset(new uint8_t[dst_bytes]);
    out = planes.get();
  }
  const size_t frame = ZSTD_findFrameCompressedSize(src, src_bytes);
  RETURN_IF_ERROR(ZstdStatus(frame, "frame"));
  const size_t got = ZSTD_decompress(out, dst_bytes, src, frame);
  RETURN_IF_ERROR(ZstdStatus(got, "decompress"));
  if (got != dst_bytes) {
    return Errorf("zstd frame decodes to %zu bytes, %llu expected", got,
                  (unsigned long long)dst_bytes);
  }
  if (codec == kCodecZstdPlanes) {
    const uint8_t* lo = planes.get();
    const uint8_t* hi = lo + dst_bytes / 2;
    uint8_t* d = static_cast<uint8_t*>(dst);
    for (uint64_t i = 0; i < dst_bytes / 2; ++i) {
      d[2 * i] = lo[i];
      d[2 * i + 1] = hi[i];
    }
  }
  return Status::Ok();
}

Status CompressBuffer(int codec, int level, const void* src, size_t n, std::string* out) {
  std::string planes;
  if (codec == kCodecZstdPlanes) {
    if (n % 2) return Errorf("byte planes need an even size, got %zu", n);
    planes.resize(n);
    ExtractPlane(static_cast<const uint8_t*>(src), n, 0, reinterpret_cast<uint8_t*>(planes.data()));
    ExtractPlane(static_cast<const uint8_t*>(src), n, 1,
                 reinterpret_cast<uint8_t*>(planes.data()) + n / 2);
    src = planes.data();
  }
  out->resize(ZSTD_compressBound(n));
  const size_t z = ZSTD_compress(out->data(), out->size(), src, n, level);
  RETURN_IF_ERROR(ZstdStatus(z, "compress"));
  out->resize(z);
  return Status::Ok();
}

StatusOr<CompressStats> CompressModelFile(const std::string& in_path, const std::string& out_path,
                                          const CompressOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> in, GgufFile::Open(in_path));
  ASSIGN_OR_RETURN(ModelLayout lay, ReadModelLayout(*in));
  if (lay.compressed) return Errorf("%s is already compressed", in_path.c_str());
  const int in_fd = in->fd();
  const size_t E = lay.extents.size();

  // Which extents hold only f16 tensors (codec 2 candidates).
  std::vector<bool> all_f16(E, true);
  for (const auto& [name, t] : lay.tensors)
    all_f16[t.extent] = all_f16[t.extent] && t.type == GgmlType::kF16;

  // Pass 1: compress every extent into the spool, remembering where each frame is.
  const std::string spool_path = out_path + ".spool";
  const int spool = ::open(spool_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (spool < 0) return ErrnoError("create", spool_path, errno);
  struct SpoolGuard {
    int fd;
    std::string path;
    ~SpoolGuard() {
      ::close(fd);
      ::unlink(path.c_str());
    }
  } guard{spool, spool_path};
  std::unique_ptr<ZSTD_CCtx, CctxDeleter> cctx(ZSTD_createCCtx());
  if (!cctx) return Errorf("zstd: cannot create a compression context (out of memory)");
  CompressStats stats;
  std::vector<int> codec(E, kCodecStored);
  std::vector<uint64_t> spool_at(E, 0), stored(E, 0);
  uint64_t spool_end = 0, raw_total = 0, raw_done = 0;
  for (const auto& x : lay.extents) raw_total += x.raw_bytes;
  std::vector<uint8_t> in_buf(kChunk), plane_buf(kChunk / 2), out_buf(ZSTD_CStreamOutSize());
  for (size_t e = 0; e < E; ++e) {
    const ModelLayout::Extent& x = lay.extents[e];
    const int want = opts.planes && all_f16[e] ? kCodecZstdPlanes : kCodecZstd;
    RETURN_IF_ERROR(
        ZstdStatus(ZSTD_CCtx_reset(cctx.get(), ZSTD_reset_session_and_parameters), "reset"));
    RETURN_IF_ERROR(ZstdStatus(
        ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, opts.level), "level"));
    if (opts.threads > 0) {
      RETURN_IF_ERROR(ZstdStatus(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_nbWorkers, opts.threads),
                                 "workers"));
    }
    RETURN_IF_ERROR(ZstdStatus(ZSTD_CCtx_setPledgedSrcSize(cctx.get(), x.raw_bytes), "pledge"));
    uint64_t frame = 0;
    auto drain = [&](ZSTD_inBuffer* ib, ZSTD_EndDirective mode) -> Status {
      for (;;) {
        ZSTD_outBuffer ob{out_buf.data(), out_buf.size(), 0};
        const size_t left = ZSTD_compressStream2(cctx.get(), &ob, ib, mode);
        RETURN_IF_ERROR(ZstdStatus(left, "compress"));
        RETURN_IF_ERROR(PWriteAll(spool, out_buf.data(), ob.pos, spool_end + frame, spool_path));
        frame += ob.pos;
        if (mode == ZSTD_e_end ? left == 0 : ib->pos == ib->size) return Status::Ok();
      }
    };
    const int planes = want == kCodecZstdPlanes ? 2 : 1;
    for (int p = 0; p < planes; ++p) {
      for (uint64_t off = 0; off < x.raw_bytes; off += kChunk) {
        const size_t n = size_t(std::min<uint64_t>(kChunk, x.raw_bytes - off));
        RETURN_IF_ERROR(PReadAll(in_fd, in_buf.data(), n, x.file_offset + off, in_path));
        ZSTD_inBuffer ib{in_buf.data(), n, 0};
        if (planes == 2) {
          ExtractPlane(in_buf.data(), n, p, plane_buf.data());
          ib = ZSTD_inBuffer{plane_buf.data(), n / 2, 0};
        }
        RETURN_IF_ERROR(drain(&ib, ZSTD_e_continue));
        raw_done += n / uint64_t(planes);
        if (opts.progress) opts.progress(raw_done, raw_total);
      }
    }
    ZSTD_inBuffer none{nullptr, 0, 0};
    RETURN_IF_ERROR(drain(&none, ZSTD_e_end));
    CompressStats::Kind& kind = all_f16[e] ? stats.f16 : stats.quantized;
    kind.raw += x.raw_bytes;
    ++kind.extents;
    if (frame < x.raw_bytes) {  // only when it gets smaller
      codec[e] = want;
      spool_at[e] = spool_end;
      stored[e] = frame;
      spool_end += frame;
      kind.stored += frame;
      ++kind.compressed;
    } else {
      kind.stored += x.raw_bytes;
    }
  }

  // Pass 2: the GGUF file: metadata of the input plus the compression table, then stored extents'
  // tensors as they were and compressed extents as blobs.
  GgufWriter w(out_path, in->alignment());
  for (const auto& [key, value] : in->metadata()) {
    if (key == "general.alignment" || key.rfind("glmstream.extent.", 0) == 0) continue;
    w.Set(key, value);
  }
  w.SetString(kCompressionKey, "zstd");
  std::vector<uint64_t> codec64(codec.begin(), codec.end()), raw;
  for (const auto& x : lay.extents) raw.push_back(x.raw_bytes);
  w.SetArrayU64(kCodecKey, codec64);
  w.SetArrayU64(kRawKey, raw);
  w.SetArrayU64(kStoredKey, stored);
  std::vector<std::string> names;
  std::vector<uint64_t> types, ndims, dims, extents, offsets;
  for (const auto& [name, t] : lay.tensors) {
    names.push_back(name);
    types.push_back(uint64_t(t.type));
    ndims.push_back(t.shape.size());
    for (int64_t d : t.shape) dims.push_back(uint64_t(d));
    extents.push_back(uint64_t(t.extent));
    offsets.push_back(t.offset);
  }
  w.SetArrayString(kNameKey, names);
  w.SetArrayU64(kTypeKey, types);
  w.SetArrayU64(kNdimKey, ndims);
  w.SetArrayU64(kDimsKey, dims);
  w.SetArrayU64(kExtentKey, extents);
  w.SetArrayU64(kOffsetKey, offsets);
  for (size_t e = 0; e < E; ++e) {
    if (codec[e] != kCodecStored) {
      w.AddTensor(StrFormat("zstd.extent.%zu", e), GgmlType::kI8, {int64_t(stored[e])}, int(e));
      continue;
    }
    for (const auto& [name, t] : lay.tensors) {
      if (size_t(t.extent) == e) w.AddTensor(name, t.type, t.shape, int(e));
    }
  }
  RETURN_IF_ERROR(w.Begin());
  auto copy = [&](int fd, const std::string& path, uint64_t off, uint64_t n) -> Status {
    for (uint64_t done = 0; done < n;) {
      const size_t k = size_t(std::min<uint64_t>(kChunk, n - done));
      RETURN_IF_ERROR(PReadAll(fd, in_buf.data(), k, off + done, path));
      RETURN_IF_ERROR(w.WriteTensorData(in_buf.data(), k));
      done += k;
    }
    return Status::Ok();
  };
  for (size_t e = 0; e < E; ++e) {
    if (codec[e] != kCodecStored) {
      RETURN_IF_ERROR(copy(spool, spool_path, spool_at[e], stored[e]));
      continue;
    }
    for (const auto& [name, t] : lay.tensors) {
      if (size_t(t.extent) == e) {
        RETURN_IF_ERROR(copy(in_fd, in_path, lay.extents[e].file_offset + t.offset, t.bytes));
      }
    }
  }
  RETURN_IF_ERROR(w.Finish());
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace glm
