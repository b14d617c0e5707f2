#include "capture/scan_capture.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "env/forwarding_env.h"
#include "env/loop_device_test_util.h"
#include "env/scratch_dir_test_util.h"
#include "env/sim_env.h"
#include "journal/view.h"

namespace ferry::capture {
namespace {

using journal::MarkerKind;
using journal::Record;
using journal::RecordType;
using journal::Replica;
using journal::StoredRecord;

constexpr uint32_t kBs = 4096;
constexpr uint32_t kChunk = 16 * kBs;                // the default chunk size
constexpr uint64_t kChunks = 21;                     // the last one partial:
constexpr uint64_t kSize = 20 * kChunk + 2 * kBs;    // 20 whole chunks and 8 KiB

// Distinct, never all-zero content for chunk `index`, version `v`.
std::string Pattern(uint64_t index, int v, size_t n = kChunk) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(1 + (index * 31 + v * 7 + i / 512) % 251);
  return s;
}

uint64_t ChunkLen(uint64_t index) { return index + 1 < kChunks ? kChunk : kSize - index * kChunk; }

class ScanCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto disk = env_.OpenFile("/disk.img", OpenMode::kCreate);
    ASSERT_TRUE(disk.ok());
    ASSERT_TRUE((*disk)->Truncate(kSize).ok());
    ASSERT_TRUE((*disk)->Sync().ok());
    ASSERT_TRUE(env_.SyncDir("/").ok());
    journal::CreateParams p;
    p.size = kSize;
    p.pending_log = true;
    auto log = Replica::Create("/pending", p, ReplicaOpts());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = *log;
    // Data in chunks 0, 3, 4 and the partial last one; the rest reads as zeros.
    for (uint64_t c : {0, 3, 4, 20}) WriteDisk(c * kChunk, Pattern(c, 0, ChunkLen(c)));
  }

  journal::ReplicaOptions ReplicaOpts() {
    journal::ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    return o;
  }
  ScanOptions Opts() {
    ScanOptions o;
    o.read_buffer_bytes = 3 * kChunk;  // buffers that do not divide the disk
    o.clock = &clock_;
    return o;
  }
  std::unique_ptr<ScanCapture> Open(ScanOptions o, Env* env = nullptr) {
    auto s = ScanCapture::Open(env ? env : &env_, "/disk.img", log_, "/state", std::move(o));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  std::unique_ptr<ScanCapture> Open() { return Open(Opts()); }

  ScanReport Cycle(ScanCapture& s, const std::string& label = "m") {
    auto r = s.RunCycle(MarkerKind::kAppConsistent, label);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ScanReport{};
  }

  void WriteDisk(uint64_t offset, std::string_view data) {
    auto f = env_.OpenFile("/disk.img", OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAt(offset, data).ok());
    ASSERT_TRUE((*f)->Sync().ok());  // the disk survives the simulated power losses
  }
  std::string DiskBytes(uint64_t offset, size_t n) {
    auto f = env_.OpenFile("/disk.img", OpenMode::kRead);
    std::string out(n, '?');
    EXPECT_TRUE((*f)->ReadAt(offset, n, out.data()).ok());
    return out;
  }
  std::string MapBytes() {
    auto m = ReadFileToString(&env_, "/state/hashmap");
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : "";
  }
  void CorruptMap(uint64_t offset) {
    auto f = env_.OpenFile("/state/hashmap", OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok());
    char c;
    ASSERT_TRUE((*f)->ReadAt(offset, 1, &c).ok());
    c ^= 0x40;
    ASSERT_TRUE((*f)->WriteAt(offset, std::string_view(&c, 1)).ok());
    ASSERT_TRUE((*f)->Sync().ok());
  }

  std::vector<StoredRecord> Records(uint64_t from, uint64_t to) {
    std::vector<StoredRecord> out;
    while (from <= to) {
      auto batch = log_->ReadRecords(from, to, 64u << 20);
      EXPECT_TRUE(batch.ok()) << batch.status().ToString();
      if (!batch.ok() || batch->empty()) break;
      from = batch->back().record.seq + 1;
      for (auto& r : *batch) out.push_back(std::move(r));
    }
    return out;
  }
  // The chunks a cycle's data records cover, checking each record against the disk and that
  // the cycle ends with its marker.
  struct Sent {
    std::set<uint64_t> writes, zeros;
  };
  Sent SentBy(const ScanReport& r, uint64_t after_seq, const std::string& label = "m") {
    Sent sent;
    auto recs = Records(after_seq + 1, log_->last_seq());
    EXPECT_FALSE(recs.empty());
    if (recs.empty()) return sent;
    EXPECT_EQ(recs.back().record.type, RecordType::kMarker);
    EXPECT_EQ(recs.back().record.seq, r.marker_seq);
    EXPECT_EQ(recs.back().record.marker.label, label);
    recs.pop_back();
    for (const StoredRecord& sr : recs) {
      const Record& rec = sr.record;
      EXPECT_EQ(rec.offset % kChunk, 0u);
      for (uint64_t c = rec.offset / kChunk; c * kChunk < rec.offset + rec.length; ++c) {
        EXPECT_TRUE(!sent.writes.count(c) && !sent.zeros.count(c)) << "chunk " << c << " sent twice";
        (rec.type == RecordType::kZero ? sent.zeros : sent.writes).insert(c);
      }
      if (rec.type == RecordType::kWrite) {
        EXPECT_EQ(rec.length, ChunkLen(rec.offset / kChunk));
        EXPECT_EQ(rec.data, DiskBytes(rec.offset, rec.length)) << "at " << rec.offset;
      } else {
        EXPECT_EQ(rec.type, RecordType::kZero);
        EXPECT_EQ(DiskBytes(rec.offset, rec.length), std::string(rec.length, '\0'));
      }
    }
    return sent;
  }

  // Applies the log up to seq to a normal replica (what a link does at the target) and checks
  // that the volume as of seq is the disk.
  void ExpectTargetMatchesDisk(uint64_t seq) {
    if (!target_) {
      auto t = env_.Exists("/target") ? Replica::Open("/target", ReplicaOpts()) : [&] {
        journal::CreateParams p;
        p.size = kSize;
        return Replica::Create("/target", p, ReplicaOpts());
      }();
      ASSERT_TRUE(t.ok()) << t.status().ToString();
      target_ = *t;
    }
    for (StoredRecord& sr : Records(target_->last_seq() + 1, seq)) {
      auto a = target_->Append(std::move(sr.record));
      ASSERT_TRUE(a.ok()) << a.status().ToString();
    }
    auto view = target_->OpenView(seq);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    std::string got(kSize, '?');
    ASSERT_TRUE((*view)->Read(0, kSize, got.data()).ok());
    EXPECT_TRUE(got == DiskBytes(0, kSize)) << "the target as of seq " << seq << " is not the disk";
  }

  // A power loss keeping only what was durable, then everything reopened.
  void PowerLossAndReopen(std::unique_ptr<ScanCapture>* s) {
    env_.CrashDropAll();
    s->reset();
    log_.reset();
    target_.reset();
    auto log = Replica::Open("/pending", ReplicaOpts());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    log_ = *log;
    *s = Open();
  }

  SimEnv env_;
  ManualClock clock_;
  std::shared_ptr<Replica> log_;
  std::shared_ptr<Replica> target_;
};

