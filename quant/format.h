// Quantized weight formats (spec §3) and their quantization and dequantization reference, shared
// by the converter, the tests and every kernel. A quantized [N, K] weight is a TensorView with
//   dtype kI8: data int8 [N, K]
//   dtype kI4: data int8 [N, K/2], two 4-bit two's-complement values per byte, element 2j in
//              the HIGH nibble and 2j+1 in the low nibble (cuda/quantization.cu
//              int4WeightCompression)
// and fp16 scales:
//   group_size 0 (GLM-130B's "row" scheme): scales [N], one per output row
//   group_size G (group-wise):              scales [N, K/G], one per G consecutive inputs
// Dequantization is the reference's: w = fp16(fp16(q) * scale) (an fp16 multiply).
//
// Quantization follows tools/convert_tp.py on the GPU, bit for bit (spec §3):
//   scale = fp16(float(absmax) * (1.0f / qmax))   qmax = 127 (int8) or 7 (int4); absmax of the row
//                                                 (row scheme) or of the group (group scheme)
//   q     = round_half_even(fp16(float(w) / float(scale)))
// except that int4 group scales are rounded on to 8 significant bits (QuantScaleInt4Group): the
// group scheme is this project's own, and with such scales every q·scale is an fp16 value.
// Two cases the reference leaves undefined are pinned down here:
//   * scale == 0 (an all-zero row or group, or absmax < qmax * 2^-25 so that the scale underflows
//     to zero): the reference computes 0/0 = NaN (or w/0 = inf), which CUDA's float->int
//     conversion turns into 0 (resp. garbage). We write q = 0 and keep scale = 0, so the row or
//     group dequantizes to exact zeros.
//   * |q| > qmax: possible only when the scale is a tiny fp16 subnormal (at most qmax ulps of
//     2^-24, i.e. absmax below ~1e-3 for int8 or ~3e-6 for int4) that rounded down: q saturates at
//     ±qmax (the reference's int8 cast would wrap around).
#pragma once

#include <cstdint>
#include <string>

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

// How the four linear weights of each layer are stored (spec §3, "Which layers").
struct QuantScheme {
  int bits = 16;       // 16: fp16 (not quantized); 8: int8; 4: int4
  int group_size = 0;  // 0: one scale per output row (GLM-130B's scheme); G: per G inputs

  bool quantized() const { return bits != 16; }
  DType dtype() const { return bits == 8 ? DType::kI8 : bits == 4 ? DType::kI4 : DType::kF16; }
  // Scales per row of a [N, K] weight.
  int64_t ScaleCols(int64_t K) const { return group_size > 0 ? K / group_size : 1; }
  // "f16", "int8 row", "int4 group 128".
  std::string ToString() const;
  // Checks bits and that a [N, K] weight can be stored: K even for int4, G divides K.
  Status CheckShape(const std::string& tensor, int64_t K) const;
};

// 127 for int8, 7 for int4.
inline int QuantMax(int bits) { return bits == 8 ? 127 : 7; }

// The reference's scale for a row or group with absolute maximum `absmax` (spec §3).
Half QuantScale(Half absmax, int bits);
// The int4 group scheme's scale: QuantScale rounded to an 8-bit significand (the fp16 field to a
// multiple of 8, half to even; a carry goes into the exponent, and a subnormal scale of at most 4
// ulps, 2^-22, becomes 0: its group quantizes to zeros). Every int4 q·scale is then an fp16 value,
// so dequantization rounds nothing and the AVX-512 decode builds a group's table with one multiply
// (kernels/cpu/linear_common.h ExactTableScale). A normal scale moves by at most 2^-8 of itself.
Half QuantScaleInt4Group(Half absmax);
// The reference's q for weight w and scale s (see the header comment for s == 0 and saturation).
int8_t QuantizeValue(Half w, Half scale, int bits);

// fp16(x) as a float, as RoundHalf, through the codec's fast path (exposed for its test).
float RoundHalfForTest(float x);

// Quantizes N rows of K fp16 weights: data int8 [N, K] or packed int4 [N, K/2], scales
// [N, ScaleCols(K)] fp16. The scheme must be quantized and CheckShape(K) must hold.
void QuantizeRows(const Half* w, int64_t N, int64_t K, const QuantScheme& scheme, int8_t* data,
                  Half* scales);

// Accumulates the error of dequantized weights against the originals, per tensor type:
// relative error of a row = ||w - ŵ||₂ / ||w||₂ (rows with w = 0 count as 0), SNR over all.
struct QuantError {
  int64_t rows = 0;
  double max_row_rel = 0, sum_row_rel = 0;
  double signal = 0, noise = 0;  // Σw², Σ(w - ŵ)²
  double max_abs = 0;

  void AddRow(const Half* w, const float* dequantized, int64_t K);
  void Merge(const QuantError& o);
  double mean_row_rel() const { return rows ? sum_row_rel / double(rows) : 0; }
  double snr_db() const;  // +inf when exact
};

// Adds the error of rows [0, N) of a quantized weight view against the fp16 originals.
void AccumulateQuantError(const Half* w, const TensorView& q, QuantError* err);

}  // namespace glm
