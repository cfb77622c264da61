// bench-kernels: the CPU kernels against this machine's own limits, measured in the same run:
// memory read bandwidth (all threads streaming a 2 GiB buffer, or 4x the last-level cache where
// that is larger) and peak FMA rate (all threads, independent FMA chains). Reports per kernel GB/s
// and GFLOP/s at GLM-130B shapes and small shapes, a GLM-130B layer's decode time against its bytes
// / bandwidth, a whole synthetic model's decode time (WriteSyntheticModel -> MmapStore in /dev/shm
// -> Forward) against its bytes / bandwidth, and a library sgemm (OpenBLAS / oneDNN through dlopen)
// for the prefill GEMM.
//
// Shapes are weight shapes [N, K]: N output rows, K inputs (row-major, as stored). Times are the
// median of --reps runs after a warm-up (WarmUp). --json prints one JSON object per line.
//
// Memory-bound rows (GEMV, a layer's decode) read their weights from memory, not from the cache:
// where one copy is smaller than 4x the last-level cache (server parts have 100-300+ MiB), the
// benchmark makes enough copies to fill that and each timed call reads the next one.
#include <dlfcn.h>
#include <gflags/gflags.h>
#include <immintrin.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "bench/read_methods.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/linear_common.h"
#include "offload/host_buffer.h"
#include "offload/model_file.h"
#include "offload/store.h"
#include "offload/streaming_store.h"
#include "quant/format.h"
#include "quant/synthetic.h"
#include "runtime/model.h"
#include "runtime/parallel.h"

DEFINE_bool(json, false, "one JSON object per result line");
DEFINE_bool(quick, false, "smaller set (< 30 s): one GLM-130B shape per format, small model");
DEFINE_int32(reps, 0, "timed repetitions per case (0: 5, --quick 3)");
DEFINE_string(path, "", "CPU kernel path: scalar, avx2 or avx512 (default: the best here)");
DEFINE_string(only, "", "comma-separated sections: gemv,gemm,core,ops,layer,model,blas,ab,pages");
DEFINE_string(ab, "",
              "decode settings to compare call by call in section ab (run only when given), and "
              "step by step on a whole model in section pages (each store variant under each "
              "setting): ';'-separated, each 'default' or space-separated NAME=value of the "
              "GLM_CPU_PREFETCH_ROW_BYTES, GLM_CPU_PREFETCH_AHEAD, GLM_CPU_PREFETCH_AHEAD_TOKENS3, "
              "GLM_CPU_PREFETCH_NEXT_L1, GLM_CPU_F16_ROW_STREAMS, GLM_CPU_DECODE_X_HALF, "
              "GLM_CPU_CHUNK_TOKENS, GLM_CPU_PANEL_PREFETCH and GLM_POOL_CHUNKS variables, and "
              "GLM_CPU_PATH (the kernel path, default --path's)");
DEFINE_int32(ab_tokens, 1,
             "tokens per call in section ab: 1 compares the decode GEMVs (gemv-ab rows), more "
             "the prefill GEMMs at those shapes (gemm-ab rows, 128 the prefill's usual)");
DEFINE_string(blas, "libopenblas.so.0,libdnnl.so.2", "libraries tried for the sgemm comparison");
DEFINE_bool(huge_pages, false,
            "the weights and the bandwidth probe's buffer on transparent huge pages "
            "(MADV_HUGEPAGE; the run prints how much the kernel granted), not 4 KiB pages");
DEFINE_string(pages_model, "",
              "pages section (runs only with this): a model file on a disk, decoded with the "
              "file mapped, read into memory on 4 KiB pages and read onto huge pages, one step "
              "of each in turn");
DEFINE_string(pages_variants, "map,read,huge", "pages section: which of map, read and huge");
DEFINE_int32(pages_rounds, 15, "pages section: timed rounds (one decode step of each variant)");
DEFINE_string(model_dir, "/dev/shm", "where the synthetic model file is written (RAM-backed)");
DEFINE_string(model_preset, "",
              "synthetic model of the model section (default: medium, --quick small; "
              "glm130b-L<n> for GLM-130B layers)");

namespace glm {
namespace {

using Clock = std::chrono::steady_clock;
double Now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

bool Section(const char* name) {
  if (FLAGS_only.empty()) return true;
  return ("," + FLAGS_only + ",").find(std::string(",") + name + ",") != std::string::npos;
}
int Reps() { return FLAGS_reps > 0 ? FLAGS_reps : (FLAGS_quick ? 3 : 5); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double g_last_best = 0;  // fastest run of the last Time() call

// The untimed calls before a timed series: one, and with x half chosen by timing (auto, the
// default) as many more as its warm-up takes, so that the series measures the choice a decode
// loop settles on after its first steps rather than the warm-up's alternation
// (kernels/cpu/linear_common.h).
int WarmUpCalls() { return DecodeXHalf() == XHalf::kAuto ? 1 + 2 * XHalfChooser::kWarmup : 1; }
void WarmUp(const std::function<void()>& fn) {
  for (int i = 0; i < WarmUpCalls(); ++i) fn();
}

// Median seconds of fn over Reps() runs after the warm-up (the fastest in g_last_best).
double Time(const std::function<void()>& fn, int reps = 0) {
  WarmUp(fn);
  std::vector<double> t;
  for (int i = 0; i < (reps ? reps : Reps()); ++i) {
    const double t0 = Now();
    fn();
    t.push_back(Now() - t0);
  }
  g_last_best = *std::min_element(t.begin(), t.end());
  return Median(t);
}

struct Limits {
  double mem_bw_gbps = 0;  // the fastest of the probe's read methods
  double peak_gflops = 0;
  double bw_by_method[3] = {};  // loads only, + L1 prefetch, + L2 prefetch
  int best_method = 0;          // the index of the fastest
};

// The last-level cache's size in bytes (0 if unknown): the largest cache sysfs lists for cpu0.
size_t LastLevelCacheBytes() {
  size_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream in(StrFormat("/sys/devices/system/cpu/cpu0/cache/index%d/size", i));
    std::string v;
    if (!(in >> v) || v.empty()) continue;
    size_t n = std::strtoull(v.c_str(), nullptr, 10);
    if (v.back() == 'K') n <<= 10;
    if (v.back() == 'M') n <<= 20;
    best = std::max(best, n);
  }
  if (best == 0) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > 0) best = size_t(l3);
  }
  return best;
}
const size_t g_llc_bytes = LastLevelCacheBytes();
// Bytes a memory-bound benchmark cycles through so that the cache holds a small part of them.
size_t FromMemoryBytes() { return 4 * g_llc_bytes; }
Limits g_limits;

struct Result {
  std::string kernel, weights, shape;
  int64_t T = 1;
  double seconds = 0, bytes = 0, flops = 0;
  double best = 0;           // fastest run (0: not timed by Time)
  int threads = 0;           // 0: the pool's size
  double bound_seconds = 0;  // bytes / bandwidth where the kernel is memory bound
  double ceiling_gbps = 0;   // gemv-1core: the pool's threads at this core's rate
  // Memory-bound rows: against a probe pass run just before each timed call (TimePaired).
  double paired_pct_bw = 0, paired_x_bound = 0, paired_probe_gbps = 0;
  // Rows of one copy of their weights: against a read of those same pages, also just before each
  // call (SamePagesPass): where the pages lie cannot part the two.
  double same_pages_pct = 0, same_pages_gbps = 0;
  // gemv-ab rows: the setting, and its rate against the first setting's, in percent.
  std::string variant;
  double vs_first_pct = 0;
  std::string note;
};

void Print(const Result& r) {
  const double gbps = r.bytes / r.seconds / 1e9, gflops = r.flops / r.seconds / 1e9;
  const int threads = r.threads ? r.threads : ThreadPool::Global().size();
  const char* path = CpuPathName(ActiveCpuPath());
  if (FLAGS_json) {
    std::printf(
        "{\"kernel\":\"%s\",\"weights\":\"%s\",\"shape\":\"%s\",\"T\":%lld,\"threads\":%d,"
        "\"path\":\"%s\",\"seconds\":%.6g,\"gbps\":%.4g,\"gflops\":%.4g,"
        "\"mem_bw_gbps\":%.4g,\"peak_gflops\":%.4g,\"pct_bw\":%.1f,\"pct_peak\":%.1f",
        r.kernel.c_str(), r.weights.c_str(), r.shape.c_str(), (long long)r.T, threads, path,
        r.seconds, gbps, gflops, g_limits.mem_bw_gbps, g_limits.peak_gflops,
        100 * gbps / g_limits.mem_bw_gbps, 100 * gflops / g_limits.peak_gflops);
    if (r.best > 0) {
      std::printf(",\"best_seconds\":%.6g,\"best_gbps\":%.4g,\"best_gflops\":%.4g", r.best,
                  r.bytes / r.best / 1e9, r.flops / r.best / 1e9);
    }
    if (r.bound_seconds > 0) {
      std::printf(",\"bound_seconds\":%.6g,\"x_bound\":%.3f", r.bound_seconds,
                  r.seconds / r.bound_seconds);
    }
    if (r.ceiling_gbps > 0) {
      std::printf(",\"ceiling_gbps\":%.4g,\"ceiling_pct_bw\":%.1f", r.ceiling_gbps,
                  100 * r.ceiling_gbps / g_limits.mem_bw_gbps);
    }
    if (r.paired_probe_gbps > 0) {
      std::printf(",\"probe_pass_gbps\":%.4g,\"paired_pct_bw\":%.4g,\"x_paired_bound\":%.4g",
                  r.paired_probe_gbps, r.paired_pct_bw, r.paired_x_bound);
    }
    if (r.same_pages_gbps > 0) {
      std::printf(",\"same_pages_gbps\":%.4g,\"same_pages_pct\":%.4g", r.same_pages_gbps,
                  r.same_pages_pct);
    }
    if (!r.variant.empty()) {
      std::printf(",\"variant\":\"%s\",\"vs_first_pct\":%.4g", r.variant.c_str(), r.vs_first_pct);
    }
    if (!r.note.empty()) std::printf(",\"note\":\"%s\"", r.note.c_str());
    std::printf("}\n");
  } else {
    std::printf(
        "%-14s %-10s %-22s T=%-4lld %9.3f ms %8.2f GB/s (%5.1f%% bw) %8.1f GFLOP/s (%5.1f%% peak)",
        r.kernel.c_str(), r.weights.c_str(), r.shape.c_str(), (long long)r.T, r.seconds * 1e3, gbps,
        100 * gbps / g_limits.mem_bw_gbps, gflops, 100 * gflops / g_limits.peak_gflops);
    if (r.bound_seconds > 0) std::printf("  %.2fx bound", r.seconds / r.bound_seconds);
    if (r.best > 0 && r.bound_seconds > 0) std::printf("  [best %.2fx]", r.best / r.bound_seconds);
    if (r.paired_probe_gbps > 0) {
      std::printf("  paired: %.1f%% bw, %.2fx (probe passes %.1f GB/s)", r.paired_pct_bw,
                  r.paired_x_bound, r.paired_probe_gbps);
    }
    if (r.same_pages_gbps > 0) {
      std::printf("  same pages: %.1f%% (reads of them %.1f GB/s)", r.same_pages_pct,
                  r.same_pages_gbps);
    }
    if (!r.note.empty()) std::printf("  %s", r.note.c_str());
    std::printf("\n");
  }
  std::fflush(stdout);
}

