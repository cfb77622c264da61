// Model configuration: GLM-130B's hyper-parameters (spec §1.1) and any smaller model of the
// same architecture, plus the special-token ids (spec §4).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "runtime/check.h"

namespace glm {

// Special token ids. GLM-130B's values come from the SAT icetk wrapper (spec §4); small test
// models use ids inside their own vocabulary.
struct SpecialTokens {
  int32_t mask = 150000;   // [MASK]
  int32_t gmask = 150001;  // [gMASK]
  int32_t smask = 150002;  // [sMASK]
  int32_t sop = 150004;    // start of piece
  int32_t eop = 150005;    // end of piece
  int32_t eos = 20002;     // </s>
};

struct ModelConfig {
  int num_layers = 70;        // L
  int hidden = 12288;         // C
  int inner = 32768;          // F (GeGLU inner; dense_h_to_4h has 2*F rows)
  int num_heads = 96;         // H
  int head_dim = 128;         // D
  int vocab = 150528;         // V (150000 real ids + specials, padded)
  int max_seq = 2048;         // longest sequence (rotary table, KV cache)
  float layernorm_eps = 1e-5f;
  SpecialTokens tokens;

  static ModelConfig Glm130B() { return ModelConfig{}; }

  // DeepNorm residual scale α = sqrt(2 L) as a Python float, used in fp32 (spec §1.3).
  float Alpha() const { return float(std::sqrt(2.0 * num_layers)); }
  int QkvRows() const { return 3 * num_heads * head_dim; }

  // Checks internal consistency (hidden = H*D, token ids inside the vocab, ...).
  Status Validate() const;
  // One line: "L=70 C=12288 F=32768 H=96 D=128 V=150528 S=2048".
  std::string ToString() const;
};

// Parses "mask=1000,gmask=1001,smask=1002,sop=1004,eop=1005,eos=2" (any subset; unnamed ids
// keep GLM-130B's values). Errors name the bad item.
StatusOr<SpecialTokens> ParseSpecialTokens(const std::string& spec);

}  // namespace glm
