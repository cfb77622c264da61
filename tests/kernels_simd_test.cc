// The SIMD kernel paths (kernels/cpu/dispatch.h) against the scalar reference, on every path this
// CPU supports, over odd sizes, misaligned pointers, every weight format and batch sizes on both
// sides of each kernel's decode/prefill switch and K/token blocking.
//
// Tolerance: zero. Every SIMD kernel reproduces the scalar kernel's fp32 operation order (see the
// file headers in kernels/cpu): reductions keep the scalar lane structure and tree, and products
// of two fp16 values are exact in fp32, so FMA rounds as multiply-then-add. A path that drifted
// by one fp32 rounding would show here as a bit difference.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/linear_common.h"
#include "runtime/parallel.h"
#include "tests/test_util.h"

namespace glm {
namespace {

std::vector<Half> RandomHalf(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<Half> v(n);
  for (auto& h : v) h = FloatToHalf(dist(rng));
  return v;
}

// Bit equality of fp16 arrays; on failure names the first and the count of differing elements.
::testing::AssertionResult BitEqual(const Half* actual, const Half* expected, size_t n,
                                    const std::string& what) {
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < n; ++i) {
    if (actual[i].bits != expected[i].bits) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << n << " elements differ; first at " << first
         << ": expected " << HalfToFloat(expected[first])
         << StrFormat(" (0x%04x)", expected[first].bits) << ", actual "
         << HalfToFloat(actual[first]) << StrFormat(" (0x%04x)", actual[first].bits);
}

std::vector<CpuPath> SimdPaths() {
  std::vector<CpuPath> paths;
  for (CpuPath p : {CpuPath::kAvx2, CpuPath::kAvx512, CpuPath::kAvx512Fp16}) {
    if (CpuPathSupported(p)) paths.push_back(p);
  }
  return paths;
}

class SimdPath : public ::testing::TestWithParam<CpuPath> {
 protected:
  void SetUp() override {
    if (!CpuPathSupported(GetParam())) {
      GTEST_SKIP() << "this CPU lacks " << CpuPathFeatures(GetParam());
    }
  }
  const CpuKernels& simd() const { return KernelsFor(GetParam()); }
  const CpuKernels& ref() const { return KernelsFor(CpuPath::kScalar); }

  // The SIMD linear against the scalar one on T tokens of x, bit for bit (the SIMD call gets its
  // scratch one float off the scalar call's alignment).
  ::testing::AssertionResult LinearMatches(const Half* x, int64_t T, const TensorView& w,
                                           const Half* bias, const std::string& what) const {
    const int64_t N = w.rows(), K = w.cols();
    std::vector<Half> want(T * N), got(T * N);
    std::vector<float> scratch(T * K + 1);
    ref().linear(x, T, w, bias, want.data(), scratch.data());
    simd().linear(x, T, w, bias, got.data(), scratch.data() + 1);
    return BitEqual(got.data(), want.data(), got.size(), what);
  }
  // The same for attention over one layer's cache of S tokens.
  ::testing::AssertionResult AttentionMatches(const Half* qkv, int64_t T, int64_t start, int H,
                                              int D, const Half* kc, const Half* vc, int64_t S,
                                              int64_t prefix, int layer,
                                              const std::string& what) const {
    std::vector<Half> want(T * H * D), got(T * H * D);
    std::vector<float> scratch(AttentionScratchFloats(S));
    ref().attention(qkv, T, start, H, D, kc, vc, S, prefix, layer, want.data(), scratch.data());
    simd().attention(qkv, T, start, H, D, kc, vc, S, prefix, layer, got.data(), scratch.data());
    return BitEqual(got.data(), want.data(), got.size(), what);
  }
};

// Element k of a packed int4 row (quant/format.h: element 2j in the high nibble) set to q.
void SetInt4(int8_t* row, int64_t k, int q) {
  int8_t& b = row[k / 2];
  b = k % 2 ? int8_t((b & 0xf0) | (q & 0x0f)) : int8_t((b & 0x0f) | (q << 4));
}

// A quantized or fp16 weight [N, K] with its own storage, data and scales offset by one element
// from any alignment.
struct Weight {
  std::vector<Half> f16;
  std::vector<int8_t> q;
  std::vector<Half> scales;
  TensorView view;

  static Weight Make(DType dtype, int64_t N, int64_t K, int group, uint32_t seed) {
    Weight w;
    w.view.dtype = dtype;
    w.view.ndim = 2;
    w.view.shape[0] = N;
    w.view.shape[1] = K;
    w.view.group_size = group;
    if (dtype == DType::kF16) {
      w.f16 = RandomHalf(N * K + 1, 0.05f, seed);
      w.view.data = w.f16.data() + 1;
      return w;
    }
    std::mt19937 rng(seed);
    const int qmax = dtype == DType::kI8 ? 127 : 7;
    std::uniform_int_distribution<int> qd(-qmax - 1, qmax);  // includes -128 / -8
    const int64_t row_bytes = dtype == DType::kI8 ? K : K / 2;
    w.q.resize(N * row_bytes + 1);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const int v = qd(rng);
        int8_t* b = w.q.data() + 1 + n * row_bytes;
        if (dtype == DType::kI8) {
          b[k] = int8_t(v);
        } else {
          SetInt4(b, k, v);
        }
      }
    }
    const int64_t groups = group > 0 ? K / group : 1;
    std::uniform_real_distribution<float> sd(0.0005f, 0.01f);
    w.scales.resize(N * groups + 1);
    for (size_t i = 0; i < w.scales.size(); ++i) {
      w.scales[i] = FloatToHalf(i % 7 == 3 ? -sd(rng) : sd(rng));  // a few negative scales too
    }
    w.view.data = w.q.data() + 1;
    w.view.scales = w.scales.data() + 1;
    return w;
  }
};

struct LinearCase {
  DType dtype;
  int group;  // 0 = per row
  int64_t N, K;
};

std::string CaseName(const LinearCase& c, int64_t T, bool bias) {
  return StrFormat("%s g=%d N=%lld K=%lld T=%lld%s", DTypeName(c.dtype), c.group, (long long)c.N,
                   (long long)c.K, (long long)T, bias ? " bias" : "");
}

TEST_P(SimdPath, LinearEqualsScalarOnEveryFormatAndShape) {
  // The last two have rows over 3 KiB: the decode kernels without the next-tile prefetch
  // (kernels_prefetch_test.sh runs these with every prefetch variant).
  const LinearCase cases[] = {
      {DType::kF16, 0, 1, 1},     {DType::kF16, 0, 3, 7},    {DType::kF16, 0, 33, 37},
      {DType::kF16, 0, 9, 1030},  {DType::kF16, 0, 70, 600}, {DType::kI8, 0, 5, 13},
      {DType::kI8, 0, 33, 520},   {DType::kI8, 0, 17, 1029}, {DType::kI8, 32, 9, 96},
      {DType::kI8, 64, 35, 1024}, {DType::kI8, 12, 7, 120},  {DType::kI4, 0, 3, 2},
      {DType::kI4, 0, 9, 30},     {DType::kI4, 0, 33, 1030}, {DType::kI4, 64, 17, 640},
      {DType::kI4, 128, 35, 512}, {DType::kI4, 6, 5, 66},    {DType::kI4, 256, 4, 256},
      {DType::kI8, 0, 17, 4112},  {DType::kI4, 0, 17, 8224},
  };
  uint32_t seed = 100;
  for (const LinearCase& c : cases) {
    Weight w = Weight::Make(c.dtype, c.N, c.K, c.group, ++seed);
    auto bias = RandomHalf(c.N + 1, 0.1f, ++seed);
    for (int64_t T : {1, 2, 3, 4, 5, 7, 13, 125}) {
      if (T == 125 && c.K > 600) continue;  // keeps the scalar reference quick
      auto x = RandomHalf(T * c.K + 3, 1.0f, ++seed);
      for (bool with_bias : {false, true}) {
        const Half* b = with_bias ? bias.data() + 1 : nullptr;
        ASSERT_TRUE(LinearMatches(x.data() + 3, T, w.view, b, CaseName(c, T, with_bias)));
      }
    }
  }
}

