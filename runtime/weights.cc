// The tensor table: names and shapes of every GLM tensor (spec §2.2).
#include "runtime/weights.h"

namespace glm {

void ForEachTensor(const ModelConfig& cfg, const std::function<void(const TensorSpec&)>& fn) {
  const int64_t C = cfg.hidden, F = cfg.inner, QKV = cfg.QkvRows(), HD = cfg.num_heads * cfg.head_dim;
  auto global = [&](const char* gguf, const char* sat, int64_t r, int64_t c,
                    TensorView GlobalWeights::*slot) {
    TensorSpec s;
    s.gguf_name = gguf;
    s.sat_key = std::string("transformer.") + sat;
    s.ndim = c ? 2 : 1;
    s.shape[0] = r;
    s.shape[1] = c;
    s.global_slot = slot;
    fn(s);
  };
  global("token_embd.weight", "word_embeddings.weight", cfg.vocab, C,
         &GlobalWeights::embedding);
  global("output_norm.weight", "final_layernorm.weight", C, 0,
         &GlobalWeights::final_norm_w);
  global("output_norm.bias", "final_layernorm.bias", C, 0,
         &GlobalWeights::final_norm_b);

  struct Row {
    const char* gguf;
    const char* sat;
    int64_t r, c;
    bool quantizable;
    TensorView LayerWeights::*slot;
  };
  const Row rows[] = {
      {"attn_norm.weight", "input_layernorm.weight", C, 0, false,
       &LayerWeights::attn_norm_w},
      {"attn_norm.bias", "input_layernorm.bias", C, 0, false,
       &LayerWeights::attn_norm_b},
      {"attn_qkv.weight", "attention.query_key_value.weight", QKV, C, true,
       &LayerWeights::qkv},
      {"attn_qkv.bias", "attention.query_key_value.bias", QKV, 0, false,
       &LayerWeights::qkv_b},
      {"attn_output.weight", "attention.dense.weight", C, HD, true,
       &LayerWeights::dense},
      {"attn_output.bias", "attention.dense.bias", C, 0, false,
       &LayerWeights::dense_b},
      {"ffn_norm.weight", "post_attention_layernorm.weight", C, 0, false,
       &LayerWeights::ffn_norm_w},
      {"ffn_norm.bias", "post_attention_layernorm.bias", C, 0, false,
       &LayerWeights::ffn_norm_b},
      {"ffn_up.weight", "mlp.dense_h_to_4h.weight", 2 * F, C, true,
       &LayerWeights::up},
      {"ffn_up.bias", "mlp.dense_h_to_4h.bias", 2 * F, 0, false,
       &LayerWeights::up_b},
      {"ffn_down.weight", "mlp.dense_4h_to_h.weight", C, F, true,
       &LayerWeights::down},
      {"ffn_down.bias", "mlp.dense_4h_to_h.bias", C, 0, false,
       &LayerWeights::down_b},
  };
  for (int l = 0; l < cfg.num_layers; ++l) {
    for (const Row& r : rows) {
      TensorSpec s;
      s.layer = l;
      s.gguf_name = StrFormat("blk.%d.%s", l, r.gguf);
      s.sat_key = StrFormat("transformer.layers.%d.%s", l, r.sat);
      s.ndim = r.c ? 2 : 1;
      s.shape[0] = r.r;
      s.shape[1] = r.c;
      s.quantizable = r.quantizable;
      s.layer_slot = r.slot;
      fn(s);
    }
  }
}

}  // namespace glm