TEST_F(ScanCaptureTest, FirstCycleSendsEveryChunkThenTheMarker) {
  auto s = Open();
  ScanReport r = Cycle(*s, "first");
  EXPECT_EQ(r.bytes_read, kSize);
  EXPECT_EQ(r.chunks, kChunks);
  EXPECT_EQ(r.changed_chunks, kChunks);
  EXPECT_EQ(r.unknown_chunks, kChunks);
  EXPECT_EQ(r.bytes_changed, kSize);
  Sent sent = SentBy(r, 0, "first");
  EXPECT_EQ(sent.writes, (std::set<uint64_t>{0, 3, 4, 20}));
  EXPECT_EQ(sent.zeros.size(), kChunks - 4);  // sent as Zero records, adjacent ones merged:
  EXPECT_EQ(Records(1, r.marker_seq).size(), 4u + 2u + 1u);  // chunks 1-2 and 5-19
  ExpectTargetMatchesDisk(r.marker_seq);
}

TEST_F(ScanCaptureTest, UnchangedDiskSendsOnlyTheMarker) {
  auto s = Open();
  ScanReport first = Cycle(*s);
  ScanReport r = Cycle(*s, "again");
  EXPECT_EQ(r.chunks, kChunks);
  EXPECT_EQ(r.changed_chunks, 0u);
  EXPECT_EQ(r.bytes_changed, 0u);
  EXPECT_EQ(r.marker_seq, first.marker_seq + 1);
  Sent sent = SentBy(r, first.marker_seq, "again");
  EXPECT_TRUE(sent.writes.empty() && sent.zeros.empty());
}