// Each output row of a batch equals the same token run alone (decode kernel vs prefill kernel,
// token blocks and tile remainders).
TEST_P(SimdPath, LinearIsBatchInvariant) {
  for (DType dtype : {DType::kF16, DType::kI8, DType::kI4}) {
    const int64_t N = 45, K = 1040, T = 131;
    Weight w = Weight::Make(dtype, N, K, 0, 7);
    auto x = RandomHalf(T * K, 1.0f, 8);
    auto bias = RandomHalf(N, 0.1f, 9);
    std::vector<Half> batch(T * N), one(N);
    std::vector<float> scratch(T * K);
    simd().linear(x.data(), T, w.view, bias.data(), batch.data(), scratch.data());
    for (int64_t t : {0, 1, 5, 6, 119, 120, 130}) {
      simd().linear(x.data() + t * K, 1, w.view, bias.data(), one.data(), scratch.data());
      ASSERT_TRUE(BitEqual(one.data(), batch.data() + t * N, N,
                           StrFormat("%s row %lld", DTypeName(dtype), (long long)t)));
    }
  }
}

// The summation order itself. An fp16 output hides most order differences, so here every exact
// sum is zero: the second half of each weight row repeats the first and x's second half is the
// first negated, 522 inputs apart (not a multiple of 8, so the halves cancel only in the
// fold of the lane sums, linear_common.h). What comes out is the rounding of the reference
// order, which any other order changes. Large x entries make the roundings big enough to
// survive the fp16 output (the shape tests above would pass most reorderings).
TEST_P(SimdPath, LinearFollowsTheReferenceOrder) {
  const int64_t N = 24, H = 522;
  std::mt19937 rng(77);
  std::uniform_real_distribution<float> ud(-1.f, 1.f);
  // K = 2H + 12 (a multiple of 16: no tail) and 2H + 6 (a tail, x = 0 past 2H).
  for (int f = 0; f < 6; ++f) {
    const DType dtype = f % 3 == 0 ? DType::kF16 : f % 3 == 1 ? DType::kI8 : DType::kI4;
    const int64_t K = 2 * H + (f < 3 ? 12 : 6);
    Weight w = Weight::Make(dtype, N, K, 0, 300 + f);
    for (int64_t n = 0; n < N; ++n) {
      if (dtype == DType::kF16) {
        Half* row = w.f16.data() + 1 + n * K;
        for (int64_t k = 0; k < H; ++k) row[H + k] = row[k];
      } else {
        int8_t* row = w.q.data() + 1 + n * QuantRowBytes(dtype, K);
        const int64_t bytes = dtype == DType::kI8 ? H : H / 2;
        for (int64_t b = 0; b < bytes; ++b) row[bytes + b] = row[b];
      }
    }
    for (int64_t T : {1, 2, 4, 7}) {
      std::vector<Half> x(T * K);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t k = 0; k < H; ++k) {
          const float v = ud(rng) * (k % 7 == 0 ? 2000.f : 1.f);
          x[t * K + k] = FloatToHalf(v);
          x[t * K + H + k] = FloatToHalf(-HalfToFloat(x[t * K + k]));
        }
        for (int64_t k = 2 * H; k < K; ++k) x[t * K + k] = FloatToHalf(0.f);
      }
      std::vector<Half> want(T * N), got(T * N);
      std::vector<float> scratch(T * K);
      ref().linear(x.data(), T, w.view, nullptr, want.data(), scratch.data());
      int nonzero = 0;
      for (const Half& h : want) nonzero += HalfToFloat(h) != 0.f;
      ASSERT_GT(nonzero, int(want.size()) / 2) << "the roundings vanished: the test tests nothing";
      simd().linear(x.data(), T, w.view, nullptr, got.data(), scratch.data());
      ASSERT_TRUE(
          BitEqual(got.data(), want.data(), got.size(),
                   StrFormat("%s K=%lld T=%lld", DTypeName(dtype), (long long)K, (long long)T)));
    }
  }
}

