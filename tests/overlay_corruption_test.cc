// Corruption tests of an overlay's files (docs/formats/journal.md, "Overlays"): a damaged
// OVERLAY, blocks.log or data.img gives the exact error or the documented torn-tail outcome,
// and opening never deletes what a user wrote. Creation and discard cut short by a crash at
// every step leave a replica that opens.
//
// The files are damaged through the SimEnv's own Env interface, as a disk or an operator would.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/checksum.h"
#include "base/coding.h"
#include "env/sim_env.h"
#include "journal/overlay.h"
#include "journal/replica.h"

namespace ferry::journal {
namespace {

constexpr uint32_t kBs = 4096;
constexpr uint64_t kBlocks = 64;

// What the journal holds at point 3: block i (1..3) is all 'A' + i; the rest reads as zeros.
std::string PointBlock(uint64_t block) {
  return block >= 1 && block <= 3 ? std::string(kBs, static_cast<char>('A' + block))
                                   : std::string(kBs, '\0');
}
// The i-th user write of MakeOverlay.
std::string Written(size_t i) { return std::string(kBs, static_cast<char>('a' + i)); }

class OverlayCorruptionTest : public ::testing::Test {
 protected:
  ReplicaOptions Opts() {
    ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    return o;
  }

  Result<std::shared_ptr<Replica>> Open() { return Replica::Open(dir_, Opts()); }

