// Linear y = x·Wᵀ + b with AVX-512 (spec §1.3, §3) for fp16, int8 and int4 weights, per row or
// per group; bit-identical to LinearScalar.
//
// Numerics. x is converted to fp32 exactly; quantized weights are dequantized as the reference,
// w = fp16(fp16(q)·scale) (the product rounded by VCVTPS2PH). Every product x·w of two fp16
// values is exact in fp32, so an FMA rounds exactly like the scalar multiply-then-add. Each
// output follows the scalar kernel's order (linear.cc, Dot): 8 lane sums over k ≡ j (mod 8) in
// increasing k, the tree ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)), then the K mod 8 last products
// added in order. So the output bits are those of the scalar reference, on every path, whatever
// T and the other rows of the batch (batch invariance by construction).
//
// Layout. A zmm accumulator holds two weight rows (a "pair") x 8 lanes for one token; the x
// step (8 values) is broadcast to both halves. The decode kernel (T <= 4) decodes 4 pairs of rows
// in registers and streams them once. The prefill kernel decodes 32 pairs x 512 inputs into an
// fp32 panel (128 KiB), copies each 6-token tile of x with every step doubled (a 256->512-bit
// broadcast from memory would cost a shuffle on the FMA port), then runs 6-token x 4-pair
// register tiles (24 accumulators, 24 FMAs per 10 loads) over it, keeping the accumulators in a
// per-thread buffer between K blocks (exact: a store and a load). Tile sizes were chosen by
// measurement on an Ice Lake Xeon (bench/results/cpu_kernels.md).
#include <immintrin.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "kernels/cpu/linear_common.h"
#include "kernels/cpu/simd.h"
#include "quant/format.h"
#include "runtime/parallel.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
// GCC 12's AVX-512 headers initialise "undefined" vectors from themselves (GCC bug 105593),
// which -Wuninitialized reports at every inlined intrinsic.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace glm {
namespace {

constexpr int kStep = 8;        // inputs per step: the reference's 8 lane sums
constexpr int kDirectMaxT = 4;  // decode kernel: up to 4 tokens x 4 pairs of accumulators
constexpr int kDirectPairs = 4;
constexpr int kTileT = 6, kTileP = 4;  // prefill register tile: 24 accumulators

inline __m512 RoundToHalf(__m512 v) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline __m512 PairScale(const Half& a, const Half& b) {
  return _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(a.bits)), _mm256_set1_ps(_cvtsh_ss(b.bits)),
                            1);
}

// The scalar kernel's tree on each 8-lane half: lanes (i + i+4), then (0+1) + (2+3).
inline void ReducePair(__m512 v, float* a, float* b) {
  const __m256 lo = _mm512_castps512_ps256(v), hi = _mm512_extractf32x8_ps(v, 1);
  const __m128 sa = _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
  const __m128 sb = _mm_add_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps(hi, 1));
  const __m128 h = _mm_hadd_ps(sa, sb);  // [A0+B0, C0+D0, A1+B1, C1+D1]
  const __m128 r = _mm_hadd_ps(h, h);
  *a = _mm_cvtss_f32(r);
  *b = _mm_cvtss_f32(_mm_movehdup_ps(r));
}

// ---- Pair decoders: [row a | row b] x the 8 dequantized weights of step s ----
// Group(g) prepares the scales of group g (per-row weights have one group of K inputs).

struct F16Pair {
  const Half *a = nullptr, *b = nullptr;
  F16Pair() = default;
  F16Pair(const LinearWeight& w, int64_t ra, int64_t rb)
      : a(w.f16 + ra * w.K), b(w.f16 + rb * w.K) {}
  void Group(int64_t) {}
  __m512 Load(int64_t s) const {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + s * kStep));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + s * kStep));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(va), vb, 1));
  }
  void Load2(int64_t s, __m512* w0, __m512* w1) const {
    *w0 = Load(s);
    *w1 = Load(s + 1);
  }
};

