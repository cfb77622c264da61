// Linear y = x·Wᵀ + b with AVX-512 (spec §1.3, §3) for fp16, int8 and int4 weights, per row or
// per group; bit-identical to LinearScalar.
//
// Numerics. x is converted to fp32 exactly; quantized weights are dequantized as the reference,
// w = fp16(fp16(q)·scale). Every product x·w of two fp16 values is exact in fp32, so an FMA rounds
// exactly like the scalar multiply-then-add. Each output follows the reference order
// (linear_common.h): 16 lane sums over k ≡ j (mod 16) in increasing k, ReduceLanes, then the
// K mod 16 last products in order. So the output bits are those of the scalar reference, on
// every path, whatever T and the other rows of the batch (batch invariance by construction).
//
// Layout. One zmm accumulator per output (row x token), each lane one lane class. fp16 and int8
// decode 16 consecutive inputs in order; int8 rows whose scales allow it round by the split of
// linear_common.h instead of a round trip through fp16. int4 decodes 16 inputs (8 bytes) without a
// shuffle: the 8 bytes are broadcast to every qword (a load-port broadcast), a per-lane shift
// brings lane L's nibble to bits 0..3 (even lanes read bytes 0..3, odd lanes bytes 4..7), and
// VPERMPS looks it up in the row's 16-entry table of fp16(q·scale), the exact dequantized values.
// Lane L then holds input I4Element(L) of the 16; x is permuted the same way once per call, and the
// accumulator is put back in class order once per output. Group-wise decode tiles build each
// group's table by the split, from the tile's scales converted to fp32 once (ConvertTileScales).
//
// Decode kernel (T <= 4): rows decoded in registers, 8 rows x T tokens (4 rows for T > 2); fp16
// tiles from row streams where the CPU gains (RowStreamTiles, linear_common.h).
// Prefill kernel: rows decoded in order into an fp32 panel (64 rows x 1024 inputs, 256 KiB),
// the token tile's x converted from fp16 next to it, 6-token x 4-row register tiles (24
// accumulators, 24 FMAs per 10 loads) run over it, the accumulators kept in a per-thread buffer
// between K blocks (exact: a store and a load). Sizes as measured on an Ice Lake Xeon
// (bench/results/cpu_kernels.md).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <type_traits>
#include <utility>

#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/linear_common.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/target.h"
#include "quant/format.h"
#include "runtime/parallel.h"

// This file is compiled twice: as the avx512 path's kernels, and by linear_avx512_fp16.cc with
// GLM_AVX512_FP16 set as the avx512fp16 path's (CPUs with AVX512-FP16), whose int8 decoder
// dequantizes by fp16 arithmetic (Decoder::Load32). Everything else is the same code.
#ifndef GLM_AVX512_FP16
#define GLM_AVX512_FP16 0
#endif

#if GLM_AVX512_FP16
#define GLM_LINEAR_AVX512 LinearAvx512Fp16
GLM_TARGET_PUSH("avx512fp16,avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
#else
#define GLM_LINEAR_AVX512 LinearAvx512
GLM_TARGET_PUSH("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
#endif
// GCC 12's AVX-512 headers initialise "undefined" vectors from themselves (GCC bug 105593),
// which -Wuninitialized reports at every inlined intrinsic.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace glm {
namespace {

constexpr int kL = kLinearLanes;  // 16 inputs a step, one zmm
// The avx512fp16 build: int8 weights dequantized by VMULPH, 32 at a time (Decoder::Load32),
// never by the split.
constexpr bool kFp16 = GLM_AVX512_FP16;
// Whether int8 rows round by the split where their scales allow it (the avx512 build).
constexpr bool kInt8Split = !kFp16;
constexpr CpuPath kThisPath = kFp16 ? CpuPath::kAvx512Fp16 : CpuPath::kAvx512;
constexpr int kLog2L = 4;  // step of input k >= 0: k >> kLog2L (k / kL takes four instructions)
static_assert(kL == 1 << kLog2L);
constexpr int kDirectMaxT = 4;

inline __m512 RoundToHalf(__m512 v) {
  return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline float HalfF(Half h) { return _cvtsh_ss(h.bits); }

// dst[i] = float(src[i]), i < n (exact).
inline void HalfRowToFloat(const Half* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    _mm512_storeu_ps(
        dst + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i))));
  }
  for (; i < n; ++i) dst[i] = HalfF(src[i]);
}

// int4 lane L = 2m + p reads byte 4p + m/2 of the 8 (its dword of the broadcast qword), the
// high nibble (the even input) when m is even: input 2(4p + m/2) + m mod 2.
constexpr int I4Element(int L) { return 2 * (4 * (L & 1) + ((L >> 1) >> 1)) + ((L >> 1) & 1); }
constexpr int I4Shift(int L) { return 8 * ((L >> 1) >> 1) + (((L >> 1) & 1) ? 0 : 4); }

// ReduceLanes on a class-ordered accumulator: j + (j+8), then ((0+4)+(1+5)) + ((2+6)+(3+7)).
inline float Reduce(__m512 v) {
  const __m256 e = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 f = _mm_add_ps(_mm256_castps256_ps128(e), _mm256_extractf128_ps(e, 1));
  const __m128 g = _mm_hadd_ps(f, f);  // [0+1, 2+3, ..]
  return _mm_cvtss_f32(_mm_add_ss(g, _mm_movehdup_ps(g)));
}

