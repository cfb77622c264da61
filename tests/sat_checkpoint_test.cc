// Tests of the SAT checkpoint reader (quant/sat_checkpoint.h) and its zip and pickle layers,
// against fixtures written by torch (tests/data/make_sat_fixtures.py) and damaged copies of them.
#include "quant/sat_checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "quant/pickle.h"
#include "quant/zip.h"
#include "runtime/npy.h"

namespace glm {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;  // binary literals contain NULs

#define ASSERT_OK(expr)                   \
  do {                                    \
    const ::glm::Status _s = (expr);      \
    ASSERT_TRUE(_s.ok()) << _s.message(); \
  } while (0)

// Expects a failure whose message contains every one of `parts`.
void ExpectError(const Status& s, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.ok()) << "expected an error containing '" << *parts.begin() << "'";
  for (const std::string& p : parts) {
    EXPECT_NE(s.message().find(p), std::string::npos) << "'" << p << "' not in: " << s.message();
  }
}

std::string Fixture(const std::string& name) {
  return std::string(GLM_SOURCE_DIR) + "/tests/data/sat/" + name;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
}

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::path(testing::TempDir()) / "sat_test_XXXXXX").string();
    GLM_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  // Copies fixture `name` into this directory and returns the copy's path.
  std::string Copy(const std::string& name) const {
    const std::string dst = path_ + "/" + name;
    fs::copy(Fixture(name), dst, fs::copy_options::recursive);
    return dst;
  }

 private:
  std::string path_;
};

// All entries of an archive, to be modified and rewritten with WriteStoredZip.
std::vector<ZipWriteEntry> ReadEntries(const std::string& path) {
  auto zip = ZipReader::Open(path);
  GLM_CHECK_MSG(zip.ok(), "%s", zip.status().message().c_str());
  std::vector<ZipWriteEntry> out;
  for (const ZipEntry& e : (*zip)->entries()) {
    ZipWriteEntry w{e.name, std::string(e.size, '\0')};
    GLM_CHECK((*zip)->ReadEntryBytes(e, 0, w.data.data(), e.size).ok());
    out.push_back(std::move(w));
  }
  return out;
}

