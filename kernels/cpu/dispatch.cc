// CPUID detection, the GLM_CPU_PATH override and the public kernel entry points of kernels.h,
// which forward to the active path's table (one relaxed atomic load per call).
#include "kernels/cpu/dispatch.h"

#include <cpuid.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "kernels/cpu/simd.h"
#include "quant/format.h"

namespace glm {
namespace {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512fp16 = false;
};

uint64_t XGetBv() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (uint64_t(edx) << 32) | eax;
}

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = XGetBv();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;    // SSE and AVX state saved by the OS
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;  // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!ymm_state) return f;
  f.fma = c & (1u << 12);
  f.f16c = c & (1u << 29);
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = b & (1u << 5);
  if (zmm_state) {
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512fp16 = d & (1u << 23);
  }
  return f;
}

const CpuFeatures& Features() {
  static const CpuFeatures f = Detect();
  return f;
}

CpuIdentity DetectIdentity() {
  CpuIdentity id;
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return id;
  char vendor[13] = {};
  __builtin_memcpy(vendor, &b, 4);
  __builtin_memcpy(vendor + 4, &d, 4);
  __builtin_memcpy(vendor + 8, &c, 4);
  const std::string v = vendor;
  id.vendor = v == "GenuineIntel"   ? CpuIdentity::kIntel
              : v == "AuthenticAMD" ? CpuIdentity::kAmd
                                    : CpuIdentity::kOther;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return id;
  const int base_family = (a >> 8) & 0xf, base_model = (a >> 4) & 0xf;
  id.family = base_family == 0xf ? base_family + int((a >> 20) & 0xff) : base_family;
  id.model =
      base_family == 0x6 || base_family == 0xf ? base_model | int((a >> 12) & 0xf0) : base_model;
  id.avx512fp16 = Features().avx512fp16;
  return id;
}

const CpuKernels kScalarKernels = {LayerNormScalar, LinearScalar, ApplyRotaryScalar,
                                   AttentionScalar, GeGluScalar,  DeepNormResidualScalar};
const CpuKernels kAvx2Kernels = {LayerNormAvx2, LinearAvx2, ApplyRotaryAvx2,
                                 AttentionAvx2, GeGluAvx2,  DeepNormResidualAvx2};
const CpuKernels kAvx512Kernels = {LayerNormAvx2,   LinearAvx512, ApplyRotaryAvx2,
                                   AttentionAvx512, GeGluAvx2,    DeepNormResidualAvx2};
const CpuKernels kAvx512Fp16Kernels = {LayerNormAvx2,   LinearAvx512Fp16, ApplyRotaryAvx2,
                                       AttentionAvx512, GeGluAvx2,        DeepNormResidualAvx2};

std::atomic<const CpuKernels*> g_active{nullptr};
std::atomic<int> g_active_path{-1};
std::once_flag g_init;

const CpuKernels& Table(CpuPath p) {
  switch (p) {
    case CpuPath::kAvx512Fp16:
      return kAvx512Fp16Kernels;
    case CpuPath::kAvx512:
      return kAvx512Kernels;
    case CpuPath::kAvx2:
      return kAvx2Kernels;
    default:
      return kScalarKernels;
  }
}

void InitFromEnvironment() {
  CpuPath path = BestCpuPath();
  if (const char* env = std::getenv("GLM_CPU_PATH"); env != nullptr && *env != '\0') {
    StatusOr<CpuPath> p = ParseCpuPath(env);
    GLM_CHECK_MSG(p.ok(), "GLM_CPU_PATH: %s", p.status().message().c_str());
    GLM_CHECK_MSG(CpuPathSupported(*p), "GLM_CPU_PATH=%s: this CPU lacks some of %s", env,
                  CpuPathFeatures(*p));
    path = *p;
  }
  g_active_path.store(int(path));
  g_active.store(&Table(path), std::memory_order_release);
}

inline const CpuKernels& Active() {
  const CpuKernels* k = g_active.load(std::memory_order_acquire);
  if (__builtin_expect(k == nullptr, 0)) {
    std::call_once(g_init, InitFromEnvironment);
    k = g_active.load(std::memory_order_acquire);
  }
  return *k;
}

}  // namespace

const char* CpuPathName(CpuPath path) {
  switch (path) {
    case CpuPath::kScalar:
      return "scalar";
    case CpuPath::kAvx2:
      return "avx2";
    case CpuPath::kAvx512:
      return "avx512";
    case CpuPath::kAvx512Fp16:
      return "avx512fp16";
  }
  return "?";
}

const char* CpuPathFeatures(CpuPath path) {
  switch (path) {
    case CpuPath::kScalar:
      return "(none)";
    case CpuPath::kAvx2:
      return "avx2 fma f16c";
    case CpuPath::kAvx512:
      return "avx512f avx512bw avx512vl avx512dq avx2 fma f16c";
    case CpuPath::kAvx512Fp16:
      return LinearAvx512Fp16Built()
                 ? "avx512fp16 avx512f avx512bw avx512vl avx512dq avx2 fma f16c"
                 : "avx512fp16 avx512f avx512bw avx512vl avx512dq avx2 fma f16c, and a build "
                   "with its kernels (this compiler could not target AVX512-FP16)";
  }
  return "?";
}

