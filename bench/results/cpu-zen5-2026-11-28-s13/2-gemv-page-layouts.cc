// Which way of filling 4 KiB-page weights reads slower in the int4/int8 GEMV.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
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
#include "offload/file_reader.h"
#include "offload/host_buffer.h"
using namespace glm;
static double Now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  const int64_t N = 36864, K = 12288;
  const bool int4 = !(argc > 1 && std::strcmp(argv[1], "int8") == 0);
  const size_t bytes = size_t(N * (int4 ? K / 2 : K));
  const size_t mapped = (bytes + (2u << 20) - 1) & ~size_t((2u << 20) - 1);
  std::vector<int8_t> src(bytes);
  std::mt19937 rng(1);
  for (auto& b : src) b = int8_t(rng());
  {  // the file variant D reads
    FILE* f = std::fopen("/work/hpm/w.bin", "wb"); std::fwrite(src.data(), 1, bytes, f); std::fclose(f);
  }
  const char* names[] = {"A 4K, memcpy by one thread", "B 4K, O_DIRECT read", "C huge, memcpy",
                         "D 4K, memcpy by two threads interleaved 1 MiB", "E 4K, memcpy backwards", "F plain mmap no advice, memcpy", "G HostBuffer + FileReader::ReadAll (io_uring)", "H HostBuffer + ReadAll, 256 MiB file offset"};
  const int V = 8;
  int8_t* q[V];
  std::vector<HostBuffer> keep;
  for (int h = 0; h < V; ++h) {
    if (h >= 6) {
      keep.push_back(std::move(HostBuffer::Allocate(bytes + (h == 7 ? (256u << 20) : 0), nullptr, "g").value()));
      auto rd = FileReader::Open("/work/hpm/w.bin", ReaderOptions{}).value();
      char* dst = keep.back().data() + (h == 7 ? (256u << 20) : 0);
      ReadRequest rq{.offset = 0, .bytes = (bytes + 4095) & ~size_t(4095), .dst = dst};
      GLM_CHECK(rd->ReadAll(std::span(&rq, 1)).ok());
      q[h] = reinterpret_cast<int8_t*>(dst);
      continue;
    }
    void* p = mmap(nullptr, mapped + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int8_t* a = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(p) + (2u << 20) - 1) & ~uintptr_t((2u << 20) - 1));
    if (h == 5) a = static_cast<int8_t*>(p) + 4096;
    else madvise(a, mapped, h == 2 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    if (h == 5) std::memcpy(a, src.data(), bytes);
    if (h == 0 || h == 2) std::memcpy(a, src.data(), bytes);
    if (h == 1) {
      int fd = open("/work/hpm/w.bin", O_RDONLY | O_DIRECT);
      for (size_t o = 0; o < bytes; o += (4u << 20)) {
        size_t n = std::min<size_t>(4u << 20, bytes - o); n = (n + 4095) & ~size_t(4095);
        if (pread(fd, a + o, n, o) < 0) { perror("pread"); return 1; }
      }
      close(fd);
    }
    if (h == 3) {
      std::thread t[2];
      for (int i = 0; i < 2; ++i) t[i] = std::thread([&, i] {
        for (size_t o = size_t(i) << 20; o < bytes; o += 2u << 20) std::memcpy(a + o, src.data() + o, std::min<size_t>(1u << 20, bytes - o));
      });
      for (auto& th : t) th.join();
    }
    if (h == 4) for (size_t o = bytes; o > 0;) { size_t n = std::min<size_t>(4096, o); o -= n; std::memcpy(a + o, src.data() + o, n); }
    q[h] = a;
  }
  std::vector<Half> sc(N, Half{0x2000}), x(K), out(N);
  for (auto& h : x) h = Half{uint16_t(0x3000 + rng() % 0x800)};
  std::vector<float> scratch(K);
  TensorView w[V];
  for (int h = 0; h < V; ++h) {
    w[h].dtype = int4 ? DType::kI4 : DType::kI8; w[h].ndim = 2; w[h].shape[0] = N; w[h].shape[1] = K;
    w[h].data = q[h]; w[h].scales = sc.data();
  }
  auto call = [&](int h) { Linear(x.data(), 1, w[h], nullptr, out.data(), scratch.data()); };
  for (int i = 0; i < 10; ++i) for (int h = 0; h < V; ++h) call(h);
  std::vector<double> t[V];
  for (int r = 0; r < 40; ++r) for (int m0 = 0; m0 < V; ++m0) {
    const int m = (m0 + r) % V; const double t0 = Now(); call(m); t[m].push_back(Now() - t0);
  }
  for (int m = 0; m < V; ++m) {
    std::sort(t[m].begin(), t[m].end());
    const double med = t[m][t[m].size() / 2];
    std::printf("%-46s median %.3f ms  %.1f GB/s  (p25 %.3f, p75 %.3f)\n", names[m], med * 1e3, bytes / med / 1e9, t[m][t[m].size() / 4] * 1e3, t[m][3 * t[m].size() / 4] * 1e3);
  }
}
