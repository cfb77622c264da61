// Self-attention with GLM-130B's scaling and prefix-bidirectional mask (spec §1.7, §1.8), for
// prefill (T new rows) and decode (T = 1) over the KV cache:
//   q'' = fp16(q · r),  r = fp32(1 / (√D · (l+1)))      query_key_layer_scaling
//   s_j = fp16(q''·k_j)                                  baddbmm, fp32 accumulation
//   p_j = fp16(exp(float(s_j)·(l+1) − max) / Σ)          fp32 softmax over the visible keys
//   ctx = fp16(Σ_j p_j · v_j)                            bmm, fp32 accumulation
// Row i (absolute) sees key j iff j < prefix_len or j <= i; masked keys get exactly 0, as in
// the reference (exp(−10000 − max) underflows). The probabilities are normalised and rounded
// before P·V, as the reference does, so there is no online (flash) softmax: one block per
// (row, head) keeps its row of scores in shared memory (4 bytes per visible key).
// Same formula as kernels/cpu/attention.cc. The dot products and Σ are reduced in another order
// (and expf is CUDA's), so s_j and p_j can differ by one fp16 ulp (ulp-level); P·V is summed over
// j in the CPU's order. Performance note: decode reads each cached key and value once per head;
// prefill re-reads them once per row (fine for prompts of hundreds of tokens; a tiled prefill
// kernel is future work).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernels.h"

namespace glm::gpu {
namespace {

constexpr int kAttnThreads = 128;

__global__ void append_kv_kernel(const __half* qkv, int64_t n, int H, int D, int64_t start,
                                 __half* kc, __half* vc) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;  // over T·H·D
  if (idx >= n) return;
  const int64_t th = idx / D;  // token * H + head
  const int d = int(idx % D);
  const int64_t t = th / H;
  const int64_t h = th % H;
  const __half* src = qkv + th * 3 * D;
  const int64_t dst = (start + t) * int64_t(H) * D + h * D + d;
  kc[dst] = src[D + d];
  vc[dst] = src[2 * D + d];
}

// Block (i, h): shared memory holds q'' [D], 32 floats for reductions, then scores [nk].
__global__ void __launch_bounds__(kAttnThreads)
    attention_kernel(const __half* qkv, int64_t start, int H, int D, const __half* kc,
                     const __half* vc, int64_t prefix_len, float r, float coeff, __half* ctx) {
  extern __shared__ float sm[];
  float* qs = sm;
  float* red = sm + D;
  float* sc = red + 32;
  const int64_t i = blockIdx.x;
  const int h = blockIdx.y;
  const int64_t HD = int64_t(H) * D;
  const int64_t nk = prefix_len > start + i + 1 ? prefix_len : start + i + 1;  // visible keys
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;

  const __half* q = qkv + (i * H + h) * 3 * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) qs[d] = RoundHalf(__half2float(q[d]) * r);
  __syncthreads();

  // Scores: one warp per key, lanes across D.
  float mx = -INFINITY;
  for (int64_t j = warp; j < nk; j += warps) {
    const __half* k = kc + j * HD + int64_t(h) * D;
    float s = 0.f;
    for (int d = lane; d < D; d += kWarp) s = __fmaf_rn(qs[d], __half2float(k[d]), s);
    s = RoundHalf(WarpSum(s)) * coeff;
    if (lane == 0) sc[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = BlockReduce<true>(mx, red);  // also orders the sc writes before the reads below

  float sum = 0.f;
  for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) {
    const float e = expf(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  sum = BlockReduce<false>(sum, red);
  for (int64_t j = threadIdx.x; j < nk; j += blockDim.x) sc[j] = RoundHalf(sc[j] / sum);
  __syncthreads();

  // P·V: one thread per head dim, keys in order (coalesced across d).
  const __half* v = vc + int64_t(h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float acc = 0.f;
    for (int64_t j = 0; j < nk; ++j) acc += sc[j] * __half2float(v[j * HD + d]);
    ctx[i * HD + int64_t(h) * D + d] = __float2half_rn(acc);
  }
}

}  // namespace

void AppendKv(const Half* qkv, int64_t T, int H, int D, int64_t start, Half* k_cache, Half* v_cache,
              cudaStream_t stream) {
  GLM_CHECK_MSG(T >= 0 && H > 0 && D > 0 && start >= 0, "AppendKv: bad shape T=%lld H=%d D=%d",
                (long long)T, H, D);
  if (T == 0) return;
  GLM_CHECK(qkv && k_cache && v_cache);
  const int64_t n = T * H * D;
  const int threads = 256;
  append_kv_kernel<<<unsigned(CeilDiv(n, threads)), threads, 0, stream>>>(
      Dev(qkv), n, H, D, start, Dev(k_cache), Dev(v_cache));
  GLM_CHECK_LAUNCH();
}

void Attention(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
               const Half* v_cache, int64_t prefix_len, int layer, Half* ctx, cudaStream_t stream) {
  GLM_CHECK_MSG(T >= 0 && start >= 0 && H > 0 && H <= 65535 && D > 0 && layer >= 0,
                "Attention: bad shape T=%lld start=%lld H=%d D=%d layer=%d", (long long)T,
                (long long)start, H, D, layer);
  const int64_t total = start + T;
  GLM_CHECK_MSG(prefix_len <= total,
                "the bidirectional prefix (%lld tokens) must be in the cache before its rows "
                "attend (have %lld)",
                (long long)prefix_len, (long long)total);
  if (T == 0) return;
  GLM_CHECK(qkv && k_cache && v_cache && ctx);
  const int64_t max_keys = std::max(prefix_len, total);
  const size_t smem = size_t(D + 32 + max_keys) * sizeof(float);
  static_assert(sizeof(float) == 4);
  if (smem > 48 * 1024) {  // past the default limit: opt in, up to what the device has
    int dev = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    GLM_CHECK_MSG(smem <= size_t(optin),
                  "Attention: %lld keys need %zu bytes of shared memory, the device has %d",
                  (long long)max_keys, smem, optin);
    CUDA_CHECK(cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    int(smem)));
  }
  // The CPU's constants: r in double then rounded to fp32 once, coeff = l+1.
  const float r = 1.0f / float(std::sqrt(double(D)) * double(layer + 1));
  const float coeff = float(layer + 1);
  const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(H));
  attention_kernel<<<grid, kAttnThreads, smem, stream>>>(
      Dev(qkv), start, H, D, Dev(k_cache), Dev(v_cache), prefix_len, r, coeff, Dev(ctx));
  GLM_CHECK_LAUNCH();
}

}  // namespace glm::gpu