struct I8Pair {
  const int8_t *a = nullptr, *b = nullptr;
  const Half *sa = nullptr, *sb = nullptr;
  __m512 scale;
  I8Pair() = default;
  I8Pair(const LinearWeight& w, int64_t ra, int64_t rb)
      : a(w.q + ra * w.row_bytes),
        b(w.q + rb * w.row_bytes),
        sa(w.scales + ra * w.groups),
        sb(w.scales + rb * w.groups) {}
  void Group(int64_t g) { scale = PairScale(sa[g], sb[g]); }
  __m512 Load(int64_t s) const {
    const __m128i q =
        _mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + s * kStep)),
                           _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + s * kStep)));
    return RoundToHalf(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), scale));
  }
  void Load2(int64_t s, __m512* w0, __m512* w1) const {
    *w0 = Load(s);
    *w1 = Load(s + 1);
  }
};

// int4: 8 weights = 4 bytes per row, element 2j in the high nibble of byte j. The 8 bytes of a
// pair are duplicated, widened to dwords and shifted right by 4 in even lanes; the low nibble
// plus 16 for row b indexes VPERMT2PS into the two rows' 16-entry tables of fp16(q·scale)
// (q = 0..7, -8..-1): the exact dequantized values.
struct I4Pair {
  const int8_t *a = nullptr, *b = nullptr;
  const Half *sa = nullptr, *sb = nullptr;
  __m512 ta, tb;
  I4Pair() = default;
  I4Pair(const LinearWeight& w, int64_t ra, int64_t rb)
      : a(w.q + ra * w.row_bytes),
        b(w.q + rb * w.row_bytes),
        sa(w.scales + ra * w.groups),
        sb(w.scales + rb * w.groups) {}
  static __m512 Table(const Half& s) {
    const __m512 q = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
    return RoundToHalf(_mm512_mul_ps(q, _mm512_set1_ps(_cvtsh_ss(s.bits))));
  }
  void Group(int64_t g) {
    ta = Table(sa[g]);
    tb = Table(sb[g]);
  }
  __m512 Load(int64_t s) const {
    int32_t wa, wb;
    __builtin_memcpy(&wa, a + s * (kStep / 2), 4);
    __builtin_memcpy(&wb, b + s * (kStep / 2), 4);
    const __m128i bytes = _mm_unpacklo_epi32(_mm_cvtsi32_si128(wa), _mm_cvtsi32_si128(wb));
    const __m128i dup =
        _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
    const __m512i shift = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i nib = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(dup), shift);
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    const __m512i idx =
        _mm512_ternarylogic_epi32(nib, _mm512_set1_epi32(15), sel, 0xEA);  // (A&B)|C
    return _mm512_permutex2var_ps(ta, idx, tb);
  }
  // Steps s and s+1 from one 8-byte load per row: the 16 bytes [a_s, b_s, a_s+1, b_s+1] widen
  // to dwords once, their high and low nibbles (+16 for row b) are formed once, and one
  // two-source dword permute per step interleaves them into element order.
  void Load2(int64_t s, __m512* w0, __m512* w1) const {
    const __m128i qa = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + s * (kStep / 2)));
    const __m128i qb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + s * (kStep / 2)));
    const __m512i z = _mm512_cvtepu8_epi32(_mm_unpacklo_epi32(qa, qb));
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 16, 16, 16, 16, 0, 0, 0, 0, 16, 16, 16, 16);
    const __m512i m15 = _mm512_set1_epi32(15);
    const __m512i lo = _mm512_ternarylogic_epi32(z, m15, sel, 0xEA);
    const __m512i hi = _mm512_ternarylogic_epi32(_mm512_srli_epi32(z, 4), m15, sel, 0xEA);
    const __m512i i0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i1 =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    *w0 = _mm512_permutex2var_ps(ta, _mm512_permutex2var_epi32(hi, i0, lo), tb);
    *w1 = _mm512_permutex2var_ps(ta, _mm512_permutex2var_epi32(hi, i1, lo), tb);
  }
};

// Decodes steps [s0, s1) of a pair into dst (16 floats per step), entering groups as it goes.
template <class Pair>
void DequantSteps(Pair& pair, const LinearWeight& w, int64_t s0, int64_t s1, float* dst) {
  const int64_t per_group = w.group_steps;  // 0: one group
  int64_t g = per_group ? s0 / per_group : 0;
  int64_t group_end = per_group ? (g + 1) * per_group : INT64_MAX;
  pair.Group(g);
  for (int64_t s = s0; s < s1; ++s) {
    if (s == group_end) {
      pair.Group(++g);
      group_end += per_group;
    }
    _mm512_store_ps(dst + (s - s0) * 16, pair.Load(s));
  }
}

