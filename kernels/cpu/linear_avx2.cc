// Linear y = x·Wᵀ + b with AVX2 + FMA + F16C, bit-identical to LinearScalar: the numerics of
// linear_avx512.cc (read its header). The 16 lane sums of an output are two ymm, block q
// holding classes 8q..8q+7, so step s (8 inputs) goes to block s mod 2; then ReduceLanes and the
// in-order tail. Decode kernel: T <= 4 tokens x 4, 2 or 1 rows decoded in registers (2 blocks
// each; DirectRowsFor); prefill kernel: fp32 panel, each 3-token tile's x converted from fp16 next
// to it, and 3-token x 3-row register tiles, run once per block over every other step, the blocks
// kept in the accumulator buffer. int8 rows whose scales allow it are dequantized by the split of
// linear_common.h. int4 at T = 1 (per row, or in groups of whole 32-input blocks) decodes two
// rows per ymm by byte tables, with its own class layout (the pair decoder, below); group-wise
// tables come from a table of byte tables by mantissa (ByteTables).
#include <immintrin.h>

#include <bit>
#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/linear_common.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/target.h"
#include "quant/format.h"
#include "runtime/parallel.h"

GLM_TARGET_PUSH("avx2,fma,f16c,bmi,bmi2")

#include "kernels/cpu/lanes_avx2.h"

namespace glm {
namespace {

constexpr int kLanes = 8;
constexpr int kBlocks = kLinearLanes / kLanes;  // 2 ymm of lane sums per output
constexpr int kDirectMaxT = 4;
constexpr int kDirectRows = 4;  // rows per work item: a multiple of every tile's rows
constexpr int kTileT = 3, kTileN = 3;

inline __m256 RoundToHalf(__m256 v) {
  return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

// dst[i] = float(src[i]), i < n (exact).
inline void HalfRowToFloat(const Half* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm256_storeu_ps(dst + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i].bits);
}

// Reduces row n's two blocks of token t, adds the K mod 16 last products in order (as the
// scalar kernel does after its fold) and writes the epilogue.
template <class X>  // float (converted x) or Half (x as given): the same values
inline void Finish(__m256 a0, __m256 a1, const X* xt, const LinearWeight& w, int64_t n,
                   const Half* bias, Half* out_t) {
  float s = ReduceLanesAvx2(a0, a1);
  for (int64_t k = w.K - w.K % kLinearLanes; k < w.K; ++k) {
    s += XAt(xt, k) * DequantElement(w, n, k);
  }
  // LinearEpilogue with F16C conversions (the same rounding).
  const float b = bias ? _cvtsh_ss(bias[n].bits) : 0.f;
  if (w.format != LinearWeight::kF16) s = _cvtsh_ss(_cvtss_sh(s, _MM_FROUND_TO_NEAREST_INT));
  out_t[n] = Half{uint16_t(_cvtss_sh(s + b, _MM_FROUND_TO_NEAREST_INT))};
}

// ---- Row decoders: the 8 dequantized weights of step s of one row (see linear_avx512.cc) ----

struct F16Row {
  const Half* p = nullptr;
  F16Row() = default;
  F16Row(const LinearWeight& lw, int64_t row) : p(lw.f16 + row * lw.K) {}
  void Group(int64_t) {}
  __m256 Load(int64_t s) const {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + s * kLanes)));
  }
};

// kSplit: dequantize by the split of linear_common.h (rows whose scales allow it).
template <bool kSplit>
struct I8Row {
  const int8_t* p = nullptr;
  const Half* scales = nullptr;
  __m256 scale, scale_split;
  I8Row() = default;
  I8Row(const LinearWeight& lw, int64_t row)
      : p(lw.q + row * lw.row_bytes), scales(lw.scales + row * lw.groups) {}
  void Group(int64_t g) {
    scale = _mm256_set1_ps(_cvtsh_ss(scales[g].bits));
    if constexpr (kSplit) scale_split = _mm256_set1_ps(_cvtsh_ss(scales[g].bits) * kSplitFactor);
  }
  __m256 Load(int64_t s) const {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + s * kLanes));
    const __m256 qf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    if constexpr (kSplit) {
      __m256 c = _mm256_mul_ps(qf, scale_split);
      __asm__("" : "+x"(c));  // c is rounded (no contraction into c - d)
      return _mm256_sub_ps(c, _mm256_fnmadd_ps(qf, scale, c));
    } else {
      return RoundToHalf(_mm256_mul_ps(qf, scale));
    }
  }
};
using I8RoundRow = I8Row<false>;
using I8SplitRow = I8Row<true>;

// int4: 8 weights = 4 bytes. The 4 bytes are broadcast to every lane (a load-port broadcast) and
// a per-lane shift brings lane L's nibble, element L, to bits 0..3 (element 2j is the high nibble
// of byte j); two 8-entry VPERMPS tables (nibbles 0..7 and 8..15) and a blend on bit 3 look up
// fp16(q·scale). Two shuffle-port µops per 8 weights (the permutes): the shuffle port bounds
// this decoder.
struct I4Row {
  const int8_t* p = nullptr;
  const Half* scales = nullptr;
  __m256 lo, hi;
  I4Row() = default;
  I4Row(const LinearWeight& lw, int64_t row)
      : p(lw.q + row * lw.row_bytes), scales(lw.scales + row * lw.groups) {}
  void Group(int64_t g) {
    const __m256 s = _mm256_set1_ps(_cvtsh_ss(scales[g].bits));
    lo = RoundToHalf(_mm256_mul_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), s));
    hi = RoundToHalf(_mm256_mul_ps(_mm256_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1), s));
  }
  __m256 Load(int64_t s) const {
    int32_t word;
    __builtin_memcpy(&word, p + s * (kLanes / 2), 4);
    // VPERMPS reads index bits 0..2 and the blend bit 3: the bits above the nibble do not matter.
    const __m256i idx =
        _mm256_srlv_epi32(_mm256_set1_epi32(word), _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24));
    const __m256 a = _mm256_permutevar8x32_ps(lo, idx), b = _mm256_permutevar8x32_ps(hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
};

