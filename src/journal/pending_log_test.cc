// Pending logs: discarding acknowledged records while the splitter appends.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
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
 protected:
  static constexpr size_t kBlock = 4096;
  // A new machine: nothing on its disk, nothing written.
  void Reset() {
    env_ = std::make_unique<SimEnv>();
    written_.clear();
  }
  ReplicaOptions Opts() {
    ReplicaOptions o;
    o.env = env_.get();
    o.clock = &clock_;
    o.segment_target_bytes = 64 << 10;  // 15 records of 4 KiB
    o.recycle_segments = 4;
    return o;
  }
  // One record of `blocks` blocks, its bytes naming its seq. Whether or not the append
  // succeeds, what it tried to write is the only thing its seq may ever read back as (a
  // failed append may still have reached the disk).
  Status TryAppend(Replica& log, Durability d, int blocks = 1) {
    const uint64_t seq = log.last_seq() + 1;
    std::string data(kBlock * blocks, '\0');
    for (size_t k = 0; k < data.size(); k += 8) std::memcpy(data.data() + k, &seq, sizeof seq);
    written_[seq] = data;
    auto got = log.Append(Record::Write((seq % 32) * kBlock, data), d);
    if (got.ok() && *got != seq) return Internal("appended at seq " + std::to_string(*got));
    return got.status();
  }
  void Append(Replica& log, int n, Durability d, int blocks = 1) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(TryAppend(log, d, blocks).ok());
  }
  int Spares() {
    int n = 0;
    const std::vector<std::string> names = std::move(env_->ListDir("/log/journal")).value();
    for (const std::string& name : names) {
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
      EXPECT_EQ(sr.record.data, written_[sr.record.seq]) << "seq " << sr.record.seq;
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
  std::unique_ptr<SimEnv> env_ = std::make_unique<SimEnv>();
  ManualClock clock_;
  std::map<uint64_t, std::string> written_;
};

TEST_F(RecycleTest, TrimmedSegmentsAreReusedAndReadBackOnlyTheirNewRecords) {
  auto log = Create();
  Append(*log, 30, Durability::kWritten, 3);  // 12 KiB records: segments end past 72 KiB
  ASSERT_TRUE(log->DiscardThrough(log->last_seq()).ok());
  const int spares = Spares();
  EXPECT_GE(spares, 2);
  EXPECT_LE(spares, 4);
  // The next segments take the spares, with 4 KiB records: each reused file ends earlier
  // than before (sealed ones are cut there), and the newest is partly rewritten.
  Append(*log, 50, Durability::kWritten);
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

TEST_F(RecycleTest, PowerLossNeverBringsBackOlderRecords) {
  for (uint64_t seed = 1; seed <= 24; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Reset();
    auto log = Create();
    // Several lives: every segment file below has held older records.
    bool reused = false;
    for (int round = 0; round < 4; ++round) {
      const int spares = Spares();
      Append(*log, 45, Durability::kWritten, 1 + (round + static_cast<int>(seed)) % 3);
      reused |= Spares() < spares;
      ASSERT_TRUE(log->Sync().ok());
      ASSERT_TRUE(log->DiscardThrough(log->last_seq() - 5).ok());
    }
    ASSERT_TRUE(reused);
    Append(*log, 7, Durability::kSynced);
    const uint64_t durable = log->last_seq();
    Append(*log, static_cast<int>(seed % 20), Durability::kWritten);  // some of these survive
    log.reset();
    if (seed % 4 == 0) {
      env_->CrashDropAll();
    } else {
      env_->Crash(seed);
    }
    auto again = Replica::Open("/log", Opts());
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_GE((*again)->last_seq(), durable);
    ExpectOwnRecords(**again);
    Append(**again, 30, Durability::kSynced);
    ExpectOwnRecords(**again);
  }
}


// A power loss at each step of reusing a file (header written, renamed, directory synced, the
// first records appended): the log opens with every record it acknowledged as durable, and
// nothing older.
TEST_F(RecycleTest, PowerLossAtEachStepOfAReuse) {
  // Each durable append is two mutating calls (write, sync) and a reuse six more; 100 calls
  // cover the 40 appends and the reuses among them, so every step fails in some run.
  bool completed = false, reused = false;
  for (int64_t ops = 0; ops <= 100; ++ops) {
    SCOPED_TRACE("mutating calls allowed: " + std::to_string(ops));
    Reset();
    auto log = Create();
    Append(*log, 30, Durability::kWritten, 3);
    ASSERT_TRUE(log->Sync().ok());
    ASSERT_TRUE(log->DiscardThrough(log->last_seq()).ok());
    const int spares = Spares();
    ASSERT_GT(spares, 0);
    // Durable appends until the injected failure stops them, across the next segment roll.
    uint64_t durable = log->last_seq();
    const uint64_t first = durable + 1;
    env_->FailAfter(ops);
    for (int i = 0; i < 40 && TryAppend(*log, Durability::kSynced).ok(); ++i) durable = log->last_seq();
    if (durable == first + 39) {
      completed = true;
      reused |= Spares() < spares;
    }
    log.reset();
    env_->FailAfter(-1);
    env_->Crash(static_cast<uint64_t>(ops) + 1);
    auto again = Replica::Open("/log", Opts());
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_GE((*again)->last_seq(), durable);
    ExpectOwnRecords(**again);
  }
  EXPECT_TRUE(completed) << "no run got through all its appends: widen the range";
  EXPECT_TRUE(reused) << "the appends never reused a file";
}

}  // namespace
}  // namespace ferry::journal
