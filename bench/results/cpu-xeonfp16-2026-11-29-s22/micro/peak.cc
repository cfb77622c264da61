#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
template <int C>
__attribute__((noinline)) float chains(long iters) {
  __m512 a[C];
  for (int i = 0; i < C; ++i) a[i] = _mm512_set1_ps(1.f + i);
  const __m512 m = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-4f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 32
    for (int i = 0; i < C; ++i) a[i] = _mm512_fmadd_ps(a[i], m, b);
  }
  __m512 s = a[0];
  for (int i = 1; i < C; ++i) s = _mm512_add_ps(s, a[i]);
  return _mm512_reduce_add_ps(s);
}
template <int C>
void run(long iters, int reps) {
  double best = 1e30, sum = 0;
  float sink = 0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    sink += chains<C>(iters);
    double ns =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ns);
    sum += ns;
  }
  double fmas = double(iters) * C;
  printf(
      "chains %2d, %9ld FMAs per run: best %.3f ns/FMA (%.0f GFLOP/s), mean %.3f ns/FMA (%.0f "
      "GFLOP/s)  %g\n",
      C, (long)fmas, best / fmas, 32 / (best / fmas), sum / reps / fmas, 32 / (sum / reps / fmas),
      sink);
}
int main() {
  run<10>(100, 300);
  run<10>(1000, 300);
  run<10>(100000, 30);
  run<10>(10000000, 5);
  run<24>(10000000 / 24 * 10, 5);
}