// ---- int4 decode by byte tables (T = 1): two rows per ymm ----
//
// The VPERMPS decoder above costs two permutes, two shifts and a blend per 8 weights, and the
// permutes bound it. This one looks the weights up with VPSHUFB, whose 16-entry byte tables take a
// nibble as it is: an fp16 value widened to fp32 has a zero low byte, so its bytes 1..3 are three
// tables (I4PairTables), and two rounds of byte and word unpacks put them together into fp32.
// A ymm holds 16 bytes (32 weights) of each of two rows, row a in its low lane and row b in its
// high lane; the in-lane unpacks give each row 4 lanes of every vector: weights 2j (high nibbles)
// and 2j+1 (low nibbles) for j in [4d, 4d + 4), d = 0..3. Classes k mod 16 then fall into 4
// accumulators per pair (even classes 0..6 and 8..14, odd 1..7 and 9..15), each class in one lane
// and in increasing k: the reference order, so the outputs are the scalar kernel's bits. x is
// permuted to match once per call (PrepareXPairs), each 4 values twice, one copy per lane.

// fp16(q·s) for the values q and scales s of each lane, exact in fp32. kSplit: by the split of
// linear_common.h (scales that allow it), three vector µops against a multiply and the round trip
// through fp16.
template <bool kSplit>
inline __m256 I4Values(__m256 q, __m256 s) {
  if constexpr (kSplit) {
    __m256 c = _mm256_mul_ps(q, _mm256_mul_ps(s, _mm256_set1_ps(kSplitFactor)));
    __asm__("" : "+x"(c));  // c is rounded (no contraction into c - d)
    return _mm256_sub_ps(c, _mm256_fnmadd_ps(q, s, c));
  } else {
    return RoundToHalf(_mm256_mul_ps(q, s));
  }
}

// Group-wise pair tables by lookup. fp16 rounds q·s to 11 significant bits wherever it is finite
// (spec §2.2; a product below 2^-14 has at most 10 and is exact), and that rounding commutes with
// powers of two. With s = M·2^E in fp32 (M in [1, 2): exact for every fp16 s, subnormal ones
// included) and E = 2a + e (e = 0 or 1), fp16(q·s) = V·2^(2a) with V = R11(q·M)·2^e. The byte
// tables of V (bytes 1, 2 and 3 of its fp32 bits, 16 nibbles each) depend on M's 10 bits and e
// only: ByteTables() holds them, a cache line for each of the 2048. The factor 2^(2a) and the sign
// of s only change byte 3 (sign and the exponent's 7 high bits: an even exponent step leaves its
// low bit in byte 2 alone), by the add of one byte a + 128·sign that cannot carry out of the
// exponent (V's biased exponents are 127..131 and -24 <= E <= 8 for 0 < |s| < 512). Nibble 0
// (q = 0) keeps its zero bytes. So a pair's tables are two 32-byte and two 16-byte loads, two
// lane permutes, two inserts and the add (with its broadcasts and mask), against about 25 µops by
// the split (I4PairTables::Make).
struct I4ByteTables {
  alignas(64) uint8_t b[2048][64];  // bytes 1, 2 and 3 of 16 values, and 16 unused
  I4ByteTables() : b() {
    for (int i = 0; i < 2048; ++i) {
      const int e = i >> 10, m = i & 1023;
      for (int j = 0; j < 16; ++j) {
        const int q = j < 8 ? j : j - 16, a = q < 0 ? -q : q;
        // R11(a·(1024 + m)) as an integer n: V = n·2^(e - 10), exact in fp32.
        int n = a * (1024 + m);
        const int width = std::bit_width(unsigned(n));
        if (width > 11) {
          const int shift = width - 11, low = n & ((1 << shift) - 1), half = 1 << (shift - 1);
          n >>= shift;
          if (low > half || (low == half && (n & 1))) ++n;
          n <<= shift;
        }
        uint32_t bits = 0;
        if (n != 0) {
          // n = 1.f · 2^(w - 1) (w: its width after the rounding, which may carry into a new
          // bit): biased exponent 127 + w - 1 + e - 10.
          const int w = std::bit_width(unsigned(n));
          const uint32_t exponent = uint32_t(127 + w - 1 + e - 10);
          const uint32_t fraction = (uint32_t(n) << (24 - w)) & 0x7fffff;
          bits = (q < 0 ? 0x80000000u : 0u) | exponent << 23 | fraction;
        }
        b[i][j] = uint8_t(bits >> 8);
        b[i][16 + j] = uint8_t(bits >> 16);
        b[i][32 + j] = uint8_t(bits >> 24);
      }
    }
  }
};
// Built on first use (a constant expression would take compilers past their step limits).
const I4ByteTables& ByteTables() {
  static const I4ByteTables tables;
  return tables;
}

