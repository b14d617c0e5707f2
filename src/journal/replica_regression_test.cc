// Regression tests of the replica engine: each one is named after a bug found by the
// model-based test (tests/journal_model_test.cc) or the corruption tests, and replays the
// smallest history that showed it.
#include <gtest/gtest.h>

#include "env/sim_env.h"
#include "journal/index.h"
#include "journal/overlay.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

constexpr uint32_t kBs = 4096;
constexpr int64_t kHour = kNanosPerHour;

std::string Block(char c) { return std::string(kBs, c); }

// Compares two blocks, describing a difference briefly.
::testing::AssertionResult Same(const std::string& got, const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  auto show = [](const std::string& s, size_t i) {
    return i < s.size() ? std::to_string(static_cast<unsigned char>(s[i])) : std::string("end");
  };
  return ::testing::AssertionFailure()
         << "differ at byte " << i << ": got " << show(got, i) << ", want " << show(want, i);
}

class ReplicaRegressionTest : public ::testing::Test {
 protected:
  ReplicaOptions Opts() {
    ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    o.segment_target_bytes = segment_target_;
    return o;
  }

  void Create() {
    CreateParams p;
    p.size = 64 * kBs;
    auto r = Replica::Create(dir_, p, Opts());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    r_ = std::move(r).value();
  }

  // Drops the replica (after a power loss if crash) and opens it again.
  void Reopen(bool crash) {
    if (crash) env_.CrashDropAll();
    r_.reset();
    auto r = Replica::Open(dir_, Opts());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    r_ = std::move(r).value();
  }

  // Appends one batch; records with a nonzero timestamp keep it.
  uint64_t Append(std::vector<Record> batch) {
    auto res = r_->Append(std::span<Record>(batch));
    EXPECT_TRUE(res.ok()) << res.status().ToString();
    return res.ok() ? *res : 0;
  }

  static Record At(Record r, int64_t ts) {
    r.timestamp_ns = ts;
    return r;
  }

  std::string ReadBlock(uint64_t point, uint64_t block) {
    auto v = r_->OpenView(point);
    EXPECT_TRUE(v.ok()) << "point " << point << ": " << v.status().ToString();
    if (!v.ok()) return "";
    std::string out(kBs, '?');
    Status s = (*v)->Read(block * kBs, kBs, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  std::string ReadOverlay(const std::string& name, uint64_t block) {
    auto o = r_->GetOverlay(name);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    if (!o.ok()) return "";
    std::string out(kBs, '?');
    Status s = (*o)->Read(block * kBs, kBs, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  std::vector<uint64_t> Markers() {
    PointFilter f;
    f.limit = 1000;
    auto page = r_->ListPoints(f);
    EXPECT_TRUE(page.ok());
    std::vector<uint64_t> out;
    for (const PointInfo& p : page->points) out.insert(out.begin(), p.seq);
    return out;
  }

  // Keeps every point for an hour, then one marker per hour; merges nothing.
  static RetentionPolicy ThinOnly() {
    RetentionPolicy p;
    p.window_ns = 1000 * kHour;
    p.any_point_ns = kHour;
    p.tiers = {{kHour, kHour}};
    return p;
  }

  SimEnv env_;
  ManualClock clock_;
  uint64_t segment_target_ = kBs;  // every batch of a 4 KiB write seals its segment
  std::string dir_ = "/r";
  std::shared_ptr<Replica> r_;
};

// An overlay's acknowledged writes were lost when it was closed without a Flush: they were in
// data.img, but blocks.log, written only by Flush, did not say so.
TEST_F(ReplicaRegressionTest, OverlayKeepsUnflushedWritesWhenClosedCleanly) {
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('p'))});
  auto o = r_->CreateOverlay("o", 1);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  ASSERT_TRUE((*o)->Write(100, "written, never flushed").ok());
  o->reset();
  ASSERT_NO_FATAL_FAILURE(Reopen(false));
  std::string want = Block('p');
  want.replace(100, 22, "written, never flushed");
  EXPECT_TRUE(Same(ReadOverlay("o", 0), want));
}

// When every record was older than the any-point window, thinning set any_point_from past the
// newest record, and the latest point was refused (NotFound) as "thinned away".
TEST_F(ReplicaRegressionTest, LatestPointSurvivesThinningOfAnOldHistory) {
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('a'))});
  Append({Record::Write(kBs, Block('b'))});
  clock_.Advance(3 * kHour);
  auto rep = r_->ApplyRetention(ThinOnly());
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  auto latest = r_->ResolvePoint(PointSpec{});
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(latest->seq, 2u);
  EXPECT_TRUE(Same(ReadBlock(2, 1), Block('b')));
  EXPECT_LE(r_->Stats().any_point_from, 2u);
  // A new record then becomes the latest as usual.
  Append({Record::Write(2 * kBs, Block('c'))});
  EXPECT_TRUE(Same(ReadBlock(3, 2), Block('c')));
}

