// FileReader engines (io_uring and pread, O_DIRECT and buffered) on self-describing pattern
// files: every 4-byte word holds the low 32 bits of its own file offset, so a misplaced, stale,
// short or poisoned block is caught exactly. Faults (short reads, EAGAIN, EIO, delays) are
// injected into the real engines' completion path. Tests that need what this machine lacks
// (io_uring, O_DIRECT) skip with the reason.
#include "offload/uring_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "offload/file_reader.h"
#include "offload/host_buffer.h"

namespace glm {
namespace {

// A directory on the build tree's filesystem (a real disk, where O_DIRECT works; /tmp may be
// tmpfs), removed at the end.
class DiskTempDir {
 public:
  DiskTempDir() {
    std::string tmpl = std::string(GLM_BINARY_DIR) + "/test-tmp-XXXXXX";
    GLM_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~DiskTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WritePatternFile(const std::string& path, uint64_t size) {
  std::vector<uint32_t> words((size + 3) / 4);
  for (size_t i = 0; i < words.size(); ++i) words[i] = uint32_t(i * 4);
  FILE* f = std::fopen(path.c_str(), "wb");
  GLM_CHECK(f != nullptr);
  GLM_CHECK(std::fwrite(words.data(), 1, size, f) == size);
  GLM_CHECK(std::fclose(f) == 0);
}

// Checks buf against the pattern of [offset, offset+bytes); past EOF the reader zero-fills.
::testing::AssertionResult MatchesPattern(const char* buf, uint64_t offset, uint64_t bytes,
                                          uint64_t file_size) {
  for (uint64_t i = 0; i + 4 <= bytes; i += 4) {
    const uint64_t at = offset + i;
    uint32_t found;
    std::memcpy(&found, buf + i, 4);
    const uint32_t wanted = at + 4 <= file_size ? uint32_t(at) : 0;
    if (found != wanted) {
      return ::testing::AssertionFailure()
             << "at file offset " << at << ": found " << found << StrFormat(" (0x%08x)", found)
             << ", wanted " << wanted;
    }
  }
  return ::testing::AssertionSuccess();
}

// Opens a reader with exactly the engine and O_DIRECT asked for, or says why it cannot.
std::unique_ptr<FileReader> OpenExact(const std::string& path, ReaderOptions o, std::string* skip) {
  auto r = FileReader::Open(path, o);
  if (!r.ok()) {
    *skip = r.status().message();
    return nullptr;
  }
  if (o.o_direct && !(*r)->direct()) {
    *skip = "O_DIRECT is refused on " + path;
    return nullptr;
  }
  return std::move(r).value();
}

#define OPEN_OR_SKIP(var, path, opts)       \
  std::string _skip;                        \
  auto var = OpenExact(path, opts, &_skip); \
  if (!var) GTEST_SKIP() << _skip;

class ReaderTest : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    path_ = dir_.File("pattern.bin");
    WritePatternFile(path_, kSize);
  }
  ReaderOptions Opts(uint64_t block, int qd, bool direct = true) const {
    return ReaderOptions{
        .engine = GetParam(), .o_direct = direct, .block_bytes = block, .queue_depth = qd};
  }
  static constexpr uint64_t kSize = (8 << 20) + 12 * 1024 + 4;  // not a multiple of anything
  DiskTempDir dir_;
  std::string path_;
};

TEST_P(ReaderTest, WholeFileAtManyBlockSizesAndDepths) {
  const uint64_t bytes = AlignUp(kSize, 4096);
  auto buf = HostBuffer::Allocate(bytes, nullptr, "test");
  ASSERT_TRUE(buf.ok());
  for (uint64_t block : {4096ull, 65536ull, 1ull << 20}) {
    for (int qd : {1, 4, 32}) {
      OPEN_OR_SKIP(reader, path_, Opts(block, qd));
      std::memset(buf->data(), 0xEE, bytes);
      const ReadRequest req{.offset = 0, .bytes = bytes, .dst = buf->data()};
      ASSERT_TRUE(reader->ReadAll(std::span(&req, 1)).ok());
      EXPECT_TRUE(MatchesPattern(buf->data(), 0, bytes, kSize))
          << "block " << block << " qd " << qd << " " << reader->Describe();
      EXPECT_LE(reader->stats().max_in_flight, qd);
      // The queue is kept full: with more blocks than the depth, all qd slots were used.
      if (GetParam() != IoEngine::kPread && bytes / block >= uint64_t(qd)) {
        EXPECT_EQ(reader->stats().max_in_flight, qd);
      }
    }
  }
}

TEST_P(ReaderTest, RandomRangesIntoRegisteredAndPlainBuffers) {
  OPEN_OR_SKIP(reader, path_, Opts(64 << 10, 8));
  auto reg = HostBuffer::Allocate(4 << 20, nullptr, "registered");
  auto plain = HostBuffer::Allocate(4 << 20, nullptr, "plain");
  ASSERT_TRUE(reg.ok() && plain.ok());
  const iovec iov{reg->data(), reg->size()};
  reader->RegisterBuffers(std::span(&iov, 1));
  std::mt19937_64 rng(7);
  for (int round = 0; round < 20; ++round) {
    std::vector<ReadRequest> reqs;
    // Up to four disjoint 4 KiB-aligned ranges per buffer, some running past EOF.
    for (int b = 0; b < 2; ++b) {
      char* base = b ? plain->data() : reg->data();
      for (int i = 0; i < 4; ++i) {
        const uint64_t len = 4096 * (1 + rng() % 255);  // <= 1 MiB - 4 KiB
        const uint64_t off = 4096 * (rng() % (AlignUp(kSize, 4096) / 4096 + 2));
        reqs.push_back(ReadRequest{
            .offset = off, .bytes = len, .dst = base + i * (1 << 20), .tag = uint64_t(b * 4 + i)});
      }
    }
    ASSERT_TRUE(reader->ReadAll(reqs).ok());
    for (const ReadRequest& r : reqs) {
      ASSERT_TRUE(MatchesPattern(r.dst, r.offset, r.bytes, kSize)) << "request " << r.tag;
    }
  }
}

TEST_P(ReaderTest, BufferedReadsAnyOffset) {
  // Without O_DIRECT nothing needs alignment.
  OPEN_OR_SKIP(reader, path_, Opts(4096, 4, /*direct=*/false));
  std::vector<char> buf(100000 + 8);
  const ReadRequest req{.offset = 12, .bytes = 100000, .dst = buf.data()};
  ASSERT_TRUE(reader->ReadAll(std::span(&req, 1)).ok());
  EXPECT_TRUE(MatchesPattern(buf.data(), 12, 100000, kSize));
}

TEST_P(ReaderTest, ShortReadsEagainAndDelaysAreRetried) {
  FaultInjector faults(
      FaultOptions{.short_read = 0.3, .eagain = 0.2, .delay = 0.05, .delay_us = 200, .seed = 3});
  ReaderOptions o = Opts(64 << 10, 8);
  o.faults = &faults;
  OPEN_OR_SKIP(reader, path_, o);
  const uint64_t bytes = AlignUp(kSize, 4096);
  auto buf = HostBuffer::Allocate(bytes, nullptr, "test");
  ASSERT_TRUE(buf.ok());
  const ReadRequest req{.offset = 0, .bytes = bytes, .dst = buf->data()};
  ASSERT_TRUE(reader->ReadAll(std::span(&req, 1)).ok());
  EXPECT_TRUE(MatchesPattern(buf->data(), 0, bytes, kSize));
  EXPECT_GT(faults.short_reads.load(), 0);
  EXPECT_GT(faults.eagains.load(), 0);
  EXPECT_GT(faults.delays.load(), 0);
  EXPECT_EQ(reader->stats().short_reads, faults.short_reads.load());
  EXPECT_EQ(reader->stats().retries, faults.eagains.load());
}

// The reader's time with blocks in flight and their integral (glm-bench's "blocks in flight"):
// busy no longer than the read took, at least one and at most the queue depth in flight on
// average; with io_uring and 128 blocks to read, the queue stays mostly full.
TEST_P(ReaderTest, CountsTheBlocksInFlightOverTime) {
  OPEN_OR_SKIP(reader, path_, Opts(64 << 10, 4));
  const uint64_t bytes = AlignUp(kSize, 4096);
  auto buf = HostBuffer::Allocate(bytes, nullptr, "test");
  ASSERT_TRUE(buf.ok());
  const ReadRequest req{.offset = 0, .bytes = bytes, .dst = buf->data()};
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(reader->ReadAll(std::span(&req, 1)).ok());
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const ReaderStats& st = reader->stats();
  ASSERT_GT(st.busy_s, 0);
  EXPECT_LE(st.busy_s, wall);
  const double mean = st.block_s / st.busy_s;
  EXPECT_GE(mean, 1.0);
  EXPECT_LE(mean, 4.0 + 1e-9);
  if (GetParam() == IoEngine::kUring && reader->direct()) {
    EXPECT_GT(mean, 2.0);
  }
}

TEST_P(ReaderTest, EioFailsTheRequestWithFileAndOffset) {
  const uint64_t bad = 3 * (1 << 20) + 8192;
  FaultInjector faults(FaultOptions{.eio_at = bad});
  ReaderOptions o = Opts(64 << 10, 8);
  o.faults = &faults;
  OPEN_OR_SKIP(reader, path_, o);
  auto buf = HostBuffer::Allocate(8 << 20, nullptr, "test");
  ASSERT_TRUE(buf.ok());
  // Two requests: the one covering the bad block fails, the other completes intact.
  const ReadRequest reqs[] = {
      {.offset = 0, .bytes = 4 << 20, .dst = buf->data(), .tag = 1},
      {.offset = 4 << 20, .bytes = 4 << 20, .dst = buf->data() + (4 << 20), .tag = 2}};
  for (const ReadRequest& r : reqs) reader->Enqueue(r);
  std::vector<ReadCompletion> done;
  while (reader->pending() > 0) reader->Poll(true, &done);
  ASSERT_EQ(done.size(), 2u);
  for (const ReadCompletion& c : done) {
    if (c.tag == 1) {
      ASSERT_FALSE(c.status.ok());
      const std::string& m = c.status.message();
      EXPECT_NE(m.find(path_), std::string::npos) << m;
      EXPECT_NE(m.find("offset " + std::to_string(AlignDown(bad, 64 << 10))), std::string::npos)
          << m;
      EXPECT_NE(m.find(std::strerror(EIO)), std::string::npos) << m;
    } else {
      EXPECT_TRUE(c.status.ok()) << c.status.message();
      EXPECT_TRUE(MatchesPattern(buf->data() + (4 << 20), 4 << 20, 4 << 20, kSize));
    }
  }
  EXPECT_EQ(faults.eios.load(), 1);
}

TEST_P(ReaderTest, AbandonWaitsForEveryBlockInFlight) {
  OPEN_OR_SKIP(reader, path_, Opts(64 << 10, 16));
  auto buf = HostBuffer::Allocate(AlignUp(kSize, 4096), nullptr, "test");
  ASSERT_TRUE(buf.ok());
  reader->Enqueue(ReadRequest{.offset = 0, .bytes = buf->size(), .dst = buf->data()});
  std::vector<ReadCompletion> done;
  reader->Poll(false, &done);
  reader->Abandon();
  EXPECT_EQ(reader->pending(), 0);
  // Usable again afterwards.
  const ReadRequest req{.offset = 0, .bytes = 1 << 20, .dst = buf->data()};
  ASSERT_TRUE(reader->ReadAll(std::span(&req, 1)).ok());
  EXPECT_TRUE(MatchesPattern(buf->data(), 0, 1 << 20, kSize));
}

TEST_P(ReaderTest, BandwidthProbeReadsTheRange) {
  auto r = MeasureSequentialRead(path_, Opts(1 << 20, 8), 0, 4 << 20, 1 << 20);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->bytes, 4u << 20);
  EXPECT_GT(r->bytes_per_s, 0);
  // Spread over the file in 1 MiB chunks; more than the file asked: the whole file.
  auto s = MeasureSequentialRead(path_, Opts(1 << 20, 8), 0, 3 << 20, 1 << 20, /*spread=*/true);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->bytes, 3u << 20);
  auto all = MeasureSequentialRead(path_, Opts(1 << 20, 8), 0, 1ull << 40, 1 << 20, true);
  ASSERT_TRUE(all.ok()) << all.status().message();
  EXPECT_EQ(all->bytes, AlignUp(kSize, 4096));
}