// ---- Machine limits ----

// ReadSum, the probe's read (bench/read_methods.h).

#define GLM_FMA_CHAINS(V, FMA)                                                      \
  V c0 = a, c1 = a, c2 = a, c3 = a, c4 = a, c5 = a, c6 = a, c7 = a, c8 = a, c9 = a; \
  for (long i = 0; i < iters; ++i) {                                                \
    c0 = FMA(c0, m, a);                                                             \
    c1 = FMA(c1, m, a);                                                             \
    c2 = FMA(c2, m, a);                                                             \
    c3 = FMA(c3, m, a);                                                             \
    c4 = FMA(c4, m, a);                                                             \
    c5 = FMA(c5, m, a);                                                             \
    c6 = FMA(c6, m, a);                                                             \
    c7 = FMA(c7, m, a);                                                             \
    c8 = FMA(c8, m, a);                                                             \
    c9 = FMA(c9, m, a);                                                             \
    __asm__("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4));                 \
    __asm__("" : "+v"(c5), "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9));                 \
  }

// 10 independent FMA chains per thread (latency 4 x 2 ports needs 8).
__attribute__((target("avx512f"))) float FmaLoop512(long iters) {
  const __m512 m = _mm512_set1_ps(0.999f), a = _mm512_set1_ps(0.001f);
  GLM_FMA_CHAINS(__m512, _mm512_fmadd_ps)
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c5), c9));
}
__attribute__((target("avx2,fma"))) float FmaLoop256(long iters) {
  const __m256 m = _mm256_set1_ps(0.999f), a = _mm256_set1_ps(0.001f);
  GLM_FMA_CHAINS(__m256, _mm256_fmadd_ps)
  float out[8];
  _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(c0, c5), c9));
  return out[0];
}

// Runs fn(i) for every i in [0, threads) on the kernel pool's threads, one index each, started
// together by a spin barrier; returns the seconds from the barrier's release to the last end.
// Neither a thread's start nor its wake-up is timed, and the workers are left spinning as after a
// kernel call: fresh std::threads here had let the pool's workers fall asleep during each probe
// pass, so the timed call after it paid their wake-up (measured in bench/results/cpu_kernels.md).
double OnAllThreads(const std::function<void(int)>& fn) {
  ThreadPool& pool = ThreadPool::Global();
  const int n = pool.size();
  std::atomic<int> arrived{0};
  std::atomic<double> start{0}, end{0};
  pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
    // One index per call: a thread holding two would wait at the barrier for itself.
    GLM_CHECK_MSG(e - b == 1, "OnAllThreads: the pool handed out %lld indices at once",
                  (long long)(e - b));
    if (arrived.fetch_add(1) + 1 == n) start.store(Now());
    while (arrived.load() < n) _mm_pause();
    fn(int(b));
    const double t = Now();
    for (double seen = end.load(); seen < t && !end.compare_exchange_weak(seen, t);) {
    }
  });
  return end.load() - start.load();
}

volatile float g_sink;

// Fills n bytes with xorshift bits on all threads.
void FillRandom(uint8_t* p, size_t n, uint64_t seed) {
  const int64_t chunk = 1 << 20;
  ThreadPool::Global().ParallelFor(int64_t((n + chunk - 1) / chunk), 1, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      uint64_t s = seed * 0x9E3779B97F4A7C15ull + uint64_t(c) * 0xBF58476D1CE4E5B9ull + 1;
      const size_t end = std::min(n, size_t(c + 1) * chunk);
      for (size_t i = size_t(c) * chunk; i < end; i += 8) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        std::memcpy(p + i, &s, std::min<size_t>(8, end - i));
      }
    }
  });
}

// Weights and the probe's buffer: 4 KiB pages, or with --huge_pages a HostBuffer advised
// MADV_HUGEPAGE before it is first touched (the kernel may still grant fewer).
struct Buffer {
  uint8_t* p = nullptr;
  size_t n = 0;
  HostBuffer huge;  // --huge_pages
  explicit Buffer(size_t bytes) : n(bytes) {
    if (FLAGS_huge_pages) {
      auto b = HostBuffer::Allocate(bytes, nullptr, "bench-kernels buffer", /*huge_pages=*/true);
      GLM_CHECK_MSG(b.ok(), "%s", b.status().message().c_str());
      huge = std::move(b.value());
      p = reinterpret_cast<uint8_t*>(huge.data());
      return;
    }
    p = static_cast<uint8_t*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
    GLM_CHECK_MSG(p != nullptr, "out of memory allocating %zu bytes", bytes);
  }
  ~Buffer() {
    if (huge.data() == nullptr) std::free(p);
  }
  Buffer(const Buffer&) = delete;
};

// The probe's buffer (past 4x the last-level cache, 2 GiB at least, 1 GiB with --quick), filled
// once and kept for the run: the start and end probes and every paired pass read it.
const Buffer& ProbeBuffer() {
  static const size_t n =
      std::max(size_t(FLAGS_quick ? 1 : 2) << 30, FromMemoryBytes() / 4096 * 4096);
  static const Buffer* const buf = [] {
    auto* b = new Buffer(n);
    FillRandom(b->p, n, 1);
    return b;
  }();
  return *buf;
}

// The probe's read methods: loads only, + L1 prefetch, + L2 prefetch (Limits::bw_by_method).
float (*const kReadMethods[3])(const uint8_t*, size_t) = {ReadSum<>, ReadSum<1024, 3>,
                                                          ReadSum<4096, 2>};

// One pass of read method m over the probe buffer on all threads, in GB/s.
double ProbePass(int m) {
  const Buffer& buf = ProbeBuffer();
  const int threads = ThreadPool::Global().size();
  const size_t per = buf.n / threads / 4096 * 4096;
  const double t = OnAllThreads([&](int i) { g_sink = kReadMethods[m](buf.p + i * per, per); });
  return double(per) * threads / t / 1e9;
}

// The read bandwidth: each method's fastest pass into l.bw_by_method, the best into l.mem_bw_gbps.
void MeasureBandwidth(Limits& l) {
  // Each method's fastest pass; the bandwidth is the best method's (the machine's capability).
  for (int m = 0; m < 3; ++m) {
    std::vector<double> bw;
    for (int r = 0; r < Reps() + 2; ++r) bw.push_back(ProbePass(m));
    bw.erase(bw.begin());  // first pass warms the TLB
    l.bw_by_method[m] = *std::max_element(bw.begin(), bw.end());
    if (l.bw_by_method[m] > l.mem_bw_gbps) l.best_method = m;
    l.mem_bw_gbps = std::max(l.mem_bw_gbps, l.bw_by_method[m]);
  }
}

// ---- Paired bound ----
// On a shared host the bandwidth drifts within seconds (on the Zen 5 VM the probe read 36–70 GB/s
// within minutes), so a row and a probe taken a minute apart may see different machines. Each
// memory-bound row is therefore also compared with one probe pass (the start probe's fastest
// method) run just before each timed call: the median over the calls of the call's rate against
// that pass's.

// One pass of the start probe's best read method over buf on all threads (each its share), in
// GB/s.
double SamePagesPass(const Buffer& buf) {
  const int threads = ThreadPool::Global().size();
  const size_t per = buf.n / threads / 4096 * 4096;
  const double t = OnAllThreads(
      [&](int i) { g_sink = kReadMethods[g_limits.best_method](buf.p + i * per, per); });
  return double(per) * threads / t / 1e9;
}

// Time() for a memory-bound call reading `bytes`, each timed call preceded by a ProbePass() and,
// given the buffer the call reads (own_pages), a SamePagesPass() over it; the paired figures go
// into r. On this project's Zen 5 VM, buffers of one size read up to 1.3x apart by where their
// pages lie (bench/results/cpu_kernels.md, seventeenth session), which the probe's own buffer
// averages out; the pass over the call's own pages follows the probe pass (a pass starts at the
// front and the call does too, so neither finds the other's lines in the last-level cache).
double TimePaired(const std::function<void()>& fn, double bytes, Result& r, int reps = 0,
                  const Buffer* own_pages = nullptr) {
  WarmUp(fn);
  std::vector<double> t, pct, x, bw, same, same_bw;
  for (int i = 0; i < (reps ? reps : Reps()); ++i) {
    const double b = ProbePass(g_limits.best_method);
    const double sb = own_pages ? SamePagesPass(*own_pages) : 0;
    const double t0 = Now();
    fn();
    const double dt = Now() - t0;
    t.push_back(dt);
    bw.push_back(b);
    pct.push_back(100 * bytes / dt / 1e9 / b);
    x.push_back(dt * b * 1e9 / bytes);
    if (sb > 0) {
      same.push_back(100 * bytes / dt / 1e9 / sb);
      same_bw.push_back(sb);
    }
  }
  g_last_best = *std::min_element(t.begin(), t.end());
  r.paired_pct_bw = Median(pct);
  r.paired_x_bound = Median(x);
  r.paired_probe_gbps = Median(bw);
  if (!same.empty()) {
    r.same_pages_pct = Median(same);
    r.same_pages_gbps = Median(same_bw);
  }
  return Median(t);
}

