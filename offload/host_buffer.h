// Host memory owners under a byte budget: MemoryAccount (the budget and its ledger) and
// HostBuffer (a move-only, page-aligned, accounted allocation), plus the process RSS probes the
// benchmarks compare against the budget.
//
// Every large allocation of the streaming store goes through HostBuffer::Allocate with the
// store's MemoryAccount, so "nothing is allocated past the budget" is enforced in one place: an
// allocation that would exceed the budget fails with a Status naming it and the ledger.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace glm {

// 4 KiB: the O_DIRECT alignment of our files and of the buffers they are read into (the logical
// block size of the devices we target is 512 or 4096; the page size covers both).
inline constexpr size_t kDirectIoAlignment = 4096;

inline uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
inline uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }

// "1.50 GiB", "101.0 MiB", "12 KiB", "512 B".
std::string FormatBytes(uint64_t bytes);
// Parses "1.5G", "800M", "64k", "4096", "2GiB", "1.5GB" (binary units: K=2^10, M=2^20, G=2^30,
// T=2^40). Errors name the text.
StatusOr<uint64_t> ParseBytes(const std::string& text);

// A byte budget and the ledger of what holds it. Thread-safe. budget 0 means unlimited (the
// ledger is still kept, for the printout).
class MemoryAccount {
 public:
  explicit MemoryAccount(uint64_t budget_bytes = 0) : budget_(budget_bytes) {}
  MemoryAccount(const MemoryAccount&) = delete;
  MemoryAccount& operator=(const MemoryAccount&) = delete;

  // Claims `bytes` for `what` ("staging slot 2"); fails, claiming nothing, past the budget.
  Status Reserve(uint64_t bytes, const std::string& what);
  void Unreserve(uint64_t bytes, const std::string& what);

  uint64_t budget() const { return budget_; }
  uint64_t used() const;
  uint64_t peak() const;
  // One line per holder: "globals 134.0 MiB; resident layer 3 101.0 MiB; ...".
  std::string Ledger() const;

 private:
  const uint64_t budget_;
  mutable std::mutex mu_;
  uint64_t used_ = 0, peak_ = 0;
  std::vector<std::pair<std::string, uint64_t>> holders_;
};

// Page-aligned anonymous memory (mmap), accounted against a MemoryAccount for its lifetime.
// Move-only; freeing returns the pages to the system (RSS drops), unlike a heap allocation.
class HostBuffer {
 public:
  HostBuffer() = default;
  // Fails with a Status when the account refuses or mmap fails (size in MiB, errno text).
  // `account` may be null (unaccounted: tests and tools' own scratch). It must outlive the buffer.
  // `huge_pages`: ask for transparent huge pages (MADV_HUGEPAGE), for buffers that O_DIRECT reads
  // land in again and again (see Allocate).
  static StatusOr<HostBuffer> Allocate(uint64_t bytes, MemoryAccount* account,
                                       const std::string& what, bool huge_pages = false);
  ~HostBuffer() { Reset(); }
  HostBuffer(HostBuffer&& o) noexcept { *this = std::move(o); }
  HostBuffer& operator=(HostBuffer&& o) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  char* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& name() const { return what_; }
  void Reset();

 private:
  char* data_ = nullptr;
  uint64_t size_ = 0;
  MemoryAccount* account_ = nullptr;
  std::string what_;
};

// What /proc/self/smaps says of the mappings that overlap [p, p + bytes). The kernel merges
// adjacent anonymous mappings with the same flags, so a mapping may be larger than the range.
struct HugePageUse {
  bool known = false;    // smaps was readable and names a mapping in the range
  bool advised = false;  // every such mapping has MADV_HUGEPAGE ("hg" in VmFlags)
};
HugePageUse HugePagesOf(const void* p, uint64_t bytes);
// The process's anonymous memory on transparent huge pages (/proc/self/smaps_rollup
// AnonHugePages), in bytes; 0 if unavailable.
uint64_t AnonHugePageBytes();
// /sys/kernel/mm/transparent_hugepage/enabled: "always", "madvise" or "never" (the bracketed
// choice); "" where the kernel has no transparent huge pages.
std::string TransparentHugePageMode();

// Resident set size of this process now and its high-water mark (/proc/self/status VmRSS,
// VmHWM), in bytes; 0 if unavailable.
uint64_t CurrentRssBytes();
uint64_t PeakRssBytes();
// Resets the high-water mark to the current RSS (writes 5 to /proc/self/clear_refs, Linux >= 4.0).
// Returns false where that is not permitted; peaks then cover the whole process lifetime.
bool ResetPeakRss();

}  // namespace glm
