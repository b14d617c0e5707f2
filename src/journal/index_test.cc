#include "journal/index.h"

#include <gtest/gtest.h>

namespace ferry::journal {
namespace {

IndexEntry W(uint64_t seq, uint64_t block, uint32_t n) {
  return IndexEntry::Make(seq, static_cast<int64_t>(seq) * 10, RecordType::kWrite, block, n, 1, 64);
}

TEST(IndexTest, ResolvesNewestRecordAtOrBeforePoint) {
  Index idx;
  idx.Add(W(1, 0, 4));
  idx.Add(W(2, 2, 4));   // blocks 2..5
  idx.Add(W(3, 300, 1)); // another chunk
  ResolvedChunk rc;
  idx.ResolveChunk(0, idx.VisibleLimit(1), &rc);
  EXPECT_EQ(rc.slot[0], 1u);
  EXPECT_EQ(rc.slot[3], 1u);
  EXPECT_EQ(rc.slot[4], kNoRecord);
  idx.ResolveChunk(0, idx.VisibleLimit(2), &rc);
  EXPECT_EQ(rc.slot[1], 1u);
  EXPECT_EQ(rc.slot[2], 2u);
  EXPECT_EQ(rc.slot[5], 2u);
  EXPECT_EQ(idx.SeqAtTime(25), 2u);
  EXPECT_EQ(idx.FindSeq(3), 2);
  EXPECT_EQ(idx.FindSeq(4), -1);
  EXPECT_EQ(idx.TouchedChunks(idx.size()), (std::vector<uint64_t>{0, 1}));
}

// Regression: a chunk list shrunk to one entry by Retain must still grow on the next append.
TEST(IndexTest, ListsGrowAfterRetainShrinksThem) {
  Index idx;
  for (uint64_t s = 1; s <= 10; ++s) idx.Add(W(s, 0, 1));
  std::vector<bool> keep(10, false);
  keep[9] = true;
  idx.Retain(keep);
  ASSERT_EQ(idx.size(), 1u);
  for (uint64_t s = 11; s <= 100; ++s) idx.Add(W(s, s % 7, 1));
  ResolvedChunk rc;
  idx.ResolveChunk(0, idx.size(), &rc);
  for (uint64_t b = 0; b < 7; ++b) {
    uint64_t newest = 100 - ((100 - b) % 7);  // newest seq with seq % 7 == b
    EXPECT_EQ(idx.at(rc.slot[b] - 1).seq(), newest) << "block " << b;
  }
}

TEST(IndexTest, ManyChunksAndRemovePrefix) {
  Index idx;
  for (uint64_t s = 1; s <= 20000; ++s) idx.Add(W(s, (s * 7919) % 100000, 1));
  EXPECT_LT(idx.MemoryBytes() / idx.size(), 64u);
  idx.RemovePrefix(15000);
  EXPECT_EQ(idx.size(), 5000u);
  EXPECT_EQ(idx.at(0).seq(), 15001u);
  ResolvedChunk rc;
  uint64_t block = (20000 * 7919) % 100000;
  idx.ResolveChunk(block / kChunkBlocks, idx.size(), &rc);
  EXPECT_EQ(idx.at(rc.slot[block % kChunkBlocks] - 1).seq(), 20000u);
}

}  // namespace
}  // namespace ferry::journal
