#include "capture/splitter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "base/checksum.h"
#include "base/coding.h"
#include "capture/dirty_map.h"
#include "env/sim_env.h"
#include "journal/view.h"

namespace ferry::capture {
namespace {

using journal::Replica;

constexpr uint32_t kBs = 4096;
constexpr uint64_t kSize = 1 << 20;

// A durable empty disk /disk.img of kSize bytes and a new pending log /pending for it; null
// (with the failure recorded) if either cannot be made.
std::shared_ptr<Replica> CreateDiskAndLog(SimEnv& env, const journal::ReplicaOptions& o) {
  auto disk = env.OpenFile("/disk.img", OpenMode::kCreate);
  const bool disk_ok = disk.ok() && (*disk)->Truncate(kSize).ok() && (*disk)->Sync().ok() &&
                       env.SyncDir("/").ok();
  EXPECT_TRUE(disk_ok);
  if (!disk_ok) return nullptr;
  journal::CreateParams p;
  p.size = kSize;
  auto log = Replica::Create("/pending", p, o);
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  return log.ok() ? *log : nullptr;
}

class SplitterTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(CreateDiskAndLog(env_, Opts()), nullptr); }
  journal::ReplicaOptions Opts() {
    journal::ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    return o;
  }
  std::unique_ptr<Splitter> Open() {
    auto log = Replica::Open("/pending", Opts());
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    auto s = Splitter::Open(&env_, "/disk.img", *log);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return std::move(*s);
  }
  std::string DiskBytes(uint64_t off, size_t n) {
    auto f = env_.OpenFile("/disk.img", OpenMode::kRead);
    std::string out(n, '\0');
    EXPECT_TRUE((*f)->ReadAt(off, n, out.data()).ok());
    return out;
  }
  SimEnv env_;
  ManualClock clock_;
};

TEST_F(SplitterTest, WritesReachDiskAndLogAlike) {
  auto s = Open();
  ASSERT_TRUE(s->Write(0, std::string(2 * kBs, 'a'), false).ok());
  ASSERT_TRUE(s->Write(100, "unaligned", false).ok());  // read-modify-write of block 0
  ASSERT_TRUE(s->WriteZeroes(kBs, kBs, false, false).ok());
  auto mark = s->Mark(journal::MarkerKind::kAppConsistent, "m");
  ASSERT_TRUE(mark.ok());
  std::string disk = DiskBytes(0, 2 * kBs);
  std::string expect = std::string(kBs, 'a') + std::string(kBs, '\0');
  expect.replace(100, 9, "unaligned");
  EXPECT_EQ(disk, expect);
  auto view = s->log().OpenView(*mark);
  ASSERT_TRUE(view.ok());
  std::string logged(2 * kBs, '?');
  ASSERT_TRUE((*view)->Read(0, logged.size(), logged.data()).ok());
  EXPECT_EQ(logged, expect);
  EXPECT_EQ(s->Write(kSize - 10, std::string(20, 'x'), false).code(), Code::kOutOfRange);
}

// Writes served together: each is answered on its own, the whole-block ones are logged in one
// append, and wherever two of them overlap, disk and log keep the same one.
TEST_F(SplitterTest, WriteManyAnswersEachWriteAndKeepsDiskAndLogAlike) {
  auto s = Open();
  const std::string a(2 * kBs, 'a'), b(kBs, 'b'), c(kBs, 'c'), far(2 * kBs, 'x');
  std::vector<Splitter::BlockWrite> writes = {
      {0, a, false},             // blocks 0-1
      {kBs, b, false},           // block 1 again
      {100, "partial", false},   // inside block 0: completed from the disk, alone
      {kSize - kBs, far, false}, // past the end
      {3 * kBs, c, true},        // FUA
  };
  std::vector<Status> results(writes.size());
  s->WriteMany(writes, results);
  EXPECT_TRUE(results[0].ok()) << results[0].ToString();
  EXPECT_TRUE(results[1].ok()) << results[1].ToString();
  EXPECT_TRUE(results[2].ok()) << results[2].ToString();
  EXPECT_EQ(results[3].code(), Code::kOutOfRange);
  EXPECT_TRUE(results[4].ok()) << results[4].ToString();
  EXPECT_EQ(s->log().Stats().appends, 2u);  // the partial write, then the three whole ones
  auto mark = s->Mark(journal::MarkerKind::kCrashConsistent, "m");
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(*mark, 5u);
  auto view = s->log().OpenView(*mark);
  ASSERT_TRUE(view.ok());
  std::string logged(4 * kBs, '?');
  ASSERT_TRUE((*view)->Read(0, logged.size(), logged.data()).ok());
  EXPECT_EQ(DiskBytes(0, 4 * kBs), logged);
  EXPECT_EQ(logged.substr(kBs, kBs), b);
  EXPECT_EQ(logged.substr(3 * kBs, kBs), c);
  EXPECT_EQ(DiskBytes(kSize - kBs, kBs), std::string(kBs, '\0'));
}

