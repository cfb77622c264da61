// .npy reading and writing (format description: numpy.lib.format).
#include "runtime/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace glm {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { if (f) std::fclose(f); }
};
using File = std::unique_ptr<FILE, FileCloser>;

const char* Descr(DType t) {
  switch (t) {
    case DType::kF16: return "<f2";
    case DType::kF32: return "<f4";
    case DType::kI32: return "<i4";
    case DType::kI64: return "<i8";
    default: return nullptr;
  }
}

}  // namespace

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) return ErrnoError("open", path, errno);
  char magic[8];
  if (std::fread(magic, 1, 8, f.get()) != 8 || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    return Errorf("%s: not a .npy file (bad magic)", path.c_str());
  }
  uint32_t hlen = 0;
  if (magic[6] == 1) {
    uint8_t b[2];
    if (std::fread(b, 1, 2, f.get()) != 2) return Errorf("%s: truncated header", path.c_str());
    hlen = b[0] | (b[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    uint8_t b[4];
    if (std::fread(b, 1, 4, f.get()) != 4) return Errorf("%s: truncated header", path.c_str());
    hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
  } else {
    return Errorf("%s: unsupported .npy version %d", path.c_str(), magic[6]);
  }
  if (hlen > (1u << 20)) return Errorf("%s: header too large", path.c_str());
  std::string header(hlen, '\0');
  if (std::fread(header.data(), 1, hlen, f.get()) != hlen) {
    return Errorf("%s: truncated header", path.c_str());
  }
  NpyArray arr;
  auto field = [&](const char* key) -> std::string {
    size_t p = header.find(key);
    if (p == std::string::npos) return "";
    p = header.find(':', p);
    return p == std::string::npos ? "" : header.substr(p + 1);
  };
  std::string descr = field("'descr'");
  if (descr.find("<f2") != std::string::npos) arr.dtype = DType::kF16;
  else if (descr.find("<f4") != std::string::npos) arr.dtype = DType::kF32;
  else if (descr.find("<i4") != std::string::npos) arr.dtype = DType::kI32;
  else if (descr.find("<i8") != std::string::npos) arr.dtype = DType::kI64;
  else return Errorf("%s: unsupported dtype in header '%s'", path.c_str(), header.c_str());
  if (field("'fortran_order'").find("False") == std::string::npos) {
    return Errorf("%s: only C-order arrays are supported", path.c_str());
  }
  std::string shape = field("'shape'");
  size_t open = shape.find('('), close = shape.find(')');
  if (open == std::string::npos || close == std::string::npos) {
    return Errorf("%s: bad shape in header", path.c_str());
  }
  std::string dims = shape.substr(open + 1, close - open - 1);
  for (size_t p = 0; p < dims.size();) {
    while (p < dims.size() && (dims[p] == ' ' || dims[p] == ',')) ++p;
    if (p >= dims.size()) break;
    char* end = nullptr;
    long long d = std::strtoll(dims.c_str() + p, &end, 10);
    if (end == dims.c_str() + p || d < 0) return Errorf("%s: bad shape '%s'", path.c_str(), dims.c_str());
    arr.shape.push_back(d);
    p = end - dims.c_str();
  }
  const size_t bytes = DTypeBytes(arr.dtype, arr.numel());
  arr.data.resize(bytes);
  if (std::fread(arr.data.data(), 1, bytes, f.get()) != bytes) {
    return Errorf("%s: truncated data (expected %zu bytes)", path.c_str(), bytes);
  }
  return arr;
}

Status WriteNpy(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
                const void* data) {
  const char* descr = Descr(dtype);
  if (!descr) return Errorf("WriteNpy: unsupported dtype %s", DTypeName(dtype));
  std::string dims;
  int64_t n = 1;
  for (int64_t d : shape) {
    dims += std::to_string(d) + ",";
    n *= d;
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = StrFormat("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                                 descr, dims.c_str());
  // Pad so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  const std::string tmp = path + ".partial";
  File f(std::fopen(tmp.c_str(), "wb"));
  if (!f) return ErrnoError("create", tmp, errno);
  const uint16_t hlen = uint16_t(header.size());
  const char prefix[8] = {'\x93', 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const size_t bytes = DTypeBytes(dtype, n);
  bool ok = std::fwrite(prefix, 1, 8, f.get()) == 8 && std::fwrite(&hlen, 1, 2, f.get()) == 2 &&
            std::fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
            std::fwrite(data, 1, bytes, f.get()) == bytes;
  ok = (std::fclose(f.release()) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    return ErrnoError("write", tmp, errno);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoError("rename to", path, errno);
  return Status::Ok();
}

}  // namespace glm
