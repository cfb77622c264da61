// Minimal .npy (NumPy format 1.0/2.0) reader and writer for little-endian f16, f32, i32 and i64
// arrays in C order: the golden fixtures and the glm-logits output use it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/tensor.h"

namespace glm {

struct NpyArray {
  DType dtype = DType::kF32;  // kF16, kF32, kI32 or kI64
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // C order

  int64_t numel() const;
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }
};

StatusOr<NpyArray> ReadNpy(const std::string& path);
// Writes path.partial, then renames to path.
Status WriteNpy(const std::string& path, DType dtype, const std::vector<int64_t>& shape,
                const void* data);

}  // namespace glm