// Reads every weight of w [N, K] back through the kernels with one-hot tokens, on the decode
// kernels (T = 1 and 2: the AVX2 path decodes int4 at T = 1 by its own tables) and the prefill
// panels (T = 16), against the reference's dequantized value.
// Zeros compare equal whatever their sign (Int8Split checks the signs).
::testing::AssertionResult ReadsBackEveryWeight(const CpuKernels& kernels, const Weight& w) {
  const int64_t N = w.view.rows(), K = w.view.cols();
  const LinearWeight lw = LinearWeight::From(w.view, kLinearLanes);
  for (int64_t T : {1, 2, 16}) {
    std::vector<Half> x(T * K), y(T * N);
    std::vector<float> scratch(T * K);
    for (int64_t k0 = 0; k0 < K; k0 += T) {
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t k = 0; k < K; ++k) x[t * K + k] = FloatToHalf(k == k0 + t ? 1.f : 0.f);
      }
      kernels.linear(x.data(), T, w.view, nullptr, y.data(), scratch.data());
      for (int64_t t = 0; t < T && k0 + t < K; ++t) {
        for (int64_t n = 0; n < N; ++n) {
          const float want = DequantElement(lw, n, k0 + t), got = HalfToFloat(y[t * N + n]);
          if (got != want) {
            return ::testing::AssertionFailure() << "T=" << T << " row " << n << " input " << k0 + t
                                                 << ": expected " << want << ", got " << got;
          }
        }
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// The int8 decoders round by a split (linear_common.h) where the row's scales allow it. Every
// finite fp16 scale of either sign below 512 is a row here, and each row holds every int8 value.
TEST_P(SimdPath, Int8DecodersDequantizeEveryScaleAsTheReference) {
  const int64_t N = 2 * 0x6000, K = 256;
  Weight w = Weight::Make(DType::kI8, N, K, 0, 11);
  for (int64_t n = 0; n < N; ++n) {
    w.scales[1 + n] = Half{uint16_t((n / 2) | (n % 2 ? 0x8000 : 0))};
    ASSERT_TRUE(SplitExact(w.scales[1 + n]));
    for (int64_t k = 0; k < K; ++k) w.q[1 + n * K + k] = int8_t(uint8_t(k + n));
  }
  EXPECT_TRUE(ReadsBackEveryWeight(simd(), w));
  if (GetParam() != CpuPath::kAvx512Fp16) return;
  // The avx512fp16 path rounds by VMULPH and has no split, so no bound: the finite scales from 512
  // up too, each row holding every int8 q whose product is finite (an infinite weight would make
  // the one-hot reading NaN; QuantizedRowsWithLargeScalesRoundThroughHalf covers those).
  const int64_t N2 = 2 * (0x7c00 - 0x6000);
  Weight v = Weight::Make(DType::kI8, N2, K, 0, 11);
  int64_t zeroed = 0;
  for (int64_t n = 0; n < N2; ++n) {
    const Half s{uint16_t((0x6000 + n / 2) | (n % 2 ? 0x8000 : 0))};
    v.scales[1 + n] = s;
    for (int64_t k = 0; k < K; ++k) {
      const int8_t q = int8_t(uint8_t(k + n));
      const bool finite = std::isfinite(RoundHalf(float(q) * HalfToFloat(s)));
      zeroed += !finite;
      v.q[1 + n * K + k] = finite ? q : int8_t(0);
    }
  }
  // About a fifth of them are finite (the scales span 512 to 65504).
  ASSERT_GT(N2 * K - zeroed, N2 * K / 8) << "the test's premise: many products are finite";
  EXPECT_TRUE(ReadsBackEveryWeight(simd(), v));
}

// The int4 tables: every finite fp16 scale below 512 of either sign is one group here (groups of
// 16, 16 and 17 a row; groups of 128, 2 a row; groups of 32, 9 a row) or one row's scale, each
// group holding all 16 values of q. Then only the scales with 8-bit significands (the AVX-512
// tables by one multiply: every tile takes them), and only those with 9 (bit 2 set: no tile may).
// Reading a weight back rounds it to fp16 again at the output, which hides a table value that
// was not rounded. So each group also holds q = 3, -2, -1 | 5, -4, -1 | 7, -4, -2, -1, and three
// tokens each sum one of these runs: exactly 0 from unrounded q·s, the rounding residues of
// fp16(3s), fp16(5s) and fp16(7s) from the reference's values.
TEST_P(SimdPath, Int4TablesDequantizeEveryScaleAsTheReference) {
  constexpr int kRun[10] = {3, -2, -1, 5, -4, -1, 7, -4, -2, -1};
  constexpr int kRunToken[10] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 2};
  struct Case {
    int64_t G, groups;  // G = 0: per row, K = 64
    int stride = 1, offset = 0;  // the scales' fp16 fields: offset + stride·i
  };
  for (const Case c :
       {Case{16, 16}, Case{16, 17}, Case{128, 2}, Case{32, 9}, Case{0, 1}, Case{16, 16, 8},
        Case{128, 2, 8}, Case{32, 3, 8}, Case{16, 16, 8, 4}, Case{64, 4, 8, 4}}) {
    const int64_t groups = c.groups, K = c.G ? groups * c.G : 64;
    const int64_t count = 2 * ((0x6000 - c.offset + c.stride - 1) / c.stride);
    const int64_t N = (count + groups - 1) / groups;
    Weight w = Weight::Make(DType::kI4, N, K, int(c.G), 13);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < groups; ++j) {
        const int64_t i = (n * groups + j) % count;
        // The positive scales, then the negative (a row of pairs ±s would cancel its residues).
        const int field = c.offset + c.stride * int(i % (count / 2));
        ASSERT_LT(field, 0x6000);
        w.scales[1 + n * groups + j] = Half{uint16_t(field | (i < count / 2 ? 0 : 0x8000))};
      }
      int8_t* row = w.q.data() + 1 + n * (K / 2);
      for (int64_t k = 0; k < K; k += 2) {
        const int hi = int((k + n) % 16) - 8, lo = int((k + 1 + n) % 16) - 8;
        row[k / 2] = int8_t((hi << 4) | (lo & 0x0f));
      }
    }
    const std::string what = StrFormat("G=%lld groups=%lld scales %d + %d·i", (long long)c.G,
                                       (long long)groups, c.offset, c.stride);
    EXPECT_TRUE(ReadsBackEveryWeight(simd(), w)) << what;
    const int64_t G = c.G ? c.G : K;
    for (int64_t n = 0; n < N; ++n) {
      int8_t* row = w.q.data() + 1 + n * (K / 2);
      for (int64_t k = 0; k < K; ++k) SetInt4(row, k, k % G < 10 ? kRun[k % G] : 0);
    }
    // One group at a time: the residues of a row's groups would largely cancel in a sum.
    int64_t residues = 0;
    for (int64_t g = 0; g < K / G; ++g) {
      std::vector<Half> x(3 * K, FloatToHalf(0.f));
      for (int j = 0; j < 10; ++j) x[kRunToken[j] * K + g * G + j] = FloatToHalf(1.f);
      std::vector<Half> want(3 * N);
      std::vector<float> scratch(3 * K);
      ref().linear(x.data(), 3, w.view, nullptr, want.data(), scratch.data());
      for (const Half& h : want) residues += (h.bits & 0x7fff) != 0;
      for (int64_t T = 1; T <= 3; ++T) {  // the first T runs: T = 1 and 2 on the decode kernel
        ASSERT_TRUE(
            LinearMatches(x.data(), T, w.view, nullptr,
                          what + StrFormat(" group %lld T=%lld", (long long)g, (long long)T)));
      }
    }
    if (c.stride == 8 && c.offset == 0) {
      EXPECT_EQ(residues, 0) << what << ": 8-bit significands leave no residue";
    } else {
      EXPECT_GT(residues, count / 2) << what << ": the test's premise";
    }
  }
}

// Zero scales (a group or a row of a quantized weight pruned to zero) give the reference's exact
// zeros, signs included: the AVX2 pair decoder's group tables by lookup have no key for ±0 and
// must not be built from one (their values would be below 2^-120 and carry q's sign into an
// all-zero sum, which a bias of -0 lets through: the reference's +0 + -0 is +0, their -0 + -0 is
// -0). Rows of negative q: all groups zero (+0 and -0), one group zero, none.
TEST_P(SimdPath, ZeroScalesGiveTheReferenceZeros) {
  // The other scales: 0.01, and 0.01 with an 8-bit significand (int4: the AVX-512 tables by one
  // multiply).
  for (const Half other : {FloatToHalf(0.01f), Half{uint16_t(FloatToHalf(0.01f).bits & 0xfff8)}})
    for (const int group : {64, 128, 32, 16}) {
      for (const DType dtype : {DType::kI4, DType::kI8}) {
        const int64_t K = 512, N = 24, groups = K / group;
        Weight w = Weight::Make(dtype, N, K, group, 17);
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t j = 0; j < groups; ++j) {
            const bool zero = (n % 8 < 4) || (n % 8 == 4 && j == 1);  // whole tiles, and one group
            w.scales[1 + n * groups + j] = zero ? FloatToHalf(n % 2 ? -0.f : 0.f) : other;
          }
          for (int64_t k = 0; k < K; ++k) {
            const int q = -1 - int((k + n) % 7);
            if (dtype == DType::kI8) {
              w.q[1 + n * K + k] = int8_t(q);
            } else if (k % 2 == 0) {
              w.q[1 + n * K / 2 + k / 2] = int8_t((q << 4) | ((-1 - int((k + 1 + n) % 7)) & 0x0f));
            }
          }
        }
        for (int64_t T : {1, 2, 5}) {
          std::vector<Half> x(T * K, FloatToHalf(1.f)), bias(N, FloatToHalf(-0.f));
          std::vector<Half> want(T * N);
          std::vector<float> scratch(T * K);
          ref().linear(x.data(), T, w.view, bias.data(), want.data(), scratch.data());
          ASSERT_EQ(want[0].bits, 0) << "the test's premise: a zero row gives +0";
          EXPECT_TRUE(LinearMatches(x.data(), T, w.view, bias.data(),
                                    StrFormat("%s group %d T=%lld, scale 0x%04x", DTypeName(dtype),
                                              group, (long long)T, other.bits)));
        }
      }
    }
}

// The split itself, bit for bit (signed zeros included), for every fp16 scale it is used with
// and every int8 q; and the bound is where the split stops being exact.
TEST(Int8Split, EqualsTheReferenceRoundingWhereverItIsUsed) {
  int64_t used = 0, inexact_above = 0;
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const Half h{uint16_t(bits)};
    if ((bits & 0x7c00) == 0x7c00) continue;  // inf, NaN: never split (SplitExact below)
    const float s = HalfToFloat(h);
    for (int q = -128; q <= 127; ++q) {
      const float want = RoundHalf(float(q) * s), got = SplitDequant(q, s);
      uint32_t a, b;
      std::memcpy(&a, &want, 4);
      std::memcpy(&b, &got, 4);
      if (SplitExact(h)) {
        ++used;
        ASSERT_EQ(a, b) << "scale 0x" << std::hex << bits << " q " << std::dec << q;
      } else {
        inexact_above += a != b;
      }
    }
  }
  EXPECT_EQ(used, 2 * 0x6000 * 256);
  EXPECT_GT(inexact_above, 0) << "the split is exact above 512 too: the bound could be raised";
  EXPECT_FALSE(SplitExact(Half{0x7c00}));
  EXPECT_FALSE(SplitExact(Half{0xfe00}));
}

