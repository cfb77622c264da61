// The quantization codecs against golden tables (one commented case per line), the reference
// dequantization, and convert_tp.py's re-sharding runs against a direct split/merge.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "quant/format.h"
#include "quant/tp.h"
#include "tests/test_util.h"

namespace glm {
namespace {

constexpr double u = 5.9604644775390625e-08;  // 2^-24, the smallest fp16 subnormal

struct Case {
  const char* what;
  int bits, group;              // group 0: row scheme
  std::vector<double> w;        // fp16-exact weights of one row
  std::vector<uint16_t> scale;  // expected fp16 scale bits, one per group
  std::vector<int> q;           // expected quantized values
};

// Expected values computed independently with numpy: scale = f16(f32(absmax) * (f32(1)/f32(qmax))),
// q = round_half_even(f32(f16(f32(w) / f32(scale)))) (tests/golden/make_quant_golden.py does the
// same in torch on whole checkpoints).
// One case per line.
// clang-format off
const Case kCases[] = {
    // absmax 127 -> scale exactly 1; ±x.5 ties go to the even integer.
    {"int8 ties to even", 8, 0, {127, 2.5, -2.5, 3.5, -3.5, 0.5, 1.5, -0.5}, {0x3c00}, {127, 2, -2, 4, -4, 0, 2, 0}},
    // The negative extreme gives -127 (never -128).
    {"int8 -max", 8, 0, {-127, 126, 1, 0}, {0x3c00}, {-127, 126, 1, 0}},
    // All-zero row: the reference divides 0/0; we keep scale 0 and q 0 (dequantizes to 0).
    {"int8 all-zero row", 8, 0, {0, 0, 0, 0}, {0x0000}, {0, 0, 0, 0}},
    // Negative zeros are zeros.
    {"int8 signed zeros", 8, 0, {-0.0, 0, -0.0, 0}, {0x0000}, {0, 0, 0, 0}},
    // Subnormal weights next to a normal absmax quantize to 0.
    {"int8 subnormal weights", 8, 0, {1.0, u, -u, 1000 * u}, {0x2008}, {127, 0, 0, 0}},
    // Subnormal absmax (500 ulps) -> subnormal scale of 4 ulps; 62.5 and 0.5 tie to even, -1.5 -> -2.
    {"int8 subnormal scale", 8, 0, {500 * u, -500 * u, 250 * u, u, 2 * u, -6 * u}, {0x0004}, {125, -125, 62, 0, 0, -2}},
    // absmax 189 ulps: scale rounds down to 1 ulp, q would be 189: saturates at ±127.
    {"int8 saturation", 8, 0, {189 * u, -189 * u, 94 * u, 0}, {0x0001}, {127, -127, 94, 0}},
    // absmax 1 ulp: the scale underflows to 0 -> treated like an all-zero row.
    {"int8 scale underflow", 8, 0, {u, -u, 0, u}, {0x0000}, {0, 0, 0, 0}},
    // w/scale = 3.49907 rounds to fp16 3.5 first, then to 4 (a plain round would give 3).
    {"int8 fp16 rounding of w/s", 8, 0, {100, 2.755859375, -2.755859375, 1}, {0x3a4d}, {127, 4, -4, 1}},
    // int4: absmax 7 -> scale 1; ties to even; -7 is the negative extreme.
    {"int4 ties to even", 4, 0, {7, 2.5, -2.5, 3.5, -7, 0.5, 1.5, -1.5}, {0x3c00}, {7, 2, -2, 4, -7, 0, 2, -2}},
    // int4 all-zero row.
    {"int4 all-zero row", 4, 0, {0, 0, 0, 0}, {0x0000}, {0, 0, 0, 0}},
    // Group-wise: each group of 4 gets its own scale from its own absmax.
    // int4 group scales are rounded to 8 significant bits (fp16(1/7) = 0x3092 -> 0x3090).
    {"int4 groups of 4", 4, 4, {1, -0.5, 0.25, 0.125, 8, 4, -2, 1}, {0x3090, 0x3c90}, {7, -4, 2, 1, 7, 4, -2, 1}},
    // The rounding: ties 0x3404 down and 0x340c up (to even), 0x3bff carries into the exponent;
    // subnormal 0x0004 ties down to 0 (its group quantizes to zeros) and 0x000c up to 0x0010.
    {"int4 group scale rounding", 4, 4,
     {1.7568359375, -1, 0.5, 0.125, -1.7705078125, 1, 0.375, 0, 6.99609375, -3.5, 0.5, 2,
      1.4901161193847656e-06, -9.5367431640625e-07, 0, 5.960464477539063e-08,
      4.827976226806641e-06, -2.86102294921875e-06, 1.430511474609375e-06, 0},
     {0x3400, 0x3410, 0x3c00, 0x0000, 0x0010},
     {7, -4, 2, 0, -7, 4, 1, 0, 7, -4, 0, 2, 0, 0, 0, 0, 5, -3, 2, 0}},
    // int8 groups keep the reference's scales, whatever their low bits.
    {"int8 group scales unrounded", 8, 2, {3, -1, 1.099609375, 0.5}, {0x260c, 0x206f}, {127, -42, 127, 58}},
    // Group-wise int8 with an all-zero group next to a normal one.
    {"int8 zero group", 8, 2, {0, 0, 127, -1}, {0x0000, 0x3c00}, {0, 0, 127, -1}},
};
// clang-format on

TEST(QuantCodec, GoldenTable) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.what);
    const int64_t K = int64_t(c.w.size());
    std::vector<Half> w;
    for (double x : c.w) {
      w.push_back(FloatToHalf(float(x)));
      ASSERT_EQ(double(HalfToFloat(w.back())), x) << "table weight is not fp16-exact";
    }
    const QuantScheme s{.bits = c.bits, .group_size = c.group};
    ASSERT_TRUE(s.CheckShape("t", K).ok());
    std::vector<int8_t> data(size_t(QuantRowBytes(s.dtype(), K)));
    std::vector<Half> scales(size_t(s.ScaleCols(K)));
    QuantizeRows(w.data(), 1, K, s, data.data(), scales.data());
    for (size_t g = 0; g < scales.size(); ++g)
      EXPECT_EQ(scales[g].bits, c.scale[g]) << "group " << g;
    for (int64_t k = 0; k < K; ++k) {
      const int q = c.bits == 8 ? data[k] : Int4At(data.data(), k);
      EXPECT_EQ(q, c.q[size_t(k)]) << "element " << k << " (w = " << c.w[size_t(k)] << ")";
    }
    // The reference dequantization: fp16(q * scale); an all-zero row comes back as zeros.
    TensorView v{.dtype = s.dtype(),
                 .ndim = 2,
                 .shape = {1, K},
                 .data = data.data(),
                 .scales = scales.data(),
                 .group_size = c.group};
    std::vector<float> back(static_cast<size_t>(K));
    DequantizeRow(v, 0, back.data());
    for (int64_t k = 0; k < K; ++k) {
      const float s_k = HalfToFloat(scales[size_t(k / (c.group ? c.group : K))]);
      EXPECT_EQ(back[k], RoundHalf(float(c.q[size_t(k)]) * s_k));
    }
  }
}

