// Pending logs: discarding acknowledged records while the splitter appends.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "env/forwarding_env.h"
#include "env/scratch_dir_test_util.h"
#include "env/sim_env.h"
#include "journal/replica.h"
#include "journal/segment.h"

namespace ferry::journal {
namespace {

// Regression: DiscardThrough took the manifest lock before the write lock, the reverse of an
// append's order, and a trim racing an append deadlocked both (the source node hung).
TEST(PendingLogTest, TrimDuringAppendsDoesNotDeadlock) {
  test::ScratchDir scratch("ferry-pending");
  ASSERT_FALSE(scratch.path().empty());
  const std::string dir = scratch / "log";
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
      auto got = log->Append(Record::Write((i % 4096) * 4096, std::string(4096, 'x')),
                             Durability::kWritten);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
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

// The page cache of a pending log (docs/decisions/0012): what lies more than half the window
// behind the newest append starts writing back, what lies more than the window behind is
// dropped from the cache, and a file whose pages were dropped is not reused.
class HintRecordingEnv final : public ForwardingEnv {
 public:
  struct Hint {
    std::string path;
    bool drop;
    uint64_t offset, n;
  };
  using ForwardingEnv::ForwardingEnv;
  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    ASSIGN_OR_RETURN(auto f, base_->OpenFile(path, mode));
    return std::unique_ptr<File>(new HintFile(std::move(f), this, path));
  }
  std::vector<Hint> Hints() {
    std::lock_guard l(mu_);
    return hints_;
  }

 private:
  class HintFile final : public ForwardingFile {
   public:
    HintFile(std::unique_ptr<File> f, HintRecordingEnv* env, std::string path)
        : ForwardingFile(std::move(f)), env_(env), path_(std::move(path)) {}
    void StartWriteback(uint64_t offset, uint64_t n) override { env_->Note({path_, false, offset, n}); }
    void DropCache(uint64_t offset, uint64_t n) override { env_->Note({path_, true, offset, n}); }

   private:
    HintRecordingEnv* env_;
    std::string path_;
  };
  void Note(Hint h) {
    std::lock_guard l(mu_);
    hints_.push_back(std::move(h));
  }
  std::mutex mu_;
  std::vector<Hint> hints_;
};

class CacheWindowTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kWindow = 1 << 20;
  static constexpr uint64_t kSegment = 256 << 10;
  std::shared_ptr<Replica> Create() {
    ReplicaOptions o;
    o.env = &env_;
    o.segment_target_bytes = kSegment;
    o.recycle_segments = 64;
    o.cache_window_bytes = kWindow;
    CreateParams p;
    p.size = 64 << 20;
    p.pending_log = true;
    auto log = Replica::Create("/log", p, o);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return std::move(*log);
  }
  // Appends 4 KiB records until `bytes` of them were written.
  void Append(Replica& log, uint64_t bytes, bool trim_as_it_goes) {
    int n = 0;
    for (uint64_t done = 0; done < bytes; done += 4096, ++n) {
      EXPECT_TRUE(log.Append(Record::Write((n % 1024) * 4096ull, std::string(4096, 'p')),
                             Durability::kWritten).ok());
      if (trim_as_it_goes) {
        EXPECT_TRUE(log.DiscardThrough(log.last_seq()).ok());
      }
    }
  }
  SimEnv sim_;
  HintRecordingEnv env_{&sim_};
};

TEST_F(CacheWindowTest, OldDataIsWrittenBackThenDroppedAndItsFilesAreNotReused) {
  auto log = Create();
  constexpr uint64_t kTotal = 8 << 20;
  Append(*log, kTotal, false);
  const std::vector<HintRecordingEnv::Hint> hints = env_.Hints();
  // Per file: the bytes whose writeback started, then those dropped; no byte twice, every
  // dropped byte written back first.
  std::map<std::string, std::map<uint64_t, uint64_t>> written_back, dropped;
  uint64_t dropped_bytes = 0;
  for (const auto& h : hints) {
    auto& mine = (h.drop ? dropped : written_back)[h.path];
    auto next = mine.lower_bound(h.offset);
    ASSERT_TRUE(next == mine.end() || next->first >= h.offset + h.n) << h.path << " twice";
    if (next != mine.begin()) {
      ASSERT_LE(std::prev(next)->second, h.offset) << h.path << " twice";
    }
    mine[h.offset] = h.offset + h.n;
    if (h.drop) {
      dropped_bytes += h.n;
      const auto& wb = written_back[h.path];
      auto it = wb.upper_bound(h.offset);
      ASSERT_NE(it, wb.begin()) << h.path << " dropped before its writeback started";
      EXPECT_GE(std::prev(it)->second, h.offset + h.n) << h.path << " dropped before its writeback started";
    }
  }
  // Everything but the newest window (give or take a segment's worth of range) left the
  // cache; the newest half-window was not even written back.
  EXPECT_GE(dropped_bytes, kTotal - kWindow - kSegment);
  EXPECT_LE(dropped_bytes, kTotal - kWindow + kSegment);
  // How far behind the newest append each hinted range ends: writeback starts half a
  // window back, pages go a whole window back (less a range: ranges are cut at segments).
  std::map<uint64_t, uint64_t> segment_start;  // segment number -> its place in the log
  uint64_t log_bytes = 0;
  const std::vector<std::string> names = std::move(sim_.ListDir("/log/journal")).value();
  for (const std::string& name : names) {
    uint64_t number = 0;
    if (!ParseSegmentFileName(name, &number)) continue;
    auto f = sim_.OpenFile(JoinPath("/log/journal", name), OpenMode::kRead);
    ASSERT_TRUE(f.ok());
    segment_start[number] = log_bytes;
    log_bytes += std::move((*f)->Size()).value();
  }
  std::set<uint64_t> dropped_segments;
  for (const auto& h : hints) {
    uint64_t number = 0;
    ASSERT_TRUE(ParseSegmentFileName(h.path.substr(h.path.rfind('/') + 1), &number)) << h.path;
    ASSERT_TRUE(segment_start.count(number)) << h.path;
    const uint64_t behind = log_bytes - (segment_start[number] + h.offset + h.n);
    EXPECT_GE(behind, (h.drop ? kWindow : kWindow / 2) - kSegment) << h.path << " at " << h.offset;
    if (h.drop) dropped_segments.insert(number);
  }
  ASSERT_FALSE(dropped_segments.empty());

  // Trimmed, the dropped files are deleted; only files still cached become spares.
  ASSERT_TRUE(log->DiscardThrough(log->last_seq()).ok());
  int spares = 0;
  const std::vector<std::string> after = std::move(sim_.ListDir("/log/journal")).value();
  for (const std::string& name : after) {
    if (!name.starts_with(kSpareSegmentPrefix)) continue;
    ++spares;
    uint64_t number = 0;
    ASSERT_TRUE(ParseSegmentFileName(name.substr(std::strlen(kSpareSegmentPrefix)), &number)) << name;
    EXPECT_FALSE(dropped_segments.count(number)) << name << " reused after its pages were dropped";
  }
  EXPECT_GT(spares, 0) << "the segments still cached are worth reusing";
}

TEST_F(CacheWindowTest, ALogTrimmedAsItGoesIsLeftToTheCache) {
  auto log = Create();
  Append(*log, 8 << 20, true);
  EXPECT_TRUE(env_.Hints().empty()) << env_.Hints().size() << " hints, the first for "
                                    << env_.Hints()[0].path;
}

}  // namespace
}  // namespace ferry::journal