// int8 rows whose scales do not allow the split take the conversions: there q·scale overflows
// fp16, and inf - inf makes the reference's output NaN where the split would give a finite value.
// int4 tables must overflow the same way.
TEST_P(SimdPath, QuantizedRowsWithLargeScalesRoundThroughHalf) {
  // No tail (it takes the reference rounding on every path); rows of 64 bytes and of over 3 KiB
  // (the decode kernels with and without the next-tile prefetch).
  // int4 (groups of 16 and of 128, and a row scale): q = ±7 with scale 16384 overflows fp16 too.
  // With 17 groups a row only the last group's scale is large: the AVX-512 decode checks
  // group-wise scales in blocks of 16 and the rest in one masked block (int8 and int4 alike; 273
  // groups: 17 blocks and one more).
  struct Case {
    DType dtype;
    int64_t K;
    int group;  // 0: per row
  };
  for (const Case c :
       {Case{DType::kI8, 64, 0}, Case{DType::kI8, 4112, 0}, Case{DType::kI8, 256, 16},
        Case{DType::kI8, 272, 16}, Case{DType::kI8, 4368, 16}, Case{DType::kI4, 256, 16},
        Case{DType::kI4, 272, 16}, Case{DType::kI4, 8224, 0}, Case{DType::kI4, 512, 128}}) {
    const bool i4 = c.dtype == DType::kI4;
    const int64_t K = c.K, N = 21;
    const int64_t groups = c.group ? K / c.group : 1;
    Weight w = Weight::Make(c.dtype, N, K, c.group, 12);
    std::vector<bool> large_row(N);
    for (int64_t n = 0; n < N; ++n) {
      const bool large = n % 3 == 0 || (n >= 8 && n < 16);  // mixed tiles and a whole large one
      large_row[n] = large;
      for (int64_t j = 0; j < groups; ++j) {
        const bool large_group = large && (groups != 17 || j == groups - 1);
        w.scales[1 + n * groups + j] = FloatToHalf(large_group ? (i4 ? 16384.f : 1024.f) : 0.01f);
      }
      for (int64_t k = 0; k < K; ++k) {
        if (!i4) {
          w.q[1 + n * K + k] = int8_t(k % 2 ? -100 : 100);
        } else if (k % 2 == 0) {
          w.q[1 + n * K / 2 + k / 2] = int8_t((7 << 4) | (-7 & 0x0f));
        }
      }
    }
    for (int64_t T : {1, 2, 4, 7}) {
      std::vector<Half> x(T * K, FloatToHalf(1.f)), want(T * N), got(T * N);
      std::vector<float> scratch(T * K);
      ref().linear(x.data(), T, w.view, nullptr, want.data(), scratch.data());
      simd().linear(x.data(), T, w.view, nullptr, got.data(), scratch.data());
      for (int64_t i = 0; i < T * N; ++i) {
        const bool large = large_row[i % N];
        const float a = HalfToFloat(want[i]), b = HalfToFloat(got[i]);
        ASSERT_EQ(std::isnan(a), large) << "the test's premise: row " << i % N;
        if (large) {
          ASSERT_TRUE(std::isnan(b)) << "K=" << K << " T=" << T << " row " << i % N << ": " << b;
        } else {
          ASSERT_EQ(want[i].bits, got[i].bits) << "K=" << K << " T=" << T << " row " << i % N;
        }
      }
    }
  }
}

// Group-wise int4 at T = 1: each tile checks its own scales, whatever the tiles before it on the
// same thread took. Tiles of scales with 8-bit significands (the AVX-512 tables by one multiply)
// alternate with tiles holding one scale that has more (the last group of a row: the tail block
// at 17 and 8 groups a row) or one of 16384, where q·scale overflows fp16 as in the reference (no
// split; NaN where the reference's output is NaN, else bit for bit). On the pool and on one
// thread, so that runs of several tiles go through one thread. (A kernel that converted the next
// tile's scales during a tile, tried in the twentieth session, failed it with either check left
// out of that conversion.)
TEST_P(SimdPath, GroupScalesAreCheckedTileByTile) {
  struct Case {
    int64_t K;
    int group;
  };
  for (const Case c : {Case{272, 16}, Case{1024, 128}, Case{4096, 128}}) {
    const int64_t K = c.K, N = 128, groups = K / c.group;
    Weight w = Weight::Make(DType::kI4, N, K, c.group, 31);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t j = 0; j < groups; ++j) {
        Half& s = w.scales[1 + n * groups + j];
        s.bits &= 0xfff8;  // 8 significant bits
        const int64_t tile = n / 8;
        if (tile % 4 == 1 && n % 8 == 3 && j == groups - 1) s.bits |= 0x5;
        if (tile % 4 == 3 && n % 8 == 6 && j == 0) s = FloatToHalf(16384.f);
      }
    }
    auto x = RandomHalf(K, 1.0f, 32);
    std::vector<Half> want(N), got(N);
    std::vector<float> scratch(K + 1);
    ref().linear(x.data(), 1, w.view, nullptr, want.data(), scratch.data());
    for (bool one_thread : {false, true}) {
      std::optional<ThreadPool::InlineScope> scope;
      if (one_thread) scope.emplace();
      simd().linear(x.data(), 1, w.view, nullptr, got.data(), scratch.data() + 1);
      for (int64_t n = 0; n < N; ++n) {
        const float a = HalfToFloat(want[n]), b = HalfToFloat(got[n]);
        const bool same = std::isnan(a) ? std::isnan(b) : want[n].bits == got[n].bits;
        ASSERT_TRUE(same) << "K=" << K << " group " << c.group << (one_thread ? " one thread" : "")
                          << " row " << n << ": expected " << a << ", actual " << b;
      }
    }
  }
}

TEST_P(SimdPath, LayerNormEqualsScalar) {
  for (int64_t C : {1, 7, 8, 64, 129, 1000, 12288}) {
    const int64_t T = 5;
    auto x = RandomHalf(T * C + 1, 2.0f, uint32_t(C));
    auto g = RandomHalf(C + 1, 1.0f, 2), b = RandomHalf(C + 1, 0.3f, 3);
    std::vector<Half> want(T * C), got(T * C);
    ref().layer_norm(x.data() + 1, T, C, g.data() + 1, b.data() + 1, 1e-5f, want.data());
    simd().layer_norm(x.data() + 1, T, C, g.data() + 1, b.data() + 1, 1e-5f, got.data());
    ASSERT_TRUE(BitEqual(got.data(), want.data(), got.size(), StrFormat("C=%lld", (long long)C)));
  }
}

TEST_P(SimdPath, ElementwiseOpsEqualScalar) {
  for (int64_t n : {1, 7, 8, 37, 4096 + 5}) {
    auto u = RandomHalf(2 * 3 * n + 1, 3.0f, uint32_t(n));
    u[5] = Half{0x7c00};                    // inf and nan inputs behave the same
    if (u.size() > 9) u[9] = Half{0x7e00};  // (n = 1 has 7 elements)
    std::vector<Half> want(3 * n), got(3 * n);
    ref().geglu(u.data() + 1, 3, n, want.data());
    simd().geglu(u.data() + 1, 3, n, got.data());
    ASSERT_TRUE(
        BitEqual(got.data(), want.data(), got.size(), StrFormat("geglu F=%lld", (long long)n)));
    ref().deep_norm_residual(u.data() + 1, u.data() + n + 2, 11.832159f, n, want.data());
    simd().deep_norm_residual(u.data() + 1, u.data() + n + 2, 11.832159f, n, got.data());
    ASSERT_TRUE(BitEqual(got.data(), want.data(), n, StrFormat("residual n=%lld", (long long)n)));
  }
}

