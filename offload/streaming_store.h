// StreamingStore: the host tier. Serves the forward loop's Acquire/Release from host RAM under a
// byte budget: the model-level tensors and the planner's resident layers are read once at Open;
// every other layer is read from the file for every forward step into one of a few staging
// slots, `prefetch_depth` streamed layers ahead of the one in use, by an I/O thread that keeps a
// FileReader (io_uring + O_DIRECT) queue full. The forward loop does not change.
//
// Threads: the caller's (Acquire/Release, compute) and one I/O thread that owns the reader.
// They share the slot table under one mutex. Slot states, checked on every transition:
//   kFree -> kReading (issued; the I/O thread reads into it) -> kReady (read done or failed)
//   -> kInUse (between Acquire and Release) -> kFree.
// Schedule: streamed layers are read in a cycle (layer order, wrapping into the next step, so
// the first layers of step t+1 are read while step t finishes) into a ring of staging slots:
// every free slot receives the next read at once (at Open and on Release), so while one layer is
// computed the other slots' reads are in flight (prefetch depth = slots - 1), the reader always
// has the next read queued behind the current one, and even a single slot is refilled while
// resident layers and the logits compute. With `on_demand` a read is issued by the Acquire that
// needs it (no prefetch: the baseline loop).
// An Acquire out of cycle order (a new step started early after an error, a test) drains the
// reads in flight, drops the read-ahead and restarts the cycle at the layer asked for.
//
// Errors: a failed read (EIO, the file changed) is returned by the Acquire of its layer with
// file and offset, and every later Acquire returns it too (the store is unusable afterwards).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "offload/file_reader.h"
#include "offload/gguf.h"
#include "offload/host_buffer.h"
#include "runtime/weights.h"

namespace glm {

// The byte footprint of a model file in host memory, for the planner.
struct HostFootprint {
  ModelConfig cfg;
  uint64_t globals_bytes = 0;         // model-level extent, as read (4 KiB-aligned superset)
  std::vector<uint64_t> layer_bytes;  // [L] each layer's extent, as read
  uint64_t file_bytes = 0;
  std::string weight_type;  // glmstream.weight_type: f16, int8, int4
};
StatusOr<HostFootprint> ReadHostFootprint(const GgufFile& f);

// The O_DIRECT read covering extent `e`: the 4 KiB-aligned superset of its bytes. Our writer
// aligns the data section and every extent to 4 KiB (lead 0); other files are read with `lead`
// bytes before the extent and padding after.
struct AlignedExtent {
  uint64_t offset = 0;  // absolute, aligned
  uint64_t bytes = 0;   // aligned
  uint64_t lead = 0;    // the extent's first byte is at offset + lead
};
AlignedExtent AlignExtent(const GgufFile& f, int e);

struct StreamingOptions {
  ReaderOptions reader = {};
  uint64_t budget_bytes = 0;      // MemoryAccount budget for every allocation below (0: unlimited)
  std::vector<bool> resident;     // [L] layers read once and kept (the planner's choice)
  int staging_slots = 2;          // >= 1 when any layer is streamed
  int prefetch_depth = 1;         // informational (slots - 1): reads in flight while one computes
  bool on_demand = false;         // a read starts only when Acquire asks (no prefetch: baseline)
  bool verify_checksums = false;  // XXH64 of every extent read, on the I/O thread
  bool verbose = false;           // log every allocation at Open
  // The globals and resident layers on transparent huge pages (HostBuffer::Allocate's
  // huge_pages, advised before the load reads into them). The CPU's GEMVs read weights on 2 MiB
  // pages faster than on 4 KiB ones (bench/results/cpu_kernels.md). Staging slots always ask.
  bool huge_pages = false;
  // Called at Open as the globals and each resident layer land: bytes read so far, and of all
  // (progress for loads of many GB). Not called when nothing is resident but the globals.
  std::function<void(uint64_t done, uint64_t total)> load_progress = nullptr;
};

struct LayerTiming {
  int64_t reads = 0;  // reads of this layer from the file
  int64_t acquires = 0;
  double read_s = 0;     // summed: start of its read (submitted, disk free) to completion
  double wait_s = 0;     // summed: time Acquire blocked for it
  double compute_s = 0;  // summed: Acquire returned to Release
};

struct StreamingStats {
  std::vector<LayerTiming> layers;  // [L]
  uint64_t bytes_read = 0;          // streamed reads since the last reset (not the Open load)
  int64_t resyncs = 0;              // out-of-order Acquires
  double open_load_s = 0;           // reading globals and resident layers at Open
  uint64_t open_load_bytes = 0;
  uint64_t open_huge_bytes = 0;  // the process's AnonHugePages grew by this much in that load
  ReaderStats reader;  // the reader's counters (cumulative)
};

class StreamingStore : public WeightStore {
 public:
  static StatusOr<std::unique_ptr<StreamingStore>> Open(const std::string& path,
                                                        const StreamingOptions& opts);
  ~StreamingStore() override;

