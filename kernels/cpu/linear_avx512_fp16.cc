// The avx512fp16 path's linear kernels: linear_avx512.cc compiled again for CPUs with
// AVX512-FP16, where int8 weights are dequantized by fp16 arithmetic (Decoder::Load32 there).
// Bit-identical to LinearScalar, as every path.
//
// GCC 12 and later declare the AVX512-FP16 intrinsics for any target and build them under the
// file's target pragma. Clang (14) declares them only when the whole file targets AVX512-FP16
// (-march=native on such a CPU, as scripts/fuzz.sh builds), and older GCCs lack them: those builds
// leave the kernels out, and the path is then unsupported (LinearAvx512Fp16Built).
#include "kernels/cpu/simd.h"

#if (defined(__clang__) && defined(__AVX512FP16__)) || \
    (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 12)

#define GLM_AVX512_FP16 1
#include "kernels/cpu/linear_avx512.cc"  // NOLINT(bugprone-suspicious-include)

namespace glm {
bool LinearAvx512Fp16Built() { return true; }
}  // namespace glm

#else

#include "runtime/check.h"

namespace glm {
bool LinearAvx512Fp16Built() { return false; }
void LinearAvx512Fp16(const Half*, int64_t, const TensorView&, const Half*, Half*, float*) {
  GLM_CHECK_MSG(false,
                "this build has no avx512fp16 kernels (its compiler could not target "
                "AVX512-FP16); dispatch never selects the path here");
}
}  // namespace glm

#endif
