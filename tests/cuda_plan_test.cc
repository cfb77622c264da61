// The GPU tier's planner (offload/gpu_plan_cuda.h) and the packed layer layout: plain arithmetic,
// so these run on machines without a GPU. The GPU-side check that the process really stays
// under the budget is in cuda_model_test.cc (cudaMemGetInfo).
#include <gtest/gtest.h>

#if GLM_HAVE_CUDA

#include <random>

#include "offload/gpu_plan_cuda.h"
#include "offload/layer_source_cuda.h"

namespace glm {
namespace {

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

GpuPlanInput Input(uint64_t budget, std::vector<uint64_t> layers) {
  GpuPlanInput in;
  in.budget = budget;
  in.context = 500 * kMiB;
  in.reserve = 256 * kMiB;
  in.workspace = 33 * kMiB;  // rounds to 34 MiB
  in.kv_cache = 100 * kMiB;
  in.activations = 10 * kMiB;
  in.globals = 300 * kMiB;
  in.layers = std::move(layers);
  return in;
}

uint64_t Fixed(const GpuPlanInput& in) {
  return GpuRound(in.context) + GpuRound(in.reserve) + GpuRound(in.workspace) +
         GpuRound(in.kv_cache) + GpuRound(in.activations) + GpuRound(in.globals);
}

TEST(GpuPlan, RoundsToTheAllocationGranularity) {
  EXPECT_EQ(GpuRound(0), 0u);
  EXPECT_EQ(GpuRound(1), 2 * kMiB);
  EXPECT_EQ(GpuRound(2 * kMiB), 2 * kMiB);
  EXPECT_EQ(GpuRound(2 * kMiB + 1), 4 * kMiB);
}

TEST(GpuPlan, EverythingResidentWhenItFits) {
  GpuPlanInput in = Input(80 * kGiB, std::vector<uint64_t>(10, 100 * kMiB));
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->resident, 10);
  EXPECT_EQ(p->slots, 0);
  EXPECT_EQ(p->host_mode, HostMode::kNone);
  EXPECT_EQ(p->streamed_bytes, 0u);
  EXPECT_EQ(p->gpu_total, Fixed(in) + GpuRound(1000 * kMiB));
  EXPECT_EQ(p->weight_bytes, 300 * kMiB + 1000 * kMiB);
}

TEST(GpuPlan, StreamsTheRestThroughTwoSlots) {
  // Room for exactly 5 layers and 2 slots of 100 MiB after the fixed costs.
  GpuPlanInput in = Input(0, std::vector<uint64_t>(10, 100 * kMiB));
  in.budget = Fixed(in) + GpuRound(500 * kMiB) + GpuRound(200 * kMiB);
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->resident, 5);
  EXPECT_EQ(p->slots, 2);
  EXPECT_EQ(p->slot_bytes, 100 * kMiB);
  EXPECT_EQ(p->gpu_total, in.budget);
  EXPECT_EQ(p->streamed_bytes, 500 * kMiB);
  EXPECT_EQ(p->host_mode, HostMode::kPinnedCache);  // no host budget: pin the streamed layers
  EXPECT_EQ(p->host_bytes, 500 * kMiB);
  // One byte less: one layer fewer.
  in.budget -= 1;
  p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resident, 4);
  EXPECT_LE(p->gpu_total, in.budget);
}

TEST(GpuPlan, OneStreamedLayerNeedsOneSlot) {
  GpuPlanInput in = Input(80 * kGiB, std::vector<uint64_t>(4, 100 * kMiB));
  in.max_resident = 3;
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resident, 3);
  EXPECT_EQ(p->slots, 1);
  EXPECT_EQ(p->gpu_slots, 100 * kMiB);
  // Where all layers fit, none streams: a slot is never planned next to a fitting layer.
  in.max_resident = -1;
  in.budget = Fixed(in) + GpuRound(400 * kMiB);
  EXPECT_EQ(PlanGpuMemory(in)->resident, 4);
}

