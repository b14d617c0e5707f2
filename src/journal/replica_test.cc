#include "journal/replica.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "env/sim_env.h"
#include "journal/overlay.h"
#include "journal/segment.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

constexpr uint32_t kBs = 4096;

class ReplicaTest : public ::testing::Test {
 protected:
  ReplicaOptions Opts() {
    ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    o.segment_target_bytes = 64 * 1024;
    return o;
  }
  std::shared_ptr<Replica> Make(uint64_t size = 1 << 20) {
    CreateParams p;
    p.size = size;
    auto r = Replica::Create("/r", p, Opts());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return *r;
  }
  std::string ReadView(const std::shared_ptr<Replica>& r, uint64_t seq, uint64_t off, size_t n) {
    auto v = r->OpenView(seq);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    std::string out(n, '?');
    Status s = (*v)->Read(off, n, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  // A 1 MiB replica with options o whose 100 records of 4 KiB were all merged into the base:
  // its segments (64 KiB each) are kept as spares, as many as o allows. nullptr on failure.
  std::shared_ptr<Replica> MakeWithFourSpares(const ReplicaOptions& o) {
    CreateParams p;
    p.size = 1 << 20;
    auto created = Replica::Create("/r", p, o);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    if (!created.ok()) return nullptr;
    const std::string data(kBs, 'm');
    for (int i = 0; i < 100; ++i) {
      Status s = (*created)->Append(Record::Write(uint64_t(i % 64) * kBs, data)).status();
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok()) return nullptr;
    }
    clock_.Advance(kNanosPerHour);
    RetentionPolicy policy;
    policy.window_ns = kNanosPerSecond;
    policy.any_point_ns = 0;
    auto merged = (*created)->ApplyRetention(policy);
    EXPECT_TRUE(merged.ok()) << merged.status().ToString();
    return merged.ok() ? *created : nullptr;
  }
  SimEnv env_;
  ManualClock clock_;
};

TEST_F(ReplicaTest, ViewsSeeEachPoint) {
  auto r = Make();
  ASSERT_EQ(*r->Append(Record::Write(0, std::string(kBs, 'a'))), 1u);
  ASSERT_EQ(*r->Append(Record::Marker(MarkerKind::kAppConsistent, "first")), 2u);
  ASSERT_EQ(*r->Append(Record::Write(0, std::string(2 * kBs, 'b'))), 3u);
  ASSERT_EQ(*r->Append(Record::Zero(kBs, kBs)), 4u);
  EXPECT_EQ(ReadView(r, 0, 0, kBs), std::string(kBs, '\0'));
  EXPECT_EQ(ReadView(r, 1, 0, kBs), std::string(kBs, 'a'));
  EXPECT_EQ(ReadView(r, 3, 0, 2 * kBs), std::string(2 * kBs, 'b'));
  EXPECT_EQ(ReadView(r, 4, 0, 2 * kBs), std::string(kBs, 'b') + std::string(kBs, '\0'));
  auto p = r->ResolvePoint(*PointSpec::Parse("latest-app-consistent"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->seq, 2u);
  EXPECT_EQ(p->marker.label, "first");
}

// A write appended from the caller's memory (Record::WriteView) is copied into the journal:
// the caller may reuse its buffer once Append returns. Its length must match as for Write.
TEST_F(ReplicaTest, AWriteViewIsStoredNotReferenced) {
  auto r = Make();
  std::string buf(2 * kBs, 'v');
  std::vector<Record> recs{Record::WriteView(kBs, buf), Record::WriteView(3 * kBs, std::string_view(buf).substr(0, kBs))};
  ASSERT_TRUE(r->Append(recs, Durability::kWritten).ok());
  buf.assign(buf.size(), 'x');
  EXPECT_EQ(ReadView(r, 2, kBs, 3 * kBs), std::string(3 * kBs, 'v'));
  auto stored = r->ReadRecords(1, 2, 1 << 20);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_EQ(stored->size(), 2u);
  EXPECT_EQ((*stored)[0].record.data, std::string(2 * kBs, 'v'));
  Record bad = Record::WriteView(0, std::string_view(buf).substr(0, kBs));
  bad.length = 2 * kBs;
  EXPECT_EQ(r->Append(bad).status().code(), Code::kInvalidArgument);
}

TEST_F(ReplicaTest, ExtentsTellDataFromZeros) {
  auto r = Make(1 << 20);
  ASSERT_TRUE(r->Append(Record::Write(2 * kBs, std::string(2 * kBs, 'd'))).ok());
  ASSERT_TRUE(r->Append(Record::Zero(3 * kBs, kBs)).ok());
  auto v = r->OpenView(2);
  ASSERT_TRUE(v.ok());
  auto ext = (*v)->Extents(0, 8 * kBs);
  ASSERT_TRUE(ext.ok()) << ext.status().ToString();
  std::vector<ViewExtent> want = {{2 * kBs, true, true}, {kBs, false, false}, {5 * kBs, true, true}};
  EXPECT_EQ(*ext, want);
  EXPECT_EQ((*v)->Extents(1 << 20, 1).status().code(), Code::kOutOfRange);
}

TEST_F(ReplicaTest, OneProcessAtATime) {
  auto r = Make();
  auto second = Replica::Open("/r", Opts());
  EXPECT_EQ(second.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("in use by another process"), std::string_view::npos);
  r.reset();
  EXPECT_TRUE(Replica::Open("/r", Opts()).ok());
}

TEST_F(ReplicaTest, SurvivesReopenAndCrash) {
  {
    auto r = Make();
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(r->Append(Record::Write(uint64_t(i % 8) * kBs, std::string(kBs, char('A' + i % 26)))).ok());
    }
  }
  env_.Crash(7);
  auto r = Replica::Open("/r", Opts());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->Stats().last_seq, 40u);
  EXPECT_EQ(ReadView(*r, 40, 7 * kBs, kBs), std::string(kBs, char('A' + 39 % 26)));
}

