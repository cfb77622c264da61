// A fixed pool of worker threads and ParallelFor. Threads are created once; a call gives each
// thread an equal share of the index range, which it runs front to back in chunks, and a thread
// whose share is done takes the back half of the largest share left (one atomic word per share;
// Chunking below).
// Workers are woken through one atomic generation word (spin briefly, then futex), so the decode
// loop neither allocates nor takes locks per chunk. The callable is passed by reference (no
// std::function, which may allocate).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
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

  // Calls fn(begin, end) over chunks covering [0, n) once, on every thread, the calling thread
  // included; returns when all chunks are done. Every chunk but the one ending at n holds at
  // least `grain` indices. By default (Chunking::kShares) chunk bounds are multiples of `grain`
  // (or n), and a thread's chunks follow each other through its share (a decode kernel's prefetch
  // of the next rows runs on into its next chunk), shrinking to the grain as the share runs out.
  // A call from inside fn (any pool) runs fn(0, n) on the calling thread.
  template <typename Fn>
  void ParallelFor(int64_t n, int64_t grain, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    Run(n, grain,
        Job{const_cast<void*>(static_cast<const void*>(&fn)),
            [](void* f, int64_t b, int64_t e) { (*static_cast<F*>(f))(b, e); }});
  }

  // How a call's range is cut into chunks, for every pool: kShares (the default) as above;
  // kSharedCounter, the chunks of one counter shared by all threads, each 1/(8·threads) of what is
  // left (at least the grain), so a thread's chunks interleave with the others'. For measuring
  // (bench-kernels --ab): GLM_POOL_CHUNKS=shares|counter sets it at start (anything else is a
  // fatal error naming the variable), SetChunking between calls.
  enum class Chunking { kShares, kSharedCounter };
  static Chunking CurrentChunking();
  static void SetChunking(Chunking c);
  // "shares" or "counter" (GLM_POOL_CHUNKS's values); false for anything else.
  static bool ParseChunking(const char* text, Chunking* c);
  static const char* ChunkingName(Chunking c);

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
  // A share: blocks [front, back) of `grain` indices, packed front << 32 | back. Its thread takes
  // chunks from the front, others take halves from the back, each by a compare-exchange.
  struct alignas(64) Share {
    std::atomic<uint64_t> blocks{0};
  };
  void Run(int64_t n, int64_t grain, Job job);
  void WorkerLoop(int index);
  void RunChunks(int self);  // the current call's chunks on thread `self`, by chunking_
  void RunShares(int self);
  bool TakeHalfOfLargestShare(int self);
  void RunSharedCounter();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one ParallelFor at a time (callers from several threads queue)
  Job job_;
  int64_t n_ = 0, grain_ = 1;
  Chunking chunking_ = Chunking::kShares;  // the current call's
  std::unique_ptr<Share[]> shares_;        // kShares: one per thread, index CurrentThreadIndex()
  std::atomic<int64_t> next_{0};           // kSharedCounter: the next chunk's start
  std::atomic<int> pending_{0};          // workers still inside the current job
  std::atomic<uint32_t> generation_{0};  // bumped to start a job
  std::atomic<bool> stop_{false};
};

}  // namespace glm