// Group sizes that are not a multiple of 8: element by element (the same values).
void DequantStepsGeneric(const LinearWeight& w, int64_t ra, int64_t rb, int64_t s0, int64_t s1,
                         float* dst) {
  for (int64_t s = s0; s < s1; ++s, dst += 16) {
    for (int i = 0; i < kStep; ++i) {
      dst[i] = DequantElement(w, ra, s * kStep + i);
      dst[kStep + i] = DequantElement(w, rb, s * kStep + i);
    }
  }
}

// x of token t at step s in both halves of a zmm, from a copy of x with every step already
// doubled: a 256->512-bit broadcast from memory costs a shuffle uop on the FMA port, a plain load
// does not.
struct XDoubled {
  const float* p;  // [TB][steps][16]
  int64_t ld, s0;
  __m512 Load(int t, int64_t s) const { return _mm512_load_ps(p + t * ld + (s - s0) * 16); }
};

// acc[t][p] += x[t, step s] * w[pair p, step s], steps in order.
template <int TB, int NP, class X, class Src>
__attribute__((always_inline)) inline void Steps(const X& xs, const Src& src, int64_t s0,
                                                 int64_t s1, __m512 (&acc)[TB][NP]) {
  for (int64_t s = s0; s < s1; ++s) {
    __m512 wv[NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) wv[p] = src.Load(p, s);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      const __m512 xv = xs.Load(t, s);
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
    }
  }
}

// LinearEpilogue with F16C conversions (the same rounding).
inline Half Epilogue(bool quantized, float acc, const Half* bias, int64_t n) {
  const float b = bias ? _cvtsh_ss(bias[n].bits) : 0.f;
  if (quantized) acc = _cvtsh_ss(_cvtss_sh(acc, _MM_FROUND_TO_NEAREST_INT));
  return Half{uint16_t(_cvtss_sh(acc + b, _MM_FROUND_TO_NEAREST_INT))};
}

// The 4 partial sums (lanes i + i+4) of each half: [A, B, C, D] per row.
inline void HalfSums(__m512 v, __m128* a, __m128* b) {
  const __m256 lo = _mm512_castps512_ps256(v), hi = _mm512_extractf32x8_ps(v, 1);
  *a = _mm_add_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
  *b = _mm_add_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps(hi, 1));
}

// Reduces token t's accumulators of NP pairs (rows n..n+2NP-1, `rows` of them valid), adds the
// K mod 8 last products in order (as the scalar kernel does after its tree) and writes the
// epilogue. Full tiles without a tail reduce 8 rows at once: hadd(hadd(A,B)...) is the scalar
// tree (A+B)+(C+D) for every row.
// `acc` holds NP zmm accumulators, `stride` floats apart.
template <int NP>
inline void Finish(const float* acc, int64_t stride, const float* xt, const LinearWeight& w,
                   int64_t n, int64_t rows, const Half* bias, Half* out_t) {
  const int64_t K = w.K;
  const bool quantized = w.format != LinearWeight::kF16;
  int p0 = 0;
  for (; p0 + 4 <= NP && rows >= 2 * p0 + 8 && K % kStep == 0; p0 += 4) {
    __m128 s[8];
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      HalfSums(_mm512_load_ps(acc + (p0 + p) * stride), &s[2 * p], &s[2 * p + 1]);
    }
    const __m128 r0 = _mm_hadd_ps(_mm_hadd_ps(s[0], s[1]), _mm_hadd_ps(s[2], s[3]));
    const __m128 r1 = _mm_hadd_ps(_mm_hadd_ps(s[4], s[5]), _mm_hadd_ps(s[6], s[7]));
    __m256 v = _mm256_insertf128_ps(_mm256_castps128_ps256(r0), r1, 1);
    if (quantized) v = _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    const int64_t m = n + 2 * p0;
    if (bias) {
      v = _mm256_add_ps(
          v, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bias + m))));
    } else {
      v = _mm256_add_ps(v, _mm256_setzero_ps());  // as the scalar acc + 0.f (-0 becomes +0)
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out_t + m),
                     _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (int p = p0; p < NP; ++p) {
    float s[2];
    ReducePair(_mm512_load_ps(acc + p * stride), &s[0], &s[1]);
    for (int r = 0; r < 2 && 2 * p + r < rows; ++r) {
      const int64_t row = n + 2 * p + r;
      for (int64_t k = K - K % kStep; k < K; ++k) s[r] += xt[k] * DequantElement(w, row, k);
      out_t[row] = Epilogue(quantized, s[r], bias, row);
    }
  }
}