// Adds the K mod 16 last products in order and writes the epilogue (LinearEpilogue with F16C
// conversions: the same rounding).
template <class X>  // float (converted x) or Half (x as given): the same values
inline void Finish(float s, const X* xt, const LinearWeight& w, int64_t n, const Half* bias,
                   Half* out_t) {
  for (int64_t k = w.K - w.K % kL; k < w.K; ++k) s += XAt(xt, k) * DequantElement(w, n, k);
  const float b = bias ? HalfF(bias[n]) : 0.f;
  if (w.format != LinearWeight::kF16) s = _cvtsh_ss(_cvtss_sh(s, _MM_FROUND_TO_NEAREST_INT));
  out_t[n] = Half{uint16_t(_cvtss_sh(s + b, _MM_FROUND_TO_NEAREST_INT))};
}

// ---- Row decoders: 16 weights of a row from input k (a multiple of 16) ----
// Natural order for fp16 and int8; I4Element order for int4 (Load16); Natural16 decodes int4 in
// natural order for the prefill panel.

// The per-lane shifts of the int4 decoder, the input each lane holds, and the lane holding each
// input (class order).
struct I4Lanes {
  alignas(64) int32_t shift[16], element[16], of_input[16];
  constexpr I4Lanes() : shift(), element(), of_input() {
    for (int L = 0; L < 16; ++L) {
      shift[L] = I4Shift(L);
      element[L] = I4Element(L);
      of_input[I4Element(L)] = L;
    }
  }
};
constexpr I4Lanes kI4Lanes;

// kSplit: dequantize by the split of linear_common.h, for rows whose scales allow it: int8
// weights as they are decoded, int4 group tables from the tile's scales in fp32 (TileScales).
// Group-wise int8 with the split reads its scales from TileScales too. kExactTables (int4 with
// the split, a tile whose scales all have 8-bit significands: TileScales::exact_tables): every
// q·s is an fp16 value, so a group's table is one multiply.
template <LinearWeight::Format F, bool kSplit = false, bool kExactTables = false>
struct Decoder {
  static_assert(!kSplit || F != LinearWeight::kF16);
  static_assert(!kExactTables || (kSplit && F == LinearWeight::kI4));
  static constexpr bool kPermuted = F == LinearWeight::kI4;
  const Half* f16 = nullptr;
  const int8_t* q = nullptr;
  const Half* scales = nullptr;
  __m512 scale, table;             // int8: the group's scale; int4: its 16 values fp16(q·scale)
  __m512 scale_split;              // int8 with kSplit: scale · kSplitFactor
  __m512i scale16;                 // int8 in the avx512fp16 build: the scale in 32 fp16 lanes
  const float* scale32 = nullptr;  // group-wise with kSplit: the row's scales in fp32
  const float* split32 = nullptr;  // (TileScales), and for int8 the same · kSplitFactor

  void Init(const LinearWeight& lw, int64_t row) {
    if constexpr (F == LinearWeight::kF16) {
      f16 = lw.f16 + row * lw.K;
    } else {
      q = lw.q + row * lw.row_bytes;
      scales = lw.scales + row * lw.groups;
    }
  }
  void Group(int64_t g) {
    if constexpr (F == LinearWeight::kI8) {
      if constexpr (!kInt8Split) {
        scale16 = _mm512_set1_epi16(int16_t(scales[g].bits));
        return;
      }
      if (kSplit && scale32 != nullptr) {  // group-wise: two broadcasts by the load port
        scale = _mm512_set1_ps(scale32[g]);
        scale_split = _mm512_set1_ps(split32[g]);
        return;
      }
      scale = _mm512_set1_ps(HalfF(scales[g]));
      if constexpr (kSplit) scale_split = _mm512_set1_ps(HalfF(scales[g]) * kSplitFactor);
    }
    if constexpr (F == LinearWeight::kI4) table = Table(g);
  }
  // int4: group g's 16 values fp16(q·scale), in VPERMPS order.
  __m512 Table(int64_t g) const {
    static_assert(F == LinearWeight::kI4);
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
    if constexpr (kExactTables) {
      // s = m·2^e with m of at most 8 bits (a subnormal s: a multiple of 2^-21 below 2^-14), and
      // |q| <= 7 has 3 bits (8 is a power of two): q·s has at most 11 significant bits and,
      // |s| < 512 (SplitExact), no overflow. So fp32's exact product is fp16(q·s), signed zeros
      // included.
      return _mm512_mul_ps(iota, _mm512_set1_ps(scale32[g]));
    } else if constexpr (kSplit) {
      // One broadcast by the load port and three vector µops, against a scalar conversion, a
      // broadcast, a multiply and the round trip through fp16. c is the split's q·(s·8193) as
      // (q·8193)·s: both products in brackets are exact in fp32 (s·8193 is s plus s·2^13, whose
      // 11-bit significands do not overlap), so c rounds the same real.
      const __m512 iota_split = _mm512_mul_ps(iota, _mm512_set1_ps(kSplitFactor));  // exact
      const __m512 s = _mm512_set1_ps(scale32[g]);
      __m512 c = _mm512_mul_ps(iota_split, s);
      __asm__("" : "+v"(c));  // c is rounded (no contraction into c - d)
      return _mm512_sub_ps(c, _mm512_fnmadd_ps(iota, s, c));
    } else {
      return RoundToHalf(_mm512_mul_ps(iota, _mm512_set1_ps(HalfF(scales[g]))));
    }
  }
  // The decode kernel's order (kPermuted: I4Element).
  __m512 Load16(int64_t k) const {
    if constexpr (F == LinearWeight::kF16) {
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(f16 + k)));
    } else if constexpr (F == LinearWeight::kI8) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k));
