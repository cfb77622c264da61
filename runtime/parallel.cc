// ThreadPool: a generation counter starts a job, an atomic counter hands out chunks, an atomic
// count of pending workers ends it. Waiters spin about 50 µs (kernels of one decode step follow
// each other within microseconds) and then sleep on the futex behind std::atomic::wait.
#include "runtime/parallel.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>

#include "runtime/check.h"

namespace glm {

namespace {
thread_local int tls_thread_index = 0;
thread_local bool tls_in_job = false;

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

// Guided chunks: each takes 1/(8·threads) of what is left (at least the grain), so the first
// ones are an eighth of a thread's share (balance against uneven rows and a core taken by another
// process) and the last ones are small: the threads finish together. Against fixed eighths it
// cut the threads' idle time at the end of a decode GEMV from 2.7-4.5% to 1.0-1.3% on two
// threads; with more threads the fixed tail grows (bench/results/cpu_kernels.md).
void ThreadPool::RunChunks() {
  tls_in_job = true;
  const int64_t split = int64_t(size()) * 8;
  int64_t begin = next_.load(std::memory_order_relaxed);
  while (begin < n_) {
    const int64_t len = std::max(grain_, (n_ - begin) / split);
    if (!next_.compare_exchange_weak(begin, begin + len, std::memory_order_relaxed)) continue;
    job_.call(job_.fn, begin, std::min(begin + len, n_));
    begin = next_.load(std::memory_order_relaxed);
  }
  tls_in_job = false;
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
    RunChunks();
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
  grain_ = grain;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  RunChunks();
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
