// The residency planner: never past its budget over a table of configurations and a sweep of
// budgets, the minimum budget named when refused, and the pipeline model's known limits
// (I/O-bound, compute-bound, no prefetch).
#include "offload/planner.h"

#include <gtest/gtest.h>

#include <cmath>

namespace glm {
namespace {

constexpr uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

PlanInput Model(int layers, uint64_t layer_bytes, uint64_t globals) {
  PlanInput in;
  in.layer_bytes.assign(size_t(layers), layer_bytes);
  in.globals_bytes = globals;
  return in;
}

void ExpectConsistent(const PlanInput& in, const Plan& p, const std::string& what) {
  EXPECT_LE(p.total_bytes(), in.budget_bytes ? in.budget_bytes : UINT64_MAX) << what;
  int resident = 0;
  for (bool r : p.resident) resident += r;
  EXPECT_EQ(resident, p.resident_count) << what;
  if (resident < int(p.resident.size())) {
    EXPECT_GE(p.staging_slots, 1) << what;
    EXPECT_EQ(p.prefetch_depth, p.staging_slots - 1) << what;
    if (in.prefetch_depth >= 0) {
      EXPECT_EQ(p.prefetch_depth, in.prefetch_depth) << what;
    }
    EXPECT_EQ(p.on_demand, in.prefetch_depth == 0) << what;
  } else {
    EXPECT_EQ(p.staging_slots, 0) << what;
  }
  if (p.predicted_s > 0) {
    EXPECT_GE(p.predicted_s, p.bound_s * (1 - 1e-9)) << what;
  }
}

TEST(Planner, NeverExceedsTheBudgetOnATableOfConfigurations) {
  struct Row {
    const char* name;
    int layers;
    uint64_t layer, globals, budget;
    double bw, tc, tg;  // bytes/s, s, s (0: unknown)
    int depth;
  };
  // clang-format off
  const Row rows[] = {
      {"GLM-130B fp16, 256 GB host",     70, 3623878656ull, 3699376128ull, 256 * kGiB, 3e9, 0.25, 0.3, -1},
      {"GLM-130B fp16, minimum",         70, 3623878656ull, 3699376128ull, 3699376128ull + 3623878656ull, 3e9, 0.25, 0.3, -1},
      {"GLM-130B fp16, whole model",     70, 3623878656ull, 3699376128ull, 300 * kGiB, 3e9, 0.25, 0.3, -1},
      {"GLM-130B int4-sized, 64 GB",     70, 906 * kMiB, 3699376128ull, 64 * kGiB, 7e9, 0.02, 0.03, -1},
      {"medium x56, 1.5 GiB",            56, 101 * kMiB, 128 * kMiB, 3 * kGiB / 2, 1e9, 0.02, 0.01, -1},
      {"medium x56, 1.5 GiB, depth 4",   56, 101 * kMiB, 128 * kMiB, 3 * kGiB / 2, 1e9, 0.02, 0.01, 4},
      {"medium x56, 1.5 GiB, depth 0",   56, 101 * kMiB, 128 * kMiB, 3 * kGiB / 2, 1e9, 0.02, 0.01, 0},
      {"medium x56, compute bound",      56, 101 * kMiB, 128 * kMiB, 3 * kGiB, 10e9, 0.5, 0.01, -1},
      {"medium x56, unmeasured",         56, 101 * kMiB, 128 * kMiB, 2 * kGiB, 0, 0, 0, -1},
      {"tiny, unlimited",                 6, 1 * kMiB, 1 * kMiB, 0, 1e9, 0.001, 0.001, -1},
      {"one layer model",                 1, 64 * kMiB, 8 * kMiB, 80 * kMiB, 1e9, 0.01, 0.0, -1},
      {"budget one byte short of all",    8, 10 * kMiB, 10 * kMiB, 90 * kMiB - 1, 1e9, 0.01, 0.0, -1},
  };
  // clang-format on
  for (const Row& r : rows) {
    PlanInput in = Model(r.layers, r.layer, r.globals);
    in.budget_bytes = r.budget;
    in.disk_bytes_per_s = r.bw;
    in.layer_compute_s = r.tc;
    in.globals_compute_s = r.tg;
    in.prefetch_depth = r.depth;
    auto p = MakePlan(in);
    ASSERT_TRUE(p.ok()) << r.name << ": " << p.status().message();
    ExpectConsistent(in, *p, r.name);
  }
}

TEST(Planner, SweepOfBudgetsFromMinimumToWholeModel) {
  PlanInput in = Model(24, 50 * kMiB, 30 * kMiB);
  in.disk_bytes_per_s = 1.2e9;
  in.layer_compute_s = 0.03;
  in.globals_compute_s = 0.02;
  const uint64_t minimum = 80 * kMiB, whole = 30 * kMiB + 24 * 50 * kMiB;
  int last_resident = -1;
  for (uint64_t b = minimum; b <= whole + 10 * kMiB; b += 7 * kMiB + 12345) {
    in.budget_bytes = b;
    auto p = MakePlan(in);
    ASSERT_TRUE(p.ok()) << b << ": " << p.status().message();
    ExpectConsistent(in, *p, "budget " + std::to_string(b));
    if (b >= whole) {
      EXPECT_EQ(p->resident_count, 24);
    }
    last_resident = p->resident_count;
  }
  EXPECT_EQ(last_resident, 24);
}

TEST(Planner, BelowTheMinimumNamesIt) {
  PlanInput in = Model(4, 100 * kMiB, 50 * kMiB);
  in.budget_bytes = 149 * kMiB;
  auto p = MakePlan(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("minimum 150.0 MiB"), std::string::npos)
      << p.status().message();
  in.prefetch_depth = 2;  // a forced depth needs depth + 1 slots
  in.budget_bytes = 300 * kMiB;
  p = MakePlan(in);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("minimum 350.0 MiB"), std::string::npos)
      << p.status().message();
}

TEST(Planner, StreamAllPicksTheSlotCountAndKeepsNothingResident) {
  PlanInput in = Model(16, 100 * kMiB, 50 * kMiB);
  in.stream_all = true;
  in.disk_bytes_per_s = 1e9;
  in.layer_compute_s = 0.02;
  in.globals_compute_s = 0.05;
  auto p = MakePlan(in);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->resident_count, 0);
  EXPECT_GE(p->staging_slots, 1);
  EXPECT_EQ(p->total_bytes(), 50 * kMiB + uint64_t(p->staging_slots) * 100 * kMiB);
  EXPECT_FALSE(p->on_demand);
  in.prefetch_depth = 0;  // forced: one slot, on demand
  p = MakePlan(in);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->staging_slots, 1);
  EXPECT_TRUE(p->on_demand);
  in.prefetch_depth = 15;  // 16 slots would hold the model
  EXPECT_FALSE(MakePlan(in).ok());
}