INSTANTIATE_TEST_SUITE_P(Engines, ReaderTest, ::testing::Values(IoEngine::kUring, IoEngine::kPread),
                         [](const auto& info) {
                           return std::string(IoEngineName(info.param)) == "io_uring" ? "Uring"
                                                                                      : "Pread";
                         });

TEST(ReaderFallback, BufferedWhereODirectIsRefused) {
  // tmpfs refused O_DIRECT before Linux 6.6; where it still does, the reader must fall back.
  struct statfs fs;
  if (statfs("/dev/shm", &fs) != 0 || fs.f_type != 0x01021994 /* TMPFS_MAGIC */) {
    GTEST_SKIP() << "no tmpfs at /dev/shm";
  }
  char tmpl[] = "/dev/shm/glmtest-XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  const std::string path = tmpl;
  WritePatternFile(path, 1 << 20);
  auto reader = FileReader::Open(path, ReaderOptions{});
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  const bool direct = (*reader)->direct();
  std::vector<char> buf(1 << 20);
  const ReadRequest req{.offset = 0, .bytes = 1 << 20, .dst = buf.data()};
  Status st = direct ? Status::Ok() : (*reader)->ReadAll(std::span(&req, 1));
  unlink(path.c_str());
  if (direct) GTEST_SKIP() << "tmpfs accepts O_DIRECT on this kernel: no fallback to test";
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_TRUE(MatchesPattern(buf.data(), 0, 1 << 20, 1 << 20));
}

