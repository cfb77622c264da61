// Every CUDA kernel (kernels/cuda) against the CPU reference kernel (kernels/cpu) on the same
// inputs, over odd sizes and misaligned pointers. Tolerances: elementwise ops (rotary, GeGLU,
// DeepNorm residual, embedding, dequantization) must be bit-identical; reductions may differ by
// their fp32 summation order: LayerNorm one ulp plus |γ|·ulp(n); linear layers one ulp plus
// K·2^-24·Σ|x·w| (plus one ulp of the fp32 sum where the quantized path rounds it first);
// attention one ulp plus max|v|·(2^-10 + 2(l+1)·ulp(max|s|)) (a score that rounds the other way
// moves its probability by up to (l+1)·ulp(s), relative). Each check prints how much was
// bit-identical. Skips with the reason when no CUDA device is present.
#include <gtest/gtest.h>

#if GLM_HAVE_CUDA

#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "kernels/cuda/kernels.h"
#include "quant/format.h"
#include "runtime/device_cuda.h"
#include "tests/test_util.h"

namespace glm {
namespace {

using test::HalfUlp;

std::vector<Half> RandomHalf(size_t n, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<Half> v(n);
  for (auto& h : v) h = FloatToHalf(dist(rng));
  return v;
}

DeviceBuffer Up(const std::vector<Half>& v) { return ToDevice(v, "test input").value(); }
template <typename T>
DeviceBuffer UpT(const std::vector<T>& v) {
  return ToDevice(v, "test input").value();
}
std::vector<Half> Down(const DeviceBuffer& b, size_t n) { return FromDevice<Half>(b.data(), n); }
std::vector<Half> Down(const Half* p, size_t n) { return FromDevice<Half>(p, n); }

// Exact equality of fp16 bits; the failure names the first mismatch.
::testing::AssertionResult BitIdentical(const std::vector<Half>& got, const std::vector<Half>& want,
                                        const std::string& what) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << what << ": sizes differ";
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].bits != want[i].bits) {
      if (first < 0) first = int64_t(i);
      ++bad;
    }
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << got.size() << " differ; first at " << first
         << ": expected " << HalfToFloat(want[first]) << StrFormat(" (0x%04x)", want[first].bits)
         << ", got " << HalfToFloat(got[first]) << StrFormat(" (0x%04x)", got[first].bits);
}

::testing::AssertionResult Close(const std::vector<Half>& got, const std::vector<Half>& want,
                                 const std::function<double(size_t, double)>& tol,
                                 const std::string& what) {
  int64_t same = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i) same += got[i].bits == want[i].bits;
  std::printf("  %-44s %7.3f%% bit-identical\n", what.c_str(),
              want.empty() ? 100.0 : 100.0 * double(same) / double(want.size()));
  return test::AllClose(test::ToDouble(got.data(), got.size()),
                        test::ToDouble(want.data(), want.size()), tol, what);
}

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    Status st = CudaDeviceAvailable();
    if (!st.ok()) GTEST_SKIP() << st.message();
    stream_ = CudaStream::Create();
    CUBLAS_CHECK(cublasCreate(&cublas_));
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_.get()));
    CUBLAS_CHECK(cublasSetMathMode(
        cublas_,
        cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
    f32_ = DeviceBuffer::Allocate(kScratch * 4, "f32 scratch").value();
    deq_ = DeviceBuffer::Allocate(kScratch * 2, "deq scratch").value();
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&cc_major_, cudaDevAttrComputeCapabilityMajor, dev));
  }
  void TearDown() override {
    gpu::SetQuantGemvMmaConfig({});  // tests that vary it leave the default behind
    if (cublas_) CUBLAS_CHECK(cublasDestroy(cublas_));
  }
  // A GEMV path to test, with the tensor-core variant it runs.
  struct GemvPath {
    gpu::QuantGemvPath path;
    gpu::QuantGemvMmaConfig mma;
    std::string Name() const {
      return path == gpu::QuantGemvPath::kTensorCore
                 ? StrFormat("tensor-core (%s)", mma.ToString().c_str())
                 : gpu::QuantGemvPathName(path);
    }
  };
  // The CUDA-core GEMV and, where `tensor_core`, every tensor-core variant.
  static std::vector<GemvPath> GemvPaths(bool tensor_core) {
    std::vector<GemvPath> paths = {{gpu::QuantGemvPath::kCudaCore, {}}};
    if (!tensor_core) return paths;
    for (int rows : {1, 2}) {
      for (int steps : {1, 2}) {
        paths.push_back({gpu::QuantGemvPath::kTensorCore, {.steps = steps, .row_tiles = rows}});
      }
    }
    return paths;
  }
  void Sync() { CUDA_CHECK(cudaStreamSynchronize(stream_.get())); }
  gpu::LinearContext Lc(gpu::QuantGemvPath path = gpu::QuantGemvPath::kAuto,
                        int64_t f32_elems = kScratch, int64_t deq_elems = kScratch) {
    return gpu::LinearContext{.cublas = cublas_,
                              .stream = stream_.get(),
                              .f32 = f32_.as<float>(),
                              .f32_elems = f32_elems,
                              .deq = deq_.as<Half>(),
                              .deq_elems = deq_elems,
                              .gemv_path = path};
  }

  static constexpr int64_t kScratch = 1 << 20;
  CudaStream stream_;
  cublasHandle_t cublas_ = nullptr;
  DeviceBuffer f32_, deq_;
  int cc_major_ = 0;
};

