// GeGLU, the DeepNorm residual and rotary with AVX2 + F16C. Bit-identical to the scalar kernels
// (elementwise.cc, rotary.cc): the same fp32 operations in the same order on each element.
//   GeGLU:    g = fp16(u1 · G[u2]), G = GeluHalfTable() (fp16(gelu_erf) of every fp16 value,
//             computed by the scalar formula), looked up with VPGATHERDD; in chunks of 2048
//             elements on the kernel threads (the gathers miss the caches once the layer's
//             GEMVs have run: 40–50 µs for GLM-130B's F = 32768 on one core).
//   residual: out = fp16(fp16(y·α) + branch).
//   rotary:   x'[i] = fp16(x[i]·c − x[i+D/2]·s), x'[i+D/2] = fp16(x[i+D/2]·c + x[i]·s); the
//             products of two fp16 values are exact in fp32, so one rounding of the sum as in
//             the scalar code.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/simd.h"
#include "kernels/cpu/target.h"
#include "runtime/fp16.h"
#include "runtime/parallel.h"

GLM_TARGET_PUSH("avx2,fma,f16c")

namespace glm {
namespace {

inline __m256 Load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline void Store8(Half* p, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline __m256 RoundToHalf(__m256 v) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline float ToFloat(Half h) { return _cvtsh_ss(h.bits); }
inline Half ToHalf(float f) {
  return Half{uint16_t(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))};
}

}  // namespace

void GeGluAvx2(const Half* u, int64_t T, int64_t F, Half* g) {
  const float* gelu = GeluHalfTable();
  constexpr int64_t kChunk = 2048;  // a multiple of 8
  const int64_t chunks = (F + kChunk - 1) / kChunk;
  ThreadPool::Global().ParallelFor(T * chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / chunks, f0 = (i % chunks) * kChunk;
      const int64_t f1 = f0 + kChunk < F ? f0 + kChunk : F;
      const Half* lin = u + t * 2 * F;
      const Half* gate = lin + F;
      Half* out = g + t * F;
      int64_t f = f0;
      for (; f + 8 <= f1; f += 8) {
        const __m256i bits =
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gate + f)));
        const __m256 gl = _mm256_i32gather_ps(gelu, bits, 4);
        Store8(out + f, _mm256_mul_ps(Load8(lin + f), gl));
      }
      for (; f < f1; ++f) out[f] = ToHalf(ToFloat(lin[f]) * gelu[gate[f].bits]);
    }
  });
}

void DeepNormResidualAvx2(const Half* ln_out, const Half* branch, float alpha, int64_t n,
                          Half* out) {
  const __m256 a = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Store8(out + i,
           _mm256_add_ps(RoundToHalf(_mm256_mul_ps(Load8(ln_out + i), a)), Load8(branch + i)));
  }
  for (; i < n; ++i) {
    const float y = ToFloat(ToHalf(ToFloat(ln_out[i]) * alpha));
    out[i] = ToHalf(y + ToFloat(branch[i]));
  }
}

void ApplyRotaryAvx2(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                     const RotaryTable& table) {
  GLM_CHECK_MSG(table.head_dim == D, "rotary table for D=%d used with D=%d", table.head_dim, D);
  const int half = D / 2;
  for (int64_t t = 0; t < T; ++t) {
    const int32_t p = positions[t];
    GLM_CHECK_MSG(p >= 0 && p < table.max_seq, "position %d outside the rotary table [0, %d)", p,
                  table.max_seq);
    const Half* c = table.cos.data() + size_t(p) * half;
    const Half* s = table.sin.data() + size_t(p) * half;
    for (int h = 0; h < H; ++h) {
      Half* head = qkv + (t * H + h) * int64_t(3 * D);
      for (int part = 0; part < 2; ++part) {  // q then k; v is not rotated
        Half* x = head + part * D;
        int i = 0;
        for (; i + 8 <= half; i += 8) {
          const __m256 a = Load8(x + i), b = Load8(x + i + half);
          const __m256 ci = Load8(c + i), si = Load8(s + i);
          Store8(x + i, _mm256_sub_ps(_mm256_mul_ps(a, ci), _mm256_mul_ps(b, si)));
          Store8(x + i + half, _mm256_add_ps(_mm256_mul_ps(b, ci), _mm256_mul_ps(a, si)));
        }
        for (; i < half; ++i) {
          const float a = ToFloat(x[i]), b = ToFloat(x[i + half]);
          const float ci = ToFloat(c[i]), si = ToFloat(s[i]);
          x[i] = ToHalf(a * ci - b * si);
          x[i + half] = ToHalf(b * ci + a * si);
        }
      }
    }
  }
}

}  // namespace glm

GLM_TARGET_POP()
