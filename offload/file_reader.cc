// FileReader's block bookkeeping (cutting, re-queueing, result checks), the pread engine, the
// fault injector, Open's engine choice and the bandwidth probe.
#include "offload/file_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "offload/host_buffer.h"
#include "offload/uring_reader.h"

namespace glm {

const char* IoEngineName(IoEngine e) {
  switch (e) {
    case IoEngine::kAuto:
      return "auto";
    case IoEngine::kUring:
      return "io_uring";
    case IoEngine::kPread:
      return "pread";
  }
  return "?";
}

void WarnOnce(const std::string& key, const std::string& msg) {
  static std::mutex mu;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mu);
  if (seen.insert(key).second) std::fprintf(stderr, "glmstream: warning: %s\n", msg.c_str());
}

int64_t FaultInjector::OnComplete(uint64_t offset, uint64_t bytes, char* dst, int64_t res) {
  if (opts_.delay > 0 && Uniform() < opts_.delay) {
    ++delays;
    std::this_thread::sleep_for(std::chrono::microseconds(opts_.delay_us));
  }
  if (res <= 0) return res;
  if (opts_.eio_at >= offset && opts_.eio_at < offset + bytes) {
    ++eios;
    return -EIO;
  }
  if (opts_.eio > 0 && Uniform() < opts_.eio) {
    ++eios;
    return -EIO;
  }
  if (opts_.eagain > 0 && Uniform() < opts_.eagain) {
    ++eagains;
    std::memset(dst, 0xA5, size_t(res));
    return -EAGAIN;
  }
  if (res > 1 && opts_.short_read > 0 && Uniform() < opts_.short_read) {
    ++short_reads;
    // Any length, aligned or not: the reader must re-read from an offset it is allowed to use.
    const int64_t keep = 1 + int64_t(Uniform() * double(res - 1));
    std::memset(dst + keep, 0xA5, size_t(res - keep));
    return keep;
  }
  return res;
}

// ---- FileReader: requests, blocks, results --------------------------------------------------

FileReader::FileReader(std::string path, int fd, uint64_t file_size, bool direct,
                       const ReaderOptions& o)
    : path_(std::move(path)), fd_(fd), file_size_(file_size), direct_(direct), opts_(o) {
  GLM_CHECK_MSG(o.queue_depth >= 1 && o.queue_depth <= 4096, "queue depth %d", o.queue_depth);
  GLM_CHECK_MSG(o.block_bytes >= 4096 && o.block_bytes % 4096 == 0 && o.block_bytes <= (1u << 30),
                "block size %llu must be a multiple of 4 KiB up to 1 GiB",
                (unsigned long long)o.block_bytes);
  blocks_.resize(size_t(o.queue_depth));
  retry_.reserve(size_t(o.queue_depth));
  reqs_.reserve(64);
  cut_order_.reserve(64);
}

FileReader::~FileReader() {
  if (fd_ >= 0) close(fd_);
}

void FileReader::Enqueue(const ReadRequest& r) {
  if (direct_) {
    GLM_CHECK_MSG(r.offset % 4096 == 0 && r.bytes % 4096 == 0 &&
                      reinterpret_cast<uintptr_t>(r.dst) % 4096 == 0,
                  "O_DIRECT read of %s at %llu (%llu bytes) into %p is not 4 KiB aligned",
                  path_.c_str(), (unsigned long long)r.offset, (unsigned long long)r.bytes,
                  static_cast<void*>(r.dst));
  }
  int idx = -1;
  for (size_t i = 0; i < reqs_.size(); ++i) {
    if (!reqs_[i].active) {
      idx = int(i);
      break;
    }
  }
  if (idx < 0) {  // grows only when more requests are outstanding than ever before
    idx = int(reqs_.size());
    reqs_.emplace_back();
  }
  Req& q = reqs_[size_t(idx)];
  q = Req();
  q.r = r;
  q.active = true;
  ++active_requests_;
  if (r.bytes == 0) {
    finished_.push_back(ReadCompletion{r.tag, Status::Ok()});
    q.active = false;
    --active_requests_;
    return;
  }
  cut_order_.push_back(idx);
}

