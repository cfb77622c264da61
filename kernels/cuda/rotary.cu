// Rotary position embedding with the reference's fp16 tables (spec §1.6):
//   inv_freq[i] = fp16(1 / 10000^(2i/D)), ang[p, i] = fp16(float(fp16(p)) · inv_freq[i]),
//   cos/sin = fp16(cos/sin(float(ang)))
// The tables are the CPU's RotaryTable (kernels/cpu/rotary.cc) uploaded once, so they are the
// reference's bit for bit. Applied over all D dims with rotate_half pairing (i, i+D/2):
//   x'[i]     = fp16(x[i]·cos_i − x[i+D/2]·sin_i)
//   x'[i+D/2] = fp16(x[i+D/2]·cos_i + x[i]·sin_i)
// Each product of two fp16 values is exact in fp32, so the one fp32 addition and the final
// rounding are the CPU's: bit-identical. v is not rotated.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kernels.h"

namespace glm::gpu {
namespace {

// One thread per (token, head, q|k, i < D/2) pair.
__global__ void rotary_kernel(__half* qkv, int64_t pairs, int H, int D, const int32_t* positions,
                              const __half* cos_t, const __half* sin_t, int max_seq) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= pairs) return;
  const int half = D / 2;
  const int i = int(idx % half);
  const int part = int((idx / half) % 2);  // 0: q, 1: k
  const int64_t th = idx / (2 * half);     // token * H + head
  const int64_t t = th / H;
  const int32_t p = positions[t];
  if (p < 0 || p >= max_seq) __trap();  // the caller checks positions on the host
  __half* x = qkv + th * 3 * D + int64_t(part) * D;
  const float a = __half2float(x[i]), b = __half2float(x[i + half]);
  const float c = __half2float(cos_t[int64_t(p) * half + i]);
  const float s = __half2float(sin_t[int64_t(p) * half + i]);
  x[i] = __float2half_rn(a * c + (-b) * s);
  x[i + half] = __float2half_rn(b * c + a * s);
}

}  // namespace

void ApplyRotary(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                 const RotaryTableView& table, cudaStream_t stream) {
  GLM_CHECK_MSG(table.head_dim == D, "rotary table for D=%d used with D=%d", table.head_dim, D);
  GLM_CHECK_MSG(T >= 0 && H > 0 && D > 0 && D % 2 == 0, "ApplyRotary: bad shape T=%lld H=%d D=%d",
                (long long)T, H, D);
  GLM_CHECK(table.cos && table.sin && table.max_seq > 0);
  if (T == 0) return;
  GLM_CHECK(qkv && positions);
  const int64_t pairs = T * H * D;  // T·H·2 parts·D/2
  const int threads = 256;
  rotary_kernel<<<unsigned(CeilDiv(pairs, threads)), threads, 0, stream>>>(
      Dev(qkv), pairs, H, D, positions, Dev(table.cos), Dev(table.sin), table.max_seq);
  GLM_CHECK_LAUNCH();
}

}  // namespace glm::gpu