#if GLM_AVX512_FP16
      if constexpr (!kSplit) {  // Load32's arithmetic on 16 weights (a group's odd last step)
        const __m256h wh = _mm256_mul_ph(_mm256_cvtepi16_ph(_mm256_cvtepi8_epi16(b)),
                                         _mm256_castsi256_ph(_mm512_castsi512_si256(scale16)));
        return _mm512_cvtph_ps(_mm256_castph_si256(wh));
      }
#endif
      const __m512 qf = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
      if constexpr (kSplit) {
        __m512 c = _mm512_mul_ps(qf, scale_split);
        __asm__("" : "+v"(c));  // c is rounded (no contraction into c - d)
        return _mm512_sub_ps(c, _mm512_fnmadd_ps(qf, scale, c));
      } else {
        return RoundToHalf(_mm512_mul_ps(qf, scale));
      }
    } else {
      return Load16(k, table);
    }
  }
#if GLM_AVX512_FP16
  // int8, 32 weights from input k (natural order): inputs k..k+15 into w0, k+16..k+31 into w1.
  // VCVTW2PH converts q exactly and VMULPH rounds q·s once to fp16: the reference's
  // fp16(fp16(q)·s) for every scale, overflow to infinity included (no split, no limit). VPMOVSXBW,
  // VCVTW2PH and VMULPH work on all 32 weights at once, so the step takes 10 vector µops for 32
  // weights against the split's 12 (with the two FMAs); on a CPU with two 512-bit pipes that is
  // the int8 decode's bound (bench/results/cpu_kernels.md, twenty-second session).
  void Load32(int64_t k, __m512& w0, __m512& w1) const {
    static_assert(F == LinearWeight::kI8 && !kSplit);
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + k));
    const __m512i wh = _mm512_castph_si512(
        _mm512_mul_ph(_mm512_cvtepi16_ph(_mm512_cvtepi8_epi16(b)), _mm512_castsi512_ph(scale16)));
    w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(wh));
    w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(wh, 1));
  }
#endif
  // int4 with the table given (DirectTile's tables a group ahead).
  __m512 Load16(int64_t k, __m512 tab) const {
    static_assert(F == LinearWeight::kI4);
    int64_t v;
    __builtin_memcpy(&v, q + (k >> 1), 8);  // k >= 0: a shift, where k / 2 takes four instructions
    // VPERMPS reads index bits 0..3: the bits above the nibble do not matter.
    const __m512i shift = _mm512_load_si512(kI4Lanes.shift);
    return _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi64(v), shift), tab);
  }
  // Natural order (the prefill panel).
  __m512 Natural16(int64_t k) const {
    if constexpr (F == LinearWeight::kI4) {
      // Element 2j is the high nibble of byte j: each byte twice, shifted by 4 in even lanes.
      const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + k / 2));
      const __m128i dup =
          _mm_shuffle_epi8(b, _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
      const __m512i sh = _mm512_setr_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
      return _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_cvtepu8_epi32(dup), sh), table);
    } else {
      return Load16(k);
    }
  }
};

// x of T tokens (as given, fp16) for the decode kernel: [T][K16] values, K16 = K - K mod 16, in
// the decoder's order, as fp32 or as fp16 (x half, linear_common.h). Exact either way.
template <class XP>
void PrepareX(bool permuted, const Half* x, int64_t T, int64_t K, XP* dst) {
  const int64_t K16 = K - K % kL;
  const __m512i order = _mm512_load_si512(kI4Lanes.element);
  for (int64_t t = 0; t < T; ++t) {
    const Half* xt = x + t * K;
    XP* d = dst + t * K16;
    for (int64_t k = 0; k < K16; k += kL) {
      __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt + k)));
      if (permuted) v = _mm512_permutexvar_ps(order, v);
      if constexpr (std::is_same_v<XP, Half>) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(d + k),
                           _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      } else {
        _mm512_store_ps(d + k, v);
      }
    }
  }
}

// 16 values of the decode kernel's x (PrepareX) from i, a multiple of 16.
inline __m512 LoadX(const float* xp, int64_t i) { return _mm512_load_ps(xp + i); }
inline __m512 LoadX(const Half* xp, int64_t i) {
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(xp + i)));
}