// The keys of n scales (|s| < 512): offset[i], the byte offset of s's tables in ByteTables(),
// and add[i], byte 3's add (a + 128·sign) in all four bytes. Returns false if a scale is ±0, which
// has no key.
inline bool I4ByteKeys(const Half* src, int64_t n, int32_t* offset, int32_t* add) {
  int64_t i = 0;
  __m256i zeros = _mm256_setzero_si256();
  auto keys = [](__m256i bits, __m256i * off, __m256i * k) __attribute__((always_inline)) {
    const __m256i m = _mm256_and_si256(_mm256_srli_epi32(bits, 13), _mm256_set1_epi32(1023));
    const __m256i E =
        _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(255)),
                         _mm256_set1_epi32(127));
    const __m256i e = _mm256_and_si256(E, _mm256_set1_epi32(1));
    *off = _mm256_slli_epi32(_mm256_or_si256(_mm256_slli_epi32(e, 10), m), 6);
    const __m256i byte =
        _mm256_and_si256(_mm256_add_epi32(_mm256_srai_epi32(E, 1),
                                          _mm256_slli_epi32(_mm256_srli_epi32(bits, 31), 7)),
                         _mm256_set1_epi32(255));
    *k = _mm256_mullo_epi32(byte, _mm256_set1_epi32(0x01010101));
  };
  for (; i + kLanes <= n; i += kLanes) {
    const __m256i bits = _mm256_castps_si256(
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    __m256i off, k;
    keys(bits, &off, &k);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(offset + i), off);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(add + i), k);
    zeros = _mm256_or_si256(zeros,
                            _mm256_cmpeq_epi32(_mm256_slli_epi32(bits, 1), _mm256_setzero_si256()));
  }
  bool tail_zero = false;
  for (; i < n; ++i) {
    const __m256i bits = _mm256_castps_si256(_mm256_set1_ps(_cvtsh_ss(src[i].bits)));
    __m256i off, k;
    keys(bits, &off, &k);
    offset[i] = _mm256_cvtsi256_si32(off);
    add[i] = _mm256_cvtsi256_si32(k);
    tail_zero = tail_zero || (src[i].bits & 0x7fff) == 0;
  }
  return _mm256_testz_si256(zeros, zeros) && !tail_zero;
}

// The three byte tables of a row pair (row a's in the low lanes, row b's in the high lanes):
// bytes 1, 2 and 3 of the 16 values fp16(q·s) in fp32, in nibble order (nibble n holds q = n for
// n < 8, n - 16 above). Each lane computes its row's values 4 at a time and moves their bytes
// into place within the lane (a 4 x 4 transpose of the dwords the byte picks gather).
struct I4PairTables {
  __m256i b1, b2, b3;
  // The tables of rows a and b from their keys (I4ByteKeys).
  // base: ByteTables().b[0].
  static I4PairTables FromKeys(const uint8_t* base, int32_t offset_a, int32_t add_a,
                               int32_t offset_b, int32_t add_b) {
    const uint8_t* ta = base + offset_a;
    const uint8_t* tb = base + offset_b;
    const __m256i a12 = _mm256_load_si256(reinterpret_cast<const __m256i*>(ta)),
                  b12 = _mm256_load_si256(reinterpret_cast<const __m256i*>(tb));
    const __m256i b3 = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(ta + 32))),
        _mm_load_si128(reinterpret_cast<const __m128i*>(tb + 32)), 1);
    const __m256i add = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi32(add_a)),
                                _mm_set1_epi32(add_b), 1),
        _mm256_setr_epi8(0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,  //
                         0, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
    return {_mm256_permute2x128_si256(a12, b12, 0x20), _mm256_permute2x128_si256(a12, b12, 0x31),
            _mm256_add_epi8(b3, add)};
  }
  template <bool kSplit>
  static I4PairTables Make(const float* sa, const float* sb) {  // the two rows' scales
    const __m256 s =
        _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(sa)), _mm_broadcast_ss(sb), 1);
    // Each lane's 4 values: bytes 1 of all four, then bytes 2, then bytes 3, then zeros.
    const __m256i pick = _mm256_setr_epi8(1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, -1, -1, -1, -1,
                                          1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, -1, -1, -1, -1);
    auto picked = [&](float q0) {  // nibbles of q0 .. q0 + 3, [B1 B2 B3 0] dwords in each lane
      const __m256 q = _mm256_setr_ps(q0, q0 + 1, q0 + 2, q0 + 3, q0, q0 + 1, q0 + 2, q0 + 3);
      return _mm256_shuffle_epi8(_mm256_castps_si256(I4Values<kSplit>(q, s)), pick);
    };
    const __m256i p0 = picked(0), p1 = picked(4), p2 = picked(-8), p3 = picked(-4);
    const __m256i l01 = _mm256_unpacklo_epi32(p0, p1), l23 = _mm256_unpacklo_epi32(p2, p3);
    const __m256i h01 = _mm256_unpackhi_epi32(p0, p1), h23 = _mm256_unpackhi_epi32(p2, p3);
    return {_mm256_unpacklo_epi64(l01, l23), _mm256_unpackhi_epi64(l01, l23),
            _mm256_unpacklo_epi64(h01, h23)};
  }
  // The 8 weights of each row (4 lanes each) for the nibbles in idx: vectors d = 0..3 hold bytes
  // j in [4d, 4d + 4) of each lane's 16 (kVectors = 2: bytes 0..7 only).
  template <int kVectors>
  void Decode(__m256i idx, __m256 (&d)[4]) const {
    const __m256i zero = _mm256_setzero_si256();
    const __m256i v1 = _mm256_shuffle_epi8(b1, idx), v2 = _mm256_shuffle_epi8(b2, idx),
                  v3 = _mm256_shuffle_epi8(b3, idx);
    const __m256i lo01 = _mm256_unpacklo_epi8(zero, v1), lo23 = _mm256_unpacklo_epi8(v2, v3);
    d[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(lo01, lo23));
    d[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(lo01, lo23));
    if constexpr (kVectors == 4) {
      const __m256i hi01 = _mm256_unpackhi_epi8(zero, v1), hi23 = _mm256_unpackhi_epi8(v2, v3);
      d[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(hi01, hi23));
      d[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(hi01, hi23));
    }
  }
};