Limits MeasureLimits() {
  Limits l;
  MeasureBandwidth(l);
  const int threads = ThreadPool::Global().size();
  const bool avx512 = CpuPathSupported(CpuPath::kAvx512);
  // Many short runs, fastest kept: on a shared machine some run undisturbed.
  const long iters = 400000;
  std::vector<double> fl;
  for (int r = 0; r < (FLAGS_quick ? 100 : 300); ++r) {
    const double t =
        OnAllThreads([&](int) { g_sink = avx512 ? FmaLoop512(iters) : FmaLoop256(iters); });
    fl.push_back(double(iters) * 10 * (avx512 ? 32 : 16) * threads / t / 1e9);
  }
  l.peak_gflops = *std::max_element(fl.begin(), fl.end());
  return l;
}

// ---- Weights ----

struct Format {
  const char* name;  // fp16, int8-row, int4-row, int4-group
  DType dtype;
  int group;
};
const Format kFormats[] = {{"fp16", DType::kF16, 0},
                           {"int8-row", DType::kI8, 0},
                           {"int4-row", DType::kI4, 0},
                           {"int4-group", DType::kI4, 128}};

// A random [N, K] weight of `f` in its own buffers.
struct BenchWeight {
  std::unique_ptr<Buffer> data;
  std::vector<Half> scales;
  TensorView view;
  double bytes = 0;  // data + scales read per full pass

  BenchWeight(const Format& f, int64_t N, int64_t K, uint64_t seed) {
    const size_t data_bytes = DTypeBytes(f.dtype, N * K);
    data = std::make_unique<Buffer>(data_bytes);
    FillRandom(data->p, data_bytes, seed);
    if (f.dtype == DType::kF16) {  // finite values of magnitude 2^-7..2^-6
      Half* h = reinterpret_cast<Half*>(data->p);
      ThreadPool::Global().ParallelFor(N * K, 1 << 20, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) h[i].bits = uint16_t((h[i].bits & 0x83ff) | 0x2000);
      });
    } else {
      const int64_t groups = f.group ? K / f.group : 1;
      scales.resize(N * groups);
      // int4 groups: 8-bit significands, as glm-quantize writes them (QuantScaleInt4Group).
      const bool int4_group = f.dtype == DType::kI4 && f.group > 0;
      for (size_t i = 0; i < scales.size(); ++i) {
        scales[i] = FloatToHalf(0.01f + 1e-5f * (i % 97));
        if (int4_group) scales[i] = QuantScaleInt4Group(FloatToHalf(HalfToFloat(scales[i]) * 7.f));
      }
      view.scales = scales.data();
      view.group_size = f.group;
    }
    view.dtype = f.dtype;
    view.ndim = 2;
    view.shape[0] = N;
    view.shape[1] = K;
    view.data = data->p;
    bytes = double(data_bytes) + double(scales.size()) * 2;
  }
};

std::string Shape(int64_t N, int64_t K) {
  return StrFormat("[%lld,%lld]", (long long)N, (long long)K);
}

std::vector<Half> RandomActivations(int64_t n, uint64_t seed) {
  std::vector<Half> v(n);
  uint64_t s = seed * 2654435761u + 1;
  for (auto& h : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    h = FloatToHalf((float(s >> 40) / float(1 << 24) - 0.5f) * 2.0f);
  }
  return v;
}

// How many copies of `bytes` fill FromMemoryBytes() (at least 1; at most an eighth of the RAM).
int64_t CopiesFromMemory(double bytes) {
  const double ram = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  const double want = std::ceil(double(FromMemoryBytes()) / bytes);
  return std::max<int64_t>(1, int64_t(std::min(want, ram / 8 / bytes)));
}

// Copies of a random [N, K] weight of `f` (seeds seed, seed + 1, ..) that fill FromMemoryBytes(),
// at least `at_least` of them: a memory-bound benchmark reads the next copy at each call.
std::vector<std::unique_ptr<BenchWeight>> WeightCopies(const Format& f, int64_t N, int64_t K,
                                                       uint64_t seed, int64_t at_least) {
  std::vector<std::unique_ptr<BenchWeight>> w;
  w.push_back(std::make_unique<BenchWeight>(f, N, K, seed));
  for (int64_t c = std::max(CopiesFromMemory(w[0]->bytes), at_least); int64_t(w.size()) < c;)
    w.push_back(std::make_unique<BenchWeight>(f, N, K, seed + w.size()));
  return w;
}

// y = x·Wᵀ for T tokens; the report counts weight bytes (+ activations) and 2·T·N·K flops.
// `memory_bound` (and no `reuse`): each timed call reads its own copy of W (see the top).
Result RunLinear(const char* kernel, const Format& f, int64_t N, int64_t K, int64_t T,
                 BenchWeight* reuse = nullptr, int reps = 0, bool memory_bound = false) {
  std::vector<std::unique_ptr<BenchWeight>> own;
  if (!reuse && memory_bound) {
    own = WeightCopies(f, N, K, 7, 1);
  } else if (!reuse) {
    own.push_back(std::make_unique<BenchWeight>(f, N, K, 7));
  }
  BenchWeight& w = reuse ? *reuse : *own[0];
  auto x = RandomActivations(T * K, 3);
  auto bias = RandomActivations(N, 4);
  std::vector<Half> out(T * N);
  std::vector<float> scratch(T * K);
  Result r{kernel, f.name, Shape(N, K), T};
  r.bytes = w.bytes + 2.0 * T * (K + N);
  size_t next = 0;
  const auto call = [&] {
    const TensorView& v = reuse ? w.view : own[next++ % own.size()]->view;
    Linear(x.data(), T, v, bias.data(), out.data(), scratch.data());
  };
  // One copy (weights past the last-level cache many times over): also against its own pages.
  const Buffer* own_pages = own.size() == 1 ? own[0]->data.get() : nullptr;
  r.seconds = memory_bound && !reuse ? TimePaired(call, r.bytes, r, reps, own_pages)
                                     : Time(call, reps);
  r.best = g_last_best;
  if (own.size() > 1) r.note = StrFormat("%zu copies", own.size());
  r.flops = 2.0 * T * N * K;
  r.bound_seconds = r.bytes / (g_limits.mem_bw_gbps * 1e9);
  return r;
}

// ---- Sections ----

void BenchGemv() {
  struct S {
    int64_t N, K;
    const char* what;
  };
  // GLM-130B: qkv [36864,12288], dense_h_to_4h [65536,12288], dense_4h_to_h [12288,32768],
  // logits [150528,12288] (the fp16 embedding); small: a 1024- and a 4096-wide layer.
  std::vector<S> shapes = {{1024, 1024, "small"}, {4096, 4096, "small"}, {36864, 12288, "qkv"}};
  if (!FLAGS_quick) {
    shapes.push_back({65536, 12288, "up"});
    shapes.push_back({12288, 32768, "down"});
  }
  for (const S& s : shapes) {
    for (const Format& f : kFormats) Print(RunLinear("gemv", f, s.N, s.K, 1, nullptr, 0, true));
  }
  Print(RunLinear("gemv-logits", kFormats[0], FLAGS_quick ? 32768 : 150528, 12288, 1, nullptr, 0,
                  true));
  if (!FLAGS_quick) {  // batched decode: 4 sequences share each weight read
    for (const Format& f : kFormats)
      Print(RunLinear("gemv-batch4", f, 36864, 12288, 4, nullptr, 0, true));
  }
}

// Decode settings (the decode tile settings and the pool's chunking) compared call by call
// (--ab), at GLM-130B's three GEMV shapes, [16384, 2048] and [6144, 2048]. On a shared host the
// bandwidth drifts within seconds, so runs of one setting after another compare different
// machines (the server section of bench/results/cpu_kernels.md): here the settings take turns
// call by call, in an order rotated every round, each call reading its own copy of the weights,
// and each setting's median rate is compared with the first's.
struct AbVariant {
  std::string name;
  DecodeTileSettings tiles;
  ThreadPool::Chunking chunking;
  CpuPath path = ActiveCpuPath();  // kernel paths compared in one process
  void Apply() const {
    SetDecodeTileSettings(tiles);
    ThreadPool::SetChunking(chunking);
    const Status st = SetCpuPath(path);  // supported: checked by ParseAbVariant
    GLM_CHECK_MSG(st.ok(), "%s", st.message().c_str());
  }
};
using AbVariants = std::vector<AbVariant>;

// One --ab setting: GLM_POOL_CHUNKS=… for the pool, GLM_CPU_PATH=… for the kernel path, the rest
// for the decode tiles (all as the environment would set them), on top of the current ones.
StatusOr<AbVariant> ParseAbVariant(const std::string& spec) {
  AbVariant v{spec.empty() ? "default" : spec, {}, ThreadPool::CurrentChunking()};
  std::string tiles;
  std::istringstream words(spec);
  for (std::string word; words >> word;) {
    constexpr std::string_view kPool = "GLM_POOL_CHUNKS=", kPath = "GLM_CPU_PATH=";
    if (word.rfind(kPath, 0) == 0) {
      auto path = ParseCpuPath(word.substr(kPath.size()));
      if (!path.ok()) return path.status();
      if (!CpuPathSupported(*path)) {
        return Errorf("%s: this CPU lacks some of %s", word.c_str(), CpuPathFeatures(*path));
      }
      v.path = *path;
    } else if (word.rfind(kPool, 0) != 0) {
      tiles += word + " ";
    } else if (!ThreadPool::ParseChunking(word.c_str() + kPool.size(), &v.chunking)) {
      return Errorf("%s: expected shares or counter", word.c_str());
    }
  }
  auto parsed = ParseDecodeTileSettings(tiles, CurrentDecodeTileSettings());
  if (!parsed.ok()) {
    const std::string& m = parsed.status().message();
    const bool unknown_name = m.find("not a decode tile setting") != std::string::npos;
    return Errorf("%s%s", m.c_str(), unknown_name ? ", GLM_POOL_CHUNKS or GLM_CPU_PATH" : "");
  }
  v.tiles = *parsed;
  return v;
}

