// ModelConfig validation and printing.
#include "runtime/config.h"

#include <climits>
#include <cstdlib>

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

StatusOr<SpecialTokens> ParseSpecialTokens(const std::string& spec) {
  SpecialTokens t;
  const struct {
    const char* name;
    int32_t SpecialTokens::*field;
  } names[] = {{"mask", &SpecialTokens::mask}, {"gmask", &SpecialTokens::gmask},
               {"smask", &SpecialTokens::smask}, {"sop", &SpecialTokens::sop},
               {"eop", &SpecialTokens::eop}, {"eos", &SpecialTokens::eos}};
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t end = spec.find(',', pos);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(pos, end - pos);
    pos = end + 1;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return Errorf("special token '%s': expected name=id", item.c_str());
    const std::string name = item.substr(0, eq), value = item.substr(eq + 1);
    char* stop = nullptr;
    const long id = std::strtol(value.c_str(), &stop, 10);
    if (value.empty() || *stop != '\0' || id < 0 || id > INT32_MAX) {
      return Errorf("special token '%s': '%s' is not a token id", name.c_str(), value.c_str());
    }
    bool found = false;
    for (const auto& n : names) {
      if (name == n.name) {
        t.*(n.field) = int32_t(id);
        found = true;
      }
    }
    if (!found) {
      return Errorf("unknown special token '%s' (known: mask, gmask, smask, sop, eop, eos)",
                    name.c_str());
    }
  }
  return t;
}

}  // namespace glm
