// GGUF container tests: round trip, layout, checksums, hostile headers, writer failure cleanup.
#include "offload/gguf.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "tests/test_util.h"

namespace glm {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// The data pattern shared with tests/gguf_npm/check.mjs: the byte at data-section offset p is
// byte (p % 4) of the little-endian u32 p, so every 4-byte word holds its own offset and a
// misplaced, stale or short block is caught exactly.
uint8_t PatternByte(uint64_t p) { return static_cast<uint8_t>(p >> (8 * (p & 3))); }

struct TensorDecl {
  std::string name;
  GgmlType type;
  std::vector<int64_t> shape;
  int extent;
  uint64_t bytes = 0, offset = 0;  // computed by Layout()
};

// Our own statement of the layout rule: each tensor at the next multiple of the alignment.
void Layout(std::vector<TensorDecl>& ts, uint64_t alignment) {
  uint64_t cursor = 0;
  for (auto& t : ts) {
    t.bytes = GgmlTypeSize(t.type);
    for (int64_t d : t.shape) t.bytes *= d;
    t.offset = (cursor + alignment - 1) / alignment * alignment;
    cursor = t.offset + t.bytes;
  }
}

// Writes each tensor's pattern bytes in uneven pieces (1, 7, 4099, rest) so tensors are both
// split across calls and completed mid-call.
Status WritePatternData(GgufWriter& w, const std::vector<TensorDecl>& ts) {
  for (const auto& t : ts) {
    std::string data(t.bytes, '\0');
    for (uint64_t i = 0; i < t.bytes; ++i) data[i] = static_cast<char>(PatternByte(t.offset + i));
    size_t done = 0;
    for (size_t piece : {size_t{1}, size_t{7}, size_t{4099}, data.size()}) {
      const size_t n = std::min(piece, data.size() - done);
      RETURN_IF_ERROR(w.WriteTensorData(data.data() + done, n));
      done += n;
    }
  }
  return Status::Ok();
}

GgufValue Val(GgufValueType t, decltype(GgufValue::v) v) {
  GgufValue g;
  g.type = t;
  g.v = std::move(v);
  return g;
}
GgufValue Arr(GgufValueType elem, decltype(GgufValue::v) v) {
  GgufValue g;
  g.type = GgufValueType::kArray;
  g.elem_type = elem;
  g.v = std::move(v);
  return g;
}

using T = GgufValueType;
using U64s = std::vector<uint64_t>;
using I64s = std::vector<int64_t>;

// Metadata of every value type, with the edge values of each.
std::vector<std::pair<std::string, GgufValue>> EveryTypeMetadata() {
  return {
      {"t.u8", Val(T::kU8, uint64_t{255})},
      {"t.i8", Val(T::kI8, int64_t{-128})},
      {"t.u16", Val(T::kU16, uint64_t{65535})},
      {"t.i16", Val(T::kI16, int64_t{-32768})},
      {"t.u32", Val(T::kU32, uint64_t{4294967295u})},
      {"t.i32", Val(T::kI32, int64_t{-2147483647 - 1})},
      {"t.f32", Val(T::kF32, double{0.1f})},
      {"t.bool", Val(T::kBool, true)},
      {"t.string", Val(T::kString, std::string("GLM-130B \xe2\x9c\x93 \"quoted\"\n"))},
      {"t.u64", Val(T::kU64, std::numeric_limits<uint64_t>::max())},
      {"t.i64", Val(T::kI64, std::numeric_limits<int64_t>::min())},
      {"t.f64", Val(T::kF64, 1e-300)},
      {"t.empty_string", Val(T::kString, std::string())},
      {"a.u8", Arr(T::kU8, U64s{0, 1, 255})},
      {"a.i8", Arr(T::kI8, I64s{-128, 0, 127})},
      {"a.u16", Arr(T::kU16, U64s{65535})},
      {"a.i16", Arr(T::kI16, I64s{-2, 32767})},
      {"a.u32", Arr(T::kU32, U64s{7, 4294967295u})},
      {"a.i32", Arr(T::kI32, I64s{-5, 150000})},
      {"a.f32", Arr(T::kF32, std::vector<double>{1.5, -0.0, double{3.14159f}})},
      {"a.bool", Arr(T::kBool, U64s{1, 0, 1})},
      {"a.string", Arr(T::kString, std::vector<std::string>{"[MASK]", "", "\xe4\xb8\xad"})},
      {"a.u64", Arr(T::kU64, U64s{0, 1ull << 63, ~0ull})},
      {"a.i64", Arr(T::kI64, I64s{std::numeric_limits<int64_t>::min(), -1})},
      {"a.f64", Arr(T::kF64, std::vector<double>{1e300, -2.5})},
      {"a.empty", Arr(T::kU32, U64s{})},
  };
}

std::vector<TensorDecl> OddTensors() {
  return {
      {"token_embd.weight", GgmlType::kF16, {3, 5}, 0},
      {"output_norm.weight", GgmlType::kF32, {7}, 0},
      {"blk.0.attn_qkv.weight", GgmlType::kF16, {1, 1, 3, 5}, 1},
      {"blk.0.attn_qkv.bias", GgmlType::kF32, {1024}, 1},  // exactly one alignment unit
      {"blk.0.ffn_up.weight", GgmlType::kF32, {4097}, 1},  // spans two units
      {"blk.1.bf16", GgmlType::kBF16, {2, 3, 5}, 2},
      {"blk.1.i8", GgmlType::kI8, {13}, 2},
      {"blk.1.i32", GgmlType::kI32, {2, 3}, 3},
  };
}

// Writes `ts` (laid out by Layout) with `kv` metadata and pattern data.
Status WriteFile(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& kv,
                 std::vector<TensorDecl>& ts, uint32_t alignment = 4096) {
  Layout(ts, alignment);
  GgufWriter w(path, alignment);
  for (const auto& [k, v] : kv) w.Set(k, v);
  for (const auto& t : ts) w.AddTensor(t.name, t.type, t.shape, t.extent);
  RETURN_IF_ERROR(w.Begin());
  RETURN_IF_ERROR(WritePatternData(w, ts));
  return w.Finish();
}

bool SameValue(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type) return false;
  if (a.type == GgufValueType::kArray && a.elem_type != b.elem_type) return false;
  return a.v == b.v;  // no NaNs in these fixtures
}

