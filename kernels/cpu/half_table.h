// fp16 -> fp32 through a 64K-entry table: exact, and much faster than bit manipulation on CPUs
// without F16C in the baseline ISA (the SIMD kernels of kernels/cpu use F16C instead).
#pragma once

#include "runtime/fp16.h"

namespace glm {

const float* HalfTable();  // [65536]

inline float H2F(const float* table, Half h) { return table[h.bits]; }

// dst[i] = float(src[i]) for i < n.
void HalfToFloatRow(const Half* src, int64_t n, float* dst);

}  // namespace glm
