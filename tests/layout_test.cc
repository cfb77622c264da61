// Masks and positions (spec §1.8) on hand-built sequences for each mask type.
#include <gtest/gtest.h>

#include "runtime/layout.h"

namespace glm {
namespace {

const SpecialTokens kTok;  // GLM-130B ids
constexpr int32_t A = 30000, B = 30001, C = 30002;

TEST(Layout, MaskGivesSopAndGeneratedTheMaskPosition) {
  // spec §1.8 worked example: "A B [MASK] C" -> A B [MASK] C </s> [sop] gen gen
  const std::vector<int32_t> ids = {A, B, kTok.mask, C, kTok.eos, kTok.sop, 40000, 40001};
  auto l = DeriveLayout(ids, kTok);
  ASSERT_TRUE(l.ok()) << l.status().message();
  EXPECT_EQ(l->mode, MaskMode::kMask);
  EXPECT_EQ(l->mask_position, 2);
  EXPECT_EQ(l->sop_index, 5);
  EXPECT_EQ(l->prefix_len, 5);  // columns 0..4 visible to all
  EXPECT_EQ(l->positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 2, 2, 2}));
}

TEST(Layout, GMaskContinuesPositions) {
  // "A B" -> A B [gMASK] [sop] gen gen (no </s>: the text ends in MASK])
  const std::vector<int32_t> ids = {A, B, kTok.gmask, kTok.sop, 40000, 40001};
  auto l = DeriveLayout(ids, kTok);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->mode, MaskMode::kGMask);
  EXPECT_EQ(l->mask_position, 2);
  EXPECT_EQ(l->prefix_len, 3);
  EXPECT_EQ(l->positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(Layout, SMaskUsesTheFirstSMask) {
  const std::vector<int32_t> ids = {A, kTok.smask, B, kTok.smask, kTok.eos, kTok.sop, 40000};
  auto l = DeriveLayout(ids, kTok);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->mode, MaskMode::kSMask);
  EXPECT_EQ(l->mask_position, 1);
  EXPECT_EQ(l->positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 1, 1}));
}

TEST(Layout, MaskWinsOverSMaskAndGMask) {
  // generate.py picks [MASK] if present, else [sMASK], else [gMASK]; other masks stay as tokens.
  const std::vector<int32_t> ids = {kTok.gmask, A, kTok.smask, kTok.mask, kTok.eos, kTok.sop};
  auto l = DeriveLayout(ids, kTok);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->mode, MaskMode::kMask);
  EXPECT_EQ(l->mask_position, 3);
  EXPECT_EQ(l->positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 3}));
}

TEST(Layout, MaskAfterSopIsGenerationNotContext) {
  // A [MASK] id produced after [sop] does not change the mode chosen from the context.
  const std::vector<int32_t> ids = {A, kTok.gmask, kTok.sop, kTok.mask, B};
  auto l = DeriveLayout(ids, kTok);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->mode, MaskMode::kGMask);
  EXPECT_EQ(l->positions, (std::vector<int32_t>{0, 1, 2, 3, 4}));
}

TEST(Layout, NoSopMeansAllContext) {
  const std::vector<int32_t> ids = {A, B, kTok.gmask};
  auto l = DeriveLayout(ids, kTok);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->sop_index, -1);
  EXPECT_EQ(l->prefix_len, 3);
  EXPECT_EQ(l->positions, (std::vector<int32_t>{0, 1, 2}));
}

TEST(Layout, EmptyIsAnError) {
  auto l = DeriveLayout({}, kTok);
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("empty"), std::string::npos);
}

TEST(Config, Glm130BIsValidAndSpecialTokensParse) {
  EXPECT_TRUE(ModelConfig::Glm130B().Validate().ok());
  EXPECT_FLOAT_EQ(ModelConfig::Glm130B().Alpha(), 11.832159566199232f);
  auto t = ParseSpecialTokens("mask=1000,eos=2");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->mask, 1000);
  EXPECT_EQ(t->eos, 2);
  EXPECT_EQ(t->sop, 150004);  // unnamed ids keep GLM-130B's values
  EXPECT_FALSE(ParseSpecialTokens("bogus=1").ok());
  EXPECT_FALSE(ParseSpecialTokens("mask=x").ok());
  ModelConfig small;
  small.vocab = 1024;
  Status st = small.Validate();
  EXPECT_FALSE(st.ok());  // GLM ids do not fit a 1024 vocabulary
}

}  // namespace
}  // namespace glm
