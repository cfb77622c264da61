// A fixed pool of worker threads and ParallelFor. Threads are created once; the decode loop
// only hands out index ranges (no allocation, no thread creation per op).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace glm {

class ThreadPool {
 public:
  // num_threads <= 0: one per hardware thread.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }  // the caller works too

  // Splits [0, n) into chunks of at least `grain` and calls fn(begin, end) on every thread,
  // the calling thread included; returns when all chunks are done. Not reentrant: fn must not
  // call ParallelFor on the same pool.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // 0 on the thread that called ParallelFor, 1..size()-1 on the workers: indexes per-thread
  // scratch that was allocated up front.
  static int CurrentThreadIndex();

  // The process-wide pool used by the CPU kernels.
  static ThreadPool& Global();

 private:
  void WorkerLoop(int index);
  void RunChunks();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one ParallelFor at a time (callers from several threads queue)
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 0;
  int64_t next_ = 0;      // next chunk start, guarded by mu_
  int pending_ = 0;       // workers still inside the current job
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace glm
