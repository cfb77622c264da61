// Weight-only INT8/INT4 linear layers for decode (spec §3):
//   out[t, n] = fp16(fp16(Σ_k x[t,k]·w[n,k]) + b[n]),  w = fp16(fp16(q[n,k])·s)
// the reference's dequantization (quant/format.h: row scales [N] or group scales [N, K/G]; int4
// packs element 2j in the high nibble), fp32 accumulation, the bias as a separate fp16 add. The
// weights are dequantized in registers and read exactly once; no fp16 copy of a weight exists.
// Two kernels:
//   CUDA cores (any GPU, any shape): a warp per output row, 8 weights per lane per step, each
//     dequantized with __hmul (the reference's __half multiply) and accumulated with fmaf.
//   Tensor cores (sm_80+; K a multiple of the tile, groups of 32/16, 16-byte aligned): a block
//     of 4 warps per 16 (or 32) output rows splits K; each lane loads 16 bytes of a row per
//     tile and turns them into fp16 pairs with the magic-number trick (0x6400 | u is 1024 + u
//     exactly), an exact subtraction or scaling by 1/16, and one __hmul2 by the scale:
//     fp16(q·s) exactly as the reference. mma.sync m16n8k16 multiplies them with up to 8 tokens,
//     accumulating in fp32 (products of fp16 values are exact). The pairs come out of the decode in
//     a permuted k order; the x fragment is permuted the same way, which only changes the order of
//     the sum.
// The order of the fp32 sums differs from the CPU's (ulp-level), and the MMA unit's fp32
// accumulation is not rounded to nearest at every addition (gpu::LinearContext::exact_fp32 takes
// the CUDA-core kernel). The partial sums of the warps are added in a fixed order, and a token's
// result does not depend on the other tokens. Both kernels' epilogues can also apply DeepNorm's
// residual (ResidualAdd in kernels.h), with the separate kernel's arithmetic.
#include <cstdio>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernels.h"

namespace glm::gpu {
namespace {

constexpr int kSimtRows = 4;  // rows per 128-thread block of the CUDA-core kernel

__device__ __forceinline__ int8_t Int4AtDevice(const int8_t* row, int64_t k) {
  const int8_t byte = row[k >> 1];
  return (k & 1) ? int8_t(int8_t(byte << 4) >> 4) : int8_t(byte >> 4);
}

// out[i] for the fp32 sum of row n: fp16(fp16(acc) + b[n]) (or fp16(acc) without a bias), then
// with a residual DeepNorm(res[i], that, α), as DeepNormResidual computes it.
__device__ __forceinline__ void Store(float acc, const __half* bias, const __half* res, float alpha,
                                      int64_t i, int64_t n, __half* out) {
  const __half y =
      bias ? __float2half_rn(RoundHalf(acc) + __half2float(bias[n])) : __float2half_rn(acc);
  out[i] = res ? DeepNorm(res[i], y, alpha) : y;
}

// fp16(q·s) with __half arithmetic: fp16(q) is exact for |q| <= 2048, __hmul rounds once.
__device__ __forceinline__ float Dequant(int q, __half s) {
  return __half2float(__hmul(__short2half_rn(short(q)), s));
}

template <bool kInt4>
__global__ void __launch_bounds__(128)
    quant_gemv_simt_kernel(const __half* x, int T, int64_t K, const int8_t* w, const __half* scales,
                           int64_t G, int64_t N, const __half* bias, const __half* res, float alpha,
                           __half* out, bool vec) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row = int64_t(blockIdx.x) * kSimtRows + warp;
  if (row >= N) return;  // the whole warp leaves together
  const int8_t* wr = w + row * (kInt4 ? K / 2 : K);
  const __half* sr = scales + row * (K / G);
  float acc[kMaxGemvTokens];
#pragma unroll
  for (int t = 0; t < kMaxGemvTokens; ++t) acc[t] = 0.f;
  int64_t k_tail = 0;
  if (vec) {  // 8 consecutive weights per lane: one 4-byte (int4) or 8-byte (int8) load
    const int64_t chunks = K / 8;
    for (int64_t ch = lane; ch < chunks; ch += kWarp) {
      const int64_t k = ch * 8;
      const __half s = sr[k / G];
      int q[8];
      if (kInt4) {
        const uint32_t word = __ldcs(reinterpret_cast<const unsigned int*>(wr + k / 2));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int8_t b = int8_t(word >> (8 * i));
          q[2 * i] = b >> 4;                            // element 2j: high nibble
          q[2 * i + 1] = int8_t(uint8_t(b) << 4) >> 4;  // element 2j+1: low nibble
        }
      } else {
        const uint2 v = __ldcs(reinterpret_cast<const uint2*>(wr + k));
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          q[i] = int8_t(v.x >> (8 * i));
          q[4 + i] = int8_t(v.y >> (8 * i));
        }
      }
      float wf[8];
#pragma unroll
      for (int i = 0; i < 8; ++i) wf[i] = Dequant(q[i], s);
#pragma unroll
      for (int t = 0; t < kMaxGemvTokens; ++t) {
        if (t < T) {
          const uint4 xv = __ldg(reinterpret_cast<const uint4*>(x + t * K + k));
          const __half2* xh = reinterpret_cast<const __half2*>(&xv);
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float2 f = __half22float2(xh[j]);
            acc[t] = fmaf(f.x, wf[2 * j], acc[t]);
            acc[t] = fmaf(f.y, wf[2 * j + 1], acc[t]);
          }
        }
      }
    }
    k_tail = chunks * 8;
  }
  for (int64_t k = k_tail + lane; k < K; k += kWarp) {
    const float wf = Dequant(kInt4 ? Int4AtDevice(wr, k) : wr[k], sr[k / G]);
#pragma unroll
    for (int t = 0; t < kMaxGemvTokens; ++t) {
      if (t < T) acc[t] = fmaf(__half2float(x[t * K + k]), wf, acc[t]);
    }
  }