TEST_P(SimdPath, RotaryEqualsScalar) {
  for (int D : {2, 8, 22, 64, 128}) {
    const int H = 3;
    const int64_t T = 4;
    RotaryTable table = RotaryTable::Build(D, 512);
    auto qkv = RandomHalf(T * H * 3 * D + 1, 1.0f, uint32_t(D));
    auto a = qkv, b = qkv;
    const int32_t pos[T] = {0, 5, 300, 511};
    ref().apply_rotary(a.data() + 1, T, H, D, pos, table);
    simd().apply_rotary(b.data() + 1, T, H, D, pos, table);
    ASSERT_TRUE(BitEqual(b.data(), a.data(), a.size(), StrFormat("rotary D=%d", D)));
  }
}

TEST_P(SimdPath, AttentionEqualsScalar) {
  struct Case {
    int H, D;
    int64_t S, prefix, start, T;
  } cases[] = {{2, 16, 23, 9, 0, 13},
               {2, 16, 23, 9, 13, 2},
               {3, 128, 70, 20, 60, 10},
               {1, 128, 9, 0, 8, 1},
               {4, 64, 41, 41, 0, 41},
               {2, 24, 19, 5, 3, 16},
               {2, 12, 10, 2, 0, 10},  // D = 12: not a multiple of 8
               // Key blocks: 8, 2 and 1 at a time (AVX-512), 4 and 1 (AVX2); a last block
               // partly past the visible keys, and one wholly visible.
               {11, 16, 150, 30, 140, 10},
               {19, 64, 131, 0, 130, 1},
               {2, 128, 300, 0, 299, 1},
               {3, 32, 64, 0, 63, 1},
               // Head dims with a partial P·V chunk: 64 + 16 (AVX2), 128 + 16 (AVX-512).
               {2, 80, 40, 7, 30, 10},
               {2, 144, 40, 0, 35, 5}};
  for (const Case& c : cases) {
    auto kc = RandomHalf(KvLayerHalves(c.S, c.H, c.D) + 1, 1.0f, 31),
         vc = RandomHalf(KvLayerHalves(c.S, c.H, c.D) + 1, 1.0f, 32);
    auto qkv = RandomHalf(c.T * c.H * 3 * c.D + 1, 2.0f, 33);
    for (int layer : {0, 5}) {
      ASSERT_TRUE(AttentionMatches(qkv.data() + 1, c.T, c.start, c.H, c.D, kc.data() + 1,
                                   vc.data() + 1, c.S, c.prefix, layer,
                                   StrFormat("attention H=%d D=%d start=%lld T=%lld layer %d", c.H,
                                             c.D, (long long)c.start, (long long)c.T, layer)));
    }
  }
}

// The softmax's edges (its max and division run 8 keys at a time on the SIMD paths): every score
// zero (a zero query), every key alike (ties), and one key whose score dwarfs the rest (their
// exps underflow to zero), in the middle, first or last; key counts on both sides of multiples
// of 8.
TEST_P(SimdPath, AttentionSoftmaxEdgesEqualScalar) {
  const int H = 3, D = 64;
  for (int64_t S : {7, 8, 9, 16, 61}) {
    for (int edge = 0; edge < 5; ++edge) {
      auto kc = RandomHalf(KvLayerHalves(S, H, D), 1.0f, 41);
      auto vc = RandomHalf(KvLayerHalves(S, H, D), 1.0f, 42);
      auto qkv = RandomHalf(3 * H * D, 2.0f, 43);
      if (edge == 0) {
        for (int h = 0; h < H; ++h) std::fill_n(qkv.begin() + h * 3 * D, D, FloatToHalf(0.f));
      }
      for (int h = 0; h < H; ++h) {
        for (int64_t j = 0; j < S; ++j) {
          for (int d = 0; d < D; ++d) {
            Half& k = kc[KvKeyIndex(S, D, h, j, d)];
            if (edge == 1) k = kc[KvKeyIndex(S, D, h, 0, d)];  // all alike
            const int64_t large = edge == 2 ? S / 2 : edge == 3 ? 0 : S - 1;
            if (edge >= 2) k = FloatToHalf(j == large ? 60.f * (d % 2 ? 1 : -1) : 0.01f);
          }
        }
      }
      if (edge >= 2) {  // the query along the one large key
        for (int h = 0; h < H; ++h) {
          for (int d = 0; d < D; ++d) qkv[h * 3 * D + d] = FloatToHalf(d % 2 ? 1.f : -1.f);
        }
      }
      ASSERT_TRUE(AttentionMatches(qkv.data(), 1, S - 1, H, D, kc.data(), vc.data(), S, 0, 3,
                                   StrFormat("softmax edge %d, %lld keys", edge, (long long)S)));
    }
  }
}

