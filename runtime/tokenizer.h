// GLM-130B's text tokenizer (spec §4): a SentencePiece model (icetk's ice_text.model) whose ids
// are shifted past icetk's 20000 image tokens, plus the model's special ids (ModelConfig.tokens,
// from the model file), rendered by name when decoding as SAT's icetk-glm-130B wrapper does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/check.h"
#include "runtime/config.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace glm {

// icetk.encode: text id = SentencePiece id + num_image_tokens (hard-coded 20000 in icetk).
inline constexpr int32_t kIcetkTextOffset = 20000;

class Tokenizer {
 public:
  // Loads a SentencePiece model file. `tokens` are the model's special ids and `vocab` its
  // vocabulary: every text id (20000 + piece) must be inside it. Errors name the file.
  static StatusOr<std::unique_ptr<Tokenizer>> Open(const std::string& path,
                                                   const SpecialTokens& tokens, int vocab);
  ~Tokenizer();

  // icetk.encode(text): SentencePiece ids + 20000. "[MASK]" etc. are plain text here (BuildInput
  // splits them off first); line breaks are whitespace (icetk's ignore_linebreak=True).
  std::vector<int32_t> Encode(std::string_view text) const;

  // The wrapper's detokenize: special ids split the sequence and render as "[" + name + "]"
  // ("[[gMASK]]", "[sop]", eos as "[</s>]"); each run of text ids is decoded by SentencePiece
  // and "<n>" becomes "\n". Ids that are neither (image tokens, padding) render as "<id:N>"
  // (the reference would fail on them).
  std::string Decode(std::span<const int32_t> ids) const;

  // The wrapper's name of a special id ("[MASK]", "sop", "</s>"), or nullptr. Besides the six
  // ids of ModelConfig.tokens, eod/ENC/dBLOCK when the ids follow the wrapper's layout
  // (mask, gmask, smask, eod, sop, eop, ENC, dBLOCK consecutive).
  const char* SpecialName(int32_t id) const;

  // True for the ids of SentencePiece pieces, [20000, 20000 + pieces).
  bool IsText(int32_t id) const { return id >= kIcetkTextOffset && id < text_end_; }

  // The ids a generator must not produce for every output to be renderable and for fill_blanks
  // to stay well-formed: everything in [0, vocab) that is not a text piece, eop or eos.
  std::vector<int32_t> NonTextIds(int vocab) const;

  int pieces() const { return text_end_ - kIcetkTextOffset; }
  const SpecialTokens& tokens() const { return tokens_; }
  const std::string& path() const { return path_; }

 private:
  Tokenizer() = default;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  SpecialTokens tokens_;
  int32_t text_end_ = kIcetkTextOffset;
  std::string path_;
  std::vector<std::pair<int32_t, const char*>> names_;
};

}  // namespace glm