TEST_F(ReplicaTest, OverlayAndCommit) {
  auto r = Make(1 << 20);
  ASSERT_TRUE(r->Append(Record::Write(0, std::string(kBs, 'x'))).ok());
  ASSERT_TRUE(r->Append(Record::Write(kBs, std::string(kBs, 'y'))).ok());
  auto o = r->CreateOverlay("fo", 1);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  ASSERT_TRUE((*o)->Write(10, "hello").ok());
  std::string got(kBs, '?');
  ASSERT_TRUE((*o)->Read(0, kBs, got.data()).ok());
  std::string want(kBs, 'x');
  want.replace(10, 5, "hello");
  EXPECT_EQ(got, want);
  ASSERT_TRUE((*o)->Read(kBs, kBs, got.data()).ok());
  EXPECT_EQ(got, std::string(kBs, '\0'));  // point 1 predates the 'y' write
  ASSERT_EQ((*o)->ChangedExtents().size(), 1u);
  ASSERT_TRUE(r->StartCommit("fo").ok());
  ASSERT_TRUE(r->WaitForCommit().ok()) << r->WaitForCommit().ToString();
  EXPECT_TRUE(r->committed());
  EXPECT_TRUE(r->GetCommitProgress().done);
  ASSERT_TRUE((*o)->Read(0, kBs, got.data()).ok());
  EXPECT_EQ(got, want);
  EXPECT_EQ(r->OpenView(1).status().code(), Code::kFailedPrecondition);
  // The old journal and base go in the background, after the commit point.
  ASSERT_TRUE(r->WaitForCommitCleanup().ok());
  EXPECT_FALSE(r->GetCommitProgress().cleaning);
  auto names = env_.ListDir("/r/journal");
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_TRUE(names->empty());
  EXPECT_FALSE(env_.Exists("/r/base.img"));
  ASSERT_TRUE((*o)->Read(0, kBs, got.data()).ok());
  EXPECT_EQ(got, want);
}

