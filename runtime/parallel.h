// A fixed pool of worker threads and ParallelFor. Threads are created once; a call hands out
// index ranges through one atomic counter and wakes the workers through one atomic generation
// word (spin briefly, then futex), so the decode loop neither allocates nor takes locks per
// chunk. The callable is passed by reference (no std::function, which may allocate).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace glm {

class ThreadPool {
 public:
  // num_threads <= 0: GLM_THREADS if set (1 to kMaxThreads; anything else is a fatal error naming
  // it), else the CPUs this process may run on.
  static constexpr int kMaxThreads = 4096;
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }  // the caller works too

  // Splits [0, n) into chunks of at least `grain` (shrinking as the work runs out) and calls
  // fn(begin, end) on every thread, the calling thread included; returns when all chunks are
  // done. A call from inside fn (any pool) runs fn(0, n) on the calling thread.
  template <typename Fn>
  void ParallelFor(int64_t n, int64_t grain, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    Run(n, grain,
        Job{const_cast<void*>(static_cast<const void*>(&fn)),
            [](void* f, int64_t b, int64_t e) { (*static_cast<F*>(f))(b, e); }});
  }

  // 0 on the thread that called ParallelFor, 1..size()-1 on the workers: indexes per-thread
  // scratch that was allocated up front.
  static int CurrentThreadIndex();

  // The process-wide pool used by the CPU kernels.
  static ThreadPool& Global();

  // While alive, every ParallelFor called on this thread runs inline: the kernels use one core
  // (single-core measurements; callers that must not wake the workers).
  class InlineScope {
   public:
    InlineScope();
    ~InlineScope();
    InlineScope(const InlineScope&) = delete;
    InlineScope& operator=(const InlineScope&) = delete;

   private:
    bool saved_;
  };

  // CPUs this process may run on (sched_getaffinity), at least 1.
  static int AvailableCpus();

 private:
  struct Job {
    void* fn = nullptr;
    void (*call)(void*, int64_t, int64_t) = nullptr;
  };
  void Run(int64_t n, int64_t grain, Job job);
  void WorkerLoop(int index);
  void RunChunks();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one ParallelFor at a time (callers from several threads queue)
  Job job_;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<int64_t> next_{0};         // next chunk start
  std::atomic<int> pending_{0};          // workers still inside the current job
  std::atomic<uint32_t> generation_{0};  // bumped to start a job
  std::atomic<bool> stop_{false};
};

}  // namespace glm