// The scales of a tile's R rows in fp32, [R][groups], and with kWithSplit the same · kSplitFactor,
// in a buffer of the calling thread (group-wise weights with the split: Decoder::Group reads them
// by broadcast).
struct TileScales {
  const float* scale32;
  const float* split32;  // kWithSplit only, else null
  bool exact;            // every scale allows the split (SplitExact: |s| < 512)
  bool exact_tables;     // and 8-bit significands (kExactTableLowBits): int4 tables by multiply
};
template <int R, bool kWithSplit>
TileScales ConvertTileScales(const LinearWeight& w, int64_t n0, int64_t rows) {
  thread_local ThreadFloats buf;
  const int64_t G = w.groups;
  float* s32 = buf.Get((kWithSplit ? 2 : 1) * R * G);
  float* x32 = s32 + R * G;
  // SplitExact on the largest magnitude, compared once after the loop: a compare per block of
  // 16, chained through its mask, made a serial chain of 48 compares per tile at K = 12288 and
  // cost the tile 5-10% in cache on Zen 5 (bench/results/cpu_kernels.md).
  const __m256i magnitude = _mm256_set1_epi16(0x7fff);
  __m256i largest = _mm256_setzero_si256(), low_bits = _mm256_setzero_si256();
  // The last block of a row (G not a multiple of 16) by masked loads and stores, whose lanes
  // past G read as +0 and leave both checks as they are. One scalar conversion and two checks
  // per scale made one core's in-cache [1024, 1024] group-128 GEMV (8 groups a row) 1.32x as
  // slow on Zen 5 (bench/results/cpu_kernels.md).
  const __mmask16 tail = __mmask16((1u << (G % kL)) - 1);
  for (int r = 0; r < R; ++r) {
    const Half* src = w.scales + (n0 + (r < rows ? r : rows - 1)) * G;
    float* d = s32 + r * G;
    float* dx = x32 + r * G;
    auto block = [&](int64_t g, __m256i h, __mmask16 m) __attribute__((always_inline)) {
      const __m512 v = _mm512_cvtph_ps(h);
      _mm512_mask_storeu_ps(d + g, m, v);
      if constexpr (kWithSplit)
        _mm512_mask_storeu_ps(dx + g, m, _mm512_mul_ps(v, _mm512_set1_ps(kSplitFactor)));
      largest = _mm256_max_epu16(largest, _mm256_and_si256(h, magnitude));
      low_bits = _mm256_or_si256(low_bits, h);
    };
    int64_t g = 0;
    for (; g + kL <= G; g += kL) {
      block(g, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + g)), 0xffff);
    }
    if (tail) block(g, _mm256_maskz_loadu_epi16(tail, src + g), tail);
  }
  const bool exact = _mm256_cmpge_epu16_mask(largest, _mm256_set1_epi16(kSplitLimitBits)) == 0;
  const bool tables = _mm256_test_epi16_mask(low_bits, _mm256_set1_epi16(kExactTableLowBits)) == 0;
  return {s32, kWithSplit ? x32 : nullptr, exact, exact && tables};
}

// ---- Decode kernel: TB <= 4 tokens x R rows (n0 + r·stride, r < R; `rows` of them valid) ----

// kPrefetch (w.prefetch, linear_common.h): kNextTile (quantized rows of at most
// PrefetchRowBytes()) fetches the next tile's rows (contiguous) into L2 while this tile runs, one
// step's share a step: rows of a few KiB end before the hardware prefetcher has ramped up on them
// (K = 2048 int4: 1 KiB). kInRow (fp16 rows, by default where the CPU gains from it) fetches each
// row's line PrefetchAheadBytes ahead into L1. The defaults depend on the CPU (linear_common.h).
// kExactTables: int4 group tables by one multiply (Decoder), chosen by the tile (TileScales),
// which passes its converted scales on (`converted`).
template <int TB, int R, LinearWeight::Format F, bool kSplit, TilePrefetch kPrefetch, class XP,
          bool kExactTables = false>