// An overlay's zeroes keep data.img allocated with no_hole (NBD_CMD_FLAG_NO_HOLE), whole
// blocks and partial ones alike; without it they are holes. Both read as zeros over a point
// whose blocks hold data, and survive a flush and reopen.
TEST_F(ReplicaTest, OverlayZeroesWithNoHoleStayAllocated) {
  auto r = Make(1 << 20);
  ASSERT_TRUE(r->Append(Record::Write(0, std::string(8 * kBs, 'x'))).ok());
  auto o = r->CreateOverlay("fo", 1);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  ASSERT_TRUE((*o)->WriteZeroes(0, 2 * kBs, false, /*no_hole=*/true).ok());        // blocks 0-1
  ASSERT_TRUE((*o)->WriteZeroes(4 * kBs, 2 * kBs, false, /*no_hole=*/false).ok());  // blocks 4-5
  ASSERT_TRUE((*o)->Trim(6 * kBs, kBs).ok());                                       // block 6
  // Partial blocks, completed from the point (zeros there): the whole block is zeros.
  ASSERT_TRUE((*o)->WriteZeroes(8 * kBs + 100, 200, false, /*no_hole=*/true).ok());  // block 8
  ASSERT_TRUE((*o)->WriteZeroes(9 * kBs + 100, 200, false, /*no_hole=*/false).ok()); // block 9
  ASSERT_TRUE((*o)->Flush().ok());
  std::string want = std::string(8 * kBs, 'x') + std::string(2 * kBs, '\0');
  std::fill_n(want.begin(), 2 * kBs, '\0');
  std::fill_n(want.begin() + 4 * kBs, 3 * kBs, '\0');
  std::string got(want.size(), '?');
  ASSERT_TRUE((*o)->Read(0, got.size(), got.data()).ok());
  EXPECT_EQ(got, want);
  auto data = env_.OpenFile((*o)->data_path(), OpenMode::kRead);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(*(*data)->NextData(0), 0u);
  EXPECT_EQ(*(*data)->NextData(kBs), kBs);
  // Blocks 2-3 and 7 were never written; 4-6 were zeroed without no_hole or trimmed.
  EXPECT_EQ(*(*data)->NextData(2 * kBs), 8 * kBs);
  EXPECT_EQ(*(*data)->NextData(9 * kBs), uint64_t{1 << 20});
}

// Delta failback needs every block where the committed overlay may differ from the source's
// own disk: those its users wrote and those the journal's records after its point wrote.
TEST_F(ReplicaTest, CommitRecordsTheBlocksWrittenAfterThePoint) {
  auto r = Make(1 << 20);
  ASSERT_TRUE(r->Append(Record::Write(0, std::string(kBs, 'a'))).ok());          // seq 1
  ASSERT_TRUE(r->Append(Record::Write(8 * kBs, std::string(2 * kBs, 'b'))).ok());  // seq 2
  ASSERT_TRUE(r->Append(Record::Write(0, std::string(kBs, 'c'))).ok());          // 3: after
  ASSERT_TRUE(r->Append(Record::Zero(20 * kBs, 3 * kBs)).ok());            // 4: after
  ASSERT_TRUE(r->Append(Record::Marker(MarkerKind::kCrashConsistent)).ok());      // 5
  auto o = r->CreateOverlay("fo", 2);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  ASSERT_TRUE((*o)->Write(40 * kBs + 1, "user").ok());
  EXPECT_EQ((*o)->diverged_through(), 0u);  // known only at the commit point
  ASSERT_TRUE(r->StartCommit("fo").ok());
  ASSERT_TRUE(r->WaitForCommitCleanup().ok());
  const std::vector<BlockExtent> want = {{0, 1}, {20, 3}, {40, 1}};
  EXPECT_EQ((*o)->DifferingExtents(), want);
  EXPECT_EQ((*o)->ChangedExtents(), (std::vector<BlockExtent>{{40, 1}}));
  EXPECT_EQ((*o)->diverged_through(), 5u);
  o->reset();
  r.reset();
  env_.Crash(3);
  auto r2 = Replica::Open("/r", Opts());
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  auto o2 = (*r2)->GetOverlay("fo");
  ASSERT_TRUE(o2.ok());
  EXPECT_EQ((*o2)->DifferingExtents(), want);
  EXPECT_EQ((*o2)->diverged_through(), 5u);
  // A damaged record of them is refused, not read as "nothing diverged".
  o2->reset();
  r2->reset();
  auto text = ReadFileToString(&env_, "/r/overlays/fo/DIVERGED");
  ASSERT_TRUE(text.ok());
  std::string bad = *text;
  bad[bad.find("through") + 10] ^= 1;
  ASSERT_TRUE(WriteFileAtomically(&env_, "/r/overlays/fo/DIVERGED", bad).ok());
  auto r3 = Replica::Open("/r", Opts());
  EXPECT_EQ(r3.status().code(), Code::kDataLoss) << r3.status().ToString();
}