// Position of tensor info `name` (its u64 name length) in the header bytes.
size_t FindTensorInfo(const std::string& bytes, const std::string& name) {
  std::string needle(8, '\0');
  const uint64_t n = name.size();
  std::memcpy(needle.data(), &n, 8);
  needle += name;
  const size_t at = bytes.find(needle);
  GLM_CHECK(at != std::string::npos);
  return at;
}

template <typename V>
void Poke(std::string& bytes, size_t at, V v) {
  GLM_CHECK(at + sizeof(V) <= bytes.size());
  std::memcpy(bytes.data() + at, &v, sizeof(V));
}

class GgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("model.gguf");
    tensors_ = OddTensors();
    kv_ = EveryTypeMetadata();
    kv_.insert(kv_.begin(), {"general.architecture", Val(T::kString, std::string("glm130b"))});
    ASSERT_TRUE(WriteFile(path_, kv_, tensors_).ok());
  }
  // Writes `bytes` to a new file and returns Open's error (failing the test if it opened).
  std::string OpenError(const std::string& bytes) {
    const std::string p = dir_.File("corrupt.gguf");
    WriteAll(p, bytes);
    auto f = GgufFile::Open(p);
    EXPECT_FALSE(f.ok()) << "a corrupt file opened";
    return f.ok() ? "" : f.status().message();
  }

  TempDir dir_;
  std::string path_;
  std::vector<TensorDecl> tensors_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
};