void BenchAb(const AbVariants& variants) {
  const AbVariant saved{"", CurrentDecodeTileSettings(), ThreadPool::CurrentChunking()};
  std::vector<std::pair<int64_t, int64_t>> shapes = {{36864, 12288}};
  if (!FLAGS_quick) {
    shapes.insert(shapes.end(), {{65536, 12288}, {12288, 32768}, {16384, 2048}, {6144, 2048}});
  }
  const size_t V = variants.size();
  const int64_t T = FLAGS_ab_tokens;
  const int rounds = FLAGS_reps > 0 ? FLAGS_reps : FLAGS_quick ? 5 : 15;
  for (const auto& [N, K] : shapes) {
    for (const Format& f : kFormats) {
      const auto own = WeightCopies(f, N, K, 21, 2);
      auto x = RandomActivations(T * K, 22);
      std::vector<Half> out(T * N);
      std::vector<float> scratch(T * K);
      size_t next = 0;
      const auto call = [&] {
        Linear(x.data(), T, own[next++ % own.size()]->view, nullptr, out.data(), scratch.data());
      };
      for (const auto& v : variants) {  // untimed: each setting's scratch and first pass
        v.Apply();
        WarmUp(call);
      }
      std::vector<std::vector<double>> t(V);
      for (int r = 0; r < rounds; ++r) {
        for (size_t i = 0; i < V; ++i) {
          const size_t v = (i + size_t(r)) % V;
          variants[v].Apply();
          const double t0 = Now();
          call();
          t[v].push_back(Now() - t0);
        }
      }
      saved.Apply();
      const double first = Median(t[0]);
      for (size_t v = 0; v < V; ++v) {
        Result r{T > 1 ? "gemm-ab" : "gemv-ab", f.name, Shape(N, K), T};
        r.seconds = Median(t[v]);
        r.best = *std::min_element(t[v].begin(), t[v].end());
        r.bytes = own[0]->bytes + 2.0 * T * (K + N);
        r.flops = 2.0 * N * K * T;
        // The decode is bound by memory, the prefill by the FMA rate.
        r.bound_seconds =
            T > 1 ? r.flops / (g_limits.peak_gflops * 1e9) : r.bytes / (g_limits.mem_bw_gbps * 1e9);
        r.variant = variants[v].name;
        r.vs_first_pct = 100 * (first / r.seconds - 1);
        r.note = StrFormat("'%s': %+.1f%% against '%s' (%d rounds, alternated)", r.variant.c_str(),
                           r.vs_first_pct, variants[0].name.c_str(), rounds);
        Print(r);
      }
    }
  }
}

void BenchGemm() {
  const int64_t T = 128, N = FLAGS_quick ? 4096 : 36864, K = 12288;
  for (const Format& f : kFormats) {
    BenchWeight w(f, N, K, 11);
    Result r = RunLinear("gemm", f, N, K, T, &w, 3);
    r.bound_seconds = r.flops / (g_limits.peak_gflops * 1e9);
    r.note = "bound = flops / peak";
    Print(r);
  }
  // The micro-kernel's efficiency: an L2-resident problem, fastest of many short runs (on a
  // shared machine some run undisturbed; compare its best with the peak).
  for (const Format& f : kFormats) {
    Result r = RunLinear("gemm-l2", f, 128 * ThreadPool::Global().size(), 2048, 120, nullptr,
                         FLAGS_quick ? 100 : 300);
    r.bound_seconds = r.flops / (g_limits.peak_gflops * 1e9);
    r.note = "bound = flops / peak; best = fastest run";
    Print(r);
  }
  if (!FLAGS_quick) {
    BenchWeight w(kFormats[1], 1024, 1024, 12);
    for (int64_t T : {16, 64, 512}) {
      Result r = RunLinear("gemm", kFormats[1], 1024, 1024, T, &w);
      r.bound_seconds = r.flops / (g_limits.peak_gflops * 1e9);
      Print(r);
    }
  }
}

// One core, in-cache operands, fastest of many short runs (on a shared machine some run
// undisturbed): the kernels' compute rate, compared with one core's FMA peak. A decode kernel
// streams weights at this rate per core when memory keeps up, so the pool's threads at this rate
// (`ceiling_gbps`) bound the GEMV from above as the memory bandwidth does: where it is below the
// bandwidth, the decode is compute bound on this machine and no prefetching brings it to the
// bandwidth.
void BenchCore() {
  ThreadPool::InlineScope one_core;
  const bool avx512 = CpuPathSupported(CpuPath::kAvx512);
  double peak = 0;
  for (int r = 0; r < 200; ++r) {
    const double t0 = Now();
    g_sink = avx512 ? FmaLoop512(200000) : FmaLoop256(200000);
    peak = std::max(peak, 200000.0 * 10 * (avx512 ? 32 : 16) / (Now() - t0) / 1e9);
  }
  if (FLAGS_json) {
    std::printf("{\"kernel\":\"limits-1core\",\"threads\":1,\"peak_gflops\":%.4g}\n", peak);
  } else {
    std::printf("# one core: peak FMA %.1f GFLOP/s\n", peak);
  }
  for (const Format& f : kFormats) {
    for (int64_t T : {int64_t(1), int64_t(120)}) {
      const int64_t N = T == 1 ? 512 : 128, K = 2048;
      Result r = RunLinear(T == 1 ? "gemv-1core" : "gemm-1core", f, N, K, T, nullptr, 300);
      r.threads = 1;
      r.seconds = r.best;  // the fastest run is the measurement here
      r.note = StrFormat("%.1f%% of one core's peak FMA", 100 * r.flops / r.best / 1e9 / peak);
      r.bound_seconds = 0;
      if (T == 1) {
        const int threads = ThreadPool::Global().size();
        r.ceiling_gbps = threads * r.bytes / r.best / 1e9;
        r.note += StrFormat("; %d threads at this rate: %.1f GB/s, %.0f%% of the bandwidth",
                            threads, r.ceiling_gbps, 100 * r.ceiling_gbps / g_limits.mem_bw_gbps);
      }
      Print(r);
    }
  }
}

void BenchOps() {
  const int64_t C = 12288, F = 32768;
  const int H = 96, D = 128;
  auto x = RandomActivations(C, 5), g = RandomActivations(C, 6), b = RandomActivations(C, 7);
  std::vector<Half> out(2 * F);
  {
    Result r{"layernorm", "fp16", StrFormat("[%lld]", (long long)C), 1};
    r.seconds = Time([&] { LayerNorm(x.data(), 1, C, g.data(), b.data(), 1e-5f, out.data()); });
    r.bytes = 8.0 * C;
    Print(r);
  }
  {
    auto u = RandomActivations(2 * F, 8);
    Result r{"geglu", "fp16", StrFormat("[%lld]", (long long)F), 1};
    r.seconds = Time([&] { GeGlu(u.data(), 1, F, out.data()); });
    r.bytes = 6.0 * F;
    Print(r);
  }
  for (int64_t ctx : {int64_t(128), int64_t(2048)}) {
    // Copies of the cache where one would fit the last-level cache (see the top).
    const int64_t halves = KvLayerHalves(ctx, H, D);
    std::vector<std::vector<Half>> kc, vc;
    for (int64_t n = CopiesFromMemory(4.0 * halves); int64_t(kc.size()) < n;) {
      kc.push_back(RandomActivations(halves, 9 + 2 * kc.size()));
      vc.push_back(RandomActivations(halves, 10 + 2 * vc.size()));
    }
    auto qkv = RandomActivations(3 * H * D, 11);
    std::vector<Half> c(H * D);
    std::vector<float> scratch(AttentionScratchFloats(ctx));
    Result r{"attention", "fp16", StrFormat("H=%d,D=%d,keys=%lld", H, D, (long long)ctx), 1};
    size_t next = 0;
    r.bytes = 4.0 * ctx * H * D;
    const auto call = [&] {
      const size_t i = next++ % kc.size();
      Attention(qkv.data(), 1, ctx - 1, H, D, kc[i].data(), vc[i].data(), ctx, 0, 5, c.data(),
                scratch.data());
    };
    // The long context also paired with a probe pass before each call, as the GEMVs, over more
    // calls than a GEMV's. The short one is not: a call of 0.1 ms after a pass over the probe's
    // buffer measures its cold start (page walks, the threads' wake-up) more than its reads.
    r.seconds = ctx >= 2048 ? TimePaired(call, r.bytes, r, 3 * Reps()) : Time(call);
    if (kc.size() > 1) r.note = StrFormat("%zu copies", kc.size());
    r.flops = 4.0 * ctx * H * D;
    r.bound_seconds = r.bytes / (g_limits.mem_bw_gbps * 1e9);
    Print(r);
  }
}

