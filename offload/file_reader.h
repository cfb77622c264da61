// Reading byte ranges of a file into host buffers: the FileReader interface shared by the
// io_uring engine (uring_reader.h) and the pread fallback, the fault injector tests drive both
// with, and the sequential-bandwidth probe glm-bench uses.
//
// A reader takes requests (offset, bytes, destination), cuts them into blocks of
// `block_bytes` and keeps `queue_depth` blocks in flight, refilling as blocks complete. Every
// block's result is checked: short reads and EAGAIN/EINTR are re-queued for the rest of the
// block, EOF zero-fills what lies past the end of the file, and any other error fails the request
// with the file, offset, length and errno text. With O_DIRECT (the default) offsets, lengths and
// destinations must be multiples of alignment(); when the filesystem refuses O_DIRECT the reader
// falls back to buffered reads (logged once per process).
//
// Threading: a reader is used by one thread at a time (the streaming store's I/O thread).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace glm {

enum class IoEngine {
  kAuto,   // io_uring; pread when io_uring is unavailable (logged once)
  kUring,  // io_uring or an error
  kPread,  // pread from the calling thread (no queue; blocks run one after another)
};
const char* IoEngineName(IoEngine e);

// Test hook: decides, for every block that completes, whether to pretend it failed. It poisons
// (0xA5) the bytes it pretends were not read, so a reader that does not re-read them fails the
// pattern check. Called on the reader's thread only; the counters may be read from any thread.
struct FaultOptions {
  double short_read = 0;  // probability of truncating a successful block (to a random length)
  double eagain = 0;      // probability of turning a successful block into -EAGAIN
  double eio = 0;         // probability of -EIO
  uint64_t eio_at = UINT64_MAX;  // a block covering this absolute file offset fails with -EIO
  double delay = 0;              // probability of sleeping delay_us before handling the completion
  int delay_us = 0;
  uint64_t seed = 1;
};

class FaultInjector {
 public:
  explicit FaultInjector(const FaultOptions& opts) : opts_(opts), rng_(opts.seed) {}
  // `res` is the block's real result for [offset, offset+bytes) read into dst.
  int64_t OnComplete(uint64_t offset, uint64_t bytes, char* dst, int64_t res);

  std::atomic<int64_t> short_reads{0}, eagains{0}, eios{0}, delays{0};

 private:
  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  FaultOptions opts_;
  std::mt19937_64 rng_;
};

struct ReaderOptions {
  IoEngine engine = IoEngine::kAuto;
  bool o_direct = true;             // false: through the page cache (the baseline loop)
  uint64_t block_bytes = 4 << 20;   // per request to the kernel; a multiple of 4 KiB
  int queue_depth = 8;              // blocks in flight (32 MiB with the default blocks)
  FaultInjector* faults = nullptr;  // tests only; must outlive the reader
};

struct ReadRequest {
  uint64_t offset = 0;  // absolute file offset
  uint64_t bytes = 0;   // bytes past EOF are zero-filled
  char* dst = nullptr;
  uint64_t tag = 0;  // returned in the completion
};

struct ReadCompletion {
  uint64_t tag = 0;
  Status status;
};

struct ReaderStats {
  uint64_t bytes_read = 0;  // bytes delivered by the kernel (re-reads count again)
  int64_t blocks = 0, short_reads = 0, retries = 0;  // retries: EAGAIN/EINTR re-submissions
  int max_in_flight = 0;  // the most blocks ever in flight at once (<= queue depth)
  // Time with at least one block in flight, and the integral of the blocks in flight over
  // time: their ratio is the queue depth the device actually saw while it was busy.
  double busy_s = 0, block_s = 0;
};

class FileReader {
 public:
  // Opens `path` with the engine and O_DIRECT setting asked for, falling back (logged once per
  // process) where the system refuses: io_uring unavailable -> pread (kAuto only), O_DIRECT
  // refused by the filesystem -> buffered.
  static StatusOr<std::unique_ptr<FileReader>> Open(const std::string& path,
                                                    const ReaderOptions& opts);
  virtual ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  // Pins buffers that later requests land in, once (io_uring fixed buffers). Best effort: a
  // refusal (memlock limit, EPERM) is logged once and reads go on unregistered.
  virtual void RegisterBuffers(std::span<const iovec> buffers) {}