void DirectTile(const Half* x, const XP* xp, const LinearWeight& w, int64_t n0, int64_t rows,
                int64_t stride, const Half* bias, Half* out,
                const TileScales* converted = nullptr) {
  static_assert(!IsNextTile(kPrefetch) || F != LinearWeight::kF16);
  const int64_t N = w.N, K = w.K, K16 = K - K % kL;
  Decoder<F, kSplit, kExactTables> row[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) row[r].Init(w, n0 + (r < rows ? r : rows - 1) * stride);
  // Group-wise weights with the split (int4 takes it for group-wise weights only) convert their
  // scales per tile; row-wise int8 reads its one scale per row as it goes.
  [[maybe_unused]] TileScales ts;
  if constexpr (kSplit) {
    if (w.group_steps > 0 && converted == nullptr) {
      if constexpr (IsNextTile(kPrefetch)) {
        // The next tile's scales into L2 along with its rows: a tile reads all of its scales at
        // its start (24 lines at K = 12288), where their misses stalled it. +2 to +5% on a whole
        // model's int4-group layers on Zen 5 in four of six runs (bench/results/cpu_kernels.md).
        const int64_t next_rows = std::min<int64_t>(R, N - (n0 + R));
        if (next_rows > 0) {
          const char* p = reinterpret_cast<const char*>(w.scales + (n0 + R) * w.groups);
          for (int64_t b = 0; b < next_rows * w.groups * int64_t(sizeof(Half)); b += 64) {
            __builtin_prefetch(p + b, 0, 2);  // PREFETCHT1
          }
        }
      }
      // Contiguous rows: stride 1 (DirectRows).
      ts = ConvertTileScales<R, F == LinearWeight::kI8>(w, n0, rows);
      if (!ts.exact) {
        return DirectTile<TB, R, F, false, kPrefetch>(x, xp, w, n0, rows, 1, bias, out);
      }
      if constexpr (F == LinearWeight::kI4) {
        if (ts.exact_tables) {
          return DirectTile<TB, R, F, true, kPrefetch, XP, true>(x, xp, w, n0, rows, 1, bias, out,
                                                                 &ts);
        }
      }
      converted = &ts;
    }
    if (w.group_steps > 0) {
      for (int r = 0; r < R; ++r) {
        row[r].scale32 = converted->scale32 + r * w.groups;
        if constexpr (F == LinearWeight::kI8) row[r].split32 = converted->split32 + r * w.groups;
      }
    }
  }
  __m512 acc[TB][R];
#pragma GCC unroll 4
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  const int64_t per_group = w.group_steps ? w.group_steps * kL : K16;
  // Bytes of a row per 16-input step.
  constexpr int64_t kStepBytes = F == LinearWeight::kF16 ? 32 : F == LinearWeight::kI8 ? 16 : 8;
  const NextTileFor<R * kStepBytes, kPrefetch> next_tile(IsNextTile(kPrefetch), w, n0, R);
  const InRowPrefetch<R, kStepBytes> in_row(kPrefetch == TilePrefetch::kInRow, w, n0, rows, stride);
  // fp16 at T = 1: each row's next kRowBlock steps (256 bytes, four cache lines) back to back, then
  // the next row's, rather than one step of every row in turn: 8-13% faster on Zen 5 while its
  // host gave more than 50 GB/s, equal below (not measured elsewhere;
  // bench/results/cpu_kernels.md). Each row sums the same products in the same order.
  constexpr bool kRowBlocks = F == LinearWeight::kF16 && TB == 1;
  constexpr int kRowBlock = 8;
  // int4 at T = 1 builds each group's tables one group ahead, during the previous group's steps:
  // +3-7% in cache on Zen 5 (bench/results/cpu_kernels.md). More tokens hold more accumulators
  // and leave no registers for the tables ahead. Groups go in pairs whose tables alternate between
  // two register sets, rather than copying the tables ahead into the current ones every group:
  // +1-5% in cache on Zen 5 at groups of 64 and 128 (eighteenth session).
  constexpr bool kAhead = F == LinearWeight::kI4 && kSplit && TB == 1;
  if constexpr (kAhead) {
    const int64_t last_group = (K16 - 1) / per_group;
    __m512 ta[R], tb[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) ta[r] = row[r].Table(0);
    // Group g from input k0 with the tables `cur`, building group g + 1's into `next`.
    auto group = [&](const __m512(&cur)[R], __m512(&next)[R], int64_t g, int64_t k0)
        __attribute__((always_inline)) {
      const int64_t gn = g < last_group ? g + 1 : g;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) next[r] = row[r].Table(gn);
      const int64_t k1 = k0 + per_group < K16 ? k0 + per_group : K16;
      for (int64_t k = k0; k < k1; k += kL) {
        if constexpr (IsNextTile(kPrefetch)) next_tile.Step(k >> kLog2L);
        if constexpr (kPrefetch == TilePrefetch::kInRow) in_row.Step(k >> kLog2L);
        const __m512 xv = LoadX(xp, k);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          acc[0][r] = _mm512_fmadd_ps(xv, row[r].Load16(k, cur[r]), acc[0][r]);
        }
      }
    };
    for (int64_t g = 0, k0 = 0; k0 < K16; ++g, k0 += per_group) {
      group(ta, tb, g, k0);
      if ((k0 += per_group) >= K16) break;
      group(tb, ta, ++g, k0);
    }
  } else {
    for (int64_t g = 0, k0 = 0; k0 < K16; ++g, k0 += per_group) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) row[r].Group(g);
      const int64_t k1 = k0 + per_group < K16 ? k0 + per_group : K16;
      int64_t k = k0;
      if constexpr (kRowBlocks) {
        for (; k + kRowBlock * kL <= k1; k += kRowBlock * kL) {
#pragma GCC unroll 8
          for (int j = 0; j < kRowBlock; ++j) {
            if constexpr (kPrefetch == TilePrefetch::kInRow) in_row.Step((k >> kLog2L) + j);
          }
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
            for (int j = 0; j < kRowBlock; ++j) {
              acc[0][r] =
                  _mm512_fmadd_ps(LoadX(xp, k + j * kL), row[r].Load16(k + j * kL), acc[0][r]);
            }
          }
        }
      }
