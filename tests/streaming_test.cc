// StreamingStore: a streamed run gives bit-identical logits to the fully mapped store under every
// arrangement (resident sets, slots, depths, engines, injected faults), the schedule survives
// out-of-order use, read errors surface with file and offset, nothing is allocated past the
// budget, and the per-layer statistics count what happened. Run under ThreadSanitizer by
// scripts/tsan.sh.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "offload/model_file.h"
#include "offload/planner.h"
#include "offload/store.h"
#include "offload/streaming_store.h"
#include "quant/convert.h"
#include "quant/synthetic.h"
#include "runtime/model.h"

namespace glm {
namespace {

// The model file lives on the build tree's filesystem (a real disk: O_DIRECT works there).
class StreamingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = std::string(GLM_BINARY_DIR) + "/test-tmp-XXXXXX";
    GLM_CHECK(mkdtemp(tmpl.data()) != nullptr);
    dir_ = new std::string(tmpl);
    path_ = new std::string(tmpl + "/tiny6.gguf");
    ModelConfig cfg = SyntheticPreset("tiny").value();
    cfg.num_layers = 6;
    Status st = WriteSyntheticModel(*path_, cfg, /*seed=*/5);
    GLM_CHECK_MSG(st.ok(), "%s", st.message().c_str());
    auto mm = MmapStore::Open(*path_);
    GLM_CHECK(mm.ok());
    reference_ = new std::vector<std::vector<Half>>(Run(**mm));
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    std::filesystem::remove_all(*dir_, ec);
    delete reference_;
    delete path_;
    delete dir_;
  }

  // Two sequences: a 5-token prefill each (different prefix lengths), then 3 batched decode
  // steps. Returns the logits of every step. Errors fail the test through *status.
  static std::vector<std::vector<Half>> Run(WeightStore& store, Status* status = nullptr) {
    const ModelConfig& cfg = store.config();
    RotaryTable rope = RotaryTable::Build(cfg.head_dim, cfg.max_seq);
    KvCache kv[2] = {KvCache::Allocate(cfg, 16), KvCache::Allocate(cfg, 16)};
    Activations act = Activations::Allocate(cfg, 16, 16);
    std::vector<std::vector<Half>> out;
    std::vector<int32_t> ids[2] = {{5, 17, 300, 2, 9}, {44, 45, 46, 47, 48}};
    std::vector<int32_t> pos[2] = {{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}};
    for (int step = 0; step < 4; ++step) {
      SeqStep seqs[2];
      for (int b = 0; b < 2; ++b) {
        seqs[b] = SeqStep{
            .kv = &kv[b], .ids = ids[b], .positions = pos[b], .prefix_len = step == 0 ? 2 + b : 0};
      }
      std::vector<Half> logits(size_t(2) * cfg.vocab);
      Status st = ForwardBatch(store, rope, seqs, act, logits.data());
      if (status) *status = st;
      if (!st.ok()) return out;
      out.push_back(logits);
      for (int b = 0; b < 2; ++b) {
        const int32_t next = int32_t(100 + 37 * step + b);
        pos[b] = {int32_t(kv[b].length)};
        ids[b] = {next};
      }
    }
    return out;
  }

  static void ExpectBitIdentical(const std::vector<std::vector<Half>>& got, const char* what) {
    ASSERT_EQ(got.size(), reference_->size()) << what;
    for (size_t s = 0; s < got.size(); ++s) {
      ASSERT_EQ(got[s].size(), (*reference_)[s].size());
      const int cmp =
          std::memcmp(got[s].data(), (*reference_)[s].data(), got[s].size() * sizeof(Half));
      EXPECT_EQ(cmp, 0) << what << ": logits of step " << s << " differ";
    }
  }

  static std::vector<bool> Resident(std::initializer_list<int> layers) {
    std::vector<bool> r(6, false);
    for (int l : layers) r[size_t(l)] = true;
    return r;
  }