// ---- LayerNorm (§1.4) ----
TEST_F(CudaKernels, LayerNormMatchesCpu) {
  // 1, 7: the general kernel; 256, 1000, 12288: a row in registers, one piece per thread;
  // 8200, 16384: two pieces per thread (8200: the last thread has one).
  for (int64_t C : {1, 7, 256, 1000, 12288, 8200, 16384}) {
    const int64_t T = 5;
    auto x = RandomHalf(T * C, 2.0f, 1 + uint32_t(C));
    for (int64_t i = 0; i < T * C; i += 3) x[i] = FloatToHalf(HalfToFloat(x[i]) + 10.0f);
    auto gamma = RandomHalf(C, 1.0f, 2), beta = RandomHalf(C, 0.5f, 3);
    std::vector<Half> want(T * C);
    LayerNorm(x.data(), T, C, gamma.data(), beta.data(), 1e-5f, want.data());
    DeviceBuffer dx = Up(x), dg = Up(gamma), db = Up(beta), dout = Up(std::vector<Half>(T * C));
    gpu::LayerNorm(dx.as<Half>(), T, C, dg.as<Half>(), db.as<Half>(), 1e-5f, dout.as<Half>(),
                   stream_.get());
    Sync();
    auto got = Down(dout, T * C);
    // n = fp16(invstd·(x−μ)) may round the other way: |γ|·ulp(n), plus one ulp of the output.
    std::vector<double> bound(T * C);
    for (int64_t t = 0; t < T; ++t) {
      double mean = 0, var = 0;
      for (int64_t c = 0; c < C; ++c) mean += HalfToFloat(x[t * C + c]);
      mean /= double(C);
      for (int64_t c = 0; c < C; ++c) var += std::pow(HalfToFloat(x[t * C + c]) - mean, 2);
      const double invstd = 1 / std::sqrt(var / double(C) + 1e-5);
      for (int64_t c = 0; c < C; ++c) {
        bound[t * C + c] =
            std::fabs(HalfToFloat(gamma[c])) * HalfUlp((HalfToFloat(x[t * C + c]) - mean) * invstd);
      }
    }
    EXPECT_TRUE(Close(
        got, want, [&](size_t i, double e) { return HalfUlp(e) + bound[i]; },
        StrFormat("LayerNorm C=%lld", (long long)C)));
    // A row's result does not depend on the other rows (batch invariance).
    gpu::LayerNorm(dx.as<Half>() + 2 * C, 1, C, dg.as<Half>(), db.as<Half>(), 1e-5f,
                   dout.as<Half>(), stream_.get());
    Sync();
    auto one = Down(dout, C);
    EXPECT_TRUE(BitIdentical(one, std::vector<Half>(got.begin() + 2 * C, got.begin() + 3 * C),
                             "LayerNorm row 2 alone"));
  }
}