TEST_F(ScanCaptureTest, ScatteredChangesSendExactlyTheirChunks) {
  auto s = Open();
  ScanReport first = Cycle(*s);
  ExpectTargetMatchesDisk(first.marker_seq);
  WriteDisk(2 * kChunk + 5 * kBs, std::string(kBs, 'x'));   // a zero chunk gains data
  WriteDisk(3 * kChunk + 15 * kBs, std::string(kBs, 'y'));  // a data chunk's last block
  WriteDisk(20 * kChunk + kBs, std::string(kBs, 'z'));      // the partial last chunk
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.changed_chunks, 3u);
  EXPECT_EQ(r.unknown_chunks, 0u);
  EXPECT_EQ(r.bytes_changed, 2u * kChunk + 2 * kBs);
  Sent sent = SentBy(r, first.marker_seq);  // checks each record's data against the disk
  EXPECT_EQ(sent.writes, (std::set<uint64_t>{2, 3, 20}));
  EXPECT_TRUE(sent.zeros.empty());
  ExpectTargetMatchesDisk(r.marker_seq);
}

TEST_F(ScanCaptureTest, ChunkThatBecameZerosIsSentAsZeros) {
  auto s = Open();
  ScanReport first = Cycle(*s);
  WriteDisk(4 * kChunk, std::string(kChunk, '\0'));
  ScanReport r = Cycle(*s);
  Sent sent = SentBy(r, first.marker_seq);
  EXPECT_TRUE(sent.writes.empty());
  EXPECT_EQ(sent.zeros, (std::set<uint64_t>{4}));
  ExpectTargetMatchesDisk(r.marker_seq);
}

TEST_F(ScanCaptureTest, RestartKeepsTheMap) {
  auto s = Open();
  ScanReport first = Cycle(*s);
  s.reset();
  log_.reset();
  auto log = Replica::Open("/pending", ReplicaOpts());
  ASSERT_TRUE(log.ok());
  log_ = *log;
  s = Open();
  EXPECT_EQ(*s->Checkpoint(), first.marker_seq);
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.changed_chunks, 0u);
  EXPECT_EQ(r.marker_seq, first.marker_seq + 1);
}

TEST_F(ScanCaptureTest, SavedMapSurvivesPowerLoss) {
  auto s = Open();
  ScanReport first = Cycle(*s);
  PowerLossAndReopen(&s);
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.changed_chunks, 0u);
  EXPECT_EQ(r.marker_seq, first.marker_seq + 1);
}

