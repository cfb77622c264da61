// ModelConfig validation and printing.
#include "runtime/config.h"

namespace glm {

Status ModelConfig::Validate() const {
  if (num_layers <= 0 || hidden <= 0 || inner <= 0 || num_heads <= 0 || head_dim <= 0 ||
      vocab <= 0 || max_seq <= 0) {
    return Errorf("model config has a non-positive size: %s", ToString().c_str());
  }
  if (num_heads * head_dim != hidden) {
    return Errorf("model config: heads %d x head_dim %d != hidden %d", num_heads, head_dim, hidden);
  }
  if (head_dim % 2 != 0) return Errorf("model config: head_dim %d must be even (rotary)", head_dim);
  if (max_seq > 2048 * 32) return Errorf("model config: max_seq %d is implausibly large", max_seq);
  const struct {
    const char* name;
    int32_t id;
  } ids[] = {{"mask", tokens.mask}, {"gmask", tokens.gmask}, {"smask", tokens.smask},
             {"sop", tokens.sop},   {"eop", tokens.eop},     {"eos", tokens.eos}};
  for (const auto& t : ids) {
    if (t.id < 0 || t.id >= vocab) {
      return Errorf("special token %s = %d is outside the vocabulary [0, %d)", t.name, t.id, vocab);
    }
  }
  return Status::Ok();
}

std::string ModelConfig::ToString() const {
  return StrFormat("L=%d C=%d F=%d H=%d D=%d V=%d S=%d", num_layers, hidden, inner, num_heads,
                   head_dim, vocab, max_seq);
}

}  // namespace glm