TEST_F(ReplicaTest, CommitInterruptedByCrashResumesOnOpen) {
  auto r = Make(4 << 20);
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(r->Append(Record::Write(uint64_t(i) * 16 * kBs, std::string(kBs, char('a' + i % 26)))).ok());
  }
  auto o = r->CreateOverlay("fo", 64);
  ASSERT_TRUE(o.ok());
  ASSERT_TRUE((*o)->Write(5, "user").ok());
  ASSERT_TRUE((*o)->Flush().ok());
  // Let the commit start, then crash at an arbitrary moment of it.
  env_.FailAfter(40);
  ASSERT_TRUE(r->StartCommit("fo").ok());
  Status s = r->WaitForCommitCleanup();
  EXPECT_EQ(s.code(), Code::kIoError) << s.ToString();
  o->reset();
  r.reset();
  env_.FailAfter(-1);
  env_.Crash(11);
  auto r2 = Replica::Open("/r", Opts());
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  ASSERT_TRUE((*r2)->WaitForCommit().ok());
  EXPECT_TRUE((*r2)->committed());
  auto o2 = (*r2)->GetOverlay("fo");
  ASSERT_TRUE(o2.ok());
  std::string got(kBs, '?');
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE((*o2)->Read(uint64_t(i) * 16 * kBs, kBs, got.data()).ok());
    std::string want(kBs, char('a' + i % 26));
    if (i == 0) want.replace(5, 4, "user");
    ASSERT_EQ(got, want) << "block " << i * 16;
  }
  EXPECT_EQ((*o2)->ChangedExtents().size(), 1u);
}

TEST_F(ReplicaTest, RetentionMergesAndThins) {
  auto r = Make();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(r->Append(Record::Write(uint64_t(i % 16) * kBs, std::string(kBs, char('a' + i % 26)))).ok());
    ASSERT_TRUE(r->Append(Record::Marker(MarkerKind::kCrashConsistent)).ok());
    clock_.Advance(10LL * 60 * kNanosPerSecond);  // 10 minutes
  }
  RetentionPolicy policy;
  policy.window_ns = 10 * kNanosPerHour;
  auto rep = r->ApplyRetention(policy);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_GT(rep->merged_to_seq, 0u);
  EXPECT_GT(rep->markers_thinned, 0u);
  // The newest state is unchanged.
  auto latest = r->ResolvePoint(PointSpec{});
  ASSERT_TRUE(latest.ok());
  for (int b = 0; b < 16; ++b) {
    int last_i = 99 - ((99 - b) % 16);
    EXPECT_EQ(ReadView(r, latest->seq, uint64_t(b) * kBs, kBs), std::string(kBs, char('a' + last_i % 26)));
  }
  const uint64_t last = latest->seq;
  const std::string before = ReadView(r, last, 0, 16 * kBs);
  r.reset();
  auto r2 = Replica::Open("/r", Opts());
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(ReadView(*r2, last, 0, 16 * kBs), before);
}