ZipWriteEntry* FindEntry(std::vector<ZipWriteEntry>* es, const std::string& suffix) {
  for (ZipWriteEntry& e : *es) {
    if (e.name.size() >= suffix.size() &&
        e.name.compare(e.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return &e;
    }
  }
  return nullptr;
}

// A TP=1 checkpoint "<dir>/ck" (latest = 1) whose only rank file holds `entries`.
std::string WriteSingleRank(const TempDir& t, const std::vector<ZipWriteEntry>& entries,
                            bool zip64 = false) {
  const std::string ck = t.path() + "/ck";
  fs::create_directories(ck + "/1");
  WriteFile(ck + "/latest", "1");
  GLM_CHECK(WriteStoredZip(ck + "/1/mp_rank_00_model_states.pt", entries, zip64).ok());
  return ck;
}

// Compares every merged tensor with the torch-made expectations, bit for bit, in f16 and f32.
void ExpectMatchesTorch(const SatCheckpoint& ck, const std::string& fixture) {
  auto f16 = ReadNpy(fixture + "/expected.f16.npy");
  auto f32 = ReadNpy(fixture + "/expected.f32.npy");
  ASSERT_TRUE(f16.ok() && f32.ok());
  std::ifstream lines(fixture + "/expected.txt");
  std::string line;
  size_t i = 0;
  int64_t off = 0;
  while (std::getline(lines, line)) {
    std::istringstream ls(line);
    std::string key, dtype;
    ls >> key >> dtype;
    std::vector<int64_t> shape;
    for (int64_t d; ls >> d;) shape.push_back(d);
    ASSERT_LT(i, ck.tensors().size());
    const SatTensorInfo& info = ck.tensors()[i++];
    ASSERT_EQ(info.key, key);  // the order of the rank-0 pickle
    EXPECT_EQ(info.shape, shape) << key;
    EXPECT_STREQ(DTypeName(info.dtype), dtype == "float32"    ? "f32"
                                        : dtype == "bfloat16" ? "bf16"
                                                              : "f16");
    ASSERT_EQ(ck.Find(key), &info);
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<uint16_t> h(n);
    std::vector<uint32_t> f(n);
    ASSERT_OK(ck.ReadMerged(key, DType::kF16, h.data(), n * 2));
    ASSERT_OK(ck.ReadMerged(key, DType::kF32, f.data(), n * 4));
    for (int64_t j = 0; j < n; ++j) {
      ASSERT_EQ(h[j], f16->as<uint16_t>()[off + j]) << key << " f16 element " << j;
      ASSERT_EQ(f[j], f32->as<uint32_t>()[off + j]) << key << " f32 element " << j;
    }
    off += n;
  }
  EXPECT_EQ(i, ck.tensors().size());
  EXPECT_EQ(off, f16->numel());
}

TEST(SatMergeRule, FollowsConvertTp) {
  EXPECT_EQ(SatMergeRuleForKey("transformer.word_embeddings.weight"), SatMergeRule::kCatDim0);
  const std::string l = "transformer.layers.17.";
  for (const char* n : {"input_layernorm.weight", "input_layernorm.bias", "attention.dense.bias",
                        "post_attention_layernorm.weight", "post_attention_layernorm.bias",
                        "mlp.dense_4h_to_h.bias", "attention.rotary_emb.inv_freq"}) {
    EXPECT_EQ(SatMergeRuleForKey(l + n), SatMergeRule::kReplicated) << n;
  }
  EXPECT_EQ(SatMergeRuleForKey("transformer.final_layernorm.weight"), SatMergeRule::kReplicated);
  EXPECT_EQ(SatMergeRuleForKey("transformer.final_layernorm.bias"), SatMergeRule::kReplicated);
  EXPECT_EQ(SatMergeRuleForKey(l + "attention.dense.weight"), SatMergeRule::kCatDim1);
  EXPECT_EQ(SatMergeRuleForKey(l + "mlp.dense_4h_to_h.weight"), SatMergeRule::kCatDim1);
  EXPECT_EQ(SatMergeRuleForKey(l + "mlp.dense_h_to_4h.weight"), SatMergeRule::kGlu);
  EXPECT_EQ(SatMergeRuleForKey(l + "mlp.dense_h_to_4h.bias"), SatMergeRule::kGlu);
  EXPECT_EQ(SatMergeRuleForKey(l + "attention.query_key_value.weight"), SatMergeRule::kCatDim0);
  EXPECT_EQ(SatMergeRuleForKey(l + "attention.query_key_value.bias"), SatMergeRule::kCatDim0);
  // convert_tp drops exactly one component from any key not under transformer.layers.
  EXPECT_EQ(SatMergeRuleForKey("model.final_layernorm.bias"), SatMergeRule::kReplicated);
  EXPECT_EQ(SatMergeRuleForKey("final_layernorm.bias"), SatMergeRule::kCatDim0);
  EXPECT_EQ(SatMergeRuleForKey(""), SatMergeRule::kCatDim0);
}

struct FixtureCase {
  const char* name;
  int tp;
  const char* iteration;
};

class SatFixtureTest : public testing::TestWithParam<FixtureCase> {};

TEST_P(SatFixtureTest, MergedTensorsEqualTorchBitExactly) {
  const FixtureCase& c = GetParam();
  auto ck = SatCheckpoint::Open(Fixture(c.name));
  ASSERT_OK(ck.status());
  EXPECT_EQ((*ck)->tp(), c.tp);
  EXPECT_EQ((*ck)->iteration(), c.iteration);
  EXPECT_EQ((*ck)->tensors().size(), 3u + 13u * 2u);
  ExpectMatchesTorch(**ck, Fixture(c.name));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, SatFixtureTest,
                         testing::Values(FixtureCase{"tp1_fp32", 1, "1000"},
                                         FixtureCase{"tp3_bf16", 3, "49300"},
                                         FixtureCase{"tp2_fp16_release", 2, "release"},
                                         FixtureCase{"tp2_views_fp16", 2, "7"}),
                         [](const testing::TestParamInfo<FixtureCase>& i) {
                           return std::string(i.param.name);
                         });

TEST(SatCheckpoint, ShardShapesFollowMergeRules) {
  auto ck = SatCheckpoint::Open(Fixture("tp3_bf16"));
  ASSERT_OK(ck.status());
  const auto* glu = (*ck)->Find("transformer.layers.1.mlp.dense_h_to_4h.weight");
  ASSERT_NE(glu, nullptr);
  EXPECT_EQ(glu->rank_shape, (std::vector<int64_t>{16, 12}));
  EXPECT_EQ(glu->shape, (std::vector<int64_t>{48, 12}));
  const auto* dense = (*ck)->Find("transformer.layers.0.attention.dense.weight");
  EXPECT_EQ(dense->rank_shape, (std::vector<int64_t>{12, 4}));
  EXPECT_EQ(dense->shape, (std::vector<int64_t>{12, 12}));
  const auto* ln = (*ck)->Find("transformer.final_layernorm.weight");
  EXPECT_EQ(ln->shape, (std::vector<int64_t>{12}));
  EXPECT_EQ((*ck)->Find("no.such.key"), nullptr);
}

TEST(SatCheckpoint, ReadMergedRejectsBadRequests) {
  auto ck = SatCheckpoint::Open(Fixture("tp1_fp32"));
  ASSERT_OK(ck.status());
  std::vector<uint8_t> buf(12 * 4);
  ExpectError((*ck)->ReadMerged("nope", DType::kF16, buf.data(), 24), {"no tensor 'nope'"});
  const std::string key = "transformer.final_layernorm.bias";
  ExpectError((*ck)->ReadMerged(key, DType::kF16, buf.data(), 23), {"needs 24", key});
  ExpectError((*ck)->ReadMerged(key, DType::kI8, buf.data(), 12), {"output dtype i8"});
  ASSERT_OK((*ck)->ReadMerged(key, DType::kF32, buf.data(), 48));
}

TEST(SatCheckpoint, ExtraTopLevelKeysAreParsedAndIgnored) {
  const std::string rank0 = Fixture("tp2_fp16_release/release/mp_rank_00_model_states.pt");
  auto shards = SatListRankFile(rank0);
  ASSERT_OK(shards.status());
  EXPECT_EQ(shards->size(), 29u);
  // The whole pickle, including argparse.Namespace, numpy and RNG states, is interpretable.
  auto zip = ZipReader::Open(rank0);
  ASSERT_OK(zip.status());
  const ZipEntry* pkl = (*zip)->Find("mp_rank_00_model_states/data.pkl");
  ASSERT_NE(pkl, nullptr);
  auto bytes = (*zip)->ReadEntry(*pkl, 1 << 20);
  ASSERT_OK(bytes.status());
  auto v = Unpickle(*bytes, rank0);
  ASSERT_OK(v.status());
  const PyObject* root = (*v)->root();
  ASSERT_EQ(root->kind, PyKind::kDict);
  ASSERT_NE(PyDictGet(root, "iteration"), nullptr);
  EXPECT_EQ(PyDictGet(root, "iteration")->int_value, 1000);
  EXPECT_EQ(PyShortRepr(PyDictGet(root, "args")), "<object argparse.Namespace>");
  EXPECT_EQ(PyDictGet(root, "np_rng_state")->kind, PyKind::kTuple);
  EXPECT_EQ(PyDictGet(root, "torch_rng_state")->kind, PyKind::kTensor);
  EXPECT_EQ(PyDictGet(root, "random_rng_state")->items.size(), 3u);
  EXPECT_EQ(PyDictGet(PyDictGet(root, "module"), "transformer.word_embeddings.weight")->kind,
            PyKind::kTensor);
}

TEST(SatCheckpoint, LatestHandling) {
  TempDir t;
  const std::string ck = t.Copy("tp1_fp32");
  WriteFile(ck + "/latest", "1000 \t\r\n\n");
  ASSERT_OK(SatCheckpoint::Open(ck).status());
  WriteFile(ck + "/latest", "123\n");
  ExpectError(SatCheckpoint::Open(ck).status(), {ck + "/123", "'" + ck + "/latest'", "'123'"});
  WriteFile(ck + "/latest", "\n");
  ExpectError(SatCheckpoint::Open(ck).status(), {ck + "/latest", "iteration"});
  WriteFile(ck + "/latest", "../tp1_fp32/1000");
  ExpectError(SatCheckpoint::Open(ck).status(), {"does not name an iteration"});
  fs::remove(ck + "/latest");
  ExpectError(SatCheckpoint::Open(ck).status(),
              {ck + "/latest", "No such file", "no readable 'latest'"});
}

TEST(SatCheckpoint, MissingRankFiles) {
  TempDir t;
  const std::string ck = t.Copy("tp3_bf16");
  fs::remove(ck + "/49300/mp_rank_01_model_states.pt");
  ExpectError(SatCheckpoint::Open(ck).status(),
              {"missing rank file", ck + "/49300/mp_rank_01_model_states.pt"});
  fs::remove(ck + "/49300/mp_rank_00_model_states.pt");
  fs::remove(ck + "/49300/mp_rank_02_model_states.pt");
  ExpectError(SatCheckpoint::Open(ck).status(), {"no rank files", ck + "/49300"});
  WriteFile(ck + "/49300/mp_rank_0x_model_states.pt", "");
  ExpectError(SatCheckpoint::Open(ck).status(), {"unexpected rank file", "mp_rank_0x"});
}

TEST(SatCheckpoint, TruncatedArchives) {
  TempDir t;
  const std::string ck = t.Copy("tp3_bf16");
  const std::string rank = ck + "/49300/mp_rank_02_model_states.pt";
  const std::string full = ReadFile(rank);
  for (size_t cut :
       {size_t(0), size_t(1), size_t(21), size_t(22), size_t(100), full.size() / 2,
        full.size() - 200, full.size() - 98, full.size() - 23, full.size() - 22, full.size() - 1}) {
    WriteFile(rank, full.substr(0, cut));
    const Status s = SatCheckpoint::Open(ck).status();
    ExpectError(s, {rank});
    if (cut < full.size() - 22) ExpectError(s, {"end-of-central-directory"});
  }
  // Data that starts well but is cut inside a tensor: keep the directory, drop data bytes.
  WriteFile(rank, full.substr(0, 1000) + full.substr(full.size() - 1500));
  ExpectError(SatCheckpoint::Open(ck).status(), {rank});
  // Not a zip at all (a legacy torch.save file would look like this).
  WriteFile(rank, std::string(4096, 'x'));
  ExpectError(SatCheckpoint::Open(ck).status(), {rank, "not a zip archive"});
}

// Offset of the central-directory header of the entry whose name ends with `suffix`.
size_t CentralHeader(const std::string& zip, const std::string& suffix) {
  for (size_t p = zip.find("PK\x01\x02"); p != std::string::npos;
       p = zip.find("PK\x01\x02", p + 1)) {
    const size_t n = uint8_t(zip[p + 28]) | (uint8_t(zip[p + 29]) << 8);
    const std::string name = zip.substr(p + 46, n);
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix)
      return p;
  }
  GLM_CHECK_MSG(false, "no central header for %s", suffix.c_str());
}

