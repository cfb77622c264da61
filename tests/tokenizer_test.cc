// The tokenizer (spec §4) on the committed demo SentencePiece model: icetk's +20000 offset, the
// wrapper's rendering of special ids, and clear errors for bad files.
#include "runtime/tokenizer.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace glm {
namespace {

const std::string kModel = std::string(GLM_SOURCE_DIR) + "/tests/data/tokenizer/demo.model";
const SpecialTokens kTok;  // GLM-130B's ids: [MASK] 150000 ... eos 20002
constexpr int kVocab = 150528;

std::unique_ptr<Tokenizer> Open() {
  auto t = Tokenizer::Open(kModel, kTok, kVocab);
  GLM_CHECK_MSG(t.ok(), "%s", t.status().message().c_str());
  return std::move(t).value();
}

TEST(Tokenizer, EncodeAddsIcetksImageOffset) {
  auto tok = Open();
  EXPECT_EQ(tok->pieces(), 1000);
  // spm_encode --output_format=id on demo.model: "▁M emory ▁is ▁s low ." = 477 105 48 8 240 926.
  EXPECT_EQ(tok->Encode("Memory is slow."),
            (std::vector<int32_t>{20477, 20105, 20048, 20008, 20240, 20926}));
  EXPECT_EQ(tok->Encode(""), std::vector<int32_t>{});
  // Pieces are tokenized separately in BuildInput: " C" gets SentencePiece's dummy prefix too.
  EXPECT_EQ(tok->Encode(" C"), std::vector<int32_t>{20318});
}

TEST(Tokenizer, DecodeRoundTripsText) {
  auto tok = Open();
  for (const char* s : {"Memory is slow compared with the processor.", "A cache is 2 KiB (or less)!",
                        "x = (a + b) * c / 2"}) {
    EXPECT_EQ(tok->Decode(tok->Encode(s)), s);
  }
  // icetk's decode turns "<n>" into a line break; encode treats "\n" as whitespace.
  EXPECT_EQ(tok->Decode(tok->Encode("one<n>two")), "one\ntwo");
  EXPECT_EQ(tok->Decode(tok->Encode("one\ntwo")), "one two");
}

TEST(Tokenizer, SpecialIdsRenderByNameAsTheWrapperDoes) {
  auto tok = Open();
  std::vector<int32_t> ids = tok->Encode("Memory is");
  ids.push_back(kTok.gmask);
  ids.push_back(kTok.sop);
  for (int32_t id : tok->Encode("slow")) ids.push_back(id);
  ids.push_back(kTok.eop);
  ids.push_back(kTok.eos);
  // Each run of text ids is decoded on its own, so "slow" loses its leading space.
  EXPECT_EQ(tok->Decode(ids), "Memory is[[gMASK]][sop]slow[eop][</s>]");
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{kTok.mask, kTok.smask}), "[[MASK]][[sMASK]]");
  // The wrapper's other names, at their places in its consecutive layout.
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{150003, 150006, 150007}), "[eod][ENC][dBLOCK]");
  EXPECT_STREQ(tok->SpecialName(kTok.eos), "</s>");
  EXPECT_EQ(tok->SpecialName(20010), nullptr);
  // Image tokens and padding have no text: visible placeholders instead of a failure.
  EXPECT_EQ(tok->Decode(std::vector<int32_t>{5, 150300}), "<id:5><id:150300>");
}

TEST(Tokenizer, NonTextIdsAreEverythingButPiecesAndEndTokens) {
  auto tok = Open();
  const std::vector<int32_t> banned = tok->NonTextIds(kVocab);
  auto has = [&](int32_t id) { return std::binary_search(banned.begin(), banned.end(), id); };
  EXPECT_TRUE(has(0));
  EXPECT_TRUE(has(19999));
  EXPECT_FALSE(has(20000));
  EXPECT_FALSE(has(20999));
  EXPECT_TRUE(has(21000));
  EXPECT_TRUE(has(kTok.mask));
  EXPECT_TRUE(has(kTok.gmask));
  EXPECT_TRUE(has(kTok.sop));
  EXPECT_FALSE(has(kTok.eop));
  EXPECT_FALSE(has(kTok.eos));
  EXPECT_TRUE(has(kVocab - 1));
  EXPECT_EQ(banned.size(), size_t(kVocab - 1000 - 1));  // eos is one of the 1000 pieces
}

TEST(Tokenizer, BadFilesGiveClearErrors) {
  test::TempDir dir;
  auto missing = Tokenizer::Open(dir.File("ice_text.model"), kTok, kVocab);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("ice_text.model"), std::string::npos);
  EXPECT_NE(missing.status().message().find("No such file"), std::string::npos);

  auto directory = Tokenizer::Open(dir.path(), kTok, kVocab);
  ASSERT_FALSE(directory.ok());
  EXPECT_NE(directory.status().message().find("directory"), std::string::npos);

  std::ofstream(dir.File("junk.model")) << "this is not a protobuf";
  auto junk = Tokenizer::Open(dir.File("junk.model"), kTok, kVocab);
  ASSERT_FALSE(junk.ok());
  EXPECT_NE(junk.status().message().find("not a SentencePiece model"), std::string::npos)
      << junk.status().message();

  // A model whose vocabulary is smaller than 20000 + pieces cannot use it.
  auto small = Tokenizer::Open(kModel, SpecialTokens{.mask = 1000, .gmask = 1001, .smask = 1002,
                                                      .sop = 1004, .eop = 1005, .eos = 2}, 1024);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("vocabulary of 1024"), std::string::npos)
      << small.status().message();
}

}  // namespace
}  // namespace glm
