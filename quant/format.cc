// The reference quantization and dequantization (spec §3) and quantization-error statistics.
#include "quant/format.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

std::string QuantScheme::ToString() const {
  if (!quantized()) return "f16";
  return group_size > 0 ? StrFormat("int%d group %d", bits, group_size)
                        : StrFormat("int%d row", bits);
}

Status QuantScheme::CheckShape(const std::string& tensor, int64_t K) const {
  if (bits != 16 && bits != 8 && bits != 4) return Errorf("--bits %d: expected 16, 8 or 4", bits);
  if (!quantized()) return Status::Ok();
  if (group_size < 0) return Errorf("group size %d is negative", group_size);
  if (bits == 4 && K % 2 != 0) {
    return Errorf("tensor '%s' has %lld inputs per row: int4 packs two per byte and needs an even "
                  "count", tensor.c_str(), (long long)K);
  }
  if (group_size > 0 && (K % group_size != 0 || (bits == 4 && group_size % 2 != 0))) {
    return Errorf("tensor '%s' has %lld inputs per row (per tensor-parallel rank), not a multiple "
                  "of the group size %d%s", tensor.c_str(), (long long)K, group_size,
                  bits == 4 ? " (which must be even for int4)" : "");
  }
  return Status::Ok();
}

Half QuantScale(Half absmax, int bits) {
  // PyTorch's CUDA division of a tensor by a Python scalar multiplies by the fp32 reciprocal.
  const float inv = 1.0f / float(QuantMax(bits));
  return FloatToHalf(HalfToFloat(absmax) * inv);
}

int8_t QuantizeValue(Half w, Half scale, int bits) {
  const float s = HalfToFloat(scale);
  if (s == 0.0f) return 0;  // 0/0 in the reference; CUDA converts the NaN to 0
  // Half / half on CUDA: fp32 division, rounded to fp16; torch.round is half-to-even.
  const float q = std::nearbyint(RoundHalf(HalfToFloat(w) / s));
  const float m = float(QuantMax(bits));
  return int8_t(std::clamp(q, -m, m));
}

void QuantizeRows(const Half* w, int64_t N, int64_t K, const QuantScheme& scheme, int8_t* data,
                  Half* scales) {
  GLM_CHECK(scheme.quantized() && scheme.CheckShape("", K).ok());
  const int64_t G = scheme.group_size > 0 ? scheme.group_size : K;
  const int64_t groups = K / G;
  const int bits = scheme.bits;
  for (int64_t n = 0; n < N; ++n) {
    const Half* row = w + n * K;
    Half* s = scales + n * groups;
    for (int64_t g = 0; g < groups; ++g) {
      uint16_t amax = 0;  // |w| of fp16 is exact: compare magnitudes as bits (no NaN here)
      for (int64_t k = g * G; k < (g + 1) * G; ++k) amax = std::max<uint16_t>(amax, row[k].bits & 0x7fffu);
      s[g] = QuantScale(Half{amax}, bits);
    }
    if (bits == 8) {
      int8_t* out = data + n * K;
      for (int64_t k = 0; k < K; ++k) out[k] = QuantizeValue(row[k], s[k / G], bits);
    } else {
      int8_t* out = data + n * (K / 2);
      for (int64_t j = 0; j < K / 2; ++j) {
        const int8_t hi = QuantizeValue(row[2 * j], s[(2 * j) / G], bits);
        const int8_t lo = QuantizeValue(row[2 * j + 1], s[(2 * j + 1) / G], bits);
        out[j] = int8_t(uint8_t(uint8_t(hi) << 4) | uint8_t(lo & 0x0f));
      }
    }
  }
}

void QuantError::AddRow(const Half* w, const float* dq, int64_t K) {
  double s = 0, e = 0;
  for (int64_t k = 0; k < K; ++k) {
    const double x = HalfToFloat(w[k]), d = x - double(dq[k]);
    s += x * x;
    e += d * d;
    max_abs = std::max(max_abs, std::fabs(d));
  }
  const double rel = s > 0 ? std::sqrt(e / s) : 0;
  ++rows;
  max_row_rel = std::max(max_row_rel, rel);
  sum_row_rel += rel;
  signal += s;
  noise += e;
}

void QuantError::Merge(const QuantError& o) {
  rows += o.rows;
  max_row_rel = std::max(max_row_rel, o.max_row_rel);
  sum_row_rel += o.sum_row_rel;
  signal += o.signal;
  noise += o.noise;
  max_abs = std::max(max_abs, o.max_abs);
}

double QuantError::snr_db() const {
  if (noise == 0) return INFINITY;
  return 10.0 * std::log10(signal / noise);
}

void AccumulateQuantError(const Half* w, const TensorView& q, QuantError* err) {
  const int64_t K = q.cols();
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t n = 0; n < q.rows(); ++n) {
    DequantizeRow(q, n, row.data());
    err->AddRow(w + n * K, row.data(), K);
  }
}

}  // namespace glm