TEST(SatCheckpoint, CorruptCentralDirectory) {
  TempDir t;
  const std::string ck = t.Copy("tp1_fp32");
  const std::string rank = ck + "/1000/mp_rank_00_model_states.pt";
  const std::string good = ReadFile(rank);
  auto with = [&](size_t pos, const std::string& bytes) {
    std::string z = good;
    z.replace(pos, bytes.size(), bytes);
    WriteFile(rank, z);
    return SatCheckpoint::Open(ck).status();
  };
  const size_t data0 = CentralHeader(good, "/data/0");
  ExpectError(with(data0, "PK\x01\x03"), {rank, "central directory", "bad signature"});
  ExpectError(with(data0 + 46, "Q"), {rank, "local header", "does not match"});
  ExpectError(with(data0 + 42, "\x05"), {rank});  // local header offset moved
  ExpectError(with(data0 + 20, std::string("\xff\xff\xff\x0f\xff\xff\xff\x0f", 8)),
              {rank, "truncated or corrupt: entry 'mp_rank_00_model_states/data/0' ends at byte",
               "past file size"});
  const size_t pkl = CentralHeader(good, "/data.pkl");
  ExpectError(with(pkl + 10, "\x08"), {rank, "compressed (method 8)"});
  ExpectError(with(pkl + 16, "\x00\x00"s), {rank, "CRC mismatch", "data.pkl"});
  // Flip every byte of the central directory and end records in turn: never a crash, and any
  // archive that still opens must still read.
  int failures = 0;
  for (size_t p = CentralHeader(good, "/data.pkl"); p < good.size(); ++p) {
    std::string z = good;
    z[p] = char(z[p] ^ 0xff);
    WriteFile(rank, z);
    auto opened = SatCheckpoint::Open(ck);
    if (!opened.ok()) {
      ++failures;
      EXPECT_NE(opened.status().message().find(rank), std::string::npos)
          << opened.status().message();
      continue;
    }
    for (const SatTensorInfo& info : (*opened)->tensors()) {
      int64_t n = 1;
      for (int64_t d : info.shape) n *= d;
      std::vector<uint16_t> buf(n);
      (void)(*opened)->ReadMerged(info.key, DType::kF16, buf.data(), n * 2);
    }
  }
  EXPECT_GT(failures, 100);
}

