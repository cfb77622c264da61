// What the SIMD linear kernels share (internal to kernels/cpu): the weight view they decode and
// the reference's epilogue. Plain C++ (no ISA): included before any target pragma.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>

#include "quant/format.h"
#include "runtime/check.h"
#include "runtime/fp16.h"
#include "runtime/tensor.h"

namespace glm {

// The reference's summation order (LinearScalar), which every SIMD path reproduces bit for bit:
// 16 lane sums, lane j over the inputs k ≡ j (mod 16) below K16 = K - K mod 16 in increasing k;
// ReduceLanes folds them; the K mod 16 last products are then added in order. 16 lanes give an
// AVX-512 kernel one whole zmm per output, so an int4 decoder can put its 16 nibbles in any
// lane order that suits it (linear_avx512.cc) and put the sums back in order once per output.
constexpr int kLinearLanes = 16;

// The fold of the 16 lane sums: j + (j+8), then ((0+4)+(1+5)) + ((2+6)+(3+7)).
inline float ReduceLanes(const float* lane) {
  float e[8];
  for (int j = 0; j < 8; ++j) e[j] = lane[j] + lane[j + 8];
  return ((e[0] + e[4]) + (e[1] + e[5])) + ((e[2] + e[6]) + (e[3] + e[7]));
}

// How a decode tile prefetches its weights beyond what the hardware prefetcher does (measured in
// bench/results/cpu_kernels.md):
// - kNextTile: the next tile's rows into L2 (kNextTileL1: into L1, PrefetchNextL1) while this tile
//   runs (NextTilePrefetch), for quantized rows: short ones end before the hardware prefetcher
//   has ramped up on them, and on some CPUs one contiguous stream ahead beats the tile's row
//   streams for long rows too. The level is part of the variant, not a flag tested at every step:
//   with the step's index arithmetic, that test cost int4-group 0-7% in cache on Zen 5, most at
//   groups of 64 and short rows (bench/results/cpu_kernels.md, nineteenth session);
// - kInRow: each row of the tile into L1, PrefetchAheadBytes ahead of the loads (InRowPrefetch),
//   for long rows: more lines in flight per core than its loads alone keep.
enum class TilePrefetch { kNone, kNextTile, kNextTileL1, kInRow };
constexpr bool IsNextTile(TilePrefetch p) {
  return p == TilePrefetch::kNextTile || p == TilePrefetch::kNextTileL1;
}

// Quantized rows of at most this many bytes take the next tile; GLM_CPU_PREFETCH_ROW_BYTES=n
// overrides the CPU's default (read once; 0 turns it off).
int64_t PrefetchRowBytes();
// The distance of kInRow for the other rows; GLM_CPU_PREFETCH_AHEAD=n sets it for all formats
// and token counts (read once; 0 turns it off). The overrides are for measuring other CPUs.
int64_t PrefetchAheadBytes(bool quantized);
// The same for fp16 decode calls of 3 or 4 tokens (beam search, batches), whose steps take more
// time per byte of weights; GLM_CPU_PREFETCH_AHEAD_TOKENS3=n sets it alone.
int64_t PrefetchAheadBytesTokens3();
// The most tokens a call may have to run on chunks of the decode kernel (LinearInChunks) rather
// than the prefill kernel, for every format: GLM_CPU_CHUNK_TOKENS=n (0: never), read once; -1
// (unset) takes each path's measured counts by format.
int64_t ChunkTokens();
// Whether kNextTile asks for L1 (PREFETCHT0) rather than L2 (PREFETCHT1);
// GLM_CPU_PREFETCH_NEXT_L1=0 or 1 overrides the CPU's default (read once).
bool PrefetchNextL1();
// Whether fp16 decode tiles take their rows from R streams of consecutive rows (row streams, see
// the decode kernels) rather than R consecutive rows; GLM_CPU_F16_ROW_STREAMS=0 or 1
// overrides the CPU's default (read once).
bool F16RowStreams();
// Whether the decode kernels read the tokens' x as fp16 (converted at each step) rather than as
// fp32 (x half): half the bytes of x through L1 for every weight byte, for one conversion per step
// shared by the tile's rows. That pays while the decode waits for memory and costs while it is
// bound by its own instructions, which on one host can change within seconds
// (bench/results/cpu_kernels.md). kAuto times the calls and takes the faster (XHalfChooser).
// GLM_CPU_DECODE_X_HALF=0, 1 or auto overrides the CPU's default (read once). The values, and
// so the outputs, are the same either way.
enum class XHalf : uint8_t { kOff, kOn, kAuto };
const char* XHalfName(XHalf x);  // "0", "1", "auto": the setting's values
XHalf DecodeXHalf();

// Whether the prefill kernels (AVX2 and AVX-512) prefetch the next K block's weight rows into L2,
// a slice before each register tile (StridedPrefetch). GLM_CPU_PANEL_PREFETCH=0 or 1 overrides
// the default (on; read once). Measured on a Xeon VM (bench/results/cpu_kernels.md, twenty-third
// session): at GLM-130B's shapes, T = 128, +0.1 to +3.1% (AVX-512) and 0 to +4.8% (AVX2); at
// K = 2048 (two blocks a row, one prefetched) -5.0 to +0.6% and -1.0 to +3.9%.
bool PanelPrefetch();

// The four settings above together: the CPU's defaults with the environment's overrides, read
// once; SetDecodeTileSettings replaces them for the Linear calls that follow, for benchmarks that
// compare settings call by call in one process (bench-kernels --ab). It must not run while a
// kernel does.
struct DecodeTileSettings {
  int64_t row_bytes;                   // PrefetchRowBytes()
  int64_t ahead_f16, ahead_quantized;  // PrefetchAheadBytes(false / true)
  bool f16_row_streams;                // F16RowStreams()
  XHalf x_half;                        // DecodeXHalf()
  bool next_tile_l1 = false;           // PrefetchNextL1()
  int64_t ahead_f16_tokens3 = 0;       // PrefetchAheadBytesTokens3()
  int64_t chunk_tokens = -1;           // ChunkTokens()
  bool panel_prefetch = true;          // PanelPrefetch()
};
DecodeTileSettings CurrentDecodeTileSettings();
void SetDecodeTileSettings(const DecodeTileSettings& s);
// `base` changed by a space-separated list of the environment's settings, written as the
// variables are ("GLM_CPU_F16_ROW_STREAMS=1 GLM_CPU_PREFETCH_AHEAD=512"); "default" or "" is
// `base` itself. An unknown name or a bad value is an error naming it.
StatusOr<DecodeTileSettings> ParseDecodeTileSettings(const std::string& spec,
                                                     DecodeTileSettings base);

// The defaults, by CPU, as measured (bench/results/cpu_kernels.md):
// - AMD family 1Ah (Zen 5; a 2-vCPU EPYC VM): kNextTile for every quantized row, and no kInRow.
//   Against the Ice Lake defaults, at GLM-130B's shapes, int8 read 46% faster, int4-group 37% and
//   int4-row 5%, and fp16 14–34% faster without its in-row prefetch. (Against in-row 1536 bytes,
//   int4-row gained 16% in one run and lost 11% in another.) fp16 row streams: +4–12% at
//   GLM-130B's shapes, +7–30% for rows of 4 and 11 KiB (the AVX2 path: +7–20%, and +38% for 4 KiB
//   rows); for quantized rows they were slower than tiles of consecutive rows with kNextTile (up
//   to 28%), so those keep the consecutive rows. x half: at GLM-130B's shapes, while the host
//   gave about 52 GB/s, int4 +3–7% (int4-row from 86–88% of the bandwidth to 91–92%), int8 0–3%,
//   fp16 ±1%; while it gave about 70 GB/s, where the int4 and int8 decode are bound by their
//   instructions on the VM's two cores (one more conversion per step), int4 −1 to −7% and int8
//   −2 to −4%. The host moves between the two within seconds, so kAuto: alternated call by call
//   it came within 0–4% of the faster fixed choice at either rate, where the other fixed choice
//   lost up to 6%. (The AVX2 path: int4 −3%, fp16 +2% at 70 GB/s.) The next tile into L1: the
//   layers of a whole model's decode (bench-kernels --only=pages --ab) +1.4 to +3.8% for int4-row,
//   −0.3 to +3.7% for int8, +0.4 to +2.0% for int4-group while the host gave about 50 GB/s; the
//   GEMVs at GLM-130B's shapes −1.8 to +4.8%. fp16 at 3 or 4 tokens (the decode kernels' tiles
//   of one or two rows) with kInRow 4096 bytes ahead, [36864, 12288] from memory: the AVX2 path
//   T = 3 42-43 -> 59-63 G token-weights/s and T = 4 36 -> 78, AVX-512 T = 3 55-59 -> 60-61 and
//   T = 4 72-73 -> 80-83; at one or two tokens the prefetch lost (AVX-512 T = 2: 44-45 -> 37-38).
// - other CPUs (measured on an Ice Lake VM): kNextTile for quantized rows of at most 3072 bytes
//   (rows of 1.5–3 KiB gained 2–40%, rows of 4 KiB lost 15%), and kInRow 512 bytes ahead for fp16
//   (4–13% faster GEMVs, about the bandwidth probe's own gain from prefetching) but not for
//   quantized rows (their decode, which costs more µops per byte, was 2–20% slower with it); fp16
//   row streams not measured there, so off; x half kAuto (it measures where it runs); the next
//   tile into L2, as measured there; fp16 at 3 or 4 tokens as at one (not measured there).
// - Intel with AVX512-FP16 (Sapphire Rapids and later Xeons; measured on a 2-vCPU VM with 480 MiB
//   of L3, and before on the GPU machines' 16-vCPU Emerald Rapids host): as other CPUs, but
//   quantized rows too take kInRow, 384 bytes ahead. On the VM, alternated call by call at
//   GLM-130B's shapes (the avx512fp16 path), int8 read 8-15% more of the bandwidth with it
//   (from 80-86% to 90-100%), int4-row 3-9% and int4-group -1 to +6%; 512 bytes gave int8 as
//   much, but cost int4-group 2-4% at two of the three shapes. On the server one run gained
//   5-20% with 512 bytes for every quantized format and a second did not repeat it.
inline constexpr int64_t kPrefetchEveryRow = INT64_MAX;  // row_bytes: every quantized row
struct DecodePrefetchDefaults {
  const char* measured_on;  // the CPUs they apply to, for reports
  int64_t row_bytes;        // PrefetchRowBytes(), or kPrefetchEveryRow
  int64_t ahead_f16, ahead_quantized;
  bool f16_row_streams;       // F16RowStreams()
  XHalf x_half;               // DecodeXHalf()
  bool next_tile_l1;          // PrefetchNextL1()
  int64_t ahead_f16_tokens3;  // PrefetchAheadBytesTokens3()
};
struct CpuIdentity;  // kernels/cpu/dispatch.h
DecodePrefetchDefaults DecodePrefetchDefaultsFor(const CpuIdentity& cpu);

// A 64-byte aligned float buffer of the calling thread (each use keeps its own as a thread_local)
// that grows to the largest size asked and is then reused: the decode loop allocates nothing once
// warm.
struct ThreadFloats {
  float* p = nullptr;
  int64_t n = 0;
  ThreadFloats() = default;
  ThreadFloats(const ThreadFloats&) = delete;
  ThreadFloats& operator=(const ThreadFloats&) = delete;
  ~ThreadFloats() { std::free(p); }
  float* Get(int64_t need) {
    if (n < need) {
      std::free(p);
      p = static_cast<float*>(std::aligned_alloc(64, size_t(need + 15) / 16 * 64));
      GLM_CHECK(p != nullptr);
      n = need;
    }
    return p;
  }
};

// A [N, K] linear weight (quant/format.h) with its group geometry resolved for `lanes`-wide steps.
struct LinearWeight {
  enum Format { kF16, kI8, kI4 };
  Format format = kF16;
  int64_t N = 0, K = 0;
  const Half* f16 = nullptr;  // kF16 data [N, K]
  const int8_t* q = nullptr;  // kI8 / kI4 data, row_bytes per row
  int64_t row_bytes = 0;
  const Half* scales = nullptr;  // [N, groups]
  int64_t groups = 1;            // scales per row (1: GLM-130B's per-row scheme)
  int64_t group_size = 0;        // elements per scale (K for per-row)
  int64_t group_steps = 0;       // group-wise with group_size % lanes == 0: steps per group; else 0
  bool generic_groups = false;   // group-wise with group_size % lanes != 0: decoded per element
  TilePrefetch prefetch = TilePrefetch::kNone;
  int64_t prefetch_ahead = 0;  // kInRow: bytes ahead of the loads
  bool next_tile_l1 = false;   // the next tile into L1 (kNextTileL1; PrefetchNextL1())
  bool row_streams = false;    // fp16: F16RowStreams() (the decode kernels)
  int64_t chunk_tokens = -1;   // ChunkTokens()
  bool panel_prefetch = true;  // PanelPrefetch() (the prefill kernels)
  XHalf x_half = XHalf::kOff;  // DecodeXHalf() (the decode kernels, through XHalfCall)

