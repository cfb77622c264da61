// int4-row GEMV, T = 1: three decoders in the same tile loop, on the same pages.
//  - "kernel": the AVX-512 kernel's step (a qword broadcast, a per-lane VPSRLVD, VPERMPS, FMA),
//    in the reference's 16-lane order: 3 vector µops a step of 16 weights.
//  - "offsets": per 64-byte block of a row, four loads at byte offsets 0..3 (three of them split
//    across two lines), each used for its low nibble and, after one VPSRLD by 4, its high nibble:
//    2.5 µops a step, in an order where lane i sums inputs 8i..8i+7 of each 128-input block (not
//    the reference's order: it would change every path's summation).
//  - "repacked": one aligned 64-byte load a block, its nibble 0 used, then VPSRLD by 4 for each
//    next step: 2.875 µops a step, for weights stored in a layout the files do not have (it runs
//    on the same bytes: only the rate means anything).
// Tiles of 8 rows; each block also prefetches the next tile's same line into L2. Two pinned
// threads, each its half of the rows. Each call is paired with a read of the same buffer just
// before it ("probe"), and the three variants take turns, the order rotating every round, so they
// compare on the same pages and under the same drift.
// With INCACHE=1 in the environment: one core, 64 rows (384 KiB, in L2) over and over instead.
// With PREFETCH_L1=1: the next tile's lines into L1 (PREFETCHT0) instead of L2, as the library's
// kernel does on AMD family 1Ah.
//   g++ -O2 -march=native -std=c++20 offsets-gemv.cc -o offsets-gemv -lpthread
// Arguments: rounds (default 30), N, K (default 36864 12288).
#include <immintrin.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "plain_read.h"

namespace {
int64_t N = 36864, K = 12288;
uint8_t* W;     // [N][K/2], low nibble = even input
float* tables;  // [N][16]
float* X;       // [K] natural order
float* Xp;      // [K] permuted for the kernel decoder
float* Y;       // [N]
alignas(64) int32_t kShift[16];
int kElem[16];
bool kL1 = false;  // PREFETCH_L1=1: the next tile into L1 (the kernel's default on this CPU)

// The kernel's lane order: lane L = 2m + p reads dword p of the broadcast qword, nibble m.
void InitLanes() {
  for (int L = 0; L < 16; ++L) {
    const int p = L & 1, m = L >> 1;
    kShift[L] = 4 * m;
    kElem[L] = 8 * p + m;  // dword p holds inputs 8p..8p+7, nibble m is input 8p+m
  }
}

template <int kMode>
void Rows(int64_t n0, int64_t n1) {
  const int64_t rb = K / 2;
  const __m512i shift = _mm512_load_si512(kShift);
  for (int64_t n = n0; n < n1; n += 8) {
    __m512 acc[8], tab[8];
    for (int r = 0; r < 8; ++r) {
      acc[r] = _mm512_setzero_ps();
      tab[r] = _mm512_loadu_ps(tables + (n + r) * 16);
    }
    const uint8_t* w = W + n * rb;
    const uint8_t* next = n + 16 <= n1 ? w + 8 * rb : w;
    for (int64_t b = 0; b < rb; b += 64) {
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) {
        if (kL1)
          _mm_prefetch((const char*)(next + r * rb + b), _MM_HINT_T0);
        else
          _mm_prefetch((const char*)(next + r * rb + b), _MM_HINT_T1);
      }
      if constexpr (kMode == 2) {
        __m512i v[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; ++r) v[r] = _mm512_load_si512(w + r * rb + b);
#pragma GCC unroll 8
        for (int st = 0; st < 8; ++st) {
          const __m512 xv = _mm512_load_ps(Xp + 2 * b + 16 * st);
#pragma GCC unroll 8
          for (int r = 0; r < 8; ++r) {
            acc[r] = _mm512_fmadd_ps(xv, _mm512_permutexvar_ps(v[r], tab[r]), acc[r]);
            v[r] = _mm512_srli_epi32(v[r], 4);
          }
        }
      } else if constexpr (kMode == 1) {
#pragma GCC unroll 4
        for (int o = 0; o < 4; ++o) {
          const __m512 x0 = _mm512_load_ps(Xp + 2 * b + 32 * o);
          const __m512 x1 = _mm512_load_ps(Xp + 2 * b + 32 * o + 16);
#pragma GCC unroll 8
          for (int r = 0; r < 8; ++r) {
            const __m512i v = _mm512_loadu_si512(w + r * rb + b + o);
            acc[r] = _mm512_fmadd_ps(x0, _mm512_permutexvar_ps(v, tab[r]), acc[r]);
            acc[r] =
                _mm512_fmadd_ps(x1, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tab[r]), acc[r]);
          }
        }
      } else {
#pragma GCC unroll 8
        for (int s = 0; s < 8; ++s) {
          const __m512 xv = _mm512_load_ps(Xp + 2 * b + 16 * s);
#pragma GCC unroll 8
          for (int r = 0; r < 8; ++r) {
            int64_t q;
            std::memcpy(&q, w + r * rb + b + 8 * s, 8);
            const __m512 wv =
                _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_set1_epi64(q), shift), tab[r]);
            acc[r] = _mm512_fmadd_ps(xv, wv, acc[r]);
          }
        }
      }
    }
    for (int r = 0; r < 8; ++r) Y[n + r] = _mm512_reduce_add_ps(acc[r]);
  }
}