// INT4 packing: element 2j in the high nibble, 2j+1 in the low nibble (int4WeightCompression).
TEST(QuantCodec, Int4PackingBytes) {
  const std::vector<double> w = {7, -7, 1, -1, 0, 3, -4, 2};
  std::vector<Half> h;
  for (double x : w) h.push_back(FloatToHalf(float(x)));
  std::vector<int8_t> data(4);
  Half scale;
  QuantizeRows(h.data(), 1, 8, QuantScheme{.bits = 4}, data.data(), &scale);
  EXPECT_EQ(uint8_t(data[0]), 0x79);  // 7 | -7 (0x9)
  EXPECT_EQ(uint8_t(data[1]), 0x1f);  // 1 | -1 (0xf)
  EXPECT_EQ(uint8_t(data[2]), 0x03);  // 0 | 3
  EXPECT_EQ(uint8_t(data[3]), 0xc2);  // -4 (0xc) | 2
}

TEST(QuantCodec, CheckShape) {
  const QuantScheme int4{.bits = 4}, int8_g128{.bits = 8, .group_size = 128},
      int8_g64{.bits = 8, .group_size = 64}, int5{.bits = 5},
      int4_g128{.bits = 4, .group_size = 128};
  EXPECT_TRUE(int4.CheckShape("w", 256).ok());
  EXPECT_FALSE(int4.CheckShape("w", 255).ok());       // odd K cannot be packed
  EXPECT_FALSE(int8_g128.CheckShape("w", 320).ok());  // 128 does not divide 320
  EXPECT_TRUE(int8_g64.CheckShape("w", 320).ok());
  EXPECT_FALSE(int5.CheckShape("w", 320).ok());
  EXPECT_EQ(int4_g128.ToString(), "int4 group 128");
}

// Error statistics: int8 row quantization of N(0, 0.02) weights has an SNR near 6.02·8 - 9.5 dB
// for Gaussian data with absmax ≈ 4σ (the step is absmax/127).
TEST(QuantCodec, ErrorStatistics) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0, 0.02f);
  const int64_t N = 64, K = 1024;
  std::vector<Half> w(size_t(N * K));
  for (Half& h : w) h = FloatToHalf(nd(rng));
  for (int bits : {8, 4}) {
    const QuantScheme s{.bits = bits};
    std::vector<int8_t> data(size_t(N * QuantRowBytes(s.dtype(), K)));
    std::vector<Half> scales(static_cast<size_t>(N));
    QuantizeRows(w.data(), N, K, s, data.data(), scales.data());
    TensorView v{.dtype = s.dtype(),
                 .ndim = 2,
                 .shape = {N, K},
                 .data = data.data(),
                 .scales = scales.data()};
    QuantError e;
    AccumulateQuantError(w.data(), v, &e);
    EXPECT_EQ(e.rows, N);
    EXPECT_LE(e.mean_row_rel(), e.max_row_rel);
    // Uniform step Δ = absmax/qmax: noise Δ²/12; absmax of 1024 Gaussians ≈ 3.2σ.
    const double step = 3.2 / QuantMax(bits), snr = 10 * std::log10(12 / (step * step));
    EXPECT_NEAR(e.snr_db(), snr, 2.0) << "bits " << bits;
  }
}

