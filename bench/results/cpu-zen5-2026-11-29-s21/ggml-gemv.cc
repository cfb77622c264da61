// One token's GEMV: glmstream's kernels against ggml's CPU backend (the engine under llama.cpp)
// on the same machine, from memory and in cache.
// Each round reads a fixed 1 GiB probe buffer with every thread (bench/read_methods.h's
// 8-stream method, the faster of two passes), then calls every variant once in turn; rounds are
// binned by their probe. Both engines on the kernel pool's thread count (the cores; GLM_THREADS).
// Weights are random: ours raw bytes (int4 group scales with 8-bit significands, as glm-quantize
// writes them), ggml's quantized from uniform floats by ggml_quantize_chunk. "repack" puts the
// tensor in ggml's CPU_REPACK buffer type (the interleaved layout llama.cpp uses for Q4_0 and Q4_K
// on AVX2/AVX-512 CPUs).
//
// Build (ggml built separately, CPU only, -march=native; not part of this repository):
//   g++ -O2 -std=c++20 -I. -I$GGML/include bench/results/cpu-zen5-2026-11-29-s21/ggml-gemv.cc
//       build/libglmstream.a $GGML/build/src/libggml.a $GGML/build/src/libggml-cpu.a
//       $GGML/build/src/libggml-base.a -fopenmp -lpthread -o ggml-gemv
// Run: ggml-gemv ROUNDS N K [N K ...]          from memory, every thread
//      (GGML_GEMV_SECONDS=s ends the rounds of each shape after s seconds)
//      ggml-gemv cache REPS THREADS N K [N K ...]  in cache: REPS calls on one buffer each,
//                                                  median and fastest, on 1 thread or all
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench/read_methods.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "kernels/cpu/dispatch.h"
#include "runtime/parallel.h"

using namespace glm;

static double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds for the pool's threads to read [p, p + n) once, a share each.
static double ReadTime(const uint8_t* p, size_t n) {
  auto& pool = ThreadPool::Global();
  static std::atomic<int> sink{0};  // keeps the sums, so the loads stay
  const int parts = pool.size();
  const size_t share = n / parts / 4096 * 4096;
  const double t0 = Now();
  pool.ParallelFor(parts, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float s = ReadSum(p + i * share, i + 1 == parts ? n - i * share : share);
      sink.fetch_add(s != 12345.f, std::memory_order_relaxed);
    }
  });
  return Now() - t0;
}

struct Variant {
  std::string name;
  const uint8_t* data;
  size_t bytes;
  std::function<void()> call;
  std::vector<double> gbps, pct;  // per round: GB/s, and % of the round's probe
};

