// GGUF v3 container: writer and reader (format: ggml's docs/gguf.md). Standard readers parse our
// files; on top of the standard we group tensors into checksummed *extents* (contiguous,
// alignment-padded byte ranges of the data section, e.g. one per layer) whose offsets, sizes and
// xxHash64 digests live in the metadata:
//   glmstream.extent.offset  array<u64>  byte offset of each extent, relative to the data section
//   glmstream.extent.size    array<u64>  bytes of each extent (a multiple of the alignment)
//   glmstream.extent.xxh64   array<u64>  XXH64(seed 0) of the extent's bytes, padding included
// The writer streams tensor data in declaration order (bounded memory), writes FILE.partial,
// patches the checksums into the header at the end, fsyncs, and renames to FILE.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "runtime/check.h"

namespace glm {

// GGUF metadata value types (gguf.md).
// clang-format off
enum class GgufValueType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
// clang-format on

// ggml tensor types used by glmstream (values from ggml.h).
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kI8 = 24, kI32 = 26, kBF16 = 30 };
const char* GgmlTypeName(GgmlType t);
// True for the type ids above (a file may carry others, which glmstream does not read).
bool IsKnownGgmlType(uint32_t t);
// Bytes per element; every type above has a block size of one element.
size_t GgmlTypeSize(GgmlType t);
// "u8", "i32", "f32", "bool", "string", "array", ...; nullptr for an id outside the enum.
const char* GgufValueTypeName(GgufValueType t);
// Bytes of the well-formed UTF-8 sequence at s[i] (1..4), or 0 if there is none: metadata
// strings come from files, and printers must not pass broken or control sequences through.
size_t Utf8SequenceLength(const std::string& s, size_t i);

// A metadata value: scalars are held widened; arrays keep their element type.
struct GgufValue {
  GgufValueType type = GgufValueType::kU32;
  GgufValueType elem_type = GgufValueType::kU32;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string, std::vector<uint64_t>,
               std::vector<int64_t>, std::vector<double>, std::vector<std::string>>
      v;
  std::string ToString(size_t max_elems = 8) const;  // for glm-inspect
  std::string TypeName() const;                      // "u32", "array<string>", ...
  size_t ArraySize() const;                          // elements of an array; 0 for scalars
};

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::kF16;
  std::vector<int64_t> shape;  // row-major (outermost first); the file stores ne = reversed
  uint64_t offset = 0;         // relative to the data section
  uint64_t bytes = 0;
  int extent = -1;             // index of the extent holding it (-1: none)
};

struct GgufExtent {
  uint64_t offset = 0;  // relative to the data section
  uint64_t size = 0;
  uint64_t xxh64 = 0;
};

class GgufWriter {
 public:
  // alignment: general.alignment (a power of two; glmstream uses 4096 for O_DIRECT).
  explicit GgufWriter(std::string path, uint32_t alignment = 4096);
  ~GgufWriter();  // removes FILE.partial unless Finish() succeeded
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, in insertion order. general.alignment is added automatically.
  void SetU32(const std::string& key, uint32_t v);
  void SetI32(const std::string& key, int32_t v);
  void SetU64(const std::string& key, uint64_t v);
  void SetF32(const std::string& key, float v);
  void SetBool(const std::string& key, bool v);
  void SetString(const std::string& key, const std::string& v);
  void SetArrayU64(const std::string& key, const std::vector<uint64_t>& v);
  void SetArrayI32(const std::string& key, const std::vector<int32_t>& v);
  void SetArrayString(const std::string& key, const std::vector<std::string>& v);
  // Any value: the variant alternative must match `type` (and `elem_type` for arrays), e.g.
  // u8/u16/u32/u64 and bool arrays hold uint64_t, floats hold double. Nested arrays are refused.
  // Setting a key again replaces its value and keeps its position.
  void Set(const std::string& key, GgufValue v);

  // Declares a tensor; tensors are laid out in declaration order, each at an aligned offset.
  // `extent` groups tensors: extent ids must be 0,1,2,... and non-decreasing in declaration
  // order. Each extent starts and ends on the alignment.
  void AddTensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                 int extent);

  // Opens FILE.partial and writes header, metadata and tensor infos (checksums zero for now).
  Status Begin();
  // Appends bytes of the current tensor (declaration order). A tensor may be written in several
  // calls; once its byte count is reached the writer moves on to the next one.
  Status WriteTensorData(const void* data, size_t bytes);
  // Checks every tensor was written, pads, patches the extent checksums, fsyncs, renames.
  Status Finish();

  const std::string& path() const { return path_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

class GgufFile {
 public:
  // Parses header, metadata and tensor infos, validating every count, length, offset and type
  // against the file size (a corrupt or hostile file yields a Status, never a crash or a huge
  // allocation). Does not read tensor data.
  static StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  ~GgufFile();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute file offset of tensor data
  uint64_t file_size() const { return file_size_; }
  int fd() const { return fd_; }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* Find(const std::string& key) const;
  // Typed getters: an error names the key and the expected vs actual type.
  StatusOr<uint64_t> GetUInt(const std::string& key) const;   // any unsigned/signed int >= 0
  StatusOr<int64_t> GetInt(const std::string& key) const;
  StatusOr<double> GetFloat(const std::string& key) const;
  StatusOr<std::string> GetString(const std::string& key) const;
  StatusOr<std::vector<uint64_t>> GetArrayUInt(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(const std::string& name) const;
  const std::vector<GgufExtent>& extents() const { return extents_; }

  // Reads extent i and compares its XXH64 with the stored one (error names extent, offset).
  Status VerifyExtent(int i) const;
  // Verifies every extent, going on past failures; the error lists every failing extent.
  // `progress(done_bytes, total_bytes)` is called after every chunk read.
  Status VerifyAll(const std::function<void(uint64_t, uint64_t)>& progress = nullptr) const;
  // Indices of the tensors that lie in extent i (declaration order).
  std::vector<int> TensorsInExtent(int i) const;

 private:
  GgufFile() = default;
  Status Parse();
  Status ParseExtents();
  Status VerifyExtentImpl(int i, const std::function<void(uint64_t)>& on_chunk) const;
  std::string path_;
  int fd_ = -1;
  uint32_t version_ = 0, alignment_ = 32;
  uint64_t data_offset_ = 0, file_size_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
  std::vector<GgufExtent> extents_;
};

}  // namespace glm