  static std::unique_ptr<StreamingStore> OpenOrDie(const StreamingOptions& o) {
    auto s = StreamingStore::Open(*path_, o);
    GLM_CHECK_MSG(s.ok(), "%s", s.status().message().c_str());
    return std::move(s).value();
  }

  static std::string* dir_;
  static std::string* path_;
  static std::vector<std::vector<Half>>* reference_;
};
std::string* StreamingTest::dir_ = nullptr;
std::string* StreamingTest::path_ = nullptr;
std::vector<std::vector<Half>>* StreamingTest::reference_ = nullptr;

TEST_F(StreamingTest, BitIdenticalToTheMappedStoreInEveryArrangement) {
  struct Case {
    const char* name;
    std::vector<bool> resident;
    int slots, depth;
    IoEngine engine;
    bool direct;
    bool on_demand = false;
  };
  const Case cases[] = {
      {"all streamed, on demand", Resident({}), 1, 0, IoEngine::kAuto, true, true},
      {"one slot as a ring", Resident({1, 4}), 1, 0, IoEngine::kAuto, true},
      {"all streamed, double buffered", Resident({}), 2, 1, IoEngine::kAuto, true},
      {"all streamed, depth 3", Resident({}), 4, 3, IoEngine::kAuto, true},
      {"more slots than depth + 1", Resident({}), 4, 1, IoEngine::kAuto, true},
      {"alternate resident", Resident({0, 2, 4}), 2, 1, IoEngine::kAuto, true},
      {"one streamed layer, 3 slots", Resident({0, 1, 2, 4, 5}), 3, 2, IoEngine::kAuto, true},
      {"all resident", Resident({0, 1, 2, 3, 4, 5}), 0, 0, IoEngine::kAuto, true},
      {"pread, buffered", Resident({1}), 2, 1, IoEngine::kPread, false},
      {"pread, O_DIRECT", Resident({}), 3, 2, IoEngine::kPread, true},
  };
  for (const Case& c : cases) {
    auto store = OpenOrDie(StreamingOptions{.reader = {.engine = c.engine,
                                                       .o_direct = c.direct,
                                                       .block_bytes = 64 << 10,
                                                       .queue_depth = 4},
                                            .resident = c.resident,
                                            .staging_slots = c.slots,
                                            .prefetch_depth = c.depth,
                                            .on_demand = c.on_demand,
                                            .verify_checksums = true});
    ExpectBitIdentical(Run(*store), c.name);
    // Every streamed layer was acquired once per step and read at least that often.
    const StreamingStats st = store->stats();
    for (int l = 0; l < 6; ++l) {
      EXPECT_EQ(st.layers[size_t(l)].acquires, 4) << c.name << " layer " << l;
      if (!c.resident[size_t(l)]) {
        EXPECT_GE(st.layers[size_t(l)].reads, 4) << c.name << " layer " << l;
        // Read-ahead: each slot may hold a read of a step that has not come yet.
        EXPECT_LE(st.layers[size_t(l)].reads, c.on_demand ? 4 : 4 + c.slots)
            << c.name << " layer " << l;
      } else {
        EXPECT_EQ(st.layers[size_t(l)].reads, 0) << c.name << " layer " << l;
      }
    }
    EXPECT_EQ(st.resyncs, 0) << c.name;
  }
}

TEST_F(StreamingTest, BitIdenticalThroughInjectedFaults) {
  FaultInjector faults(
      FaultOptions{.short_read = 0.2, .eagain = 0.2, .delay = 0.3, .delay_us = 300, .seed = 11});
  auto store = OpenOrDie(
      StreamingOptions{.reader = {.block_bytes = 16 << 10, .queue_depth = 8, .faults = &faults},
                       .resident = Resident({3}),
                       .staging_slots = 3,
                       .prefetch_depth = 2});
  ExpectBitIdentical(Run(*store), "faults");
  EXPECT_GT(faults.short_reads.load(), 0);
  EXPECT_GT(faults.eagains.load(), 0);
}