TEST(GpuPlan, FallsBackToOneSlotOnlyWhenTwoDoNotFit) {
  GpuPlanInput in = Input(0, std::vector<uint64_t>(4, 100 * kMiB));
  in.budget = Fixed(in) + GpuRound(150 * kMiB);  // one slot, no resident layer
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->resident, 0);
  EXPECT_EQ(p->slots, 1);
  EXPECT_LE(p->gpu_total, in.budget);
  // With room for two slots and nothing else, two slots and no resident layer.
  in.budget = Fixed(in) + GpuRound(200 * kMiB);
  p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resident, 0);
  EXPECT_EQ(p->slots, 2);
}

TEST(GpuPlan, RefusesBudgetsBelowTheFixedCostsAndNamesTheParts) {
  GpuPlanInput in = Input(1 * kGiB, std::vector<uint64_t>(4, 100 * kMiB));
  auto p = PlanGpuMemory(in);
  ASSERT_FALSE(p.ok());
  const std::string& m = p.status().message();
  EXPECT_NE(m.find("context"), std::string::npos) << m;
  EXPECT_NE(m.find("KV cache"), std::string::npos) << m;
  EXPECT_NE(m.find("activations"), std::string::npos) << m;
  // Fixed costs fit, but not one slot for the largest layer.
  in.budget = Fixed(in) + 50 * kMiB;
  p = PlanGpuMemory(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("staging slot"), std::string::npos) << p.status().message();
}

TEST(GpuPlan, MaxResidentCapsTheResidentLayers) {
  GpuPlanInput in = Input(80 * kGiB, std::vector<uint64_t>(6, 100 * kMiB));
  in.max_resident = 2;
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resident, 2);
  EXPECT_EQ(p->slots, 2);
  in.max_resident = 0;
  in.max_slots = 1;
  p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->resident, 0);
  EXPECT_EQ(p->slots, 1);
}

TEST(GpuPlan, HostModes) {
  GpuPlanInput in = Input(80 * kGiB, std::vector<uint64_t>(6, 100 * kMiB));
  in.max_resident = 2;  // 4 streamed layers, 400 MiB
  in.source_pinned = true;
  EXPECT_EQ(PlanGpuMemory(in)->host_mode, HostMode::kSourcePinned);
  EXPECT_EQ(PlanGpuMemory(in)->host_bytes, 0u);
  in.source_pinned = false;
  in.host_budget = 400 * kMiB;
  EXPECT_EQ(PlanGpuMemory(in)->host_mode, HostMode::kPinnedCache);
  in.host_budget = 250 * kMiB;  // two host slots
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->host_mode, HostMode::kHostSlots);
  EXPECT_EQ(p->host_slots, 2);
  EXPECT_EQ(p->host_bytes, 200 * kMiB);
  in.max_host_slots = 1;
  EXPECT_EQ(PlanGpuMemory(in)->host_slots, 1);
  in.host_budget = 50 * kMiB;
  p = PlanGpuMemory(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("host budget"), std::string::npos);
}

// Random layer sizes and budgets: the total never exceeds the budget, and one more resident
// layer would (the plan is the largest prefix).
TEST(GpuPlan, NeverExceedsTheBudgetAndKeepsAsManyLayersAsFit) {
  std::mt19937_64 rng(11);
  int planned = 0;
  for (int iter = 0; iter < 2000; ++iter) {
    const int L = 1 + int(rng() % 20);
    std::vector<uint64_t> layers(L);
    for (auto& b : layers) b = 1 + rng() % (300 * kMiB);
    GpuPlanInput in = Input(0, layers);
    in.max_slots = 1 + int(rng() % 3);
    uint64_t sum = 0;
    for (auto b : layers) sum += b;
    in.budget = Fixed(in) + rng() % (sum + 400 * kMiB);
    auto p = PlanGpuMemory(in);
    if (!p.ok()) continue;
    ++planned;
    ASSERT_LE(p->gpu_total, in.budget) << "iteration " << iter;
    ASSERT_EQ(p->gpu_total, p->gpu_fixed + p->gpu_globals + p->gpu_resident + p->gpu_slots);
    if (p->resident < L) {
      // The next layer would not fit with the same slot count (at least one slot).
      uint64_t res = 0, mx = 0;
      for (int l = 0; l <= p->resident; ++l) res += layers[l];
      for (int l = p->resident + 1; l < L; ++l) mx = std::max(mx, layers[l]);
      const int s = std::min(p->slots, L - p->resident - 1);
      const uint64_t more = Fixed(in) + GpuRound(res) + GpuRound(uint64_t(s) * mx);
      ASSERT_GT(more, in.budget) << "iteration " << iter << ": one more layer would fit";
      ASSERT_GE(p->slots, 1);
    }
  }
  EXPECT_GT(planned, 1000);
}

