// Masks and position ids of a GLM sequence (spec §1.8), derived from its token ids alone, so that
// glm-logits, the golden tests and generation all use the same rule.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"

namespace glm {

enum class MaskMode { kMask, kSMask, kGMask };
const char* MaskModeName(MaskMode m);

struct SequenceLayout {
  MaskMode mode = MaskMode::kGMask;
  int64_t mask_position = -1;  // index of the first mask token of `mode` (-1: none)
  int64_t sop_index = -1;      // index of the first [sop] (-1: no sop, the whole input is context)
  // Keys 0..prefix_len-1 are visible to every row (the context before [sop]); from [sop] on the
  // pattern is causal: row i sees key j iff j < prefix_len or j <= i.
  int64_t prefix_len = 0;
  std::vector<int32_t> positions;  // one per token
};

// The rule of generate.py (get_masks_and_position_ids + fill_blanks): the mode is [MASK] if a
// [MASK] occurs before [sop], else [sMASK] if one occurs, else [gMASK]; positions are 0..T-1,
// except that with [MASK]/[sMASK] the [sop] and every later token take the mask's position.
// Without [sop] the whole sequence is a bidirectional context. An empty input is an error.
StatusOr<SequenceLayout> DeriveLayout(std::span<const int32_t> ids, const SpecialTokens& tokens);

}  // namespace glm
