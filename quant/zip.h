// Read-only ZIP reader for torch.save archives (spec §2.1): stored entries located via pread.
// A GLM-130B rank file is ~32 GB, so the reader is ZIP64-aware, never maps or loads the file,
// and bounds-checks every length and offset against the file size before using it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/check.h"

namespace glm {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored (torch.save never compresses)
  uint32_t crc32 = 0;   // from the central directory
  uint64_t compressed_size = 0;
  uint64_t size = 0;  // uncompressed
  uint64_t local_header_offset = 0;
  uint64_t data_offset = 0;  // absolute offset of the entry's first data byte
};

class ZipReader {
 public:
  // Opens `path`, reads the (ZIP64) end-of-central-directory record, the central directory and
  // every local header. Any inconsistency is an error naming the file and the field.
  static StatusOr<std::unique_ptr<ZipReader>> Open(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::string& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* Find(std::string_view name) const;

  // Reads `n` bytes at `offset` inside a stored entry. Thread-safe (pread only).
  Status ReadEntryBytes(const ZipEntry& entry, uint64_t offset, void* buf, size_t n) const;
  // Reads a whole stored entry of at most `max_bytes` and verifies its CRC-32.
  StatusOr<std::string> ReadEntry(const ZipEntry& entry, uint64_t max_bytes) const;

 private:
  ZipReader(std::string path, int fd, uint64_t size)
      : path_(std::move(path)), fd_(fd), file_size_(size) {}
  Status PRead(uint64_t offset, void* buf, size_t n, const char* what) const;
  Status ReadDirectory();
  Status ReadLocalHeader(ZipEntry* e, uint64_t cd_offset) const;

  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> index_;  // name -> entries_ position
};

// CRC-32 (IEEE 802.3, as in ZIP); `crc` continues a previous value.
uint32_t Crc32(const void* data, size_t n, uint32_t crc = 0);

// A minimal writer of stored archives, for tests and the fuzzer to build (damaged) checkpoints
// without Python. `gap_before` leaves a hole (sparse on most filesystems) before the entry, so a
// test can put entries past 4 GiB; `zip64` forces ZIP64 records everywhere.
struct ZipWriteEntry {
  std::string name;
  std::string data;
  uint64_t gap_before = 0;
};
Status WriteStoredZip(const std::string& path, const std::vector<ZipWriteEntry>& entries,
                      bool zip64);

// A streaming writer of stored archives (torch.save's layout) for checkpoints too large to hold:
// each entry's size is declared up front, its bytes are written in any number of calls, and its
// CRC-32 is patched into the local header at EndEntry. ZIP64 records are used where sizes or
// offsets need them (or everywhere with zip64).
class ZipStreamWriter {
 public:
  static StatusOr<std::unique_ptr<ZipStreamWriter>> Create(const std::string& path, bool zip64);
  ~ZipStreamWriter();
  ZipStreamWriter(const ZipStreamWriter&) = delete;
  ZipStreamWriter& operator=(const ZipStreamWriter&) = delete;

  Status BeginEntry(const std::string& name, uint64_t size, uint64_t gap_before = 0);
  Status Write(const void* data, size_t n);
  Status EndEntry();
  // Writes the central directory and the end records, and closes the file.
  Status Finish();

 private:
  struct Entry {
    std::string name;
    uint64_t offset = 0, size = 0;
    uint32_t crc = 0;
    bool z = false;
  };
  ZipStreamWriter() = default;
  Status WriteAt(const void* p, size_t n, uint64_t off);

  std::string path_;
  int fd_ = -1;
  bool zip64_ = false, in_entry_ = false;
  uint64_t pos_ = 0, written_ = 0;
  Entry cur_;
  std::vector<Entry> entries_;
};

}  // namespace glm
