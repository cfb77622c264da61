// IEEE binary16 and bfloat16 storage types with exact round-to-nearest-even conversions.
// The reference rounds every activation to fp16 (spec §1.3, "fp16(·)"), so these conversions
// are part of the numerics, not an approximation.
#pragma once

#include <cstdint>
#include <cstring>

namespace glm {

// fp16 bits. A distinct type so that fp16 data is never mistaken for integers.
struct Half {
  uint16_t bits = 0;
};
static_assert(sizeof(Half) == 2);

struct BFloat16 {
  uint16_t bits = 0;
};

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Exact: every fp16 value is representable in fp32.
inline float HalfToFloat(Half h) {
  const uint32_t sign = (uint32_t(h.bits) & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1f;
  const uint32_t man = h.bits & 0x3ff;
  if (exp == 0x1f) return BitsFloat(sign | 0x7f800000u | (man << 13));  // inf / nan
  if (exp != 0) return BitsFloat(sign | ((exp + 112) << 23) | (man << 13));
  if (man == 0) return BitsFloat(sign);
  // Subnormal: man * 2^-24, exact in fp32.
  float f = float(man) * 5.9604644775390625e-8f;
  return (h.bits & 0x8000u) ? -f : f;
}

// Round-to-nearest-even, overflow to inf, NaN kept quiet (same as the F16C instruction).
inline Half FloatToHalf(float f) {
  const uint32_t x = FloatBits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  Half h;
  if (abs >= 0x7f800000u) {  // inf or nan
    h.bits = uint16_t(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u | ((abs >> 13) & 0x3ffu) : 0));
    return h;
  }
  if (abs >= 0x477ff000u) {  // rounds to >= 65520 -> inf
    h.bits = uint16_t(sign | 0x7c00u);
    return h;
  }
  if (abs < 0x38800000u) {  // below the smallest normal (2^-14): subnormal or zero
    // Scale so that the fp16 subnormal ulp (2^-24) becomes 1.0 and round with the FPU (RNE).
    const float scaled = BitsFloat(abs) * 16777216.0f;  // exact (power of two)
    // Adding 2^23 forces rounding at the integer position with the current (RNE) mode.
    const float rounded = (scaled + 8388608.0f) - 8388608.0f;
    h.bits = uint16_t(sign | uint32_t(rounded));
    return h;
  }
  // Normal: rebias exponent, round the 13 dropped mantissa bits to nearest even.
  uint32_t mant = abs & 0x7fffffu;
  uint32_t exp = (abs >> 23) - 112;
  uint32_t out = (exp << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (out & 1u))) out += 1;  // may carry into exponent
  h.bits = uint16_t(sign | out);
  return h;
}

// Rounds a float through fp16 and back: the "fp16(x)" of the spec.
inline float RoundHalf(float f) { return HalfToFloat(FloatToHalf(f)); }

inline float BFloat16ToFloat(BFloat16 b) { return BitsFloat(uint32_t(b.bits) << 16); }

inline BFloat16 FloatToBFloat16(float f) {
  uint32_t x = FloatBits(f);
  BFloat16 b;
  if ((x & 0x7fffffffu) > 0x7f800000u) {
    b.bits = uint16_t((x >> 16) | 0x40u);  // quiet nan
    return b;
  }
  x += 0x7fffu + ((x >> 16) & 1u);
  b.bits = uint16_t(x >> 16);
  return b;
}

}  // namespace glm
