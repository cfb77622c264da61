// ZIP reading for torch.save archives: EOCD / ZIP64 records, central directory, local headers.
// Format reference: PKWARE APPNOTE.TXT §4.3. torch (miniz) writes every entry stored, sets the
// data-descriptor flag (so local headers carry zero sizes: the central directory is
// authoritative), pads local headers with an extra field to 64-byte data alignment, and always
// writes the ZIP64 end records.
#include "quant/zip.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace glm {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEocdSig = 0x06054b50;
constexpr uint32_t kEocd64Sig = 0x06064b50;
constexpr uint32_t kLocatorSig = 0x07064b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kLocatorSize = 20;
constexpr size_t kEocd64Size = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;
constexpr uint64_t kMaxComment = 65535;
// A torch archive has a few entries per tensor (~850 for a GLM-130B rank, ~100 KB of directory);
// anything this large is corrupt, and refusing it bounds the memory a bad file can claim.
constexpr uint64_t kMaxCentralDirBytes = 256ull << 20;

uint16_t Get16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t Get32(const uint8_t* p) { return Get16(p) | (uint32_t(Get16(p + 2)) << 16); }
uint64_t Get64(const uint8_t* p) { return Get32(p) | (uint64_t(Get32(p + 4)) << 32); }

void Put16(std::string* s, uint16_t v) {
  s->push_back(char(v & 0xff));
  s->push_back(char(v >> 8));
}
void Put32(std::string* s, uint32_t v) {
  Put16(s, uint16_t(v));
  Put16(s, uint16_t(v >> 16));
}
void Put64(std::string* s, uint64_t v) {
  Put32(s, uint32_t(v));
  Put32(s, uint32_t(v >> 32));
}

// Names are printed in messages; keep them short and printable.
std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 200) out += "...";
  return out;
}

}  // namespace

uint32_t Crc32(const void* data, size_t n, uint32_t crc) {
  // Slicing-by-8: eight table lookups per 8 bytes (several GB/s; checkpoints are written with a
  // CRC over every byte).
  static const auto tables = [] {
    std::array<std::array<uint32_t, 256>, 8> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int k = 1; k < 8; ++k) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
    }
    return t;
  }();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= crc;  // little-endian: the CRC folds into the first four bytes
    crc = tables[7][lo & 0xff] ^ tables[6][(lo >> 8) & 0xff] ^ tables[5][(lo >> 16) & 0xff] ^
          tables[4][lo >> 24] ^ tables[3][hi & 0xff] ^ tables[2][(hi >> 8) & 0xff] ^
          tables[1][(hi >> 16) & 0xff] ^ tables[0][hi >> 24];
  }
  for (size_t i = 0; i < n; ++i) crc = tables[0][(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

StatusOr<std::unique_ptr<ZipReader>> ZipReader::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = ErrnoError("stat", path, errno);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Errorf("'%s' is not a regular file", path.c_str());
  }
  std::unique_ptr<ZipReader> zip(new ZipReader(path, fd, uint64_t(st.st_size)));
  RETURN_IF_ERROR(zip->ReadDirectory());
  return zip;
}

ZipReader::~ZipReader() {
  if (fd_ >= 0) ::close(fd_);
}

const ZipEntry* ZipReader::Find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Status ZipReader::PRead(uint64_t offset, void* buf, size_t n, const char* what) const {
  uint8_t* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    // Linux transfers at most ~2 GiB per call; the loop also absorbs short reads and EINTR.
    const ssize_t r = ::pread(fd_, p, n, off_t(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Errorf("pread '%s' (%s) at byte %llu: %s", path_.c_str(), what,
                    (unsigned long long)offset, std::strerror(errno));
    }
    if (r == 0) {
      return Errorf("unexpected end of file in '%s' reading %s at byte %llu (file size %llu)",
                    path_.c_str(), what, (unsigned long long)offset,
                    (unsigned long long)file_size_);
    }
    p += r;
    n -= size_t(r);
    offset += uint64_t(r);
  }
  return Status::Ok();
}