TEST(ReaderFallback, BufferedOnProcfs) {
  // procfs refuses O_DIRECT at open (EINVAL) on every kernel we know: the same fallback path as
  // an old tmpfs, on a file whose content we can compare. Its files report size 0, so whatever
  // the read returns past the reported size is zero-filled after the content.
  const char* path = "/proc/version";
  const int probe = open(path, O_RDONLY | O_DIRECT);
  if (probe >= 0) {
    close(probe);
    GTEST_SKIP() << path << " accepts O_DIRECT here: no fallback to test";
  }
  std::string want;
  {
    std::ifstream in(path);
    std::getline(in, want, '\0');
  }
  ASSERT_FALSE(want.empty());
  for (IoEngine engine : {IoEngine::kAuto, IoEngine::kPread}) {
    auto reader = FileReader::Open(path, ReaderOptions{.engine = engine});
    ASSERT_TRUE(reader.ok()) << reader.status().message();
    EXPECT_FALSE((*reader)->direct());
    std::vector<char> buf(8192, 'x');
    const ReadRequest req{.offset = 0, .bytes = buf.size(), .dst = buf.data()};
    ASSERT_TRUE((*reader)->ReadAll(std::span(&req, 1)).ok());
    EXPECT_EQ(std::string(buf.data(), want.size()), want);
  }
}

