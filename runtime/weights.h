// Model weights as structs of named views, the one tensor table (ForEachTensor) shared by the
// loader, the converter and the checker, and the WeightStore interface through which the forward
// loop acquires each layer (ARCHITECTURE.md, "Data flow of one decode step").
#pragma once

#include <functional>
#include <string>

#include "runtime/config.h"
#include "runtime/tensor.h"

// TP merge/split rules are by SAT key name: see SatMergeRuleForKey (quant/sat_checkpoint.h).

namespace glm {

// Views into memory owned by a WeightStore; valid between Acquire(l) and Release(l).
struct LayerWeights {
  TensorView attn_norm_w, attn_norm_b;  // [C] f16            input_layernorm
  TensorView qkv, qkv_b;                // [3*H*D, C], [3*H*D] rows head*3D + {q,k,v}*D + d (§1.5)
  TensorView dense, dense_b;            // [C, H*D], [C]      attention.dense
  TensorView ffn_norm_w, ffn_norm_b;    // [C] f16            post_attention_layernorm
  TensorView up, up_b;                  // [2F, C], [2F]      dense_h_to_4h: rows [x1 (linear); x2 (gelu)]
  TensorView down, down_b;              // [C, F], [C]        dense_4h_to_h
};

// Model-level tensors, resident for the whole run.
struct GlobalWeights {
  TensorView embedding;                 // [V, C] f16, tied with the output projection (§1.10)
  TensorView final_norm_w, final_norm_b;  // [C] f16
};

struct TensorSpec {
  int layer = -1;            // -1: model-level tensor
  std::string gguf_name;     // "blk.3.attn_qkv.weight"
  std::string sat_key;       // "transformer.layers.3.attention.query_key_value.weight"
  int ndim = 1;
  int64_t shape[2] = {0, 0};  // merged (TP=1) row-major shape
  bool quantizable = false;  // one of the four linear weights (spec §3, "Which layers")
  // Where the tensor lives in the weight structs (exactly one is non-null).
  TensorView LayerWeights::*layer_slot = nullptr;
  TensorView GlobalWeights::*global_slot = nullptr;
};

// Visits every tensor of the model in file order: the embedding and final LayerNorm first, then
// layer 0..L-1, each layer's tensors in the order of LayerWeights.
void ForEachTensor(const ModelConfig& cfg, const std::function<void(const TensorSpec&)>& fn);

// Where a layer's weights come from. The forward loop calls Acquire(l) before layer l and
// Release(l) after it; implementations may block in Acquire until the layer's bytes are ready
// and may start reading later layers at any time (prefetch).
class WeightStore {
 public:
  virtual ~WeightStore() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const GlobalWeights& globals() const = 0;
  virtual StatusOr<const LayerWeights*> Acquire(int layer) = 0;
  virtual void Release(int layer) = 0;
};

}  // namespace glm