// DiscardOverlay removed the overlay's files without syncing their directory: after a crash
// the overlay came back, though its pin was gone (so retention could drop its point, and the
// next Open would then fail).
TEST_F(ReplicaRegressionTest, DiscardedOverlayStaysGoneAfterCrash) {
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('a'))});
  ASSERT_TRUE(r_->CreateOverlay("o", 1).ok());
  ASSERT_TRUE(r_->DiscardOverlay("o").ok());
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_TRUE(r_->ListOverlays().empty());
  EXPECT_TRUE(r_->Pins().empty());
}

// Thinning chose the records to drop as if every thinned marker went too, but a marker in a
// segment it does not rewrite (one holding records at or after any_point_from) stays a
// point - and lost the data it needed from older segments.
TEST_F(ReplicaRegressionTest, ThinningKeepsDataOfMarkersLeftInUnrewrittenSegments) {
  ASSERT_NO_FATAL_FAILURE(Create());
  const int64_t t0 = clock_.NowNanos();
  Append({At(Record::Write(5 * kBs, Block('1')), t0)});                     // seq 1, segment 1
  Append({At(Record::Marker(MarkerKind::kCrashConsistent, "thinned"), t0),  // seq 2, segment 2
          At(Record::Write(5 * kBs, Block('3')), t0),                       // seq 3
          At(Record::Marker(MarkerKind::kAppConsistent, "kept"), t0),       // seq 4
          At(Record::Write(9 * kBs, Block('5')), t0 + 3 * kHour)});         // seq 5
  clock_.Advance(3 * kHour + 60 * kNanosPerSecond);
  Append({Record::Write(10 * kBs, Block('6'))});  // seq 6; segment 2 is sealed
  auto rep = r_->ApplyRetention(ThinOnly());
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(r_->Stats().any_point_from, 5u);
  for (int pass = 0; pass < 2; ++pass) {
    for (uint64_t m : Markers()) {
      EXPECT_TRUE(Same(ReadBlock(m, 5), m < 3 ? Block('1') : Block('3'))) << "marker " << m;
    }
    Reopen(pass == 0);
  }
}

// A Flush whose data sync failed dropped the extents it had taken: a later successful Flush
// acknowledged the writes without ever logging them, and a crash reverted them.
TEST_F(ReplicaRegressionTest, FailedOverlayFlushDoesNotForgetBlocks) {
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('p'))});
  auto o = r_->CreateOverlay("o", 1);
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE((*o)->Write(0, Block('w')).ok());
  env_.FailAfter(0);
  EXPECT_EQ((*o)->Flush().code(), Code::kIoError);
  env_.FailAfter(-1);
  ASSERT_TRUE((*o)->Flush().ok());
  o->reset();
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_TRUE(Same(ReadOverlay("o", 0), Block('w')));
}

// A merge deleted every segment without live records - also one that compaction had emptied
// and whose seqs lie past the merge target - and the next Open saw a gap: "DataLoss: missing
// records". A segment goes only when its whole seq range is merged.
TEST_F(ReplicaRegressionTest, MergeKeepsSegmentsThatCompactionEmptied) {
  ASSERT_NO_FATAL_FAILURE(Create());
  const int64_t t0 = clock_.NowNanos();
  Append({At(Record::Marker(MarkerKind::kAppConsistent, "old"), t0 - 10 * kHour)});   // seq 1
  Append({At(Record::Marker(MarkerKind::kAppConsistent, "older"), t0 - 5 * kHour)});  // seq 2
  Append({At(Record::Write(2 * kBs, Block('3')), t0)});  // seq 3: superseded by seq 4
  Append({At(Record::Write(2 * kBs, Block('4')), t0)});  // seq 4
  clock_.Advance(3 * kHour);
  Append({Record::Write(9 * kBs, Block('5'))});  // seq 5
  auto rep = r_->ApplyRetention(ThinOnly());
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->records_compacted, 1u);  // segment 3 is now empty

  RetentionPolicy merge = ThinOnly();
  merge.window_ns = 12 * kHour;  // merges to seq 1: segment 3 is in the middle
  rep = r_->ApplyRetention(merge);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->merged_to_seq, 1u);
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_TRUE(Same(ReadBlock(5, 2), Block('4')));

  merge.window_ns = 7 * kHour;  // merges to seq 2: segment 3 comes right after the base
  rep = r_->ApplyRetention(merge);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->merged_to_seq, 2u);
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_TRUE(Same(ReadBlock(5, 2), Block('4')));
  EXPECT_TRUE(Same(ReadBlock(2, 2), std::string(kBs, '\0')));
}

