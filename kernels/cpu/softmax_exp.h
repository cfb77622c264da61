// exp for the attention softmax (spec §1.7: an fp32 softmax; the reference's exp is its
// framework's: CUDA's expf in the fused kernel, torch's own on the CPU), defined here operation by
// operation so that the scalar kernel (attention.cc) and the SIMD ones (attention_common.h, 8 keys
// at a time) give the same bits: libm's std::exp has no vector form with its results.
//
//   NaN -> NaN;  x > kHi -> +inf;  x < kLo -> 0 (exp would be below FLT_MIN: a subnormal, which a
//   softmax over a sum >= 1 rounds to a zero fp16 probability anyway);  otherwise
//   n = nearbyint(fp32(x·log2 e)),  r = (x − n·ln2_hi) − n·ln2_lo  (two FMAs),
//   p = Σ_{k<=7} r^k / k!  (Horner, FMAs),  exp(x) = (p · 2^(n>>1)) · 2^(n − (n>>1)).
// |r| <= 0.347, where the degree-7 Taylor remainder is under 0.05 ulp; measured against exp in
// double over every 61st float of [kLo, kHi]: under 1 ulp, 0.92 at worst (softmax_exp_test; the
// test allows 2). Both scalings are
// by normal powers of two, so only the last one rounds, and only for a subnormal result.
// Needs -ffp-contract=off (CMakeLists.txt): each product and sum is its own rounding.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace glm {

struct SoftmaxExpConstants {
  static constexpr float kLo = -87.33654f;  // fp32(ln FLT_MIN), rounded up
  static constexpr float kHi = 88.72283f;   // fp32(ln FLT_MAX), rounded down
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693359375f;     // 355/512: n·kLn2Hi is exact
  static constexpr float kLn2Lo = -2.12194442e-4f;  // ln 2 − kLn2Hi
  static constexpr float kCoeff[8] = {1.f / 5040, 1.f / 720, 1.f / 120, 1.f / 24,
                                      1.f / 6,    0.5f,      1.f,       1.f};  // r^7/7! .. r^0/0!
};

// 2^e for e in [-126, 127], from its bits.
inline float Pow2(int e) {
  const uint32_t bits = uint32_t(e + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float SoftmaxExp(float x) {
  using C = SoftmaxExpConstants;
  if (std::isnan(x)) return x;
  if (x > C::kHi) return INFINITY;
  if (x < C::kLo) return 0.f;
  const float n = std::nearbyint(x * C::kLog2e);
  float r = std::fma(n, -C::kLn2Hi, x);
  r = std::fma(n, -C::kLn2Lo, r);
  float p = C::kCoeff[0];
  for (int k = 1; k < 8; ++k) p = std::fma(p, r, C::kCoeff[k]);
  const int ni = int(n), a = ni >> 1;
  return p * Pow2(a) * Pow2(ni - a);
}

}  // namespace glm