  static LinearWeight From(const TensorView& w, int lanes) {
    LinearWeight l;
    l.N = w.rows();
    l.K = w.cols();
    l.x_half = DecodeXHalf();
    l.chunk_tokens = ChunkTokens();
    l.panel_prefetch = PanelPrefetch();
    if (w.dtype == DType::kF16) {
      l.f16 = static_cast<const Half*>(w.data);
      l.ChoosePrefetch(false);
      l.row_streams = F16RowStreams();
      return l;
    }
    l.format = w.dtype == DType::kI8 ? kI8 : kI4;
    l.q = static_cast<const int8_t*>(w.data);
    l.row_bytes = QuantRowBytes(w.dtype, l.K);
    l.ChoosePrefetch(l.row_bytes <= PrefetchRowBytes());
    l.scales = w.scales;
    l.group_size = w.group_size > 0 ? w.group_size : l.K;
    l.groups = w.group_size > 0 ? l.K / w.group_size : 1;
    if (w.group_size > 0 && l.groups > 1) {
      if (w.group_size % lanes == 0) {
        l.group_steps = w.group_size / lanes;
      } else {
        l.generic_groups = true;
      }
    }
    return l;
  }

  // The decode kernels' call of T tokens: fp16 at 3 or more takes PrefetchAheadBytesTokens3().
  void ForTokens(int64_t T) {
    if (format != kF16 || T < 3) return;
    prefetch_ahead = PrefetchAheadBytesTokens3();
    prefetch = prefetch_ahead > 0 ? TilePrefetch::kInRow : TilePrefetch::kNone;
  }