#if GLM_AVX512_FP16
      if constexpr (F == LinearWeight::kI8 && !kSplit) {  // two steps at a time (Load32)
        for (; k + 2 * kL <= k1; k += 2 * kL) {
#pragma GCC unroll 2
          for (int j = 0; j < 2; ++j) {
            if constexpr (IsNextTile(kPrefetch)) next_tile.Step((k >> kLog2L) + j);
            if constexpr (kPrefetch == TilePrefetch::kInRow) in_row.Step((k >> kLog2L) + j);
          }
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            __m512 w0, w1;
            row[r].Load32(k, w0, w1);
#pragma GCC unroll 4
            for (int t = 0; t < TB; ++t) {
              acc[t][r] = _mm512_fmadd_ps(LoadX(xp, t * K16 + k), w0, acc[t][r]);
              acc[t][r] = _mm512_fmadd_ps(LoadX(xp, t * K16 + k + kL), w1, acc[t][r]);
            }
          }
        }
      }
#endif
      for (; k < k1; k += kL) {
        if constexpr (IsNextTile(kPrefetch)) next_tile.Step(k >> kLog2L);
        if constexpr (kPrefetch == TilePrefetch::kInRow) in_row.Step(k >> kLog2L);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m512 wv = row[r].Load16(k);
#pragma GCC unroll 4
          for (int t = 0; t < TB; ++t) {
            acc[t][r] = _mm512_fmadd_ps(LoadX(xp, t * K16 + k), wv, acc[t][r]);
          }
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < TB; ++t) {
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      __m512 v = acc[t][r];
      if constexpr (Decoder<F>::kPermuted) {
        v = _mm512_permutexvar_ps(_mm512_load_si512(kI4Lanes.of_input), v);
      }
      Finish(Reduce(v), x + t * K, w, n0 + r * stride, bias, out + t * N);
    }
  }
}

constexpr int DirectRowsFor(int TB) { return TB <= 2 ? 8 : 4; }

template <int TB, LinearWeight::Format F, class XP>
void DirectRows(const Half* x, const XP* xp, const LinearWeight& w, int64_t n0, int64_t n1,
                const Half* bias, Half* out) {
  constexpr int R = DirectRowsFor(TB);
  constexpr bool kInt8 = F == LinearWeight::kI8, kQuantized = F != LinearWeight::kF16;
  // Group-wise weights take the split and the tile checks their scales as it converts them
  // (DirectTile); int4 takes it for its group tables only (a row-wise table is built once per
  // tile); row-wise int8 checks its tile's scales here.
  constexpr bool kCanSplit = kQuantized && (!kInt8 || kInt8Split);
  const bool group_split = kCanSplit && w.group_steps > 0;
  if constexpr (F == LinearWeight::kF16) {
    n0 = RowStreamTiles<R>(w, n0, n1, [&]<TilePrefetch kPrefetch>(int64_t first, int64_t S) {
      DirectTile<TB, R, F, false, kPrefetch>(x, xp, w, first, R, S, bias, out);
    });
  }
  for (int64_t n = n0; n < n1; n += R) {
    const int64_t rows = n1 - n < R ? n1 - n : R;
    WithDecodeVariant<kCanSplit, kQuantized>(
        group_split || (kInt8 && kInt8Split && RowsSplitExact(w, n, rows)), w.prefetch,
        [&]<bool kSplit, TilePrefetch kPrefetch>() {
          DirectTile<TB, R, F, kSplit, kPrefetch>(x, xp, w, n, rows, 1, bias, out);
        });
  }
}

template <LinearWeight::Format F, class XP>
void RunDirectWith(const Half* x, const XP* xp, int64_t T, const LinearWeight& w, const Half* bias,
                   Half* out) {
  const int64_t N = w.N;
  constexpr int64_t R = 8;  // rows per work item: a multiple of every tile's rows
  ThreadPool::Global().ParallelFor((N + R - 1) / R, 4, [&](int64_t b, int64_t e) {
    const int64_t n0 = b * R, n1 = e * R < N ? e * R : N;
    switch (T) {
      case 1:
        return DirectRows<1, F>(x, xp, w, n0, n1, bias, out);
      case 2:
        return DirectRows<2, F>(x, xp, w, n0, n1, bias, out);
      case 3:
        return DirectRows<3, F>(x, xp, w, n0, n1, bias, out);
      default:
        return DirectRows<4, F>(x, xp, w, n0, n1, bias, out);
    }
  });
}

template <LinearWeight::Format F>
void RunDirect(const Half* x, int64_t T, const LinearWeight& w, const Half* bias, Half* out) {
  const int64_t K = w.K, K16 = K - K % kL;
  // x in the decoder's order, as fp32 or fp16 (x half: w.x_half, or timed and chosen).
  const XHalfCall x_half(w, kThisPath, T);
  thread_local ThreadFloats xb;
  float* buf = xb.Get(T * K16 + 16);
  if (x_half.half) {
    Half* xp = reinterpret_cast<Half*>(buf);
    PrepareX(Decoder<F>::kPermuted, x, T, K, xp);
    return RunDirectWith<F>(x, static_cast<const Half*>(xp), T, w, bias, out);
  }
  PrepareX(Decoder<F>::kPermuted, x, T, K, buf);
  RunDirectWith<F>(x, static_cast<const float*>(buf), T, w, bias, out);
}

// ---- Prefill kernel ----

constexpr int kTileT = 6, kTileR = 4;  // register tile: 24 accumulators
constexpr int64_t kPanelRows = 64;     // rows per work item (a multiple of 16)
constexpr int64_t kBlock = 1024;       // K block (inputs): panel 256 KiB, x tile 24 KiB
constexpr int64_t kTokenBlock = 144;   // tokens per panel pass (T = 128 in one), multiple of 6