TEST_F(SplitterTest, WriteManyRefusedAsAWholeChangesNothing) {
  auto s = Open();
  const std::string a(kBs, 'a'), b(kBs, 'b');
  std::vector<Splitter::BlockWrite> writes = {{0, a, false}, {8 * kBs, b, false}};
  std::vector<Status> results(writes.size());
  s->Fence();
  s->WriteMany(writes, results);
  for (const Status& r : results) EXPECT_EQ(r.code(), Code::kFailedPrecondition) << r.ToString();
  s->Unfence();
  env_.SetCapacity(kSize + (1u << 20));  // far below the log's reserve: the log is full
  s->WriteMany(writes, results);
  for (const Status& r : results) EXPECT_EQ(r.code(), Code::kResourceExhausted) << r.ToString();
  EXPECT_EQ(s->log().last_seq(), 0u);
  EXPECT_EQ(DiskBytes(0, 9 * kBs), std::string(9 * kBs, '\0'));
}

// A process crash after answers: the answered writes are in the log (page cache survives a
// process crash; the simulated disk keeps unsynced data when nothing else is lost).
TEST_F(SplitterTest, AnsweredWritesSurviveProcessCrash) {
  {
    auto s = Open();
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(s->Write(uint64_t(i) * kBs, std::string(kBs, char('A' + i % 26)), false).ok());
  }
  // The process dies without a flush; the files keep what was written.
  auto log = Replica::Open("/pending", Opts());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ((*log)->Stats().last_seq, 50u);
}

TEST_F(SplitterTest, FencedVolumeRefusesChangesButReads) {
  auto s = Open();
  ASSERT_TRUE(s->Write(0, std::string(kBs, 'a'), false).ok());
  s->Fence();
  EXPECT_TRUE(s->fenced());
  EXPECT_EQ(s->Write(0, std::string(kBs, 'b'), false).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->WriteZeroes(0, kBs, false, false).code(), Code::kFailedPrecondition);
  EXPECT_EQ(s->Trim(0, kBs, true).code(), Code::kFailedPrecondition);
  EXPECT_EQ(DiskBytes(0, kBs), std::string(kBs, 'a'));
  std::string got(kBs, '?');
  ASSERT_TRUE(s->Read(0, kBs, got.data()).ok());
  EXPECT_EQ(got, std::string(kBs, 'a'));
  ASSERT_TRUE(s->Flush().ok());
  auto mark = s->Mark(journal::MarkerKind::kCrashConsistent, "fence");
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(*mark, 2u);  // the refused changes logged nothing
  s->Unfence();
  EXPECT_TRUE(s->Write(0, std::string(kBs, 'c'), false).ok());
  EXPECT_EQ(DiskBytes(0, kBs), std::string(kBs, 'c'));
}

