// libFuzzer target: arbitrary bytes as a GGUF file must yield a Status, never a crash or a
// huge allocation. Seeds: tests/fuzz/corpus_gguf (written by gguf_test's GgufSeeds test).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "offload/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An in-memory file keeps the fuzzer off the disk; GgufFile opens it by its /proc path.
  const int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
  if (fd < 0) return 0;
  size_t done = 0;
  while (done < size) {
    const ssize_t w = write(fd, data + done, size - done);
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  auto f = glm::GgufFile::Open("/proc/self/fd/" + std::to_string(fd));
  if (f.ok()) {
    const glm::GgufFile& g = **f;
    size_t sink = 0;
    for (const auto& [key, value] : g.metadata()) {
      sink += value.ToString().size() + value.TypeName().size() + value.ArraySize();
      sink += g.GetUInt(key).ok() + g.GetInt(key).ok() + g.GetFloat(key).ok();
      sink += g.GetString(key).ok() + g.GetArrayUInt(key).ok();
      sink += g.Find(key) != nullptr;
    }
    for (const auto& t : g.tensors()) {
      sink += g.FindTensor(t.name) == &t;
      sink += glm::GgmlTypeSize(t.type) + t.shape.size();
    }
    for (size_t i = 0; i < g.extents().size(); ++i) {
      sink += g.TensorsInExtent(static_cast<int>(i)).size();
    }
    (void)g.VerifyAll([&](uint64_t d, uint64_t t) { sink += d <= t; });
    (void)g.VerifyExtent(static_cast<int>(g.extents().size()));  // out of range: an error
    if (sink == 0xdeadbeef) __builtin_trap();                    // keeps the work observable
  }
  close(fd);
  return 0;
}