// Random cases beyond the fixed ones above: shapes, group sizes, token counts, pointer offsets and
// scale ranges drawn from a fixed seed (the same cases every run). The scale ranges cross the
// split's bound (512) and reach fp16 subnormals and zero, within one weight or row by row.
TEST_P(SimdPath, RandomCasesEqualScalar) {
  std::mt19937 rng(20261128);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto real = [&](float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(rng);
  };
  for (int i = 0; i < 300; ++i) {
    const DType dtype = std::array{DType::kF16, DType::kI8, DType::kI4}[uniform(0, 2)];
    const int64_t N = uniform(1, 90);
    int64_t K = uniform(1, 2600);
    if (dtype == DType::kI4) K += K % 2;
    int group = 0;
    if (dtype != DType::kF16 && uniform(0, 1)) {
      std::vector<int> even_divisors;
      for (int g = 2; g <= K; g += 2) {
        if (K % g == 0) even_divisors.push_back(g);
      }
      if (!even_divisors.empty())
        group = even_divisors[uniform(0, int64_t(even_divisors.size()) - 1)];
    }
    const int pick = int(uniform(0, 2));
    int64_t T = pick == 0 ? uniform(1, 4) : pick == 1 ? uniform(5, 20) : uniform(100, 140);
    if (T > 20 && K > 1200) T = uniform(1, 20);  // keeps the scalar reference quick
    Weight w = Weight::Make(dtype, N, K, group, uint32_t(rng()));
    const int regime = int(uniform(0, 3));  // typical, tiny, large, typical with large rows
    const bool exact = uniform(0, 2) == 0;  // 8-bit significands (as glm-quantize's int4 groups)
    for (size_t s = 1; s < w.scales.size(); ++s) {
      float v = regime == 0          ? real(1e-4f, 0.02f)
                : regime == 1        ? real(1e-7f, 1e-3f)
                : regime == 2        ? real(0.01f, 900.f)
                : uniform(0, 5) == 0 ? real(400.f, 1000.f)
                                     : real(1e-4f, 0.02f);
      if (uniform(0, 6) == 0) v = -v;
      if (uniform(0, 40) == 0) v = 0;
      w.scales[s] = FloatToHalf(v);
      if (exact) w.scales[s].bits &= 0xfff8;
    }
    const int64_t x_offset = uniform(0, 5);
    auto x = RandomHalf(T * K + x_offset, real(0.01f, 3.f), uint32_t(rng()));
    auto bias = RandomHalf(N + 1, 0.1f, uint32_t(rng()));
    const bool with_bias = uniform(0, 1);
    const Half* b = with_bias ? bias.data() + 1 : nullptr;
    ASSERT_TRUE(LinearMatches(x.data() + x_offset, T, w.view, b,
                              StrFormat("case %d: %s, scale regime %d%s", i,
                                        CaseName({dtype, group, N, K}, T, with_bias).c_str(),
                                        regime, exact ? ", 8-bit significands" : "")));
  }
  for (int i = 0; i < 120; ++i) {
    const int H = int(uniform(1, 9));
    const int pick = int(uniform(0, 5));
    const int D = pick == 0  ? int(uniform(1, 200))
                  : pick < 3 ? 2 * int(uniform(1, 40))
                             : 16 * int(uniform(1, 12));
    const int64_t S = uniform(1, 700), start = uniform(0, S - 1);
    const int64_t T = uniform(1, std::min<int64_t>(S - start, 40));
    const int64_t prefix = uniform(0, start + T);
    const int layer = int(uniform(0, 69));
    auto kc = RandomHalf(KvLayerHalves(S, H, D) + 1, real(0.1f, 3.f), uint32_t(rng())),
         vc = RandomHalf(KvLayerHalves(S, H, D) + 1, 1.0f, uint32_t(rng()));
    auto qkv = RandomHalf(T * H * 3 * D + 1, real(0.1f, 4.f), uint32_t(rng()));
    ASSERT_TRUE(AttentionMatches(qkv.data() + 1, T, start, H, D, kc.data() + 1, vc.data() + 1, S,
                                 prefix, layer,
                                 StrFormat("attention case %d: H=%d D=%d S=%lld start=%lld "
                                           "T=%lld prefix=%lld layer %d",
                                           i, H, D, (long long)S, (long long)start, (long long)T,
                                           (long long)prefix, layer)));
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, SimdPath,
                         ::testing::Values(CpuPath::kAvx2, CpuPath::kAvx512, CpuPath::kAvx512Fp16),
                         [](const ::testing::TestParamInfo<CpuPath>& info) {
                           return std::string(CpuPathName(info.param));
                         });

TEST(Dispatch, NamesParseAndUnsupportedPathsAreErrors) {
  for (CpuPath p : {CpuPath::kScalar, CpuPath::kAvx2, CpuPath::kAvx512, CpuPath::kAvx512Fp16}) {
    auto parsed = ParseCpuPath(CpuPathName(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  auto bad = ParseCpuPath("avx9");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("avx9"), std::string::npos);
  EXPECT_TRUE(CpuPathSupported(CpuPath::kScalar));
  EXPECT_TRUE(CpuPathSupported(BestCpuPath()));
  std::printf("best CPU path here: %s; SIMD paths tested: %zu\n", CpuPathName(BestCpuPath()),
              SimdPaths().size());
}

TEST(Dispatch, SetCpuPathSwitchesThePublicKernels) {
  const CpuPath before = ActiveCpuPath();
  auto x = RandomHalf(3 * 100, 1.0f, 1);
  Weight w = Weight::Make(DType::kI4, 50, 100, 0, 2);
  std::vector<Half> a(3 * 50), b(3 * 50);
  std::vector<float> scratch(3 * 100);
  for (CpuPath p : {CpuPath::kScalar, CpuPath::kAvx2, CpuPath::kAvx512, CpuPath::kAvx512Fp16}) {
    Status st = SetCpuPath(p);
    if (!CpuPathSupported(p)) {
      EXPECT_FALSE(st.ok());
      continue;
    }
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(ActiveCpuPath(), p);
    Linear(x.data(), 3, w.view, nullptr, p == CpuPath::kScalar ? a.data() : b.data(),
           scratch.data());
    if (p != CpuPath::kScalar) {
      EXPECT_TRUE(BitEqual(b.data(), a.data(), a.size(), CpuPathName(p)));
    }
  }
  ASSERT_TRUE(SetCpuPath(before).ok());
}

// The vendor string and family as /proc/cpuinfo gives them (Linux): what IdentifyCpu must match.
TEST(Dispatch, IdentifyCpuMatchesProcCpuinfo) {
  std::FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (f == nullptr) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string vendor;
  int family = -1;
  char line[512];
  while (std::fgets(line, sizeof line, f) && (vendor.empty() || family < 0)) {
    char value[256];
    if (vendor.empty() && std::sscanf(line, "vendor_id : %255s", value) == 1) vendor = value;
    if (family < 0) (void)std::sscanf(line, "cpu family : %d", &family);
  }
  std::fclose(f);
  if (vendor.empty() || family < 0) GTEST_SKIP() << "no vendor_id or cpu family in /proc/cpuinfo";
  const CpuIdentity& id = IdentifyCpu();
  const CpuIdentity::Vendor want = vendor == "GenuineIntel"   ? CpuIdentity::kIntel
                                   : vendor == "AuthenticAMD" ? CpuIdentity::kAmd
                                                              : CpuIdentity::kOther;
  EXPECT_EQ(id.vendor, want) << vendor;
  EXPECT_EQ(id.family, family) << vendor;
  std::printf("CPU: %s family %#x model %#x; decode prefetch defaults for %s\n", vendor.c_str(),
              id.family, id.model, DecodePrefetchDefaultsFor(id).measured_on);
}

TEST(Dispatch, DecodePrefetchDefaultsFollowTheMeasuredCpus) {
  CpuIdentity zen5{CpuIdentity::kAmd, 0x1a, 0x02};
  const DecodePrefetchDefaults amd = DecodePrefetchDefaultsFor(zen5);
  EXPECT_EQ(amd.row_bytes, kPrefetchEveryRow);
  EXPECT_EQ(amd.ahead_f16, 0);
  EXPECT_EQ(amd.ahead_quantized, 0);
  EXPECT_TRUE(amd.f16_row_streams);
  EXPECT_EQ(amd.x_half, XHalf::kAuto);
  EXPECT_TRUE(amd.next_tile_l1);
  EXPECT_EQ(amd.ahead_f16_tokens3, 4096);
  // Intel with AVX512-FP16 prefetches quantized rows in-row too.
  CpuIdentity spr{CpuIdentity::kIntel, 6, 0x8f};
  spr.avx512fp16 = true;
  const DecodePrefetchDefaults intel = DecodePrefetchDefaultsFor(spr);
  EXPECT_EQ(intel.row_bytes, 3072);
  EXPECT_EQ(intel.ahead_f16, 512);
  EXPECT_EQ(intel.ahead_quantized, 384);
  EXPECT_FALSE(intel.f16_row_streams);
  EXPECT_STRNE(intel.measured_on, amd.measured_on);
  // Every other CPU, Zen 4 (family 19h) and Intel without AVX512-FP16 included, keeps the Ice
  // Lake measurements.
  for (const CpuIdentity& other :
       {CpuIdentity{CpuIdentity::kIntel, 6, 0x6a}, CpuIdentity{CpuIdentity::kAmd, 0x19, 0x11},
        CpuIdentity{CpuIdentity::kOther, 0x1a, 0}}) {
    const DecodePrefetchDefaults d = DecodePrefetchDefaultsFor(other);
    EXPECT_EQ(d.row_bytes, 3072);
    EXPECT_EQ(d.ahead_f16, 512);
    EXPECT_EQ(d.ahead_quantized, 0);
    EXPECT_FALSE(d.f16_row_streams);
    EXPECT_EQ(d.x_half, XHalf::kAuto);  // it measures where it runs
    EXPECT_FALSE(d.next_tile_l1);
    EXPECT_EQ(d.ahead_f16_tokens3, 512);  // as at one token
    EXPECT_STRNE(d.measured_on, amd.measured_on);
    EXPECT_STRNE(d.measured_on, intel.measured_on);
  }
}

// The prefill's prefetch walks each row's lines once, in order, from the line holding its first
// byte to the line holding its last, whatever the alignment; Lines() bounds the count.
TEST(Dispatch, StridedPrefetchWalksEveryLineOfEachRow) {
  alignas(64) static char buf[64 * 64];
  for (int64_t offset : {0, 1, 63}) {
    for (int64_t bytes : {1, 64, 65, 200}) {
      const int64_t stride = 448 + 24, rows = 5;  // rows start at varying offsets within a line
      StridedPrefetch p(buf + offset, stride, bytes, rows);
      std::vector<const char*> want;
      for (int64_t r = 0; r < rows; ++r) {
        const uintptr_t a = reinterpret_cast<uintptr_t>(buf + offset + r * stride);
        for (uintptr_t l = a & ~uintptr_t{63}; l <= ((a + bytes - 1) & ~uintptr_t{63}); l += 64) {
          want.push_back(reinterpret_cast<const char*>(l));
        }
      }
      std::vector<const char*> got;
      for (int step = 0; p.NextLine() != nullptr && step < 1000; ++step) {
        got.push_back(p.NextLine());
        p.Issue(1);
      }
      EXPECT_EQ(got, want) << "offset " << offset << ", " << bytes << " bytes";
      EXPECT_LE(int64_t(want.size()), p.Lines());
      p.Issue(3);  // past the end: nothing more
      EXPECT_EQ(p.NextLine(), nullptr);
    }
  }
  StridedPrefetch empty(buf, 64, 0, 4);  // a last K block has no next one
  EXPECT_EQ(empty.NextLine(), nullptr);
  EXPECT_EQ(empty.Lines(), 0);
  // Issue(n) takes n lines at a time across row ends: 2 rows of 3 lines, in steps of 4.
  StridedPrefetch two(buf, 1024, 192, 2);
  two.Issue(4);
  EXPECT_EQ(two.NextLine(), buf + 1024 + 64);
  two.Issue(4);
  EXPECT_EQ(two.NextLine(), nullptr);
}

TEST(Dispatch, DecodeTileSettingsParseAndApply) {
  const DecodeTileSettings saved = CurrentDecodeTileSettings();
  const DecodeTileSettings base{3072, 512, 0, false, XHalf::kOff};
  auto v = ParseDecodeTileSettings(
      " GLM_CPU_F16_ROW_STREAMS=1  GLM_CPU_PREFETCH_AHEAD=64 GLM_CPU_DECODE_X_HALF=1"
      " GLM_CPU_PREFETCH_NEXT_L1=1",
      base);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_EQ(v->row_bytes, 3072);
  EXPECT_EQ(v->ahead_f16, 64);
  EXPECT_EQ(v->ahead_quantized, 64);
  EXPECT_EQ(v->ahead_f16_tokens3, 64);  // GLM_CPU_PREFETCH_AHEAD sets all three
  EXPECT_TRUE(v->f16_row_streams);
  EXPECT_EQ(v->x_half, XHalf::kOn);
  EXPECT_TRUE(v->next_tile_l1);
  EXPECT_EQ(v->chunk_tokens, -1);  // unset: each path's measured counts
  auto chunks = ParseDecodeTileSettings("GLM_CPU_CHUNK_TOKENS=64", base);
  ASSERT_TRUE(chunks.ok()) << chunks.status().message();
  EXPECT_EQ(chunks->chunk_tokens, 64);
  auto tokens3 = ParseDecodeTileSettings("GLM_CPU_PREFETCH_AHEAD_TOKENS3=2048", base);
  ASSERT_TRUE(tokens3.ok()) << tokens3.status().message();
  EXPECT_EQ(tokens3->ahead_f16_tokens3, 2048);
  EXPECT_EQ(tokens3->ahead_f16, 512);
  EXPECT_TRUE(base.panel_prefetch);  // on unless turned off
  auto panel = ParseDecodeTileSettings("GLM_CPU_PANEL_PREFETCH=0", base);
  ASSERT_TRUE(panel.ok()) << panel.status().message();
  EXPECT_FALSE(panel->panel_prefetch);
  auto automatic = ParseDecodeTileSettings("GLM_CPU_DECODE_X_HALF=auto", base);
  ASSERT_TRUE(automatic.ok()) << automatic.status().message();
  EXPECT_EQ(automatic->x_half, XHalf::kAuto);
  auto same = ParseDecodeTileSettings("default", base);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->ahead_f16, 512);
  EXPECT_FALSE(same->f16_row_streams);
  EXPECT_EQ(same->x_half, XHalf::kOff);
  EXPECT_FALSE(same->next_tile_l1);
  for (const char* bad :
       {"GLM_CPU_PREFETCH_NEXT_L1=2", "GLM_CPU_PREFETCH_NEXT_L1=yes", "GLM_CPU_F16_ROW_STREAMS=2",
        "GLM_CPU_PREFETCH_ROW_BYTES=-1", "GLM_CPU_PREFETCH_AHEAD=", "GLM_CPU_PREFETCH_AHEAD",
        "GLM_CPU_PREFETCH_AHEAD_TOKENS3=x", "GLM_CPU_CHUNK_TOKENS=-1", "GLM_CPU_CHUNK_TOKENS=4k",
        "GLM_OTHER=1", "GLM_CPU_DECODE_X_HALF=yes", "GLM_CPU_DECODE_X_HALF=2",
        "GLM_CPU_PANEL_PREFETCH=2"}) {
    auto r = ParseDecodeTileSettings(bad, base);
    EXPECT_FALSE(r.ok()) << bad;
    const std::string name = std::string(bad).substr(0, std::string(bad).find('='));
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find(name), std::string::npos) << bad;
    }
  }
  // The next Linear calls see a setting at once (LinearWeight::From reads it).
  SetDecodeTileSettings(*v);
  std::vector<Half> w(64 * 32);
  TensorView view;
  view.dtype = DType::kF16;
  view.ndim = 2;
  view.shape[0] = 64;
  view.shape[1] = 32;
  view.data = w.data();
  const LinearWeight on = LinearWeight::From(view, kLinearLanes);
  EXPECT_TRUE(on.row_streams);
  EXPECT_EQ(on.x_half, XHalf::kOn);
  EXPECT_EQ(on.prefetch_ahead, 64);
  EXPECT_TRUE(on.next_tile_l1);
  // fp16 calls of 3 or more tokens take their own distance; fewer tokens and quantized rows not.
  SetDecodeTileSettings(*tokens3);
  for (int64_t T : {1, 2, 3, 4}) {
    LinearWeight t = LinearWeight::From(view, kLinearLanes);
    t.ForTokens(T);
    EXPECT_EQ(t.prefetch_ahead, T >= 3 ? 2048 : 512) << T;
    EXPECT_EQ(t.prefetch, TilePrefetch::kInRow) << T;
  }
  DecodeTileSettings off = *tokens3;
  off.ahead_f16_tokens3 = 0;
  SetDecodeTileSettings(off);
  LinearWeight t0 = LinearWeight::From(view, kLinearLanes);
  t0.ForTokens(4);
  EXPECT_EQ(t0.prefetch, TilePrefetch::kNone);
  std::vector<int8_t> q8(64 * 32);
  std::vector<Half> s8(64, FloatToHalf(1.f));
  TensorView qv = view;
  qv.dtype = DType::kI8;
  qv.data = q8.data();
  qv.scales = s8.data();
  LinearWeight quantized = LinearWeight::From(qv, kLinearLanes);
  // Short quantized rows take the next tile, at the level set (the level is the tile's variant).
  SetDecodeTileSettings(*v);  // rows up to 3072 bytes, into L1
  EXPECT_EQ(LinearWeight::From(qv, kLinearLanes).prefetch, TilePrefetch::kNextTileL1);
  DecodeTileSettings l2 = *v;
  l2.next_tile_l1 = false;
  SetDecodeTileSettings(l2);
  EXPECT_EQ(LinearWeight::From(qv, kLinearLanes).prefetch, TilePrefetch::kNextTile);
  SetDecodeTileSettings(off);
  const LinearWeight before = quantized;
  quantized.ForTokens(4);
  EXPECT_EQ(quantized.prefetch, before.prefetch);
  EXPECT_EQ(quantized.prefetch_ahead, before.prefetch_ahead);
  SetDecodeTileSettings(*chunks);
  EXPECT_EQ(LinearWeight::From(view, kLinearLanes).chunk_tokens, 64);
  SetDecodeTileSettings(*same);
  EXPECT_EQ(LinearWeight::From(view, kLinearLanes).chunk_tokens, -1);
  EXPECT_FALSE(LinearWeight::From(view, kLinearLanes).next_tile_l1);
  EXPECT_FALSE(LinearWeight::From(view, kLinearLanes).row_streams);
  EXPECT_EQ(LinearWeight::From(view, kLinearLanes).x_half, XHalf::kOff);
  SetDecodeTileSettings(saved);
  EXPECT_EQ(F16RowStreams(), saved.f16_row_streams);
  EXPECT_EQ(DecodeXHalf(), saved.x_half);
  EXPECT_EQ(PrefetchNextL1(), saved.next_tile_l1);
}