Status ZipReader::ReadDirectory() {
  const char* f = path_.c_str();
  if (file_size_ < kEocdSize) {
    return Errorf(
        "not a zip archive: '%s' has %llu bytes, too small for an "
        "end-of-central-directory record",
        f, (unsigned long long)file_size_);
  }
  // The EOCD is the last record, followed only by a comment of at most 64 KiB.
  const uint64_t tail_len = std::min<uint64_t>(file_size_, kMaxComment + kEocdSize);
  const uint64_t tail_start = file_size_ - tail_len;
  std::string tail(tail_len, '\0');
  RETURN_IF_ERROR(PRead(tail_start, tail.data(), tail_len, "end-of-central-directory search"));
  const uint8_t* t = reinterpret_cast<const uint8_t*>(tail.data());
  int64_t found = -1;
  for (int64_t i = int64_t(tail_len - kEocdSize); i >= 0; --i) {
    if (Get32(t + i) == kEocdSig && uint64_t(i) + kEocdSize + Get16(t + i + 20) <= tail_len) {
      found = i;
      break;
    }
  }
  if (found < 0) {
    return Errorf(
        "not a zip archive: no end-of-central-directory record in the last %llu bytes "
        "of '%s' (file size %llu; truncated download, or a legacy non-zip torch.save?)",
        (unsigned long long)tail_len, f, (unsigned long long)file_size_);
  }
  const uint8_t* e = t + found;
  const uint64_t eocd_pos = tail_start + uint64_t(found);
  uint64_t num_entries = Get16(e + 10);
  uint64_t cd_size = Get32(e + 12);
  uint64_t cd_offset = Get32(e + 16);
  uint64_t dir_end = eocd_pos;  // the central directory must end before this
  if (Get16(e + 4) != 0 || Get16(e + 6) != 0 || Get16(e + 8) != Get16(e + 10)) {
    return Errorf("'%s': multi-disk zip archives are not supported", f);
  }
  // ZIP64: a locator right before the EOCD points at the ZIP64 EOCD record, whose 64-bit counts
  // replace the saturated 16/32-bit ones (torch writes it for every archive).
  if (eocd_pos >= kLocatorSize) {
    uint8_t loc[kLocatorSize];
    RETURN_IF_ERROR(PRead(eocd_pos - kLocatorSize, loc, kLocatorSize, "zip64 locator"));
    if (Get32(loc) == kLocatorSig) {
      const uint64_t rec = Get64(loc + 8);
      const uint64_t loc_pos = eocd_pos - kLocatorSize;
      if (rec > loc_pos || loc_pos - rec < kEocd64Size) {
        return Errorf(
            "corrupt zip64 locator in '%s': end-of-central-directory record offset %llu "
            "is not before the locator at %llu",
            f, (unsigned long long)rec, (unsigned long long)loc_pos);
      }
      uint8_t r[kEocd64Size];
      RETURN_IF_ERROR(PRead(rec, r, kEocd64Size, "zip64 end-of-central-directory record"));
      if (Get32(r) != kEocd64Sig) {
        return Errorf(
            "corrupt zip64 end-of-central-directory record in '%s' at byte %llu: bad "
            "signature 0x%08x",
            f, (unsigned long long)rec, Get32(r));
      }
      if (Get32(r + 16) != 0 || Get32(r + 20) != 0 || Get64(r + 24) != Get64(r + 32)) {
        return Errorf("'%s': multi-disk zip64 archives are not supported", f);
      }
      num_entries = Get64(r + 32);
      cd_size = Get64(r + 40);
      cd_offset = Get64(r + 48);
      dir_end = rec;
    }
  }
  if (cd_offset > dir_end || cd_size > dir_end - cd_offset) {
    return Errorf(
        "corrupt zip archive '%s': central directory [%llu, +%llu) runs past the "
        "end-of-central-directory record at byte %llu",
        f, (unsigned long long)cd_offset, (unsigned long long)cd_size, (unsigned long long)dir_end);
  }
  if (cd_size > kMaxCentralDirBytes || num_entries > cd_size / kCentralSize) {
    return Errorf("corrupt zip archive '%s': %llu entries in a central directory of %llu bytes", f,
                  (unsigned long long)num_entries, (unsigned long long)cd_size);
  }
  std::string cd(cd_size, '\0');
  RETURN_IF_ERROR(PRead(cd_offset, cd.data(), cd_size, "central directory"));
  const uint8_t* c = reinterpret_cast<const uint8_t*>(cd.data());
  uint64_t pos = 0;
  entries_.reserve(num_entries);
  for (uint64_t i = 0; i < num_entries; ++i) {
    if (cd_size - pos < kCentralSize || Get32(c + pos) != kCentralSig) {
      return Errorf(
          "corrupt central directory in '%s': entry %llu at byte %llu has no valid "
          "header (bad signature or directory too short)",
          f, (unsigned long long)i, (unsigned long long)(cd_offset + pos));
    }
    const uint8_t* h = c + pos;
    const uint16_t flags = Get16(h + 8);
    ZipEntry ent;
    ent.method = Get16(h + 10);
    ent.crc32 = Get32(h + 16);
    ent.compressed_size = Get32(h + 20);
    ent.size = Get32(h + 24);
    const size_t name_len = Get16(h + 28), extra_len = Get16(h + 30), comment_len = Get16(h + 32);
    const uint16_t disk_start = Get16(h + 34);
    ent.local_header_offset = Get32(h + 42);
    if (cd_size - pos - kCentralSize < name_len + extra_len + comment_len) {
      return Errorf(
          "corrupt central directory in '%s': entry %llu at byte %llu runs past the "
          "directory end",
          f, (unsigned long long)i, (unsigned long long)(cd_offset + pos));
    }
    ent.name.assign(reinterpret_cast<const char*>(h + kCentralSize), name_len);
    const std::string pname = Printable(ent.name);
    if (flags & 1) return Errorf("entry '%s' in '%s' is encrypted", pname.c_str(), f);
    // ZIP64 extended information (id 1) holds, in this order, whichever of the fields were
    // saturated: size, compressed size, local header offset, disk number.
    const uint8_t* x = h + kCentralSize + name_len;
    size_t xpos = 0;
    while (extra_len - xpos >= 4) {
      const uint16_t id = Get16(x + xpos), len = Get16(x + xpos + 2);
      if (extra_len - xpos - 4 < len) {
        return Errorf(
            "corrupt central directory in '%s': extra field of entry '%s' runs past "
            "its header",
            f, pname.c_str());
      }
      if (id == 1) {
        const uint8_t* z = x + xpos + 4;
        size_t zl = len;
        auto take = [&](uint64_t* v) -> bool {
          if (zl < 8) return false;
          *v = Get64(z);
          z += 8;
          zl -= 8;
          return true;
        };
        if ((ent.size == 0xffffffffu && !take(&ent.size)) ||
            (ent.compressed_size == 0xffffffffu && !take(&ent.compressed_size)) ||
            (ent.local_header_offset == 0xffffffffu && !take(&ent.local_header_offset))) {
          return Errorf(
              "corrupt central directory in '%s': zip64 extra field of entry '%s' is "
              "too short (%u bytes)",
              f, pname.c_str(), unsigned(len));
        }
      }
      xpos += 4 + len;
    }
    if (disk_start != 0 && disk_start != 0xffff) {
      return Errorf("'%s': entry '%s' is on disk %u; multi-disk archives are not supported", f,
                    pname.c_str(), unsigned(disk_start));
    }
    if (ent.method == 0 && ent.compressed_size != ent.size) {
      return Errorf(
          "corrupt central directory in '%s': stored entry '%s' has compressed size "
          "%llu != size %llu",
          f, pname.c_str(), (unsigned long long)ent.compressed_size, (unsigned long long)ent.size);
    }
    RETURN_IF_ERROR(ReadLocalHeader(&ent, cd_offset));
    if (!index_.emplace(ent.name, entries_.size()).second) {
      return Errorf("corrupt zip archive '%s': duplicate entry '%s'", f, pname.c_str());
    }
    entries_.push_back(std::move(ent));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
  return Status::Ok();
}

Status ZipReader::ReadLocalHeader(ZipEntry* e, uint64_t cd_offset) const {
  const char* f = path_.c_str();
  const std::string pname = Printable(e->name);
  const uint64_t off = e->local_header_offset;
  const uint64_t need = kLocalSize + e->name.size();
  if (off > file_size_ || file_size_ - off < need) {
    return Errorf(
        "truncated or corrupt: local header of entry '%s' at byte %llu ends past file "
        "size %llu of '%s'",
        pname.c_str(), (unsigned long long)off, (unsigned long long)file_size_, f);
  }
  std::string buf(need, '\0');
  RETURN_IF_ERROR(PRead(off, buf.data(), need, "local header"));
  const uint8_t* h = reinterpret_cast<const uint8_t*>(buf.data());
  if (Get32(h) != kLocalSig) {
    return Errorf(
        "corrupt zip archive '%s': no local header for entry '%s' at byte %llu (the "
        "central directory points elsewhere)",
        f, pname.c_str(), (unsigned long long)off);
  }
  if (Get16(h + 26) != e->name.size() ||
      std::memcmp(h + kLocalSize, e->name.data(), e->name.size()) != 0) {
    return Errorf(
        "corrupt zip archive '%s': local header at byte %llu does not match central "
        "directory entry '%s'",
        f, (unsigned long long)off, pname.c_str());
  }
  // Sizes come from the central directory (torch sets the data-descriptor flag and leaves the
  // local ones zero); the local extra field only moves the data start (64-byte alignment).
  e->data_offset = off + need + Get16(h + 28);
  const uint64_t end = e->data_offset + e->compressed_size;
  if (e->data_offset > file_size_ || e->compressed_size > file_size_ - e->data_offset) {
    return Errorf("truncated or corrupt: entry '%s' ends at byte %llu past file size %llu of '%s'",
                  pname.c_str(), (unsigned long long)end, (unsigned long long)file_size_, f);
  }
  if (end > cd_offset) {
    return Errorf(
        "corrupt zip archive '%s': entry '%s' data [%llu, %llu) overlaps the central "
        "directory at byte %llu",
        f, pname.c_str(), (unsigned long long)e->data_offset, (unsigned long long)end,
        (unsigned long long)cd_offset);
  }
  return Status::Ok();
}

Status ZipReader::ReadEntryBytes(const ZipEntry& entry, uint64_t offset, void* buf,
                                 size_t n) const {
  if (entry.method != 0) {
    return Errorf(
        "entry '%s' in '%s' is compressed (method %u); torch.save stores entries "
        "uncompressed, so the archive was probably re-zipped",
        Printable(entry.name).c_str(), path_.c_str(), unsigned(entry.method));
  }
  if (offset > entry.size || n > entry.size - offset) {
    return Errorf("read of %zu bytes at %llu is outside entry '%s' (%llu bytes) in '%s'", n,
                  (unsigned long long)offset, Printable(entry.name).c_str(),
                  (unsigned long long)entry.size, path_.c_str());
  }
  return PRead(entry.data_offset + offset, buf, n, entry.name.c_str());
}

StatusOr<std::string> ZipReader::ReadEntry(const ZipEntry& entry, uint64_t max_bytes) const {
  if (entry.size > max_bytes) {
    return Errorf("entry '%s' in '%s' has %llu bytes, more than the %llu allowed",
                  Printable(entry.name).c_str(), path_.c_str(), (unsigned long long)entry.size,
                  (unsigned long long)max_bytes);
  }
  std::string data(entry.size, '\0');
  RETURN_IF_ERROR(ReadEntryBytes(entry, 0, data.data(), data.size()));
  const uint32_t crc = Crc32(data.data(), data.size());
  if (crc != entry.crc32) {
    return Errorf(
        "CRC mismatch in entry '%s' of '%s': computed 0x%08x, directory says 0x%08x "
        "(corrupt file)",
        Printable(entry.name).c_str(), path_.c_str(), crc, entry.crc32);
  }
  return data;
}

ZipStreamWriter::~ZipStreamWriter() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<std::unique_ptr<ZipStreamWriter>> ZipStreamWriter::Create(const std::string& path,
                                                                   bool zip64) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create", path, errno);
  std::unique_ptr<ZipStreamWriter> w(new ZipStreamWriter());
  w->path_ = path;
  w->fd_ = fd;
  w->zip64_ = zip64;
  return w;
}