#pragma unroll
  for (int t = 0; t < kMaxGemvTokens; ++t) acc[t] = WarpSum(acc[t]);
  if (lane == 0) {
#pragma unroll
    for (int t = 0; t < kMaxGemvTokens; ++t) {  // unrolled: acc stays in registers
      if (t < T) Store(acc[t], bias, res, alpha, t * N + row, row, out);
    }
  }
}

// Helpers of the tensor-core kernel (compiled for sm_80+ only).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
__device__ __forceinline__ uint32_t HalfBits(__half2 h) {
  return *reinterpret_cast<const uint32_t*>(&h);
}
__device__ __forceinline__ __half2 BitsHalf2(uint32_t u) {
  return *reinterpret_cast<const __half2*>(&u);
}

// 8 int4 values of a little-endian word (byte j: element 2j high nibble, 2j+1 low) -> 4 fp16
// pairs fp16(q·s), in the order (e1,e5), (e0,e4), (e3,e7), (e2,e6). Nibble u (q = u - 16 when
// u >= 8, else u) is flipped to u ^ 8 = q + 8 and ORed under the exponent of 1024, one LOP3 per
// pair, (v & mask) ^ magic. A nibble in bits 0-3 of a half gives 1024 + (q + 8), minus 1032 = q;
// a nibble in bits 4-7 gives 1024 + 16(q + 8), times 1/16 minus 72 = q in one __hfma2 (exact:
// the result is a small integer). One shift (v >> 8) brings bytes 1 and 3 down. Then one __hmul2
// by the scale: fp16(q·s), rounded once, as the reference. (Shifting every pair to bits 0-3
// instead costs two more shifts per word and ran 0-3% slower on an H100,
// bench/results/gpu-2026-11-28.md.)
__device__ __forceinline__ void DequantInt4x8(uint32_t v, __half2 s, uint32_t out[4]) {
  const __half2 kOffset = BitsHalf2(0x64086408u);     // (1032, 1032)
  const __half2 kSixteenth = BitsHalf2(0x2C002C00u);  // (1/16, 1/16)
  const __half2 kMinus72 = BitsHalf2(0xD480D480u);    // (-72, -72)
  const uint32_t u = v >> 8;
  const uint32_t l0 = (v & 0x000F000Fu) ^ 0x64086408u, h0 = (v & 0x00F000F0u) ^ 0x64806480u;
  const uint32_t l1 = (u & 0x000F000Fu) ^ 0x64086408u, h1 = (u & 0x00F000F0u) ^ 0x64806480u;
  out[0] = HalfBits(__hmul2(__hsub2(BitsHalf2(l0), kOffset), s));
  out[1] = HalfBits(__hmul2(__hfma2(BitsHalf2(h0), kSixteenth, kMinus72), s));
  out[2] = HalfBits(__hmul2(__hsub2(BitsHalf2(l1), kOffset), s));
  out[3] = HalfBits(__hmul2(__hfma2(BitsHalf2(h1), kSixteenth, kMinus72), s));
}