TEST_F(ScanCaptureTest, CorruptMapMeansAFullResendNotAnError) {
  // Offsets in docs/formats/scan-hashmap.md: a header byte, an entry, a page checksum.
  for (uint64_t offset : std::initializer_list<uint64_t>{30u, 96u + 5 * 16u, 96u + kChunks * 16u + 3u}) {
    SCOPED_TRACE(offset);
    auto s = Open();
    ScanReport before = Cycle(*s);
    CorruptMap(offset);
    ScanReport r = Cycle(*s);
    EXPECT_EQ(r.changed_chunks, kChunks);
    EXPECT_EQ(r.unknown_chunks, kChunks);
    EXPECT_EQ(SentBy(r, before.marker_seq).writes, (std::set<uint64_t>{0, 3, 4, 20}));
    ExpectTargetMatchesDisk(r.marker_seq);
    EXPECT_EQ(Cycle(*s).changed_chunks, 0u);  // the map was rewritten whole
  }
}

TEST_F(ScanCaptureTest, MapOfAnotherGeometryIsNotUsed) {
  auto s = Open();
  Cycle(*s);
  s.reset();
  ScanOptions o = Opts();
  o.chunk_bytes = 8 * kBs;
  s = Open(o);
  EXPECT_EQ(*s->Checkpoint(), log_->last_seq());  // no usable map
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.chunks, 2 * kChunks - 1);
  EXPECT_EQ(r.unknown_chunks, r.chunks);
  ExpectTargetMatchesDisk(r.marker_seq);
}

TEST_F(ScanCaptureTest, BadOptionsAndASecondOwnerAreRefused) {
  ScanOptions o = Opts();
  o.chunk_bytes = kBs + 512;
  EXPECT_EQ(ScanCapture::Open(&env_, "/disk.img", log_, "/state", o).status().code(), Code::kInvalidArgument);
  o = Opts();
  o.freeze = [] { return Status::Ok(); };
  EXPECT_EQ(ScanCapture::Open(&env_, "/disk.img", log_, "/state", o).status().code(), Code::kInvalidArgument);
  auto s = Open();
  EXPECT_EQ(ScanCapture::Open(&env_, "/disk.img", log_, "/state", Opts()).status().code(),
            Code::kFailedPrecondition);
}

TEST_F(ScanCaptureTest, DiskOfAnotherSizeIsRefused) {
  auto s = Open();
  WriteDisk(kSize, "x");
  auto r = s->RunCycle(MarkerKind::kCrashConsistent, "");
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  EXPECT_EQ(log_->last_seq(), 0u);
}

TEST_F(ScanCaptureTest, FreezeThenMarkThenThawThenSaveEachCycle) {
  std::vector<std::string> events;
  ScanOptions o = Opts();
  o.freeze = [&] {
    events.push_back("freeze");
    return Status::Ok();
  };
  o.thaw = [&] {
    // The marker is in the log and durable; the map is saved only after thaw.
    events.push_back("thaw at seq " + std::to_string(log_->synced_seq()) + ", map " +
                     (env_.Exists("/state/hashmap") ? "saved" : "absent"));
    return Status::Ok();
  };
  auto s = Open(o);
  ScanReport r = Cycle(*s);
  ASSERT_EQ(events, (std::vector<std::string>{"freeze", "thaw at seq " + std::to_string(r.marker_seq) + ", map absent"}));
  events.clear();
  ScanReport r2 = Cycle(*s);
  EXPECT_EQ(events, (std::vector<std::string>{"freeze", "thaw at seq " + std::to_string(r2.marker_seq) + ", map saved"}));
}

TEST_F(ScanCaptureTest, FailedFreezeScansNothingAndDoesNotThaw) {
  int thaws = 0;
  ScanOptions o = Opts();
  o.freeze = [] { return IoError("fsfreeze: busy"); };
  o.thaw = [&] {
    ++thaws;
    return Status::Ok();
  };
  auto s = Open(o);
  auto r = s->RunCycle(MarkerKind::kAppConsistent, "m");
  EXPECT_EQ(r.status().code(), Code::kIoError);
  EXPECT_EQ(r.status().message(), "freeze hook: fsfreeze: busy");
  EXPECT_EQ(thaws, 0);
  EXPECT_EQ(log_->last_seq(), 0u);
}