bool FileReader::NextBlock(Block* out) {
  // Re-queued blocks first (a failed request's are dropped), then the oldest request's next cut.
  while (!retry_.empty()) {
    const Block b = retry_.back();
    retry_.pop_back();
    if (reqs_[size_t(b.req)].status.ok()) {
      *out = b;
      return true;
    }
    FinishBlock(b.req);
  }
  while (!cut_order_.empty()) {
    const int idx = cut_order_.front();
    Req& q = reqs_[size_t(idx)];
    if (!q.status.ok() || q.cursor >= q.r.bytes) {
      cut_order_.erase(cut_order_.begin());
      continue;
    }
    const uint64_t n = std::min(opts_.block_bytes, q.r.bytes - q.cursor);
    *out =
        Block{.req = idx, .offset = q.r.offset + q.cursor, .bytes = n, .dst = q.r.dst + q.cursor};
    q.cursor += n;
    ++q.open_blocks;
    if (q.cursor == q.r.bytes) cut_order_.erase(cut_order_.begin());
    return true;
  }
  return false;
}

void FileReader::AccountInFlight() {
  const auto now = std::chrono::steady_clock::now();
  if (in_flight_ > 0) {
    const double dt = std::chrono::duration<double>(now - last_change_).count();
    stats_.busy_s += dt;
    stats_.block_s += dt * in_flight_;
  }
  last_change_ = now;
}

void FileReader::Fill() {
  AccountInFlight();
  bool started = false;
  for (size_t slot = 0; slot < blocks_.size(); ++slot) {
    if (blocks_[slot].req >= 0) continue;
    if (!NextBlock(&blocks_[slot])) break;
    ++in_flight_;
    ++stats_.blocks;
    stats_.max_in_flight = std::max(stats_.max_in_flight, in_flight_);
    StartBlock(int(slot));
    started = true;
  }
  if (started) Flush();
}

void FileReader::Fail(int req, Status st) {
  Req& q = reqs_[size_t(req)];
  if (q.status.ok()) q.status = std::move(st);
}

void FileReader::FinishBlock(int req) {
  Req& q = reqs_[size_t(req)];
  --q.open_blocks;
  const bool cut_all = q.cursor == q.r.bytes || !q.status.ok();
  if (q.open_blocks == 0 && cut_all) {
    finished_.push_back(ReadCompletion{.tag = q.r.tag, .status = q.status});
    q.active = false;
    --active_requests_;
  }
}

void FileReader::BlockDone(int slot, int64_t res) {
  Block b = blocks_[size_t(slot)];
  GLM_CHECK_MSG(b.req >= 0, "completion for free block slot %d", slot);
  blocks_[size_t(slot)].req = -1;
  AccountInFlight();
  --in_flight_;
  if (opts_.faults) res = opts_.faults->OnComplete(b.offset, b.bytes, b.dst, res);
  Req& q = reqs_[size_t(b.req)];
  if (res > 0) stats_.bytes_read += uint64_t(res);
  if (!q.status.ok()) {  // the request already failed: just account for the block
    FinishBlock(b.req);
    return;
  }
  if (res == -EAGAIN || res == -EINTR) {
    // The kernel asks us to try again: same block, unchanged. Bounded, so a device that never
    // recovers turns into an error instead of a hang.
    ++stats_.retries;
    if (++q.retries > 10000) {
      Fail(b.req, Errorf("read '%s' at offset %llu (%llu bytes): still %s after 10000 retries",
                         path_.c_str(), (unsigned long long)b.offset, (unsigned long long)b.bytes,
                         std::strerror(int(-res))));
      FinishBlock(b.req);
    } else {
      retry_.push_back(b);
    }
    return;
  }
  if (res < 0) {
    Fail(b.req, Errorf("read '%s' at offset %llu (%llu bytes): %s", path_.c_str(),
                       (unsigned long long)b.offset, (unsigned long long)b.bytes,
                       std::strerror(int(-res))));
    FinishBlock(b.req);
    return;
  }
  const uint64_t got = uint64_t(res);
  if (got >= b.bytes) {
    FinishBlock(b.req);
    return;
  }
  if (b.offset + got >= file_size_) {  // reached EOF: the rest lies past the end of the file
    std::memset(b.dst + got, 0, size_t(b.bytes - got));
    FinishBlock(b.req);
    return;
  }
  if (got == 0) {
    Fail(b.req, Errorf("read '%s' at offset %llu (%llu bytes): unexpected end of file (the file "
                       "is %llu bytes; did it change?)",
                       path_.c_str(), (unsigned long long)b.offset, (unsigned long long)b.bytes,
                       (unsigned long long)file_size_));
    FinishBlock(b.req);
    return;
  }
  // Short read: re-queue the rest. O_DIRECT must resume on the alignment, so a partial tail
  // block is read again.
  ++stats_.short_reads;
  const uint64_t advance = direct_ ? AlignDown(got, alignment()) : got;
  b.offset += advance;
  b.dst += advance;
  b.bytes -= advance;
  retry_.push_back(b);
}