// ---- Rotary (§1.6): the uploaded tables are the CPU's; every output bit-identical ----
TEST_F(CudaKernels, RotaryIsBitIdentical) {
  for (int D : {2, 6, 128}) {
    const int64_t T = 11;
    const int H = 3, max_seq = 2048;
    RotaryTable table = RotaryTable::Build(D, max_seq);
    auto qkv = RandomHalf(T * H * 3 * D, 1.0f, 7 + D);
    std::vector<int32_t> pos(T);
    std::mt19937 rng(5);
    for (auto& p : pos) p = int32_t(rng() % max_seq);
    pos[0] = max_seq - 1;
    std::vector<Half> want = qkv;
    ApplyRotary(want.data(), T, H, D, pos.data(), table);
    DeviceBuffer dq = Up(qkv), dp = UpT(pos), dcos = Up(table.cos), dsin = Up(table.sin);
    gpu::ApplyRotary(
        dq.as<Half>(), T, H, D, dp.as<int32_t>(),
        {.cos = dcos.as<Half>(), .sin = dsin.as<Half>(), .head_dim = D, .max_seq = max_seq},
        stream_.get());
    Sync();
    EXPECT_TRUE(BitIdentical(Down(dq, qkv.size()), want, StrFormat("rotary D=%d", D)));
  }
}

// ---- GeGLU (§1.9): every fp16 gate value, through the table built by the CPU kernel ----
TEST_F(CudaKernels, GeGluIsBitIdenticalForEveryGateValue) {
  const int64_t F = 4096, T = 16;  // T·F = 65536 gates: each fp16 bit pattern once
  std::vector<Half> u(T * 2 * F);
  auto lin = RandomHalf(T * F, 3.0f, 9);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t f = 0; f < F; ++f) {
      u[t * 2 * F + f] = lin[t * F + f];
      u[t * 2 * F + F + f] = Half{uint16_t(t * F + f)};
    }
  }
  std::vector<Half> want(T * F);
  GeGlu(u.data(), T, F, want.data());
  DeviceBuffer du = Up(u), dt = Up(gpu::BuildGeluTable()), dg = Up(std::vector<Half>(T * F));
  gpu::GeGlu(du.as<Half>(), T, F, dt.as<Half>(), dg.as<Half>(), stream_.get());
  Sync();
  auto got = Down(dg, T * F);
  // NaN payloads may differ; compare NaN-ness there.
  for (int64_t i = 0; i < T * F; ++i) {
    if (std::isnan(HalfToFloat(want[i])) && std::isnan(HalfToFloat(got[i]))) got[i] = want[i];
  }
  EXPECT_TRUE(BitIdentical(got, want, "GeGLU"));
}

// ---- DeepNorm residual (§1.3) ----
TEST_F(CudaKernels, DeepNormResidualIsBitIdentical) {
  const int64_t n = 100003;
  auto a = RandomHalf(n, 3.0f, 11), b = RandomHalf(n, 40.0f, 12);
  const float alpha = ModelConfig::Glm130B().Alpha();
  std::vector<Half> want(n);
  DeepNormResidual(a.data(), b.data(), alpha, n, want.data());
  DeviceBuffer da = Up(a), db = Up(b), dout = Up(std::vector<Half>(n));
  gpu::DeepNormResidual(da.as<Half>(), db.as<Half>(), alpha, n, dout.as<Half>(), stream_.get());
  Sync();
  EXPECT_TRUE(BitIdentical(Down(dout, n), want, "DeepNorm residual"));
}

// ---- Embedding (§1.2) and the separate bias add (§3) ----
TEST_F(CudaKernels, EmbeddingCopiesRows) {
  for (int64_t C : {8, 13, 256}) {
    const int64_t V = 1000;
    auto table = RandomHalf(V * C, 1.0f, 13);
    std::vector<int32_t> ids = {0, 999, 5, 5, 321};
    const int64_t T = int64_t(ids.size());
    TensorView tv{.dtype = DType::kF16, .ndim = 2, .shape = {V, C}, .data = table.data()};
    std::vector<Half> want(T * C);
    ASSERT_TRUE(Embedding(tv, ids.data(), T, want.data()).ok());
    DeviceBuffer dt = Up(table), di = UpT(ids), dout = Up(std::vector<Half>(T * C + 1));
    for (int offset : {0, 1}) {  // a misaligned output takes the element-wise path
      gpu::Embedding(dt.as<Half>(), V, C, di.as<int32_t>(), T, dout.as<Half>() + offset,
                     stream_.get());
      Sync();
      EXPECT_TRUE(BitIdentical(Down(dout.as<Half>() + offset, T * C), want,
                               StrFormat("embedding C=%lld offset %d", (long long)C, offset)));
    }
  }
}