// One kind's calls through an XHalfChooser with made-up times: Run(n) makes n calls, each taking
// the chosen variant's time, and counts in `halves` those that took x as fp16.
struct ChooserCalls {
  XHalfChooser& c;
  uint64_t kind;
  double fp32_time, fp16_time;
  int halves = 0;
  void Run(int calls) {
    halves = 0;
    for (int i = 0; i < calls; ++i) {
      const bool half = c.Choose(kind);
      halves += half;
      c.Record(kind, half, half ? fp16_time : fp32_time);
    }
  }
};

// XHalfChooser with made-up times: it tries both, takes the faster, keeps trying the other every
// kExplore-th call, and follows a change of which is faster.
TEST(Dispatch, XHalfChooserTakesTheFasterAndFollowsAChange) {
  XHalfChooser c;
  const uint64_t kind = 12345;
  ChooserCalls calls{c, kind, 1.0, 0.9};  // fp16 faster first
  calls.Run(2 * XHalfChooser::kWarmup);
  EXPECT_EQ(calls.halves, XHalfChooser::kWarmup);  // the warm-up alternates
  calls.Run(160);
  EXPECT_EQ(calls.halves, 160 - 160 / int(XHalfChooser::kExplore));  // all but the explorations
  double a32, a16;
  c.Averages(kind, &a32, &a16);
  EXPECT_DOUBLE_EQ(a32, 1.0);
  EXPECT_DOUBLE_EQ(a16, 0.9);
  // The host moves: fp32 becomes the faster. Within a few explorations the choice follows.
  calls.fp16_time = 1.2;
  calls.Run(160);
  EXPECT_LT(calls.halves, 160 / 4);
  calls.Run(160);
  EXPECT_EQ(calls.halves, 160 / int(XHalfChooser::kExplore));
  // A preempted call (100x) moves an average by at most kAlpha of itself, not 25x.
  c.Record(kind, false, 100.0);
  c.Averages(kind, &a32, &a16);
  EXPECT_LE(a32, 1.0 * (1 + XHalfChooser::kAlpha) + 1e-9);
  // Another kind starts its own warm-up and leaves this one's averages alone.
  const uint64_t other = kind + XHalfChooser::kSlots;
  c.Choose(other);
  c.Averages(kind, &a32, &a16);
  EXPECT_GT(a32, 0.0);
  // Many other kinds, each once: the least recently used slots are taken over, this kind's too.
  for (uint64_t k = 1; k <= 4 * XHalfChooser::kSlots; ++k) c.Choose(kind + 1000 * k);
  c.Averages(kind, &a32, &a16);
  EXPECT_EQ(a32 + a16, 0.0);
  c.Reset();
  c.Averages(other, &a32, &a16);
  EXPECT_EQ(a32 + a16, 0.0);
}

