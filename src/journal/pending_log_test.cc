// Pending logs: discarding acknowledged records while the splitter appends.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "env/sim_env.h"
#include "journal/replica.h"
#include "journal/segment.h"

namespace ferry::journal {
namespace {

// Regression: DiscardThrough took the manifest lock before the write lock, the reverse of an
// append's order, and a trim racing an append deadlocked both (the source node hung).
TEST(PendingLogTest, TrimDuringAppendsDoesNotDeadlock) {
  const std::string dir = ::testing::TempDir() + "/ferry-pending-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
  CreateParams p;
  p.size = 64 << 20;
  p.pending_log = true;
  ReplicaOptions o;
  o.segment_target_bytes = 64 << 10;  // many small segments, so trims drop files often
  auto log = std::move(Replica::Create(dir, p, o)).value();
  // Several sealed segments before the race starts, so the trims below have files to drop.
  for (int i = 0; i < 64; ++i) {
    ASSERT_TRUE(log->Append(Record::Write(i * 4096, std::string(4096, 'y')), Durability::kWritten).ok());
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (uint64_t i = 0; !stop; ++i) {
      ASSERT_TRUE(log->Append(Record::Write((i % 4096) * 4096, std::string(4096, 'x')),
                              Durability::kWritten).ok());
    }
  });
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(log->DiscardThrough(log->last_seq()).ok());
  }
  stop = true;
  writer.join();
  ASSERT_TRUE(log->DiscardThrough(log->last_seq()).ok());
  EXPECT_GT(log->Stats().oldest_point, 0u);
  EXPECT_EQ(log->ReadRecords(log->Stats().oldest_point, log->last_seq(), 1 << 20).status().code(),
            Code::kOutOfRange);
  log.reset();
  std::filesystem::remove_all(dir);
}


// Reused segments (docs/decisions/0011): a pending log whose trimmed segments become the next
// ones must read back exactly the records written in this life, running, after a reopen and
// after any power loss, however many older records the reused files still hold after their
// ends.
class RecycleTest : public ::testing::Test {
 public:
  static constexpr size_t kBlock = 4096;
  ReplicaOptions Opts() {
    ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    o.segment_target_bytes = 64 << 10;  // 15 records of 4 KiB
    o.recycle_segments = 4;
    return o;
  }
  static std::string Data(uint64_t seq) {
    std::string d(kBlock, '\0');
    for (size_t i = 0; i < d.size(); i += 8) std::memcpy(d.data() + i, &seq, sizeof seq);
    return d;
  }
  void Append(Replica& log, int n, Durability d) {
    for (int i = 0; i < n; ++i) {
      auto seq = log.Append(Record::Write((log.last_seq() % 64) * kBlock, Data(log.last_seq() + 1)), d);
      ASSERT_TRUE(seq.ok()) << seq.status().ToString();
    }
  }
  int Spares() {
    int n = 0;
    for (const std::string& name : std::move(env_.ListDir("/log/journal")).value()) {
      n += name.starts_with(kSpareSegmentPrefix);
    }
    return n;
  }
  // Every record the log holds is the one written for its seq.
  void ExpectOwnRecords(Replica& log) {
    const uint64_t from = log.Stats().oldest_point + 1, to = log.last_seq();
    ASSERT_LE(from, to);
    auto recs = log.ReadRecords(from, to, 64 << 20);
    ASSERT_TRUE(recs.ok()) << recs.status().ToString();
    ASSERT_EQ(recs->size(), to - from + 1);
    for (const StoredRecord& sr : *recs) {
      EXPECT_EQ(sr.record.data, Data(sr.record.seq)) << "seq " << sr.record.seq;
    }
    auto problems = log.Verify();
    ASSERT_TRUE(problems.ok());
    EXPECT_TRUE(problems->empty()) << (*problems)[0];
  }
  std::shared_ptr<Replica> Create() {
    CreateParams p;
    p.size = 64 * kBlock;
    p.pending_log = true;
    auto log = Replica::Create("/log", p, Opts());
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return std::move(*log);
  }
  SimEnv env_;
  ManualClock clock_;
};

TEST_F(RecycleTest, TrimmedSegmentsAreReusedAndReadBackOnlyTheirNewRecords) {
  auto log = Create();
  Append(*log, 60, Durability::kWritten);
  ASSERT_TRUE(log->DiscardThrough(log->last_seq()).ok());
  const int spares = Spares();
  EXPECT_GE(spares, 2);
  EXPECT_LE(spares, 4);
  // The next segments take the spares; the newest is a reused file, partly rewritten.
  Append(*log, 20, Durability::kWritten);
  EXPECT_LT(Spares(), spares);
  ExpectOwnRecords(*log);
  log.reset();
  auto again = Replica::Open("/log", Opts());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(Spares(), 0);  // Open drops them
  EXPECT_EQ((*again)->last_seq(), 80u);
  ExpectOwnRecords(**again);
  Append(**again, 40, Durability::kSynced);
  ExpectOwnRecords(**again);
}

TEST(RecycleCrashTest, PowerLossNeverBringsBackOlderRecords) {
  for (uint64_t seed = 1; seed <= 24; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    struct Run : RecycleTest {
      void TestBody() override {}
    } t;
    auto log = t.Create();
    // Several lives: every segment file below has held older records.
    for (int round = 0; round < 4; ++round) {
      t.Append(*log, 45, Durability::kWritten);
      ASSERT_TRUE(log->Sync().ok());
      ASSERT_TRUE(log->DiscardThrough(log->last_seq() - 5).ok());
    }
    t.Append(*log, 7, Durability::kSynced);
    const uint64_t durable = log->last_seq();
    t.Append(*log, static_cast<int>(seed % 20), Durability::kWritten);  // some of these survive
    log.reset();
    if (seed % 4 == 0) {
      t.env_.CrashDropAll();
    } else {
      t.env_.Crash(seed);
    }
    auto again = Replica::Open("/log", t.Opts());
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_GE((*again)->last_seq(), durable);
    t.ExpectOwnRecords(**again);
    t.Append(**again, 30, Durability::kSynced);
    t.ExpectOwnRecords(**again);
  }
}

}  // namespace
}  // namespace ferry::journal