TEST_F(CudaKernels, AddBiasRoundsOnce) {
  const int64_t T = 3, N = 77;
  auto out = RandomHalf(T * N, 5.0f, 14), bias = RandomHalf(N, 1.0f, 15);
  std::vector<Half> want(T * N);
  for (int64_t i = 0; i < T * N; ++i) {
    want[i] = FloatToHalf(HalfToFloat(out[i]) + HalfToFloat(bias[i % N]));
  }
  DeviceBuffer d = Up(out), db = Up(bias);
  gpu::AddBias(d.as<Half>(), T, N, db.as<Half>(), stream_.get());
  Sync();
  EXPECT_TRUE(BitIdentical(Down(d, T * N), want, "bias add"));
}

// ---- Attention (§1.7, §1.8): prefill with a bidirectional prefix, then decode steps ----
TEST_F(CudaKernels, AttentionMatchesCpuForPrefillAndDecode) {
  const int H = 3, D = 128;
  const int64_t HD = int64_t(H) * D, S = 48, T0 = 37, prefix = 20;
  for (int layer : {0, 69}) {
    auto qkv_all = RandomHalf(S * H * 3 * D, 1.0f, 21 + layer);
    std::vector<Half> kc(S * HD), vc(S * HD);  // the GPU's [S, H, D] order
    // The CPU reference's cache (its head-major layout, kernels/cpu/kernels.h).
    std::vector<Half> kcpu(KvLayerHalves(S, H, D)), vcpu(KvLayerHalves(S, H, D));
    DeviceBuffer dq = Up(qkv_all), dk = Up(kc), dv = Up(kc), dctx = Up(std::vector<Half>(S * HD));
    std::vector<float> scratch(AttentionScratchFloats(S));
    // Steps: the prefill of T0 rows, then one row at a time.
    for (int64_t start = 0; start < S;) {
      const int64_t T = start == 0 ? T0 : 1;
      const Half* q = qkv_all.data() + start * H * 3 * D;
      for (int64_t t = 0; t < T; ++t) {
        for (int h = 0; h < H; ++h) {
          const Half* src = q + (t * H + h) * 3 * D;
          std::copy(src + D, src + 2 * D, kc.begin() + (start + t) * HD + h * D);
          std::copy(src + 2 * D, src + 3 * D, vc.begin() + (start + t) * HD + h * D);
        }
      }
      AppendKv(q, T, H, D, start, S, kcpu.data(), vcpu.data());
      std::vector<Half> want(T * HD);
      Attention(q, T, start, H, D, kcpu.data(), vcpu.data(), S, prefix, layer, want.data(),
                scratch.data());
      const Half* dqs = dq.as<Half>() + start * H * 3 * D;
      gpu::AppendKv(dqs, T, H, D, start, dk.as<Half>(), dv.as<Half>(), stream_.get());
      gpu::Attention(dqs, T, start, H, D, dk.as<Half>(), dv.as<Half>(), prefix, layer,
                     dctx.as<Half>(), stream_.get());
      Sync();
      if (start == 0) {
        EXPECT_TRUE(BitIdentical(
            Down(dk, T * HD), std::vector<Half>(kc.begin(), kc.begin() + T * HD), "appended keys"));
      }
      // Tolerance per element: see the file comment. max|s| per (row, head) from the inputs.
      const double r = 1.0 / (std::sqrt(double(D)) * (layer + 1));
      std::vector<double> tol(T * HD);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t nk = std::max(prefix, start + t + 1);
        for (int h = 0; h < H; ++h) {
          double smax = 0;
          std::vector<double> vmax(D, 0);
          for (int64_t j = 0; j < nk; ++j) {
            double s = 0;
            for (int d = 0; d < D; ++d) {
              s +=
                  HalfToFloat(q[(t * H + h) * 3 * D + d]) * r * HalfToFloat(kc[j * HD + h * D + d]);
              vmax[d] = std::max(vmax[d], double(std::fabs(HalfToFloat(vc[j * HD + h * D + d]))));
            }
            smax = std::max(smax, std::fabs(s));
          }
          for (int d = 0; d < D; ++d) {
            tol[t * HD + h * D + d] =
                vmax[d] * (std::ldexp(1.0, -10) + 2.0 * (layer + 1) * HalfUlp(smax));
          }
        }
      }
      EXPECT_TRUE(Close(
          Down(dctx, T * HD), want, [&](size_t i, double e) { return HalfUlp(e) + tol[i]; },
          StrFormat("attention layer %d start %lld T %lld", layer, (long long)start,
                    (long long)T)));
      start += T;
      if (start > T0 + 3) break;  // a few decode steps are enough
    }
  }
}