TEST_F(GgufTest, RoundTripsEveryValueAndByte) {
  auto f = GgufFile::Open(path_);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const GgufFile& g = **f;
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(g.alignment(), 4096u);

  // User keys in insertion order, then the ones the writer adds.
  ASSERT_EQ(g.metadata().size(), kv_.size() + 4);
  for (size_t i = 0; i < kv_.size(); ++i) {
    EXPECT_EQ(g.metadata()[i].first, kv_[i].first);
    EXPECT_TRUE(SameValue(g.metadata()[i].second, kv_[i].second))
        << kv_[i].first << ": wrote " << kv_[i].second.ToString() << ", read "
        << g.metadata()[i].second.ToString();
  }
  EXPECT_EQ(g.metadata()[kv_.size()].first, "general.alignment");
  EXPECT_EQ(g.GetUInt("general.alignment").value(), 4096u);

  ASSERT_EQ(g.tensors().size(), tensors_.size());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const GgufTensorInfo& t = g.tensors()[i];
    SCOPED_TRACE(tensors_[i].name);
    EXPECT_EQ(t.name, tensors_[i].name);
    EXPECT_EQ(t.type, tensors_[i].type);
    EXPECT_EQ(t.shape, tensors_[i].shape);
    EXPECT_EQ(t.offset, tensors_[i].offset);
    EXPECT_EQ(t.bytes, tensors_[i].bytes);
    EXPECT_EQ(t.extent, tensors_[i].extent);
    EXPECT_EQ(t.offset % 4096, 0u);
    EXPECT_EQ(g.FindTensor(t.name), &t);
  }
  EXPECT_EQ(g.FindTensor("nope"), nullptr);

  // On disk ne[] is innermost first: the row-major [3, 5] embedding is stored as ne = {5, 3}.
  const std::string bytes = ReadAll(path_);
  const size_t ne_at = FindTensorInfo(bytes, "token_embd.weight") + 8 + 17 + 4;
  uint64_t ne[2];
  std::memcpy(ne, bytes.data() + ne_at, sizeof(ne));
  EXPECT_EQ(ne[0], 5u);
  EXPECT_EQ(ne[1], 3u);

  // Every byte of the data section: tensor bytes carry the pattern, padding is zero.
  ASSERT_EQ(bytes.size(), g.file_size());
  EXPECT_EQ(g.data_offset() % 4096, 0u);
  std::vector<int> owner(g.file_size() - g.data_offset(), -1);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    for (uint64_t b = 0; b < tensors_[i].bytes; ++b) owner[tensors_[i].offset + b] = int(i);
  }
  for (uint64_t p = 0; p < owner.size(); ++p) {
    const uint8_t want = owner[p] >= 0 ? PatternByte(p) : 0;
    ASSERT_EQ(static_cast<uint8_t>(bytes[g.data_offset() + p]), want) << "data offset " << p;
  }

  // Extents tile the data section on aligned boundaries; their digests are XXH64 of the bytes.
  ASSERT_EQ(g.extents().size(), 4u);
  uint64_t next = 0;
  for (size_t e = 0; e < g.extents().size(); ++e) {
    const GgufExtent& x = g.extents()[e];
    EXPECT_EQ(x.offset, next) << "extent " << e;
    EXPECT_EQ(x.size % 4096, 0u);
    EXPECT_EQ(x.xxh64, XXH64(bytes.data() + g.data_offset() + x.offset, x.size, 0));
    EXPECT_TRUE(g.VerifyExtent(int(e)).ok());
    next = x.offset + x.size;
  }
  EXPECT_EQ(g.data_offset() + next, g.file_size());
  EXPECT_EQ(g.TensorsInExtent(1), (std::vector<int>{2, 3, 4}));

  uint64_t last_done = 0, calls = 0;
  EXPECT_TRUE(g.VerifyAll([&](uint64_t done, uint64_t total) {
                 EXPECT_GT(done, last_done);
                 EXPECT_EQ(total, next);
                 last_done = done;
                 ++calls;
               }).ok());
  EXPECT_EQ(last_done, next);
  EXPECT_GE(calls, 4u);
  EXPECT_FALSE(g.VerifyExtent(4).ok());
  EXPECT_FALSE(g.VerifyExtent(-1).ok());
}