TEST_F(ScanCaptureTest, ReadFailureMidCycleThawsAndKeepsTheMap) {
  // A disk that goes bad in the middle of a scan: reads at or past fail_from fail.
  int64_t fail_from = -1;
  HookEnv faulty(
      &env_, [](const std::string& path) { return path == "/disk.img"; },
      {.read = [&](uint64_t offset, size_t n) {
        if (fail_from >= 0 && offset + n > static_cast<uint64_t>(fail_from)) {
          return IoError("injected read error");
        }
        return Status::Ok();
      }});
  std::vector<std::string> events;
  ScanOptions o = Opts();
  o.freeze = [&] {
    events.push_back("freeze");
    return Status::Ok();
  };
  o.thaw = [&] {
    events.push_back("thaw");
    return Status::Ok();
  };
  auto s = Open(o, &faulty);
  ScanReport first = Cycle(*s);
  const std::string map = MapBytes();
  WriteDisk(7 * kChunk, Pattern(7, 1));
  fail_from = 10 * kChunk;
  events.clear();
  auto failed = s->RunCycle(MarkerKind::kAppConsistent, "m");
  EXPECT_EQ(failed.status().code(), Code::kIoError) << failed.status().ToString();
  EXPECT_EQ(events, (std::vector<std::string>{"freeze", "thaw"}));
  EXPECT_EQ(MapBytes(), map);
  EXPECT_EQ(*s->Checkpoint(), first.marker_seq);

  fail_from = -1;
  ScanReport r = Cycle(*s);
  EXPECT_EQ(SentBy(r, first.marker_seq).writes, (std::set<uint64_t>{7}));
  ExpectTargetMatchesDisk(r.marker_seq);
}

TEST_F(ScanCaptureTest, FailedThawIsReportedAfterTheMapIsSaved) {
  bool fail_thaw = true;
  ScanOptions o = Opts();
  o.freeze = [] { return Status::Ok(); };
  o.thaw = [&] { return fail_thaw ? IoError("fsfreeze -u: busy") : Status::Ok(); };
  auto s = Open(o);
  auto r = s->RunCycle(MarkerKind::kAppConsistent, "m");
  EXPECT_EQ(r.status().code(), Code::kIoError);
  EXPECT_NE(r.status().message().find("may still be frozen"), std::string_view::npos);
  const uint64_t marker = log_->last_seq();
  EXPECT_EQ(*s->Checkpoint(), marker);
  fail_thaw = false;
  EXPECT_EQ(Cycle(*s).changed_chunks, 0u);  // the records were durable, so the map was kept
}

// Records after the map's seq (a cycle that appended but never saved its map) will reach the
// target, so their chunks are resent even when the disk went back to the mapped content.
TEST_F(ScanCaptureTest, RecordsAfterTheMapAreResent) {
  auto s = Open();
  ScanReport first = Cycle(*s);
  ASSERT_TRUE(log_->Append(Record::Write(5 * kChunk, Pattern(5, 9))).ok());
  EXPECT_EQ(*s->Checkpoint(), first.marker_seq);  // keep them for the next cycle
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.unknown_chunks, 1u);
  EXPECT_EQ(SentBy(r, first.marker_seq + 1).zeros, (std::set<uint64_t>{5}));
  ExpectTargetMatchesDisk(r.marker_seq);
}