// ---- Linear layers (§1.3, §3) ----

struct HostWeight {
  TensorView view;  // host pointers into the vectors below
  std::vector<Half> f16;
  std::vector<int8_t> codes;
  std::vector<Half> scales;
};

HostWeight MakeWeight(DType dtype, int64_t N, int64_t K, int group, uint32_t seed) {
  HostWeight w;
  w.view = TensorView{.dtype = dtype, .ndim = 2, .shape = {N, K}, .group_size = group};
  std::mt19937 rng(seed);
  if (dtype == DType::kF16) {
    w.f16 = RandomHalf(N * K, 0.05f, seed);
    w.view.data = w.f16.data();
    return w;
  }
  const int64_t row_bytes = QuantRowBytes(dtype, K);
  w.codes.resize(N * row_bytes);
  for (auto& c : w.codes) {
    c = dtype == DType::kI8
            ? int8_t(int(rng() % 255) - 127)
            : int8_t(uint8_t(((int(rng() % 15) - 7) << 4) | ((int(rng() % 15) - 7) & 0xF)));
  }
  const int64_t groups = group > 0 ? K / group : 1;
  w.scales = RandomHalf(N * groups, 0.01f, seed + 1);
  for (auto& s : w.scales) s = FloatToHalf(std::fabs(HalfToFloat(s)) + 1e-3f);
  w.view.data = w.codes.data();
  w.view.scales = w.scales.data();
  return w;
}

// The same weight in device memory.
struct DeviceWeight {
  DeviceBuffer data, scales;
  TensorView view;
};
DeviceWeight ToDeviceWeight(const HostWeight& h) {
  DeviceWeight d;
  d.view = h.view;
  if (h.view.dtype == DType::kF16) {
    d.data = ToDevice(h.f16, "weight").value();
  } else {
    d.data = ToDevice(h.codes, "weight").value();
    d.scales = ToDevice(h.scales, "scales").value();
    d.view.scales = d.scales.as<Half>();
  }
  d.view.data = d.data.data();
  return d;
}

// One ulp of the output, one ulp of the fp32 sum where it is rounded before the bias (quantized),
// and the fp32 accumulation bound K·2^-24·Σ|x·w|.
std::vector<double> LinearTolerance(const std::vector<Half>& x, int64_t T, const TensorView& w,
                                    const std::vector<Half>& want) {
  const int64_t N = w.rows(), K = w.cols();
  std::vector<double> tol(T * N);
  std::vector<float> row(K);
  for (int64_t n = 0; n < N; ++n) {
    DequantizeRow(w, n, row.data());
    for (int64_t t = 0; t < T; ++t) {
      double mag = 0, sum = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = double(HalfToFloat(x[t * K + k])) * row[k];
        mag += std::fabs(p);
        sum += p;
      }
      tol[t * N + n] = HalfUlp(HalfToFloat(want[t * N + n])) + double(K) * std::ldexp(mag, -24) +
                       (w.dtype != DType::kF16 ? HalfUlp(sum) : 0.0);
    }
  }
  return tol;
}

struct LinearCase {
  DType dtype;
  int64_t T, N, K;
  int group;
  bool bias;
};

