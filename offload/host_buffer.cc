// MemoryAccount, HostBuffer and the RSS probes.
#include "offload/host_buffer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <utility>

namespace glm {

std::string FormatBytes(uint64_t b) {
  const double kKi = 1024.0, kMi = kKi * 1024, kGi = kMi * 1024;
  if (b >= uint64_t(kGi)) return StrFormat("%.2f GiB", b / kGi);
  if (b >= uint64_t(kMi)) return StrFormat("%.1f MiB", b / kMi);
  if (b >= uint64_t(kKi)) return StrFormat("%.0f KiB", b / kKi);
  return StrFormat("%llu B", (unsigned long long)b);
}

StatusOr<uint64_t> ParseBytes(const std::string& text) {
  std::string s = text;
  while (!s.empty() && s.front() == ' ') s.erase(s.begin());
  while (!s.empty() && s.back() == ' ') s.pop_back();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end == s.c_str() || errno != 0 || !std::isfinite(v) || v < 0) {
    return Errorf("'%s' is not a byte count (examples: 1.5G, 800M, 4096)", text.c_str());
  }
  std::string unit(end);
  for (char& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();  // "GB" -> "G"
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();  // "GIB" -> "G"
  double mul = 1;
  if (unit == "K") {
    mul = 1024.0;
  } else if (unit == "M") {
    mul = 1024.0 * 1024;
  } else if (unit == "G") {
    mul = 1024.0 * 1024 * 1024;
  } else if (unit == "T") {
    mul = 1024.0 * 1024 * 1024 * 1024;
  } else if (!unit.empty() && unit != "B") {
    return Errorf("'%s': unknown unit '%s' (use K, M, G or T)", text.c_str(), end);
  }
  const double bytes = v * mul;
  if (bytes > 9.0e18) return Errorf("'%s' is too large", text.c_str());
  return uint64_t(std::llround(bytes));
}

Status MemoryAccount::Reserve(uint64_t bytes, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (budget_ != 0 && used_ + bytes > budget_) {
    std::string ledger;
    for (const auto& [name, b] : holders_)
      ledger += StrFormat("; %s %s", name.c_str(), FormatBytes(b).c_str());
    return Errorf("host memory budget exceeded: %s needs %s, %s of %s already held%s", what.c_str(),
                  FormatBytes(bytes).c_str(), FormatBytes(used_).c_str(),
                  FormatBytes(budget_).c_str(), ledger.c_str());
  }
  used_ += bytes;
  peak_ = std::max(peak_, used_);
  holders_.emplace_back(what, bytes);
  return Status::Ok();
}

void MemoryAccount::Unreserve(uint64_t bytes, const std::string& what) {
  std::lock_guard<std::mutex> lock(mu_);
  GLM_CHECK_MSG(bytes <= used_, "%s: releasing %llu bytes, only %llu held", what.c_str(),
                (unsigned long long)bytes, (unsigned long long)used_);
  used_ -= bytes;
  for (auto it = holders_.begin(); it != holders_.end(); ++it) {
    if (it->first == what && it->second == bytes) {
      holders_.erase(it);
      return;
    }
  }
  GLM_CHECK_MSG(false, "%s (%llu bytes) is not in the ledger", what.c_str(),
                (unsigned long long)bytes);
}

uint64_t MemoryAccount::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

uint64_t MemoryAccount::peak() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}

std::string MemoryAccount::Ledger() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, b] : holders_) {
    out += StrFormat("%s%s %s", out.empty() ? "" : "; ", name.c_str(), FormatBytes(b).c_str());
  }
  return out;
}

StatusOr<HostBuffer> HostBuffer::Allocate(uint64_t bytes, MemoryAccount* account,
                                          const std::string& what, bool huge_pages) {
  GLM_CHECK_MSG(bytes > 0, "%s: zero-byte allocation", what.c_str());
  const uint64_t rounded = AlignUp(bytes, kDirectIoAlignment);
  if (account) RETURN_IF_ERROR(account->Reserve(rounded, what));
  void* p = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    if (account) account->Unreserve(rounded, what);
    return Errorf("allocating %s for %s: %s", FormatBytes(rounded).c_str(), what.c_str(),
                  std::strerror(err));
  }
  // MADV_HUGEPAGE only where asked. With THP defrag "madvise" (a common default) every fault of
  // such a region may compact memory synchronously, so loading is slower where free memory is
  // fragmented. For resident weights it is an option (StreamingOptions::huge_pages): on the
  // development VM the decode moved by -2 to +5% (bench-kernels --only=pages). The staging slots
  // always ask: O_DIRECT reads land in them at every step, and a read's pages become one device
  // segment per physically contiguous run. On 4 KiB pages a 4 MiB block is split into several
  // requests (virtio-blk: at most 254 segments each) as the buffer's fragmentation dictates; on
  // 2 MiB pages it is two segments (offload/streaming_store.cc).
  if (huge_pages) (void)madvise(p, rounded, MADV_HUGEPAGE);  // advice: failure is harmless
  HostBuffer b;
  b.data_ = static_cast<char*>(p);
  b.size_ = rounded;
  b.account_ = account;
  b.what_ = what;
  return b;
}

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    Reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    account_ = std::exchange(o.account_, nullptr);
    what_ = std::move(o.what_);
  }
  return *this;
}

void HostBuffer::Reset() {
  if (!data_) return;
  munmap(data_, size_);
  if (account_) account_->Unreserve(size_, what_);
  data_ = nullptr;
  size_ = 0;
  account_ = nullptr;
}

namespace {

uint64_t StatusFieldBytes(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line)) {
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') {
      return std::strtoull(line.c_str() + n + 1, nullptr, 10) * 1024;  // "VmRSS:  1234 kB"
    }
  }
  return 0;
}

}  // namespace

HugePageUse HugePagesOf(const void* p, uint64_t bytes) {
  HugePageUse use;
  std::ifstream in("/proc/self/smaps");
  const uintptr_t lo = reinterpret_cast<uintptr_t>(p), hi = lo + bytes;
  std::string line;
  bool inside = false;  // the mapping whose fields follow overlaps the range
  use.advised = true;
  while (std::getline(in, line)) {
    unsigned long long a = 0, b = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &a, &b) == 2 && line.find(':') > line.find('-')) {
      inside = a < hi && lo < b;  // a mapping's first line: "7f00-7f80 rw-p ..."
      use.known |= inside;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      use.advised &= (line + " ").find(" hg ") != std::string::npos;
    }
  }
  use.advised &= use.known;
  return use;
}

uint64_t AnonHugePageBytes() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("AnonHugePages:", 0) == 0) {
      return std::strtoull(line.c_str() + 14, nullptr, 10) * 1024;
    }
  }
  return 0;
}

std::string TransparentHugePageMode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return "";
  const size_t a = line.find('['), b = line.find(']');
  return a == std::string::npos || b == std::string::npos || b < a ? ""
                                                                   : line.substr(a + 1, b - a - 1);
}

uint64_t CurrentRssBytes() { return StatusFieldBytes("VmRSS"); }
uint64_t PeakRssBytes() { return StatusFieldBytes("VmHWM"); }

bool ResetPeakRss() {
  const int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, "5", 1) == 1;
  close(fd);
  return ok;
}

}  // namespace glm