// A replica keeps segments its retention merged as spares (recycle_segments) and appends into
// them again: what it reads back, running, after a reopen and after a power loss that drops
// every unsynced write, is only what was appended since, never the files' older records.
TEST_F(ReplicaTest, MergedSegmentsAreReusedAndReadBackOnlyTheirNewRecords) {
  ReplicaOptions o = Opts();
  o.recycle_segments = 4;
  CreateParams p;
  p.size = 1 << 20;
  auto created = Replica::Create("/r", p, o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::shared_ptr<Replica> r = std::move(*created);
  // Block b's content at seq s: names both.
  auto content = [](uint64_t seq, uint64_t block) {
    std::string c(kBs, char('a' + seq % 26));
    const std::string tag = "seq" + std::to_string(1000000 + seq) + "blk" + std::to_string(100 + block);
    c.replace(0, tag.size(), tag);
    return c;
  };
  std::map<uint64_t, std::string> newest;  // block -> content
  auto append = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const uint64_t seq = r->Stats().last_seq + 1;
      const uint64_t block = seq * 7 % 200;
      auto got = r->Append(Record::Write(block * kBs, content(seq, block)));
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_EQ(*got, seq);
      newest[block] = content(seq, block);
    }
  };
  auto spares = [&] {
    auto names = env_.ListDir("/r/journal");
    EXPECT_TRUE(names.ok());
    return std::count_if(names->begin(), names->end(),
                         [](const std::string& n) { return n.rfind(kSpareSegmentPrefix, 0) == 0; });
  };
  auto expect_newest = [&](const std::shared_ptr<Replica>& rep, const char* when) {
    const uint64_t last = rep->Stats().last_seq;
    for (const auto& [block, want] : newest) {
      ASSERT_EQ(ReadView(rep, last, block * kBs, kBs), want) << when << ": block " << block;
    }
  };
  ASSERT_NO_FATAL_FAILURE(append(100));  // about 6 segments of 64 KiB
  clock_.Advance(kNanosPerHour);
  RetentionPolicy policy;
  policy.window_ns = kNanosPerSecond;
  policy.any_point_ns = 0;
  auto merged = r->ApplyRetention(policy);
  ASSERT_TRUE(merged.ok()) << merged.status().ToString();
  ASSERT_EQ(merged->merged_to_seq, 100u);
  EXPECT_EQ(spares(), 4);
  ASSERT_NO_FATAL_FAILURE(append(40));  // rolls into two of the spares
  EXPECT_EQ(spares(), 2);
  ASSERT_NO_FATAL_FAILURE(expect_newest(r, "running"));
  for (uint64_t seq = 101; seq <= 140; seq += 13) {
    const uint64_t block = seq * 7 % 200;
    EXPECT_EQ(ReadView(r, seq, block * kBs, kBs), content(seq, block)) << "seq " << seq;
  }
  auto verified = r->Verify();
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  r.reset();
  auto reopened = Replica::Open("/r", o);
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  r = std::move(*reopened);
  EXPECT_EQ(r->Stats().last_seq, 140u);
  ASSERT_NO_FATAL_FAILURE(expect_newest(r, "after a reopen"));
  // Appends into another reused file, then a power loss: every one of them was durable.
  clock_.Advance(kNanosPerHour);
  ASSERT_TRUE(r->ApplyRetention(policy).ok());
  ASSERT_NO_FATAL_FAILURE(append(30));
  r.reset();
  env_.CrashDropAll();
  auto recovered = Replica::Open("/r", o);
  ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
  EXPECT_EQ((*recovered)->Stats().last_seq, 170u);
  ASSERT_NO_FATAL_FAILURE(expect_newest(*recovered, "after a power loss"));
}