// Whether the pair decoder takes w: int4 per row, or in groups of whole 32-input blocks, at
// T = 1. Group-wise tables by lookup (I4ByteKeys) cost about 7 vector µops per row pair and
// group, built for the whole tile before its steps. In cache on Zen 5 (one core, [64, 12288]),
// groups of 128 decode at 19.6-19.7 G weights/s, 64 at 16.8-16.9 and 32 at 12.9-13.0, against
// 18.4-18.7 and 15.3-15.4 with the split's tables (about 25 µops) and 11.3-11.6 by VPERMPS.
// Two tokens keep the VPERMPS decoder (one pair per tile: 13-15 against 14-15 G token-weights/s
// with the split's tables; bench/results/cpu_kernels.md).
inline bool PairDecodes(const LinearWeight& w) {
  return w.format == LinearWeight::kI4 && !w.generic_groups &&
         (w.group_steps == 0 || w.group_size % 32 == 0);
}

// x of one token in the pair decoder's order, fp32, 2·K16 values (K16 = K - K mod 16), in a
// buffer of the calling thread: each 32-input block from k holds 8 vectors for x[k + 2i] (i < 16,
// the even inputs), then 8 for x[k + 2i + 1] (the odd ones), vector d = 0..3 holding inputs
// k + 8d + 2i (+ 1), i < 4, in both lanes; a last block of 16 inputs (K16 mod 32 = 16) holds its
// 8 even inputs, then its 8 odd ones, the same way. Duplicated rather than broadcast by the loads:
// 2-5% faster in cache on Zen 5 (bench/results/cpu_kernels.md).
const float* PrepareXPairs(const Half* x, int64_t K) {
  thread_local ThreadFloats buf;
  const int64_t K16 = K - K % kLinearLanes;
  float* d = buf.Get(2 * K16);
  const __m256i even_odd = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  for (int64_t k = 0; k < K16; k += 32) {
    const int64_t chunks = K16 - k >= 32 ? 4 : 2;  // 8-input chunks in this block
    for (int64_t c = 0; c < chunks; ++c) {
      const __m256 v = _mm256_permutevar8x32_ps(
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + k + 8 * c))),
          even_odd);
      const __m128 even = _mm256_castps256_ps128(v), odd = _mm256_extractf128_ps(v, 1);
      _mm256_store_ps(d + 2 * k + 8 * c, _mm256_set_m128(even, even));
      _mm256_store_ps(d + 2 * k + 8 * (chunks + c), _mm256_set_m128(odd, odd));
    }
  }
  return d;
}

// A buffer of the calling thread for n row pairs' tables followed by `floats` floats, shared by
// every instance of the tile.
I4PairTables* PairTableBuffer(int64_t n, int64_t floats) {
  thread_local ThreadFloats buf;
  static_assert(sizeof(I4PairTables) % sizeof(float) == 0);
  return reinterpret_cast<I4PairTables*>(
      buf.Get(n * int64_t(sizeof(I4PairTables) / sizeof(float)) + floats));
}

// NP row pairs from n0 (rows n0 .. n0 + 2·NP - 1, `rows` of them valid: a pair past the last row
// repeats it and is not written), one token. xp: PrepareXPairs; x: the token as given (the K mod
// 16 tail).
template <int NP, bool kSplit, TilePrefetch kPrefetch>
void I4PairTile(const float* xp, const Half* x, int64_t K, const LinearWeight& w, int64_t n0,
                int64_t rows, const Half* bias, Half* out) {
  constexpr int NB = 2 * NP;
  const int64_t K16 = K - K % kLinearLanes;
  const NextTileFor<NB * 8, kPrefetch> next_tile(IsNextTile(kPrefetch), w, n0, NB);
  const InRowPrefetch<NB, 8> in_row(kPrefetch == TilePrefetch::kInRow, w, n0, rows, 1);
  const int8_t* q[NB];
  const Half* scales[NB];
#pragma GCC unroll 4
  for (int r = 0; r < NB; ++r) {
    const int64_t n = n0 + (r < rows ? r : rows - 1);
    q[r] = w.q + n * w.row_bytes;
    scales[r] = w.scales + n * w.groups;
  }
  // The tables of every group, built before the steps (group-wise: [group][pair], in a buffer of
  // the calling thread), off the steps' critical path.
  const int64_t G = w.groups;
  I4PairTables* tables = PairTableBuffer(G * NP, 2 * NB * G);
  // Group-wise with the split's scales: by lookup (I4ByteKeys, FromKeys), unless a scale is ±0.
  bool built = false;
  if constexpr (kSplit) {
    if (G > 1) {
      int32_t* offset = reinterpret_cast<int32_t*>(tables + G * NP);  // [row][group]
      int32_t* add = offset + NB * G;
      const uint8_t* base = ByteTables().b[0];
      built = true;
      for (int r = 0; r < NB; ++r) {
        built = I4ByteKeys(scales[r], G, offset + r * G, add + r * G) && built;
      }
      for (int64_t g = 0; built && g < G; ++g) {
#pragma GCC unroll 2
        for (int p = 0; p < NP; ++p) {
          const int64_t a = 2 * p * G + g, b = (2 * p + 1) * G + g;
          tables[g * NP + p] = I4PairTables::FromKeys(base, offset[a], add[a], offset[b], add[b]);
        }
      }
    }
  }
  if (!built) {
    // The rows' scales in fp32 first, 8 at a time ([row][group], after the tables): 3-5% faster
    // group-wise in cache than converting and broadcasting each scale as its tables are built.
    float* scale32 = reinterpret_cast<float*>(tables + G * NP);
    for (int r = 0; r < NB; ++r) HalfRowToFloat(scales[r], G, scale32 + r * G);
    for (int64_t g = 0; g < G; ++g) {
#pragma GCC unroll 2
      for (int p = 0; p < NP; ++p) {
        tables[g * NP + p] =
            I4PairTables::Make<kSplit>(scale32 + 2 * p * G + g, scale32 + (2 * p + 1) * G + g);
      }
    }
  }
  __m256 acc[NP][4];
#pragma GCC unroll 2
  for (int p = 0; p < NP; ++p)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[p][j] = _mm256_setzero_ps();
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const int64_t per_group = G > 1 ? w.group_size : K16;  // a multiple of 32 (PairDecodes)
  // The block of 16·kVectors / 2 inputs from k (kVectors = 4: 32 inputs, 16 bytes a row; 2: the
  // last 16 inputs, 8 bytes a row) with the pairs' tables t.
  auto block = [&]<int kVectors>(int64_t k, const I4PairTables* t) __attribute__((always_inline)) {
    for (int64_t step = k / kLinearLanes; step < k / kLinearLanes + kVectors / 2; ++step) {
      if constexpr (IsNextTile(kPrefetch)) next_tile.Step(step);
      if constexpr (kPrefetch == TilePrefetch::kInRow) in_row.Step(step);
    }
    auto load = [&](const int8_t* row) __attribute__((always_inline)) {
      return kVectors == 4 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k / 2))
                           : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + k / 2));
    };
