// What a generation session runs the model on: the forward pass over a fixed set of numbered KV
// caches, with every buffer allocated once for the largest step. The session decides which
// sequence uses which cache (and reorders them for beam search); the engine owns the memory and
// the device. Two engines: the CPU one below (runtime/model.h's ForwardBatch) and the GPU one
// (runtime/engine_cuda.h, ForwardBatchCuda over the GPU weight tier).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/weights.h"

namespace glm {

// The sizes an engine allocates for.
struct EngineShape {
  int64_t caches = 1;          // KV caches (sequences held at once)
  int64_t capacity = 1;        // tokens per cache
  int64_t max_tokens = 1;      // tokens per step, all sequences together
  int64_t max_logit_rows = 1;  // rows of logits per step (one per sequence)
};

// One sequence's share of a step: the new tokens of the sequence held in cache `cache`.
struct EngineStep {
  int cache = 0;
  std::span<const int32_t> ids;
  std::span<const int32_t> positions;
  int64_t prefix_len = 0;  // bidirectional prefix of the whole sequence (spec §1.8)
};

class ForwardEngine {
 public:
  virtual ~ForwardEngine() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const EngineShape& shape() const = 0;
  // One forward step (ForwardBatch's contract, runtime/model.h): appends each step's keys and
  // values to its cache and writes the fp16 logits of each step's last token to host memory
  // `logits` [steps, V], in step order. Errors: a cache index out of range or used twice in the
  // step, and ForwardBatch's (ids outside the vocabulary, capacity exceeded, store failures).
  virtual Status Forward(std::span<const EngineStep> steps, Half* logits) = 0;
  virtual int64_t Length(int cache) const = 0;  // tokens the cache holds
  virtual void Reset(int cache) = 0;            // empties the cache
  // Cache `dst` holds the tokens of cache `src` afterwards, every layer (beam search).
  virtual Status Copy(int src, int dst) = 0;
  // One line for the tools, e.g. "CPU (avx512, 2 threads)".
  virtual std::string Describe() const = 0;
};

// The CPU engine: ForwardBatch over `store`, which must outlive it.
std::unique_ptr<ForwardEngine> MakeCpuEngine(WeightStore& store, const EngineShape& shape);

// The checks every engine makes on a step before running it: at least one step, at most
// shape.max_logit_rows of them, each cache index in [0, shape.caches) and used once.
Status CheckEngineSteps(std::span<const EngineStep> steps, const EngineShape& shape);
// Copy's: both caches exist.
Status CheckEngineCopy(int src, int dst, const EngineShape& shape);

// The steps as a forward pass takes them (SeqStep or GpuSeqStep) over the engine's caches, after
// CheckEngineSteps.
template <class SeqStepT, class Cache>
Status ToSeqSteps(std::span<const EngineStep> steps, const EngineShape& shape,
                  std::vector<Cache>& caches, std::vector<SeqStepT>* out) {
  RETURN_IF_ERROR(CheckEngineSteps(steps, shape));
  out->clear();
  for (const EngineStep& s : steps) {
    out->push_back({.kv = &caches[s.cache],
                    .ids = s.ids,
                    .positions = s.positions,
                    .prefix_len = s.prefix_len});
  }
  return Status::Ok();
}

}  // namespace glm
