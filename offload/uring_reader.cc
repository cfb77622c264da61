// UringReader: FileReader's io_uring engine (style-anchors §9 rule 10: registered buffers, queue
// kept full, every completion checked).
#include "offload/uring_reader.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "offload/host_buffer.h"

namespace glm {
namespace {

// Aborts with the statement, file:line and errno text: for ring calls that fail only through a
// bug in this file (the ring is never over-filled and is used by one thread).
#define URING_CHECK(expr)                                                   \
  do {                                                                      \
    const int _ret = (expr);                                                \
    GLM_CHECK_MSG(_ret >= 0, "%s failed: %s", #expr, std::strerror(-_ret)); \
  } while (0)

// Fixed buffers are registered in pieces of at most 1 GiB (the kernel's limit per buffer).
constexpr uint64_t kMaxRegisteredPiece = 1ull << 30;

class UringReader final : public FileReader {
 public:
  UringReader(std::string path, int fd, uint64_t size, bool direct, const ReaderOptions& o)
      : FileReader(std::move(path), fd, size, direct, o) {}

  ~UringReader() override {
    if (!initialized_) return;
    // Nothing may still be written into caller buffers once we are gone.
    Abandon();
    if (registered_) io_uring_unregister_buffers(&ring_);
    io_uring_queue_exit(&ring_);
  }

  void DisownFd() { fd_ = -1; }

  Status Init() {
    const int ret = io_uring_queue_init(unsigned(opts_.queue_depth), &ring_, 0);
    if (ret < 0) {
      return Errorf("io_uring unavailable (io_uring_queue_init: %s)", std::strerror(-ret));
    }
    initialized_ = true;
    return Status::Ok();
  }

  void RegisterBuffers(std::span<const iovec> buffers) override {
    GLM_CHECK_MSG(in_flight_ == 0, "RegisterBuffers with reads in flight");
    if (registered_) {
      io_uring_unregister_buffers(&ring_);
      registered_ = false;
      pieces_.clear();
    }
    for (const iovec& b : buffers) {
      for (uint64_t off = 0; off < b.iov_len; off += kMaxRegisteredPiece) {
        pieces_.push_back(iovec{static_cast<char*>(b.iov_base) + off,
                                size_t(std::min<uint64_t>(kMaxRegisteredPiece, b.iov_len - off))});
      }
    }
    if (pieces_.empty()) return;
    const int ret = io_uring_register_buffers(&ring_, pieces_.data(), unsigned(pieces_.size()));
    if (ret < 0) {
      WarnOnce("uring-register",
               StrFormat("io_uring_register_buffers (%zu buffers): %s; reading without fixed "
                         "buffers (raise `ulimit -l` to pin them)",
                         pieces_.size(), std::strerror(-ret)));
      pieces_.clear();
      return;
    }
    registered_ = true;
  }

  std::string Describe() const override {
    return StrFormat("io_uring, %s, %s blocks, queue depth %d, %zu registered buffers",
                     direct_ ? "O_DIRECT" : "buffered", FormatBytes(opts_.block_bytes).c_str(),
                     opts_.queue_depth, pieces_.size());
  }

 protected:
  void StartBlock(int slot) override {
    const Block& b = blocks_[size_t(slot)];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    GLM_CHECK_MSG(sqe != nullptr, "io_uring submission queue full (%d in flight)", in_flight_);
    const int piece = FindPiece(b.dst, b.bytes);
    if (piece >= 0) {
      io_uring_prep_read_fixed(sqe, fd_, b.dst, unsigned(b.bytes), b.offset, piece);
    } else {
      io_uring_prep_read(sqe, fd_, b.dst, unsigned(b.bytes), b.offset);
    }
    io_uring_sqe_set_data64(sqe, uint64_t(slot));
  }

  void Flush() override {
    int ret;
    do {
      ret = io_uring_submit(&ring_);
    } while (ret == -EINTR);
    URING_CHECK(ret);
  }

  void Reap(bool wait) override {
    if (wait) {
      io_uring_cqe* cqe = nullptr;
      int ret;
      do {
        ret = io_uring_wait_cqe(&ring_, &cqe);
      } while (ret == -EINTR || ret == -EAGAIN);
      URING_CHECK(ret);
    }
    io_uring_cqe* cqes[64];
    for (;;) {
      const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, 64);
      if (n == 0) break;
      // Copy out before advancing: BlockDone may not touch the ring, but keep it simple.
      std::pair<int, int64_t> res[64];
      for (unsigned i = 0; i < n; ++i) {
        res[i] = {int(io_uring_cqe_get_data64(cqes[i])), int64_t(cqes[i]->res)};
      }
      io_uring_cq_advance(&ring_, n);
      for (unsigned i = 0; i < n; ++i) BlockDone(res[i].first, res[i].second);
    }
  }

 private:
  // Index of the registered piece holding [p, p+n), or -1.
  int FindPiece(const char* p, uint64_t n) const {
    for (size_t i = 0; i < pieces_.size(); ++i) {
      const char* base = static_cast<const char*>(pieces_[i].iov_base);
      if (p >= base && p + n <= base + pieces_[i].iov_len) return int(i);
    }
    return -1;
  }

  io_uring ring_{};
  bool initialized_ = false, registered_ = false;
  std::vector<iovec> pieces_;
};

}  // namespace

StatusOr<std::unique_ptr<FileReader>> OpenUringReader(const std::string& path, int fd,
                                                      uint64_t size, bool direct,
                                                      const ReaderOptions& opts) {
  auto r = std::make_unique<UringReader>(path, fd, size, direct, opts);
  if (Status st = r->Init(); !st.ok()) {
    r->DisownFd();  // the caller keeps it (and falls back to pread)
    return st;
  }
  return std::unique_ptr<FileReader>(std::move(r));
}

}  // namespace glm