TEST(SatCheckpoint, Zip64PastFourGiB) {
  TempDir t;
  auto entries = ReadEntries(Fixture("tp1_fp32/1000/mp_rank_00_model_states.pt"));
  // Forced ZIP64 records, small offsets.
  std::string ck = WriteSingleRank(t, entries, /*zip64=*/true);
  auto opened = SatCheckpoint::Open(ck);
  ASSERT_OK(opened.status());
  // Real offsets past 4 GiB: a sparse hole before the storages (~0 bytes on disk).
  entries[1].gap_before = 5ull << 30;
  ck = WriteSingleRank(t, entries, /*zip64=*/false);
  const std::string rank = ck + "/1/mp_rank_00_model_states.pt";
  struct stat st;
  ASSERT_EQ(stat(rank.c_str(), &st), 0);
  if (uint64_t(st.st_blocks) * 512 > (64ull << 20)) {
    fs::remove(rank);
    GTEST_SKIP() << "filesystem of " << rank << " does not support sparse files";
  }
  auto zip = ZipReader::Open(rank);
  ASSERT_OK(zip.status());
  EXPECT_GT((*zip)->entries().back().data_offset, 5ull << 30);
  opened = SatCheckpoint::Open(ck);
  ASSERT_OK(opened.status());
  ExpectMatchesTorch(**opened, Fixture("tp1_fp32"));
}

