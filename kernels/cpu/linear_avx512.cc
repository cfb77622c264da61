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
// in registers and streams them once; the prefill kernel decodes 16 pairs x 512 inputs into an
// fp32 panel, then runs 6-token x 4-pair register tiles over it (24 accumulators), spilling
// accumulators between K blocks (exact: a store and a load).
#include <immintrin.h>

#include <cstdint>
#include <cstdlib>

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
  return _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(a.bits)), _mm256_set1_ps(_cvtsh_ss(b.bits)), 1);
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
  F16Pair(const LinearWeight& w, int64_t ra, int64_t rb) : a(w.f16 + ra * w.K), b(w.f16 + rb * w.K) {}
  void Group(int64_t) {}
  __m512 Load(int64_t s) const {
    const __m128i va = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + s * kStep));
    const __m128i vb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + s * kStep));
    return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(va), vb, 1));
  }
};

struct I8Pair {
  const int8_t *a = nullptr, *b = nullptr;
  const Half *sa = nullptr, *sb = nullptr;
  __m512 scale;
  I8Pair() = default;
  I8Pair(const LinearWeight& w, int64_t ra, int64_t rb)
      : a(w.q + ra * w.row_bytes), b(w.q + rb * w.row_bytes), sa(w.scales + ra * w.groups),
        sb(w.scales + rb * w.groups) {}
  void Group(int64_t g) { scale = PairScale(sa[g], sb[g]); }
  __m512 Load(int64_t s) const {
    const __m128i q = _mm_unpacklo_epi64(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(a + s * kStep)),
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + s * kStep)));
    return RoundToHalf(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), scale));
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
      : a(w.q + ra * w.row_bytes), b(w.q + rb * w.row_bytes), sa(w.scales + ra * w.groups),
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
    const __m128i dup = _mm_shuffle_epi8(bytes, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5,
                                                              6, 6, 7, 7));
    const __m512i shift = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i nib = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(dup), shift);
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    const __m512i idx = _mm512_ternarylogic_epi32(nib, _mm512_set1_epi32(15), sel, 0xEA);  // (A&B)|C
    return _mm512_permutex2var_ps(ta, idx, tb);
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

// acc[t][p] += broadcast(x[t, step s]) * w[pair p, step s], steps in order.
template <int TB, int NP, class Src>
__attribute__((always_inline)) inline void Steps(const float* x, int64_t ldx, const Src& src,
                                                 int64_t s0, int64_t s1, __m512 (&acc)[TB][NP]) {
  for (int64_t s = s0; s < s1; ++s) {
    __m512 wv[NP];
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p) wv[p] = src.Load(p, s);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      const __m512 xv = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + t * ldx + s * kStep));
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
    }
  }
}

// Reduces the accumulators of rows (n, n+1) of token t, adds the K mod 8 last products in order
// (as the scalar kernel does after its tree) and writes the epilogue.
inline void Finish(__m512 acc, const float* xt, const LinearWeight& w, int64_t n, bool two,
                   const Half* bias, Half* out_t) {
  float s[2];
  ReducePair(acc, &s[0], &s[1]);
  const int64_t K = w.K;
  for (int r = 0; r < (two ? 2 : 1); ++r) {
    for (int64_t k = K - K % kStep; k < K; ++k) s[r] += xt[k] * DequantElement(w, n + r, k);
    out_t[n + r] = LinearEpilogue(w, s[r], bias, n + r);
  }
}

template <int NP, class Pair>
struct DirectSrc {
  Pair pairs[NP];
  __m512 Load(int p, int64_t s) const { return pairs[p].Load(s); }
};

struct PanelSrc {
  const float* p;
  int64_t ldp, s0;  // floats per pair, first step of the panel
  __m512 Load(int q, int64_t s) const { return _mm512_load_ps(p + q * ldp + (s - s0) * 16); }
};

// ---- Decode kernel: TB <= 4 tokens, NP pairs (rows n0..n0+2NP-1, the last possibly single) ----

template <int TB, int NP, class Pair>
void DirectTile(const float* x, const LinearWeight& w, int64_t n0, int64_t rows, const Half* bias,
                Half* out) {
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
    Steps<TB, NP>(x, K, src, s, s + per_group < full ? s + per_group : full, acc);
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
      Finish(acc[t][p], x + t * K, w, n0 + 2 * p, 2 * p + 1 < rows, bias, out + t * N);
}

template <int TB, class Pair>
void DirectRows(const float* x, const LinearWeight& w, int64_t n0, int64_t n1, const Half* bias,
                Half* out) {
  int64_t n = n0;
  for (; n + 2 * kDirectPairs <= n1; n += 2 * kDirectPairs) {
    DirectTile<TB, kDirectPairs, Pair>(x, w, n, 2 * kDirectPairs, bias, out);
  }
  for (; n < n1; n += 2) DirectTile<TB, 1, Pair>(x, w, n, n1 - n < 2 ? 1 : 2, bias, out);
}

