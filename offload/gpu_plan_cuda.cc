// The GPU tier's planner (plain C++; see gpu_plan_cuda.h).
#include "offload/gpu_plan_cuda.h"

#include <algorithm>

namespace glm {
namespace {

std::string Gib(uint64_t b) { return StrFormat("%.2f GiB", double(b) / double(1ull << 30)); }

uint64_t MaxOf(const std::vector<uint64_t>& v, size_t from) {
  uint64_t m = 0;
  for (size_t i = from; i < v.size(); ++i) m = std::max(m, v[i]);
  return m;
}

}  // namespace

const char* HostModeName(HostMode m) {
  switch (m) {
    case HostMode::kNone:
      return "none";
    case HostMode::kSourcePinned:
      return "source-pinned";
    case HostMode::kPinnedCache:
      return "pinned-cache";
    case HostMode::kHostSlots:
      return "host-slots";
  }
  return "?";
}

StatusOr<GpuPlan> PlanGpuMemory(const GpuPlanInput& in) {
  const int L = int(in.layers.size());
  if (L == 0) return Errorf("GPU plan: the model has no layers");
  if (in.max_slots < 1) return Errorf("GPU plan: max_slots = %d (at least 1)", in.max_slots);
  GpuPlan p;
  p.num_layers = L;
  p.budget = in.budget;
  p.gpu_fixed = GpuRound(in.context) + GpuRound(in.reserve) + GpuRound(in.workspace) +
                GpuRound(in.kv_cache) + GpuRound(in.activations);
  p.gpu_globals = GpuRound(in.globals);
  p.weight_bytes = in.globals;
  for (uint64_t b : in.layers) p.weight_bytes += b;
  const uint64_t base = p.gpu_fixed + p.gpu_globals;
  if (base > in.budget) {
    return Errorf(
        "GPU plan: the budget %s is below what the GPU must hold before any layer: %s "
        "(context %s, reserve %s, workspace %s, KV cache %s, activations %s, "
        "embedding and final norm %s)",
        Gib(in.budget).c_str(), Gib(base).c_str(), Gib(GpuRound(in.context)).c_str(),
        Gib(GpuRound(in.reserve)).c_str(), Gib(GpuRound(in.workspace)).c_str(),
        Gib(GpuRound(in.kv_cache)).c_str(), Gib(GpuRound(in.activations)).c_str(),
        Gib(p.gpu_globals).c_str());
  }
  const uint64_t avail = in.budget - base;
  // prefix[r] = bytes of layers [0, r).
  std::vector<uint64_t> prefix(L + 1, 0);
  for (int l = 0; l < L; ++l) prefix[l + 1] = prefix[l] + in.layers[l];
  const int cap = in.max_resident < 0 ? L : std::min(L, in.max_resident);

  // Device bytes of the layers for `r` resident layers and `s` slots (0 if none streamed).
  auto layer_bytes = [&](int r, int s) -> uint64_t {
    const uint64_t res = GpuRound(prefix[r]);
    if (r == L) return res;
    return res + GpuRound(uint64_t(std::min(s, L - r)) * MaxOf(in.layers, r));
  };
  bool found = false;
  for (int s = in.max_slots; s >= 1 && !found; --s) {
    for (int r = cap; r >= 0; --r) {  // the most resident layers that fit with s slots
      if (layer_bytes(r, s) <= avail) {
        p.resident = r;
        p.slots = r == L ? 0 : std::min(s, L - r);
        found = true;
        break;
      }
    }
  }
  if (!found) {
    return Errorf(
        "GPU plan: the budget %s leaves %s for layers after the fixed costs (%s), less "
        "than one staging slot for the largest layer (%s)",
        Gib(in.budget).c_str(), Gib(avail).c_str(), Gib(base).c_str(),
        Gib(GpuRound(MaxOf(in.layers, 0))).c_str());
  }
  p.slot_bytes = p.resident == L ? 0 : MaxOf(in.layers, p.resident);
  p.gpu_resident = GpuRound(prefix[p.resident]);
  p.gpu_slots = GpuRound(uint64_t(p.slots) * p.slot_bytes);
  p.gpu_total = base + p.gpu_resident + p.gpu_slots;
  p.streamed_bytes = prefix[L] - prefix[p.resident];

  // Host side of the streamed layers.
  if (p.resident == L) {
    p.host_mode = HostMode::kNone;
  } else if (in.source_pinned) {
    p.host_mode = HostMode::kSourcePinned;
  } else if (in.host_budget == 0 || in.host_budget >= p.streamed_bytes) {
    p.host_mode = HostMode::kPinnedCache;
    p.host_bytes = p.streamed_bytes;
  } else {
    const uint64_t fit = in.host_budget / p.slot_bytes;
    if (fit < 1) {
      return Errorf(
          "GPU plan: the host budget %s is below one staging slot (%s) for the %d "
          "streamed layers",
          Gib(in.host_budget).c_str(), Gib(p.slot_bytes).c_str(), L - p.resident);
    }
    p.host_mode = HostMode::kHostSlots;
    p.host_slots = int(std::min<uint64_t>(
        {fit, uint64_t(std::max(1, in.max_host_slots)), uint64_t(L - p.resident)}));
    p.host_bytes = uint64_t(p.host_slots) * p.slot_bytes;
  }
  return p;
}

std::string GpuPlan::Describe() const {
  std::string s = StrFormat(
      "GPU plan: %d of %d layers resident, %d staging slot(s) of %s for "
      "the other %d\n",
      resident, num_layers, slots, Gib(slot_bytes).c_str(), num_layers - resident);
  s += StrFormat(
      "  device: fixed %s + embedding/final norm %s + resident layers %s + slots %s "
      "= %s of budget %s\n",
      Gib(gpu_fixed).c_str(), Gib(gpu_globals).c_str(), Gib(gpu_resident).c_str(),
      Gib(gpu_slots).c_str(), Gib(gpu_total).c_str(), Gib(budget).c_str());
  s += StrFormat("  host: %s", HostModeName(host_mode));
  if (host_mode == HostMode::kHostSlots) s += StrFormat(", %d slot(s)", host_slots);
  s += StrFormat(", %s pinned; %s streamed per pass, %s of weights read per step",
                 Gib(host_bytes).c_str(), Gib(streamed_bytes).c_str(), Gib(weight_bytes).c_str());
  return s;
}

double StepLowerBoundSeconds(const GpuPlan& plan, double h2d_bytes_per_s, double hbm_bytes_per_s,
                             uint64_t extra_bytes) {
  const double h2d = h2d_bytes_per_s > 0 ? double(plan.streamed_bytes) / h2d_bytes_per_s : 0;
  const double hbm =
      hbm_bytes_per_s > 0 ? double(plan.weight_bytes + extra_bytes) / hbm_bytes_per_s : 0;
  return std::max(h2d, hbm);
}

}  // namespace glm