#pragma GCC unroll 2
    for (int p = 0; p < NP; ++p) {
      const __m256i v =
          _mm256_inserti128_si256(_mm256_castsi128_si256(load(q[2 * p])), load(q[2 * p + 1]), 1);
      // h = 0: the high nibbles (even inputs), h = 1: the low ones.
      const __m256i idx[2] = {_mm256_and_si256(_mm256_srli_epi16(v, 4), nibble),
                              _mm256_and_si256(v, nibble)};
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        __m256 d[4];
        t[p].template Decode<kVectors>(idx[h], d);
        const float* xv = xp + 2 * k + 8 * kVectors * h;
#pragma GCC unroll 4
        for (int j = 0; j < kVectors; ++j) {
          acc[p][2 * h + j % 2] =
              _mm256_fmadd_ps(_mm256_load_ps(xv + 8 * j), d[j], acc[p][2 * h + j % 2]);
        }
      }
    }
  };
  int64_t k = 0;
  for (int64_t k0 = 0; k0 + 32 <= K16; k0 += per_group) {
    const I4PairTables* group_tables = tables + (k0 / per_group) * NP;
    for (; k + 32 <= k0 + per_group && k + 32 <= K16; k += 32) {
      block.template operator()<4>(k, group_tables);
    }
  }
  // A last block of 16 inputs (per-row scales only: groups hold whole 32-input blocks).
  if (k < K16) block.template operator()<2>(k, tables);
  // Back to class order: accumulator j, lane 4·half + i (half 0: row a, 1: row b) holds class
  // 2i (j = 0), 8 + 2i (1), 2i + 1 (2) or 9 + 2i (3).
  for (int p = 0; p < NP; ++p) {
    alignas(32) float a[4][8];
    for (int j = 0; j < 4; ++j) _mm256_store_ps(a[j], acc[p][j]);
    for (int half = 0; half < 2; ++half) {
      const int r = 2 * p + half;
      if (r >= rows) break;
      alignas(32) float classes[kLinearLanes];
      for (int i = 0; i < 4; ++i) {
        classes[2 * i] = a[0][4 * half + i];
        classes[8 + 2 * i] = a[1][4 * half + i];
        classes[2 * i + 1] = a[2][4 * half + i];
        classes[9 + 2 * i] = a[3][4 * half + i];
      }
      Finish(_mm256_load_ps(classes), _mm256_load_ps(classes + 8), x, w, n0 + r, bias, out);
    }
  }
}

// The pair decoder's rows [n0, n1) for one token: tiles of two pairs (four rows: one pair alone
// was 30% slower in cache on Zen 5, three pairs 2% slower), then pairs for what is left (a last
// odd row paired with itself).
void PairRows(const float* xp, const Half* x, int64_t K, const LinearWeight& w, int64_t n0,
              int64_t n1, const Half* bias, Half* out) {
  for (int64_t n = n0; n < n1; n += 4) {
    const int64_t rows = n1 - n < 4 ? n1 - n : 4;
    WithDecodeVariant<true, true>(
        RowsSplitExact(w, n, rows), w.prefetch, [&]<bool kSplit, TilePrefetch kPrefetch>() {
          if (rows == 4) return I4PairTile<2, kSplit, kPrefetch>(xp, x, K, w, n, 4, bias, out);
          for (int64_t m = n; m < n + rows; m += 2) {
            const int64_t left = n + rows - m < 2 ? n + rows - m : 2;
            I4PairTile<1, kSplit, kPrefetch>(xp, x, K, w, m, left, bias, out);
          }
        });
  }
}

template <class Row>
void DequantSteps(Row& row, const LinearWeight& w, int64_t s0, int64_t s1, float* dst) {
  const int64_t steps_per_group = w.group_steps;
  int64_t g = steps_per_group ? s0 / steps_per_group : 0;
  int64_t group_end = steps_per_group ? (g + 1) * steps_per_group : INT64_MAX;
  row.Group(g);
  for (int64_t s = s0; s < s1; ++s) {
    if (s == group_end) {
      row.Group(++g);
      group_end += steps_per_group;
    }
    _mm256_store_ps(dst + (s - s0) * kLanes, row.Load(s));
  }
}

void DequantStepsGeneric(const LinearWeight& w, int64_t n, int64_t s0, int64_t s1, float* dst) {
  for (int64_t k = s0 * kLanes; k < s1 * kLanes; ++k) *dst++ = DequantElement(w, n, k);
}

// 8 values of x from i: fp32, or fp16 as given (the decode kernel with x half): the same values.
inline __m256 LoadX(const float* x, int64_t i) { return _mm256_loadu_ps(x + i); }
inline __m256 LoadX(const Half* x, int64_t i) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
}