// One GLM-130B layer's decode step (T = 1, 512 cached keys) with the kernels model.cc calls.
void BenchLayer() {
  const ModelConfig cfg = ModelConfig::Glm130B();
  const int64_t C = cfg.hidden, F = cfg.inner, H = cfg.num_heads, D = cfg.head_dim, HD = H * D;
  const int64_t ctx = 512;
  const std::vector<const Format*> formats =
      FLAGS_quick
          ? std::vector<const Format*>{&kFormats[2]}
          : std::vector<const Format*>{&kFormats[0], &kFormats[1], &kFormats[2], &kFormats[3]};
  RotaryTable rope = RotaryTable::Build(int(D), cfg.max_seq);
  // One layer's four weights; copies of it where one would fit the cache (see the top).
  struct LayerCopy {
    BenchWeight qkv, dense, up, down;
    LayerCopy(const Format& f, int64_t C, int64_t HD, int64_t F, uint64_t seed)
        : qkv(f, 3 * HD, C, seed),
          dense(f, C, HD, seed + 1),
          up(f, 2 * F, C, seed + 2),
          down(f, C, F, seed + 3) {}
    double bytes() const { return qkv.bytes + dense.bytes + up.bytes + down.bytes; }
  };
  for (const Format* f : formats) {
    std::vector<std::unique_ptr<LayerCopy>> layers;
    layers.push_back(std::make_unique<LayerCopy>(*f, C, HD, F, 21));
    for (int64_t c = CopiesFromMemory(layers[0]->bytes()); int64_t(layers.size()) < c;)
      layers.push_back(std::make_unique<LayerCopy>(*f, C, HD, F, 21 + 4 * layers.size()));
    auto ln_w = RandomActivations(C, 25), ln_b = RandomActivations(C, 26);
    auto qkv_b = RandomActivations(3 * HD, 27), c_b = RandomActivations(C, 28),
         up_b = RandomActivations(2 * F, 29);
    auto kc = RandomActivations(KvLayerHalves(ctx + 1, int(H), int(D)), 30),
         vc = RandomActivations(KvLayerHalves(ctx + 1, int(H), int(D)), 31);
    auto x = RandomActivations(C, 32);
    std::vector<Half> y(C), q(3 * HD), ctxv(HD), a(C), h(C), z(C), u(2 * F), gg(F), m(C), o(C);
    std::vector<float> f32(std::max(C, F));
    std::vector<float> attn_scratch(AttentionScratchFloats(ctx + 1));
    const int32_t pos = int32_t(ctx);
    const float alpha = cfg.Alpha();
    Result r{"layer-decode", f->name, "glm130b-layer", 1};
    r.bytes = layers[0]->bytes() + 4.0 * (ctx + 1) * HD;
    size_t next = 0;
    r.seconds = TimePaired(
        [&] {
          const LayerCopy& w = *layers[next++ % layers.size()];
          const BenchWeight &qkv = w.qkv, &dense = w.dense, &up = w.up, &down = w.down;
          LayerNorm(x.data(), 1, C, ln_w.data(), ln_b.data(), 1e-5f, y.data());
          Linear(y.data(), 1, qkv.view, qkv_b.data(), q.data(), f32.data());
          ApplyRotary(q.data(), 1, int(H), int(D), &pos, rope);
          AppendKv(q.data(), 1, int(H), int(D), ctx, ctx + 1, kc.data(), vc.data());
          Attention(q.data(), 1, ctx, int(H), int(D), kc.data(), vc.data(), ctx + 1, 0, 7,
                    ctxv.data(), attn_scratch.data());
          Linear(ctxv.data(), 1, dense.view, c_b.data(), a.data(), f32.data());
          DeepNormResidual(y.data(), a.data(), alpha, C, h.data());
          LayerNorm(h.data(), 1, C, ln_w.data(), ln_b.data(), 1e-5f, z.data());
          Linear(z.data(), 1, up.view, up_b.data(), u.data(), f32.data());
          GeGlu(u.data(), 1, F, gg.data());
          Linear(gg.data(), 1, down.view, c_b.data(), m.data(), f32.data());
          DeepNormResidual(z.data(), m.data(), alpha, C, o.data());
        },
        r.bytes, r);
    r.best = g_last_best;
    r.flops = 2.0 * (3 * HD * C + C * HD + 2 * F * C + C * F) + 4.0 * (ctx + 1) * HD;
    r.bound_seconds = r.bytes / (g_limits.mem_bw_gbps * 1e9);
    r.note = "bound = (weights + KV) / bw";
    if (layers.size() > 1) r.note += StrFormat("; %zu copies", layers.size());
    Print(r);
  }
}

// Absmax quantization of a synthetic model's four linear weights, per row (spec §3) or per group
// of `group_size` inputs, held in RAM: the whole-model decode for int8/int4 weights.
class QuantizedStore : public WeightStore {
 public:
  QuantizedStore(WeightStore& base, DType dtype, int group_size = 0)
      : base_(base), group_size_(group_size) {
    const ModelConfig& cfg = base.config();
    layers_.resize(cfg.num_layers);
    for (int l = 0; l < cfg.num_layers; ++l) {
      LayerWeights w = *base.Acquire(l).value();
      for (TensorView LayerWeights::*slot :
           {&LayerWeights::qkv, &LayerWeights::dense, &LayerWeights::up, &LayerWeights::down}) {
        w.*slot = Quantize(w.*slot, dtype);
      }
      base.Release(l);
      layers_[l] = w;
    }
  }
  const ModelConfig& config() const override { return base_.config(); }
  const GlobalWeights& globals() const override { return base_.globals(); }
  StatusOr<const LayerWeights*> Acquire(int layer) override { return &layers_[layer]; }
  void Release(int) override {}
  double LayerBytes() const {
    double b = 0;
    for (const LayerWeights& w : layers_) {
      for (const TensorView* t : {&w.qkv, &w.dense, &w.up, &w.down})
        b += t->bytes() + t->rows() * Groups(t->cols()) * 2;
      for (const TensorView* t : {&w.attn_norm_w, &w.attn_norm_b, &w.qkv_b, &w.dense_b,
                                  &w.ffn_norm_w, &w.ffn_norm_b, &w.up_b, &w.down_b}) {
        b += t->bytes();
      }
    }
    return b;
  }

 private:
  // The group size for K inputs (the format needs K % size == 0): group_size_, or for the small
  // presets' narrower weights the largest power of two below it that divides K; K if per row.
  int64_t GroupSize(int64_t K) const {
    if (group_size_ == 0) return K;
    int64_t size = group_size_;
    while (K % size != 0) size /= 2;
    return size;
  }
  int64_t Groups(int64_t K) const { return K / GroupSize(K); }

  TensorView Quantize(const TensorView& w, DType dtype) {
    const int64_t N = w.rows(), K = w.cols(), G = Groups(K), size = GroupSize(K);
    auto& data = data_.emplace_back(DTypeBytes(dtype, N * K));
    auto& scales = scales_.emplace_back(N * G);
    const float qmax = dtype == DType::kI8 ? 127.f : 7.f;
    int8_t* q = reinterpret_cast<int8_t*>(data.data());
    ThreadPool::Global().ParallelFor(N, 16, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        const Half* row = w.f16() + n * K;
        for (int64_t g = 0; g < G; ++g) {
          float amax = 0;
          for (int64_t k = g * size; k < (g + 1) * size; ++k) {
            amax = std::max(amax, std::fabs(HalfToFloat(row[k])));
          }
          // int4 groups: glm-quantize's scale, rounded to an 8-bit significand.
          scales[n * G + g] = dtype == DType::kI4 && group_size_ > 0
                                  ? QuantScaleInt4Group(FloatToHalf(amax))
                                  : FloatToHalf(amax * (1.0f / qmax));
        }
        for (int64_t k = 0; k < K; ++k) {
          const float s = std::max(HalfToFloat(scales[n * G + k / size]), 1e-8f);
          const int v = int(std::nearbyint(RoundHalf(HalfToFloat(row[k]) / s)));
          if (dtype == DType::kI8) {
            q[n * K + k] = int8_t(v);
          } else {
            int8_t& byte = q[n * (K / 2) + k / 2];
            byte = k % 2 ? int8_t((byte & 0xf0) | (v & 0x0f)) : int8_t(v << 4);
          }
        }
      }
    });
    TensorView v = w;
    v.dtype = dtype;
    v.data = data.data();
    v.scales = scales.data();
    v.group_size = group_size_ ? int(size) : 0;
    return v;
  }

  WeightStore& base_;
  int group_size_;
  std::vector<LayerWeights> layers_;
  std::vector<std::vector<uint8_t>> data_;
  std::vector<std::vector<Half>> scales_;
};

double TensorBytes(const GlobalWeights& g) {
  return double(g.embedding.bytes() + g.final_norm_w.bytes() + g.final_norm_b.bytes());
}

// Where a decode step's time goes: further steps with the forward pass's tap, which is called
// after each op of each layer, so the time between two taps is the op's (the tap itself costs a
// string and a call: these steps are not the timed ones above). Sums over the layers, medians over
// the steps, as three rows: the linear layers (with the layers' bytes: the rate the model's GEMVs
// read at), the other ops of the layers (attention with its KV copy, LayerNorms, rotary, GeGLU,
// residuals, the embedding lookup), and the final LayerNorm + logits (with the embedding's bytes).
void BenchModelSplit(WeightStore& s, const RotaryTable& rope, KvCache& kv, Activations& act,
                     const std::vector<int32_t>& pos, int prefix_len, int first, int n,
                     const char* weights, double bytes_per_weight, const std::string& preset,
                     double layer_bytes, double logits_bytes, int64_t vocab) {
  double last = 0;
  double linear = 0, attention = 0, other = 0, final_norm = 0;
  const TapFn tap = [&](const std::string& name, const Half*, int64_t) {
    const double t = Now();
    const std::string op = name.substr(name.find('.') + 1);
    if (op == "qkv" || op == "attn_out" || op == "up" || op == "down") {
      linear += t - last;
    } else if (op == "ctx") {
      attention += t - last;
    } else if (op == "final_norm") {
      final_norm += t - last;
    } else {
      other += t - last;
    }
    last = Now();
  };
  std::vector<double> lin, att, oth, logits;
  std::vector<Half> out(vocab);
  for (int i = 0; i < n; ++i) {
    const int32_t id = (i * 17) % 1000;
    ForwardArgs step{.ids = std::span(&id, 1),
                     .positions = std::span(pos).subspan(first + i, 1),
                     .prefix_len = prefix_len,
                     .tap = &tap};
    linear = attention = other = final_norm = 0;
    last = Now();
    GLM_CHECK(Forward(s, rope, kv, act, step, out.data()).ok());
    logits.push_back(final_norm + Now() - last);  // after the last tap: the logits GEMV
    lin.push_back(linear), att.push_back(attention), oth.push_back(other);
  }
  Result a{"model-linear", weights, preset, 1};
  a.seconds = Median(lin);
  a.bytes = layer_bytes;
  a.flops = 2.0 * layer_bytes / bytes_per_weight;
  a.bound_seconds = layer_bytes / (g_limits.mem_bw_gbps * 1e9);
  a.note = "the layers' linear ops in a decode step; bytes = the layers' bytes";
  Print(a);
  Result b{"model-other", weights, preset, 1};
  b.seconds = Median(oth) + Median(att);
  b.note = StrFormat("the layers' other ops: attention %.3f ms, the rest %.3f ms",
                     Median(att) * 1e3, Median(oth) * 1e3);
  Print(b);
  Result c{"model-logits", weights, preset, 1};
  c.seconds = Median(logits);
  c.bytes = logits_bytes;
  c.flops = logits_bytes;
  c.bound_seconds = logits_bytes / (g_limits.mem_bw_gbps * 1e9);
  c.note = "final LayerNorm and the logits GEMV";
  Print(c);
}