// 4 int8 values of a word -> 2 fp16 pairs fp16(q·s), in the order (e0,e2), (e1,e3).
__device__ __forceinline__ void DequantInt8x4(uint32_t v, __half2 s, uint32_t out[2]) {
  v ^= 0x80808080u;                                         // each byte -> q + 128
  const __half2 kOffset = BitsHalf2(0x64806480u);           // (1152, 1152)
  const uint32_t h0 = __byte_perm(v, 0x64646464u, 0x4240);  // (0x64|b0, 0x64|b2)
  const uint32_t h1 = __byte_perm(v, 0x64646464u, 0x4341);  // (0x64|b1, 0x64|b3)
  out[0] = HalfBits(__hmul2(__hsub2(BitsHalf2(h0), kOffset), s));
  out[1] = HalfBits(__hmul2(__hsub2(BitsHalf2(h1), kOffset), s));
}

// Word m (0..3) of a 16-byte load.
__device__ __forceinline__ uint32_t Word(const uint4& v, int m) {
  return m == 0 ? v.x : m == 1 ? v.y : m == 2 ? v.z : v.w;
}

// d += A·B for one m16n8k16 tile: a0/a2 row g, a1/a3 row g+8 (k pairs 2c and 2c+8); b0/b1 the
// same k pairs for token g; d0,d1 row g tokens 2c,2c+1; d2,d3 row g+8.
__device__ __forceinline__ void Mma16816(float d[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                         uint32_t a3, uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
#endif

// A block of kMmaWarps warps computes 16·kRowTiles rows; the warps split K tile by tile. Each
// warp takes kSteps consecutive tiles per iteration: all their weight loads are issued before the
// first decode, and each tile of the step has its own accumulators (independent MMA chains), added
// in a fixed order at the end; then warp 0 adds the warps' partial sums in warp order. With
// kRowTiles = 2 a warp multiplies two 16-row tiles by the same x fragment: half the x loads and
// permutes per weight, twice the weight bytes in flight. On an H100, 4 warps ran the GLM-130B
// shapes 8-14% faster than 4-16 warps chosen per shape to fill the grid's last wave
// (bench/results/gpu-h100-2026-11-27.md).
constexpr int kMmaWarps = 4;

template <bool kInt4, int kSteps, int kRowTiles>
__global__ void __launch_bounds__(kMmaWarps * 32)
    quant_gemv_mma_kernel(const __half* x, int T, int64_t K, const int8_t* w, const __half* scales,
                          int64_t G, int64_t N, const __half* bias, const __half* res, float alpha,
                          __half* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  constexpr int kTileK = kInt4 ? 128 : 64;  // weights of a row per tile: 64 bytes
  constexpr int kLaneK = kInt4 ? 32 : 16;   // weights of a row per lane per tile: 16 bytes
  constexpr int kXv = kInt4 ? 4 : 2;        // 16-byte pieces of x per lane per tile
  constexpr int kRows = 2 * kRowTiles;      // rows per lane: g + 8i; tile r has rows 2r, 2r+1
  __shared__ float red[kMmaWarps][kWarp][4 * kRowTiles];
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int g = lane / 4, c = lane % 4;
  const int64_t row_bytes = kInt4 ? K / 2 : K;
  const int64_t groups = K / G;
  int64_t row[kRows];
  bool valid[kRows];
  const int8_t* wr[kRows];
  const __half* sr[kRows];
  __half2 s0[kRows];
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
    row[i] = int64_t(blockIdx.x) * 16 * kRowTiles + g + 8 * i;
    valid[i] = row[i] < N;
    wr[i] = w + (valid[i] ? row[i] : 0) * row_bytes + c * 16;
    sr[i] = scales + (valid[i] ? row[i] : 0) * groups;
    s0[i] = __half2half2(sr[i][0]);
  }
  const bool has_x = g < T;  // lane group g carries token g of the B fragment
  const __half* xg = x + (has_x ? g : 0) * K + c * kLaneK;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  float d[kSteps][kRowTiles][4];
#pragma unroll
  for (int j = 0; j < kSteps; ++j) {
#pragma unroll
    for (int r = 0; r < kRowTiles; ++r) d[j][r][0] = d[j][r][1] = d[j][r][2] = d[j][r][3] = 0.f;
  }
  const int64_t tiles = K / kTileK;
  for (int64_t tile0 = int64_t(warp) * kSteps; tile0 < tiles; tile0 += kMmaWarps * kSteps) {
    uint4 q[kSteps][kRows];
#pragma unroll
    for (int j = 0; j < kSteps; ++j) {
      const bool in = tile0 + j < tiles;
#pragma unroll
      for (int i = 0; i < kRows; ++i) {
        q[j][i] = valid[i] && in ? __ldcs(reinterpret_cast<const uint4*>(wr[i] + (tile0 + j) * 64))
                                 : zero;
      }
    }
#pragma unroll
    for (int j = 0; j < kSteps; ++j) {
      const int64_t tile = tile0 + j;
      if (tile >= tiles) break;
      uint4 xv[kXv];
#pragma unroll
      for (int i = 0; i < kXv; ++i) {
        xv[i] = has_x ? __ldg(reinterpret_cast<const uint4*>(xg + tile * kTileK) + i) : zero;
      }
      __half2 s[kRows];
#pragma unroll
      for (int i = 0; i < kRows; ++i) s[i] = s0[i];
      if (groups > 1) {  // the lane's 16 bytes lie in one group (G is a multiple of kLaneK)
        const int64_t gi = (tile * kTileK + c * kLaneK) / G;
#pragma unroll
        for (int i = 0; i < kRows; ++i) s[i] = __half2half2(sr[i][gi]);
      }
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        if constexpr (kInt4) {
          // x halves h0..h7 of the word's 8 weights, paired as the decode pairs them.
          const uint4 xq = xv[m];
          const uint32_t p15 = __byte_perm(xq.x, xq.z, 0x7632),
                         p04 = __byte_perm(xq.x, xq.z, 0x5410);
          const uint32_t p37 = __byte_perm(xq.y, xq.w, 0x7632),
                         p26 = __byte_perm(xq.y, xq.w, 0x5410);
#pragma unroll
          for (int r = 0; r < kRowTiles; ++r) {
            const uint32_t wa = Word(q[j][2 * r], m), wb = Word(q[j][2 * r + 1], m);
            uint32_t A[4], B[4];
            DequantInt4x8(wa, s[2 * r], A);
            DequantInt4x8(wb, s[2 * r + 1], B);
            Mma16816(d[j][r], A[0], B[0], A[1], B[1], p15, p04);
            Mma16816(d[j][r], A[2], B[2], A[3], B[3], p37, p26);
          }
        } else {
          const uint4 xq = xv[m / 2];
          const uint32_t y0 = (m & 1) ? xq.z : xq.x, y1 = (m & 1) ? xq.w : xq.y;
          const uint32_t b0 = __byte_perm(y0, y1, 0x5410), b1 = __byte_perm(y0, y1, 0x7632);
#pragma unroll
          for (int r = 0; r < kRowTiles; ++r) {
            const uint32_t wa = Word(q[j][2 * r], m), wb = Word(q[j][2 * r + 1], m);
            uint32_t A[2], B[2];
            DequantInt8x4(wa, s[2 * r], A);
            DequantInt8x4(wb, s[2 * r + 1], B);
            Mma16816(d[j][r], A[0], B[0], A[1], B[1], b0, b1);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowTiles; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float acc = d[0][r][i];
#pragma unroll
      for (int j = 1; j < kSteps; ++j) acc += d[j][r][i];
      red[warp][lane][4 * r + i] = acc;
    }
  }
  __syncthreads();
  if (warp != 0) return;
#pragma unroll
  for (int r = 0; r < kRowTiles; ++r) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int e = 4 * r + i;
      const float acc = ((red[0][lane][e] + red[1][lane][e]) + red[2][lane][e]) + red[3][lane][e];
      const int t = 2 * c + (i & 1);
      const int ri = 2 * r + (i >> 1);  // d0,d1: the tile's row g; d2,d3: row g + 8
      if (t < T && valid[ri]) Store(acc, bias, res, alpha, t * N + row[ri], row[ri], out);
    }
  }
#else
  __trap();  // never launched below sm_80 (QuantGemv checks the device)
#endif
}

__global__ void dequant_rows_kernel(const int8_t* w, const __half* scales, int64_t K, int64_t G,
                                    int64_t row0, int64_t n, bool int4, __half* out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= n) return;
  const int64_t r = row0 + idx / K, k = idx % K;
  const int q = int4 ? Int4AtDevice(w + r * (K / 2), k) : w[r * K + k];
  out[idx] = __hmul(__short2half_rn(short(q)), scales[r * (K / G) + k / G]);
}