// acc[t][r] += x[t, step s] * w[row r, step s] for s = s0, s0 + stride, .. < s1.
template <int TB, int NB, class Src, class X>
__attribute__((always_inline)) inline void Steps(const X* x, int64_t ldx, const Src& src,
                                                 int64_t s0, int64_t s1, int64_t stride,
                                                 __m256 (&acc)[TB][NB]) {
  for (int64_t s = s0; s < s1; s += stride) {
    __m256 wv[NB];
#pragma GCC unroll 8
    for (int r = 0; r < NB; ++r) wv[r] = src.Load(r, s);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      const __m256 xv = LoadX(x, t * ldx + s * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < NB; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
}

template <int NB, class Row>
struct DirectSrc {
  Row rows[NB];
  __m256 Load(int r, int64_t s) const { return rows[r].Load(s); }
};

struct PanelSrc {
  const float* p;
  int64_t ldp, s0;
  __m256 Load(int r, int64_t s) const { return _mm256_load_ps(p + r * ldp + (s - s0) * kLanes); }
};

// ---- Decode kernel ----

// kPrefetch: the weight's TilePrefetch (linear_common.h), as in linear_avx512.cc. The tile's rows
// are n0 + r·stride (stride > 1: row streams, DirectRows). x: the tokens' rows converted to fp32,
// or as given in fp16 (x half, linear_common.h).
template <int TB, int NB, class Row, TilePrefetch kPrefetch, class X>
void DirectTile(const X* x, int64_t K, const LinearWeight& w, int64_t n0, int64_t stride,
                const Half* bias, Half* out, int64_t N) {
  // Bytes of a row per 16-input block: 8 (int4), 16 (int8) or 32 (fp16).
  constexpr int64_t kBlockBytes = std::is_same_v<Row, I4Row>    ? 8
                                  : std::is_same_v<Row, F16Row> ? 32
                                                                : 16;
  const NextTileFor<NB * kBlockBytes, kPrefetch> next_tile(IsNextTile(kPrefetch), w, n0, NB);
  const InRowPrefetch<NB, kBlockBytes> in_row(kPrefetch == TilePrefetch::kInRow, w, n0, NB, stride);
  DirectSrc<NB, Row> src{};
#pragma GCC unroll 8
  for (int r = 0; r < NB; ++r) src.rows[r] = Row(w, n0 + r * stride);
  __m256 acc[kBlocks][TB][NB];
#pragma GCC unroll 4
  for (int q = 0; q < kBlocks; ++q)
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < NB; ++r) acc[q][t][r] = _mm256_setzero_ps();
  const int64_t full = (K - K % kLinearLanes) / kLanes;  // a multiple of kBlocks
  const int64_t per_group = w.group_steps ? w.group_steps : full;
  for (int64_t g = 0, s = 0; s < full; ++g, s += per_group) {
#pragma GCC unroll 8
    for (int r = 0; r < NB; ++r) src.rows[r].Group(g);
    const int64_t end = s + per_group < full ? s + per_group : full;
    for (int64_t b = s; b < end; b += kBlocks) {
      if constexpr (IsNextTile(kPrefetch)) next_tile.Step(b / kBlocks);
      if constexpr (kPrefetch == TilePrefetch::kInRow) in_row.Step(b / kBlocks);
#pragma GCC unroll 4
      for (int q = 0; q < kBlocks; ++q) Steps<TB, NB>(x, K, src, b + q, b + q + 1, 1, acc[q]);
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NB; ++r)
      Finish(acc[0][t][r], acc[1][t][r], x + t * K, w, n0 + r * stride, bias, out + t * N);
}

// int8 tiles whose scales allow it use the split decoder; the weight's TilePrefetch.
template <int TB, int NB, class Row, class X>
void DirectTileFor(const X* x, int64_t K, const LinearWeight& w, int64_t n0, const Half* bias,
                   Half* out, int64_t N) {
  constexpr bool kInt8 = std::is_same_v<Row, I8RoundRow>;
  constexpr bool kQuantized = !std::is_same_v<Row, F16Row>;
  WithDecodeVariant<kInt8, kQuantized>(
      kInt8 && RowsSplitExact(w, n0, NB), w.prefetch, [&]<bool kSplit, TilePrefetch kPrefetch>() {
        using Decoded = std::conditional_t<kSplit, I8SplitRow, Row>;
        DirectTile<TB, NB, Decoded, kPrefetch>(x, K, w, n0, 1, bias, out, N);
      });
}

// Rows of a decode tile at TB tokens: 2·TB·R accumulators, and the decoder's vectors, in the 16
// ymm. Measured in cache on Zen 5 (one core, G token-weights/s): T = 3 fp16 68.6-69.3 with two
// rows against 49.3-49.5 with one, int4 44.7-45.3 with one against 32.2-32.4 with two (its
// VPERMPS tables take registers), int8 alike; T = 2 int4 34.1-34.4 with two against 32.6-33.3.
// T = 3 and 4 took the prefill kernel before: 1.3-1.8x slower (bench/results/cpu_kernels.md).
template <class Row>
constexpr int DirectRowsFor(int TB) {
  if (TB == 1) return 4;
  if (std::is_same_v<Row, I4Row>) return TB <= 2 ? 2 : 1;
  return TB <= 3 ? 2 : 1;
}

template <int TB, class Row, class X>
void DirectRows(const X* x, int64_t K, const LinearWeight& w, int64_t n0, int64_t n1,
                const Half* bias, Half* out, int64_t N) {
  int64_t n = n0;
  constexpr int R = DirectRowsFor<Row>(TB);
  if constexpr (std::is_same_v<Row, F16Row>) {
    n = RowStreamTiles<R>(w, n0, n1, [&]<TilePrefetch kPrefetch>(int64_t first, int64_t S) {
      DirectTile<TB, R, Row, kPrefetch>(x, K, w, first, S, bias, out, N);
    });
  }
  for (; n + R <= n1; n += R) DirectTileFor<TB, R, Row>(x, K, w, n, bias, out, N);
  for (; n < n1; ++n) DirectTileFor<TB, 1, Row>(x, K, w, n, bias, out, N);
}

// ---- Prefill kernel ----

constexpr int64_t kPanelRows = 30;    // rows per work item (multiple of kTileN)
constexpr int64_t kBlockSteps = 64;   // K block: 512 elements
constexpr int64_t kTokenBlock = 120;  // tokens per pass over a panel (multiple of kTileT)

struct PanelScratch {
  float* panel;
  float* spill;
  float* xtile;  // [kTileT][kBlockSteps * kLanes]: the token tile's x for this K block, fp32
};

PanelScratch ThreadScratch() {
  thread_local ThreadFloats buf;
  constexpr int64_t panel = kPanelRows * kBlockSteps * kLanes;
  constexpr int64_t spill = kTokenBlock * kPanelRows * kLinearLanes;
  constexpr int64_t xtile = kTileT * kBlockSteps * kLanes;
  float* p = buf.Get(panel + spill + xtile);
  return {p, p + panel, p + panel + spill};
}

// xt: the token tile's x for steps [s0, s1), kBlockSteps * kLanes floats per token; x: its first
// token's row as given (the K mod 16 tail). spill: the tile's first (token, row) accumulators,
// kLinearLanes floats each (block q at 8q).
template <int TB, int NB>
void PanelTile(const float* xt, const Half* x, int64_t K, const PanelSrc& src, int64_t s0,
               int64_t s1, bool first, bool last, float* spill, const LinearWeight& w, int64_t n,
               const Half* bias, Half* out, int64_t N) {
  auto slot = [&](int q, int t, int r) {
    return spill + (t * kPanelRows + r) * kLinearLanes + q * kLanes;
  };
  for (int q = 0; q < kBlocks; ++q) {
    __m256 acc[TB][NB];
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < NB; ++r)
        acc[t][r] = first ? _mm256_setzero_ps() : _mm256_load_ps(slot(q, t, r));
    // Steps counted from s0 (even: each step keeps its block, s mod 2).
    const PanelSrc rel{src.p, src.ldp, 0};
    Steps<TB, NB>(xt, kBlockSteps * kLanes, rel, q, s1 - s0, kBlocks, acc);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
      for (int r = 0; r < NB; ++r) _mm256_store_ps(slot(q, t, r), acc[t][r]);
  }
  if (!last) return;
  for (int t = 0; t < TB; ++t)
    for (int r = 0; r < NB; ++r)
      Finish(_mm256_load_ps(slot(0, t, r)), _mm256_load_ps(slot(1, t, r)), x + t * K, w, n + r,
             bias, out + t * N);
}

template <int TB>
void PanelTileRows(int nb, const float* xt, const Half* x, int64_t K, const PanelSrc& src,
                   int64_t s0, int64_t s1, bool first, bool last, float* spill,
                   const LinearWeight& w, int64_t n, const Half* bias, Half* out, int64_t N) {
  switch (nb) {
    case 3:
      return PanelTile<TB, 3>(xt, x, K, src, s0, s1, first, last, spill, w, n, bias, out, N);
    case 2:
      return PanelTile<TB, 2>(xt, x, K, src, s0, s1, first, last, spill, w, n, bias, out, N);
    case 1:
      return PanelTile<TB, 1>(xt, x, K, src, s0, s1, first, last, spill, w, n, bias, out, N);
  }
}

using PanelTileFn = void (*)(int, const float*, const Half*, int64_t, const PanelSrc&, int64_t,
                             int64_t, bool, bool, float*, const LinearWeight&, int64_t, const Half*,
                             Half*, int64_t);
constexpr PanelTileFn kPanelTiles[kTileT + 1] = {nullptr, PanelTileRows<1>, PanelTileRows<2>,
                                                 PanelTileRows<3>};

template <class Row>
void DequantPanel(const LinearWeight& w, int64_t n0, int64_t rows, int64_t s0, int64_t s1,
                  float* panel, int64_t ldp) {
  for (int64_t r = 0; r < rows; ++r) {
    if (w.generic_groups) {
      DequantStepsGeneric(w, n0 + r, s0, s1, panel + r * ldp);
    } else if (std::is_same_v<Row, I8RoundRow> && RowsSplitExact(w, n0 + r, 1)) {
      I8SplitRow row(w, n0 + r);
      DequantSteps(row, w, s0, s1, panel + r * ldp);
    } else {
      Row row(w, n0 + r);
      DequantSteps(row, w, s0, s1, panel + r * ldp);
    }
  }
}

// x is read as given (fp16) and converted into each token tile's copy, as in linear_avx512.cc.
template <class Row>
void PanelRange(const Half* x, int64_t T, int64_t K, const LinearWeight& w, int64_t n0, int64_t n1,
                const Half* bias, Half* out, int64_t N) {
  const PanelScratch scratch = ThreadScratch();
  constexpr int64_t ldp = kBlockSteps * kLanes;
  const int64_t full = (K - K % kLinearLanes) / kLanes;  // a multiple of kBlocks
  if (full == 0) {                                       // no lane sums: the tail alone
    const __m256 z = _mm256_setzero_ps();
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = n0; n < n1; ++n) Finish(z, z, x + t * K, w, n, bias, out + t * N);
    return;
  }
  const int64_t rows = n1 - n0;
  const int64_t row_tiles = (rows + kTileN - 1) / kTileN;
  for (int64_t tb = 0; tb < T; tb += kTokenBlock) {
    const int64_t tcount = T - tb < kTokenBlock ? T - tb : kTokenBlock;
    const int64_t tiles = (tcount + kTileT - 1) / kTileT * row_tiles;
    for (int64_t s0 = 0;; s0 += kBlockSteps) {
      const int64_t s1 = s0 + kBlockSteps < full ? s0 + kBlockSteps : full;
      const int64_t s2 = s1 + kBlockSteps < full ? s1 + kBlockSteps : full;  // the next block's end
      const bool first = s0 == 0, last = s1 == full;
      DequantPanel<Row>(w, n0, rows, s0, s1, scratch.panel, ldp);
      // The next K block's weight rows into L2, spread over this block's register tiles (as the
      // AVX-512 kernel does).
      StridedPrefetch next_w = NextWeightBlock(w, n0, rows, s1 * kLanes, s2 * kLanes, tiles);
      for (int64_t t0 = 0; t0 < tcount; t0 += kTileT) {
        const int tt = int(tcount - t0 < kTileT ? tcount - t0 : kTileT);
        const Half* xh = x + (tb + t0) * K;
        for (int t = 0; t < tt; ++t) {
          HalfRowToFloat(xh + t * K + s0 * kLanes, (s1 - s0) * kLanes,
                         scratch.xtile + t * kBlockSteps * kLanes);
        }
        for (int64_t r = 0; r < rows; r += kTileN) {
          const int nb = int(rows - r < kTileN ? rows - r : kTileN);
          next_w.IssueSlice();
          const PanelSrc src{scratch.panel + r * ldp, ldp, s0};
          kPanelTiles[tt](nb, scratch.xtile, xh, K, src, s0, s1, first, last,
                          scratch.spill + (t0 * kPanelRows + r) * kLinearLanes, w, n0 + r, bias,
                          out + (tb + t0) * N, N);
        }
      }
      if (last) break;
    }
  }
}