std::string ModelPreset() {
  return !FLAGS_model_preset.empty() ? FLAGS_model_preset : FLAGS_quick ? "small" : "medium";
}

// The model section's flags, before anything runs: a known preset, and a writable --model_dir
// with room for the synthetic model file.
Status CheckModelFlags() {
  auto preset = SyntheticPreset(ModelPreset());
  if (!preset.ok()) return Errorf("--model_preset: %s", preset.status().message().c_str());
  const uint64_t bytes = SyntheticModelBytes(preset.value());
  struct statvfs fs;
  if (statvfs(FLAGS_model_dir.c_str(), &fs) != 0 || access(FLAGS_model_dir.c_str(), W_OK) != 0) {
    return Errorf("--model_dir=%s: not a writable directory (%s)", FLAGS_model_dir.c_str(),
                  std::strerror(errno));
  }
  const uint64_t free_bytes = uint64_t(fs.f_bavail) * fs.f_frsize;
  if (free_bytes < bytes) {
    return Errorf("--model_dir=%s: the %s model needs %.2f GB, %.2f GB free there",
                  FLAGS_model_dir.c_str(), ModelPreset().c_str(), bytes / 1e9, free_bytes / 1e9);
  }
  return Status::Ok();
}

// The synthetic model's files while they exist: the .partial being written (GgufWriter), then the
// finished file until it is mapped. An interrupted run (SIGINT, SIGTERM, SIGHUP) removes them
// before it dies, since --model_dir defaults to /dev/shm, which would keep them in RAM.
char g_model_files[2][4096];
void RemoveModelFilesAndDie(int sig) {
  for (const char* p : g_model_files) {
    if (p[0] != '\0') unlink(p);  // async-signal-safe
  }
  signal(sig, SIG_DFL);
  raise(sig);
}
void TrackModelFiles(const std::string& path) {
  const std::string partial = path + ".partial";
  GLM_CHECK_MSG(partial.size() < sizeof(g_model_files[0]), "--model_dir: path too long: %s",
                path.c_str());
  std::memcpy(g_model_files[0], path.c_str(), path.size() + 1);
  std::memcpy(g_model_files[1], partial.c_str(), partial.size() + 1);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, RemoveModelFilesAndDie);
}
void UntrackModelFiles() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  g_model_files[0][0] = g_model_files[1][0] = '\0';
}

// Decode of a synthetic model held in RAM: the weights are read once per token, so the bound is
// (every layer's bytes + the embedding read by the logits) / bandwidth.
void BenchModel() {
  const std::string preset = ModelPreset();
  auto preset_cfg = SyntheticPreset(preset);  // checked in main
  GLM_CHECK_MSG(preset_cfg.ok(), "%s", preset_cfg.status().message().c_str());
  ModelConfig cfg = preset_cfg.value();
  const std::string path = FLAGS_model_dir + StrFormat("/bench-kernels-%d.gguf", int(getpid()));
  TrackModelFiles(path);
  Status st = WriteSyntheticModel(path, cfg, 42);  // nothing is left behind on failure
  if (!st.ok()) {
    std::fprintf(stderr, "bench-kernels: writing the synthetic model (--model_dir): %s\n",
                 st.message().c_str());
    std::exit(1);
  }
  auto opened = MmapStore::Open(path);
  std::remove(path.c_str());  // a mapping keeps the pages
  UntrackModelFiles();
  if (!opened.ok()) {
    std::fprintf(stderr, "bench-kernels: %s\n", opened.status().message().c_str());
    std::exit(1);
  }
  std::unique_ptr<MmapStore> store = std::move(opened).value();
  std::unique_ptr<QuantizedStore> q8, q4, q4g;
  if (!FLAGS_quick) q8 = std::make_unique<QuantizedStore>(*store, DType::kI8);
  q4 = std::make_unique<QuantizedStore>(*store, DType::kI4);
  q4g = std::make_unique<QuantizedStore>(*store, DType::kI4, 128);  // glm-quantize's default

  struct Variant {
    const char* weights;
    WeightStore* s;
    double bytes_per_weight;  // of the layers' linear weights
  };
  std::vector<Variant> variants = {{"fp16", store.get(), 2}};
  if (q8) variants.push_back({"int8-row", q8.get(), 1});
  variants.push_back({"int4-row", q4.get(), 0.5});
  variants.push_back({"int4-group", q4g.get(), 0.5});
  RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  const int prompt = 8, steps = FLAGS_quick ? 4 : 8;
  for (const Variant& v : variants) {
    double layer_bytes = 0;
    if (v.s == store.get()) {
      ForEachTensor(cfg, [&](const TensorSpec& t) {
        if (t.layer >= 0) layer_bytes += 2.0 * t.shape[0] * (t.ndim == 2 ? t.shape[1] : 1);
      });
    } else {
      layer_bytes = static_cast<QuantizedStore*>(v.s)->LayerBytes();
    }
    const double bytes = layer_bytes + TensorBytes(store->globals());
    const int split_steps = 3;  // extra steps timed op by op (below)
    // Positions for the warm-up's steps, the timed ones and the split's.
    const int positions = prompt + WarmUpCalls() + steps + split_steps;
    KvCache kv = KvCache::Allocate(cfg, positions);
    Activations act = Activations::Allocate(cfg, prompt, positions);
    std::vector<Half> logits(cfg.vocab);
    std::vector<int32_t> ids(prompt), pos(positions);
    for (int i = 0; i < prompt; ++i) ids[i] = (i * 7919) % (cfg.vocab - 16);
    for (size_t i = 0; i < pos.size(); ++i) pos[i] = int32_t(i);
    ForwardArgs pre{
        .ids = ids, .positions = std::span(pos).subspan(0, prompt), .prefix_len = prompt};
    GLM_CHECK(Forward(*v.s, rope, kv, act, pre, logits.data()).ok());
    Result r{"model-decode", v.weights, preset, 1};
    int s = 0;
    const auto decode_step = [&] {
      const int32_t id = (s * 31) % 1000;
      ForwardArgs step{.ids = std::span(&id, 1),
                       .positions = std::span(pos).subspan(prompt + s, 1),
                       .prefix_len = prompt};
      GLM_CHECK(Forward(*v.s, rope, kv, act, step, logits.data()).ok());
      ++s;
    };
    // The first decode steps (page-in, scratch, the x-half choice) are TimePaired's untimed ones.
    r.seconds = TimePaired(decode_step, bytes, r, steps - 1);
    r.best = g_last_best;
    r.bytes = bytes;
    // 2 flops per weight: the layers' in v's format, the logits' in fp16.
    r.flops = 2.0 * layer_bytes / v.bytes_per_weight + TensorBytes(store->globals());
    r.bound_seconds = bytes / (g_limits.mem_bw_gbps * 1e9);
    r.note = "bound = model bytes / bw";
    if (bytes < double(FromMemoryBytes())) {
      r.note += StrFormat("; under 4x the %zu MiB cache: partly served from it", g_llc_bytes >> 20);
    }
    Print(r);
    BenchModelSplit(*v.s, rope, kv, act, pos, prompt, prompt + s, split_steps, v.weights,
                    v.bytes_per_weight, preset, layer_bytes,
                    double(store->globals().embedding.bytes()), cfg.vocab);
  }
}

// ---- Weight pages: one model file mapped, read onto 4 KiB pages, read onto huge pages ----

// The pages section's variants, checked before anything runs.
StatusOr<std::vector<std::string>> PagesVariants() {
  std::vector<std::string> out;
  std::stringstream in(FLAGS_pages_variants);
  for (std::string v; std::getline(in, v, ',');) {
    if (v != "map" && v != "read" && v != "huge") {
      return Errorf("--pages_variants: unknown variant '%s' (expected map, read or huge)",
                    v.c_str());
    }
    if (std::find(out.begin(), out.end(), v) != out.end()) {
      return Errorf("--pages_variants: '%s' given twice", v.c_str());
    }
    out.push_back(v);
  }
  if (out.empty()) return Errorf("--pages_variants: give at least one of map, read and huge");
  return out;
}