template <class Pair>
void DirectRange(const float* x, int64_t T, const LinearWeight& w, int64_t n0, int64_t n1,
                 const Half* bias, Half* out) {
  switch (T) {
    case 1: return DirectRows<1, Pair>(x, w, n0, n1, bias, out);
    case 2: return DirectRows<2, Pair>(x, w, n0, n1, bias, out);
    case 3: return DirectRows<3, Pair>(x, w, n0, n1, bias, out);
    case 4: return DirectRows<4, Pair>(x, w, n0, n1, bias, out);
  }
  GLM_CHECK_MSG(false, "direct linear kernel with T=%lld", (long long)T);
}

// ---- Prefill kernel ----

constexpr int64_t kPanelPairs = 16;   // 32 rows per work item
constexpr int64_t kBlockSteps = 64;   // K block: 512 inputs; panel 64 KiB
constexpr int64_t kTokenBlock = 120;  // tokens per pass over a panel (multiple of kTileT)

struct PanelScratch {
  float* panel;  // [kPanelPairs][kBlockSteps][16]
  float* spill;  // [kTokenBlock][kPanelPairs][16] accumulators between K blocks
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
  if (buf.p == nullptr) {
    buf.p = static_cast<float*>(std::aligned_alloc(64, (panel + spill) * sizeof(float)));
    GLM_CHECK(buf.p != nullptr);
  }
  return {buf.p, buf.p + panel};
}

struct TileArgs {
  const float* x;     // row of the tile's first token
  const PanelSrc* src;
  int64_t s0, s1;
  bool first, last;
  float* spill;       // the tile's first (token, pair) accumulator
  const LinearWeight* w;
  int64_t n;          // first row
  int64_t rows;       // rows left from n (pairs beyond are not written)
  const Half* bias;
  Half* out;          // output row of the tile's first token
};

template <int TB, int NP>
void PanelTile(const TileArgs& a) {
  const int64_t K = a.w->K, N = a.w->N;
  __m512 acc[TB][NP];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
      acc[t][p] = a.first ? _mm512_setzero_ps() : _mm512_load_ps(a.spill + (t * kPanelPairs + p) * 16);
  Steps<TB, NP>(a.x, K, *a.src, a.s0, a.s1, acc);
  if (!a.last) {
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
      for (int p = 0; p < NP; ++p) _mm512_store_ps(a.spill + (t * kPanelPairs + p) * 16, acc[t][p]);
    return;
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int p = 0; p < NP; ++p)
      Finish(acc[t][p], a.x + t * K, *a.w, a.n + 2 * p, 2 * p + 1 < a.rows, a.bias, a.out + t * N);
}

template <int TB>
void PanelTilePairs(int np, const TileArgs& a) {
  switch (np) {
    case 4: return PanelTile<TB, 4>(a);
    case 3: return PanelTile<TB, 3>(a);
    case 2: return PanelTile<TB, 2>(a);
    case 1: return PanelTile<TB, 1>(a);
  }
}

using PanelTileFn = void (*)(int, const TileArgs&);
constexpr PanelTileFn kPanelTiles[kTileT + 1] = {nullptr,           PanelTilePairs<1>,
                                                 PanelTilePairs<2>, PanelTilePairs<3>,
                                                 PanelTilePairs<4>, PanelTilePairs<5>,
                                                 PanelTilePairs<6>};

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
        for (int64_t p = 0; p < pairs; p += kTileP) {
          const int np = int(pairs - p < kTileP ? pairs - p : kTileP);
          const PanelSrc src{scratch.panel + p * ldp, ldp, s0};
          const TileArgs args{x + (tb + t0) * K, &src, s0, s1, s0 == 0, s1 == full,
                              scratch.spill + (t0 * kPanelPairs + p) * 16, &w, n0 + 2 * p,
                              rows - 2 * p, bias, out + (tb + t0) * N};
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
    constexpr int64_t R = 2 * kDirectPairs;
    ThreadPool::Global().ParallelFor((N + R - 1) / R, 4, [&](int64_t b, int64_t e) {
      DirectRange<Pair>(x, T, w, b * R, e * R < N ? e * R : N, bias, out);
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
    _mm512_storeu_ps(scratch + i, _mm512_cvtph_ps(_mm256_loadu_si256(
                                      reinterpret_cast<const __m256i*>(x + i))));
  }
  for (; i < n; ++i) scratch[i] = _cvtsh_ss(x[i].bits);
  switch (w.format) {
    case LinearWeight::kF16: return Run<F16Pair>(scratch, T, w, bias, out);
    case LinearWeight::kI8: return Run<I8Pair>(scratch, T, w, bias, out);
    case LinearWeight::kI4: return Run<I4Pair>(scratch, T, w, bias, out);
  }
}

}  // namespace glm

#pragma GCC pop_options