// If those records were discarded from the log already, nobody knows which chunks they
// touched: the whole disk is resent.
TEST_F(ScanCaptureTest, DiscardedRecordsAfterTheMapMeanAFullResend) {
  journal::CreateParams p;
  p.size = kSize;
  p.pending_log = true;
  journal::ReplicaOptions ro = ReplicaOpts();
  ro.segment_target_bytes = 64 * 1024;  // a segment per chunk-sized record
  auto created = Replica::Create("/small-segments", p, ro);
  ASSERT_TRUE(created.ok());
  log_ = *created;
  auto s = Open();
  ScanReport first = Cycle(*s);
  ASSERT_TRUE(log_->Append(Record::Write(5 * kChunk, Pattern(5, 9))).ok());
  ASSERT_TRUE(log_->Append(Record::Write(6 * kChunk, Pattern(6, 9))).ok());
  ASSERT_TRUE(log_->DiscardThrough(log_->last_seq()).ok());
  ASSERT_EQ(log_->ReadRecords(first.marker_seq + 1, log_->last_seq(), 1).status().code(),
            Code::kOutOfRange);
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.unknown_chunks, kChunks);
  EXPECT_EQ(r.changed_chunks, kChunks);
}

// A power loss after the cycle's records are durable but before its map is saved (the thaw
// hook runs exactly there). The disk then goes back to what the old map says: the chunk must
// still be sent, since the target will apply the crashed cycle's record.
TEST_F(ScanCaptureTest, PowerLossBeforeTheMapIsSavedMeansResendNotSkip) {
  bool crash_in_thaw = false;
  ScanOptions o = Opts();
  o.freeze = [] { return Status::Ok(); };
  o.thaw = [&] {
    if (crash_in_thaw) env_.CrashDropAll();
    return Status::Ok();
  };
  auto s = Open(o);
  ScanReport first = Cycle(*s);
  ExpectTargetMatchesDisk(first.marker_seq);
  const std::string old = DiskBytes(3 * kChunk, kChunk);
  WriteDisk(3 * kChunk, Pattern(3, 1));
  crash_in_thaw = true;
  auto crashed = s->RunCycle(MarkerKind::kAppConsistent, "m");
  EXPECT_EQ(crashed.status().code(), Code::kAborted) << crashed.status().ToString();
  crash_in_thaw = false;

  s.reset();
  log_.reset();
  target_.reset();
  auto log = Replica::Open("/pending", ReplicaOpts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  log_ = *log;
  ASSERT_EQ(log_->last_seq(), first.marker_seq + 2);  // the crashed cycle's write and marker
  s = Open(o);
  WriteDisk(3 * kChunk, old);
  ScanReport r = Cycle(*s);
  EXPECT_EQ(r.changed_chunks, 1u);
  EXPECT_EQ(SentBy(r, first.marker_seq + 2).writes, (std::set<uint64_t>{3}));
  ExpectTargetMatchesDisk(r.marker_seq);
}

TEST_F(ScanCaptureTest, AppendsInBoundedBatches) {
  // 20 MiB of data in one cycle: at least three Append calls of at most about 8 MiB.
  journal::CreateParams p;
  p.size = 20u << 20;
  p.pending_log = true;
  auto log = Replica::Create("/big-log", p, ReplicaOpts());
  ASSERT_TRUE(log.ok());
  {
    auto disk = env_.OpenFile("/big.img", OpenMode::kCreate);
    ASSERT_TRUE(disk.ok());
    for (uint64_t c = 0; c < p.size / kChunk; ++c) ASSERT_TRUE((*disk)->WriteAt(c * kChunk, Pattern(c, 0)).ok());
  }
  auto s = ScanCapture::Open(&env_, "/big.img", *log, "/big-state", Opts());
  ASSERT_TRUE(s.ok());
  auto r = (*s)->RunCycle(MarkerKind::kCrashConsistent, "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->changed_chunks, p.size / kChunk);
  EXPECT_EQ((*log)->Stats().appends, 3u);  // 8 MiB + 8 MiB + 4 MiB and the marker
}

// The same cycle on real files.
TEST(ScanCapturePosixTest, CyclesOnRealFiles) {
  test::ScratchDir scratch("ferry-scan-capture-posix");
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  Env* env = Env::Posix();
  const std::string disk = dir + "/disk.img";
  constexpr uint64_t size = 1u << 20;
  {
    auto f = env->OpenFile(disk, OpenMode::kCreate);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Truncate(size).ok());
    ASSERT_TRUE((*f)->WriteAt(3 * kChunk, Pattern(3, 0)).ok());
  }
  journal::CreateParams p;
  p.size = size;
  p.pending_log = true;
  auto log = Replica::Create(dir + "/pending", p);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  auto s = ScanCapture::Open(env, disk, *log, dir + "/state");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto r1 = (*s)->RunCycle(MarkerKind::kCrashConsistent, "one");
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->changed_chunks, size / kChunk);
  {
    auto f = env->OpenFile(disk, OpenMode::kReadWrite);
    ASSERT_TRUE((*f)->WriteAt(9 * kChunk + 100, "changed").ok());
  }
  auto r2 = (*s)->RunCycle(MarkerKind::kCrashConsistent, "two");
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->changed_chunks, 1u);
  auto recs = (*log)->ReadRecords(r1->marker_seq + 1, r2->marker_seq, 1u << 20);
  ASSERT_TRUE(recs.ok());
  ASSERT_EQ(recs->size(), 2u);
  EXPECT_EQ((*recs)[0].record.offset, 9u * kChunk);
  EXPECT_EQ((*recs)[0].record.data.substr(100, 7), "changed");
  s->reset();
  log->reset();
}