template <int NP, class Pair>
struct DirectSrc {
  Pair pairs[NP];
  __m512 Load(int p, int64_t s) const { return pairs[p].Load(s); }
};

// The decode kernel's loop: pair by pair, two steps at a time (each accumulator still sees its
// steps in order); x comes from the doubled copy, a plain load that can feed the FMA directly.
template <int TB, int NP, class Pair>
__attribute__((always_inline)) inline void DirectSteps(const XDoubled& xs,
                                                       const DirectSrc<NP, Pair>& src, int64_t s0,
                                                       int64_t s1, __m512 (&acc)[TB][NP]) {
  int64_t s = s0;
  for (; s + 2 <= s1; s += 2) {
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) {
      __m512 w0, w1;
      src.pairs[p].Load2(s, &w0, &w1);
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t) {
        acc[t][p] = _mm512_fmadd_ps(xs.Load(t, s), w0, acc[t][p]);
        acc[t][p] = _mm512_fmadd_ps(xs.Load(t, s + 1), w1, acc[t][p]);
      }
    }
  }
  if (s < s1) Steps<TB, NP>(xs, src, s, s1, acc);
}

struct PanelSrc {
  const float* p;
  int64_t ldp, s0;  // floats per pair, first step of the panel
  __m512 Load(int q, int64_t s) const { return _mm512_load_ps(p + q * ldp + (s - s0) * 16); }
};

// ---- Decode kernel: TB <= 4 tokens, NP pairs (rows n0..n0+2NP-1, the last possibly single) ----

template <int TB, int NP, class Pair>
void DirectTile(const float* x, const float* xd, const LinearWeight& w, int64_t n0, int64_t rows,
                const Half* bias, Half* out) {
  const int64_t N = w.N, K = w.K;
  DirectSrc<NP, Pair> src{};
#pragma GCC unroll 8
  for (int p = 0; p < NP; ++p) {
    const int64_t ra = n0 + 2 * p;
    src.pairs[p] = Pair(w, ra, 2 * p + 1 < rows ? ra + 1 : ra);
  }
  __m512 acc[TB][NP];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  const int64_t full = K / kStep;
  const int64_t per_group = w.group_steps ? w.group_steps : full;
  for (int64_t g = 0, s = 0; s < full; ++g, s += per_group) {
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) src.pairs[p].Group(g);
    DirectSteps<TB, NP, Pair>(XDoubled{xd, full * 16, 0}, src, s,
                              s + per_group < full ? s + per_group : full, acc);
  }
  alignas(64) float sums[TB][NP][16];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) _mm512_store_ps(sums[t][p], acc[t][p]);
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
    Finish<NP>(sums[t][0], 16, x + t * K, w, n0, rows, bias, out + t * N);
}

template <int TB, class Pair>
void DirectRows(const float* x, const float* xd, const LinearWeight& w, int64_t n0, int64_t n1,
                const Half* bias, Half* out) {
  int64_t n = n0;
  for (; n + 2 * kDirectPairs <= n1; n += 2 * kDirectPairs) {
    DirectTile<TB, kDirectPairs, Pair>(x, xd, w, n, 2 * kDirectPairs, bias, out);
  }
  for (; n < n1; n += 2) DirectTile<TB, 1, Pair>(x, xd, w, n, n1 - n < 2 ? 1 : 2, bias, out);
}

template <class Pair>
void DirectRange(const float* x, const float* xd, int64_t T, const LinearWeight& w, int64_t n0,
                 int64_t n1, const Half* bias, Half* out) {
  switch (T) {
    case 1:
      return DirectRows<1, Pair>(x, xd, w, n0, n1, bias, out);
    case 2:
      return DirectRows<2, Pair>(x, xd, w, n0, n1, bias, out);
    case 3:
      return DirectRows<3, Pair>(x, xd, w, n0, n1, bias, out);
    case 4:
      return DirectRows<4, Pair>(x, xd, w, n0, n1, bias, out);
  }
  GLM_CHECK_MSG(false, "direct linear kernel with T=%lld", (long long)T);
}

