// Runtime choice of the CPU kernel implementation ("path"): the scalar reference, AVX2+FMA+F16C,
// AVX-512 (F/BW/VL/DQ), or AVX-512 with AVX512-FP16. The path is picked once, at first use, from
// CPUID, unless the environment variable GLM_CPU_PATH=scalar|avx2|avx512|avx512fp16 names one (an
// unsupported name or a path this CPU lacks aborts with the reason). Tests and benchmarks force a
// path with SetCpuPath or call one path's kernels directly through KernelsFor.
//
// Numerics per path: every path follows the spec's rounding points (kernels.h). Reductions
// (dot products, LayerNorm statistics, attention scores) accumulate in fp32 in a path-specific
// but fixed order, so results differ between paths by fp32 rounding only; within one path each
// output element is bit-identical whatever the batch (T) and its other rows (batch invariance).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cpu/kernels.h"
#include "runtime/check.h"

namespace glm {

// kAvx512Fp16: the avx512 path's kernels, with int8 weights dequantized by AVX512-FP16's fp16
// arithmetic (linear_avx512_fp16.cc); the same outputs, bit for bit.
enum class CpuPath : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Fp16 = 3 };
inline constexpr int kNumCpuPaths = 4;

const char* CpuPathName(CpuPath path);  // "scalar", "avx2", "avx512", "avx512fp16"
StatusOr<CpuPath> ParseCpuPath(const std::string& name);
// Whether this CPU and OS run the path (CPUID feature bits and XGETBV register state).
bool CpuPathSupported(CpuPath path);
// The CPU features a path needs, for messages ("avx512f avx512bw avx512vl avx512dq fma f16c").
const char* CpuPathFeatures(CpuPath path);
// The fastest supported path.
CpuPath BestCpuPath();

// The CPU's vendor and family (CPUID leaves 0 and 1, the family with its extension), for the
// defaults that were measured per microarchitecture (the decode prefetch, linear_common.h).
// avx512fp16 (CPUID leaf 7) marks Intel's Sapphire Rapids and later server cores, whose model
// numbers a hypervisor may not pass on as they are.
struct CpuIdentity {
  enum Vendor { kOther, kIntel, kAmd };
  Vendor vendor = kOther;
  int family = 0, model = 0;
  bool avx512fp16 = false;
};
const CpuIdentity& IdentifyCpu();

// The path the public kernels (kernels.h) use. Chosen at first use: GLM_CPU_PATH if set, else
// BestCpuPath(); setting GLM_CPU_PATH to a path the CPU lacks is a fatal error.
CpuPath ActiveCpuPath();
// Forces the path for all later kernel calls (tests, benchmarks). Error if unsupported.
// Not to be called while kernels run on other threads.
Status SetCpuPath(CpuPath path);

// One path's implementation of each op (same contracts as kernels.h).
struct CpuKernels {
  void (*layer_norm)(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta,
                     float eps, Half* out);
  void (*linear)(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
                 float* scratch);
  void (*apply_rotary)(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                       const RotaryTable& table);
  void (*attention)(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
                    const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer, Half* ctx,
                    float* scratch);
  void (*geglu)(const Half* u, int64_t T, int64_t F, Half* g);
  void (*deep_norm_residual)(const Half* ln_out, const Half* branch, float alpha, int64_t n,
                             Half* out);
};

// The kernels of `path`; aborts if the CPU lacks it.
const CpuKernels& KernelsFor(CpuPath path);

}  // namespace glm