TEST_F(GgufTest, TypedGettersNameKeyAndTypes) {
  auto f = GgufFile::Open(path_);
  ASSERT_TRUE(f.ok()) << f.status().message();
  const GgufFile& g = **f;
  EXPECT_EQ(g.GetUInt("t.u8").value(), 255u);
  EXPECT_EQ(g.GetUInt("t.u64").value(), ~0ull);
  EXPECT_EQ(g.GetInt("t.i8").value(), -128);
  EXPECT_EQ(g.GetInt("t.u32").value(), 4294967295ll);
  EXPECT_FLOAT_EQ(g.GetFloat("t.f32").value(), 0.1f);
  EXPECT_EQ(g.GetString("general.architecture").value(), "glm130b");
  EXPECT_EQ(g.GetArrayUInt("a.u32").value(), (U64s{7, 4294967295u}));
  EXPECT_EQ(g.GetArrayUInt("a.empty").value(), U64s{});

  auto neg = g.GetUInt("t.i8");
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("t.i8"), std::string::npos);
  auto big = g.GetInt("t.u64");
  EXPECT_FALSE(big.ok());
  auto wrong = g.GetString("t.u32");
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("'t.u32' is u32, expected string"), std::string::npos)
      << wrong.status().message();
  auto missing = g.GetFloat("no.such.key");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("'no.such.key' not found"), std::string::npos);
  EXPECT_FALSE(g.GetArrayUInt("a.i8").ok());  // has a negative element
  EXPECT_FALSE(g.GetArrayUInt("a.bool").ok());

  EXPECT_EQ(g.Find("a.u8")->ToString(), "[0, 1, 255]");
  EXPECT_EQ(g.Find("a.u64")->ToString(1), "[0, ... (3 total)]");
  EXPECT_EQ(g.Find("a.bool")->ToString(), "[true, false, true]");
  EXPECT_EQ(g.Find("t.string")->ToString(), "\"GLM-130B \xe2\x9c\x93 \\\"quoted\\\"\\n\"");
  EXPECT_EQ(g.Find("t.f32")->ToString(), "0.100000001");
  EXPECT_EQ(g.Find("a.string")->TypeName(), "array<string>");
}

TEST(GgufValue, ToStringEscapesHostileBytes) {
  // Terminal escapes, a C1 control, a lone continuation byte and a surrogate are escaped;
  // well-formed UTF-8 passes through.
  const GgufValue v = Val(T::kString, std::string("\x1b[31m\xc2\x9b\x80\xed\xa0\x80\xe4\xb8\xad"));
  EXPECT_EQ(v.ToString(), "\"\\x1b[31m\\xc2\\x9b\\x80\\xed\\xa0\\x80\xe4\xb8\xad\"");
  EXPECT_EQ(Val(T::kString, std::string(300, 'a')).ToString(),
            "\"" + std::string(256, 'a') + "...\" (300 bytes)");
  EXPECT_EQ(Arr(T::kF64, std::vector<double>{NAN, -INFINITY}).ToString(), "[nan, -inf]");
}

TEST_F(GgufTest, FlippedDataByteFailsItsExtent) {
  for (bool padding : {false, true}) {
    SCOPED_TRACE(padding ? "flip in padding" : "flip in tensor data");
    std::string bytes = ReadAll(path_);
    auto f0 = GgufFile::Open(path_);
    ASSERT_TRUE(f0.ok());
    const uint64_t data = (*f0)->data_offset();
    // Extent 1 = blk.0.*; byte 5 of blk.0.attn_qkv.bias, or the padding after blk.0.attn_qkv.
    const uint64_t at =
        data + (padding ? tensors_[2].offset + tensors_[2].bytes + 3 : tensors_[3].offset + 5);
    bytes[at] ^= 0x10;
    const std::string bad = dir_.File("flipped.gguf");
    WriteAll(bad, bytes);
    auto f = GgufFile::Open(bad);
    ASSERT_TRUE(f.ok()) << f.status().message();  // the header is intact
    EXPECT_TRUE((*f)->VerifyExtent(0).ok());
    Status st = (*f)->VerifyExtent(1);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("extent 1"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("blk.0.attn_qkv.bias"), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("flipped.gguf"), std::string::npos) << st.message();
    EXPECT_TRUE((*f)->VerifyExtent(2).ok());
    Status all = (*f)->VerifyAll();
    EXPECT_FALSE(all.ok());
    EXPECT_NE(all.message().find("extent 1"), std::string::npos);
  }
}