// The other variant's time at an exploration stands for it (its older times came before the host
// moved): the choice follows a change at the first exploration after it, not several later.
TEST(Dispatch, XHalfChooserFollowsTheHostAtTheFirstExploration) {
  XHalfChooser c;
  const uint64_t kind = 777;
  ChooserCalls calls{c, kind, 1.0, 1.2};  // fp32 faster first
  calls.Run(2 * XHalfChooser::kWarmup + 160);
  EXPECT_EQ(calls.halves, XHalfChooser::kWarmup + 160 / int(XHalfChooser::kExplore));
  calls.fp16_time = 0.8;                   // the host moves: fp16 becomes the faster
  calls.Run(int(XHalfChooser::kExplore));  // holds one exploration
  calls.Run(100);
  EXPECT_GE(calls.halves, 100 - 100 / int(XHalfChooser::kExplore) - 1);
  double a32, a16;
  c.Averages(kind, &a32, &a16);
  EXPECT_DOUBLE_EQ(a16, 0.8);
}

// A model's decode interleaves its kinds call by call (qkv, dense, up, down, then the next
// layer). They must keep their slots: each takes x as fp16, the faster here, on all but its
// explorations. Kinds that differ only above their low 12 bits (GLM-130B's shapes are multiples
// of 4096) once shared one slot and restarted it at every call, taking fp32 throughout; so did
// any two kinds equal modulo the slot count.
TEST(Dispatch, XHalfChooserKeepsInterleavedKindsApart) {
  std::vector<uint64_t> kinds;
  for (uint64_t k = 1; k <= 5; ++k) kinds.push_back(k << 12);
  for (uint64_t k = 1; k <= 5; ++k) kinds.push_back(7 + k * XHalfChooser::kSlots);
  XHalfChooser c;
  std::vector<int> halves(kinds.size());
  const int rounds = 2 * XHalfChooser::kWarmup + 160;
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < kinds.size(); ++i) {
      const bool half = c.Choose(kinds[i]);
      if (r >= 2 * XHalfChooser::kWarmup) halves[i] += half;
      c.Record(kinds[i], half, half ? 0.9 : 1.0);
    }
  }
  for (size_t i = 0; i < kinds.size(); ++i) {
    EXPECT_EQ(halves[i], 160 - 160 / int(XHalfChooser::kExplore)) << "kind " << kinds[i];
    double a32, a16;
    c.Averages(kinds[i], &a32, &a16);
    EXPECT_DOUBLE_EQ(a16, 0.9) << "kind " << kinds[i];
  }
}

TEST(ThreadPool, NestedCallsRunInlineAndIndicesAreInRange) {
  ThreadPool pool(3);
  std::vector<int> hits(1000);
  std::atomic<int> bad_index{0};
  for (int rep = 0; rep < 200; ++rep) {  // many short jobs: wake-up and completion races
    pool.ParallelFor(1000, 10, [&](int64_t b, int64_t e) {
      const int idx = ThreadPool::CurrentThreadIndex();
      if (idx < 0 || idx >= pool.size()) bad_index++;
      pool.ParallelFor(e - b, 1, [&](int64_t b2, int64_t e2) {  // nested: inline
        for (int64_t i = b + b2; i < b + e2; ++i) hits[i]++;
      });
    });
  }
  EXPECT_EQ(bad_index.load(), 0);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(hits[i], 200) << i;
}

}  // namespace
}  // namespace glm