// Writers race with Fence: every write answered before the fence marker is in the point at
// the marker, and nothing is logged after it.
TEST_F(SplitterTest, FenceMarkerFollowsEveryAnsweredWrite) {
  auto s = Open();
  constexpr int kThreads = 4;
  std::vector<int> last_ok(kThreads, -1);
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        std::string block(kBs, '\0');
        std::memcpy(block.data(), &i, sizeof i);
        if (s->Write(uint64_t(t) * kBs, block, false).ok()) last_ok[t] = i;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  s->Fence();
  auto mark = s->Mark(journal::MarkerKind::kCrashConsistent, "fence");
  ASSERT_TRUE(mark.ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  stop = true;
  for (auto& w : writers) w.join();
  EXPECT_EQ(s->log().last_seq(), *mark);
  auto view = s->log().OpenView(*mark);
  ASSERT_TRUE(view.ok());
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_GE(last_ok[t], 0) << "thread " << t << " wrote nothing before the fence";
    int got = -1;
    ASSERT_TRUE((*view)->Read(uint64_t(t) * kBs, sizeof got, &got).ok());
    EXPECT_EQ(got, last_ok[t]) << "thread " << t;
  }
}

// A trim reaches the pending log as a trim record of exactly its range (whole blocks), and a
// view of the log reads zeros there, as the disk does.
TEST_F(SplitterTest, TrimIsLoggedAsATrimRecordOfItsRange) {
  auto s = Open();
  ASSERT_TRUE(s->Write(0, std::string(8 * kBs, 'd'), false).ok());
  ASSERT_TRUE(s->Trim(2 * kBs, 3 * kBs, false).ok());
  auto mark = s->Mark(journal::MarkerKind::kCrashConsistent, "after trim");
  ASSERT_TRUE(mark.ok());
  auto records = s->log().ReadRecords(1, *mark, 1 << 20);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 3u);
  const journal::Record& trim = (*records)[1].record;
  EXPECT_EQ(trim.type, journal::RecordType::kTrim);
  EXPECT_EQ(trim.offset, 2 * kBs);
  EXPECT_EQ(trim.length, 3 * kBs);
  std::string expect = std::string(2 * kBs, 'd') + std::string(3 * kBs, '\0') + std::string(3 * kBs, 'd');
  auto view = s->log().OpenView(*mark);
  ASSERT_TRUE(view.ok());
  std::string logged(8 * kBs, '?');
  ASSERT_TRUE((*view)->Read(0, logged.size(), logged.data()).ok());
  EXPECT_EQ(logged, expect);
  EXPECT_EQ(DiskBytes(0, 8 * kBs), expect);
}

// Zeroes with no_hole keep the disk's blocks allocated; without it (and for a trim) they
// become holes. Either way the log holds a zero record and the disk reads zeros.
TEST_F(SplitterTest, ZeroesWithNoHoleKeepTheDiskAllocated) {
  auto s = Open();
  ASSERT_TRUE(s->Write(0, std::string(6 * kBs, 'd'), false).ok());
  ASSERT_TRUE(s->WriteZeroes(0, 2 * kBs, false, /*no_hole=*/true).ok());
  ASSERT_TRUE(s->WriteZeroes(2 * kBs, 2 * kBs, false, /*no_hole=*/false).ok());
  ASSERT_TRUE(s->Trim(4 * kBs, 2 * kBs, false).ok());
  EXPECT_EQ(DiskBytes(0, 6 * kBs), std::string(6 * kBs, '\0'));
  auto disk = env_.OpenFile("/disk.img", OpenMode::kRead);
  ASSERT_TRUE(disk.ok());
  for (uint64_t b = 0; b < 2; ++b) EXPECT_EQ(*(*disk)->NextData(b * kBs), b * kBs) << "block " << b << " is a hole";
  EXPECT_EQ(*(*disk)->NextData(2 * kBs), kSize) << "zeroes without no_hole and trims punch";
  auto records = s->log().ReadRecords(2, 3, 1 << 20);
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  ASSERT_EQ(records->size(), 2u);
  for (const journal::StoredRecord& r : *records) EXPECT_EQ(r.record.type, journal::RecordType::kZero);
  EXPECT_EQ((*records)[0].record.offset, 0u);
  EXPECT_EQ((*records)[0].record.length, 2 * kBs);
}