  const ModelConfig& config() const override { return cfg_; }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> Acquire(int layer) override;
  void Release(int layer) override;

  StreamingStats stats() const;
  void ResetStats();
  // Blocks until every read issued so far has completed (the read-ahead into the next step
  // included), so that a measurement between steps has the disk to itself.
  void WaitForReads();
  const MemoryAccount& memory() const { return account_; }
  const GgufFile& file() const { return *file_; }
  // "io_uring, O_DIRECT, 1 MiB blocks, queue depth 16; 3 slots x 101 MiB, depth 2, 40 resident"
  std::string Describe() const;

 private:
  enum class SlotState { kFree, kReading, kReady, kInUse };
  struct Slot {
    HostBuffer buf;
    SlotState state = SlotState::kFree;
    int layer = -1;
    uint64_t seq = 0;      // issue order
    LayerWeights weights;  // views into buf; valid from kReady to Release
    Status status;         // the read's result
    std::chrono::steady_clock::time_point enqueued;
  };
  using Clock = std::chrono::steady_clock;

  explicit StreamingStore(uint64_t budget_bytes) : account_(budget_bytes) {}
  Status LoadResident();
  void IoLoop();
  // All with mu_ held.
  void Issue();
  bool IssueNext();
  Slot* FindOldest(int layer, bool in_use);
  void Resync(std::unique_lock<std::mutex>& lock, int layer);
  void WaitReadsLanded(std::unique_lock<std::mutex>& lock);  // no slot left kReading
  void SetState(Slot& s, SlotState from, SlotState to);
  // Views of a streamed layer inside a slot buffer starting at `buf` (the read's first byte).
  LayerWeights Rebase(int layer, const char* buf) const;

  // Declared first: destroyed last, after the reader and the thread are gone.
  MemoryAccount account_;
  std::unique_ptr<GgufFile> file_;
  ModelConfig cfg_;
  StreamingOptions opts_;
  std::vector<AlignedExtent> reads_;  // [L] the read of each layer
  HostBuffer globals_buf_;
  GlobalWeights globals_;
  std::vector<HostBuffer> resident_bufs_;  // [L], empty for streamed layers
  std::vector<LayerWeights> templates_;    // [L] resident: final; streamed: bound in slot 0
  std::vector<TensorView LayerWeights::*> members_;  // the views of a layer (for Rebase)
  std::vector<int> cycle_;                           // streamed layers in order
  std::vector<Slot> slots_;
  std::unique_ptr<FileReader> reader_;  // the I/O thread's once it runs

  mutable std::mutex mu_;
  std::condition_variable cv_io_, cv_ready_;
  std::vector<int> to_read_;  // slots issued, not yet handed to the reader
  size_t cursor_ = 0;         // next position of cycle_ to issue
  uint64_t next_seq_ = 0, next_acquire_seq_ = 0;
  bool stop_ = false;
  Status error_;                                // sticky read error
  std::vector<Clock::time_point> acquired_at_;  // [L]
  StreamingStats stats_;
  std::thread io_thread_;
};

// Times compute alone: serves every layer from one in-memory copy of layer 0 (same shapes, no
// I/O), so a forward step costs exactly its compute. The logits are meaningless; glm-bench uses
// it to measure the compute side of the bound on models larger than memory. `huge_pages` as in
// StreamingOptions (the compute then reads its weights as a store with it would).
class ComputeOnlyStore : public WeightStore {
 public:
  static StatusOr<std::unique_ptr<ComputeOnlyStore>> Open(const std::string& path,
                                                          const ReaderOptions& reader,
                                                          bool huge_pages = false);
  const ModelConfig& config() const override { return cfg_; }
  const GlobalWeights& globals() const override { return globals_; }
  StatusOr<const LayerWeights*> Acquire(int layer) override;
  void Release(int layer) override;
  // Summed Acquire-to-Release time per layer since the last reset.
  const std::vector<double>& layer_compute_s() const { return compute_s_; }
  void ResetStats() { std::fill(compute_s_.begin(), compute_s_.end(), 0.0); }

 private:
  ComputeOnlyStore() = default;
  ModelConfig cfg_;
  HostBuffer globals_buf_, layer_buf_;
  GlobalWeights globals_;
  LayerWeights layer_;
  std::vector<double> compute_s_;
  std::chrono::steady_clock::time_point acquired_at_;
};

}  // namespace glm
