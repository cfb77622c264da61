// Optional zstd compression of a model file's extents, keeping it a valid GGUF file.
//
// A compressed extent is stored as ONE opaque GGUF tensor `zstd.extent.<i>` of type I8 and shape
// [compressed bytes], so every GGUF reader parses the file (it sees blobs instead of weights);
// an extent that does not get smaller stays as it was, with its real tensors. The real tensor
// table moves to metadata, the single source of truth for readers of compressed files:
//   glmstream.compression          "zstd"
//   glmstream.zstd.codec           array<u64> per extent: 0 stored, 1 zstd, 2 zstd of byte planes
//   glmstream.zstd.raw_size        array<u64> per extent: bytes once decoded (alignment padding
//                                  included, so decoded extents match the uncompressed layout)
//   glmstream.zstd.stored_size     array<u64> per extent: bytes of the zstd frame (0 if stored)
//   glmstream.zstd.tensor.name     array<string>   every model tensor, in file order
//   glmstream.zstd.tensor.type     array<u64>      ggml type
//   glmstream.zstd.tensor.ndim     array<u64>
//   glmstream.zstd.tensor.dims     array<u64>      all dims, outermost first, concatenated
//   glmstream.zstd.tensor.extent   array<u64>
//   glmstream.zstd.tensor.offset   array<u64>      byte offset inside the decoded extent
// glmstream.extent.* (offsets, sizes, xxh64) describe the bytes as stored, so glm-inspect
// --verify checks a compressed file without decompressing it. Codec 2 splits the extent's 16-bit
// words into a plane of low bytes followed by a plane of high bytes before zstd: fp16 exponents
// live in the high bytes, which compress much better on their own.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "offload/gguf.h"
#include "offload/model_file.h"

namespace glm {

inline constexpr char kCompressionKey[] = "glmstream.compression";

enum ExtentCodec : int { kCodecStored = 0, kCodecZstd = 1, kCodecZstdPlanes = 2 };

struct CompressedTable {
  bool compressed = false;
  std::vector<int> codecs;
  std::vector<uint64_t> raw_bytes, stored_bytes;
  std::vector<std::pair<std::string, ModelLayout::Tensor>> tensors;
};
// Reads the compression metadata of `f` (compressed = false and nothing else for plain files).
StatusOr<CompressedTable> ReadCompressedTable(const GgufFile& f);

// Decodes one extent: `src` holds its stored bytes (for zstd codecs exactly the frame, or more:
// trailing padding is ignored), `dst` receives `dst_bytes` = the raw size.
Status DecodeExtent(int codec, const void* src, uint64_t src_bytes, void* dst, uint64_t dst_bytes);

struct CompressOptions {
  int level = 3;       // zstd level (1..19)
  bool planes = true;  // codec 2 for extents holding only f16 tensors
  int threads = 0;     // zstd worker threads (0: single-threaded, deterministic)
  std::function<void(uint64_t done, uint64_t total)> progress;  // raw bytes
};
struct CompressStats {
  // Raw and stored bytes per kind of extent: "f16" (only f16 tensors) or "quantized".
  struct Kind {
    uint64_t raw = 0, stored = 0;
    int extents = 0, compressed = 0;
  };
  Kind f16, quantized;
  double seconds = 0;
};
// Writes a compressed copy of the plain model file `in_path` to `out_path` (via OUT.partial, with
// a spool file OUT.spool holding the frames meanwhile; both are removed on failure).
StatusOr<CompressStats> CompressModelFile(const std::string& in_path, const std::string& out_path,
                                          const CompressOptions& opts);

// Compresses `n` bytes with `codec` at `level` into `out` (for measurements and tests).
Status CompressBuffer(int codec, int level, const void* src, size_t n, std::string* out);

}  // namespace glm
