// Per-path entry points of the CPU kernels (internal to kernels/cpu): the scalar references keep
// their original files, the SIMD versions live in *_avx2.cc / *_avx512.cc, compiled for their ISA
// with target attributes and only called after dispatch.cc has checked CPUID. Contracts are those
// of kernels.h.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernels.h"

namespace glm {

// Scalar references (the original kernels).
void LayerNormScalar(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta,
                     float eps, Half* out);
void LinearScalar(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                  float* scratch);
void ApplyRotaryScalar(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                       const RotaryTable& table);
void AttentionScalar(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                     const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer,
                     Half* ctx, float* scratch);
void GeGluScalar(const Half* u, int64_t T, int64_t F, Half* g);
void DeepNormResidualScalar(const Half* ln_out, const Half* branch, float alpha, int64_t n,
                            Half* out);

// AVX2 + FMA + F16C. The elementwise ops and LayerNorm of the AVX-512 path are these too: they
// are a few percent of a layer and run at memory speed with 256-bit vectors.
void LinearAvx2(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                float* scratch);
void LayerNormAvx2(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta,
                   float eps, Half* out);
void ApplyRotaryAvx2(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                     const RotaryTable& table);
void AttentionAvx2(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                   const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer, Half* ctx,
                   float* scratch);
void GeGluAvx2(const Half* u, int64_t T, int64_t F, Half* g);
void DeepNormResidualAvx2(const Half* ln_out, const Half* branch, float alpha, int64_t n,
                          Half* out);

// AVX-512 F/BW/VL/DQ (+ FMA, F16C).
void LinearAvx512(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                  float* scratch);
// AVX-512 above with AVX512-FP16: the same kernels, int8 decoded by VMULPH (the avx512fp16 path).
void LinearAvx512Fp16(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                      float* scratch);
// Whether this build has them (linear_avx512_fp16.cc: its compiler could target AVX512-FP16).
bool LinearAvx512Fp16Built();
void AttentionAvx512(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                     const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer,
                     Half* ctx, float* scratch);

// float(fp16(gelu_erf(x))) for every fp16 bit pattern x, computed as GeGluScalar does: the SIMD
// GeGLU looks it up, so it is bit-identical to the reference.
const float* GeluHalfTable();  // [65536]

// Floats of attention scratch each thread takes for `keys` keys (AttentionScratchFloats' share).
int64_t AttentionScratchPerThread(int64_t keys);
// The argument checks every attention kernel makes (head_dim, the prefix in the cache).
void CheckAttention(int D, int64_t prefix_len, int64_t total);

// Checks shared by every Linear implementation (shapes, dtypes, scales, group size).
void CheckLinearWeight(const TensorView& w);

}  // namespace glm
