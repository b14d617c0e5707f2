// Resync windows in a replica: records that never arrived, points that are not consistent
// until the resync ends, and a journal that reopens across the jump.
#include <gtest/gtest.h>

#include <filesystem>

#include "env/scratch_dir_test_util.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

class ReplicaResyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(scratch_.path().empty());
    dir_ = scratch_ / "r";
    CreateParams p;
    p.size = 1 << 20;
    r_ = std::move(Replica::Create(dir_, p)).value();
  }
  void Write(uint64_t block, char c) {
    ASSERT_TRUE(r_->Append(Record::Write(block * 4096, std::string(4096, c))).ok());
  }
  char At(uint64_t seq, uint64_t block) {
    auto v = r_->OpenView(seq);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    if (!v.ok()) return '?';
    char buf[4096];
    EXPECT_TRUE((*v)->Read(block * 4096, sizeof buf, buf).ok());
    return buf[0];
  }
  test::ScratchDir scratch_{"ferry-resync"};  // removed after every member below
  std::string dir_;
  std::shared_ptr<Replica> r_;
};

TEST_F(ReplicaResyncTest, PointsInsideTheWindowAreRefusedAndLatestStaysConsistent) {
  Write(0, 'a');                                                    // seq 1
  ASSERT_TRUE(r_->Append(Record::Marker(MarkerKind::kCrashConsistent)).ok());  // seq 2
  ASSERT_TRUE(r_->BeginResync(3, 10).ok());
  EXPECT_EQ(r_->OpenResync(), 3u);
  // Appends continue at the resume point; an out-of-order seq is still refused.
  Record early = Record::Write(0, std::string(4096, 'x'));
  early.seq = 3;
  EXPECT_EQ(r_->Append(std::move(early)).status().code(), Code::kInvalidArgument);
  Record rewrite = Record::Write(0, std::string(4096, 'b'));
  rewrite.seq = 10;
  ASSERT_TRUE(r_->Append(std::move(rewrite)).ok());                 // seq 10
  ASSERT_TRUE(r_->Append(Record::Marker(MarkerKind::kCrashConsistent)).ok());  // seq 11
  // While open: latest is the point before the window; points in it are refused.
  EXPECT_EQ(r_->ResolvePoint(PointSpec{})->seq, 2u);
  EXPECT_EQ(r_->OpenView(11).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(r_->ResolvePoint(*PointSpec::Parse("latest-crash-consistent"))->seq, 2u);
  EXPECT_EQ(At(2, 0), 'a');
  auto page = r_->ListPoints(PointFilter{});
  ASSERT_EQ(page->points.size(), 1u);
  EXPECT_EQ(page->points[0].seq, 2u);

  EXPECT_EQ(r_->EndResync(9).code(), Code::kFailedPrecondition);  // before the resume point
  ASSERT_TRUE(r_->EndResync(11).ok());
  EXPECT_EQ(r_->OpenResync(), 0u);
  EXPECT_EQ(r_->ResolvePoint(PointSpec{})->seq, 11u);
  EXPECT_EQ(At(11, 0), 'b');
  EXPECT_EQ(r_->OpenView(10).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(At(2, 0), 'a');

  // The journal jumps from 2 to 10; it reopens.
  r_.reset();
  auto reopened = Replica::Open(dir_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  r_ = *reopened;
  EXPECT_EQ(r_->last_seq(), 11u);
  EXPECT_EQ(At(11, 0), 'b');
  EXPECT_EQ(r_->OpenView(5).status().code(), Code::kFailedPrecondition);
  Write(1, 'c');
  EXPECT_EQ(r_->last_seq(), 12u);
}

TEST_F(ReplicaResyncTest, AnOpenWindowSurvivesARestart) {
  Write(0, 'a');
  ASSERT_TRUE(r_->BeginResync(2, 7).ok());
  // Regression: a link that reconnected before any record followed the jump was told to
  // resume at last_seq() + 1 = 2 instead of 7, and every later handshake failed.
  EXPECT_EQ(r_->last_seq(), 1u);
  EXPECT_EQ(r_->next_seq(), 7u);
  r_.reset();
  r_ = std::move(Replica::Open(dir_)).value();
  EXPECT_EQ(r_->next_seq(), 7u);
  EXPECT_EQ(r_->OpenResync(), 2u);
  EXPECT_EQ(r_->ResolvePoint(PointSpec{})->seq, 1u);
  Record rec = Record::Write(0, std::string(4096, 'z'));
  rec.seq = 7;
  ASSERT_TRUE(r_->Append(std::move(rec)).ok());
  ASSERT_TRUE(r_->EndResync(7).ok());
  EXPECT_EQ(At(7, 0), 'z');
}

}  // namespace
}  // namespace ferry::journal
