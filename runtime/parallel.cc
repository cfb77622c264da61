// ThreadPool: a generation counter starts a job, per-thread shares of the range hand out chunks
// (taken by compare-exchange), an atomic count of pending workers ends it. Waiters spin about
// 50 µs (kernels of one decode step follow each other within microseconds) and then sleep on the
// futex behind std::atomic::wait.
#include "runtime/parallel.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "runtime/check.h"

namespace glm {

namespace {
thread_local int tls_thread_index = 0;
thread_local bool tls_in_job = false;

// A share's blocks [front, back), packed in one word (ThreadPool::Share).
constexpr uint64_t Pack(uint64_t front, uint64_t back) { return front << 32 | back; }
constexpr uint64_t Front(uint64_t w) { return w >> 32; }
constexpr uint64_t Back(uint64_t w) { return w & 0xffffffffu; }
constexpr int64_t kMaxBlocks = 0xffffffff;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins while pred() holds, for about kSpinIterations pauses; returns whether it still holds.
constexpr int kSpinIterations = 1 << 11;
template <typename Pred>
bool SpinWhile(Pred pred) {
  for (int i = 0; i < kSpinIterations; ++i) {
    if (!pred()) return false;
    CpuRelax();
  }
  return pred();
}
}  // namespace

int ThreadPool::CurrentThreadIndex() { return tls_thread_index; }

namespace {
std::atomic<ThreadPool::Chunking>& ChunkingSetting() {
  static std::atomic<ThreadPool::Chunking> c = [] {
    ThreadPool::Chunking v = ThreadPool::Chunking::kShares;
    if (const char* env = std::getenv("GLM_POOL_CHUNKS"); env != nullptr && *env != '\0') {
      GLM_CHECK_MSG(ThreadPool::ParseChunking(env, &v),
                    "GLM_POOL_CHUNKS=%s: expected shares or counter", env);
    }
    return v;
  }();
  return c;
}
}  // namespace

ThreadPool::Chunking ThreadPool::CurrentChunking() {
  return ChunkingSetting().load(std::memory_order_relaxed);
}
void ThreadPool::SetChunking(Chunking c) { ChunkingSetting().store(c, std::memory_order_relaxed); }
const char* ThreadPool::ChunkingName(Chunking c) {
  return c == Chunking::kShares ? "shares" : "counter";
}
bool ThreadPool::ParseChunking(const char* text, Chunking* c) {
  for (Chunking v : {Chunking::kShares, Chunking::kSharedCounter}) {
    if (std::string_view(text) == ChunkingName(v)) {
      *c = v;
      return true;
    }
  }
  return false;
}

ThreadPool::InlineScope::InlineScope() : saved_(tls_in_job) { tls_in_job = true; }
ThreadPool::InlineScope::~InlineScope() { tls_in_job = saved_; }

int ThreadPool::AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, int(std::thread::hardware_concurrency()));
}

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) {
    num_threads = AvailableCpus();
    if (const char* env = std::getenv("GLM_THREADS"); env != nullptr && *env != '\0') {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      GLM_CHECK_MSG(*end == '\0' && v >= 1 && v <= kMaxThreads,
                    "GLM_THREADS=%s: expected a thread count from 1 to %d", env, kMaxThreads);
      num_threads = int(v);
    }
  }
  CurrentChunking();  // a malformed GLM_POOL_CHUNKS stops here, whatever the thread count
  shares_ = std::make_unique<Share[]>(size_t(num_threads));
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

ThreadPool& ThreadPool::Global() {
  static ThreadPool pool;
  return pool;
}

// Each thread runs its own share front to back, in chunks of an eighth of what is left of it (at
// least one block), so consecutive chunks of a thread are consecutive rows: a decode kernel's
// prefetch of the next tile runs on into the next chunk. Against chunks from one shared counter
// (each an eighth of the whole remainder per thread, whose starts interleave between the threads
// and start the prefetch cold), the quantized decode GEMVs at the `medium` model's shapes
// (2-8 MiB) read 2-25% faster on a 2-vCPU Zen 5 (11-15% at [6144, 2048] with the host at
// 51 GB/s), and GLM-130B's shapes 0-7% (bench/results/cpu_kernels.md, eleventh session). A
// thread whose share is done takes the back half of the largest share left, so the threads still
// finish together when one of them is held up.
void ThreadPool::RunChunks(int self) {
  tls_in_job = true;
  if (chunking_ == Chunking::kShares) {
    RunShares(self);
  } else {
    RunSharedCounter();
  }
  tls_in_job = false;
}