// Spare segment files give their space back before an append is refused for want of it.
TEST_F(ReplicaTest, SparesGiveTheirSpaceBackBeforeAnAppendIsRefused) {
  ReplicaOptions o = Opts();
  o.recycle_segments = 4;
  o.min_free_bytes = 64 * 1024;
  std::shared_ptr<Replica> r = MakeWithFourSpares(o);
  ASSERT_TRUE(r);
  const std::string data(kBs, 's');
  auto spares = [&] {
    auto names = env_.ListDir("/r/journal");
    EXPECT_TRUE(names.ok());
    return std::count_if(names->begin(), names->end(),
                         [](const std::string& n) { return n.rfind(kSpareSegmentPrefix, 0) == 0; });
  };
  ASSERT_EQ(spares(), 4);
  // Room for three more records besides the reserve, unless the spares (about 60 records)
  // give theirs back.
  auto space = env_.GetSpace("/r");
  ASSERT_TRUE(space.ok());
  env_.SetCapacity(space->total_bytes - space->free_bytes + o.min_free_bytes +
                   3 * (kRecordHeaderSize + kBs));
  for (int i = 0; i < 20; ++i) {
    auto got = r->Append(Record::Write(uint64_t(i % 64) * kBs, data));
    ASSERT_TRUE(got.ok()) << "append " << i << ": " << got.status().ToString();
  }
  EXPECT_EQ(spares(), 0);
  EXPECT_EQ(r->Stats().last_seq, 120u);
}

// Spare segment files are space the replica gives back before it refuses a write: the
// health signal counts them as free, so it does not warn of a shortage that is not there.
TEST_F(ReplicaTest, HealthCountsSpareSegmentsAsFreeSpace) {
  ReplicaOptions o = Opts();
  o.recycle_segments = 4;
  o.min_free_bytes = 0;
  o.warn_free_fraction = 0.5;  // a line the spares' size can matter against
  std::shared_ptr<Replica> r = MakeWithFourSpares(o);
  ASSERT_TRUE(r);
  const Health before = r->GetHealth();
  ASSERT_GT(before.spare_bytes, 4 * 64 * 1024 * 9 / 10) << "four spares of about 64 KiB";

  // Free space just under the warning line (half the capacity), unless the spares count.
  auto space = env_.GetSpace("/r");
  ASSERT_TRUE(space.ok());
  const double used = static_cast<double>(space->total_bytes - space->free_bytes);
  const double spare = static_cast<double>(before.spare_bytes);
  auto capacity_with_free_fraction_below_line_by = [&](double short_by) {
    // free = C - used = 0.5 * C - short_by  =>  C = (used - short_by) / 0.5
    return static_cast<uint64_t>((used - short_by) / 0.5);
  };
  env_.SetCapacity(capacity_with_free_fraction_below_line_by(spare / 2));
  Health h = r->GetHealth();
  EXPECT_EQ(h.level, Health::Level::kHealthy) << (h.problems.empty() ? "" : h.problems[0]);
  EXPECT_EQ(h.spare_bytes, before.spare_bytes);
  // Short by more than the spares hold: a warning, which counts them.
  env_.SetCapacity(capacity_with_free_fraction_below_line_by(spare * 2));
  h = r->GetHealth();
  ASSERT_EQ(h.level, Health::Level::kWarning);
  ASSERT_EQ(h.problems.size(), 1u);
  const std::string counted = std::to_string(h.free_bytes + h.spare_bytes);
  EXPECT_NE(h.problems[0].find("journal space low: " + counted), std::string::npos)
      << h.problems[0];
}