// ---- Prefill kernel ----

constexpr int64_t kPanelPairs = 32;   // 64 rows per work item
constexpr int64_t kBlockSteps = 64;   // K block: 512 inputs; panel 128 KiB (L2), x tile 24 KiB (L1)
constexpr int64_t kTokenBlock = 144;  // tokens per panel pass (T = 128 in one), multiple of 6

struct PanelScratch {
  float* panel;  // [kPanelPairs][kBlockSteps][16]
  float* spill;  // [kTokenBlock][kPanelPairs][16] accumulators between K blocks
  float* xdup;   // [kTileT][kBlockSteps][16] the token tile's x, each step doubled
};

PanelScratch ThreadScratch() {
  // Fixed size, allocated once per thread on its first prefill call; never grows.
  struct Buf {
    float* p = nullptr;
    ~Buf() { std::free(p); }
  };
  thread_local Buf buf;
  constexpr size_t panel = kPanelPairs * kBlockSteps * 16;
  constexpr size_t spill = kTokenBlock * kPanelPairs * 16;
  constexpr size_t xdup = kTileT * kBlockSteps * 16;
  if (buf.p == nullptr) {
    buf.p = static_cast<float*>(std::aligned_alloc(64, (panel + spill + xdup) * sizeof(float)));
    GLM_CHECK(buf.p != nullptr);
  }
  return {buf.p, buf.p + panel, buf.p + panel + spill};
}

struct TileArgs {
  const float* x;     // row of the tile's first token
  const float* xdup;  // the tile's doubled x for this K block
  const PanelSrc* src;
  int64_t s0, s1;
  bool first, last;
  float* spill;  // the tile's first (token, pair) accumulator
  const LinearWeight* w;
  int64_t n;     // first row
  int64_t rows;  // rows left from n (pairs beyond are not written)
  const Half* bias;
  Half* out;  // output row of the tile's first token
};

template <int TB, int NP>
void PanelTile(const TileArgs& a) {
  const int64_t K = a.w->K, N = a.w->N;
  __m512 acc[TB][NP];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
      acc[t][p] =
          a.first ? _mm512_setzero_ps() : _mm512_load_ps(a.spill + (t * kPanelPairs + p) * 16);
  Steps<TB, NP>(XDoubled{a.xdup, kBlockSteps * 16, a.s0}, *a.src, a.s0, a.s1, acc);
  // Always through the spill buffer: the accumulators never need a stack copy.
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) _mm512_store_ps(a.spill + (t * kPanelPairs + p) * 16, acc[t][p]);
  if (!a.last) return;
  for (int t = 0; t < TB; ++t) {
    Finish<NP>(a.spill + t * kPanelPairs * 16, 16, a.x + t * K, *a.w, a.n, a.rows, a.bias,
               a.out + t * N);
  }
}

// PanelTile<TB, np> for np = 1..NP.
template <int TB, int NP = kTileP>
void PanelTilePairs(int np, const TileArgs& a) {
  if constexpr (NP > 1) {
    if (np < NP) return PanelTilePairs<TB, NP - 1>(np, a);
  }
  PanelTile<TB, NP>(a);
}

using PanelTileFn = void (*)(int, const TileArgs&);
template <size_t... I>
constexpr std::array<PanelTileFn, kTileT + 1> MakePanelTiles(std::index_sequence<I...>) {
  return {nullptr, PanelTilePairs<int(I) + 1>...};
}
constexpr auto kPanelTiles = MakePanelTiles(std::make_index_sequence<kTileT>());

