// Linear layers y = x·Wᵀ + b on the GPU (spec §1.3, §3), x [T, K] fp16 row-major, W [N, K]:
//   f16 weights:    out = fp16(Σ_k x·w + b)          fp32 accumulation, one rounding (PyTorch's
//                   fused addmm). cuBLAS GemmEx with CUBLAS_COMPUTE_32F and reduced-precision
//                   reductions disallowed. Without a bias cuBLAS writes fp16 directly; with one it
//                   writes fp32 into a scratch, column blocks at a time, and a kernel adds the
//                   bias and rounds once (the rounding point is ours, not an epilogue detail).
//   i8/i4 weights:  w = fp16(fp16(q)·s) (quant/format.h), out = fp16(fp16(Σ x·w) + b): the
//                   reference's W8A16Linear with its separate fp16 bias add. Decode-sized T goes
//                   to the GEMV of quant_gemv.cu (dequantizes in registers, reads each weight once,
//                   no fp16 copy of the weight); larger T dequantizes blocks of rows into a scratch
//                   and multiplies them with cuBLAS.
// The fp32 accumulation order is cuBLAS's (or the GEMV's), not the CPU's: ulp-level differences.
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernels.h"

namespace glm::gpu {
namespace {

__global__ void bias_round_kernel(const float* acc, int64_t T, int64_t nc, int64_t N, int64_t n0,
                                  const __half* bias, __half* out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over T·nc
  if (idx >= T * nc) return;
  const int64_t t = idx / nc, n = idx % nc;
  out[t * N + n0 + n] = __float2half_rn(acc[idx] + __half2float(bias[n0 + n]));
}

// Row-major out[T, N] (leading dimension ldo) = x[T, K] · W[rows, K]ᵀ: in cuBLAS's column-major
// terms C[rows, T] = op(A)·B with A = W (K×rows, transposed) and B = xᵀ (K×T).
void Gemm(const LinearContext& ctx, const Half* x, int64_t T, const Half* w, int64_t rows,
          int64_t K, void* out, cudaDataType out_type, int64_t ldo) {
  GLM_CHECK_MSG(T <= INT_MAX && rows <= INT_MAX && K <= INT_MAX && ldo <= INT_MAX,
                "GEMM shape [%lld, %lld] x [%lld, %lld] exceeds cuBLAS's int sizes", (long long)T,
                (long long)K, (long long)rows, (long long)K);
  const float one = 1.0f, zero = 0.0f;
  const cublasComputeType_t compute =
      ctx.exact_fp32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  CUBLAS_CHECK(cublasGemmEx(ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(rows), int(T), int(K), &one,
                            w, CUDA_R_16F, int(K), x, CUDA_R_16F, int(K), &zero, out, out_type,
                            int(ldo), compute, CUBLAS_GEMM_DEFAULT));
}

void LinearF16(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
               const LinearContext& ctx) {
  const int64_t N = w.rows(), K = w.cols();
  const Half* wd = static_cast<const Half*>(w.data);
  if (!bias) {
    Gemm(ctx, x, T, wd, N, K, out, CUDA_R_16F, N);
    return;
  }
  // Column blocks of the fp32 result, as wide as the scratch allows (a multiple of 8 columns).
  int64_t cols = std::min<int64_t>(N, ctx.f32_elems / T);
  if (cols < N) cols = cols / 8 * 8;
  GLM_CHECK_MSG(ctx.f32 && cols > 0,
                "Linear: the fp32 scratch (%lld floats) is too small for %lld tokens",
                (long long)ctx.f32_elems, (long long)T);
  for (int64_t n0 = 0; n0 < N; n0 += cols) {
    const int64_t nc = std::min(cols, N - n0);
    Gemm(ctx, x, T, wd + n0 * K, nc, K, ctx.f32, CUDA_R_32F, nc);
    const int threads = 256;
    bias_round_kernel<<<unsigned(CeilDiv(T * nc, threads)), threads, 0, ctx.stream>>>(
        ctx.f32, T, nc, N, n0, Dev(bias), Dev(out));
    GLM_CHECK_LAUNCH();
  }
}

// Prefill with quantized weights: blocks of rows dequantized exactly, then cuBLAS with fp16
// output (one rounding of the fp32 sum), then the separate bias add.
void LinearQuantBlocked(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                        const LinearContext& ctx) {
  const int64_t N = w.rows(), K = w.cols();
  int64_t rows = std::min<int64_t>(N, ctx.deq_elems / K);
  if (rows < N && rows >= 8) rows = rows / 8 * 8;
  GLM_CHECK_MSG(ctx.deq && rows > 0,
                "Linear: the dequantization scratch (%lld halves) holds no row of K=%lld",
                (long long)ctx.deq_elems, (long long)K);
  for (int64_t n0 = 0; n0 < N; n0 += rows) {
    const int64_t nr = std::min(rows, N - n0);
    DequantizeRows(w, n0, nr, ctx.deq, ctx.stream);
    Gemm(ctx, x, T, ctx.deq, nr, K, out + n0, CUDA_R_16F, N);
  }
  if (bias) AddBias(out, T, N, bias, ctx.stream);
}

}  // namespace

void Linear(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
            const LinearContext& ctx, ResidualAdd residual) {
  GLM_CHECK_MSG(w.ndim == 2, "linear weight must be 2-D, got %s", w.ShapeString().c_str());
  GLM_CHECK_MSG(w.dtype == DType::kF16 || w.dtype == DType::kI8 || w.dtype == DType::kI4,
                "linear with %s weights is not implemented on the GPU", DTypeName(w.dtype));
  GLM_CHECK_MSG(T >= 0 && w.rows() > 0 && w.cols() > 0, "Linear: bad shape T=%lld, W %s",
                (long long)T, w.ShapeString().c_str());
  GLM_CHECK(ctx.cublas && w.data);
  cudaStream_t bound = nullptr;
  CUBLAS_CHECK(cublasGetStream(ctx.cublas, &bound));
  GLM_CHECK_MSG(bound == ctx.stream, "Linear: the cuBLAS handle is bound to another stream");
  if (T == 0) return;
  GLM_CHECK(x && out);
  if (w.dtype != DType::kF16 && T <= kMaxGemvTokens) {
    // The tensor-core GEMV accumulates in the MMA unit too: exact mode takes the CUDA-core one.
    QuantGemv(x, T, w, bias, out, ctx.exact_fp32 ? QuantGemvPath::kCudaCore : ctx.gemv_path,
              ctx.stream, residual);
    return;
  }
  if (w.dtype == DType::kF16) {
    LinearF16(x, T, w, bias, out, ctx);
  } else {
    LinearQuantBlocked(x, T, w, bias, out, ctx);
  }
  if (residual.ln)
    DeepNormResidual(residual.ln, out, residual.alpha, T * w.rows(), out, ctx.stream);
}

}  // namespace glm::gpu
