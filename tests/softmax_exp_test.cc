// The attention softmax's exp (kernels/cpu/softmax_exp.h): its 8-wide AVX2 form gives the scalar
// form's bits, and both are within 2 ulp of exp.
#include "kernels/cpu/softmax_exp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/dispatch.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#include "kernels/cpu/attention_common.h"

namespace glm {
namespace {

// SoftmaxExp8 over xs (a multiple of 8), compiled for AVX2 (run only where the CPU has it).
void Exp8(const float* xs, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 8) {
    _mm256_storeu_ps(out + i, SoftmaxExp8(_mm256_loadu_ps(xs + i)));
  }
}

}  // namespace
}  // namespace glm
#pragma GCC pop_options

namespace glm {
namespace {

float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}
uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

// Every 61st bit pattern (both signs, zeros, subnormals, infinities, NaNs included), and the
// edges of [kLo, kHi] and their neighbours.
std::vector<float> Inputs() {
  std::vector<float> xs;
  for (uint64_t b = 0; b <= 0xffffffffu; b += 61) xs.push_back(FromBits(uint32_t(b)));
  using C = SoftmaxExpConstants;
  for (float e : {C::kLo, C::kHi, 0.f, -0.f}) {
    for (float x = e, k = 0; k < 4; ++k, x = std::nextafter(x, -INFINITY)) xs.push_back(x);
    for (float x = e, k = 0; k < 4; ++k, x = std::nextafter(x, INFINITY)) xs.push_back(x);
  }
  while (xs.size() % 8 != 0) xs.push_back(1.f);
  return xs;
}

TEST(SoftmaxExp, VectorFormGivesTheScalarBits) {
  if (!CpuPathSupported(CpuPath::kAvx2)) GTEST_SKIP() << "this CPU lacks AVX2";
  const std::vector<float> xs = Inputs();
  std::vector<float> vec(xs.size());
  Exp8(xs.data(), int64_t(xs.size()), vec.data());
  int64_t bad = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const float want = SoftmaxExp(xs[i]);
    const bool same = std::isnan(want) ? std::isnan(vec[i]) : Bits(want) == Bits(vec[i]);
    if (!same && bad++ < 5) {
      ADD_FAILURE() << "x = " << xs[i] << " (0x" << std::hex << Bits(xs[i]) << std::dec
                    << "): scalar " << want << ", vector " << vec[i];
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(SoftmaxExp, WithinTwoUlpOfExp) {
  using C = SoftmaxExpConstants;
  double worst = 0;
  float worst_x = 0;
  for (float x : Inputs()) {
    const float got = SoftmaxExp(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(got));
      continue;
    }
    if (x > C::kHi) {
      ASSERT_EQ(got, INFINITY) << x;
      continue;
    }
    if (x < C::kLo) {
      ASSERT_EQ(Bits(got), 0u) << x;
      continue;
    }
    const double want = std::exp(double(x));
    const double ulp = std::ldexp(1.0, std::ilogb(float(want)) - 23);  // of the float near want
    const double err = std::fabs(double(got) - want) / ulp;
    if (err > worst) worst = err, worst_x = x;
  }
  EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
  std::printf("worst error %.3f ulp at x = %.9g\n", worst, worst_x);
}

}  // namespace
}  // namespace glm