struct PanelScratch {
  float* panel;  // [kPanelRows][kBlock]
  float* spill;  // [kTokenBlock][kPanelRows][16] accumulators between K blocks
  float* xtile;  // [kTileT][kBlock] the token tile's x for this K block
};

PanelScratch ThreadScratch() {
  // Fixed size, allocated once per thread on its first prefill call; never grows.
  thread_local ThreadFloats buf;
  constexpr int64_t panel = kPanelRows * kBlock;
  constexpr int64_t spill = kTokenBlock * kPanelRows * kL;
  constexpr int64_t xtile = kTileT * kBlock;
  float* p = buf.Get(panel + spill + xtile);
  return {p, p + panel, p + panel + spill};
}

// Decodes inputs [k0, k1) (multiples of 16) of a row in natural order into dst.
template <LinearWeight::Format F, bool kSplit = false>
void DequantNatural(const LinearWeight& w, int64_t row, int64_t k0, int64_t k1, float* dst) {
  if (w.generic_groups) {
    for (int64_t k = k0; k < k1; ++k) *dst++ = DequantElement(w, row, k);
    return;
  }
  if constexpr (F == LinearWeight::kI8 && !kSplit && kInt8Split) {
    if (RowsSplitExact(w, row, 1)) return DequantNatural<F, true>(w, row, k0, k1, dst);
  }
  Decoder<F, kSplit> d;
  d.Init(w, row);
  const int64_t gs = w.group_steps ? w.group_steps * kL : INT64_MAX;
  int64_t g = w.group_steps ? k0 / gs : 0;
  int64_t group_end = w.group_steps ? (g + 1) * gs : INT64_MAX;
  d.Group(g);
  for (int64_t k = k0; k < k1; k += kL, dst += kL) {
    if (k == group_end) {
      d.Group(++g);
      group_end += gs;
    }
    _mm512_store_ps(dst, d.Natural16(k));
  }
}

struct TileArgs {
  const Half* x;       // row of the tile's first token (K values per token)
  const float* xtile;  // the tile's x from input k0, kBlock floats per token
  const float* panel;  // the tile's first row, kBlock floats per row, from input k0
  int64_t steps;       // 16-input steps in this K block
  bool first, last;
  float* spill;  // the tile's first (token, row) accumulator
  const LinearWeight* w;
  int64_t n;     // first row
  int64_t rows;  // rows left from n
  const Half* bias;
  Half* out;  // output row of the tile's first token
};

template <int TB, int NR>
void PanelTile(const TileArgs& a) {
  const int64_t K = a.w->K, N = a.w->N;
  __m512 acc[TB][NR];
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r)
      acc[t][r] =
          a.first ? _mm512_setzero_ps() : _mm512_load_ps(a.spill + (t * kPanelRows + r) * kL);
  for (int64_t s = 0; s < a.steps; ++s) {
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) wv[r] = _mm512_load_ps(a.panel + r * kBlock + s * kL);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      __m512 xv = _mm512_load_ps(a.xtile + t * kBlock + s * kL);
      // One load for the NR FMAs: folded into each of them (as GCC's generic tuning does), the
      // loads outnumber what the two load ports take while the FMA ports work.
      __asm__("" : "+v"(xv));
#pragma GCC unroll 8
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  // Always through the spill buffer: the accumulators never need a stack copy.
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < NR; ++r) _mm512_store_ps(a.spill + (t * kPanelRows + r) * kL, acc[t][r]);
  if (!a.last) return;
  for (int t = 0; t < TB; ++t) {
    for (int r = 0; r < NR && r < a.rows; ++r) {
      Finish(Reduce(_mm512_load_ps(a.spill + (t * kPanelRows + r) * kL)), a.x + t * K, *a.w,
             a.n + r, a.bias, a.out + t * N);
    }
  }
}

// PanelTile<TB, nr> for nr = 1..NR.
template <int TB, int NR = kTileR>
void PanelTileRows(int nr, const TileArgs& a) {
  if constexpr (NR > 1) {
    if (nr < NR) return PanelTileRows<TB, NR - 1>(nr, a);
  }
  PanelTile<TB, NR>(a);
}

using PanelTileFn = void (*)(int, const TileArgs&);
template <size_t... I>
constexpr std::array<PanelTileFn, kTileT + 1> MakePanelTiles(std::index_sequence<I...>) {
  return {nullptr, PanelTileRows<int(I) + 1>...};
}
constexpr auto kPanelTiles = MakePanelTiles(std::make_index_sequence<kTileT>());

