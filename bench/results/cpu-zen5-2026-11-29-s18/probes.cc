// Two read methods on the same 2 GiB buffer, alternating, two pinned threads: bench-kernels'
// probe (8 interleaved streams per thread, AVX2 loads: ReadSum<> of bench/read_methods.h) and a
// plain read (one stream per thread, four zmm loads an iteration: the probe of offsets-gemv.cc and
// exp-memory.cc). Prints each method's median, best and worst GB/s.
//   g++ -O2 -march=native -std=c++20 -I. bench/results/cpu-zen5-2026-11-29-s18/probes.cc
//       -o probes -lpthread   (one line, from the repository root)
// Argument: rounds (default 20).
#include <immintrin.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "bench/read_methods.h"
#include "plain_read.h"
int main(int argc, char** argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 20;
  const size_t n = size_t(2) << 30;
  uint8_t* b = (uint8_t*)aligned_alloc(4096, n);
  memset(b, 1, n);
  const size_t per = n / 2;
  std::vector<double> r[2];
  for (int k = 0; k < rounds; ++k) {
    for (int i = 0; i < 2; ++i) {
      const int m = (k + i) % 2;
      auto f = [&](int t) { sink = m ? PlainRead(b + t * per, per) : ReadSum<>(b + t * per, per); };
      const double t0 = Now();
      std::thread th([&] {
        cpu_set_t s;
        CPU_ZERO(&s);
        CPU_SET(1, &s);
        pthread_setaffinity_np(pthread_self(), sizeof s, &s);
        f(1);
      });
      f(0);
      th.join();
      r[m].push_back(n / (Now() - t0) / 1e9);
    }
  }
  for (int m = 0; m < 2; ++m) {
    std::sort(r[m].begin(), r[m].end());
    printf("%-28s median %.1f GB/s, best %.1f, worst %.1f\n",
           m ? "plain (1 stream, zmm)" : "bench-kernels (8 streams)", r[m][r[m].size() / 2],
           r[m].back(), r[m].front());
  }
}
