// Quantized weight formats (spec §3) and their dequantization reference, shared by the
// converter, the tests and every kernel. A quantized [N, K] weight is a TensorView with
//   dtype kI8: data int8 [N, K]
//   dtype kI4: data int8 [N, K/2], two 4-bit two's-complement values per byte, element 2j in
//              the HIGH nibble and 2j+1 in the low nibble (cuda/quantization.cu int4WeightCompression)
// and fp16 scales:
//   group_size 0 (GLM-130B's "row" scheme): scales [N], one per output row
//   group_size G (group-wise):              scales [N, K/G], one per G consecutive inputs
// Dequantization is the reference's: w = fp16(fp16(q) * scale) (an fp16 multiply).
#pragma once

#include <cstdint>

#include "runtime/fp16.h"
#include "runtime/tensor.h"

namespace glm {

// The value of element k of a packed int4 row.
inline int8_t Int4At(const int8_t* packed_row, int64_t k) {
  const int8_t byte = packed_row[k >> 1];
  return (k & 1) ? int8_t(int8_t(byte << 4) >> 4)  // low nibble, sign-extended
                 : int8_t(byte >> 4);              // high nibble (arithmetic shift)
}

// Bytes of one row of a quantized [N, K] weight's data.
inline int64_t QuantRowBytes(DType dtype, int64_t K) { return dtype == DType::kI4 ? K / 2 : K; }

// out[k] = float(fp16(q[row, k] · scale)) for k < K: the reference dequantization (spec §3),
// for kF16 weights a plain conversion.
void DequantizeRow(const TensorView& w, int64_t row, float* out);

}  // namespace glm