TEST_F(CudaKernels, LinearMatchesCpu) {
  std::vector<LinearCase> cases;
  for (bool bias : {false, true}) {
    for (int64_t T : {1, 3, 9, 40}) {
      cases.push_back({DType::kF16, T, 17, 100, 0, bias});
      cases.push_back({DType::kF16, T, 300, 1024, 0, bias});
    }
  }
  for (DType dt : {DType::kI8, DType::kI4}) {
    for (int64_t T : {1, 2, 5, 8, 9, 33}) {
      cases.push_back({dt, T, 17, 320, 0, true});  // K not a multiple of the int4 tile
      cases.push_back({dt, T, 48, 1024, 0, true});
      cases.push_back({dt, T, 33, 1024, 64, false});  // group-wise
      cases.push_back({dt, T, 16, 1024, 32, true});
      cases.push_back({dt, T, 5, 1000, 0, true});  // K not a multiple of 8
      cases.push_back({dt, T, 7, 250, 50, true});  // groups not a multiple of 8
    }
  }
  uint32_t seed = 100;
  for (const LinearCase& c : cases) {
    HostWeight hw = MakeWeight(c.dtype, c.N, c.K, c.group, ++seed);
    auto x = RandomHalf(c.T * c.K, 1.0f, ++seed);
    auto bias = RandomHalf(c.N, 0.5f, ++seed);
    std::vector<Half> want(c.T * c.N);
    std::vector<float> scratch(c.T * c.K);
    Linear(x.data(), c.T, hw.view, c.bias ? bias.data() : nullptr, want.data(), scratch.data());
    const auto tol = LinearTolerance(x, c.T, hw.view, want);
    DeviceWeight dw = ToDeviceWeight(hw);
    DeviceBuffer dx = Up(x), db = Up(bias), dout = Up(std::vector<Half>(c.T * c.N));
    std::vector<GemvPath> paths = {{gpu::QuantGemvPath::kAuto, {}}};
    if (c.dtype != DType::kF16 && c.T <= gpu::kMaxGemvTokens) {
      const int64_t tile = c.dtype == DType::kI4 ? 128 : 64, lane = c.dtype == DType::kI4 ? 32 : 16;
      const int64_t G = c.group ? c.group : c.K;
      paths = GemvPaths(cc_major_ >= 8 && c.K % tile == 0 && G % lane == 0);
    }
    for (const GemvPath& p : paths) {
      gpu::SetQuantGemvMmaConfig(p.mma);
      CUDA_CHECK(cudaMemset(dout.data(), 0xff, dout.size()));  // poison: every output written
      gpu::Linear(dx.as<Half>(), c.T, dw.view, c.bias ? db.as<Half>() : nullptr, dout.as<Half>(),
                  Lc(p.path));
      Sync();
      EXPECT_TRUE(Close(
          Down(dout, c.T * c.N), want, [&](size_t i, double) { return tol[i]; },
          StrFormat("%s T=%lld N=%lld K=%lld G=%d%s %s", DTypeName(c.dtype), (long long)c.T,
                    (long long)c.N, (long long)c.K, c.group, c.bias ? " +b" : "",
                    p.Name().c_str())));
    }
  }
}

// fp16(acc + b) with one rounding, not fp16(fp16(acc) + b): acc = 1 + 2^-11 is a tie that rounds
// down to 1; with b = 2^-12 added first the sum rounds up to 1 + 2^-10.
TEST_F(CudaKernels, Fp16LinearAddsTheBiasBeforeItsOnlyRounding) {
  const int64_t T = 1, N = 1, K = 2;
  std::vector<Half> x = {FloatToHalf(1.0f), FloatToHalf(1.0f)};
  std::vector<Half> w = {FloatToHalf(1.0f), FloatToHalf(std::ldexp(1.0f, -11))};
  std::vector<Half> b = {FloatToHalf(std::ldexp(1.0f, -12))};
  DeviceBuffer dx = Up(x), dw = Up(w), db = Up(b), dout = Up(std::vector<Half>(1));
  TensorView wv{.dtype = DType::kF16, .ndim = 2, .shape = {N, K}, .data = dw.data()};
  gpu::Linear(dx.as<Half>(), T, wv, db.as<Half>(), dout.as<Half>(), Lc());
  Sync();
  EXPECT_EQ(Down(dout, 1)[0].bits, FloatToHalf(1.0f + std::ldexp(1.0f, -10)).bits);
  std::vector<Half> want(1);
  std::vector<float> scratch(2);
  TensorView hv{.dtype = DType::kF16, .ndim = 2, .shape = {N, K}, .data = w.data()};
  Linear(x.data(), T, hv, b.data(), want.data(), scratch.data());
  EXPECT_EQ(want[0].bits, FloatToHalf(1.0f + std::ldexp(1.0f, -10)).bits);
}

