// DequantizeRow: the reference dequantization every kernel is tested against (spec §3).
#include "quant/format.h"

namespace glm {

void DequantizeRow(const TensorView& w, int64_t row, float* out) {
  const int64_t K = w.cols();
  switch (w.dtype) {
    case DType::kF16: {
      const Half* r = w.f16() + row * K;
      for (int64_t k = 0; k < K; ++k) out[k] = HalfToFloat(r[k]);
      return;
    }
    case DType::kI8:
    case DType::kI4: {
      GLM_CHECK_MSG(w.scales != nullptr, "quantized weight without scales");
      const int8_t* r = static_cast<const int8_t*>(w.data) + row * QuantRowBytes(w.dtype, K);
      const int64_t G = w.group_size > 0 ? w.group_size : K;
      const Half* s = w.scales + row * (K / G);
      for (int64_t k = 0; k < K; ++k) {
        const int8_t q = w.dtype == DType::kI8 ? r[k] : Int4At(r, k);
        // fp16(q) is exact for |q| <= 127; the product is rounded to fp16 like __hmul.
        out[k] = RoundHalf(float(q) * HalfToFloat(s[k / G]));
      }
      return;
    }
    default:
      GLM_CHECK_MSG(false, "DequantizeRow: %s weights are not a weight format", DTypeName(w.dtype));
  }
}

}  // namespace glm