TEST(SatCheckpoint, ByteOrderEntry) {
  TempDir t;
  auto entries = ReadEntries(Fixture("tp1_fp32/1000/mp_rank_00_model_states.pt"));
  entries.push_back({"mp_rank_00_model_states/byteorder", "little"});
  ASSERT_OK(SatCheckpoint::Open(WriteSingleRank(t, entries)).status());
  entries.back().data = "big";
  ExpectError(SatCheckpoint::Open(WriteSingleRank(t, entries)).status(), {"'big' byte order"});
}

TEST(SatCheckpoint, GarbagePickles) {
  TempDir t;
  auto entries = ReadEntries(Fixture("tp1_fp32/1000/mp_rank_00_model_states.pt"));
  ZipWriteEntry* pkl = FindEntry(&entries, "/data.pkl");
  const std::string good = pkl->data;
  const std::string rank = t.path() + "/ck/1/mp_rank_00_model_states.pt";
  for (size_t cut :
       {size_t(0), size_t(1), size_t(2), size_t(40), good.size() / 2, good.size() - 1}) {
    pkl->data = good.substr(0, cut);
    ExpectError(SatCheckpoint::Open(WriteSingleRank(t, entries)).status(),
                {rank, "pickle error", "data.pkl"});
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 300; ++i) {
    pkl->data = good;
    for (int k = 0; k < 1 + i % 8; ++k) pkl->data[rng() % good.size()] = char(rng());
    if (i % 3 == 0) pkl->data.resize(rng() % good.size());
    const Status s = SatCheckpoint::Open(WriteSingleRank(t, entries)).status();
    if (!s.ok()) {
      EXPECT_NE(s.message().find(rank), std::string::npos) << s.message();
    }
  }
  pkl->data = "garbage that is not a pickle";
  ExpectError(SatCheckpoint::Open(WriteSingleRank(t, entries)).status(),
              {rank, "unsupported pickle opcode"});
}