void ThreadPool::RunShares(int self) {
  std::atomic<uint64_t>& own = shares_[self].blocks;
  do {
    uint64_t w = own.load(std::memory_order_relaxed);
    while (Front(w) < Back(w)) {
      const uint64_t f = Front(w), b = Back(w), len = std::max<uint64_t>(1, (b - f) / 8);
      if (!own.compare_exchange_weak(w, Pack(f + len, b), std::memory_order_relaxed)) continue;
      job_.call(job_.fn, int64_t(f) * grain_, std::min(int64_t(f + len) * grain_, n_));
      w = own.load(std::memory_order_relaxed);
    }
  } while (TakeHalfOfLargestShare(self));
}

// Moves the back half (the last block if one is left) of the largest other share into this
// thread's own, which is empty; false when every share is. A share's word always names exactly
// the blocks not yet taken, so a compare-exchange that succeeds on a value seen earlier is right.
bool ThreadPool::TakeHalfOfLargestShare(int self) {
  for (;;) {
    int victim = -1;
    uint64_t seen = 0, most = 0;
    for (int i = 0; i < size(); ++i) {
      if (i == self) continue;
      const uint64_t w = shares_[i].blocks.load(std::memory_order_relaxed);
      if (Back(w) > Front(w) && Back(w) - Front(w) > most) {
        victim = i, seen = w, most = Back(w) - Front(w);
      }
    }
    if (victim < 0) return false;
    const uint64_t take = (most + 1) / 2, back = Back(seen);
    if (shares_[victim].blocks.compare_exchange_weak(seen, Pack(Front(seen), back - take),
                                                     std::memory_order_relaxed)) {
      shares_[self].blocks.store(Pack(back - take, back), std::memory_order_relaxed);
      return true;
    }
  }
}

// Chunking::kSharedCounter: each chunk 1/(8·threads) of what is left (at least the grain), the
// first ones an eighth of a thread's share and the last ones small (the default before the shares;
// kept for measuring them against it).
void ThreadPool::RunSharedCounter() {
  const int64_t split = int64_t(size()) * 8;
  int64_t begin = next_.load(std::memory_order_relaxed);
  while (begin < n_) {
    const int64_t len = std::max(grain_, (n_ - begin) / split);
    if (!next_.compare_exchange_weak(begin, begin + len, std::memory_order_relaxed)) continue;
    job_.call(job_.fn, begin, std::min(begin + len, n_));
    begin = next_.load(std::memory_order_relaxed);
  }
}

void ThreadPool::WorkerLoop(int index) {
  tls_thread_index = index;
  uint32_t seen = 0;
  for (;;) {
    if (SpinWhile([&] { return generation_.load(std::memory_order_acquire) == seen; })) {
      generation_.wait(seen, std::memory_order_acquire);
      continue;  // re-check (wait may return spuriously)
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    RunChunks(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::Run(int64_t n, int64_t grain, Job job) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t threads = size();
  if (threads == 1 || n <= grain || tls_in_job) {
    job.call(job.fn, 0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  job_ = job;
  n_ = n;
  chunking_ = CurrentChunking();
  // Blocks of `grain` (of a multiple of it where the block numbers would not fit a share's word).
  grain_ = grain * (((n - 1) / grain) / kMaxBlocks + 1);
  if (chunking_ == Chunking::kShares) {
    const int64_t blocks = (n - 1) / grain_ + 1;
    for (int64_t i = 0; i < threads; ++i) {  // published by the generation's release below
      shares_[i].blocks.store(
          Pack(uint64_t(blocks * i / threads), uint64_t(blocks * (i + 1) / threads)),
          std::memory_order_relaxed);
    }
  } else {
    next_.store(0, std::memory_order_relaxed);
  }
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  RunChunks(0);
  for (;;) {
    int p = pending_.load(std::memory_order_acquire);
    if (p == 0) break;
    if (SpinWhile([&] { return pending_.load(std::memory_order_acquire) != 0; })) {
      p = pending_.load(std::memory_order_acquire);
      if (p != 0) pending_.wait(p, std::memory_order_acquire);
    }
  }
}

}  // namespace glm
