// glm-bench's timed runs: a prefill and decode steps through any WeightStore, and the store-less
// view of a fully resident StreamingStore that the resident comparison runs against.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "offload/streaming_store.h"
#include "runtime/check.h"
#include "runtime/weights.h"

namespace glm {

struct RunTimes {
  double prefill_s = 0;
  std::vector<double> decode_s;
  uint64_t kv_bytes = 0, activation_bytes = 0;
  double DecodeMean() const {
    double s = 0;
    for (double d : decode_s) s += d;
    return decode_s.empty() ? 0 : s / double(decode_s.size());
  }
};

// B sequences of `prompt` tokens (bidirectional context, as [gMASK] generation), then
// `steps` batched decode steps. before(i) runs untimed before step i (0 = the prefill);
// after(i) runs untimed after it.
StatusOr<RunTimes> RunSteps(WeightStore& store, int batch, int prompt, int steps,
                            const std::function<void(int)>& before,
                            const std::function<void(int)>& after);

// The layers of a fully resident StreamingStore, served without it: Acquire returns the view
// the store returned once, with no lock and no bookkeeping. Compute alone on the very bytes the
// store holds, for the "fully resident vs compute alone" comparison.
class DirectStore : public WeightStore {
 public:
  static StatusOr<std::unique_ptr<DirectStore>> Of(StreamingStore& s);
  const ModelConfig& config() const override { return store_.config(); }
  const GlobalWeights& globals() const override { return store_.globals(); }
  StatusOr<const LayerWeights*> Acquire(int layer) override { return layers_[size_t(layer)]; }
  void Release(int) override {}

 private:
  explicit DirectStore(StreamingStore& s) : store_(s) {}
  StreamingStore& store_;
  std::vector<const LayerWeights*> layers_;
};

double Median(std::vector<double> v);

}  // namespace glm