// Runs a built tool; returns its exit code (-1 if it died of a signal) and its output.
int RunTool(const std::string& cmd, std::string* out) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  GLM_CHECK(p != nullptr);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(GgufTest, InspectToolListsVerifiesAndRejects) {
  const std::string tool = std::string(GLM_BINARY_DIR) + "/glm-inspect";
  if (access(tool.c_str(), X_OK) != 0) GTEST_SKIP() << tool << " is not built";
  std::string out;
  EXPECT_EQ(RunTool(tool + " --verify " + path_, &out), 0) << out;
  EXPECT_NE(out.find("all 4 extents OK"), std::string::npos) << out;
  EXPECT_NE(out.find("blk.0.ffn_up.weight"), std::string::npos);
  EXPECT_NE(out.find("[1, 1, 3, 5]"), std::string::npos);

  out.clear();
  EXPECT_EQ(RunTool(tool + " --json " + path_, &out), 0) << out;
  EXPECT_NE(out.find("\"t.u64\": {\"type\": \"u64\", \"value\": \"18446744073709551615\"}"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("\"shape\": [2, 3, 5]"), std::string::npos);

  std::string bytes = ReadAll(path_);
  auto f = GgufFile::Open(path_);
  ASSERT_TRUE(f.ok());
  bytes[(*f)->data_offset() + tensors_[6].offset] ^= 1;  // blk.1.i8, extent 2
  const std::string bad = dir_.File("bad.gguf");
  WriteAll(bad, bytes);
  out.clear();
  EXPECT_EQ(RunTool(tool + " --verify " + bad, &out), 1) << out;
  EXPECT_NE(out.find("extent 2"), std::string::npos) << out;
  EXPECT_NE(out.find("blk.1.i8"), std::string::npos) << out;

  WriteAll(bad, "GGUF\x03");
  out.clear();
  EXPECT_EQ(RunTool(tool + " " + bad, &out), 1) << out;
  EXPECT_NE(out.find("truncated"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunTool(tool + " " + dir_.File("missing.gguf"), &out), 1) << out;
  out.clear();
  EXPECT_EQ(RunTool(tool, &out), 2) << out;
}

TEST_F(GgufTest, EveryTruncationIsAnError) {
  const std::string bytes = ReadAll(path_);
  auto f = GgufFile::Open(path_);
  ASSERT_TRUE(f.ok());
  const uint64_t data = (*f)->data_offset();
  const std::string p = dir_.File("short.gguf");
  for (uint64_t n = 0; n < bytes.size(); n += n < data ? 1 : 509) {
    WriteAll(p, bytes.substr(0, n));
    auto g = GgufFile::Open(p);
    ASSERT_FALSE(g.ok()) << "opened with only " << n << " of " << bytes.size() << " bytes";
    ASSERT_NE(g.status().message().find("truncated"), std::string::npos)
        << n << ": " << g.status().message();
  }
}

TEST_F(GgufTest, CorruptHeadersGiveClearErrors) {
  const std::string good = ReadAll(path_);
  auto expect = [&](std::string bytes, const std::string& want) {
    const std::string msg = OpenError(bytes);
    EXPECT_NE(msg.find(want), std::string::npos) << "expected '" << want << "' in: " << msg;
  };
  std::string b = good;
  b[0] = 'X';
  expect(b, "not a GGUF file");
  b = good;
  Poke<uint32_t>(b, 4, 2);
  expect(b, "version 2 is not supported");
  b = good;
  Poke<uint64_t>(b, 8, ~0ull);
  expect(b, "cannot fit");
  b = good;
  Poke<uint64_t>(b, 16, 1ull << 40);
  expect(b, "cannot fit");
  b = good;
  Poke<uint64_t>(b, 24, good.size());  // first key's length runs past EOF
  expect(b, "runs past the end of the file");
  b = good;
  Poke<uint64_t>(b, 24, ~0ull >> 1);
  expect(b, "exceeds");
  b = good;
  Poke<uint32_t>(b, 24 + 8 + std::strlen("general.architecture"), 13);  // value type
  expect(b, "unknown metadata value type 13");

  const size_t ti = FindTensorInfo(good, "blk.0.attn_qkv.bias");  // 1-D F32
  const size_t n_dims_at = ti + 8 + std::strlen("blk.0.attn_qkv.bias");
  const size_t type_at = n_dims_at + 4 + 8, offset_at = type_at + 4;
  b = good;
  Poke<uint32_t>(b, n_dims_at, 5);
  expect(b, "n_dims 5");
  b = good;
  Poke<uint32_t>(b, type_at, 2);  // Q4_0: not a type glmstream reads
  expect(b, "unsupported tensor type 2");
  b = good;
  Poke<uint64_t>(b, offset_at, tensors_[3].offset + 1);
  expect(b, "not a multiple of the alignment 4096");
  b = good;
  Poke<uint64_t>(b, offset_at, uint64_t{1} << 40);
  expect(b, "runs past the end of the file");
  b = good;
  Poke<uint64_t>(b, offset_at, ~uint64_t{4095});  // offset + bytes wraps around
  expect(b, "runs past the end of the file");
  b = good;
  Poke<uint64_t>(b, offset_at, tensors_[2].offset);
  expect(b, "overlap");
  b = good;
  Poke<uint64_t>(b, n_dims_at + 4, ~0ull);  // ne[0]
  expect(b, "ne[0]");
  b = good;
  Poke<uint64_t>(b, n_dims_at + 4, 1ull << 62);  // bytes overflow
  expect(b, "overflows");

  // Extents: the size array follows "glmstream.extent.size" + type + elem type + count.
  const std::string key = "glmstream.extent.size";
  const size_t sizes_at = good.find(key) + key.size() + 4 + 4 + 8;
  b = good;
  Poke<uint64_t>(b, sizes_at + 8 * 3, 1ull << 30);
  expect(b, "extent 3");
  b = good;
  Poke<uint64_t>(b, sizes_at, 100);
  expect(b, "not aligned");
  b = good;
  Poke<uint64_t>(b, sizes_at, 0);  // token_embd.weight is then outside every extent
  expect(b, "not inside any extent");
  b = good;
  Poke<uint32_t>(b, sizes_at - 12, 4);  // same bytes read as 8 u32 elements
  Poke<uint64_t>(b, sizes_at - 8, 8);
  expect(b, "'glmstream.extent.size' is array<u32>, expected array<u64>");

  // Alignment must be a u32 power of two.
  const std::string akey = "general.alignment";
  const size_t align_at = good.find(akey) + akey.size() + 4;
  b = good;
  Poke<uint32_t>(b, align_at, 4095);
  expect(b, "not a power of two");
}

TEST_F(GgufTest, HostileFilesNeverAllocateOrCrash) {
  // Random-ish byte mutations of the header: Open either succeeds or returns an error.
  const std::string good = ReadAll(path_);
  auto f = GgufFile::Open(path_);
  ASSERT_TRUE(f.ok());
  const uint64_t header = (*f)->data_offset();
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string b = good;
    for (int k = 0; k < 1 + iter % 4; ++k) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      const uint64_t at = (rng >> 33) % header;
      b[at] = static_cast<char>(k % 2 ? 0xff : (rng >> 20));
    }
    const std::string p = dir_.File("mut.gguf");
    WriteAll(p, b);
    auto g = GgufFile::Open(p);
    if (g.ok()) (void)(*g)->VerifyAll();
  }
}