// glm-bench probes the disk between steps once the store is quiet: WaitForReads returns only
// when the reads issued at Open (one per slot, each slowed down) have all completed.
TEST_F(StreamingTest, WaitForReadsReturnsWhenNoReadIsInFlight) {
  FaultInjector faults(FaultOptions{.delay = 1.0, .delay_us = 3000, .seed = 3});
  auto store = OpenOrDie(
      StreamingOptions{.reader = {.block_bytes = 16 << 10, .queue_depth = 2, .faults = &faults},
                       .resident = Resident({}),
                       .staging_slots = 3,
                       .prefetch_depth = 2});
  auto f = GgufFile::Open(*path_);
  ASSERT_TRUE(f.ok());
  const HostFootprint fp = ReadHostFootprint(**f).value();
  store->WaitForReads();
  const uint64_t done = store->stats().bytes_read;
  EXPECT_EQ(done, fp.layer_bytes[0] + fp.layer_bytes[1] + fp.layer_bytes[2]);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(store->stats().bytes_read, done);
}

TEST_F(StreamingTest, ReadErrorSurfacesWithFileAndOffsetAndSticks) {
  auto f = GgufFile::Open(*path_);
  ASSERT_TRUE(f.ok());
  const uint64_t bad = (*f)->data_offset() + (*f)->extents()[size_t(LayerExtent(4))].offset + 4096;
  FaultInjector faults(FaultOptions{.eio_at = bad});
  auto store = OpenOrDie(
      StreamingOptions{.reader = {.block_bytes = 64 << 10, .queue_depth = 4, .faults = &faults},
                       .resident = Resident({}),
                       .staging_slots = 2,
                       .prefetch_depth = 1});
  Status st;
  Run(*store, &st);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(*path_), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("offset"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(std::strerror(EIO)), std::string::npos) << st.message();
  // Later steps report it too instead of computing with a half-read layer.
  auto again = store->Acquire(0);
  EXPECT_FALSE(again.ok());
}

TEST_F(StreamingTest, OutOfOrderAcquiresResync) {
  auto mm = MmapStore::Open(*path_);
  ASSERT_TRUE(mm.ok());
  auto store = OpenOrDie(StreamingOptions{
      .reader = {}, .resident = Resident({1}), .staging_slots = 3, .prefetch_depth = 2});
  // Any order, repeats included: the views hold the same bytes as the mapped file.
  for (int l : {3, 0, 0, 5, 2, 4, 1, 1, 5, 0}) {
    auto w = store->Acquire(l);
    ASSERT_TRUE(w.ok()) << w.status().message();
    const LayerWeights* ref = (*mm)->Acquire(l).value();
    EXPECT_EQ(std::memcmp((*w)->up.data, ref->up.data, ref->up.bytes()), 0) << "layer " << l;
    EXPECT_EQ(std::memcmp((*w)->down_b.data, ref->down_b.data, ref->down_b.bytes()), 0);
    store->Release(l);
  }
  EXPECT_GT(store->stats().resyncs, 0);
  // And back in order afterwards.
  ExpectBitIdentical(Run(*store), "after resync");
}

TEST_F(StreamingTest, HoldingEverySlotIsAnErrorNotAHang) {
  auto store = OpenOrDie(StreamingOptions{
      .reader = {}, .resident = Resident({}), .staging_slots = 1, .on_demand = true});
  auto a = store->Acquire(0);
  ASSERT_TRUE(a.ok());
  auto b = store->Acquire(1);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("staging slots are in use"), std::string::npos);
  store->Release(0);
  EXPECT_TRUE(store->Acquire(1).ok());
  store->Release(1);
}

