// MakePlan and the pipeline model it optimises over (the rule is in planner.h).
#include "offload/planner.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "offload/host_buffer.h"

namespace glm {

std::vector<bool> SpreadResident(int num_layers, int streamed) {
  std::vector<bool> resident(size_t(num_layers), true);
  for (int j = 0; j < streamed; ++j) {
    // Centre of the j-th of `streamed` equal parts: distinct because parts are >= 1 layer wide.
    const int pos = int((j + 0.5) * num_layers / streamed);
    resident[size_t(pos)] = false;
  }
  return resident;
}

double SimulateStep(const std::vector<bool>& resident, const std::vector<uint64_t>& layer_bytes,
                    double bw, double tc, double tg, int slots, bool on_demand) {
  const int L = int(resident.size());
  std::vector<int> streamed;
  for (int l = 0; l < L; ++l) {
    if (!resident[size_t(l)]) streamed.push_back(l);
  }
  const int k = int(streamed.size());
  if (k == 0) return L * tc + tg;
  GLM_CHECK(slots >= 1 && bw > 0);
  constexpr int kSteps = 8, kMeasured = 4;  // the last kMeasured steps are the steady state
  const int reads = kSteps * k;
  std::vector<double> done(static_cast<size_t>(reads)), released(done);
  double disk_free = 0, t = 0, mark = 0;
  int next = 0;  // next read to simulate, in issue order
  for (int s = 0; s < kSteps; ++s) {
    if (s == kSteps - kMeasured) mark = t;
    int j = s * k;  // read index of this step's first streamed layer
    for (int l = 0; l < L; ++l) {
      if (resident[size_t(l)]) {
        t += tc;
        continue;
      }
      // Simulate reads up to j: each starts when the disk, a slot and the depth limit allow.
      for (; next <= j; ++next) {
        double start = disk_free;
        if (next >= slots) start = std::max(start, released[size_t(next - slots)]);
        if (on_demand) start = std::max(start, t);  // issued by the Acquire that waits for it
        const double r = double(layer_bytes[size_t(streamed[size_t(next % k)])]) / bw;
        done[size_t(next)] = disk_free = start + r;
      }
      t = std::max(t, done[size_t(j)]);
      t += tc;
      released[size_t(j)] = t;
      ++j;
    }
    t += tg;
  }
  return (t - mark) / kMeasured;
}

std::string Plan::ResidentList() const {
  std::string out;
  const int L = num_layers();
  for (int l = 0; l < L;) {
    if (!resident[size_t(l)]) {
      ++l;
      continue;
    }
    int e = l;
    while (e + 1 < L && resident[size_t(e + 1)]) ++e;
    out += (out.empty() ? "" : ",") + (e == l ? std::to_string(l) : StrFormat("%d-%d", l, e));
    l = e + 1;
  }
  return out.empty() ? "none" : out;
}

std::string Plan::ToString() const {
  auto ms = [](double s) { return s > 0 ? StrFormat("%.1f ms", s * 1e3) : std::string("n/a"); };
  std::string s;
  s += StrFormat(
      "host budget %s: globals %s + %d resident layers %s + %d staging slots x %s = %s\n",
      budget_bytes ? FormatBytes(budget_bytes).c_str() : "unlimited",
      FormatBytes(globals_bytes).c_str(), resident_count, FormatBytes(resident_bytes).c_str(),
      staging_slots, FormatBytes(slot_bytes).c_str(), FormatBytes(total_bytes()).c_str());
  s += StrFormat(
      "resident layers: %s (%d of %d); %s\n", ResidentList().c_str(), resident_count, num_layers(),
      staging_slots == 0 ? "nothing streamed"
      : on_demand
          ? "reads on demand (no prefetch)"
          : StrFormat("prefetch depth %d (a ring of %d slots)", prefetch_depth, staging_slots)
                .c_str());
  s += StrFormat(
      "outside the budget: KV cache %s, activations %s, plus the process's fixed "
      "overhead\n",
      FormatBytes(kv_bytes).c_str(), FormatBytes(activation_bytes).c_str());
  s += StrFormat("per step: streamed %s, I/O %s, compute %s -> bound %s, predicted %s",
                 FormatBytes(streamed_bytes_per_step).c_str(), ms(io_s).c_str(),
                 ms(compute_s).c_str(), ms(bound_s).c_str(), ms(predicted_s).c_str());
  return s;
}

namespace {

// Fills the byte and time fields of a plan whose resident set and slots are chosen.
void Complete(const PlanInput& in, Plan* p) {
  const int L = int(in.layer_bytes.size());
  p->resident_count = 0;
  p->resident_bytes = p->streamed_bytes_per_step = p->slot_bytes = 0;
  for (int l = 0; l < L; ++l) {
    if (p->resident[size_t(l)]) {
      ++p->resident_count;
      p->resident_bytes += in.layer_bytes[size_t(l)];
    } else {
      p->streamed_bytes_per_step += in.layer_bytes[size_t(l)];
      p->slot_bytes = std::max(p->slot_bytes, in.layer_bytes[size_t(l)]);
    }
  }
  if (p->resident_count == L) p->staging_slots = p->prefetch_depth = 0;
  p->staging_bytes = p->slot_bytes * uint64_t(p->staging_slots);
  const bool measured = in.disk_bytes_per_s > 0 && in.layer_compute_s > 0;
  p->io_s = in.disk_bytes_per_s > 0 ? double(p->streamed_bytes_per_step) / in.disk_bytes_per_s : 0;
  p->compute_s = in.layer_compute_s > 0 ? L * in.layer_compute_s + in.globals_compute_s : 0;
  p->bound_s = std::max(p->io_s, p->compute_s);
  p->predicted_s = 0;
  if (measured || p->resident_count == L) {
    p->predicted_s =
        p->resident_count == L
            ? p->compute_s
            : SimulateStep(p->resident, in.layer_bytes, in.disk_bytes_per_s, in.layer_compute_s,
                           in.globals_compute_s, p->staging_slots, p->on_demand);
  }
}

// Most layers that fit in `avail` bytes with the streamed ones spread evenly; the plan's
// resident set. False if even zero resident layers leave a streamed layer larger than a slot.
void ChooseResident(const PlanInput& in, uint64_t avail, Plan* p) {
  const int L = int(in.layer_bytes.size());
  for (int streamed = 1; streamed <= L; ++streamed) {
    std::vector<bool> r = SpreadResident(L, streamed);
    uint64_t bytes = 0;
    for (int l = 0; l < L; ++l) bytes += r[size_t(l)] ? in.layer_bytes[size_t(l)] : 0;
    if (bytes <= avail) {
      p->resident = std::move(r);
      return;
    }
  }
  p->resident.assign(size_t(L), false);
}

// The stream_all rule: the slot counts of MakePlan's rule, with no resident layer.
StatusOr<Plan> PlanStreamAll(const PlanInput& in, uint64_t largest, uint64_t all_layers) {
  const int first = in.prefetch_depth >= 0 ? in.prefetch_depth + 1 : 1;
  const int last = in.prefetch_depth >= 0 ? first : std::max(1, in.max_slots);
  std::optional<Plan> best;
  for (int n = first; n <= last; ++n) {
    if (largest * uint64_t(n) >= all_layers) break;  // the slots would hold the whole model
    PlanInput one = in;
    one.stream_all = false;
    one.budget_bytes = in.globals_bytes + largest * uint64_t(n);
    one.prefetch_depth = in.prefetch_depth >= 0 ? in.prefetch_depth : n - 1;
    ASSIGN_OR_RETURN(Plan p, MakePlan(one));
    p.on_demand = in.prefetch_depth == 0;
    Complete(in, &p);
    if (p.resident_count > 0) break;
    if (!best || p.predicted_s < best->predicted_s * 0.99) best = std::move(p);
  }
  if (!best) {
    return Errorf("streaming every layer: %d staging slot(s) would hold the whole model", first);
  }
  return *best;
}

}  // namespace

StatusOr<Plan> MakePlan(const PlanInput& in) {
  const int L = int(in.layer_bytes.size());
  if (L == 0) return Errorf("planner: the model has no layers");
  if (in.prefetch_depth > 64) return Errorf("prefetch depth %d: at most 64", in.prefetch_depth);
  Plan base;
  base.budget_bytes = in.budget_bytes;
  base.globals_bytes = in.globals_bytes;
  base.kv_bytes = in.kv_bytes;
  base.activation_bytes = in.activation_bytes;

  uint64_t all_layers = 0, largest = 0;
  for (uint64_t b : in.layer_bytes) {
    all_layers += b;
    largest = std::max(largest, b);
  }
  if (in.stream_all) return PlanStreamAll(in, largest, all_layers);
  if (in.budget_bytes == 0 || in.globals_bytes + all_layers <= in.budget_bytes) {
    Plan p = base;
    p.resident.assign(size_t(L), true);
    Complete(in, &p);
    return p;
  }
  const int forced_slots = in.prefetch_depth >= 0 ? in.prefetch_depth + 1 : 0;
  const uint64_t minimum = in.globals_bytes + largest * uint64_t(std::max(forced_slots, 1));
  if (in.budget_bytes < minimum) {
    return Errorf(
        "host budget %s is below the minimum %s for this model: model-level tensors %s "
        "+ %d staging slot(s) of %s (the largest layer)",
        FormatBytes(in.budget_bytes).c_str(), FormatBytes(minimum).c_str(),
        FormatBytes(in.globals_bytes).c_str(), std::max(forced_slots, 1),
        FormatBytes(largest).c_str());
  }
  const bool measured = in.disk_bytes_per_s > 0 && in.layer_compute_s > 0;
  std::vector<int> candidates;
  if (forced_slots > 0) {
    candidates.push_back(forced_slots);
  } else if (!measured) {
    candidates.push_back(3);
  } else {
    for (int n = 1; n <= std::max(1, in.max_slots); ++n) candidates.push_back(n);
  }
  std::optional<Plan> best;
  for (int want : candidates) {
    // Fewer slots when the budget cannot hold `want` (only without a forced depth).
    int n = want;
    while (forced_slots == 0 && n > 1 &&
           in.globals_bytes + largest * uint64_t(n) > in.budget_bytes) {
      --n;
    }
    Plan p = base;
    p.staging_slots = n;
    p.prefetch_depth = n - 1;
    p.on_demand = in.prefetch_depth == 0;
    // Resident layers from what is left after the slots (slots sized for the largest layer).
    ChooseResident(in, in.budget_bytes - in.globals_bytes - largest * uint64_t(n), &p);
    Complete(in, &p);
    GLM_CHECK_MSG(p.total_bytes() <= in.budget_bytes, "plan of %s exceeds the budget %s",
                  FormatBytes(p.total_bytes()).c_str(), FormatBytes(in.budget_bytes).c_str());
    if (!best || (measured && p.predicted_s < best->predicted_s * 0.99)) best = std::move(p);
  }
  return *best;
}

}  // namespace glm
