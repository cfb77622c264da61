// The reference quantization and dequantization (spec §3) and quantization-error statistics.
#include "quant/format.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace glm {

namespace {

// Every fp16 value as a float (256 KiB), for the per-element conversions of the codec.
const float* HalfFloats() {
  static const float* table = [] {
    float* t = new float[65536];
    for (uint32_t i = 0; i < 65536; ++i) t[i] = HalfToFloat(Half{uint16_t(i)});
    return t;
  }();
  return table;
}

// RoundHalf(x), with a branch-free path for results in fp16's normal range: round the fp32
// mantissa to fp16's 10 bits, to nearest even, in place (a carry into the exponent is right).
inline float FastRoundHalf(float x) {
  const uint32_t u = FloatBits(x), a = u & 0x7fffffffu;
  if (a >= 0x38800000u && a < 0x477ff000u) {  // [2^-14, 65520): normal, no overflow
    return BitsFloat((u & 0x80000000u) | ((a + 0x0fffu + ((a >> 13) & 1u)) & ~0x1fffu));
  }
  return RoundHalf(x);  // zero, subnormal, overflow, NaN: the exact general conversion
}

// Round to the nearest integer, ties to even, for |x| < 2^22 (any fp16 value): adding 1.5·2^23
// leaves no fractional bits, and the FPU rounds that addition to nearest even.
inline float RintSmall(float x) { return (x + 12582912.0f) - 12582912.0f; }

}  // namespace