Status ZipStreamWriter::WriteAt(const void* p, size_t n, uint64_t off) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, c, n, off_t(off));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoError("write", path_, w < 0 ? errno : EIO);
    c += w;
    n -= size_t(w);
    off += uint64_t(w);
  }
  return Status::Ok();
}

Status ZipStreamWriter::BeginEntry(const std::string& name, uint64_t size, uint64_t gap_before) {
  GLM_CHECK_MSG(!in_entry_, "BeginEntry('%s') inside entry '%s'", name.c_str(), cur_.name.c_str());
  pos_ += gap_before;
  cur_ = Entry{name, pos_, size, 0, zip64_ || pos_ >= 0xffffffffu || size >= 0xffffffffu};
  std::string h;
  Put32(&h, kLocalSig);
  Put16(&h, cur_.z ? 45 : 20);
  Put16(&h, 0);  // flags
  Put16(&h, 0);  // stored
  Put32(&h, 0);  // time, date
  Put32(&h, 0);  // CRC-32: patched by EndEntry
  Put32(&h, cur_.z ? 0xffffffffu : uint32_t(size));
  Put32(&h, cur_.z ? 0xffffffffu : uint32_t(size));
  Put16(&h, uint16_t(name.size()));
  Put16(&h, cur_.z ? 20 : 0);
  h += name;
  if (cur_.z) {
    Put16(&h, 1);
    Put16(&h, 16);
    Put64(&h, size);
    Put64(&h, size);
  }
  RETURN_IF_ERROR(WriteAt(h.data(), h.size(), pos_));
  pos_ += h.size();
  written_ = 0;
  in_entry_ = true;
  return Status::Ok();
}