TEST(Planner, WholeModelIsResidentWithoutSlots) {
  PlanInput in = Model(4, 100 * kMiB, 50 * kMiB);
  in.budget_bytes = 450 * kMiB;
  auto p = MakePlan(in).value();
  EXPECT_EQ(p.resident_count, 4);
  EXPECT_EQ(p.staging_slots, 0);
  EXPECT_EQ(p.streamed_bytes_per_step, 0u);
  EXPECT_EQ(p.ResidentList(), "0-3");
}

TEST(Planner, UnmeasuredTakesThreeSlots) {
  PlanInput in = Model(10, 10 * kMiB, 10 * kMiB);
  in.budget_bytes = 60 * kMiB;
  auto p = MakePlan(in).value();
  EXPECT_EQ(p.staging_slots, 3);
  EXPECT_EQ(p.resident_count, 2);
  EXPECT_EQ(p.predicted_s, 0);
}

TEST(Planner, StreamedLayersAreSpreadEvenly) {
  auto r = SpreadResident(10, 3);
  int streamed = 0;
  for (bool x : r) streamed += !x;
  EXPECT_EQ(streamed, 3);
  EXPECT_FALSE(r[1]);  // centres of [0,3.3), [3.3,6.7), [6.7,10)
  EXPECT_FALSE(r[5]);
  EXPECT_FALSE(r[8]);
  for (int k = 1; k <= 70; ++k) {
    auto all = SpreadResident(70, k);
    int n = 0;
    for (bool x : all) n += !x;
    EXPECT_EQ(n, k);
  }
}

TEST(SimulateStep, KnownLimits) {
  const int L = 10;
  std::vector<uint64_t> bytes(L, 100 * kMiB);
  const double bw = 100.0 * kMiB;  // 1 s per layer read
  std::vector<bool> none(L, false), all(L, true);
  // Fully resident: compute only.
  EXPECT_NEAR(SimulateStep(all, bytes, bw, 0.1, 0.5, 0, false), 10 * 0.1 + 0.5, 1e-9);
  // I/O bound, double buffered: the disk never idles, 1 s per layer.
  EXPECT_NEAR(SimulateStep(none, bytes, bw, 0.1, 0.0, 2, false), 10.0, 1e-6);
  // No prefetch: read then compute, one after the other.
  EXPECT_NEAR(SimulateStep(none, bytes, bw, 0.1, 0.2, 1, true), 10 * 1.1 + 0.2, 1e-6);
  // Compute bound (2 s per layer): reads hide behind compute.
  EXPECT_NEAR(SimulateStep(none, bytes, bw, 2.0, 0.0, 2, false), 20.0, 1e-6);
  // Resident runs need enough slots for the disk to read ahead through them.
  std::vector<bool> half(L, true);
  for (int l = 0; l < L; l += 2) half[size_t(l)] = false;  // streamed: 0,2,4,6,8
  const double two = SimulateStep(half, bytes, bw, 0.5, 0.0, 2, false);
  EXPECT_NEAR(two, 5.0, 1e-6);  // 5 reads of 1 s, compute 5 s: balanced, disk always busy
  // One slot as a ring: each read overlaps the resident layer after its predecessor
  // (0.5 s compute + 1 s read per pair), where reading on demand overlaps nothing.
  EXPECT_NEAR(SimulateStep(half, bytes, bw, 0.5, 0.0, 1, false), 7.5, 1e-6);
  EXPECT_NEAR(SimulateStep(half, bytes, bw, 0.5, 0.0, 1, true), 10.0, 1e-6);
}

}  // namespace
}  // namespace glm