  void ChoosePrefetch(bool next_tile) {
    prefetch_ahead = PrefetchAheadBytes(format != kF16);
    next_tile_l1 = PrefetchNextL1();
    prefetch = next_tile ? (next_tile_l1 ? TilePrefetch::kNextTileL1 : TilePrefetch::kNextTile)
               : prefetch_ahead > 0 ? TilePrefetch::kInRow
                                    : TilePrefetch::kNone;
  }
  // Row n's first byte.
  const char* RowBytes(int64_t n) const {
    return format == kF16 ? reinterpret_cast<const char*>(f16 + n * K)
                          : reinterpret_cast<const char*>(q + n * row_bytes);
  }
};

// kAuto's choice: for each kind of decode call (kernel path, weight format and shape, tokens),
// the calls so far are timed with x as fp32 and as fp16, and the faster is taken. The chosen
// variant keeps a moving average of its times (a new time weighs kAlpha; one above twice the
// average counts as twice the average: a preempted call does not swing it). The first 2·kWarmup
// calls alternate; after that every kExplore-th call takes the other variant, whose time then
// replaces its average (clamped the same way), so that the choice follows the host within an
// exploration when its balance of memory and compute moves. A kind keeps a slot of kSlots: one of
// kWays after the slot its mixed hash names, the least recently used of them taken over (and
// restarted) when all hold other kinds. A model's decode interleaves its kinds call by call, so
// they must not evict each other: GLM-130B's shapes, all multiples of 4096, once shared one slot
// (the hash's low bits) and restarted it at every call, which took x as fp32 throughout.
// Thread-safe.
class XHalfChooser {
 public:
  static constexpr int kSlots = 64;
  static constexpr int kWays = 8;
  static constexpr int kWarmup = 3;
  static constexpr uint32_t kExplore = 16;
  static constexpr double kAlpha = 0.25;
  bool Choose(uint64_t kind);  // true: x as fp16
  void Record(uint64_t kind, bool half, double seconds);
  // The averages of `kind` (fp32, fp16), 0 without a time; for tests and reports.
  void Averages(uint64_t kind, double* fp32, double* fp16);
  void Reset();