// Rows [n0, n1) (at most 2*kPanelPairs) for all T tokens.
template <class Pair>
void PanelRange(const float* x, int64_t T, const LinearWeight& w, int64_t n0, int64_t n1,
                const Half* bias, Half* out) {
  const PanelScratch scratch = ThreadScratch();
  constexpr int64_t ldp = kBlockSteps * 16;
  const int64_t N = w.N, K = w.K, full = K / kStep;
  const int64_t rows = n1 - n0, pairs = (rows + 1) / 2;
  for (int64_t tb = 0; tb < T; tb += kTokenBlock) {
    const int64_t tcount = T - tb < kTokenBlock ? T - tb : kTokenBlock;
    for (int64_t s0 = 0;; s0 += kBlockSteps) {
      const int64_t s1 = s0 + kBlockSteps < full ? s0 + kBlockSteps : full;
      for (int64_t p = 0; p < pairs; ++p) {
        const int64_t ra = n0 + 2 * p, rb = 2 * p + 1 < rows ? ra + 1 : ra;
        if (w.generic_groups) {
          DequantStepsGeneric(w, ra, rb, s0, s1, scratch.panel + p * ldp);
        } else {
          Pair pair(w, ra, rb);
          DequantSteps(pair, w, s0, s1, scratch.panel + p * ldp);
        }
      }
      for (int64_t t0 = 0; t0 < tcount; t0 += kTileT) {
        const int tt = int(tcount - t0 < kTileT ? tcount - t0 : kTileT);
        for (int t = 0; t < tt; ++t) {
          const float* xr = x + (tb + t0 + t) * K;
          float* d = scratch.xdup + t * kBlockSteps * 16;
          for (int64_t s = s0; s < s1; ++s) {
            _mm512_store_ps(d + (s - s0) * 16,
                            _mm512_broadcast_f32x8(_mm256_loadu_ps(xr + s * kStep)));
          }
        }
        for (int64_t p = 0; p < pairs; p += kTileP) {
          const int np = int(pairs - p < kTileP ? pairs - p : kTileP);
          const PanelSrc src{scratch.panel + p * ldp, ldp, s0};
          const TileArgs args{x + (tb + t0) * K,
                              scratch.xdup,
                              &src,
                              s0,
                              s1,
                              s0 == 0,
                              s1 == full,
                              scratch.spill + (t0 * kPanelPairs + p) * 16,
                              &w,
                              n0 + 2 * p,
                              rows - 2 * p,
                              bias,
                              out + (tb + t0) * N};
          kPanelTiles[tt](np, args);
        }
      }
      if (s1 == full) break;
    }
  }
}

template <class Pair>
void Run(const float* x, int64_t T, const LinearWeight& w, const Half* bias, Half* out) {
  const int64_t N = w.N;
  if (T <= kDirectMaxT && !w.generic_groups) {
    // x with every 8-input step doubled ([T][K/8][16]), in a buffer of the calling thread that
    // grows to the largest T·K seen and is then reused.
    struct Buf {
      float* p = nullptr;
      int64_t n = 0;
      ~Buf() { std::free(p); }
    };
    thread_local Buf xd;
    const int64_t full = w.K / kStep;
    if (xd.n < T * full * 16) {
      std::free(xd.p);
      xd.n = T * full * 16;
      xd.p = static_cast<float*>(std::aligned_alloc(64, size_t(xd.n) * sizeof(float) + 64));
      GLM_CHECK(xd.p != nullptr);
    }
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t s = 0; s < full; ++s) {
        _mm512_store_ps(xd.p + (t * full + s) * 16,
                        _mm512_broadcast_f32x8(_mm256_loadu_ps(x + t * w.K + s * kStep)));
      }
    }
    const float* xdp = xd.p;
    constexpr int64_t R = 2 * kDirectPairs;
    ThreadPool::Global().ParallelFor((N + R - 1) / R, 4, [&](int64_t b, int64_t e) {
      DirectRange<Pair>(x, xdp, T, w, b * R, e * R < N ? e * R : N, bias, out);
    });
    return;
  }
  constexpr int64_t R = 2 * kPanelPairs;
  ThreadPool::Global().ParallelFor((N + R - 1) / R, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      PanelRange<Pair>(x, T, w, i * R, (i + 1) * R < N ? (i + 1) * R : N, bias, out);
    }
  });
}

}  // namespace

void LinearAvx512(const Half* x, int64_t T, const TensorView& wv, const Half* bias, Half* out,
                  float* scratch) {
  const LinearWeight w = LinearWeight::From(wv, kStep);
  const int64_t n = T * w.K;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(scratch + i,
                     _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
  }
  for (; i < n; ++i) scratch[i] = _cvtsh_ss(x[i].bits);
  switch (w.format) {
    case LinearWeight::kF16:
      return Run<F16Pair>(scratch, T, w, bias, out);
    case LinearWeight::kI8:
      return Run<I8Pair>(scratch, T, w, bias, out);
    case LinearWeight::kI4:
      return Run<I4Pair>(scratch, T, w, bias, out);
  }
}

}  // namespace glm

#pragma GCC pop_options