TEST_F(StreamingTest, NothingIsAllocatedPastTheBudget) {
  auto f = GgufFile::Open(*path_);
  ASSERT_TRUE(f.ok());
  auto layout = ReadHostFootprint(**f);
  ASSERT_TRUE(layout.ok());
  const uint64_t layer = layout->layer_bytes[0];
  // Exactly globals + 2 resident + 2 slots fits; one byte less does not.
  const uint64_t need = layout->globals_bytes + 4 * layer;
  StreamingOptions o{.reader = {},
                     .budget_bytes = need,
                     .resident = Resident({0, 3}),
                     .staging_slots = 2,
                     .prefetch_depth = 1};
  {
    auto store = OpenOrDie(o);
    EXPECT_EQ(store->memory().peak(), need);
    EXPECT_LE(store->memory().peak(), o.budget_bytes);
    ExpectBitIdentical(Run(*store), "exact budget");
  }
  o.budget_bytes = need - 1;
  auto refused = StreamingStore::Open(*path_, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("budget exceeded"), std::string::npos)
      << refused.status().message();
}

TEST_F(StreamingTest, OpenWeightStorePlansUnderTheBudget) {
  auto f = GgufFile::Open(*path_);
  ASSERT_TRUE(f.ok());
  auto layout = ReadHostFootprint(**f);
  ASSERT_TRUE(layout.ok());
  // Room for the globals, 3 slots and 1 resident layer (no measurements: 3 slots).
  const uint64_t budget = layout->globals_bytes + 4 * layout->layer_bytes[0] + 100;
  auto store = OpenWeightStore(*path_, StoreOptions{.host_mem_bytes = budget, .reader = {}});
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto* ss = dynamic_cast<StreamingStore*>(store->get());
  ASSERT_NE(ss, nullptr);
  EXPECT_LE(ss->memory().peak(), budget);
  ExpectBitIdentical(Run(**store), "OpenWeightStore");
  // A budget below the minimum says what the minimum is.
  auto small = OpenWeightStore(*path_, StoreOptions{.host_mem_bytes = 4096, .reader = {}});
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("minimum"), std::string::npos);
}

// huge_pages without a host budget reads the whole file into memory (every layer resident, no
// staging slot) instead of mapping it, with the same logits; its buffers carry MADV_HUGEPAGE
// and the mapped store's and the 4 KiB store's do not. With a budget, only the globals and the
// resident layers ask for huge pages (the staging slots always do). Whether the kernel grants
// 2 MiB pages depends on its free memory, so the test checks the advice, not the grant.
TEST_F(StreamingTest, HugePagesReadTheModelIntoAdvisedMemory) {
  auto store = OpenWeightStore(*path_, StoreOptions{.huge_pages = true});
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto* ss = dynamic_cast<StreamingStore*>(store->get());
  ASSERT_NE(ss, nullptr) << "huge_pages without a budget should read the file, not map it";
  EXPECT_NE(ss->Describe().find("6 of 6 layers resident"), std::string::npos) << ss->Describe();
  EXPECT_GT(ss->stats().open_load_bytes, 0u);
  ExpectBitIdentical(Run(**store), "huge pages, no budget");

  // The load's progress: each extent as it lands, up to the whole of it.
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  auto with_progress = OpenWeightStore(
      *path_, StoreOptions{.huge_pages = true, .load_progress = [&](uint64_t done, uint64_t total) {
                             calls.emplace_back(done, total);
                           }});
  ASSERT_TRUE(with_progress.ok()) << with_progress.status().message();
  const uint64_t loaded =
      dynamic_cast<StreamingStore*>(with_progress->get())->stats().open_load_bytes;
  ASSERT_EQ(calls.size(), 7u) << "the globals and six layers";
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].second, loaded);
    if (i > 0) {
      EXPECT_GT(calls[i].first, calls[i - 1].first);
    }
  }
  EXPECT_EQ(calls.back().first, loaded);

  auto mapped = OpenWeightStore(*path_, StoreOptions{});
  ASSERT_TRUE(mapped.ok());
  ASSERT_EQ(dynamic_cast<StreamingStore*>(mapped->get()), nullptr);
  auto plain =
      OpenOrDie(StreamingOptions{.resident = Resident({0, 1, 2, 3, 4, 5}), .staging_slots = 0});
  if (TransparentHugePageMode().empty()) {
    GTEST_SKIP() << "this kernel has no transparent huge pages: the advice cannot be checked";
  }
  auto advised = [](WeightStore& s, int layer) {
    const LayerWeights* w = s.Acquire(layer).value();
    const HugePageUse use = HugePagesOf(w->up.data, uint64_t(w->up.bytes()));
    s.Release(layer);
    EXPECT_TRUE(use.known);
    return use.advised;
  };
  for (int l = 0; l < 6; ++l) {
    EXPECT_TRUE(advised(**store, l)) << "layer " << l;
    EXPECT_FALSE(advised(**mapped, l)) << "layer " << l;
    EXPECT_FALSE(advised(*plain, l)) << "layer " << l;
  }
  const Half* emb = (*store)->globals().embedding.f16();
  EXPECT_TRUE(HugePagesOf(emb, 4096).advised);

  // With a budget: layers 0-2 resident on huge pages, the rest streamed.
  auto budgeted = OpenOrDie(StreamingOptions{.resident = Resident({0, 1, 2}),
                                             .staging_slots = 2,
                                             .prefetch_depth = 1,
                                             .huge_pages = true});
  ExpectBitIdentical(Run(*budgeted), "huge pages, layers 0-2 resident");
  EXPECT_TRUE(advised(*budgeted, 1));
}