 private:
  struct Slot {
    uint64_t kind = 0;
    bool used = false;
    double mean[2] = {0, 0};
    int samples[2] = {0, 0};
    uint32_t calls = 0;
    uint64_t last_use = 0;
  };
  Slot* Find(uint64_t kind);     // the kind's slot, or null (under mu_)
  Slot& SlotOf(uint64_t kind);  // the kind's slot, taken over if need be (under mu_)
  std::mutex mu_;
  uint64_t clock_ = 0;  // Choose calls so far: the slots' last use
  Slot slots_[kSlots];
};
XHalfChooser& GlobalXHalfChooser();

// The x-half decision of one decode call: w.x_half fixed, or the chooser's (kAuto), whose call is
// then timed until this object's end. `path`, the calling kernel's, is part of the kind.
enum class CpuPath : int;  // kernels/cpu/dispatch.h
class XHalfCall {
 public:
  XHalfCall(const LinearWeight& w, CpuPath path, int64_t T);
  ~XHalfCall();
  XHalfCall(const XHalfCall&) = delete;
  XHalfCall& operator=(const XHalfCall&) = delete;
  bool half = false;

 private:
  uint64_t kind_ = 0;
  int64_t start_ns_ = -1;  // timed calls only
};

// Element k of a token's x, given as fp32 (converted) or as fp16 (the caller's): the same value.
inline float XAt(const float* x, int64_t k) { return x[k]; }
inline float XAt(const Half* x, int64_t k) { return HalfToFloat(x[k]); }

// The reference dequantization of one element (quant/format.cc): fp16(fp16(q)·scale).
inline float DequantElement(const LinearWeight& w, int64_t n, int64_t k) {
  if (w.format == LinearWeight::kF16) return HalfToFloat(w.f16[n * w.K + k]);
  const int8_t* row = w.q + n * w.row_bytes;
  const int8_t q = w.format == LinearWeight::kI8 ? row[k] : Int4At(row, k);
  return RoundHalf(float(q) * HalfToFloat(w.scales[n * w.groups + k / w.group_size]));
}

// int8 dequantization without leaving fp32 (a Veltkamp split), for the SIMD decoders: with
// c = q·(s·8193), d = c - q·s and w = c - d, w is q·s rounded to 11 significant bits, ties to
// even, which is fp16(q·s), the reference's value. s·8193 = s·(2^13 + 1) is exact in fp32 (11 +
// 14 bits) and q·s is exact, so c rounds q·s·8193 once and d is one FMA. A multiply, an FMA and
// a subtraction, in place of the multiply and the two conversions through fp16. Exact for every
// int8 q when |s| < 512 (and for s = ±0 and fp16 subnormal s, whose products are exact): checked
// for every fp16 scale and every q in kernels_simd_test. Larger scales overflow fp16 for large
// q, where the split does not, so those rows take the conversions.
// The kernels rely on -ffp-contract=off (CMakeLists.txt): c must be rounded before c - d.
constexpr float kSplitFactor = 8193.f;
constexpr uint16_t kSplitLimitBits = 0x6000;  // fp16 512: the split takes |s| below it
inline bool SplitExact(Half s) { return (s.bits & 0x7fff) < kSplitLimitBits; }
inline float SplitDequant(int q, float s) {
  const float c = float(q) * (s * kSplitFactor);
  const float d = std::fma(float(q), -s, c);
  return c - d;
}

// int4 scales whose fp16 significand has at most 8 bits (the low 3 bits of the field zero), as
// glm-quantize writes for the group scheme (quant/format.h): q·s is then an fp16 value for every
// int4 q, and with SplitExact it does not overflow, so a group's table is q·s in fp32 (one
// multiply, no rounding).
constexpr uint16_t kExactTableLowBits = 0x7;

// Whether every scale of rows [n0, n0 + rows) allows the split (int8 weights).
inline bool RowsSplitExact(const LinearWeight& w, int64_t n0, int64_t rows) {
  const Half* s = w.scales + n0 * w.groups;
  for (int64_t i = 0; i < rows * w.groups; ++i) {
    if (!SplitExact(s[i])) return false;
  }
  return true;
}

// The Step functions below are forced inline: a function that only prefetches has no effect GCC
// must keep, so GCC 12 deleted calls to the out-of-line ones (the int8 8-row tiles' next-tile
// prefetch was missing from the binary until 2026-11-28; bench/results/cpu_kernels.md).
#define GLM_PREFETCH_STEP __attribute__((always_inline)) inline

// The lines of a strided region, `rows` rows of `bytes` bytes `stride` bytes apart, prefetched
// into L2 a few at a time while other work runs (Issue, or IssueSlice: one of `slices` equal
// parts): what a prefill kernel reads next from memory, which its loads alone would wait for line
// after line.
class StridedPrefetch {
 public:
  StridedPrefetch() = default;
  StridedPrefetch(const void* first, int64_t stride, int64_t bytes, int64_t rows,
                  int64_t slices = 1)
      : first_(static_cast<const char*>(first)),
        stride_(stride),
        bytes_(bytes),
        rows_(bytes > 0 ? rows : 0),
        slice_lines_((Lines() + slices - 1) / slices) {
    if (rows_ > 0) StartRow();
  }
  // The region's lines, at most (a row that straddles one more line boundary has one more).
  int64_t Lines() const { return rows_ * ((bytes_ + 63) / 64 + 1); }
  // The line the next Issue starts with; nullptr once the whole region is issued.
  const char* NextLine() const { return row_ < rows_ ? line_ : nullptr; }
  // Prefetches the next n lines of the region (fewer at its end).
  GLM_PREFETCH_STEP void Issue(int64_t n) {
    for (; n > 0 && row_ < rows_; --n) {
      __builtin_prefetch(line_, 0, 2);  // PREFETCHT1 on x86: into L2
      line_ += 64;
      if (line_ > last_ && ++row_ < rows_) StartRow();
    }
  }
  GLM_PREFETCH_STEP void IssueSlice() { Issue(slice_lines_); }

