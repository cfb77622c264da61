// DType names and sizes.
#include "runtime/tensor.h"

namespace glm {

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kI8: return "i8";
    case DType::kI4: return "i4";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
  }
  return "?";
}

size_t DTypeBytes(DType t, int64_t n) {
  switch (t) {
    case DType::kF32: case DType::kI32: return size_t(n) * 4;
    case DType::kF16: case DType::kBF16: return size_t(n) * 2;
    case DType::kI8: case DType::kU8: return size_t(n);
    case DType::kI4: return size_t(n + 1) / 2;
    case DType::kI64: return size_t(n) * 8;
  }
  return 0;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorView::ShapeString() const {
  return ndim == 2 ? StrFormat("[%lld, %lld]", (long long)shape[0], (long long)shape[1])
                   : StrFormat("[%lld]", (long long)shape[0]);
}

}  // namespace glm