// Open kept a complete record whose append had failed at its sync, and made it a point, but
// left it unsynced: once later records went to a new segment, a crash lost it and the next
// Open refused the replica ("missing records").
TEST_F(ReplicaRegressionTest, RecoveredTailIsDurableBeforeLaterSegments) {
  segment_target_ = kSegmentHeaderSize + 2 * (kRecordHeaderSize + kBs);  // two records each
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('1'))});
  env_.FailAfter(1);  // the write passes, its sync fails
  EXPECT_EQ(r_->Append(Record::Write(kBs, Block('2'))).status().code(), Code::kIoError);
  env_.FailAfter(-1);
  ASSERT_NO_FATAL_FAILURE(Reopen(false));
  ASSERT_EQ(r_->Stats().last_seq, 2u);           // the record was whole: it is kept
  Append({Record::Write(2 * kBs, Block('3'))});  // rolls to segment 2
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  ASSERT_EQ(r_->Stats().last_seq, 3u);
  EXPECT_TRUE(Same(ReadBlock(3, 1), Block('2')));
}

// The same for an overlay: blocks.log entries replayed at Open (from a flush whose sync
// failed) were left unsynced; a later Flush had nothing to log, and a crash reverted them.
TEST_F(ReplicaRegressionTest, ReplayedOverlayLogIsDurable) {
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('p'))});
  auto o = r_->CreateOverlay("o", 1);
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE((*o)->Write(0, Block('w')).ok());
  env_.FailAfter(2);  // data sync and log write pass, the log sync fails
  EXPECT_EQ((*o)->Flush().code(), Code::kIoError);
  o->reset();
  r_.reset();  // the flush on close fails too
  env_.FailAfter(-1);
  ASSERT_NO_FATAL_FAILURE(Reopen(false));
  EXPECT_TRUE(Same(ReadOverlay("o", 0), Block('w')));
  ASSERT_TRUE((*r_->GetOverlay("o"))->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_TRUE(Same(ReadOverlay("o", 0), Block('w')));
}

// And for the MANIFEST: a Pin whose store failed after the rename showed up at the next Open
// but was not durable, so a crash made it vanish again.
TEST_F(ReplicaRegressionTest, ManifestSeenAtOpenIsDurable) {
  ASSERT_NO_FATAL_FAILURE(Create());
  Append({Record::Write(0, Block('a'))});
  env_.FailAfter(5);  // temp file written and synced, renamed; the directory sync fails
  EXPECT_EQ(r_->Pin(1, "backup", "test").code(), Code::kIoError);
  env_.FailAfter(-1);
  ASSERT_NO_FATAL_FAILURE(Reopen(false));
  ASSERT_EQ(r_->Pins().size(), 1u);
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  EXPECT_EQ(r_->Pins().size(), 1u);
}

// Compaction rewrote segments oldest first; stopped between two rewrites (an I/O error, a
// crash), it left a thinned marker in a later segment whose data, in an earlier segment, was
// already dropped. Now it rewrites newest first; wherever it stops, every point that still
// exists reads right.
TEST_F(ReplicaRegressionTest, CompactionStoppedBetweenRewritesKeepsRemainingPointsIntact) {
  for (int64_t after = 0; after < 30; ++after) {
    SCOPED_TRACE("I/O error after " + std::to_string(after) + " calls");
    dir_ = "/r" + std::to_string(after);
    ASSERT_NO_FATAL_FAILURE(Create());
    const int64_t t0 = clock_.NowNanos();
    Append({At(Record::Write(5 * kBs, Block('1')), t0)});                       // 1
    Append({At(Record::Marker(MarkerKind::kCrashConsistent, "thinned"), t0)});  // 2
    Append({At(Record::Write(5 * kBs, Block('3')), t0)});                       // 3
    Append({At(Record::Marker(MarkerKind::kAppConsistent, "kept"), t0)});       // 4
    clock_.Advance(3 * kHour);
    Append({Record::Write(9 * kBs, Block('5'))});  // 5
    env_.FailAfter(after);
    auto rep = r_->ApplyRetention(ThinOnly());
    env_.FailAfter(-1);
    for (int pass = 0; pass < 2; ++pass) {
      for (uint64_t m : Markers()) {
        EXPECT_TRUE(Same(ReadBlock(m, 5), m < 3 ? Block('1') : Block('3'))) << "marker " << m;
      }
      EXPECT_TRUE(Same(ReadBlock(5, 9), Block('5')));
      ASSERT_NO_FATAL_FAILURE(Reopen(true));
    }
    r_.reset();
  }
}