TEST(GgufWriter, LeavesNothingWhenFinishIsNotReached) {
  TempDir dir;
  const std::string path = dir.File("x.gguf");
  {
    GgufWriter w(path);
    w.AddTensor("a", GgmlType::kF32, {100}, 0);
    ASSERT_TRUE(w.Begin().ok());
    std::vector<float> v(50);
    ASSERT_TRUE(w.WriteTensorData(v.data(), 200).ok());
    EXPECT_TRUE(fs::exists(path + ".partial"));
  }
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_FALSE(fs::exists(path));

  GgufWriter w(path);
  w.AddTensor("a", GgmlType::kF32, {100}, 0);
  ASSERT_TRUE(w.Begin().ok());
  std::vector<float> v(100);
  ASSERT_TRUE(w.WriteTensorData(v.data(), 200).ok());
  Status st = w.Finish();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("tensor 'a' (#0 of 1) has 200 of 400 bytes"), std::string::npos)
      << st.message();
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_FALSE(w.WriteTensorData(v.data(), 4).ok());  // the failure is sticky
  EXPECT_FALSE(fs::exists(path));
}

TEST(GgufWriter, RejectsExtraDataAndBadNames) {
  TempDir dir;
  const std::string path = dir.File("x.gguf");
  GgufWriter w(path);
  w.AddTensor("a", GgmlType::kI8, {3}, 0);
  ASSERT_TRUE(w.Begin().ok());
  Status st = w.WriteTensorData("abcd", 4);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("beyond"), std::string::npos) << st.message();
  EXPECT_FALSE(w.Finish().ok());
  EXPECT_FALSE(fs::exists(path + ".partial"));

  GgufWriter dup(path);
  dup.AddTensor("a", GgmlType::kI8, {3}, 0);
  dup.AddTensor("a", GgmlType::kI8, {3}, 0);
  EXPECT_NE(dup.Begin().message().find("declared twice"), std::string::npos);
  GgufWriter long_name(path);
  long_name.AddTensor(std::string(64, 'n'), GgmlType::kI8, {3}, 0);
  EXPECT_FALSE(long_name.Begin().ok());
  EXPECT_FALSE(fs::exists(path));
}

