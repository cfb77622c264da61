// The fp16 -> fp32 table, built once on first use (thread-safe static initialisation).
#include "kernels/cpu/half_table.h"

#include <cstdint>
#include <vector>

namespace glm {

const float* HalfTable() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = HalfToFloat(Half{uint16_t(i)});
    return t;
  }();
  return table.data();
}

void HalfToFloatRow(const Half* src, int64_t n, float* dst) {
  const float* t = HalfTable();
  for (int64_t i = 0; i < n; ++i) dst[i] = t[src[i].bits];
}

}  // namespace glm