Status ZipStreamWriter::Write(const void* data, size_t n) {
  GLM_CHECK_MSG(in_entry_ && written_ + n <= cur_.size, "Write past entry '%s' (%llu bytes)",
                cur_.name.c_str(), (unsigned long long)cur_.size);
  cur_.crc = Crc32(data, n, cur_.crc);
  RETURN_IF_ERROR(WriteAt(data, n, pos_));
  pos_ += n;
  written_ += n;
  return Status::Ok();
}

Status ZipStreamWriter::EndEntry() {
  GLM_CHECK_MSG(in_entry_ && written_ == cur_.size, "entry '%s': %llu of %llu bytes written",
                cur_.name.c_str(), (unsigned long long)written_, (unsigned long long)cur_.size);
  std::string crc;
  Put32(&crc, cur_.crc);
  RETURN_IF_ERROR(WriteAt(crc.data(), 4, cur_.offset + 14));
  entries_.push_back(cur_);
  in_entry_ = false;
  return Status::Ok();
}

Status ZipStreamWriter::Finish() {
  GLM_CHECK_MSG(!in_entry_, "Finish() inside entry '%s'", cur_.name.c_str());
  std::string central;
  for (const Entry& e : entries_) {
    Put32(&central, kCentralSig);
    Put16(&central, e.z ? 45 : 20);
    Put16(&central, e.z ? 45 : 20);
    Put16(&central, 0);
    Put16(&central, 0);
    Put32(&central, 0);
    Put32(&central, e.crc);
    Put32(&central, e.z ? 0xffffffffu : uint32_t(e.size));
    Put32(&central, e.z ? 0xffffffffu : uint32_t(e.size));
    Put16(&central, uint16_t(e.name.size()));
    Put16(&central, e.z ? 28 : 0);
    Put16(&central, 0);  // comment
    Put16(&central, 0);  // disk
    Put16(&central, 0);
    Put32(&central, 0);
    Put32(&central, e.z ? 0xffffffffu : uint32_t(e.offset));
    central += e.name;
    if (e.z) {
      Put16(&central, 1);
      Put16(&central, 24);
      Put64(&central, e.size);
      Put64(&central, e.size);
      Put64(&central, e.offset);
    }
  }
  const uint64_t cd_offset = pos_;
  RETURN_IF_ERROR(WriteAt(central.data(), central.size(), pos_));
  pos_ += central.size();
  const bool z = zip64_ || cd_offset >= 0xffffffffu || entries_.size() >= 0xffff;
  std::string end;
  if (z) {
    const uint64_t rec = pos_;
    Put32(&end, kEocd64Sig);
    Put64(&end, kEocd64Size - 12);
    Put16(&end, 45);
    Put16(&end, 45);
    Put32(&end, 0);
    Put32(&end, 0);
    Put64(&end, entries_.size());
    Put64(&end, entries_.size());
    Put64(&end, central.size());
    Put64(&end, cd_offset);
    Put32(&end, kLocatorSig);
    Put32(&end, 0);
    Put64(&end, rec);
    Put32(&end, 1);
  }
  Put32(&end, kEocdSig);
  Put32(&end, 0);  // disk numbers
  Put16(&end, z ? 0xffff : uint16_t(entries_.size()));
  Put16(&end, z ? 0xffff : uint16_t(entries_.size()));
  Put32(&end, z ? 0xffffffffu : uint32_t(central.size()));
  Put32(&end, z ? 0xffffffffu : uint32_t(cd_offset));
  Put16(&end, 0);
  RETURN_IF_ERROR(WriteAt(end.data(), end.size(), pos_));
  pos_ += end.size();
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) return ErrnoError("close", path_, errno);
  return Status::Ok();
}

Status WriteStoredZip(const std::string& path, const std::vector<ZipWriteEntry>& entries,
                      bool zip64) {
  ASSIGN_OR_RETURN(std::unique_ptr<ZipStreamWriter> w, ZipStreamWriter::Create(path, zip64));
  for (const ZipWriteEntry& e : entries) {
    RETURN_IF_ERROR(w->BeginEntry(e.name, e.data.size(), e.gap_before));
    RETURN_IF_ERROR(w->Write(e.data.data(), e.data.size()));
    RETURN_IF_ERROR(w->EndEntry());
  }
  return w->Finish();
}

}  // namespace glm