  // Queues a request. With O_DIRECT, offset, bytes and dst must be multiples of alignment()
  // (a violation is a bug: CHECK). The request's bytes must stay valid until it completes.
  void Enqueue(const ReadRequest& r);
  // Submits queued blocks up to the queue depth and handles the blocks that completed; with
  // `wait`, first blocks until at least one block completes (if any is in flight). Appends the
  // requests that finished (all their blocks done, or failed) to `done`.
  void Poll(bool wait, std::vector<ReadCompletion>* done);
  // Stops cutting new blocks and waits for every block in flight (so no buffer is still being
  // written by the kernel); unfinished requests are dropped without a completion.
  void Abandon();
  // Requests queued or in flight.
  int pending() const { return active_requests_; }
  // Reads all of `reqs` and returns the first error (each error names file and offset).
  // `finished`, if given, is called with each request's tag as it completes (progress).
  Status ReadAll(std::span<const ReadRequest> reqs,
                 const std::function<void(uint64_t tag)>& finished = {});

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  bool direct() const { return direct_; }
  uint64_t alignment() const { return direct_ ? 4096 : 1; }
  const ReaderOptions& options() const { return opts_; }
  const ReaderStats& stats() const { return stats_; }
  // "io_uring, O_DIRECT, 1 MiB blocks, queue depth 16, 3 registered buffers".
  virtual std::string Describe() const = 0;

 protected:
  // One block of a request in flight (or waiting to be re-submitted).
  struct Block {
    int req = -1;         // index into reqs_
    uint64_t offset = 0;  // absolute file offset of this attempt
    uint64_t bytes = 0;   // bytes still wanted
    char* dst = nullptr;
  };

  FileReader(std::string path, int fd, uint64_t file_size, bool direct, const ReaderOptions& o);
  // Engine: starts reading blocks_[slot]; Flush() makes the started reads visible to the kernel.
  virtual void StartBlock(int slot) = 0;
  virtual void Flush() {}
  // Engine: handles completions (calling BlockDone for each); with `wait`, blocks for one first.
  virtual void Reap(bool wait) = 0;
  // Called by the engine with a block's result (bytes or -errno).
  void BlockDone(int slot, int64_t res);

  const std::string path_;
  int fd_;  // owned; closed by the destructor
  const uint64_t file_size_;
  const bool direct_;
  const ReaderOptions opts_;
  std::vector<Block> blocks_;  // [queue_depth]; req < 0 means free
  int in_flight_ = 0;
  ReaderStats stats_;
  std::chrono::steady_clock::time_point last_change_;  // of in_flight_ (for busy_s, block_s)
  void AccountInFlight();                              // call before in_flight_ changes

 private:
  struct Req {
    ReadRequest r;
    uint64_t cursor = 0;  // next byte (relative) not yet cut into a block
    int open_blocks = 0;  // blocks cut and not yet finished (in flight or re-queued)
    int retries = 0;
    Status status;
    bool active = false;
  };
  bool NextBlock(Block* out);
  void Fill();
  void FinishBlock(int req);
  void Fail(int req, Status st);

  std::vector<Req> reqs_;       // pool; inactive entries are free
  std::vector<int> cut_order_;  // requests with bytes left to cut, FIFO
  std::vector<Block> retry_;    // blocks to re-submit before cutting new ones
  std::vector<ReadCompletion> finished_;
  int active_requests_ = 0;
};

// Engines, for tests that want one in particular (Open picks for everyone else).
StatusOr<std::unique_ptr<FileReader>> OpenPreadReader(const std::string& path, int fd,
                                                      uint64_t size, bool direct,
                                                      const ReaderOptions& opts);

// Sequential read bandwidth of `path` with the reader `opts` describe (glm-bench: "measures the
// disk's sequential O_DIRECT bandwidth with the same reader"): reads `bytes` from `offset` on,
// or, with `spread`, `bytes` in chunks of `buffer_bytes` spaced evenly over [offset, EOF) (so a
// partial probe samples the whole file, not one region a virtual disk's host may have cached).
// The chunks are queued back to back into two alternating scratch buffers of `buffer_bytes`
// (the data is discarded; only the time matters).
struct BandwidthResult {
  uint64_t bytes = 0;
  double seconds = 0;
  double bytes_per_s = 0;
  std::string reader;  // Describe() of the reader used
};
StatusOr<BandwidthResult> MeasureSequentialRead(const std::string& path, const ReaderOptions& opts,
                                                uint64_t offset, uint64_t bytes,
                                                uint64_t buffer_bytes = 64ull << 20,
                                                bool spread = false);

// Drops the file's pages from the page cache (posix_fadvise DONTNEED; dirty pages are flushed
// first by fdatasync). Returns false (errno text in *why) where that is refused.
bool DropFileCache(const std::string& path, std::string* why = nullptr);

// Logs "glmstream: warning: <msg>" to stderr the first time `key` is seen in this process.
void WarnOnce(const std::string& key, const std::string& msg);

}  // namespace glm