  std::shared_ptr<Replica> MustOpen() {
    auto r = Open();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  std::string OverlayDir() const { return dir_ + "/overlays/o"; }
  std::string PathOf(const std::string& file) const { return OverlayDir() + "/" + file; }

  // A replica of three writes (point 3 holds PointBlock), open.
  std::shared_ptr<Replica> MakeReplica() {
    CreateParams p;
    p.size = kBlocks * kBs;
    auto r = Replica::Create(dir_, p, Opts());
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return nullptr;
    for (uint64_t block = 1; block <= 3; ++block) {
      auto res = (*r)->Append(Record::Write(block * kBs, PointBlock(block)));
      EXPECT_TRUE(res.ok()) << res.status().ToString();
    }
    return std::move(r).value();
  }

  // MakeReplica and an overlay "o" at point 3, with Written(i) written to blocks[i] and
  // flushed one by one: blocks.log holds one 32-byte entry per write, in order. Closed on
  // return.
  void MakeOverlay(const std::vector<uint64_t>& blocks) {
    auto r = MakeReplica();
    ASSERT_NE(r, nullptr);
    auto o = r->CreateOverlay("o", 3);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    for (size_t i = 0; i < blocks.size(); ++i) {
      ASSERT_TRUE((*o)->Write(blocks[i] * kBs, Written(i)).ok());
      ASSERT_TRUE((*o)->Flush().ok());
    }
  }

  std::string ReadAll(const std::string& path) {
    auto s = ReadFileToString(&env_, path);
    EXPECT_TRUE(s.ok()) << path << ": " << s.status().ToString();
    return s.ok() ? *s : "";
  }

  void Put(const std::string& path, const std::string& text) {
    auto f = env_.OpenFile(path, OpenMode::kCreate);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE((*f)->Truncate(0).ok());
    ASSERT_TRUE((*f)->WriteAt(0, text).ok());
  }

  void FlipBit(const std::string& path, uint64_t offset, int bit = 0) {
    std::string text = ReadAll(path);
    ASSERT_LT(offset, text.size());
    text[offset] = static_cast<char>(text[offset] ^ (1 << bit));
    Put(path, text);
  }

  void TruncateFile(const std::string& path, uint64_t size) {
    auto f = env_.OpenFile(path, OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE((*f)->Truncate(size).ok());
  }

  // A blocks.log entry whose checksum is right.
  static std::string LogEntry(uint8_t kind, uint64_t first, uint64_t count) {
    uint8_t e[32] = {'F', 'O', 'V', 'L', kind};
    EncodeFixed<uint64_t>(e + 8, first);
    EncodeFixed<uint64_t>(e + 16, count);
    EncodeFixed<uint64_t>(e + 24, Checksum64(e, 24));
    return std::string(reinterpret_cast<const char*>(e), sizeof e);
  }

  // Opening fails with DataLoss whose message holds `what`.
  void ExpectDataLoss(std::string_view what) {
    auto r = Open();
    ASSERT_FALSE(r.ok()) << "opened; wanted DataLoss saying " << what;
    EXPECT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
    EXPECT_NE(r.status().message().find(what), std::string_view::npos)
        << r.status().ToString() << " does not say " << what;
  }

  std::string ReadOverlay(const std::shared_ptr<Replica>& r, uint64_t block) {
    auto o = r->GetOverlay("o");
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    if (!o.ok()) return "";
    std::string out(kBs, '?');
    Status s = (*o)->Read(block * kBs, kBs, out.data());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  // The overlay opens and holds Written(i) at blocks[i], the point elsewhere in [0, 16).
  void ExpectOverlay(const std::vector<uint64_t>& blocks) {
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    for (uint64_t b = 0; b < 16; ++b) {
      std::string want = PointBlock(b);
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (blocks[i] == b) want = Written(i);
      }
      EXPECT_TRUE(ReadOverlay(r, b) == want) << "block " << b;
    }
  }

  SimEnv env_;
  ManualClock clock_;
  std::string dir_ = "/r";
};

// A bad entry with a whole one after it is a flushed, acknowledged write lost: refused,
// naming the file and offset, never cut off (which would serve the point's data instead).
TEST_F(OverlayCorruptionTest, BadLogEntryFollowedByAWholeOneIsDataLoss) {
  MakeOverlay({10, 11, 12});
  const std::string log = PathOf("blocks.log");
  ASSERT_EQ(ReadAll(log).size(), 96u);
  const std::string where = log + " offset 32: ";
  for (uint64_t byte : {0, 3, 4, 8, 16, 23, 24, 31}) {
    SCOPED_TRACE("entry byte " + std::to_string(byte));
    FlipBit(log, 32 + byte, static_cast<int>(byte % 8));
    ExpectDataLoss(where + (byte < 4 ? "bad entry magic" : "entry checksum mismatch") +
                   ", and a whole entry follows at offset 64");
    FlipBit(log, 32 + byte, static_cast<int>(byte % 8));  // repair
  }
  // An entry the disk lost (zeros), with the next one intact.
  const std::string good = ReadAll(log);
  Put(log, good.substr(0, 32) + std::string(32, '\0') + good.substr(64));
  ExpectDataLoss(where + "bad entry magic, and a whole entry follows at offset 64");
  EXPECT_EQ(ReadAll(log).size(), 96u) << "blocks.log was cut";
  Put(log, good);
  ExpectOverlay({10, 11, 12});
}

// Only a damaged tail is cut: the last flush never finished, so it was never acknowledged.
TEST_F(OverlayCorruptionTest, DamagedLogTailIsCutAndWritesContinue) {
  const char* const damages[] = {"bit flip in the last entry", "cut inside the last entry",
                                 "zeros after the last entry", "half an entry after it"};
  for (int d = 0; d < 4; ++d) {
    SCOPED_TRACE(damages[d]);
    dir_ = "/r" + std::to_string(d);
    MakeOverlay({10, 11, 12});
    const std::string log = PathOf("blocks.log");
    if (d == 0) FlipBit(log, 64 + 12, 2);
    if (d == 1) TruncateFile(log, 64 + 20);
    if (d == 2) Put(log, ReadAll(log) + std::string(64, '\0'));
    if (d == 3) Put(log, ReadAll(log) + LogEntry(1, 13, 1).substr(0, 31));
    const uint64_t kept_entries = d < 2 ? 2 : 3;
    std::vector<uint64_t> kept = {10, 11, 12};
    kept.resize(kept_entries);
    {
      auto r = MustOpen();
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(ReadAll(log).size(), 32 * kept_entries);
      auto o = r->GetOverlay("o");
      ASSERT_TRUE(o.ok());
      EXPECT_EQ((*o)->ChangedExtents(), (std::vector<BlockExtent>{{10, kept_entries}}));
      EXPECT_TRUE(ReadOverlay(r, 12) == (kept_entries == 3 ? Written(2) : PointBlock(12)));
      ASSERT_TRUE((*o)->Write(13 * kBs, Written(kept.size())).ok());
      ASSERT_TRUE((*o)->Flush().ok());
    }
    env_.CrashDropAll();
    kept.push_back(13);
    ASSERT_NO_FATAL_FAILURE(ExpectOverlay(kept));
  }
}

// An entry whose checksum holds was written so: wrong fields are no torn write, even last.
TEST_F(OverlayCorruptionTest, WholeLogEntryWithBadFieldsIsDataLoss) {
  MakeOverlay({10});
  const std::string log = PathOf("blocks.log");
  const std::string good = ReadAll(log);
  Put(log, good + LogEntry(9, 11, 1));
  ExpectDataLoss(log + " offset 32: unknown entry kind 9");
  Put(log, good + LogEntry(1, 60, 5));
  ExpectDataLoss(log + " offset 32: blocks 60+5 past the volume's 64");
  Put(log, good);
  ExpectOverlay({10});
}

TEST_F(OverlayCorruptionTest, DamagedOverlayFileIsDataLossAndNothingIsRemoved) {
  MakeOverlay({10});
  const std::string meta = PathOf("OVERLAY");
  const std::string good = ReadAll(meta);
  FlipBit(meta, good.find("\"point\"") + 2);
  ExpectDataLoss(meta + ": checksum mismatch");
  Put(meta, good.substr(0, 10));
  ExpectDataLoss(meta + ": no checksum line");
  Put(meta, "");
  ExpectDataLoss(meta + ": no checksum line");
  EXPECT_TRUE(env_.Exists(PathOf("data.img")));
  EXPECT_EQ(ReadAll(PathOf("blocks.log")).size(), 32u);
  Put(meta, good);
  ExpectOverlay({10});
}

// An overlay that lost OVERLAY but holds anything a user may have written is refused, naming
// what it holds and what to do; its files stay. Restoring OVERLAY brings it back whole.
TEST_F(OverlayCorruptionTest, MissingOverlayFileWithWritesIsDataLossAndKeepsTheFiles) {
  MakeOverlay({10});
  const std::string meta = PathOf("OVERLAY");
  const std::string good = ReadAll(meta);
  ASSERT_TRUE(env_.RemoveFile(meta).ok());
  const std::string head = "overlay o: " + meta + " is missing, but ";
  const std::string advice = "; restore OVERLAY, or move " + OverlayDir() +
                             " out of the replica to open it without this overlay";
  ExpectDataLoss(head + "blocks.log holds 32 bytes" + advice);
  ExpectDataLoss(head + "blocks.log holds 32 bytes" + advice);  // still there
  // Written but not flushed: only data.img shows it.
  const std::string log = ReadAll(PathOf("blocks.log"));
  TruncateFile(PathOf("blocks.log"), 0);
  ExpectDataLoss(head + "data.img holds data at offset " + std::to_string(10 * kBs));
  Put(PathOf("blocks.log"), log);
  Put(meta, good);
  ExpectOverlay({10});
}

TEST_F(OverlayCorruptionTest, MissingOverlayFileWithAnIntentOrAnotherFileIsDataLoss) {
  MakeOverlay({});
  ASSERT_TRUE(env_.RemoveFile(PathOf("OVERLAY")).ok());
  const std::string head = "overlay o: " + PathOf("OVERLAY") + " is missing, but ";
  Put(PathOf("intent.1"), std::string(40, 'i'));
  ExpectDataLoss(head + "intent.1 holds 40 bytes");
  TruncateFile(PathOf("intent.1"), 0);
  Put(PathOf("DIVERGED"), "{}");
  ExpectDataLoss(head + "it holds DIVERGED");
  ASSERT_TRUE(env_.RemoveFile(PathOf("DIVERGED")).ok());
  // Now it holds only what creation makes before OVERLAY, all empty: removed, with its pin.
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  EXPECT_FALSE(env_.Exists(OverlayDir()));
  EXPECT_TRUE(r->Pins().empty());
  EXPECT_TRUE(r->ListOverlays().empty());
}

// Creation cut short by a crash at every step: the replica opens, and either the overlay
// exists whole or nothing of it is left (directory and pin).
TEST_F(OverlayCorruptionTest, CreationCutShortByACrashLeavesNothingOrTheOverlay) {
  bool made = false;
  for (int after = 0; !made; ++after) {
    ASSERT_LT(after, 100) << "CreateOverlay never succeeded";
    SCOPED_TRACE("fail after " + std::to_string(after) + " calls");
    dir_ = "/create-" + std::to_string(after);
    {
      auto r = MakeReplica();
      ASSERT_NE(r, nullptr);
      env_.FailAfter(after);
      made = r->CreateOverlay("o", 3).ok();
      env_.Crash(static_cast<uint64_t>(after));
      env_.FailAfter(-1);
    }
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    const bool there = r->GetOverlay("o").ok();
    if (made) {
      EXPECT_TRUE(there);
    }
    EXPECT_EQ(env_.Exists(OverlayDir()), there);
    EXPECT_EQ(r->Pins().size(), there ? 1u : 0u);
    if (there) {
      auto o = r->GetOverlay("o");
      ASSERT_TRUE((*o)->Write(10 * kBs, Written(0)).ok());
      ASSERT_TRUE((*o)->Flush().ok());
      r.reset();
      ExpectOverlay({10});
    }
  }
}

// Discard cut short by a crash at every step: the replica opens, and either the overlay is
// whole (with its write and pin) or gone (directory and pin).
TEST_F(OverlayCorruptionTest, DiscardCutShortByACrashLeavesTheOverlayOrNothing) {
  bool discarded = false;
  for (int after = 0; !discarded; ++after) {
    ASSERT_LT(after, 100) << "DiscardOverlay never succeeded";
    SCOPED_TRACE("fail after " + std::to_string(after) + " calls");
    dir_ = "/discard-" + std::to_string(after);
    MakeOverlay({10});
    {
      auto r = MustOpen();
      ASSERT_NE(r, nullptr);
      env_.FailAfter(after);
      discarded = r->DiscardOverlay("o").ok();
      env_.Crash(static_cast<uint64_t>(after));
      env_.FailAfter(-1);
    }
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    const bool there = r->GetOverlay("o").ok();
    if (discarded) {
      EXPECT_FALSE(there);
    }
    EXPECT_EQ(env_.Exists(OverlayDir()), there);
    EXPECT_EQ(r->Pins().size(), there ? 1u : 0u);
    if (there) {
      EXPECT_TRUE(ReadOverlay(r, 10) == Written(0));
    }
  }
}

TEST_F(OverlayCorruptionTest, MissingDataOrLogIsDataLossNamingIt) {
  for (const char* file : {"data.img", "blocks.log"}) {
    SCOPED_TRACE(file);
    dir_ = std::string("/r-") + file;
    MakeOverlay({10});
    ASSERT_TRUE(env_.RemoveFile(PathOf(file)).ok());
    ExpectDataLoss(PathOf(file) + ": missing");
  }
}

// data.img has no checksums, as a disk has none: a flipped bit reads back flipped. Its size
// is the volume's; any other is refused.
TEST_F(OverlayCorruptionTest, DataImageOfAnotherSizeIsDataLoss) {
  MakeOverlay({10});
  const std::string data = PathOf("data.img");
  FlipBit(data, 10 * kBs + 7, 1);
  {
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    std::string want = Written(0);
    want[7] = static_cast<char>(want[7] ^ 2);
    EXPECT_TRUE(ReadOverlay(r, 10) == want);
  }
  FlipBit(data, 10 * kBs + 7, 1);
  TruncateFile(data, 11 * kBs);
  ExpectDataLoss(data + ": 45056 bytes where the volume has 262144");
  TruncateFile(data, 0);
  ExpectDataLoss(data + ": 0 bytes where the volume has 262144");
  TruncateFile(data, 65 * kBs);
  ExpectDataLoss(data + ": 266240 bytes where the volume has 262144");
}

// A committed replica is its overlay: with OVERLAY gone it is DataLoss, never NotFound (which
// says "no replica here").
TEST_F(OverlayCorruptionTest, CommittedReplicaMissingOverlayFileIsDataLoss) {
  MakeOverlay({10});
  {
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    ASSERT_TRUE(r->StartCommit("o").ok());
    ASSERT_TRUE(r->WaitForCommitCleanup().ok());
  }
  ASSERT_TRUE(MustOpen()->committed());
  ASSERT_TRUE(env_.RemoveFile(PathOf("OVERLAY")).ok());
  ExpectDataLoss(PathOf("OVERLAY") + ": missing");
}

}  // namespace
}  // namespace ferry::journal