void FileReader::Poll(bool wait, std::vector<ReadCompletion>* done) {
  Fill();
  if (in_flight_ > 0) {
    Reap(wait && finished_.empty());
    Fill();  // keep the queue full before returning to the caller
  }
  for (ReadCompletion& c : finished_) done->push_back(std::move(c));
  finished_.clear();
}

void FileReader::Abandon() {
  for (Req& q : reqs_) {
    if (q.active && q.status.ok()) q.status = Errorf("abandoned");
  }
  cut_order_.clear();
  retry_.clear();
  while (in_flight_ > 0) Reap(true);
  for (Req& q : reqs_) q.active = false;
  active_requests_ = 0;
  finished_.clear();
}

Status FileReader::ReadAll(std::span<const ReadRequest> reqs,
                           const std::function<void(uint64_t tag)>& finished) {
  for (const ReadRequest& r : reqs) Enqueue(r);
  std::vector<ReadCompletion> done;
  Status first;
  while (pending() > 0) {
    done.clear();
    Poll(true, &done);
    for (ReadCompletion& c : done) {
      if (!c.status.ok() && first.ok()) first = c.status;
      if (finished) finished(c.tag);
    }
  }
  return first;
}

// ---- pread engine ------------------------------------------------------------------------

namespace {

// Reads each started block synchronously when reaped: the fallback for systems without
// io_uring. Still checks every result the same way (the bookkeeping is shared).
class PreadReader final : public FileReader {
 public:
  PreadReader(std::string path, int fd, uint64_t size, bool direct, const ReaderOptions& o)
      : FileReader(std::move(path), fd, size, direct, o) {}

  std::string Describe() const override {
    return StrFormat("pread, %s, %s blocks", direct_ ? "O_DIRECT" : "buffered",
                     FormatBytes(opts_.block_bytes).c_str());
  }

 protected:
  void StartBlock(int slot) override { started_.push_back(slot); }
  void Reap(bool wait) override {
    // Everything started is done synchronously now; `wait` needs nothing more.
    std::vector<int> slots;
    slots.swap(started_);
    for (int slot : slots) {
      const Block& b = blocks_[size_t(slot)];
      const ssize_t n = pread(fd_, b.dst, b.bytes, off_t(b.offset));
      BlockDone(slot, n < 0 ? -int64_t(errno) : int64_t(n));
    }
  }

 private:
  std::vector<int> started_;
};

}  // namespace

StatusOr<std::unique_ptr<FileReader>> OpenPreadReader(const std::string& path, int fd,
                                                      uint64_t size, bool direct,
                                                      const ReaderOptions& opts) {
  return std::unique_ptr<FileReader>(new PreadReader(path, fd, size, direct, opts));
}

// ---- Open: engine and O_DIRECT choice -----------------------------------------------------

namespace {

// Opens with O_DIRECT if asked and allowed. Some filesystems refuse at open (EINVAL), others
// only at the first read, so a one-block probe read settles it.
StatusOr<int> OpenFd(const std::string& path, bool want_direct, bool* direct) {
  *direct = false;
  if (want_direct) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (fd >= 0) {
      void* probe = nullptr;
      GLM_CHECK(posix_memalign(&probe, 4096, 4096) == 0);
      const ssize_t n = pread(fd, probe, 4096, 0);
      const int err = errno;
      free(probe);
      if (n >= 0) {
        *direct = true;
        return fd;
      }
      close(fd);
      if (err != EINVAL) return ErrnoError("read", path, err);
      WarnOnce("odirect-read:" + path,
               StrFormat("O_DIRECT reads refused on '%s' (%s); reading through the page cache",
                         path.c_str(), std::strerror(err)));
    } else if (errno == EINVAL) {
      WarnOnce("odirect-open:" + path,
               StrFormat("O_DIRECT refused on '%s' (%s, e.g. tmpfs); reading through the page "
                         "cache",
                         path.c_str(), std::strerror(errno)));
    } else {
      return ErrnoError("open", path, errno);
    }
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  return fd;
}

}  // namespace