TEST(SatCheckpoint, ModuleLevelErrors) {
  TempDir t;
  const std::string ck = t.Copy("tp2_fp16_release");
  const std::string r0 = ck + "/release/mp_rank_00_model_states.pt";
  fs::copy_file(Fixture("bad/no_module.pt"), r0, fs::copy_options::overwrite_existing);
  ExpectError(SatCheckpoint::Open(ck).status(),
              {"no 'module' key in '" + r0 + "'", "found keys: 'iteration', 'model'"});
  fs::copy_file(Fixture("bad/module_not_tensor.pt"), r0, fs::copy_options::overwrite_existing);
  ExpectError(SatCheckpoint::Open(ck).status(),
              {r0, "'transformer.layers.0.attention.dense.bias'", "not a tensor"});
  fs::copy_file(Fixture("bad/double_dtype.pt"), r0, fs::copy_options::overwrite_existing);
  ExpectError(SatCheckpoint::Open(ck).status(),
              {r0, "'transformer.final_layernorm.bias'", "DoubleStorage", "float32"});
}

TEST(SatCheckpoint, RanksMustAgree) {
  struct Case {
    const char* file;
    std::initializer_list<std::string> parts;
  };
  const std::string key = "'transformer.layers.1.";
  for (const Case& c : {
           Case{"rank1_shape_mismatch.pt",
                {key + "attention.query_key_value.weight'", "[18, 12] on rank 0",
                 "[16, 12] on rank 1"}},
           Case{"rank1_missing_key.pt", {key + "mlp.dense_4h_to_h.bias'", "missing on rank 1"}},
           Case{"rank1_extra_key.pt", {key + "mlp.extra.weight'", "not on rank 0"}},
           Case{"rank1_dtype_mismatch.pt", {"f16 on rank 0", "bf16 on rank 1"}},
       }) {
    TempDir t;
    const std::string ck = t.Copy("tp2_fp16_release");
    const std::string r1 = ck + "/release/mp_rank_01_model_states.pt";
    fs::copy_file(Fixture(std::string("bad/") + c.file), r1, fs::copy_options::overwrite_existing);
    const Status s = SatCheckpoint::Open(ck).status();
    ExpectError(s, {r1});
    for (const std::string& p : c.parts) ExpectError(s, {p});
  }
}

TEST(SatCheckpoint, RefusesForbiddenGlobal) {
  const std::string ck = Fixture("malicious");
  ExpectError(SatCheckpoint::Open(ck).status(),
              {"refusing global 'os.system'", ck + "/1/mp_rank_00_model_states.pt",
               "not a tensor state-dict type", "may be malicious"});
}

// Pickle interpreter unit tests on hand-written opcode streams.
std::string U(const std::string& s) {  // BINUNICODE
  std::string out = "X";
  for (int i = 0; i < 4; ++i) out += char((s.size() >> (8 * i)) & 0xff);
  return out + s;
}