// Rows [n0, n1) (at most kPanelRows) for all T tokens; the K mod 16 tail is left to Finish.
// x is read as given (fp16) and converted into each token tile's copy: a whole fp32 copy of
// [T, K] would be written once and read again for every panel, from L3 at GLM-130B's shapes.
template <LinearWeight::Format F>
void PanelRange(const Half* x, int64_t T, const LinearWeight& w, int64_t n0, int64_t n1,
                const Half* bias, Half* out) {
  const PanelScratch scratch = ThreadScratch();
  const int64_t N = w.N, K = w.K, K16 = K - K % kL;
  const int64_t rows = n1 - n0;
  if (K16 == 0) {  // no lane sums: the tail alone
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = n0; n < n1; ++n) Finish(0.f, x + t * K, w, n, bias, out + t * N);
    return;
  }
  const int64_t row_tiles = (rows + kTileR - 1) / kTileR;
  for (int64_t tb = 0; tb < T; tb += kTokenBlock) {
    const int64_t tcount = T - tb < kTokenBlock ? T - tb : kTokenBlock;
    const int64_t tiles = (tcount + kTileT - 1) / kTileT * row_tiles;
    for (int64_t k0 = 0; k0 < K16; k0 += kBlock) {
      const int64_t k1 = k0 + kBlock < K16 ? k0 + kBlock : K16;
      const int64_t k2 = k1 + kBlock < K16 ? k1 + kBlock : K16;  // the next block's end
      for (int64_t r = 0; r < rows; ++r) {
        DequantNatural<F>(w, n0 + r, k0, k1, scratch.panel + r * kBlock);
      }
      // The next K block's weight rows into L2, spread over this block's register tiles: short
      // runs of each row (2 KiB of fp16) that the hardware prefetcher leaves to demand misses.
      StridedPrefetch next_w = NextWeightBlock(w, n0, rows, k1, k2, tiles);
      for (int64_t t0 = 0; t0 < tcount; t0 += kTileT) {
        const int tt = int(tcount - t0 < kTileT ? tcount - t0 : kTileT);
        for (int t = 0; t < tt; ++t) {
          HalfRowToFloat(x + (tb + t0 + t) * K + k0, k1 - k0, scratch.xtile + t * kBlock);
        }
        for (int64_t r = 0; r < rows; r += kTileR) {
          const int nr = int(rows - r < kTileR ? rows - r : kTileR);
          next_w.IssueSlice();
          const TileArgs args{x + (tb + t0) * K,
                              scratch.xtile,
                              scratch.panel + r * kBlock,
                              (k1 - k0) / kL,
                              k0 == 0,
                              k1 == K16,
                              scratch.spill + (t0 * kPanelRows + r) * kL,
                              &w,
                              n0 + r,
                              rows - r,
                              bias,
                              out + (tb + t0) * N};
          kPanelTiles[tt](nr, args);
        }
      }
    }
  }
}

template <LinearWeight::Format F>
void RunPanel(const Half* x, int64_t T, const LinearWeight& w, const Half* bias, Half* out) {
  const int64_t N = w.N;
  ThreadPool::Global().ParallelFor((N + kPanelRows - 1) / kPanelRows, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      PanelRange<F>(x, T, w, i * kPanelRows, (i + 1) * kPanelRows < N ? (i + 1) * kPanelRows : N,
                    bias, out);
    }
  });
}

// Both kernels convert x themselves: the decode kernel once per call into its order
// (PrepareX), the panel kernel per token tile (PanelRange); `scratch` is unused here.
template <LinearWeight::Format F>
void Run(const Half* x, int64_t T, const LinearWeight& w, const Half* bias, Half* out,
         float* scratch) {
  (void)scratch;
  if (T > kDirectMaxT || w.generic_groups) return RunPanel<F>(x, T, w, bias, out);
  RunDirect<F>(x, T, w, bias, out);
}

}  // namespace

void GLM_LINEAR_AVX512(const Half* x, int64_t T, const TensorView& wv, const Half* bias, Half* out,
                       float* scratch) {
  LinearWeight w = LinearWeight::From(wv, kL);
  // A few more tokens than the decode kernel takes run it on chunks of kDirectMaxT
  // (LinearInChunks), up to these counts. From memory on Zen 5 ([36864, 12288], two threads, G
  // token-weights/s, fp16 / int8 / int4), the prefill kernel against chunks: T = 6 44-45 / 62-66 /
  // 84-91 against 61-77 / 114-119 / 188-198, T = 8 53 / 74 / 90-95 against 78-107 / 138-140 /
  // 203-217, T = 16 int8 116 against 134-139 and int4 134-143 against 218-235, T = 32 int4 159-169
  // against 226-233; fp16 level at T = 12 (bench/results/cpu_kernels.md).
  const int64_t chunked_max = w.format == LinearWeight::kF16  ? 8
                              : w.format == LinearWeight::kI8 ? 16
                                                              : 32;
  if (LinearInChunks(w, x, T, out, kDirectMaxT, chunked_max,
                     [&](const Half* xc, int64_t tc, Half* oc) {
                       GLM_LINEAR_AVX512(xc, tc, wv, bias, oc, scratch);
                     })) {
    return;
  }
  w.ForTokens(T);
  switch (w.format) {
    case LinearWeight::kF16:
      return Run<LinearWeight::kF16>(x, T, w, bias, out, scratch);
    case LinearWeight::kI8:
      return Run<LinearWeight::kI8>(x, T, w, bias, out, scratch);
    case LinearWeight::kI4:
      return Run<LinearWeight::kI4>(x, T, w, bias, out, scratch);
  }
}

}  // namespace glm

GLM_TARGET_POP()
#undef GLM_LINEAR_AVX512