// A byte flipped inside layer 3: with verify_checksums, the resident (mapped) store refuses the
// file at open and the streaming store fails the Acquire of that layer, each naming it; without,
// the mapped store opens (the checksums are not read).
TEST_F(StreamingTest, ChecksumMismatchIsReportedWhenVerifying) {
  const std::string path = *dir_ + "/corrupt.gguf";
  std::filesystem::copy_file(*path_, path, std::filesystem::copy_options::overwrite_existing);
  uint64_t at = 0;
  {
    auto f = GgufFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().message();
    const GgufExtent& x = (*f)->extents()[size_t(LayerExtent(3))];
    at = (*f)->data_offset() + x.offset + x.size / 2;
  }
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekg(std::streamoff(at));
    char c = 0;
    io.read(&c, 1);
    c = char(c ^ 0x5a);
    io.seekp(std::streamoff(at));
    io.write(&c, 1);
    ASSERT_TRUE(io.good());
  }
  EXPECT_TRUE(OpenWeightStore(path, StoreOptions{}).ok());
  auto mapped = OpenWeightStore(path, StoreOptions{.reader = {}, .verify_checksums = true});
  ASSERT_FALSE(mapped.ok());
  EXPECT_NE(mapped.status().message().find("checksum mismatch"), std::string::npos)
      << mapped.status().message();
  auto streamed = StreamingStore::Open(path, StreamingOptions{.reader = {},
                                                              .resident = Resident({}),
                                                              .staging_slots = 2,
                                                              .prefetch_depth = 1,
                                                              .verify_checksums = true});
  ASSERT_TRUE(streamed.ok()) << streamed.status().message();
  Status st;
  for (int l = 0; l < 6 && st.ok(); ++l) {
    auto w = (*streamed)->Acquire(l);
    if (!w.ok()) {
      st = w.status();
      break;
    }
    (*streamed)->Release(l);
  }
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("checksum mismatch in layer 3"), std::string::npos) << st.message();
}