QuantGemvMmaConfig g_mma;  // the tensor-core kernel's variant (SetQuantGemvMmaConfig)

using MmaKernel = void (*)(const __half*, int, int64_t, const int8_t*, const __half*, int64_t,
                           int64_t, const __half*, const __half*, float, __half*);

// The instantiation for (int4, config): a table instead of a branch per instantiation.
MmaKernel PickMma(bool int4, const QuantGemvMmaConfig& config) {
  static constexpr MmaKernel kKernels[2][2][2] = {
      {{quant_gemv_mma_kernel<false, 1, 1>, quant_gemv_mma_kernel<false, 2, 1>},
       {quant_gemv_mma_kernel<false, 1, 2>, quant_gemv_mma_kernel<false, 2, 2>}},
      {{quant_gemv_mma_kernel<true, 1, 1>, quant_gemv_mma_kernel<true, 2, 1>},
       {quant_gemv_mma_kernel<true, 1, 2>, quant_gemv_mma_kernel<true, 2, 2>}}};
  return kKernels[int4 ? 1 : 0][config.row_tiles - 1][config.steps - 1];
}

bool Aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// Checks a quantized weight view and returns its group length (K for the row scheme).
int64_t CheckQuantWeight(const TensorView& w) {
  GLM_CHECK_MSG(w.ndim == 2 && (w.dtype == DType::kI8 || w.dtype == DType::kI4),
                "quantized GEMV needs a 2-D i8/i4 weight, got %s %s", DTypeName(w.dtype),
                w.ShapeString().c_str());
  GLM_CHECK_MSG(w.data && w.scales, "quantized weight without data or scales");
  const int64_t K = w.cols();
  GLM_CHECK_MSG(w.dtype != DType::kI4 || K % 2 == 0, "int4 weight with odd K = %lld", (long long)K);
  const int64_t G = w.group_size > 0 ? w.group_size : K;
  GLM_CHECK_MSG(w.group_size >= 0 && K % G == 0, "group size %d does not divide K = %lld",
                w.group_size, (long long)K);
  return G;
}

}  // namespace