template <class Row, class X>
void RunDirect(const X* x, int64_t T, const LinearWeight& w, const Half* bias, Half* out) {
  const int64_t N = w.N, K = w.K;
  constexpr int64_t R = kDirectRows;
  ThreadPool::Global().ParallelFor((N + R - 1) / R, 8, [&](int64_t b, int64_t e) {
    const int64_t n1 = e * R < N ? e * R : N;
    switch (T) {
      case 1:
        return DirectRows<1, Row>(x, K, w, b * R, n1, bias, out, N);
      case 2:
        return DirectRows<2, Row>(x, K, w, b * R, n1, bias, out, N);
      case 3:
        return DirectRows<3, Row>(x, K, w, b * R, n1, bias, out, N);
      default:
        return DirectRows<4, Row>(x, K, w, b * R, n1, bias, out, N);
    }
  });
}

// The decode kernel takes x converted to fp32 in `scratch`, or as given (x half); the panel
// kernel converts its own tiles (PanelRange).
template <class Row>
void Run(const Half* xh, int64_t T, const LinearWeight& w, const Half* bias, Half* out,
         float* scratch) {
  const int64_t N = w.N, K = w.K;
  if (T == 1 && PairDecodes(w)) {
    const float* xp = PrepareXPairs(xh, K);
    constexpr int64_t R = kDirectRows;
    ThreadPool::Global().ParallelFor((N + R - 1) / R, 8, [&](int64_t b, int64_t e) {
      PairRows(xp, xh, K, w, b * R, e * R < N ? e * R : N, bias, out);
    });
    return;
  }
  if (T <= kDirectMaxT && !w.generic_groups) {
    const XHalfCall x_half(w, CpuPath::kAvx2, T);
    if (x_half.half) return RunDirect<Row>(xh, T, w, bias, out);
    HalfRowToFloat(xh, T * K, scratch);
    return RunDirect<Row>(static_cast<const float*>(scratch), T, w, bias, out);
  }
  ThreadPool::Global().ParallelFor((N + kPanelRows - 1) / kPanelRows, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const int64_t n1 = (i + 1) * kPanelRows < N ? (i + 1) * kPanelRows : N;
      PanelRange<Row>(xh, T, K, w, i * kPanelRows, n1, bias, out, N);
    }
  });
}

}  // namespace

