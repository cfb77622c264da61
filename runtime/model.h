// The GLM forward pass on the CPU: embedding, L DeepNorm layers with GeGLU, final LayerNorm and
// tied-embedding logits (spec §1.2-1.10). The loop gets each layer's weights from a WeightStore
// (Acquire/Release), so where the weights live is not its business.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu/kernels.h"
#include "runtime/check.h"
#include "runtime/config.h"
#include "runtime/weights.h"

namespace glm {

// Post-RoPE keys and unscaled values of every layer (spec §1.11), for one sequence, each layer in
// the CPU attention's head-major layout (kernels/cpu/kernels.h: KvKeyIndex, KvValueIndex).
struct KvCache {
  int64_t capacity = 0;      // S: tokens it can hold
  int64_t length = 0;        // tokens already processed
  int64_t layer_halves = 0;  // KvLayerHalves(capacity, H, D)
  std::vector<Half> k;       // [L][layer_halves]
  std::vector<Half> v;       // [L][layer_halves]

  static KvCache Allocate(const ModelConfig& cfg, int64_t capacity);
  Half* K(int layer) { return k.data() + size_t(layer) * layer_halves; }
  Half* V(int layer) { return v.data() + size_t(layer) * layer_halves; }
  const Half* K(int layer) const { return k.data() + size_t(layer) * layer_halves; }
  const Half* V(int layer) const { return v.data() + size_t(layer) * layer_halves; }
};

// Scratch for up to `max_tokens` tokens per step (all sequences together), allocated once.
// max_keys bounds the longest sequence (attention scratch).
struct Activations {
  int64_t max_tokens = 0;
  std::vector<Half> x;      // [T, C] layer input / output stream
  std::vector<Half> y;      // [T, C] input LayerNorm output
  std::vector<Half> qkv;    // [T, 3*H*D]
  std::vector<Half> ctx;    // [T, H*D]
  std::vector<Half> attn;   // [T, C] attention.dense output
  std::vector<Half> h;      // [T, C] after the first residual
  std::vector<Half> z;      // [T, C] post-attention LayerNorm output
  std::vector<Half> up;     // [T, 2F]
  std::vector<Half> gated;  // [T, F]
  std::vector<Half> down;   // [T, C]
  std::vector<float> f32;   // [T, max(C, F)] linear-layer input in fp32
  std::vector<float> attn_scratch;
  std::vector<int32_t> ids;        // [T] the step's tokens, all sequences concatenated
  std::vector<int32_t> positions;  // [T]

  static Activations Allocate(const ModelConfig& cfg, int64_t max_tokens, int64_t max_keys);
};

// Debug tap: called with a name ("embed", "l3.attn_norm", "l3.out", "final_norm") and the
// fp16 tensor [N, cols] (all tokens of the step) right after it is computed. Null normally.
using TapFn = std::function<void(const std::string& name, const Half* data, int64_t cols)>;

// One sequence's share of a forward step.
struct SeqStep {
  KvCache* kv = nullptr;               // its cache; the new keys/values go at kv->length
  std::span<const int32_t> ids;        // the new tokens
  std::span<const int32_t> positions;  // their position ids
  int64_t prefix_len = 0;              // bidirectional prefix of the whole sequence (§1.8)
  bool all_logits = false;             // logits of every new token, else of the last only
};

// Runs the new tokens of all sequences together: each layer is acquired once and applied to
// every token of the batch, so batched decode shares every streamed layer read. Appends keys and
// values to each cache and writes fp16 logits [rows, V], rows in sequence order (T_b rows for an
// all_logits sequence, else 1). A sequence's first call must cover its whole bidirectional
// prefix. Errors: ids outside the vocabulary, capacities exceeded, store failures.
Status ForwardBatch(WeightStore& store, const RotaryTable& rope, std::span<const SeqStep> seqs,
                    Activations& act, Half* logits, const TapFn* tap = nullptr);

// The checks of one sequence's share of a step, shared by the CPU and GPU forward passes:
// tokens present, one position per id and each in [0, max_seq), each id in [0, vocab), the
// cache's capacity, and the whole bidirectional prefix in the sequence's first step.
Status CheckSeqStep(std::span<const int32_t> ids, std::span<const int32_t> positions,
                    int64_t kv_length, int64_t kv_capacity, int64_t prefix_len, int64_t max_seq,
                    int64_t vocab);

// A whole step: every sequence checked (CheckSeqStep), at least one token and no more than the
// activations hold. Returns the step's tokens and rows of logits. Step: SeqStep or GpuSeqStep.
struct StepSize {
  int64_t tokens = 0, logit_rows = 0;
};
template <class Step>
StatusOr<StepSize> CheckSteps(std::span<const Step> seqs, int64_t max_seq, int64_t vocab,
                              int64_t max_tokens) {
  StepSize n;
  for (const Step& s : seqs) {
    RETURN_IF_ERROR(CheckSeqStep(s.ids, s.positions, s.kv->length, s.kv->capacity, s.prefix_len,
                                 max_seq, vocab));
    n.tokens += int64_t(s.ids.size());
    n.logit_rows += s.all_logits ? int64_t(s.ids.size()) : 1;
  }
  if (n.tokens == 0) return Errorf("Forward: no tokens");
  if (n.tokens > max_tokens) {
    return Errorf("Forward: %lld tokens exceed the activation capacity %lld", (long long)n.tokens,
                  (long long)max_tokens);
  }
  return n;
}

struct ForwardArgs {
  std::span<const int32_t> ids;
  std::span<const int32_t> positions;
  int64_t prefix_len = 0;
  bool all_logits = false;
  const TapFn* tap = nullptr;
};

// One sequence: ForwardBatch with a batch of one.
Status Forward(WeightStore& store, const RotaryTable& rope, KvCache& kv, Activations& act,
               const ForwardArgs& args, Half* logits);

}  // namespace glm