void SetQuantGemvMmaConfig(const QuantGemvMmaConfig& config) {
  GLM_CHECK_MSG(config.steps == 1 || config.steps == 2, "tensor-core GEMV steps %d (1 or 2)",
                config.steps);
  GLM_CHECK_MSG(config.row_tiles == 1 || config.row_tiles == 2,
                "tensor-core GEMV row tiles %d (1 or 2)", config.row_tiles);
  g_mma = config;
}
QuantGemvMmaConfig GetQuantGemvMmaConfig() { return g_mma; }

std::string QuantGemvMmaConfig::ToString() const {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%d tile(s) per warp step, %d row tile(s) per warp", steps,
                row_tiles);
  return buf;
}

const char* QuantGemvPathName(QuantGemvPath p) {
  switch (p) {
    case QuantGemvPath::kAuto:
      return "auto";
    case QuantGemvPath::kCudaCore:
      return "cuda-core";
    case QuantGemvPath::kTensorCore:
      return "tensor-core";
  }
  return "?";
}

QuantGemvPath QuantGemv(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                        QuantGemvPath path, cudaStream_t stream, ResidualAdd residual) {
  const int64_t G = CheckQuantWeight(w);
  const int64_t N = w.rows(), K = w.cols();
  GLM_CHECK_MSG(T >= 0 && T <= kMaxGemvTokens, "QuantGemv: %lld tokens (at most %d)", (long long)T,
                kMaxGemvTokens);
  if (T == 0) return path;
  GLM_CHECK(x && out);
  const bool int4 = w.dtype == DType::kI4;
  int dev = 0, major = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  const int64_t tile_k = int4 ? 128 : 64, lane_k = int4 ? 32 : 16;
  const bool mma_ok =
      major >= 8 && K % tile_k == 0 && G % lane_k == 0 && Aligned(x, 16) && Aligned(w.data, 16);
  GLM_CHECK_MSG(path != QuantGemvPath::kTensorCore || mma_ok,
                "tensor-core GEMV not possible here: sm_%d, K=%lld (tile %lld), group %lld, "
                "x/w 16-byte aligned: %d/%d",
                major * 10, (long long)K, (long long)tile_k, (long long)G, int(Aligned(x, 16)),
                int(Aligned(w.data, 16)));
  const auto* wq = static_cast<const int8_t*>(w.data);
  const __half* res = residual.ln ? Dev(residual.ln) : nullptr;
  if (path == QuantGemvPath::kTensorCore || (path == QuantGemvPath::kAuto && mma_ok)) {
    const int64_t blocks = CeilDiv(N, 16 * g_mma.row_tiles);
    GLM_CHECK(blocks <= 0x7fffffff);
    PickMma(int4, g_mma)<<<unsigned(blocks), unsigned(kMmaWarps * kWarp), 0, stream>>>(
        Dev(x), int(T), K, wq, Dev(w.scales), G, N, bias ? Dev(bias) : nullptr, res, residual.alpha,
        Dev(out));
    GLM_CHECK_LAUNCH();
    return QuantGemvPath::kTensorCore;
  }
  const bool vec = K % 8 == 0 && G % 8 == 0 && Aligned(x, 16) && Aligned(w.data, int4 ? 4 : 8);
  const int64_t blocks = CeilDiv(N, kSimtRows);
  GLM_CHECK(blocks <= 0x7fffffff);
  if (int4) {
    quant_gemv_simt_kernel<true><<<unsigned(blocks), 128, 0, stream>>>(
        Dev(x), int(T), K, wq, Dev(w.scales), G, N, bias ? Dev(bias) : nullptr, res, residual.alpha,
        Dev(out), vec);
  } else {
    quant_gemv_simt_kernel<false><<<unsigned(blocks), 128, 0, stream>>>(
        Dev(x), int(T), K, wq, Dev(w.scales), G, N, bias ? Dev(bias) : nullptr, res, residual.alpha,
        Dev(out), vec);
  }
  GLM_CHECK_LAUNCH();
  return QuantGemvPath::kCudaCore;
}

void DequantizeRows(const TensorView& w, int64_t row0, int64_t rows, Half* out,
                    cudaStream_t stream) {
  const int64_t G = CheckQuantWeight(w);
  const int64_t K = w.cols();
  GLM_CHECK_MSG(row0 >= 0 && rows >= 0 && row0 + rows <= w.rows(),
                "DequantizeRows: rows [%lld, %lld) outside [0, %lld)", (long long)row0,
                (long long)(row0 + rows), (long long)w.rows());
  if (rows == 0) return;
  GLM_CHECK(out);
  const int64_t n = rows * K;
  const int threads = 256;
  GLM_CHECK(CeilDiv(n, threads) <= 0x7fffffff);
  dequant_rows_kernel<<<unsigned(CeilDiv(n, threads)), threads, 0, stream>>>(
      static_cast<const int8_t*>(w.data), Dev(w.scales), K, G, row0, n, w.dtype == DType::kI4,
      Dev(out));
  GLM_CHECK_LAUNCH();
}

}  // namespace glm::gpu