// x in each decoder's lane order.
void PermuteX(bool offsets) {
  for (int64_t k0 = 0; k0 < K; k0 += 128) {
    for (int s = 0; s < 8; ++s) {
      for (int L = 0; L < 16; ++L) {
        // offsets: load o = s/2, lane L holds byte 4L + o of the block, nibble s%2:
        // input 2(4L + o) + s%2 = 8L + s.
        const int64_t src = offsets ? k0 + 8 * L + s : k0 + 16 * s + kElem[L];
        Xp[k0 + 16 * s + L] = X[src];
      }
    }
  }
}

float Probe(const uint8_t* p, size_t bytes, int64_t t, int threads) {
  const size_t share = bytes / threads;
  return PlainRead(p + t * share, share);
}

// Two pinned threads; run(t) on each, returns the wall time.
struct Pool {
  std::vector<std::thread> th;
  std::atomic<int> gen{0}, done{0};
  std::function<void(int)> job;
  bool stop = false;
  Pool() {
    th.emplace_back([this] {
      cpu_set_t s;
      CPU_ZERO(&s);
      CPU_SET(1, &s);
      pthread_setaffinity_np(pthread_self(), sizeof s, &s);
      int seen = 0;
      for (;;) {
        while (gen.load(std::memory_order_acquire) == seen) _mm_pause();
        seen = gen.load();
        if (stop) return;
        job(1);
        done.fetch_add(1, std::memory_order_release);
      }
    });
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(0, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
  }
  double Run(std::function<void(int)> f) {
    job = f;
    done = 0;
    const double t0 = Now();
    gen.fetch_add(1, std::memory_order_release);
    f(0);
    while (done.load(std::memory_order_acquire) < 1) _mm_pause();
    return Now() - t0;
  }
  ~Pool() {
    stop = true;
    gen.fetch_add(1);
    th[0].join();
  }
};
}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 30;
  if (argc > 3) N = std::atoll(argv[2]), K = std::atoll(argv[3]);
  InitLanes();
  kL1 = std::getenv("PREFETCH_L1") != nullptr;
  const size_t wbytes = size_t(N) * K / 2;
  W = (uint8_t*)std::aligned_alloc(64, wbytes + 64);
  tables = (float*)std::aligned_alloc(64, N * 16 * 4);
  X = (float*)std::aligned_alloc(64, K * 4);
  Xp = (float*)std::aligned_alloc(64, K * 4);
  Y = (float*)std::aligned_alloc(64, N * 4);
  uint64_t s = 88172645463325252ull;
  for (size_t i = 0; i < wbytes + 64; i += 8) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    std::memcpy(W + i, &s, std::min<size_t>(8, wbytes + 64 - i));
  }
  for (int64_t n = 0; n < N; ++n)
    for (int q = 0; q < 16; ++q) tables[n * 16 + q] = float(q - 8) * (0.001f + 1e-7f * n);
  for (int64_t k = 0; k < K; ++k) X[k] = std::sin(0.01 * k);

  // Check both against a scalar sum (orders differ: close, not equal).
  std::vector<float> ref(N), out[2];
  for (int64_t n = 0; n < N; n += 997) {
    double a = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int q = (W[n * (K / 2) + k / 2] >> (4 * (k & 1))) & 15;
      a += double(tables[n * 16 + q]) * X[k];
    }
    ref[n] = float(a);
  }
  if (std::getenv("INCACHE")) {  // one core, the first 64 rows over and over (in L2)
    for (int round = 0; round < 3; ++round) {
      for (int v = 0; v < 3; ++v) {
        PermuteX(v == 1);
        double best = 1e9;
        for (int run = 0; run < 7; ++run) {
          const double t0 = Now();
          for (int i = 0; i < 1000; ++i) {
            if (v == 0)
              Rows<0>(0, 64);
            else if (v == 1)
              Rows<1>(0, 64);
            else
              Rows<2>(0, 64);
          }
          best = std::min(best, Now() - t0);
        }
        std::printf("in cache %-8s %.1f G weights/s\n",
                    v == 0   ? "kernel"
                    : v == 1 ? "offsets"
                             : "repacked",
                    64.0 * K * 1000 / best / 1e9);
      }
    }
    return 0;
  }
  Pool pool;
  const int64_t half = (N / 16) * 8;
  const char* names[3] = {"kernel", "offsets", "repacked"};
  auto call = [&](int v) {
    return pool.Run([&](int t) {
      const int64_t a = t ? half : 0, e = t ? N : half;
      if (v == 0)
        Rows<0>(a, e);
      else if (v == 1)
        Rows<1>(a, e);
      else
        Rows<2>(a, e);
    });
  };
  for (int v = 0; v < 2; ++v) {
    PermuteX(v == 1);
    call(v);
    double worst = 0;
    for (int64_t n = 0; n < N; n += 997) {
      worst = std::max(worst, double(std::fabs(Y[n] - ref[n]) / (std::fabs(ref[n]) + 1e-3)));
    }
    std::printf("# %s: worst relative difference from a double sum %.2e\n", names[v], worst);
  }
  std::vector<double> pct[3], gbps[3], probe[3];
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < 3; ++i) {
      const int v = (r + i) % 3;  // the order rotates every round
      PermuteX(v == 1);
      const double tp = pool.Run([&](int t) { sink = Probe(W, wbytes, t, 2); });
      const double tg = call(v);
      pct[v].push_back(100 * tp / tg);
      gbps[v].push_back(wbytes / tg / 1e9);
      probe[v].push_back(wbytes / tp / 1e9);
    }
  }
  for (int v = 0; v < 3; ++v) {
    auto med = [](std::vector<double> x) {
      std::sort(x.begin(), x.end());
      return x[x.size() / 2];
    };
    std::printf(
        "%-8s [%lld,%lld] median %.1f GB/s, probe median %.1f GB/s, paired median %.1f%% "
        "(range %.1f-%.1f)\n",
        names[v], (long long)N, (long long)K, med(gbps[v]), med(probe[v]), med(pct[v]),
        *std::min_element(pct[v].begin(), pct[v].end()),
        *std::max_element(pct[v].begin(), pct[v].end()));
  }
  return 0;
}