StatusOr<CpuPath> ParseCpuPath(const std::string& name) {
  for (int i = 0; i < kNumCpuPaths; ++i) {
    if (name == CpuPathName(CpuPath(i))) return CpuPath(i);
  }
  return Errorf("unknown CPU path '%s' (expected scalar, avx2, avx512 or avx512fp16)",
                name.c_str());
}

bool CpuPathSupported(CpuPath path) {
  const CpuFeatures& f = Features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (path) {
    case CpuPath::kScalar:
      return true;
    case CpuPath::kAvx2:
      return avx2;
    case CpuPath::kAvx512:
      return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
    case CpuPath::kAvx512Fp16:
      return CpuPathSupported(CpuPath::kAvx512) && f.avx512fp16 && LinearAvx512Fp16Built();
  }
  return false;
}

CpuPath BestCpuPath() {
  if (CpuPathSupported(CpuPath::kAvx512Fp16)) return CpuPath::kAvx512Fp16;
  if (CpuPathSupported(CpuPath::kAvx512)) return CpuPath::kAvx512;
  if (CpuPathSupported(CpuPath::kAvx2)) return CpuPath::kAvx2;
  return CpuPath::kScalar;
}

const CpuIdentity& IdentifyCpu() {
  static const CpuIdentity id = DetectIdentity();
  return id;
}

CpuPath ActiveCpuPath() {
  Active();
  return CpuPath(g_active_path.load());
}

Status SetCpuPath(CpuPath path) {
  if (!CpuPathSupported(path)) {
    return Errorf("CPU path %s is not supported here: it needs %s", CpuPathName(path),
                  CpuPathFeatures(path));
  }
  Active();  // settle the one-time initialisation first so it cannot overwrite this choice
  g_active_path.store(int(path));
  g_active.store(&Table(path), std::memory_order_release);
  return Status::Ok();
}

const CpuKernels& KernelsFor(CpuPath path) {
  GLM_CHECK_MSG(CpuPathSupported(path), "CPU path %s needs %s", CpuPathName(path),
                CpuPathFeatures(path));
  return Table(path);
}

void CheckLinearWeight(const TensorView& w) {
  GLM_CHECK_MSG(w.ndim == 2, "linear weight must be 2-D, got %s", w.ShapeString().c_str());
  GLM_CHECK_MSG(w.dtype == DType::kF16 || w.dtype == DType::kI8 || w.dtype == DType::kI4,
                "linear with %s weights is not implemented on the CPU", DTypeName(w.dtype));
  if (w.dtype == DType::kF16) return;
  const int64_t K = w.cols();
  GLM_CHECK_MSG(w.scales != nullptr, "quantized %s weight without scales", DTypeName(w.dtype));
  GLM_CHECK_MSG(w.dtype != DType::kI4 || K % 2 == 0, "int4 weight with an odd row length %lld",
                (long long)K);
  GLM_CHECK_MSG(w.group_size >= 0 && (w.group_size == 0 || K % w.group_size == 0),
                "group size %d does not divide the row length %lld", w.group_size, (long long)K);
}

// ---- The public kernels (kernels.h): the active path ----

void LayerNorm(const Half* x, int64_t T, int64_t C, const Half* gamma, const Half* beta, float eps,
               Half* out) {
  Active().layer_norm(x, T, C, gamma, beta, eps, out);
}

void Linear(const Half* x, int64_t T, const TensorView& w, const Half* bias, Half* out,
            float* scratch) {
  CheckLinearWeight(w);
  if (T <= 0 || w.rows() == 0) return;
  Active().linear(x, T, w, bias, out, scratch);
}

void ApplyRotary(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                 const RotaryTable& table) {
  Active().apply_rotary(qkv, T, H, D, positions, table);
}

void Attention(const Half* qkv, int64_t T, int64_t start, int H, int D, const Half* k_cache,
               const Half* v_cache, int64_t capacity, int64_t prefix_len, int layer, Half* ctx,
               float* scratch) {
  GLM_CHECK_MSG(start + T <= capacity, "attention over %lld rows in a cache of %lld",
                (long long)(start + T), (long long)capacity);
  Active().attention(qkv, T, start, H, D, k_cache, v_cache, capacity, prefix_len, layer, ctx,
                     scratch);
}

void GeGlu(const Half* u, int64_t T, int64_t F, Half* g) { Active().geglu(u, T, F, g); }

void DeepNormResidual(const Half* ln_out, const Half* branch, float alpha, int64_t n, Half* out) {
  Active().deep_norm_residual(ln_out, branch, alpha, n, out);
}

}  // namespace glm