TEST(SatPickle, RefusesEveryOtherGlobal) {
  for (const char* g : {"posix\nsystem\n", "builtins\neval\n", "__builtin__\neval\n",
                        "subprocess\nPopen\n", "torch\nload\n", "builtins\ngetattr\n",
                        "torch._utils\n_rebuild_qtensor\n", "collections\nOrderedDictX\n"}) {
    std::string name = g;
    name[name.find('\n')] = '.';
    name.pop_back();
    ExpectError(Unpickle(std::string("\x80\x02") + "c" + g + ")R.", "x.pt").status(),
                {"refusing global '" + name + "' in 'x.pt'"});
  }
  // STACK_GLOBAL (protocol 4) goes through the same check.
  ExpectError(Unpickle("\x80\x04" + U("os") + U("system") + "\x93.", "y.pt").status(),
              {"refusing global 'os.system' in 'y.pt'"});
}

TEST(SatPickle, ValuesAndSharing) {
  // [1, -2, 2**40, 1.5, b'ab', True, None, {'k': ...}] with memo sharing and LONG1.
  std::string p = "\x80\x02]q\x00(K\x01J\xfe\xff\xff\xff\x8a\x06\x00\x00\x00\x00\x00\x01"s;
  p += "G\x3f\xf8\x00\x00\x00\x00\x00\x00"s +
       "C\x02"
       "ab"
       "\x88N}q\x01" +
       U("k") + "h\x00s"s + "e.";
  auto v = Unpickle(p, "v.pt");
  ASSERT_OK(v.status());
  const PyObject* l = (*v)->root();
  ASSERT_EQ(l->kind, PyKind::kList);
  ASSERT_EQ(l->items.size(), 8u);
  EXPECT_EQ(l->items[0]->int_value, 1);
  EXPECT_EQ(l->items[1]->int_value, -2);
  EXPECT_EQ(l->items[2]->int_value, int64_t(1) << 40);
  EXPECT_EQ(l->items[3]->float_value, 1.5);
  EXPECT_EQ(l->items[4]->text, "ab");
  EXPECT_EQ(PyDictGet(l->items[7], "k"), l);  // a cycle through the memo
}

TEST(SatPickle, BoundsAndMalformedStreams) {
  PickleLimits small;
  small.max_objects = 100;
  std::string many = "\x80\x02(";
  for (int i = 0; i < 200; ++i) many += "N";
  ExpectError(Unpickle(many + "l.", "m.pt", small).status(), {"more than 100 objects"});
  // Deep nesting builds no recursion anywhere (construction, destruction, messages).
  std::string deep = "\x80\x02N" + std::string(200000, '\x85') + ".";
  ASSERT_OK(Unpickle(deep, "d.pt").status());
  ExpectError(Unpickle("\x80\x02X\xff\xff\xff\x7f"
                       "abc.",
                       "s.pt")
                  .status(),
              {"needs 2147483647 bytes, only 4 left"});
  ExpectError(Unpickle("\x80\x02t.", "t.pt").status(), {"no MARK"});
  ExpectError(Unpickle("\x80\x02(R.", "r.pt").status(), {"stack underflow"});
  ExpectError(Unpickle("\x80\x02h\x05.", "g.pt").status(), {"memo key 5 missing"});
  ExpectError(Unpickle("\x80\x02K\x01N\x85"
                       "b.",
                       "b.pt")
                  .status(),
              {"BUILD on 1"});
  ExpectError(Unpickle("\x80\x02K\x01Q.", "q.pt").status(), {"unsupported persistent id"});
  ExpectError(Unpickle("\x80\x02\x8a\x09" + std::string(9, '\1') + ".", "l.pt").status(),
              {"too large"});
  ExpectError(Unpickle("\x80\x02K\x01", "e.pt").status(), {"without a STOP"});
  ExpectError(Unpickle("\x80\x06.", "p.pt").status(), {"protocol 6"});
}

}  // namespace
}  // namespace glm