TEST(GgufWriterDeathTest, MisuseIsACheckFailure) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        GgufWriter w("/nonexistent/x.gguf");
        w.AddTensor("a", GgmlType::kF32, {1}, 0);
        w.AddTensor("b", GgmlType::kF32, {1}, 2);  // skips extent 1
      },
      "extent 2 follows extent 0");
  EXPECT_DEATH(GgufWriter("/nonexistent/x.gguf").Set("k", Val(T::kU8, uint64_t{256})),
               "does not fit");
  EXPECT_DEATH(GgufWriter("/nonexistent/x.gguf").SetU32("general.alignment", 64),
               "written by GgufWriter itself");
  EXPECT_DEATH(GgufWriter("/nonexistent/x.gguf", 100), "not a power of two");
}

TEST(GgufWriter, WriteErrorNamesFileAndOffsetAndCleansUp) {
  // RLIMIT_FSIZE makes write() fail with EFBIG at a chosen size (like ENOSPC on a full disk).
  TempDir dir;
  const std::string path = dir.File("x.gguf");
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  if (old.rlim_max != RLIM_INFINITY && old.rlim_max < (1 << 20)) GTEST_SKIP() << "low FSIZE";
  signal(SIGXFSZ, SIG_IGN);
  Status st;
  {
    GgufWriter w(path);
    w.AddTensor("big", GgmlType::kF32, {4 << 20}, 0);  // 16 MiB: bypasses the write buffer
    st = w.Begin();
    ASSERT_TRUE(st.ok());
    struct rlimit lim = old;
    lim.rlim_cur = 1 << 20;
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
    std::vector<char> data(16 << 20, 1);
    st = w.WriteTensorData(data.data(), data.size());
    if (st.ok()) st = w.Finish();
    ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
    EXPECT_FALSE(fs::exists(path + ".partial"));  // removed at the failure, not only at exit
  }
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("x.gguf.partial' at byte offset"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("too large"), std::string::npos) << st.message();  // EFBIG
  EXPECT_FALSE(fs::exists(path));
}

TEST(GgufWriter, DirectoryRemovedMidWriteFailsCleanly) {
  TempDir dir;
  const std::string sub = dir.File("sub");
  fs::create_directory(sub);
  const std::string path = sub + "/x.gguf";
  GgufWriter w(path);
  w.AddTensor("a", GgmlType::kF16, {3}, 0);
  ASSERT_TRUE(w.Begin().ok());
  ASSERT_TRUE(w.WriteTensorData("abcdef", 6).ok());
  fs::remove_all(sub);
  Status st = w.Finish();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("x.gguf"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(sub));

  GgufWriter nodir(dir.File("none/x.gguf"));
  Status b = nodir.Begin();
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.message().find("none/x.gguf.partial"), std::string::npos) << b.message();
}