void LinearAvx2(const Half* x, int64_t T, const TensorView& wv, const Half* bias, Half* out,
                float* scratch) {
  // Groups must hold whole 16-input blocks (else decoded per element); steps are 8 inputs.
  LinearWeight w = LinearWeight::From(wv, kLinearLanes);
  // A few more tokens than the decode kernel takes run it on chunks of kDirectMaxT
  // (LinearInChunks), up to these counts. From memory on Zen 5 ([36864, 12288], two threads, G
  // token-weights/s, fp16 / int8 / int4), the prefill kernel against chunks: T = 6 38-39 / 47-48 /
  // 55-56 against 53-55 / 66 / 76-79, T = 8 44 / 52 / 59 against 72-76 / 67-70 / 87-88, T = 16 61 /
  // 67-68 / 74-75 against 66-77 / 70-72 / 86-89; int4 level at T = 24
  // (bench/results/cpu_kernels.md).
  const int64_t chunked_max = w.format == LinearWeight::kI4 ? 24 : 16;
  if (LinearInChunks(w, x, T, out, kDirectMaxT, chunked_max,
                     [&](const Half* xc, int64_t tc, Half* oc) {
                       LinearAvx2(xc, tc, wv, bias, oc, scratch);
                     })) {
    return;
  }
  w.ForTokens(T);
  w.group_steps *= kBlocks;
  switch (w.format) {
    case LinearWeight::kF16:
      return Run<F16Row>(x, T, w, bias, out, scratch);
    case LinearWeight::kI8:
      return Run<I8RoundRow>(x, T, w, bias, out, scratch);
    case LinearWeight::kI4:
      return Run<I4Row>(x, T, w, bias, out, scratch);
  }
}

}  // namespace glm

GLM_TARGET_POP()