// Small scratch buffers force several column blocks (f16 + bias) and row blocks (quantized
// prefill). cuBLAS may pick another algorithm for another block width, so both are checked
// against the CPU with the linear tolerance rather than against each other.
TEST_F(CudaKernels, LinearInBlocksMatchesCpu) {
  for (DType dt : {DType::kF16, DType::kI4}) {
    const int64_t T = 12, N = 203, K = 256;
    HostWeight hw = MakeWeight(dt, N, K, 0, 77);
    auto x = RandomHalf(T * K, 1.0f, 78), bias = RandomHalf(N, 0.5f, 79);
    std::vector<Half> want(T * N);
    std::vector<float> scratch(T * K);
    Linear(x.data(), T, hw.view, bias.data(), want.data(), scratch.data());
    const auto tol = LinearTolerance(x, T, hw.view, want);
    DeviceWeight dw = ToDeviceWeight(hw);
    DeviceBuffer dx = Up(x), db = Up(bias), dout = Up(std::vector<Half>(T * N));
    for (int64_t blocks : {int64_t(1), int64_t(24)}) {  // one block, or blocks of 24 columns/rows
      const auto lc = blocks == 1 ? Lc() : Lc(gpu::QuantGemvPath::kAuto, T * blocks, K * blocks);
      CUDA_CHECK(cudaMemset(dout.data(), 0xff, dout.size()));
      gpu::Linear(dx.as<Half>(), T, dw.view, db.as<Half>(), dout.as<Half>(), lc);
      Sync();
      EXPECT_TRUE(Close(
          Down(dout, T * N), want, [&](size_t i, double) { return tol[i]; },
          StrFormat("%s, blocks of %lld", DTypeName(dt), (long long)blocks)));
    }
  }
}

// Decode: a token's output does not depend on the other tokens of the GEMV (batched decode gives
// each sequence the result it would get alone), on either path; misaligned x takes the
// element-wise CUDA-core loop and still matches.
TEST_F(CudaKernels, QuantGemvIsBatchInvariantAndHandlesMisalignedInput) {
  for (DType dt : {DType::kI8, DType::kI4}) {
    const int64_t N = 40, K = 512;
    HostWeight hw = MakeWeight(dt, N, K, 128, 31);
    DeviceWeight dw = ToDeviceWeight(hw);
    auto x = RandomHalf(8 * K + 1, 1.0f, 32);
    DeviceBuffer dx = Up(x), d8 = Up(std::vector<Half>(8 * N)), d1 = Up(std::vector<Half>(N));
    for (const GemvPath& p : GemvPaths(cc_major_ >= 8)) {
      gpu::SetQuantGemvMmaConfig(p.mma);
      gpu::QuantGemv(dx.as<Half>(), 8, dw.view, nullptr, d8.as<Half>(), p.path, stream_.get());
      gpu::QuantGemv(dx.as<Half>() + 5 * K, 1, dw.view, nullptr, d1.as<Half>(), p.path,
                     stream_.get());
      Sync();
      auto all = Down(d8, 8 * N);
      EXPECT_TRUE(BitIdentical(Down(d1, N),
                               std::vector<Half>(all.begin() + 5 * N, all.begin() + 6 * N),
                               StrFormat("%s token 5 alone, %s", DTypeName(dt), p.Name().c_str())));
    }
    gpu::SetQuantGemvMmaConfig({});
    // x one half past an aligned address.
    std::vector<Half> xm(x.begin() + 1, x.begin() + 1 + 3 * K), want(3 * N);
    std::vector<float> scratch(3 * K);
    Linear(xm.data(), 3, hw.view, nullptr, want.data(), scratch.data());
    gpu::QuantGemv(dx.as<Half>() + 1, 3, dw.view, nullptr, d8.as<Half>(), gpu::QuantGemvPath::kAuto,
                   stream_.get());
    Sync();
    const auto tol = LinearTolerance(xm, 3, hw.view, want);
    EXPECT_TRUE(Close(
        Down(d8, 3 * N), want, [&](size_t i, double) { return tol[i]; },
        StrFormat("%s misaligned x", DTypeName(dt))));
  }
}