// The default age tiers (retention.h) over more than 7 days of history: every marker of the
// last 2 hours stays; older, exactly one per hour (absolute buckets) up to 7 days and one per
// 4 hours beyond, the app-consistent one where a bucket has one, else the newest. A second
// pass a day later thins what aged into the next tier again by the same rule.
TEST_F(ReplicaTest, DefaultAgeTiersKeepOnePointPerBucket) {
  constexpr int64_t kHour = kNanosPerHour, kStep = 17 * 60 * kNanosPerSecond;
  auto r = Make();
  struct Mark {
    int64_t ts;
    MarkerKind kind;
  };
  std::map<uint64_t, Mark> present;  // what the replica should have before each pass
  auto add_history = [&](int64_t span) {
    for (int64_t t = 0; t < span; t += kStep) {
      clock_.Advance(kStep);
      ASSERT_TRUE(r->Append(Record::Write(0, std::string(kBs, 'w'))).ok());
      const MarkerKind kind = present.size() % 5 == 3 ? MarkerKind::kAppConsistent
                                                      : MarkerKind::kCrashConsistent;
      auto seq = r->Append(Record::Marker(kind));
      ASSERT_TRUE(seq.ok()) << seq.status().ToString();
      present[*seq] = {clock_.NowNanos(), kind};
    }
  };
  auto survivors = [&]() {
    std::map<uint64_t, int64_t> out;
    PointFilter f;
    f.limit = 100000;
    auto page = r->ListPoints(f);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_EQ(page->next_token, 0u);
    for (const PointInfo& p : page->points) out[p.seq] = p.timestamp_ns;
    return out;
  };
  // Thins with the defaults at the clock's now and checks the outcome marker by marker.
  auto thin_and_check = [&]() {
    const int64_t now = clock_.NowNanos();
    ASSERT_TRUE(r->ApplyRetention(RetentionPolicy{}).ok());
    std::map<std::pair<int64_t, int64_t>, uint64_t> winner;  // (bucket size, bucket) -> seq
    std::set<uint64_t> want;
    for (const auto& [seq, m] : present) {
      const int64_t age = now - m.ts;
      if (age < 2 * kHour) {
        want.insert(seq);
        continue;
      }
      const int64_t size = age < 7 * 24 * kHour ? kHour : 4 * kHour;
      auto [it, first] = winner.emplace(std::make_pair(size, m.ts / size), seq);
      // Later seqs come later: a newer marker wins unless the holder is app-consistent and
      // it is not.
      if (!first && !(present[it->second].kind == MarkerKind::kAppConsistent &&
                      m.kind != MarkerKind::kAppConsistent)) {
        it->second = seq;
      }
    }
    for (const auto& [bucket, seq] : winner) want.insert(seq);
    const std::map<uint64_t, int64_t> kept = survivors();
    std::set<uint64_t> got;
    for (const auto& [seq, ts] : kept) got.insert(seq);
    std::vector<uint64_t> extra, missing;
    std::set_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(extra));
    std::set_difference(want.begin(), want.end(), got.begin(), got.end(), std::back_inserter(missing));
    auto describe = [&](const std::vector<uint64_t>& seqs) {
      std::string out;
      for (uint64_t s : seqs) {
        out += " " + std::to_string(s) + " (" +
               std::to_string(static_cast<double>(now - present[s].ts) / kHour) + " h old, " +
               (present[s].kind == MarkerKind::kAppConsistent ? "app" : "crash") + ")";
      }
      return out;
    };
    ASSERT_TRUE(extra.empty() && missing.empty())
        << "kept but should not be:" << describe(extra) << "\nthinned but should be kept:"
        << describe(missing);
    // The same, said as the rule: all of the last 2 hours, then at most one per bucket.
    size_t young = 0;
    std::map<std::pair<int64_t, int64_t>, int> per_bucket;
    for (const auto& [seq, ts] : kept) {
      const int64_t age = now - ts;
      if (age < 2 * kHour) {
        ++young;
      } else {
        const int64_t size = age < 7 * 24 * kHour ? kHour : 4 * kHour;
        const int n = ++per_bucket[std::make_pair(size, ts / size)];
        EXPECT_EQ(n, 1) << "marker " << seq << " shares its bucket";
      }
    }
    EXPECT_EQ(young, static_cast<size_t>((2 * kHour + kStep - 1) / kStep));  // one per step
    EXPECT_GT(per_bucket.size(), 6u * 24);  // the history reaches past 7 days
    for (const auto& [seq, ts] : kept) EXPECT_TRUE(r->OpenView(seq).ok()) << "marker " << seq;
    std::erase_if(present, [&](const auto& e) { return !want.count(e.first); });
  };
  ASSERT_NO_FATAL_FAILURE(add_history(10 * 24 * kHour));
  ASSERT_NO_FATAL_FAILURE(thin_and_check());
  ASSERT_NO_FATAL_FAILURE(add_history(24 * kHour));
  ASSERT_NO_FATAL_FAILURE(thin_and_check());
}

}  // namespace
}  // namespace ferry::journal
