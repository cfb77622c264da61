// Tokenizer: libsentencepiece plus the icetk offset and the GLM-130B wrapper's special ids.
#include "runtime/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include <cerrno>

namespace glm {

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Open(const std::string& path,
                                                     const SpecialTokens& tokens, int vocab) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("open", path, errno);
  if (S_ISDIR(st.st_mode)) return Errorf("tokenizer '%s' is a directory, not a model file", path.c_str());
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->sp_ = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = t->sp_->Load(path);
  if (!status.ok()) {
    return Errorf("tokenizer '%s' is not a SentencePiece model: %s", path.c_str(),
                  status.ToString().c_str());
  }
  t->path_ = path;
  t->tokens_ = tokens;
  t->text_end_ = kIcetkTextOffset + t->sp_->GetPieceSize();
  if (t->text_end_ > vocab) {
    return Errorf("tokenizer '%s' has %d pieces: with icetk's offset of %d its ids reach %d, past "
                  "the model's vocabulary of %d", path.c_str(), t->sp_->GetPieceSize(),
                  kIcetkTextOffset, t->text_end_ - 1, vocab);
  }
  t->names_ = {{tokens.mask, "[MASK]"}, {tokens.gmask, "[gMASK]"}, {tokens.smask, "[sMASK]"},
               {tokens.sop, "sop"},     {tokens.eop, "eop"},       {tokens.eos, "</s>"}};
  const int32_t m = tokens.mask;
  if (tokens.gmask == m + 1 && tokens.smask == m + 2 && tokens.sop == m + 4 &&
      tokens.eop == m + 5) {
    for (auto [id, name] : {std::pair<int32_t, const char*>{m + 3, "eod"}, {m + 6, "ENC"},
                            {m + 7, "dBLOCK"}}) {
      if (id < vocab) t->names_.push_back({id, name});
    }
  }
  return t;
}

Tokenizer::~Tokenizer() = default;

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = sp_->Encode(absl::string_view(text.data(), text.size()), &ids);
  GLM_CHECK_MSG(status.ok(), "SentencePiece Encode: %s", status.ToString().c_str());
  std::vector<int32_t> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) out[i] = ids[i] + kIcetkTextOffset;
  return out;
}

const char* Tokenizer::SpecialName(int32_t id) const {
  for (const auto& [sid, name] : names_) {
    if (sid == id) return name;
  }
  return nullptr;
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  std::string text;
  std::vector<int> run;
  auto flush = [&] {
    if (run.empty()) return;
    std::string piece;
    const auto status = sp_->Decode(run, &piece);
    GLM_CHECK_MSG(status.ok(), "SentencePiece Decode: %s", status.ToString().c_str());
    for (size_t p = piece.find("<n>"); p != std::string::npos; p = piece.find("<n>", p + 1)) {
      piece.replace(p, 3, "\n");
    }
    text += piece;
    run.clear();
  };
  for (int32_t id : ids) {
    if (const char* name = SpecialName(id)) {
      flush();
      text += "[";
      text += name;
      text += "]";
    } else if (IsText(id)) {
      run.push_back(id - kIcetkTextOffset);
    } else {
      flush();
      text += StrFormat("<id:%d>", id);
    }
  }
  flush();
  return text;
}

std::vector<int32_t> Tokenizer::NonTextIds(int vocab) const {
  std::vector<int32_t> out;
  for (int32_t id = 0; id < vocab; ++id) {
    if (id == tokens_.eop || id == tokens_.eos) continue;
    if (IsText(id) && !SpecialName(id)) continue;
    out.push_back(id);
  }
  return out;
}

}  // namespace glm
