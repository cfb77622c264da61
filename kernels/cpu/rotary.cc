// Rotary position embedding with the reference's fp16 tables (spec §1.6):
//   inv_freq[i] = fp16(1 / 10000^(2i/D))            computed in fp32, stored fp16
//   ang[p, i]   = fp16(float(fp16(p)) · inv_freq[i])  the fp16 einsum
//   cos/sin     = fp16(cos/sin(float(ang)))
// Applied over all D dims with rotate_half pairing (i, i+D/2), one rounding per output.
#include <cmath>

#include "kernels/cpu/half_table.h"
#include "kernels/cpu/kernels.h"
#include "kernels/cpu/simd.h"

namespace glm {

RotaryTable RotaryTable::Build(int head_dim, int max_seq) {
  GLM_CHECK(head_dim > 0 && head_dim % 2 == 0 && max_seq > 0);
  RotaryTable t;
  t.head_dim = head_dim;
  t.max_seq = max_seq;
  const int half = head_dim / 2;
  t.inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    const float exponent = float(2 * i) / float(head_dim);  // arange(0, D, 2).float() / D
    t.inv_freq[i] = FloatToHalf(1.0f / std::pow(10000.0f, exponent));
  }
  t.cos.resize(size_t(max_seq) * half);
  t.sin.resize(size_t(max_seq) * half);
  for (int p = 0; p < max_seq; ++p) {
    const float pos = RoundHalf(float(p));  // torch.arange(seq_len, dtype=half)
    for (int i = 0; i < half; ++i) {
      const float ang = RoundHalf(pos * HalfToFloat(t.inv_freq[i]));
      t.cos[size_t(p) * half + i] = FloatToHalf(std::cos(ang));
      t.sin[size_t(p) * half + i] = FloatToHalf(std::sin(ang));
    }
  }
  return t;
}

void ApplyRotaryScalar(Half* qkv, int64_t T, int H, int D, const int32_t* positions,
                       const RotaryTable& table) {
  GLM_CHECK_MSG(table.head_dim == D, "rotary table for D=%d used with D=%d", table.head_dim, D);
  const float* tab = HalfTable();
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
        for (int i = 0; i < half; ++i) {
          const float a = tab[x[i].bits], b = tab[x[i + half].bits];
          const float ci = tab[c[i].bits], si = tab[s[i].bits];
          x[i] = FloatToHalf(a * ci + (-b) * si);
          x[i + half] = FloatToHalf(b * ci + a * si);
        }
      }
    }
  }
}

}  // namespace glm
