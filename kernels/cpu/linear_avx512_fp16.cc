// The avx512fp16 path's linear kernels: linear_avx512.cc compiled again for CPUs with
// AVX512-FP16, where int8 weights are dequantized by fp16 arithmetic (Decoder::Load32 there).
// Bit-identical to LinearScalar, as every path.
#define GLM_AVX512_FP16 1
#include "kernels/cpu/linear_avx512.cc"  // NOLINT(bugprone-suspicious-include)
