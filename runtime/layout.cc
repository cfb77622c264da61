// DeriveLayout: spec §1.8.
#include "runtime/layout.h"

namespace glm {

const char* MaskModeName(MaskMode m) {
  switch (m) {
    case MaskMode::kMask: return "[MASK]";
    case MaskMode::kSMask: return "[sMASK]";
    case MaskMode::kGMask: return "[gMASK]";
  }
  return "?";
}

StatusOr<SequenceLayout> DeriveLayout(std::span<const int32_t> ids, const SpecialTokens& tokens) {
  if (ids.empty()) return Errorf("empty token sequence");
  SequenceLayout out;
  const int64_t T = int64_t(ids.size());
  for (int64_t i = 0; i < T; ++i) {
    if (ids[i] == tokens.sop) {
      out.sop_index = i;
      break;
    }
  }
  const int64_t context_end = out.sop_index >= 0 ? out.sop_index : T;  // tokens before [sop]
  int64_t first_mask = -1, first_smask = -1, first_gmask = -1;
  for (int64_t i = 0; i < context_end; ++i) {
    if (ids[i] == tokens.mask && first_mask < 0) first_mask = i;
    if (ids[i] == tokens.smask && first_smask < 0) first_smask = i;
    if (ids[i] == tokens.gmask && first_gmask < 0) first_gmask = i;
  }
  if (first_mask >= 0) {
    out.mode = MaskMode::kMask;
    out.mask_position = first_mask;
  } else if (first_smask >= 0) {
    out.mode = MaskMode::kSMask;
    out.mask_position = first_smask;
  } else {
    out.mode = MaskMode::kGMask;
    out.mask_position = first_gmask;
  }
  out.prefix_len = context_end;
  out.positions.resize(T);
  for (int64_t i = 0; i < T; ++i) {
    const bool generated = out.sop_index >= 0 && i >= out.sop_index;
    out.positions[i] =
        int32_t(generated && out.mode != MaskMode::kGMask ? out.mask_position : i);
  }
  return out;
}

}  // namespace glm