StatusOr<std::unique_ptr<FileReader>> FileReader::Open(const std::string& path,
                                                       const ReaderOptions& opts) {
  if (opts.block_bytes < 4096 || opts.block_bytes % 4096 != 0 || opts.block_bytes > (1u << 30)) {
    return Errorf("block size %llu: must be a multiple of 4 KiB, at most 1 GiB",
                  (unsigned long long)opts.block_bytes);
  }
  if (opts.queue_depth < 1 || opts.queue_depth > 4096) {
    return Errorf("queue depth %d: must be in [1, 4096]", opts.queue_depth);
  }
  bool direct = false;
  ASSIGN_OR_RETURN(int fd, OpenFd(path, opts.o_direct, &direct));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoError("stat", path, err);
  }
  const uint64_t size = uint64_t(st.st_size);
  if (opts.engine != IoEngine::kPread) {
    auto r = OpenUringReader(path, fd, size, direct, opts);
    if (r.ok() || opts.engine == IoEngine::kUring) {
      if (!r.ok()) close(fd);
      return r;
    }
    WarnOnce("uring", StrFormat("%s; using pread", r.status().message().c_str()));
  }
  return OpenPreadReader(path, fd, size, direct, opts);
}

// ---- bandwidth probe and cache dropping ---------------------------------------------------

StatusOr<BandwidthResult> MeasureSequentialRead(const std::string& path, const ReaderOptions& opts,
                                                uint64_t offset, uint64_t bytes,
                                                uint64_t buffer_bytes, bool spread) {
  ASSIGN_OR_RETURN(std::unique_ptr<FileReader> reader, FileReader::Open(path, opts));
  const uint64_t a = reader->direct() ? 4096 : 1;
  offset = AlignDown(offset, a);
  const uint64_t span = reader->file_size() > offset ? reader->file_size() - offset : 0;
  bytes = AlignUp(std::min(bytes, span), a);
  buffer_bytes = AlignUp(std::min(buffer_bytes, std::max<uint64_t>(bytes, 4096)), 4096);
  // Two halves, alternating: reads in flight never target the same bytes (overlapping DMA
  // destinations measured 20-30% slower on a virtual disk). Huge pages, as the staging slots
  // have: a read's pages are one device segment per physically contiguous run, so the probe
  // would otherwise measure this buffer's fragmentation along with the disk.
  ASSIGN_OR_RETURN(HostBuffer buf,
                   HostBuffer::Allocate(2 * buffer_bytes, nullptr, "bandwidth probe",
                                        /*huge_pages=*/true));
  const iovec iov{buf.data(), buf.size()};
  reader->RegisterBuffers(std::span(&iov, 1));
  // Every chunk lands in the same buffer: the data is discarded, only the time matters.
  std::vector<ReadRequest> reqs;
  const uint64_t chunks = (bytes + buffer_bytes - 1) / buffer_bytes;
  for (uint64_t i = 0, done = 0; done < bytes; ++i, done += buffer_bytes) {
    const uint64_t at = spread ? AlignDown(span / chunks * i, a) : done;
    reqs.push_back(ReadRequest{.offset = offset + at,
                               .bytes = std::min(buffer_bytes, bytes - done),
                               .dst = buf.data() + (i % 2) * buffer_bytes,
                               .tag = i});
  }
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(reader->ReadAll(reqs));
  BandwidthResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.bytes = bytes;
  r.bytes_per_s = r.seconds > 0 ? double(bytes) / r.seconds : 0;
  r.reader = reader->Describe();
  return r;
}

bool DropFileCache(const std::string& path, std::string* why) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (why) *why = std::strerror(errno);
    return false;
  }
  fdatasync(fd);  // DONTNEED leaves dirty pages behind
  const int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
  if (rc != 0 && why) *why = std::strerror(rc);
  return rc == 0;
}

}  // namespace glm