// DeepNorm's residual fused into a linear layer (the GEMV's epilogue, or a separate kernel on the
// other paths) gives the bits of Linear followed by DeepNormResidual, on every path and variant.
TEST_F(CudaKernels, LinearWithResidualIsLinearThenResidual) {
  const float alpha = 11.83f;
  for (DType dt : {DType::kF16, DType::kI8, DType::kI4}) {
    for (int64_t T : {1, 5, 12}) {
      const int64_t N = 40, K = 256;
      HostWeight hw = MakeWeight(dt, N, K, 0, 90 + T);
      DeviceWeight dw = ToDeviceWeight(hw);
      DeviceBuffer dx = Up(RandomHalf(T * K, 1.0f, 91)), db = Up(RandomHalf(N, 0.5f, 92));
      DeviceBuffer dln = Up(RandomHalf(T * N, 1.0f, 93));
      DeviceBuffer dy = Up(std::vector<Half>(T * N)), dwant = Up(std::vector<Half>(T * N));
      DeviceBuffer dgot = Up(std::vector<Half>(T * N));
      std::vector<GemvPath> paths = {{gpu::QuantGemvPath::kAuto, {}}};
      if (dt != DType::kF16 && T <= gpu::kMaxGemvTokens) paths = GemvPaths(cc_major_ >= 8);
      for (const GemvPath& p : paths) {
        gpu::SetQuantGemvMmaConfig(p.mma);
        gpu::Linear(dx.as<Half>(), T, dw.view, db.as<Half>(), dy.as<Half>(), Lc(p.path));
        gpu::DeepNormResidual(dln.as<Half>(), dy.as<Half>(), alpha, T * N, dwant.as<Half>(),
                              stream_.get());
        CUDA_CHECK(cudaMemset(dgot.data(), 0xff, dgot.size()));
        gpu::Linear(dx.as<Half>(), T, dw.view, db.as<Half>(), dgot.as<Half>(), Lc(p.path),
                    {.ln = dln.as<Half>(), .alpha = alpha});
        Sync();
        const auto want = Down(dwant, T * N), y = Down(dy, T * N);
        EXPECT_TRUE(
            BitIdentical(Down(dgot, T * N), want,
                         StrFormat("%s T=%lld %s", DTypeName(dt), (long long)T, p.Name().c_str())));
        // The residual changed the output (the test would not notice a skipped one otherwise).
        int changed = 0;
        for (size_t i = 0; i < want.size(); ++i) changed += want[i].bits != y[i].bits;
        EXPECT_GT(changed, int(want.size()) / 2);
      }
      gpu::SetQuantGemvMmaConfig({});
    }
  }
}

// The prefill path's dequantization is the reference's fp16(fp16(q)·s), bit for bit.
TEST_F(CudaKernels, DequantizeRowsIsTheReference) {
  for (DType dt : {DType::kI8, DType::kI4}) {
    for (int group : {0, 8, 64}) {
      const int64_t N = 9, K = 128;
      HostWeight hw = MakeWeight(dt, N, K, group, 55 + group);
      DeviceWeight dw = ToDeviceWeight(hw);
      DeviceBuffer dout = Up(std::vector<Half>(4 * K));
      gpu::DequantizeRows(dw.view, 3, 4, dout.as<Half>(), stream_.get());
      Sync();
      std::vector<Half> want(4 * K);
      std::vector<float> row(K);
      for (int64_t r = 0; r < 4; ++r) {
        DequantizeRow(hw.view, 3 + r, row.data());
        for (int64_t k = 0; k < K; ++k) want[r * K + k] = FloatToHalf(row[k]);
      }
      EXPECT_TRUE(BitIdentical(Down(dout, 4 * K), want,
                               StrFormat("dequantize %s group %d", DTypeName(dt), group)));
    }
  }
}

}  // namespace
}  // namespace glm

#else  // GLM_HAVE_CUDA

TEST(CudaKernels, NotBuilt) { GTEST_SKIP() << "built without CUDA (GLM_CUDA=OFF or no nvcc)"; }

#endif  // GLM_HAVE_CUDA