// Open took the timestamp floor from the records after the base only: once everything was
// merged, a record appended with an older timestamp was not raised to the previous one's.
TEST_F(ReplicaRegressionTest, TimestampsDoNotGoBackAfterEverythingIsMerged) {
  ASSERT_NO_FATAL_FAILURE(Create());
  const int64_t t0 = clock_.NowNanos();
  Append({Record::Write(0, Block('a'))});
  clock_.Advance(10 * kHour);
  RetentionPolicy merge_all = ThinOnly();
  merge_all.window_ns = kHour;
  auto rep = r_->ApplyRetention(merge_all);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->merged_to_seq, 1u);
  ASSERT_NO_FATAL_FAILURE(Reopen(true));
  ASSERT_EQ(Append({At(Record::Write(kBs, Block('b')), t0 - 5 * kHour)}), 2u);
  PointSpec spec;
  spec.kind = PointSpec::Kind::kSeq;
  spec.seq = 2;
  auto info = r_->ResolvePoint(spec);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->timestamp_ns, t0);
}

// A commit stopped by an I/O error after the MANIFEST said "committed" (while dropping the
// journal and base) reported a failure for a commit that had taken effect, and nothing ever
// dropped the leftovers: Open returned early for a committed replica.
TEST_F(ReplicaRegressionTest, CommitStoppedWhileDroppingTheJournalIsFinishedByOpen) {
  int stopped_after_taking_effect = 0;
  for (int64_t after = 0; after < 60; ++after) {
    SCOPED_TRACE("I/O error after " + std::to_string(after) + " calls");
    dir_ = "/c" + std::to_string(after);
    ASSERT_NO_FATAL_FAILURE(Create());
    Append({Record::Write(0, Block('a'))});
    auto o = r_->CreateOverlay("o", 1);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    ASSERT_TRUE((*o)->Write(kBs, Block('w')).ok());
    o->reset();
    env_.FailAfter(after);
    Status s = r_->StartCommit("o");
    if (s.ok()) s = r_->WaitForCommitCleanup();
    env_.FailAfter(-1);
    if (s.ok() || !r_->committed()) continue;
    ++stopped_after_taking_effect;
    EXPECT_TRUE(r_->GetCommitProgress().done);
    EXPECT_NE(s.message().find("is committed"), std::string_view::npos) << s.ToString();
    ASSERT_NO_FATAL_FAILURE(Reopen(false));
    ASSERT_TRUE(r_->committed());
    auto names = env_.ListDir(dir_ + "/journal");
    ASSERT_TRUE(names.ok());
    EXPECT_TRUE(names->empty());
    EXPECT_FALSE(env_.Exists(dir_ + "/base.img"));
    EXPECT_TRUE(Same(ReadOverlay("o", 1), Block('w')));
    EXPECT_TRUE(Same(ReadOverlay("o", 0), Block('a')));
  }
  EXPECT_GT(stopped_after_taking_effect, 0);
}

// Retention shrinks the index's per-chunk position lists; a list shrunk to one entry must
// still grow again as records keep coming (the model test hit a heap overflow there).
TEST(IndexRegressionTest, ChunkListGrowsAgainAfterRetainShrankIt) {
  Index index;
  uint64_t seq = 0;
  for (; seq < 8; ++seq) {
    index.Add(IndexEntry::Make(seq + 1, 0, RecordType::kWrite, 0, 1, 1, 64));
  }
  std::vector<bool> keep(8, false);
  keep[7] = true;
  index.Retain(keep);
  for (; seq < 2000; ++seq) {
    index.Add(IndexEntry::Make(seq + 1, 0, RecordType::kWrite, seq % kChunkBlocks, 1, 1, 64));
  }
  ASSERT_EQ(index.size(), 2000u - 7u);
  ResolvedChunk rc;
  index.ResolveChunk(0, index.size(), &rc);
  for (uint32_t b = 0; b < kChunkBlocks; ++b) {
    // The newest record touching block b.
    uint64_t newest = 2000 - ((2000 - 1 - b) % kChunkBlocks);
    ASSERT_NE(rc.slot[b], kNoRecord) << "block " << b;
    EXPECT_EQ(index.at(rc.slot[b] - 1).seq(), newest) << "block " << b;
  }
}

}  // namespace
}  // namespace ferry::journal
