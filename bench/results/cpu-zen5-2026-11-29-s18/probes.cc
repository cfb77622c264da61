// Two read methods on the same 2 GiB buffer, alternating, two pinned threads: bench-kernels'
// probe (8 interleaved streams per thread, AVX2 loads; ReadSum<> of bench_kernels.cc, rewritten
// here) and a plain read (one stream per thread, four zmm loads an iteration: the probe of
// offsets-gemv.cc and exp-memory.cc). Prints each method's median, best and worst GB/s.
//   g++ -O2 -march=native -std=c++20 probes.cc -o probes -lpthread
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
namespace {
double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
volatile float sink;
float Streams8(const uint8_t* p, size_t n) {
  constexpr int kStreams = 8;
  const size_t per = n / kStreams / 64 * 64;
  __m256 acc[kStreams];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (size_t i = 0; i < per; i += 64) {
    for (int s = 0; s < kStreams; ++s) {
      const float* q = reinterpret_cast<const float*>(p + s * per + i);
      acc[s] = _mm256_add_ps(acc[s], _mm256_add_ps(_mm256_load_ps(q), _mm256_load_ps(q + 8)));
    }
  }
  __m256 t = acc[0];
  for (int s = 1; s < kStreams; ++s) t = _mm256_add_ps(t, acc[s]);
  float out[8];
  _mm256_storeu_ps(out, t);
  return out[0] + out[7];
}
float Plain(const uint8_t* p, size_t n) {
  const __m512i* v = (const __m512i*)p;
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 4 <= n / 64; i += 4) {
    a0 = _mm512_add_epi32(a0, _mm512_load_si512(v + i));
    a1 = _mm512_add_epi32(a1, _mm512_load_si512(v + i + 1));
    a2 = _mm512_add_epi32(a2, _mm512_load_si512(v + i + 2));
    a3 = _mm512_add_epi32(a3, _mm512_load_si512(v + i + 3));
  }
  return float(_mm512_reduce_add_epi32(
      _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3))));
}
}  // namespace
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
      auto f = [&](int t) { sink = m ? Plain(b + t * per, per) : Streams8(b + t * per, per); };
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