// The decode of a model file, its weights held three ways, one step of each variant in turn
// (the order rotating by round) so that all see the same host: the file mapped (MmapStore, the
// page cache's 4 KiB pages: glm-generate without --host-mem), read into anonymous memory on
// 4 KiB pages, and read onto transparent huge pages (StoreOptions::huge_pages: glm-generate
// --huge-pages). Each step is paired with a probe pass just before it. With --ab settings, every
// store variant runs once under each setting (applied before each of its steps), so settings are
// compared on a whole model's decode.
// `fp`: the file's footprint, read by main's checks.
void BenchPages(const HostFootprint& fp, const AbVariants& ab) {
  const std::string& path = FLAGS_pages_model;
  // A step's parts (ForwardBatch's taps, runtime/model.h): the layers from the "embed" tap to
  // the "final_norm" one, then the logits (the tied embedding's GEMV, most of the globals).
  enum Part { kStep, kLayers, kLogits, kParts };
  static const char* const kPartNames[kParts] = {"pages-decode", "pages-layers", "pages-logits"};
  double part_bytes[kParts] = {double(fp.globals_bytes), 0, double(fp.globals_bytes)};
  for (uint64_t b : fp.layer_bytes) {
    part_bytes[kStep] += double(b);
    part_bytes[kLayers] += double(b);
  }
  const ModelConfig& cfg = fp.cfg;
  const int prompt = 8, rounds = FLAGS_pages_rounds;
  const int positions = prompt + WarmUpCalls() + rounds;
  struct Variant {
    std::string name;
    const AbVariant* setting = nullptr;  // --ab: applied before each step
    std::unique_ptr<WeightStore> store;
    double open_s = 0;
    uint64_t huge_bytes = 0;  // AnonHugePages gained while opening and paging in
    KvCache kv;
    Activations act;
    int step = 0;
    std::vector<double> t[kParts], bw;
  };
  std::vector<Variant> vs;
  std::vector<int32_t> ids(prompt), pos(positions);
  for (int i = 0; i < prompt; ++i) ids[i] = (i * 7919) % (cfg.vocab - 16);
  for (int i = 0; i < positions; ++i) pos[i] = i;
  std::vector<Half> logits(cfg.vocab);
  RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
  double t_embed = 0, t_final = 0;
  const TapFn tap = [&](const std::string& name, const Half*, int64_t) {
    if (name == "embed") t_embed = Now();
    if (name == "final_norm") t_final = Now();
  };
  // One decode step; its parts' seconds into dt.
  const auto decode_step = [&](Variant& v, double* dt) {
    const int32_t id = (v.step * 31) % 1000;
    ForwardArgs a{.ids = std::span(&id, 1),
                  .positions = std::span(pos).subspan(prompt + v.step, 1),
                  .prefix_len = prompt,
                  .tap = &tap};
    const double t0 = Now();
    if (v.setting) v.setting->Apply();
    GLM_CHECK(Forward(*v.store, rope, v.kv, v.act, a, logits.data()).ok());
    const double t1 = Now();
    dt[kStep] = t1 - t0;
    dt[kLayers] = t_final - t_embed;
    dt[kLogits] = t1 - t_final;
    ++v.step;
  };
  const AbVariant saved{"", CurrentDecodeTileSettings(), ThreadPool::CurrentChunking()};
  std::vector<std::pair<std::string, const AbVariant*>> kinds;     // store variant x setting
  const std::vector<std::string> names = PagesVariants().value();  // checked in main
  for (const std::string& name : names) {
    if (ab.empty()) kinds.emplace_back(name, nullptr);
    for (const AbVariant& a : ab) kinds.emplace_back(name, &a);
  }
  for (const auto& [name, setting] : kinds) {
    Variant v;
    v.name = setting ? name + " " + setting->name : name;
    v.setting = setting;
    const uint64_t huge0 = AnonHugePageBytes();
    const double t0 = Now();
    StatusOr<std::unique_ptr<WeightStore>> s = Errorf("unset");
    if (name == "read") {  // every layer resident, no budget, 4 KiB pages
      auto st = StreamingStore::Open(
          path, StreamingOptions{.resident = std::vector<bool>(size_t(cfg.num_layers), true),
                                 .staging_slots = 0});
      if (st.ok()) {
        s = std::unique_ptr<WeightStore>(std::move(st).value());
      } else {
        s = st.status();
      }
    } else {
      s = OpenWeightStore(path, StoreOptions{.huge_pages = name == "huge"});
    }
    if (!s.ok()) {
      std::fprintf(stderr, "bench-kernels: --pages_model (%s): %s\n", name.c_str(),
                   s.status().message().c_str());
      std::exit(1);
    }
    v.store = std::move(s).value();
    v.kv = KvCache::Allocate(cfg, positions);
    v.act = Activations::Allocate(cfg, prompt, positions);
    ForwardArgs pre{
        .ids = ids, .positions = std::span(pos).subspan(0, prompt), .prefix_len = prompt};
    if (v.setting) v.setting->Apply();
    GLM_CHECK(Forward(*v.store, rope, v.kv, v.act, pre, logits.data()).ok());
    v.open_s = Now() - t0;  // a mapped file is paged in by its first forward pass
    const uint64_t huge1 = AnonHugePageBytes();
    v.huge_bytes = huge1 > huge0 ? huge1 - huge0 : 0;
    double dt[kParts];
    for (int i = 0; i < WarmUpCalls(); ++i) decode_step(v, dt);
    vs.push_back(std::move(v));
  }
  const size_t n = vs.size();
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < n; ++i) {
      Variant& v = vs[(size_t(r) + i) % n];
      v.bw.push_back(ProbePass(g_limits.best_method));
      double dt[kParts];
      decode_step(v, dt);
      for (int p = 0; p < kParts; ++p) v.t[p].push_back(dt[p]);
    }
  }
  saved.Apply();
  // The format's name as the other sections print it, from the first layer's qkv weight.
  std::string weights;
  {
    const TensorView& w = vs[0].store->Acquire(0).value()->qkv;
    weights = w.dtype == DType::kF16 ? "fp16"
                                     : StrFormat("%s-%s", w.dtype == DType::kI8 ? "int8" : "int4",
                                                 w.group_size ? "group" : "row");
    vs[0].store->Release(0);
  }
  for (int p = 0; p < kParts; ++p) {
    for (Variant& v : vs) {
      Result res{kPartNames[p], weights, StrFormat("L%d", cfg.num_layers), 1};
      res.variant = v.name;
      res.seconds = Median(v.t[p]);
      res.best = *std::min_element(v.t[p].begin(), v.t[p].end());
      res.bytes = part_bytes[p];
      res.bound_seconds = part_bytes[p] / (g_limits.mem_bw_gbps * 1e9);
      std::vector<double> pct, x, ratio;  // ratio: the first variant's time over this one's
      for (int r = 0; r < rounds; ++r) {
        const double t = v.t[p][size_t(r)], b = v.bw[size_t(r)];
        pct.push_back(100 * part_bytes[p] / t / 1e9 / b);
        x.push_back(t * b * 1e9 / part_bytes[p]);
        ratio.push_back(vs[0].t[p][size_t(r)] / t);
      }
      res.paired_pct_bw = Median(pct);
      res.paired_x_bound = Median(x);
      res.paired_probe_gbps = Median(v.bw);
      res.vs_first_pct = 100 * (Median(ratio) - 1);
      res.note = StrFormat("%s: %+.1f%% rate vs %s (median of the rounds' ratios)", v.name.c_str(),
                           res.vs_first_pct, vs[0].name.c_str());
      if (p == kStep) {
        res.note += StrFormat("; opened and paged in in %.2f s, %s on huge pages", v.open_s,
                              FormatBytes(v.huge_bytes).c_str());
      }
      Print(res);
    }
  }
}

// ---- Library sgemm (dlopen: no build dependency) ----

using CblasSgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*,
                            int, float, float*, int);
using DnnlSgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float*, int64_t,
                          const float*, int64_t, float, float*, int64_t);

void BenchBlas() {
  const int64_t T = 128, N = FLAGS_quick ? 1024 : 4096, K = 12288;
  auto xh = RandomActivations(T * K, 41);
  BenchWeight w(kFormats[0], N, K, 42);
  // Our kernel on the same problem (fp16 weights, fp32 accumulation).
  std::vector<Half> ours(T * N), ours1(N);
  std::vector<float> scratch(T * K);
  Result mine{"gemm-ours", "fp16", Shape(N, K), T};
  mine.seconds =
      Time([&] { Linear(xh.data(), T, w.view, nullptr, ours.data(), scratch.data()); }, 3);
  mine.flops = 2.0 * T * N * K;
  mine.bytes = w.bytes;
  Print(mine);
  // The library sees fp32 copies (x and W converted up front, not timed).
  std::vector<float> x(T * K), wf(N * K), c(T * N), c1(N);
  for (int64_t i = 0; i < T * K; ++i) x[i] = HalfToFloat(xh[i]);
  const Half* wh = w.view.f16();
  for (int64_t i = 0; i < N * K; ++i) wf[i] = HalfToFloat(wh[i]);
  size_t start = 0;
  const std::string libs = FLAGS_blas + ",";
  for (size_t comma; (comma = libs.find(',', start)) != std::string::npos; start = comma + 1) {
    const std::string lib = libs.substr(start, comma - start);
    if (lib.empty()) continue;
    void* h = dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      std::printf("# %s: not available (%s)\n", lib.c_str(), dlerror());
      continue;
    }
    std::function<void(int64_t, const float*, float*)> gemm;  // C[M,N] = X[M,K]·Wᵀ
    if (auto f = reinterpret_cast<CblasSgemm>(dlsym(h, "cblas_sgemm"))) {
      gemm = [&, f](int64_t M, const float* a, float* out) {
        f(101, 111, 112, int(M), int(N), int(K), 1.f, a, int(K), wf.data(), int(K), 0.f, out,
          int(N));
      };
    } else if (auto d = reinterpret_cast<DnnlSgemm>(dlsym(h, "dnnl_sgemm"))) {
      gemm = [&, d](int64_t M, const float* a, float* out) {
        d('N', 'T', M, N, K, 1.f, a, K, wf.data(), K, 0.f, out, N);
      };
    } else {
      std::printf("# %s: no cblas_sgemm or dnnl_sgemm\n", lib.c_str());
      continue;
    }
    Result r{"gemm-sgemm", "fp32", Shape(N, K), T};
    r.seconds = Time([&] { gemm(T, x.data(), c.data()); }, 3);
    r.flops = 2.0 * T * N * K;
    r.bytes = 4.0 * N * K;
    // Batch invariance: the first token alone (M = 1) against its row of the batch, and the
    // fp16 outputs against the reference kernels' bits.
    gemm(1, x.data(), c1.data());
    int64_t differ = 0, vs_ref = 0;
    for (int64_t n = 0; n < N; ++n) differ += std::memcmp(&c1[n], &c[n], 4) != 0;
    for (int64_t i = 0; i < T * N; ++i) vs_ref += FloatToHalf(c[i]).bits != ours[i].bits;
    r.note = StrFormat(
        "%s: M=1 vs M=128 fp32 sums differ in %lld of %lld; fp16 outputs differ "
        "from the reference in %lld of %lld",
        lib.c_str(), (long long)differ, (long long)N, (long long)vs_ref, (long long)(T * N));
    Print(r);
  }
  Linear(xh.data(), 1, w.view, nullptr, ours1.data(), scratch.data());
  if (std::memcmp(ours1.data(), ours.data(), N * 2) != 0)
    std::printf("# ours: NOT batch invariant\n");
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "?";
}

