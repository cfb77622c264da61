// Element types and the non-owning TensorView. Views never own memory: each declaration says
// which owner must outlive it (CONVENTIONS.md, "views and owners are different types").
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/fp16.h"

namespace glm {

enum class DType : uint8_t {
  kF32 = 0,
  kF16 = 1,
  kBF16 = 2,
  kI8 = 3,    // int8 quantized weights (one per byte)
  kI4 = 4,    // int4 quantized weights, two per byte (see quant/)
  kI32 = 5,
  kI64 = 6,
  kU8 = 7,
};

const char* DTypeName(DType t);
// Bytes of `n` elements (rounds up for packed int4).
size_t DTypeBytes(DType t, int64_t n);
// "[36864, 12288]": a shape (or strides) as the error messages and tables print it.
std::string ShapeString(const std::vector<int64_t>& shape);

// A 1-D or 2-D row-major view. shape[1] is 1 for vectors (ndim 1).
struct TensorView {
  DType dtype = DType::kF16;
  int ndim = 0;
  int64_t shape[2] = {0, 0};
  const void* data = nullptr;
  const Half* scales = nullptr;  // quantized weights only: fp16 scales (see quant/)
  int group_size = 0;            // quantized weights: 0 = per output row

  int64_t rows() const { return shape[0]; }
  int64_t cols() const { return ndim == 2 ? shape[1] : 1; }
  int64_t numel() const { return rows() * cols(); }
  size_t bytes() const { return DTypeBytes(dtype, numel()); }
  const Half* f16() const {
    GLM_CHECK_MSG(dtype == DType::kF16, "tensor is %s, not f16", DTypeName(dtype));
    return static_cast<const Half*>(data);
  }
  std::string ShapeString() const;
};

}  // namespace glm
