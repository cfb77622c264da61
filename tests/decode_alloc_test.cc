// The decode loop allocates no heap memory once warm (issue: CPU kernels, "no allocation in the
// decode loop"): this binary replaces malloc and its relatives with counting wrappers around
// glibc's own, and counts, on every thread, what the CPU engine's decode steps allocate after a
// prompt and two warm-up steps. Over the mapped model file in fp16, INT8 and INT4, and over the
// streaming store with layers read from disk at every step.
//
// Sanitizer builds replace malloc themselves: there the test skips.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "offload/model_file.h"
#include "offload/streaming_store.h"
#include "runtime/engine.h"
#include "runtime/parallel.h"
#include "tests/test_util.h"

#if defined(__has_feature)  // clang
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define GLM_SANITIZER_MALLOC 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || defined(GLM_SANITIZER_MALLOC)
#define GLM_COUNTS_ALLOCATIONS 0
#else
#define GLM_COUNTS_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_allocations{0};
inline void Count() {
  if (g_counting.load(std::memory_order_relaxed)) {
    g_allocations.fetch_add(1, std::memory_order_relaxed);
  }
}
}  // namespace

#if GLM_COUNTS_ALLOCATIONS
// glibc's allocator under its internal names; operator new and the C++ library reach it through
// malloc, so these see every heap allocation of the process.
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);

void* malloc(size_t n) {
  Count();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  Count();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  Count();
  return __libc_realloc(p, n);
}
void* memalign(size_t alignment, size_t n) {
  Count();
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
  Count();
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
  Count();
  void* p = __libc_memalign(alignment, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}
#endif

namespace glm {
namespace {

// Runs a prompt and `warm` decode steps, then counts the allocations of `steps` more decode steps.
// Each decode step feeds one token at the next position, as generation does.
StatusOr<int64_t> CountDecodeAllocations(WeightStore& store, int warm, int steps) {
  const ModelConfig& cfg = store.config();
  const SpecialTokens& t = cfg.tokens;
  const int64_t capacity = 64;
  const EngineShape shape{.caches = 1, .capacity = capacity, .max_tokens = 8, .max_logit_rows = 1};
  std::unique_ptr<ForwardEngine> engine = MakeCpuEngine(store, shape);
  std::vector<Half> logits(cfg.vocab);
  const std::vector<int32_t> prompt = {11, 12, 13, t.gmask, t.sop};
  const std::vector<int32_t> prompt_positions = {0, 1, 2, 3, 4};
  std::vector<EngineStep> step = {{.cache = 0,
                                   .ids = prompt,
                                   .positions = prompt_positions,
                                   .prefix_len = 4}};  // the context and [gMASK]
  RETURN_IF_ERROR(engine->Forward(step, logits.data()));
  int32_t id = 20, position = 5;
  step[0].ids = std::span<const int32_t>(&id, 1);
  step[0].positions = std::span<const int32_t>(&position, 1);
  for (int i = 0; i < warm; ++i, ++position) RETURN_IF_ERROR(engine->Forward(step, logits.data()));
  Status status = Status::Ok();
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < steps && status.ok(); ++i, ++position) {
    status = engine->Forward(step, logits.data());
    id = 20 + i % 7;
  }
  g_counting = false;
  RETURN_IF_ERROR(status);
  return g_allocations.load();
}

class DecodeAllocations : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GLM_COUNTS_ALLOCATIONS) GTEST_SKIP() << "a sanitizer build replaces malloc itself";
    // The scalar reference grows a per-thread row buffer on a thread's first chunk of work, which
    // with many threads may come after the warm-up steps: the SIMD paths are what decode runs.
    if (ActiveCpuPath() == CpuPath::kScalar) GTEST_SKIP() << "the scalar path is active";
  }
  test::TempDir dir_;
};

// The counter sees allocations, on the calling thread and on the kernel threads: otherwise a zero
// below would prove nothing.
TEST_F(DecodeAllocations, TheCounterSeesAllocations) {
  g_allocations = 0;
  g_counting = true;
  std::vector<int>* v = new std::vector<int>(100);
  std::atomic<int> seen{0};
  ThreadPool::Global().ParallelFor(ThreadPool::Global().size() * 4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      void* p = std::malloc(64);
      seen.fetch_add(p != nullptr);
      std::free(p);
    }
  });
  g_counting = false;
  delete v;
  EXPECT_GE(g_allocations.load(), 2 + seen.load());
}

TEST_F(DecodeAllocations, NoneInDecodeStepsOverTheMappedModel) {
  for (int bits : {16, 8, 4}) {
    const std::string path = dir_.File(StrFormat("tiny-%d.gguf", bits));
    ASSERT_TRUE(test::ConvertGoldenModel(path, bits).ok());
    auto store = MmapStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status().message();
    auto n = CountDecodeAllocations(**store, 2, 20);
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_EQ(*n, 0) << bits << "-bit weights: heap allocations in 20 decode steps";
  }
}

TEST_F(DecodeAllocations, NoneInDecodeStepsWhileStreamingLayers) {
  const std::string path = dir_.File("tiny-16.gguf");
  ASSERT_TRUE(test::ConvertGoldenModel(path, 16).ok());
  int layers = 0;
  {
    auto mapped = MmapStore::Open(path);
    ASSERT_TRUE(mapped.ok()) << mapped.status().message();
    layers = (*mapped)->config().num_layers;
  }
  StreamingOptions o;
  o.resident.assign(size_t(layers), false);
  o.resident[0] = true;  // one layer kept, the others read at every step
  o.staging_slots = 2;
  auto store = StreamingStore::Open(path, o);
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto n = CountDecodeAllocations(**store, 2, 20);
  ASSERT_TRUE(n.ok()) << n.status().message();
  EXPECT_EQ(*n, 0) << "heap allocations in 20 decode steps, " << layers - 1 << " layers streamed";
}

}  // namespace
}  // namespace glm