// Direct convert_tp.py split of a merged [R, K] tensor (tests/golden/glm_reference.py
// split_state_dict) for checking TpReshardRuns.
std::vector<float> Split(SatMergeRule rule, const std::vector<float>& m, int64_t R, int64_t K,
                         int tp, int r) {
  std::vector<float> out;
  if (rule == SatMergeRule::kReplicated) return m;
  if (rule == SatMergeRule::kCatDim1) {
    for (int64_t i = 0; i < R; ++i) {
      for (int64_t c = r * K / tp; c < (r + 1) * K / tp; ++c) out.push_back(m[i * K + c]);
    }
    return out;
  }
  auto rows = [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) {
      for (int64_t c = 0; c < K; ++c) out.push_back(m[i * K + c]);
    }
  };
  if (rule == SatMergeRule::kCatDim0) {
    rows(r * R / tp, (r + 1) * R / tp);
  } else {  // chunk(2 tp) -> cat(chunks[r], chunks[tp + r])
    const int64_t c = R / (2 * tp);
    rows(r * c, (r + 1) * c);
    rows((tp + r) * c, (tp + r + 1) * c);
  }
  return out;
}

TEST(TpReshard, RunsMatchConvertTpSplits) {
  const int64_t R = 48, K = 24;
  std::vector<float> merged(size_t(R * K));
  std::iota(merged.begin(), merged.end(), 0.f);
  for (SatMergeRule rule : {SatMergeRule::kCatDim0, SatMergeRule::kCatDim1, SatMergeRule::kGlu,
                            SatMergeRule::kReplicated}) {
    for (int tp_in : {1, 2, 4, 3}) {
      std::vector<std::vector<float>> src;
      for (int s = 0; s < tp_in; ++s) src.push_back(Split(rule, merged, R, K, tp_in, s));
      for (int tp_out : {1, 2, 4, 8}) {
        for (int r = 0; r < tp_out; ++r) {
          const std::vector<float> want = Split(rule, merged, R, K, tp_out, r);
          const auto shape = TpShardShape(rule, {R, K}, tp_out);
          const int64_t cols = shape[1];
          // Whole shard, then in blocks of 5 rows: both must assemble the same rows.
          for (int64_t block : {shape[0], int64_t(5)}) {
            std::vector<float> got(want.size(), -1.f);
            for (int64_t r0 = 0; r0 < shape[0]; r0 += block) {
              const int64_t n = std::min(block, shape[0] - r0);
              for (const TpRun& run : TpReshardRuns(rule, {R, K}, tp_in, tp_out, r, r0, n)) {
                for (int64_t i = 0; i < run.n; ++i) {
                  got[size_t(r0 * cols + run.dst + i)] =
                      src[size_t(run.src_rank)][size_t(run.src + i)];
                }
              }
            }
            ASSERT_EQ(got, want) << "rule " << int(rule) << " tp " << tp_in << " -> " << tp_out
                                 << " rank " << r << " block " << block;
          }
        }
      }
    }
  }
}

TEST(TpReshard, CheckSplit) {
  EXPECT_TRUE(CheckTpSplit("t", SatMergeRule::kGlu, {640, 256}, 2).ok());
  EXPECT_FALSE(CheckTpSplit("t", SatMergeRule::kGlu, {6, 256}, 2).ok());  // halves of 3 rows
  EXPECT_FALSE(CheckTpSplit("t", SatMergeRule::kCatDim1, {256, 320}, 3).ok());
  EXPECT_TRUE(CheckTpSplit("t", SatMergeRule::kReplicated, {256}, 8).ok());
}

}  // namespace
}  // namespace glm

namespace glm {
namespace {

// The codec's fast fp16 rounding equals the exact conversion: every fp16 value, the midpoints
// between neighbours (ties), their neighbours, the overflow boundary and random floats.
TEST(QuantCodec, FastRoundHalfIsExact) {
  auto check = [](float x) {
    const float want = RoundHalf(x), got = RoundHalfForTest(x);
    ASSERT_TRUE(FloatBits(want) == FloatBits(got) || (want != want && got != got))
        << std::hexfloat << x << ": " << want << " vs " << got;
  };
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const float a = HalfToFloat(Half{uint16_t(h)}), b = HalfToFloat(Half{uint16_t(h + 1)});
    for (float x :
         {a, (a + b) / 2, std::nextafter((a + b) / 2, 0.f), std::nextafter((a + b) / 2, 1e9f)}) {
      check(x);
      check(-x);
    }
  }
  for (float x : {65504.f, 65519.f, 65520.f, 65536.f, 1e30f, 6.1035156e-05f, 6.1e-05f}) check(x);
  std::mt19937 rng(7);
  for (int i = 0; i < 1000000; ++i) check(BitsFloat(uint32_t(rng())));  // any float, NaNs too
}

}  // namespace
}  // namespace glm