// After power loss, the disk is redone from the log on open: wherever the log kept a write,
// the disk holds it too — including the crashes where the disk itself lost it. Many crash
// outcomes (seeds); the redo case must actually occur among them.
TEST(SplitterPowerLossTest, DiskCatchesUpWithLog) {
  int redone = 0, log_kept = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimEnv env;
    ManualClock clock;
    journal::ReplicaOptions o;
    o.env = &env;
    o.clock = &clock;
    {
      auto log = CreateDiskAndLog(env, o);
      ASSERT_NE(log, nullptr);
      auto s = Splitter::Open(&env, "/disk.img", log);
      ASSERT_TRUE(s.ok());
      ASSERT_TRUE((*s)->Write(0, std::string(kBs, 'z'), false).ok());
      ASSERT_TRUE((*s)->Flush().ok());
      ASSERT_TRUE((*s)->Write(kBs, std::string(kBs, 'y'), false).ok());
    }
    env.Crash(seed);
    auto read_disk = [&] {
      auto f = env.OpenFile("/disk.img", OpenMode::kRead);
      std::string out(2 * kBs, '\0');
      EXPECT_TRUE((*f)->ReadAt(0, out.size(), out.data()).ok());
      return out;
    };
    const std::string before = read_disk();
    auto log = Replica::Open("/pending", o);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    auto s = Splitter::Open(&env, "/disk.img", *log);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const std::string after = read_disk();
    EXPECT_EQ(after.substr(0, kBs), std::string(kBs, 'z'));  // flushed: always there
    if ((*s)->log().Stats().last_seq >= 2) {
      ++log_kept;
      EXPECT_EQ(after.substr(kBs), std::string(kBs, 'y'));
      if (before.substr(kBs) != std::string(kBs, 'y')) ++redone;
    }
  }
  EXPECT_GT(log_kept, 0);
  EXPECT_GT(redone, 0) << "no crash outcome needed the redo; the test does not exercise it";
}