 private:
  void StartRow() {
    const uintptr_t a = reinterpret_cast<uintptr_t>(first_ + row_ * stride_);
    line_ = reinterpret_cast<const char*>(a & ~uintptr_t{63});
    last_ = reinterpret_cast<const char*>((a + uintptr_t(bytes_) - 1) & ~uintptr_t{63});
  }
  const char* first_ = nullptr;
  int64_t stride_ = 0, bytes_ = 0, rows_ = 0, slice_lines_ = 0, row_ = 0;
  const char* line_ = nullptr;  // the next line of row_
  const char* last_ = nullptr;  // row_'s last line
};

// The prefill kernels' prefetch of the next K block: weight rows [n0, n0 + rows), inputs [k0, k1)
// (k0, k1 even), in `slices` slices, one before each register tile; empty where
// w.panel_prefetch is off.
inline StridedPrefetch NextWeightBlock(const LinearWeight& w, int64_t n0, int64_t rows, int64_t k0,
                                       int64_t k1, int64_t slices) {
  if (!w.panel_prefetch) return {};
  if (w.format == LinearWeight::kF16) {
    return {w.f16 + n0 * w.K + k0, w.K * 2, (k1 - k0) * 2, rows, slices};
  }
  const int64_t shift = w.format == LinearWeight::kI4 ? 1 : 0;  // int4: two inputs a byte
  return {w.q + n0 * w.row_bytes + (k0 >> shift), w.row_bytes, (k1 - k0) >> shift, rows, slices};
}

// The next decode tile's rows, fetched into L2 (kL1: L1) while a tile of short quantized rows runs
// (see the kernels): the `rows` rows after n0, contiguous, kBytesPerStep of them per 16-input
// step. With no whole tile after this one it fetches this tile's own rows again (a prefetch never
// faults, and lines already on their way cost nothing): no test at every step. Step is called only
// where the tile's variant is kNextTile or kNextTileL1 (`on`).
template <int64_t kBytesPerStep, bool kL1>
struct NextTilePrefetch {
  const char* next = nullptr;
  NextTilePrefetch(bool on, const LinearWeight& w, int64_t n0, int64_t rows) {
    if (!on) return;
    next =
        reinterpret_cast<const char*>(w.q + (n0 + (n0 + 2 * rows <= w.N ? rows : 0)) * w.row_bytes);
  }
  // `step`: the 16-input step (>= 0) being decoded.
  GLM_PREFETCH_STEP void Step(int64_t step) const {
#pragma GCC unroll 8
    for (int64_t b = 0; b < kBytesPerStep; b += 64) {
      const char* p = next + step * kBytesPerStep + b;
      if constexpr (kL1) {
        __builtin_prefetch(p, 0, 3);  // PREFETCHT0
      } else {
        __builtin_prefetch(p, 0, 2);  // PREFETCHT1
      }
    }
  }
};
// The next-tile prefetch of a tile's variant kPrefetch.
template <int64_t kBytesPerStep, TilePrefetch kPrefetch>
using NextTileFor = NextTilePrefetch<kBytesPerStep, kPrefetch == TilePrefetch::kNextTileL1>;

// kInRow: one line of each of the tile's R rows every 64 / kBytesPerStep steps, `ahead` bytes
// past the step being decoded, taking the rows in turn (R · kBytesPerStep / 64 lines a step).
// The tile's rows are n0 + r·stride; rows past its last (`rows` of R are valid) repeat the last.
// Prefetches never fault, so the lines past a row's end need no check.
template <int R, int64_t kBytesPerStep>
struct InRowPrefetch {
  static constexpr int kLinesPerStep = R * kBytesPerStep >= 64 ? int(R * kBytesPerStep / 64) : 1;
  const char* row[R] = {};
  InRowPrefetch(bool on, const LinearWeight& w, int64_t n0, int64_t rows, int64_t stride) {
    if (!on) return;
    for (int r = 0; r < R; ++r)
      row[r] = w.RowBytes(n0 + (r < rows ? r : rows - 1) * stride) + w.prefetch_ahead;
  }
  GLM_PREFETCH_STEP void Step(int64_t step) const {
#pragma GCC unroll 8
    for (int i = 0; i < kLinesPerStep; ++i) {
      const uint64_t r = (uint64_t(step) * kLinesPerStep + i) % R;
      __builtin_prefetch(row[r] + step * kBytesPerStep, 0, 3);  // PREFETCHT0
    }
  }
};

// Runs tile.template operator()<kSplit, kPrefetch>() for the decode variant a tile of rows takes:
// the int8 split where the rows' scales allow it, and the weight's TilePrefetch. Only the variants
// the format can take (kCanSplit; the next tile only for quantized weights) are instantiated.
template <bool kCanSplit, bool kQuantized, class Tile>
inline void WithDecodeVariant(bool split, TilePrefetch prefetch, Tile&& tile) {
  auto with_prefetch = [&]<bool kSplit>() {
    if constexpr (kQuantized) {
      if (prefetch == TilePrefetch::kNextTile) {
        return tile.template operator()<kSplit, TilePrefetch::kNextTile>();
      }
      if (prefetch == TilePrefetch::kNextTileL1) {
        return tile.template operator()<kSplit, TilePrefetch::kNextTileL1>();
      }
    }
    if (prefetch == TilePrefetch::kInRow) {
      return tile.template operator()<kSplit, TilePrefetch::kInRow>();
    }
    tile.template operator()<kSplit, TilePrefetch::kNone>();
  };
  if constexpr (kCanSplit) {
    if (split) return with_prefetch.template operator()<true>();
  }
  with_prefetch.template operator()<false>();
}

// Row streams (fp16 with w.row_streams; the decode kernels): rows [n0, n0 + R·S) taken as R
// streams of S = (n1 - n0) / R consecutive rows, tile i being rows first + r·S with first = n0 + i
// (r < R), so that every stream reads on through memory where a tile of R consecutive short rows
// would start R new streams of a few KiB. Calls tile.template operator()<kPrefetch>(first, S) for
// each tile and returns the first row left to tiles of consecutive rows (n0 when the streams are
// off or a stream would hold fewer than 2 rows). Each row's sum is unchanged. On Zen 5, against
// tiles of consecutive rows: +4-12% at GLM-130B's shapes, +7-30% for rows of 4 and 11 KiB on the
// AVX-512 path, +7-20% and +38% on the AVX2 one (bench/results/cpu_kernels.md).
template <int R, class Tile>
inline int64_t RowStreamTiles(const LinearWeight& w, int64_t n0, int64_t n1, Tile&& tile) {
  const int64_t S = (n1 - n0) / R;
  if (!w.row_streams || S < 2) return n0;
  WithDecodeVariant<false, false>(false, w.prefetch, [&]<bool, TilePrefetch kPrefetch>() {
    for (int64_t i = 0; i < S; ++i) tile.template operator()<kPrefetch>(n0 + i, S);
  });
  return n0 + R * S;
}

// A call of T tokens as calls of at most `chunk` tokens, if chunk < T <= max_tokens (and the
// weight's groups are whole steps): linear(x, t, out) for each chunk's first token's x and out.
// The SIMD paths run a few more tokens than their decode kernel takes this way, reading the
// weights once per chunk, where the prefill kernel's panel costs more (the counts by path and
// format, as measured, are with the callers). Each token's outputs are the same either way.
// Returns false (nothing run) otherwise.
// w.chunk_tokens (ChunkTokens()), when set, replaces max_tokens.
template <class Linear>
bool LinearInChunks(const LinearWeight& w, const Half* x, int64_t T, Half* out, int64_t chunk,
                    int64_t max_tokens, Linear&& linear) {
  if (w.chunk_tokens >= 0) max_tokens = w.chunk_tokens;
  if (T <= chunk || T > max_tokens || w.generic_groups) return false;
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    linear(x + t0 * w.K, T - t0 < chunk ? T - t0 : chunk, out + t0 * w.N);
  }
  return true;
}

// out = fp16(acc + b) with fp16 weights (fused addmm); fp16(fp16(acc) + b) with quantized
// weights (the reference adds the bias as a separate fp16 op, spec §3).
inline Half LinearEpilogue(const LinearWeight& w, float acc, const Half* bias, int64_t n) {
  const float b = bias ? HalfToFloat(bias[n]) : 0.f;
  return FloatToHalf(w.format == LinearWeight::kF16 ? acc + b : RoundHalf(acc) + b);
}

}  // namespace glm