double RamGiB() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kb = 0;
  in >> key >> kb;
  return kb / (1 << 20);
}

}  // namespace
}  // namespace glm

int main(int argc, char** argv) {
  using namespace glm;
  gflags::SetUsageMessage("bench-kernels [--quick] [--json] [--path=avx512] [--only=gemv,gemm]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!FLAGS_path.empty()) {
    auto p = ParseCpuPath(FLAGS_path);
    if (!p.ok()) {
      std::fprintf(stderr, "bench-kernels: %s\n", p.status().message().c_str());
      return 2;
    }
    if (Status st = SetCpuPath(*p); !st.ok()) {
      std::fprintf(stderr, "bench-kernels: %s\n", st.message().c_str());
      return 2;
    }
  }
  for (size_t b = 0; !FLAGS_only.empty() && b <= FLAGS_only.size();) {
    const size_t e = std::min(FLAGS_only.find(',', b), FLAGS_only.size());
    const std::string name = FLAGS_only.substr(b, e - b);
    static const char* const kSections[] = {"gemv",  "gemm", "core", "ops",  "layer",
                                            "model", "blas", "ab",   "pages"};
    if (std::find(std::begin(kSections), std::end(kSections), name) == std::end(kSections)) {
      std::string known;
      for (const char* k : kSections) known += (known.empty() ? "" : ", ") + std::string(k);
      std::fprintf(stderr,
                   "bench-kernels: --only: unknown section '%s' (expected a comma-separated list "
                   "of %s)\n",
                   name.c_str(), known.c_str());
      return 2;
    }
    b = e + 1;
  }
  if (FLAGS_reps < 0) {
    std::fprintf(stderr, "bench-kernels: --reps=%d: expected 0 (the default count) or more\n",
                 FLAGS_reps);
    return 2;
  }
  AbVariants ab;
  for (size_t b = 0; !FLAGS_ab.empty() && b <= FLAGS_ab.size();) {
    const size_t e = std::min(FLAGS_ab.find(';', b), FLAGS_ab.size());
    const std::string spec = FLAGS_ab.substr(b, e - b);
    auto v = ParseAbVariant(spec);
    if (!v.ok()) {
      std::fprintf(stderr, "bench-kernels: --ab: %s\n", v.status().message().c_str());
      return 2;
    }
    ab.push_back(*v);
    b = e + 1;
  }
  const bool run_ab = Section("ab") && !ab.empty();
  if (!FLAGS_only.empty() && Section("ab") && ab.empty()) {
    std::fprintf(stderr, "bench-kernels: --only=ab: give the settings to compare with --ab\n");
    return 2;
  }
  const bool run_pages = Section("pages") && !FLAGS_pages_model.empty();
  HostFootprint pages_fp;  // the pages section's model file
  if (!FLAGS_only.empty() && Section("pages") && !run_pages) {
    std::fprintf(stderr, "bench-kernels: --only=pages: give the model file with --pages_model\n");
    return 2;
  }
  if (run_pages) {
    if (auto v = PagesVariants(); !v.ok()) {
      std::fprintf(stderr, "bench-kernels: %s\n", v.status().message().c_str());
      return 2;
    }
    auto f = GgufFile::Open(FLAGS_pages_model);
    StatusOr<HostFootprint> got = f.ok() ? ReadHostFootprint(**f) : f.status();
    if (!got.ok()) {
      std::fprintf(stderr, "bench-kernels: --pages_model: %s\n", got.status().message().c_str());
      return 2;
    }
    pages_fp = std::move(got).value();
    if (FLAGS_pages_rounds < 1) {
      std::fprintf(stderr, "bench-kernels: --pages_rounds=%d: expected 1 or more\n",
                   FLAGS_pages_rounds);
      return 2;
    }
  }
  if (FLAGS_ab_tokens < 1) {
    std::fprintf(stderr, "bench-kernels: --ab_tokens=%d: expected 1 or more\n", FLAGS_ab_tokens);
    return 2;
  }
  if (Section("model")) {
    if (Status st = CheckModelFlags(); !st.ok()) {
      std::fprintf(stderr, "bench-kernels: %s\n", st.message().c_str());
      return 2;
    }
  }
  const double t0 = Now();
  std::printf(
      "# bench-kernels: %s, %d threads, %.1f GiB RAM, %zu MiB last-level cache, path %s%s\n",
      CpuModel().c_str(), ThreadPool::Global().size(), RamGiB(), g_llc_bytes >> 20,
      CpuPathName(ActiveCpuPath()), FLAGS_quick ? ", quick" : "");
  g_limits = MeasureLimits();
  if (FLAGS_json) {
    std::printf(
        "{\"kernel\":\"limits\",\"threads\":%d,\"mem_bw_gbps\":%.4g,\"peak_gflops\":%.4g,"
        "\"llc_bytes\":%zu,\"bw_loads_gbps\":%.4g,\"bw_l1_prefetch_gbps\":%.4g,"
        "\"bw_l2_prefetch_gbps\":%.4g,\"prefetch_row_bytes\":%lld,\"prefetch_ahead_fp16\":%lld,"
        "\"prefetch_ahead_quantized\":%lld,\"prefetch_ahead_fp16_tokens3\":%lld,"
        "\"prefetch_next_l1\":%s,\"f16_row_streams\":%s,"
        "\"decode_x_half\":\"%s\",\"panel_prefetch\":%s,"
        "\"prefetch_defaults\":\"%s\",\"pool_chunks\":\"%s\",\"huge_pages\":%s,"
        "\"anon_huge_pages_mib\":%ld}\n",
        ThreadPool::Global().size(), g_limits.mem_bw_gbps, g_limits.peak_gflops, g_llc_bytes,
        g_limits.bw_by_method[0], g_limits.bw_by_method[1], g_limits.bw_by_method[2],
        PrefetchRowBytes() == kPrefetchEveryRow ? -1LL : (long long)PrefetchRowBytes(),
        (long long)PrefetchAheadBytes(false), (long long)PrefetchAheadBytes(true),
        (long long)PrefetchAheadBytesTokens3(), PrefetchNextL1() ? "true" : "false",
        F16RowStreams() ? "true" : "false", XHalfName(DecodeXHalf()),
        PanelPrefetch() ? "true" : "false", DecodePrefetchDefaultsFor(IdentifyCpu()).measured_on,
        ThreadPool::ChunkingName(ThreadPool::CurrentChunking()),
        FLAGS_huge_pages ? "true" : "false", long(AnonHugePageBytes() >> 20));
  } else {
    std::printf(
        "# memory read bandwidth %.2f GB/s (loads %.2f, with L1 prefetch %.2f, with L2 prefetch "
        "%.2f), peak FMA %.1f GFLOP/s (%d threads)\n",
        g_limits.mem_bw_gbps, g_limits.bw_by_method[0], g_limits.bw_by_method[1],
        g_limits.bw_by_method[2], g_limits.peak_gflops, ThreadPool::Global().size());
    if (FLAGS_huge_pages) {
      std::printf(
          "# --huge_pages: weights and probe on transparent huge pages (%ld MiB granted so "
          "far, the probe's buffer)\n",
          long(AnonHugePageBytes() >> 20));
    }
    const std::string rows =
        PrefetchRowBytes() == kPrefetchEveryRow
            ? std::string("every quantized row")
            : StrFormat("quantized rows of at most %lld bytes", (long long)PrefetchRowBytes());
    std::printf(
        "# decode tiles (defaults for %s, or the GLM_CPU_PREFETCH_*, GLM_CPU_F16_ROW_STREAMS and "
        "GLM_CPU_DECODE_X_HALF overrides): next-tile prefetch for %s into %s, in-row %lld bytes "
        "ahead for fp16 (%lld at 3 or 4 tokens) and %lld for quantized (0: off), fp16 row streams "
        "%s, x as fp16 %s, decode kernel chunks up to %s; pool chunks %s (GLM_POOL_CHUNKS)\n",
        DecodePrefetchDefaultsFor(IdentifyCpu()).measured_on, rows.c_str(),
        PrefetchNextL1() ? "L1" : "L2", (long long)PrefetchAheadBytes(false),
        (long long)PrefetchAheadBytesTokens3(), (long long)PrefetchAheadBytes(true),
        F16RowStreams() ? "on" : "off",
        DecodeXHalf() == XHalf::kAuto ? "when faster (auto)"
        : DecodeXHalf() == XHalf::kOn ? "on"
                                      : "off",
        ChunkTokens() < 0 ? "the measured token counts"
                          : StrFormat("%lld tokens", (long long)ChunkTokens()).c_str(),
        ThreadPool::CurrentChunking() == ThreadPool::Chunking::kShares ? "from per-thread shares"
                                                                       : "from one shared counter");
    std::printf(
        "# prefill: the next K block's weights prefetched into L2 %s "
        "(GLM_CPU_PANEL_PREFETCH)\n",
        PanelPrefetch() ? "on" : "off");
  }
  if (Section("gemv")) BenchGemv();
  if (Section("gemm")) BenchGemm();
  if (Section("core")) BenchCore();
  if (Section("ops")) BenchOps();
  if (Section("layer")) BenchLayer();
  if (Section("model")) BenchModel();
  if (Section("blas")) BenchBlas();
  if (run_ab) BenchAb(ab);
  if (run_pages) BenchPages(pages_fp, ab);
  // This host's bandwidth drifts over minutes: a second probe shows how far the rows' bound may be
  // off (the rows above are against the first).
  if (Section("gemv") || Section("layer") || Section("model") || run_ab || run_pages) {
    Limits end;
    MeasureBandwidth(end);
    if (FLAGS_json) {
      std::printf("{\"kernel\":\"limits-end\",\"threads\":%d,\"mem_bw_gbps\":%.4g}\n",
                  ThreadPool::Global().size(), end.mem_bw_gbps);
    } else {
      std::printf(
          "# memory read bandwidth at the end %.2f GB/s (%+.1f%% against the start's, "
          "which the rows use)\n",
          end.mem_bw_gbps, 100 * (end.mem_bw_gbps / g_limits.mem_bw_gbps - 1));
    }
  }
  std::printf("# total %.1f s\n", Now() - t0);
  return 0;
}