// Writes, zeroes and trims with FUA are durable when answered, on the disk and in the log,
// without a Flush: after any power loss the disk holds the change before the redo does
// anything. Each kind alone (a later FUA would sync the earlier ones too). The unflushed
// write without FUA that follows is lost in some crash outcomes (so the test can tell a
// durable change from one that merely happened to survive).
TEST(SplitterPowerLossTest, FuaChangesSurviveWithoutAFlush) {
  enum class Kind { kWrite, kWriteMany, kZero, kTrim };
  for (Kind kind : {Kind::kWrite, Kind::kWriteMany, Kind::kZero, Kind::kTrim}) {
    int plain_lost = 0;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      SCOPED_TRACE("kind " + std::to_string(static_cast<int>(kind)) + " seed " + std::to_string(seed));
      SimEnv env;
      ManualClock clock;
      journal::ReplicaOptions o;
      o.env = &env;
      o.clock = &clock;
      const std::string fua_block = kind == Kind::kWrite || kind == Kind::kWriteMany ? std::string(kBs, 'f')
                                                                                      : std::string(kBs, '\0');
      const auto fua_type = kind == Kind::kZero   ? journal::RecordType::kZero
                            : kind == Kind::kTrim ? journal::RecordType::kTrim
                                                  : journal::RecordType::kWrite;
      {
        auto log = CreateDiskAndLog(env, o);
        ASSERT_NE(log, nullptr);
        auto s = Splitter::Open(&env, "/disk.img", log);
        ASSERT_TRUE(s.ok());
        ASSERT_TRUE((*s)->Write(0, std::string(2 * kBs, 'b'), false).ok());  // seq 1
        ASSERT_TRUE((*s)->Flush().ok());
        Status changed;  // seq 2, on block 0
        if (kind == Kind::kWrite) {
          changed = (*s)->Write(0, fua_block, /*fua=*/true);
        } else if (kind == Kind::kWriteMany) {
          std::vector<Splitter::BlockWrite> batch = {{0, fua_block, true}};
          std::vector<Status> results(1);
          (*s)->WriteMany(batch, results);
          changed = results[0];
        } else if (kind == Kind::kZero) {
          changed = (*s)->WriteZeroes(0, kBs, /*fua=*/true, false);
        } else {
          changed = (*s)->Trim(0, kBs, /*fua=*/true);
        }
        ASSERT_TRUE(changed.ok()) << changed.ToString();
        ASSERT_TRUE((*s)->Write(kBs, std::string(kBs, 'n'), /*fua=*/false).ok());  // seq 3
      }
      env.Crash(seed);
      {
        auto disk = env.OpenFile("/disk.img", OpenMode::kRead);
        ASSERT_TRUE(disk.ok());
        std::string before(2 * kBs, '?');
        ASSERT_TRUE((*disk)->ReadAt(0, before.size(), before.data()).ok());
        EXPECT_EQ(before.substr(0, kBs), fua_block) << "the disk lost a change answered with FUA";
        if (before.substr(kBs) != std::string(kBs, 'n')) ++plain_lost;
      }
      auto log = Replica::Open("/pending", o);
      ASSERT_TRUE(log.ok()) << log.status().ToString();
      ASSERT_GE((*log)->last_seq(), 2u) << "the log lost a change answered with FUA";
      auto records = (*log)->ReadRecords(2, 2, 1 << 20);
      ASSERT_TRUE(records.ok()) << records.status().ToString();
      ASSERT_EQ(records->size(), 1u);
      EXPECT_EQ((*records)[0].record.type, fua_type);
      EXPECT_EQ((*records)[0].record.offset, 0u);
      EXPECT_EQ((*records)[0].record.length, kBs);
      auto view = (*log)->OpenView(2);
      ASSERT_TRUE(view.ok()) << view.status().ToString();
      std::string logged(kBs, '?');
      ASSERT_TRUE((*view)->Read(0, logged.size(), logged.data()).ok());
      EXPECT_EQ(logged, fua_block);
    }
    EXPECT_GT(plain_lost, 0) << "no crash outcome lost the write without FUA; the test cannot tell";
  }
}

}  // namespace
}  // namespace ferry::capture

namespace ferry::capture {
namespace {

// A map keeps the chunk size it was written with (delta.map: one bit per block), whatever
// the opener asks for a new one; a chunk size that is not a power of two is damage.
TEST(DirtyMapTest, KeepsItsChunkSize) {
  SimEnv env;
  {
    auto m = DirtyMap::Open(&env, "/delta.map", kSize, kBs);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    (*m)->SetRuns({{3, 1}, {100, 2}}, kBs);
    EXPECT_EQ((*m)->DirtyBytes(), 3 * kBs);
    ASSERT_TRUE((*m)->Save().ok());
  }
  auto m = DirtyMap::Open(&env, "/delta.map", kSize);  // asks for the default, 64 KiB
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ((*m)->chunk(), kBs);
  EXPECT_EQ((*m)->NextDirty(0, 1 << 20), std::make_optional(std::make_pair(uint64_t{3} * kBs, uint64_t{kBs})));
  EXPECT_EQ((*m)->NextDirty(4 * kBs, 1 << 20),
            std::make_optional(std::make_pair(uint64_t{100} * kBs, uint64_t{2} * kBs)));
  ASSERT_TRUE((*m)->Remove().ok());
  EXPECT_FALSE(env.Exists("/delta.map"));
  ASSERT_TRUE((*m)->Save().ok());
  auto text = ReadFileToString(&env, "/delta.map");
  ASSERT_TRUE(text.ok());
  std::string bad = *text;
  bad[8] = 3;  // chunk 4099, under a valid checksum
  bad.resize(bad.size() - 8);
  AppendFixed<uint64_t>(&bad, Checksum64(bad.data(), bad.size()));
  ASSERT_TRUE(WriteFileAtomically(&env, "/delta.map", bad).ok());
  EXPECT_EQ(DirtyMap::Open(&env, "/delta.map", kSize).status().code(), Code::kDataLoss);
}

}  // namespace
}  // namespace ferry::capture