TEST(ReaderOpen, ErrorsNameThePath) {
  auto r = FileReader::Open("/nonexistent/model.gguf", ReaderOptions{});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/nonexistent/model.gguf"), std::string::npos);
  auto bad = FileReader::Open("/nonexistent", ReaderOptions{.block_bytes = 1000});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("block size"), std::string::npos);
}

TEST(ParseBytes, UnitsAndErrors) {
  EXPECT_EQ(ParseBytes("4096").value(), 4096u);
  EXPECT_EQ(ParseBytes("1.5G").value(), 3ull << 29);
  EXPECT_EQ(ParseBytes("800M").value(), 800ull << 20);
  EXPECT_EQ(ParseBytes("2GiB").value(), 2ull << 30);
  EXPECT_EQ(ParseBytes("64k").value(), 64ull << 10);
  EXPECT_FALSE(ParseBytes("lots").ok());
  EXPECT_FALSE(ParseBytes("3X").ok());
  EXPECT_FALSE(ParseBytes("-1G").ok());
}

TEST(MemoryAccount, RefusesPastTheBudgetAndKeepsTheLedger) {
  MemoryAccount acct(10 << 20);
  auto a = HostBuffer::Allocate(6 << 20, &acct, "a");
  ASSERT_TRUE(a.ok());
  auto b = HostBuffer::Allocate(6 << 20, &acct, "b");
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("budget exceeded"), std::string::npos);
  EXPECT_NE(b.status().message().find("a 6.0 MiB"), std::string::npos) << b.status().message();
  EXPECT_EQ(acct.used(), 6u << 20);
  a->Reset();
  EXPECT_EQ(acct.used(), 0u);
  EXPECT_EQ(acct.peak(), 6u << 20);
}

}  // namespace
}  // namespace glm
