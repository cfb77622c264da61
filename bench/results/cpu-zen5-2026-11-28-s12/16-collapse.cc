// Time to put 4 GiB of anonymous memory on transparent huge pages: touched on 4 KiB pages,
// advised MADV_HUGEPAGE before the first touch, or touched on 4 KiB pages and then collapsed
// (MADV_COLLAPSE, Linux 6.1+). Twelfth session, ../cpu_kernels.md. Not part of the build.
#include <sys/mman.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
static double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static long AnonHugeMiB() {
  std::ifstream f("/proc/self/smaps_rollup");
  std::string k;
  long v;
  while (f >> k) {
    if (k == "AnonHugePages:") {
      f >> v;
      return v >> 10;
    }
  }
  return -1;
}
int main(int argc, char** argv) {
  const size_t n = size_t(argc > 1 ? atoi(argv[1]) : 4) << 30;
  for (int mode = 0; mode < 3; ++mode) {
    char* p = (char*)mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mode == 1) madvise(p, n, MADV_HUGEPAGE);
    double t0 = Now();
    memset(p, 1, n);
    double t1 = Now();
    int rc = 0, err = 0;
    if (mode == 2) {
      rc = madvise(p, n, MADV_COLLAPSE);
      err = errno;
    }
    double t2 = Now();
    printf("%s: touch %.2f s, collapse %.2f s (rc %d %s), AnonHugePages %ld MiB of %zu\n",
           mode == 0   ? "4 KiB"
           : mode == 1 ? "MADV_HUGEPAGE at fault"
                       : "4 KiB then MADV_COLLAPSE",
           t1 - t0, t2 - t1, rc, rc ? strerror(err) : "", AnonHugeMiB(), n >> 20);
    munmap(p, n);
  }
}
