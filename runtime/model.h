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

// Post-RoPE keys and unscaled values of every layer (spec §1.11), for one sequence.
struct KvCache {
  int64_t capacity = 0;   // S: tokens it can hold
  int64_t length = 0;     // tokens already processed
  std::vector<Half> k;    // [L, S, H*D]
  std::vector<Half> v;    // [L, S, H*D]

  static KvCache Allocate(const ModelConfig& cfg, int64_t capacity);
  Half* K(int layer, int64_t hd) { return k.data() + size_t(layer) * capacity * hd; }
  Half* V(int layer, int64_t hd) { return v.data() + size_t(layer) * capacity * hd; }
};

// Scratch for up to `max_tokens` tokens per Forward call, allocated once.
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

  static Activations Allocate(const ModelConfig& cfg, int64_t max_tokens, int64_t max_keys);
};

// Debug tap: called with a name ("embed", "l3.attn_norm", "l3.out", "final_norm") and the
// fp16 tensor [T, cols] right after it is computed. Null in normal runs.
using TapFn = std::function<void(const std::string& name, const Half* data, int64_t cols)>;

struct ForwardArgs {
  std::span<const int32_t> ids;        // the new tokens (absolute indices kv.length..)
  std::span<const int32_t> positions;  // their position ids
  int64_t prefix_len = 0;              // bidirectional prefix of the whole sequence (§1.8)
  bool all_logits = false;             // logits of every new token, else of the last only
  const TapFn* tap = nullptr;
};

// Runs the new tokens through the model, appends their keys/values to `kv`, and writes fp16
// logits [T or 1, V] to `logits`. The first call on an empty cache must cover the whole
// bidirectional prefix. Errors: ids outside the vocabulary, capacity exceeded, store failures.
Status Forward(WeightStore& store, const RotaryTable& rope, KvCache& kv, Activations& act,
               const ForwardArgs& args, Half* logits);

}  // namespace glm