// A block device (a loop device here): the scan sizes it through File::Size like any disk,
// captures it, and refuses a pending log of another size saying how the sizes differ.
TEST(ScanCapturePosixTest, CapturesABlockDevice) {
  test::ScratchDir scratch("ferry-scan-capture-blockdev");
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  Env* env = Env::Posix();
  constexpr uint64_t size = 1u << 20;
  {
    auto f = env->OpenFile(dir + "/backing", OpenMode::kCreate);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->Truncate(size).ok());
    ASSERT_TRUE((*f)->WriteAt(5 * kChunk, Pattern(5, 0)).ok());
    ASSERT_TRUE((*f)->Sync().ok());
  }
  auto loop = test::LoopDevice::Attach(dir + "/backing");
  if (!loop.ok()) GTEST_SKIP() << loop.status().ToString();
  const std::string device = (*loop)->path();
  {
    journal::CreateParams p;
    p.size = size;
    p.pending_log = true;
    auto log = Replica::Create(dir + "/pending", p);
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    auto s = ScanCapture::Open(env, device, *log, dir + "/state");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    auto r = (*s)->RunCycle(MarkerKind::kCrashConsistent, "device");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->bytes_read, size);
    auto recs = (*log)->ReadRecords(1, r->marker_seq, 4u << 20);
    ASSERT_TRUE(recs.ok()) << recs.status().ToString();
    int data_chunks = 0;
    for (const StoredRecord& sr : *recs) {
      if (sr.record.type != RecordType::kWrite) continue;
      ++data_chunks;
      EXPECT_EQ(sr.record.offset, 5u * kChunk);
      EXPECT_TRUE(sr.record.data == Pattern(5, 0)) << "the pending log does not hold the device's data";
    }
    EXPECT_EQ(data_chunks, 1);

    p.size = 2 * size;
    auto bigger = Replica::Create(dir + "/bigger", p);
    ASSERT_TRUE(bigger.ok()) << bigger.status().ToString();
    auto refused = ScanCapture::Open(env, device, *bigger, dir + "/bigger-state");
    ASSERT_TRUE(refused.ok()) << refused.status().ToString();
    auto r2 = (*refused)->RunCycle(MarkerKind::kCrashConsistent, "");
    EXPECT_EQ(r2.status().code(), Code::kFailedPrecondition) << r2.status().ToString();
    EXPECT_NE(r2.status().message().find("is " + std::to_string(size) + " bytes, smaller"), std::string::npos)
        << r2.status().ToString();
  }
  loop->reset();
}

}  // namespace
}  // namespace ferry::capture