TEST(GgufWriter, ReplacesOldFileOnlyOnFinishAndIgnoresStalePartial) {
  TempDir dir;
  const std::string path = dir.File("x.gguf");
  WriteAll(path, "old");
  WriteAll(path + ".partial", "stale from a crash");
  {
    GgufWriter w(path);
    w.AddTensor("a", GgmlType::kI8, {3}, 0);
    ASSERT_TRUE(w.Begin().ok());
  }
  EXPECT_EQ(ReadAll(path), "old");
  GgufWriter w(path, 32);
  w.AddTensor("a", GgmlType::kI8, {3}, 0);
  ASSERT_TRUE(w.Begin().ok());
  ASSERT_TRUE(w.WriteTensorData("xyz", 3).ok());
  ASSERT_TRUE(w.Finish().ok());
  EXPECT_FALSE(fs::exists(path + ".partial"));
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ((*f)->alignment(), 32u);
  EXPECT_EQ((*f)->data_offset() % 32, 0u);
  EXPECT_TRUE((*f)->VerifyAll().ok());
}

TEST(GgufWriter, LargeExtentVerifiesInChunks) {
  TempDir dir;
  const std::string path = dir.File("big.gguf");
  std::vector<TensorDecl> ts = {{"w", GgmlType::kF16, {5, (5 << 20) / 2 + 7}, 0}};  // > 16 MiB
  ASSERT_TRUE(WriteFile(path, {}, ts).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  int calls = 0;
  EXPECT_TRUE((*f)->VerifyAll([&](uint64_t, uint64_t) { ++calls; }).ok());
  EXPECT_GE(calls, 2);
}

TEST(GgufWriter, NoTensorsIsAValidFile) {
  TempDir dir;
  const std::string path = dir.File("empty.gguf");
  std::vector<TensorDecl> none;
  ASSERT_TRUE(WriteFile(path, {}, none).ok());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_TRUE((*f)->tensors().empty());
  EXPECT_TRUE((*f)->extents().empty());
  EXPECT_EQ((*f)->data_offset(), (*f)->file_size());
}

// Writes the file that tests/gguf_npm_test.sh cross-checks with an independent reader.
TEST(GgufSample, WriteForIndependentReaders) {
  const char* out = std::getenv("GLM_GGUF_SAMPLE_OUT");
  if (!out) GTEST_SKIP() << "GLM_GGUF_SAMPLE_OUT is not set (tests/gguf_npm_test.sh sets it)";
  auto kv = EveryTypeMetadata();
  const std::vector<std::pair<std::string, GgufValue>> model = {
      {"general.architecture", Val(T::kString, std::string("glm130b"))},
      {"general.name", Val(T::kString, std::string("gguf_test sample"))},
      {"glm130b.block_count", Val(T::kU32, uint64_t{2})},
      {"glm130b.embedding_length", Val(T::kU32, uint64_t{12288})},
      {"glm130b.attention.layer_norm_epsilon", Val(T::kF32, double{1e-5f})},
      {"glm130b.token.gmask", Val(T::kU32, uint64_t{150001})},
  };
  kv.insert(kv.begin(), model.begin(), model.end());
  std::vector<TensorDecl> ts = OddTensors();
  Status st = WriteFile(out, kv, ts);
  ASSERT_TRUE(st.ok()) << st.message();
  auto f = GgufFile::Open(out);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_TRUE((*f)->VerifyAll().ok());
}

// Writes small valid files (alignment 32) as seeds for tests/fuzz/fuzz_gguf.cc.
TEST(GgufSeeds, WriteFuzzCorpus) {
  const char* dir = std::getenv("GLM_GGUF_SEED_DIR");
  if (!dir) GTEST_SKIP() << "GLM_GGUF_SEED_DIR is not set";
  std::vector<TensorDecl> none;
  ASSERT_TRUE(WriteFile(std::string(dir) + "/empty.gguf", {}, none, 32).ok());
  std::vector<TensorDecl> ts = OddTensors();
  ts.erase(ts.begin() + 3, ts.begin() + 5);  // keep it small: drop the 4 KiB and 16 KiB ones
  ASSERT_TRUE(WriteFile(std::string(dir) + "/every_type.gguf", EveryTypeMetadata(), ts, 32).ok());
  std::vector<TensorDecl> one = {{"blk.0.w", GgmlType::kF16, {3, 5}, 0}};
  ASSERT_TRUE(WriteFile(std::string(dir) + "/one_tensor.gguf",
                        {{"general.architecture", Val(T::kString, std::string("glm130b"))}}, one,
                        32)
                  .ok());
}

}  // namespace
}  // namespace glm