void DequantizeRow(const TensorView& w, int64_t row, float* out) {
  const int64_t K = w.cols();
  const float* h2f = HalfFloats();
  switch (w.dtype) {
    case DType::kF16: {
      const Half* r = w.f16() + row * K;
      for (int64_t k = 0; k < K; ++k) out[k] = h2f[r[k].bits];
      return;
    }
    case DType::kI8:
    case DType::kI4: {
      GLM_CHECK_MSG(w.scales != nullptr, "quantized weight without scales");
      const int8_t* r = static_cast<const int8_t*>(w.data) + row * QuantRowBytes(w.dtype, K);
      const int64_t G = w.group_size > 0 ? w.group_size : K;
      const Half* s = w.scales + row * (K / G);
      for (int64_t g = 0; g < K / G; ++g) {
        const float sf = h2f[s[g].bits];
        // fp16(q) is exact for |q| <= 127; the product is rounded to fp16 like __hmul.
        if (w.dtype == DType::kI8) {
          for (int64_t k = g * G; k < (g + 1) * G; ++k) out[k] = FastRoundHalf(float(r[k]) * sf);
        } else {
          for (int64_t k = g * G; k < (g + 1) * G; ++k)
            out[k] = FastRoundHalf(float(Int4At(r, k)) * sf);
        }
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
    return Errorf(
        "tensor '%s' has %lld inputs per row: int4 packs two per byte and needs an even "
        "count",
        tensor.c_str(), (long long)K);
  }
  if (group_size > 0 && (K % group_size != 0 || (bits == 4 && group_size % 2 != 0))) {
    return Errorf(
        "tensor '%s' has %lld inputs per row (per tensor-parallel rank), not a multiple "
        "of the group size %d%s",
        tensor.c_str(), (long long)K, group_size,
        bits == 4 && group_size % 2 ? " (which must be even for int4)" : "");
  }
  return Status::Ok();
}

Half QuantScale(Half absmax, int bits) {
  // PyTorch's CUDA division of a tensor by a Python scalar multiplies by the fp32 reciprocal.
  const float inv = 1.0f / float(QuantMax(bits));
  return FloatToHalf(HalfToFloat(absmax) * inv);
}

Half QuantScaleInt4Group(Half absmax) {
  const uint16_t b = QuantScale(absmax, 4).bits;  // absmax >= 0: no sign bit
  return Half{uint16_t((b + 3 + ((b >> 3) & 1)) & ~7u)};
}

int8_t QuantizeValue(Half w, Half scale, int bits) {
  const float* h2f = HalfFloats();
  const float s = h2f[scale.bits];
  if (s == 0.0f) return 0;  // 0/0 in the reference; CUDA converts the NaN to 0
  // Half / half on CUDA: fp32 division, rounded to fp16; torch.round is half-to-even.
  const float q = RintSmall(FastRoundHalf(h2f[w.bits] / s));
  const float m = float(QuantMax(bits));
  return int8_t(std::clamp(q, -m, m));
}

float RoundHalfForTest(float x) { return FastRoundHalf(x); }

namespace {

// QuantizeValue for a run of weights sharing the scale s != 0, written to be vectorized: the
// quotient's fp16 rounding is the bit rounding of FastRoundHalf, and quotients below 2^-14 (whose
// fp16 value is below 0.5) give 0 directly; quotients never reach fp16 overflow (|w| <= absmax
// and s = fp16(absmax / qmax), or that rounded to 8 bits, so |w / s| < 2 qmax).
void QuantizeRun(const Half* w, int64_t n, float s, float qmax, int8_t* q) {
  const float* h2f = HalfFloats();
  for (int64_t k = 0; k < n; ++k) {
    const float x = h2f[w[k].bits] / s;
    const uint32_t u = FloatBits(x), a = u & 0x7fffffffu;
    const uint32_t r = (a + 0x0fffu + ((a >> 13) & 1u)) & ~0x1fffu;
    const float h = a < 0x38800000u ? 0.0f : BitsFloat((u & 0x80000000u) | r);
    q[k] = int8_t(std::clamp(RintSmall(h), -qmax, qmax));
  }
}

}  // namespace

void QuantizeRows(const Half* w, int64_t N, int64_t K, const QuantScheme& scheme, int8_t* data,
                  Half* scales) {
  GLM_CHECK(scheme.quantized() && scheme.CheckShape("", K).ok());
  const int64_t G = scheme.group_size > 0 ? scheme.group_size : K;
  const int64_t groups = K / G;
  const int bits = scheme.bits;
  const float qmax = float(QuantMax(bits));
  std::vector<int8_t> q(bits == 4 ? static_cast<size_t>(K) : 0);
  for (int64_t n = 0; n < N; ++n) {
    const Half* row = w + n * K;
    Half* s = scales + n * groups;
    int8_t* out = bits == 8 ? data + n * K : q.data();
    for (int64_t g = 0; g < groups; ++g) {
      uint16_t amax = 0;  // |w| of fp16 is exact: compare magnitudes as bits (no NaN here)
      for (int64_t k = g * G; k < (g + 1) * G; ++k)
        amax = std::max<uint16_t>(amax, row[k].bits & 0x7fffu);
      s[g] = bits == 4 && scheme.group_size > 0 ? QuantScaleInt4Group(Half{amax})
                                                : QuantScale(Half{amax}, bits);
      const float sf = HalfToFloat(s[g]);
      if (sf == 0.0f) {  // 0/0 in the reference; CUDA converts the NaN to 0
        std::fill(out + g * G, out + (g + 1) * G, int8_t{0});
      } else {
        QuantizeRun(row + g * G, G, sf, qmax, out + g * G);
      }
    }
    if (bits == 4) {
      int8_t* packed = data + n * (K / 2);
      for (int64_t j = 0; j < K / 2; ++j) {
        packed[j] = int8_t(uint8_t(uint8_t(q[2 * j]) << 4) | uint8_t(q[2 * j + 1] & 0x0f));
      }
    }
  }
}

void QuantError::AddRow(const Half* w, const float* dq, int64_t K) {
  // Eight float lanes per row (vectorizable), summed in double per row.
  const float* h2f = HalfFloats();
  float s8[8] = {}, e8[8] = {}, m8[8] = {};
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    for (int j = 0; j < 8; ++j) {
      const float x = h2f[w[k + j].bits], d = x - dq[k + j];
      s8[j] += x * x;
      e8[j] += d * d;
      m8[j] = std::max(m8[j], std::fabs(d));
    }
  }
  double s = 0, e = 0;
  for (int j = 0; j < 8; ++j) {
    s += s8[j];
    e += e8[j];
    max_abs = std::max(max_abs, double(m8[j]));
  }
  for (; k < K; ++k) {
    const double x = h2f[w[k].bits], d = x - double(dq[k]);
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