TEST_F(StreamingTest, UnalignedExtentsAreReadAsTheAlignedSuperset) {
  // A GGUF aligned to 64 bytes: the data section and the extents are off the 4 KiB grid, so
  // every O_DIRECT read covers lead bytes before its extent and padding after.
  const std::string path = *dir_ + "/align64.gguf";
  auto mm0 = MmapStore::Open(*path_);
  ASSERT_TRUE(mm0.ok());
  const ModelConfig cfg = (*mm0)->config();
  {
    GgufWriter w(path, 64);
    WriteModelMetadata(w, cfg, "align64");
    DeclareModelTensors(w, cfg);
    ASSERT_TRUE(w.Begin().ok());
    Status st;
    ForEachTensor(cfg, [&](const TensorSpec& s) {
      std::vector<Half> data(size_t(s.shape[0] * (s.ndim == 2 ? s.shape[1] : 1)));
      for (size_t i = 0; i < data.size(); ++i) {
        data[i] = FloatToHalf(float(int((i * 7 + size_t(s.layer + 1) * 13) % 17) - 8) * 0.01f);
      }
      if (st.ok()) st = w.WriteTensorData(data.data(), data.size() * sizeof(Half));
    });
    ASSERT_TRUE(st.ok()) << st.message();
    ASSERT_TRUE(w.Finish().ok());
  }
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok());
  bool off_grid = (*f)->data_offset() % 4096 != 0;
  for (int l = 0; l < 6; ++l) off_grid |= AlignExtent(**f, LayerExtent(l)).lead != 0;
  ASSERT_TRUE(off_grid) << "the test file happens to be 4 KiB-aligned";
  auto mm = MmapStore::Open(path);
  ASSERT_TRUE(mm.ok()) << mm.status().message();
  const auto want = Run(**mm);
  auto store = StreamingStore::Open(path, StreamingOptions{.reader = {},
                                                           .resident = Resident({1, 4}),
                                                           .staging_slots = 3,
                                                           .prefetch_depth = 2,
                                                           .verify_checksums = true});
  ASSERT_TRUE(store.ok()) << store.status().message();
  const auto got = Run(**store);
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < got.size(); ++s) {
    EXPECT_EQ(std::memcmp(got[s].data(), want[s].data(), got[s].size() * sizeof(Half)), 0)
        << "step " << s;
  }
}

TEST_F(StreamingTest, QuantizedFilesStreamBitIdentically) {
  // int8 and int4 (GLM-130B's row scheme) files: each layer's extent carries the weights and
  // their scales, and the views of both move with the slot.
  const ModelConfig cfg = SyntheticPreset("tiny").value();
  const std::string sat = *dir_ + "/sat";
  SyntheticSatOptions sat_opts;
  sat_opts.seed = 9;
  ASSERT_TRUE(WriteSyntheticSat(sat, cfg, sat_opts).ok());
  for (int bits : {8, 4}) {
    const std::string path = *dir_ + StrFormat("/q%d.gguf", bits);
    ConvertOptions co;
    co.input_dir = sat;
    co.output_path = path;
    co.bits = bits;
    co.tokens = cfg.tokens;
    co.num_heads = cfg.num_heads;
    co.max_seq = cfg.max_seq;
    Status st = ConvertSatToGguf(co);
    ASSERT_TRUE(st.ok()) << st.message();
    auto mm = MmapStore::Open(path);
    ASSERT_TRUE(mm.ok()) << mm.status().message();
    const auto want = Run(**mm);
    auto store = StreamingStore::Open(path, StreamingOptions{.reader = {},
                                                             .resident = {},
                                                             .staging_slots = 2,
                                                             .prefetch_depth = 1,
                                                             .verify_checksums = true});
    ASSERT_TRUE(store.ok()) << store.status().message();
    ASSERT_NE((*store)->Acquire(0).value()->qkv.scales, nullptr) << bits << "-bit";
    (*store)->Release(0);
    const auto got = Run(**store);
    ASSERT_EQ(got.size(), want.size());
    for (size_t s = 0; s < got.size(); ++s) {
      EXPECT_EQ(std::memcmp(got[s].data(), want[s].data(), got[s].size() * sizeof(Half)), 0)
          << bits << "-bit, step " << s;
    }
  }
}

TEST_F(StreamingTest, ComputeOnlyStoreServesLayerZeroEverywhere) {
  auto s = ComputeOnlyStore::Open(*path_, ReaderOptions{});
  ASSERT_TRUE(s.ok()) << s.status().message();
  const LayerWeights* w0 = (*s)->Acquire(0).value();
  (*s)->Release(0);
  const LayerWeights* w5 = (*s)->Acquire(5).value();
  (*s)->Release(5);
  EXPECT_EQ(w0->qkv.data, w5->qkv.data);
  EXPECT_EQ(Run(**s).size(), 4u);
}

}  // namespace
}  // namespace glm