// GLM-130B's shapes (spec §1.1, §3): the packed layer sizes, and the plans bench-gpu runs.
TEST(GpuPlan, Glm130bLayerSizesAndPlans) {
  const ModelConfig cfg = ModelConfig::Glm130B();
  // INT4 row scheme: qkv 36864×6144 + dense 12288×6144 + up 65536×6144 + down 12288×16384 bytes
  // of codes, one fp16 scale per row, fp16 biases and LayerNorms; every part a multiple of 256.
  const uint64_t codes = 36864ull * 6144 + 12288ull * 6144 + 65536ull * 6144 + 12288ull * 16384;
  const uint64_t rows = 36864 + 12288 + 65536 + 12288;
  const uint64_t int4 = codes + 2 * rows /*scales*/ + 2 * rows /*biases*/ + 4 * 12288 * 2;
  EXPECT_EQ(LayoutLayer(cfg, {.dtype = DType::kI4}).bytes, int4);
  EXPECT_EQ(int4, 906575872u);
  EXPECT_EQ(LayoutLayer(cfg, {.dtype = DType::kI8}).bytes, 2 * codes + 4 * rows + 4 * 12288 * 2);
  const uint64_t f16 = LayoutLayer(cfg, {.dtype = DType::kF16}).bytes;
  EXPECT_EQ(f16, 4 * codes + 2 * rows + 4 * 12288 * 2);
  EXPECT_EQ(LayoutLayer(cfg, {.dtype = DType::kI4, .group_size = 128}).bytes,
            codes + 2 * (36864ull * 96 + 12288 * 96 + 65536 * 96 + 12288 * 256) + 2 * rows +
                4 * 12288 * 2);
  const uint64_t globals = LayoutGlobals(cfg).bytes;
  EXPECT_EQ(globals, 150528ull * 12288 * 2 + 2 * 12288 * 2);

  // INT4, all 70 layers and the fp16 embedding on an 80 GB H100 (79.1 GiB visible): resident,
  // about 67 GB of weights (spec §3: "INT4 ≈ 67.2 GB including the fp16 embedding").
  GpuPlanInput in;
  in.budget = 79 * kGiB;
  in.context = 600 * kMiB;
  in.workspace = 32 * kMiB;
  in.kv_cache = 2 * 70ull * 512 * 12288 * 2;  // one sequence of 512 tokens
  in.activations = 64 * kMiB;
  in.globals = globals;
  in.layers.assign(70, int4);
  auto p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->resident, 70);
  EXPECT_NEAR(double(p->weight_bytes) / 1e9, 67.16, 0.05);
  // One decode step reads every weight: at 3.0 TB/s that is 22.4 ms, under the 30 ms goal.
  EXPECT_NEAR(StepLowerBoundSeconds(*p, 50e9, 3.0e12) * 1e3, 22.39, 0.05);

  // FP16 under 60 GiB: 15 resident layers (3.62 GB each), two slots, 55 layers streamed from
  // pinned host memory; the bound is the PCIe copy of 199 GB.
  in.budget = 60 * kGiB;
  in.layers.assign(70, f16);
  in.source_pinned = true;
  p = PlanGpuMemory(in);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->slots, 2);
  EXPECT_LE(p->gpu_total, in.budget);
  EXPECT_EQ(p->host_mode, HostMode::kSourcePinned);
  EXPECT_EQ(p->streamed_bytes, uint64_t(70 - p->resident) * f16);
  EXPECT_EQ(p->resident, 13);
  EXPECT_NEAR(StepLowerBoundSeconds(*p, 50e9, 3.0e12), double(p->streamed_bytes) / 50e9, 1e-9);
  std::printf("%s\n", p->Describe().c_str());
}

}  // namespace
}  // namespace glm

#else  // GLM_HAVE_CUDA

TEST(GpuPlan, NotBuilt) { GTEST_SKIP() << "built without CUDA (GLM_CUDA=OFF or no nvcc)"; }

#endif  // GLM_HAVE_CUDA
