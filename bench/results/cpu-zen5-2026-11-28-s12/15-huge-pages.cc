// The int4 or int8 [36864, 12288] GEMV (argument: int4, int8) on weights on 4 KiB pages and on
// transparent huge pages, each back to back and right after a 2 GiB read by two other threads,
// the four cases alternated in one process. Twelfth session, ../cpu_kernels.md. Not part of the
// build; links libglmstream.a.
#include <immintrin.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "runtime/tensor.h"
using namespace glm;
static double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static long AnonHugeKb() {
  std::ifstream f("/proc/self/smaps_rollup");
  std::string k;
  long v;
  while (f >> k) {
    if (k == "AnonHugePages:") {
      f >> v;
      return v;
    }
  }
  return -1;
}
int main(int argc, char** argv) {
  const int64_t N = 36864, K = 12288;
  const bool int4 = !(argc > 1 && std::strcmp(argv[1], "int8") == 0);
  const int64_t rb = int4 ? K / 2 : K;
  const size_t bytes = size_t(N * rb), mapped = (bytes + (2u << 20) - 1) & ~size_t((2u << 20) - 1);
  int8_t* q[2];
  std::mt19937 rng(1);
  for (int h = 0; h < 2; ++h) {
    void* p = mmap(nullptr, mapped + (2u << 20), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int8_t* a = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(p) + (2u << 20) - 1) &
                                          ~uintptr_t((2u << 20) - 1));
    madvise(a, mapped, h ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    for (size_t i = 0; i < bytes; ++i) a[i] = int8_t(rng());
    q[h] = a;
  }
  std::printf("AnonHugePages %ld kB (weights %zu MB each)\n", AnonHugeKb(), bytes >> 20);
  std::vector<Half> sc(N, Half{0x2000}), x(K), out(N);
  for (auto& h : x) h = Half{uint16_t(0x3000 + rng() % 0x800)};
  std::vector<float> scratch(K);
  TensorView w[2];
  for (int h = 0; h < 2; ++h) {
    w[h].dtype = int4 ? DType::kI4 : DType::kI8;
    w[h].ndim = 2;
    w[h].shape[0] = N;
    w[h].shape[1] = K;
    w[h].data = q[h];
    w[h].scales = sc.data();
  }
  const size_t big = size_t(2) << 30;
  char* buf = static_cast<char*>(std::aligned_alloc(64, big));
  std::memset(buf, 1, big);
  auto probe = [&] {
    std::thread t[2];
    for (int i = 0; i < 2; ++i)
      t[i] = std::thread([&, i] {
        __m512i acc = _mm512_setzero_si512();
        const char* p = buf + i * (big / 2);
        for (size_t o = 0; o < big / 2; o += 64)
          acc = _mm512_xor_si512(acc, _mm512_load_si512(p + o));
        volatile long s = _mm512_reduce_add_epi64(acc);
        (void)s;
      });
    for (auto& th : t) th.join();
  };
  auto call = [&](int h) { Linear(x.data(), 1, w[h], nullptr, out.data(), scratch.data()); };
  for (int i = 0; i < 10; ++i) {
    call(0);
    call(1);
  }
  const char* names[] = {"4 KiB pages, back to back", "4 KiB pages, after the read",
                         "huge pages, back to back", "huge pages, after the read"};
  std::vector<double> t[4];
  for (int r = 0; r < 40; ++r) {
    for (int m0 = 0; m0 < 4; ++m0) {
      const int m = (m0 + r) % 4, h = m / 2;
      call(h);
      if (m % 2) probe();
      const double t0 = Now();
      call(h);
      t[m].push_back(Now() - t0);
    }
  }
  for (int m = 0; m < 4; ++m) {
    std::sort(t[m].begin(), t[m].end());
    const double med = t[m][t[m].size() / 2];
    std::printf("%-30s median %.3f ms  %.1f GB/s  (p25 %.3f, p75 %.3f)\n", names[m], med * 1e3,
                bytes / med / 1e9, t[m][t[m].size() / 4] * 1e3, t[m][3 * t[m].size() / 4] * 1e3);
  }
}