static uint64_t rng = 88172645463325252ull;
static uint64_t Next() {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

int main(int argc, char** argv) {
  const bool cache = argc > 1 && std::strcmp(argv[1], "cache") == 0;
  const int first = cache ? 4 : 2;
  if (argc < first + 2 || (argc - first) % 2 != 0) {
    std::fprintf(stderr, "usage: %s ROUNDS N K [N K ...] | cache REPS THREADS N K [N K ...]\n",
                 argv[0]);
    return 2;
  }
  const int rounds = std::atoi(argv[cache ? 2 : 1]);
  const int pool_threads = ThreadPool::Global().size();
  const int threads = cache ? std::atoi(argv[3]) : pool_threads;
  if (threads != 1 && threads != pool_threads) {
    std::fprintf(stderr, "THREADS must be 1 or the pool's %d (GLM_THREADS sets it)\n",
                 pool_threads);
    return 2;
  }
  ThreadPool::InlineScope* one = threads == 1 ? new ThreadPool::InlineScope : nullptr;
  (void)one;
  const CpuKernels& kern = KernelsFor(ActiveCpuPath());  // GLM_CPU_PATH=avx2 forces the AVX2 path
  ggml_backend_t backend = ggml_backend_cpu_init();
  ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
  tpp.poll = 0;  // workers sleep at once after a graph: no spinning into the next read pass
  ggml_threadpool* tp = ggml_threadpool_new(&tpp);
  ggml_backend_cpu_set_threadpool(backend, tp);
  ggml_backend_cpu_set_n_threads(backend, threads);
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  auto get_extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
      ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
  ggml_backend_buffer_type_t repack = nullptr;
  for (ggml_backend_buffer_type_t* b = get_extra ? get_extra(dev) : nullptr; b && *b; ++b) {
    if (std::strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) repack = *b;
  }
  std::printf("ggml CPU_REPACK buffer type: %s\n", repack ? "present" : "absent");
  std::printf("threads: %d (ours: the kernel pool; ggml: its own pool), our path %s\n", threads,
              CpuPathName(ActiveCpuPath()));

  for (int a = first; a + 1 < argc; a += 2) {
    const int64_t N = std::atoll(argv[a]), K = std::atoll(argv[a + 1]);
    std::vector<Variant> vs;
    // ---- glmstream: fp16, int8-row, int4-row, int4-group 128 ----
    std::vector<Half> x(K), out(N);
    for (auto& h : x) h = FloatToHalf(float(int(Next() % 2000) - 1000) / 1000.f);
    std::vector<float> scratch(K + 64);
    struct Ours {
      uint8_t* q;  // 4 KiB-aligned: the read pass uses aligned loads
      std::vector<Half> scales;
      TensorView view;
    };
    std::vector<Ours*> ours;
    const int fmts[4] = {0, 1, 2, 2}, groups[4] = {0, 0, 0, 128};
    const char* names[4] = {"ours fp16", "ours int8-row", "ours int4-row", "ours int4-group128"};
    for (int v = 0; v < 4; ++v) {
      auto* o = new Ours;
      const int fmt = fmts[v];
      const int64_t bytes = fmt == 0 ? N * K * 2 : fmt == 1 ? N * K : N * K / 2;
      o->q = static_cast<uint8_t*>(std::aligned_alloc(4096, (bytes + 4095) / 4096 * 4096));
      for (int64_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = Next();
        std::memcpy(&o->q[i], &r, 8);
      }
      if (fmt == 0)
        for (int64_t i = 0; i < bytes; i += 2) o->q[i + 1] &= 0x3b;  // finite halves
      const int64_t G = groups[v] ? K / groups[v] : 1;
      if (fmt) {
        o->scales.resize(N * G);
        for (size_t i = 0; i < o->scales.size(); ++i) {
          o->scales[i] = FloatToHalf(0.01f + 1e-5f * float(i % 97));
          o->scales[i].bits &= 0xfff8;
        }
      }
      TensorView& tv = o->view;
      tv.dtype = fmt == 0 ? DType::kF16 : fmt == 1 ? DType::kI8 : DType::kI4;
      tv.ndim = 2;
      tv.shape[0] = N;
      tv.shape[1] = K;
      tv.data = o->q;
      if (fmt) {
        tv.scales = o->scales.data();
        tv.group_size = groups[v];
      }
      ours.push_back(o);
      const size_t counted = bytes + o->scales.size() * 2;
      vs.push_back({names[v],
                    o->q,
                    counted,
                    [&kern, o, &x, &out, &scratch] {
                      kern.linear(x.data(), 1, o->view, nullptr, out.data(), scratch.data());
                    },
                    {},
                    {}});
    }
    // ---- ggml: F16, Q8_0, Q4_0, Q4_K (plain and repacked) ----
    struct G {
      ggml_context* wctx;
      ggml_backend_buffer_t wbuf;
      ggml_context* cctx;
      ggml_cgraph* gf;
      ggml_gallocr_t galloc;
      ggml_tensor* w;
    };
    std::vector<float> xf(K);
    for (int64_t i = 0; i < K; ++i) xf[i] = HalfToFloat(x[i]);
    struct GV {
      ggml_type type;
      bool repacked;
      const char* name;
    };
    std::vector<GV> gvs = {
        {GGML_TYPE_F16, false, "ggml F16"},   {GGML_TYPE_Q8_0, false, "ggml Q8_0"},
        {GGML_TYPE_Q4_0, false, "ggml Q4_0"}, {GGML_TYPE_Q4_0, true, "ggml Q4_0 repack"},
        {GGML_TYPE_Q4_K, false, "ggml Q4_K"}, {GGML_TYPE_Q4_K, true, "ggml Q4_K repack"}};
    std::vector<float> rows(64 * K);
    for (const GV& gv : gvs) {
      if (gv.repacked && !repack) continue;
      auto* g = new G;
      ggml_init_params ip = {ggml_tensor_overhead() * 4, nullptr, true};
      g->wctx = ggml_init(ip);
      g->w = ggml_new_tensor_2d(g->wctx, gv.type, K, N);
      g->wbuf = ggml_backend_alloc_ctx_tensors_from_buft(
          g->wctx, gv.repacked ? repack : ggml_backend_cpu_buffer_type());
      const size_t row_bytes = ggml_row_size(gv.type, K);
      std::vector<uint8_t> qrows(row_bytes * 64);
      std::vector<uint8_t> all(gv.repacked ? row_bytes * N : 0);
      for (int64_t n0 = 0; n0 < N; n0 += 64) {
        const int64_t nr = std::min<int64_t>(64, N - n0);
        for (int64_t i = 0; i < nr * K; ++i)
          rows[i] = float(int64_t(Next() % 20001) - 10000) / 10000.f;
        if (gv.type == GGML_TYPE_F16) {
          for (int64_t i = 0; i < nr * K; ++i)
            reinterpret_cast<ggml_fp16_t*>(qrows.data())[i] = ggml_fp32_to_fp16(rows[i]);
        } else {
          ggml_quantize_chunk(gv.type, rows.data(), qrows.data(), 0, nr, K, nullptr);
        }
        if (gv.repacked) {
          std::memcpy(all.data() + n0 * row_bytes, qrows.data(), nr * row_bytes);
        } else {
          ggml_backend_tensor_set(g->w, qrows.data(), n0 * row_bytes, nr * row_bytes);
        }
      }
      if (gv.repacked) ggml_backend_tensor_set(g->w, all.data(), 0, all.size());
      ggml_init_params cp = {ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
      g->cctx = ggml_init(cp);
      ggml_tensor* xt = ggml_new_tensor_2d(g->cctx, GGML_TYPE_F32, K, 1);
      ggml_set_input(xt);
      ggml_tensor* y = ggml_mul_mat(g->cctx, g->w, xt);
      ggml_set_output(y);
      g->gf = ggml_new_graph(g->cctx);
      ggml_build_forward_expand(g->gf, y);
      g->galloc = ggml_gallocr_new(ggml_backend_cpu_buffer_type());
      if (!ggml_gallocr_alloc_graph(g->galloc, g->gf)) {
        std::fprintf(stderr, "gallocr failed\n");
        return 1;
      }
      ggml_backend_tensor_set(xt, xf.data(), 0, K * sizeof(float));
      vs.push_back({gv.name,
                    static_cast<const uint8_t*>(g->w->data),
                    ggml_nbytes(g->w),
                    [backend, g] { ggml_backend_graph_compute(backend, g->gf); },
                    {},
                    {}});
    }
    for (auto& v : vs) v.call();  // warm-up (first-call work, pages faulted in)
    if (cache) {
      std::printf("[%lld, %lld], in cache, %d threads, %d calls each\n", (long long)N, (long long)K,
                  threads, rounds);
      for (auto& v : vs) {
        std::vector<double> t;
        for (int i = 0; i < 3; ++i) v.call();
        for (int i = 0; i < rounds; ++i) {
          const double t0 = Now();
          v.call();
          t.push_back(Now() - t0);
        }
        std::sort(t.begin(), t.end());
        const double w = double(N) * double(K);
        std::printf(
            "CACHE [%lld,%lld] %-20s threads %d  median %8.1f us %7.2f G weights/s "
            "(%6.2f GB/s)  fastest %7.2f G weights/s  bytes/weight %.4f\n",
            (long long)N, (long long)K, v.name.c_str(), threads, t[t.size() / 2] * 1e6,
            w / t[t.size() / 2] / 1e9, v.bytes / t[t.size() / 2] / 1e9, w / t[0] / 1e9,
            double(v.bytes) / w);
      }
      std::fflush(stdout);
      continue;
    }
    // From memory: each round a probe pass (the faster of two reads of a fixed 1 GiB buffer by
    // every thread), then every variant once, in turn; rounds binned by their probe.
    static uint8_t* probe = nullptr;
    const size_t probe_bytes = size_t(1) << 30;
    if (!probe) {
      probe = static_cast<uint8_t*>(std::aligned_alloc(4096, probe_bytes));
      for (size_t i = 0; i < probe_bytes; i += 8) {
        const uint64_t r = Next();
        std::memcpy(probe + i, &r, 8);
      }
    }
    const char* secs_env = std::getenv("GGML_GEMV_SECONDS");
    const double deadline = Now() + (secs_env ? std::atof(secs_env) : 1e30);
    std::printf("[%lld, %lld], up to %d rounds\n", (long long)N, (long long)K, rounds);
    std::vector<double> probes;
    for (int r = 0; r < rounds && Now() < deadline; ++r) {
      usleep(5000);
      const double p =
          probe_bytes / std::min(ReadTime(probe, probe_bytes), ReadTime(probe, probe_bytes)) / 1e9;
      probes.push_back(p);
      std::printf("  round %3d probe %6.2f GB/s |", r, p);
      for (auto& v : vs) {
        usleep(3000);
        const double t0 = Now();
        v.call();
        const double tc = Now() - t0;
        v.gbps.push_back(v.bytes / tc / 1e9);
        v.pct.push_back(100.0 * v.bytes / tc / 1e9 / p);
        std::printf(" %s %.2f", v.name.c_str(), v.bytes / tc / 1e9);
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    const double edges[] = {0, 45, 55, 65, 75, 95, 115, 135, 155, 1000};
    for (int b = 0; b < 9; ++b) {
      std::vector<int> in;
      for (size_t r = 0; r < probes.size(); ++r)
        if (probes[r] >= edges[b] && probes[r] < edges[b + 1]) in.push_back(int(r));
      if (in.empty()) continue;
      for (auto& v : vs) {
        std::vector<double> g, pct;
        for (int r : in) {
          g.push_back(v.gbps[r]);
          pct.push_back(v.pct[r]);
        }
        std::sort(g.begin(), g.end());
        std::sort(pct.begin(), pct.end());
        std::printf(
            "SUMMARY [%lld,%lld] probe %3.0f-%-4.0f %-20s rounds %2zu  median %6.2f GB/s "
            "%7.2f G weights/s  %5.1f%% of probe (%5.1f-%5.1f)  bytes/weight %.4f\n",
            (long long)N, (long long)K, edges[b], edges[b + 1], v.name.c_str(), in.size(),
            g[g.size() / 2], g[g.size() / 2] * 1e9 / (double(v.bytes) / (N * K)) / 1e9,
            pct[pct.size() / 2], pct.front(), pct.back(), double(v.bytes) / (N * K));
      }
    }
    std::fflush(stdout);
  }
  return 0;
}
