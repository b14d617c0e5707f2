// Sender and receiver end to end over loopback TCP (and TLS): initial sync while the volume
// is written, continuous replication, resume without a full copy, refusals, corrupt frames.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>

#include "base/checksum.h"
#include "capture/dirty_map.h"
#include "capture/splitter.h"
#include "env/forwarding_env.h"
#include "env/socket.h"
#include "journal/view.h"
#include "link/frame.h"
#include "link/link_test_util.h"
#include "link/messages.h"
#include "link/receiver.h"
#include "link/replica_store.h"
#include "link/sender.h"
#include "link/tls.h"
#include "link/tls_test_util.h"

namespace ferry::link {
namespace {

using journal::MarkerKind;
using journal::Replica;
using e2e::Block;
using e2e::BufferStream;
using e2e::Eventually;
using e2e::kBs;
using e2e::kSize;
using e2e::LinkTest;
using e2e::LogCapture;
using e2e::Target;

// The first consistent point comes after an initial sync that ran while the machine wrote:
// it reads exactly as the source disk did at that marker.
TEST_F(LinkTest, InitialSyncWhileWritingThenContinuousReplication) {
  Target target(dir_ + "/target");
  SenderConfig c = Config(target.port());
  c.rate_bytes_per_second = 8 << 20;  // so the writes below overlap the sync
  // The sync's closing marker waits until the test has looked at the running sync; it is
  // taken between two writes, and the disk as of it is kept to compare with the target.
  std::mutex write_mu;
  std::atomic<bool> looked{false};
  uint64_t closing_seq = 0;
  std::string disk_at_closing;
  c.mark = [&](const std::string& label) -> Result<uint64_t> {
    if (!Eventually([&] { return looked.load(); })) return Aborted("the test never looked");
    std::lock_guard l(write_mu);
    ASSIGN_OR_RETURN(uint64_t seq, splitter_->Mark(MarkerKind::kCrashConsistent, label));
    ASSIGN_OR_RETURN(auto disk, Env::Posix()->OpenFile(disk_path_, OpenMode::kRead));
    std::string bytes(kSize, '\0');
    ASSIGN_OR_RETURN(size_t got, disk->ReadAt(0, kSize, bytes.data()));
    if (got != kSize) return Internal("short read of the source disk");
    closing_seq = seq;
    disk_at_closing = std::move(bytes);
    return seq;
  };
  sender_ = std::make_unique<LinkSender>(c, log_);
  sender_->Start();
  std::atomic<bool> stop{false};
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } writer{stop, std::thread([&] {
    std::mt19937_64 rng(7);
    for (int i = 0; !stop; ++i) {
      {
        std::lock_guard l(write_mu);
        uint64_t b = rng() % (kSize / kBs);
        ASSERT_TRUE(splitter_->Write(b * kBs, Block(rng()), false).ok());
        if (i % 50 == 0) {
          ASSERT_TRUE(splitter_->WriteZeroes((rng() % (kSize / kBs)) * kBs, kBs, false, false).ok());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));  // ~2 MB/s, below the rate
    }
  })};
  auto replica = TargetReplica(target);
  ASSERT_TRUE(replica);
  // No point is consistent while the sync runs (it cannot end before `looked`).
  EXPECT_TRUE(replica->GetInitialSync().running);
  EXPECT_EQ(replica->ResolvePoint(journal::PointSpec{}).status().code(), Code::kFailedPrecondition);
  looked = true;
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  stop = true;
  writer.t.join();
  sender_->SetRate(0);
  const uint64_t consistent_from = replica->GetInitialSync().consistent_from;
  ASSERT_EQ(consistent_from, closing_seq);
  EXPECT_EQ(replica->OpenView(consistent_from - 1).status().code(), Code::kOutOfRange);
  {
    auto view = replica->OpenView(consistent_from);
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    std::string got(1 << 20, '\0');
    for (uint64_t off = 0; off < kSize; off += got.size()) {
      ASSERT_TRUE((*view)->Read(off, got.size(), got.data()).ok());
      ASSERT_TRUE(disk_at_closing.compare(off, got.size(), got) == 0)
          << "the first consistent point (seq " << consistent_from
          << ") differs from the source as of it, in the MiB at " << off;
    }
  }

  // Continuous replication after the sync: writes, then a marker.
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(splitter_->Write((i * 37 % 4096) * kBs, Block(i), false).ok());
  ASSERT_TRUE(splitter_->Trim(8 * kBs, 16 * kBs, false).ok());
  auto m = splitter_->Mark(MarkerKind::kAppConsistent, "after");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ExpectSame(*replica, *m);
  auto st = sender_->status();
  EXPECT_EQ(st.state, "replicating");
  EXPECT_FALSE(st.initial_sync);
  EXPECT_EQ(st.acked_seq, *m);
  EXPECT_EQ(st.newest_acked_marker_seq, *m);
}

// Keeps a copy of every byte written through it (one writing thread at a time).
class RecordingStream final : public Stream {
 public:
  RecordingStream(std::unique_ptr<Stream> s, std::shared_ptr<std::string> sent)
      : s_(std::move(s)), sent_(std::move(sent)) {}
  Status ReadFull(void* dst, size_t n) override { return s_->ReadFull(dst, n); }
  Status WriteAll(std::string_view data) override {
    sent_->append(data);
    return s_->WriteAll(data);
  }
  Status WriteAllV(std::span<const std::string_view> pieces) override {
    for (std::string_view p : pieces) sent_->append(p);
    return s_->WriteAllV(pieces);
  }
  void Shutdown() override { s_->Shutdown(); }
  std::string PeerName() const override { return s_->PeerName(); }

 private:
  std::unique_ptr<Stream> s_;
  std::shared_ptr<std::string> sent_;
};

// Over a link that does not compress, the source leaves SYNC_DATA's checksums to the frame
// (the target offers it): every SYNC_DATA on the wire is stored uncompressed and its data
// extents carry flag 2; the copy is the same, and replication goes on after it.
TEST_F(LinkTest, InitialSyncOverALinkThatDoesNotCompress) {
  Target target(dir_ + "/target");
  SenderConfig c = Config(target.port());
  c.codecs = {"none"};
  auto sent = std::make_shared<std::string>();
  const uint16_t port = target.port();
  c.connect = [port, sent]() -> Result<std::unique_ptr<Stream>> {
    ASSIGN_OR_RETURN(auto s, ConnectTcp("127.0.0.1", port));
    return std::unique_ptr<Stream>(new RecordingStream(std::move(s), sent));
  };
  sender_ = std::make_unique<LinkSender>(c, log_);
  sender_->Start();
  auto replica = TargetReplica(target);
  ASSERT_TRUE(replica);
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(splitter_->Write((i * 91 % 4096) * kBs, Block(i), false).ok());
  }
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ExpectSame(*replica, *m);
  EXPECT_EQ(sender_->status().codec, "none");
  sender_.reset();  // nothing more is written to `sent`

  BufferStream wire;
  wire.bytes = *sent;
  FrameReader reader(&wire);
  int with_data = 0;
  for (;;) {
    auto f = reader.Read();
    if (!f.ok()) {
      EXPECT_EQ(f.status().code(), Code::kAborted) << f.status().ToString();  // the end
      break;
    }
    if (f->type != MessageType::kSyncData) continue;
    ASSERT_TRUE(f->raw_checked);
    auto d = DecodeSyncData(f->payload, kSize, kBs, true);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    if (std::none_of(d->extents.begin(), d->extents.end(),
                     [](const SyncExtent& e) { return e.zero_length == 0; })) {
      continue;
    }
    ++with_data;
    // Without the frame's checksum its data extents would have none.
    auto alone = DecodeSyncData(f->payload, kSize, kBs, false);
    ASSERT_FALSE(alone.ok());
    EXPECT_NE(alone.status().message().find("without a checksum"), std::string::npos)
        << alone.status().ToString();
  }
  EXPECT_GT(with_data, 0);
}

// A base write that fails during the initial sync (it runs on the receiver's applier thread)
// ends the connection with that error, which the target's status shows; once writes work
// again the source reconnects and the copy ends the same as the disk.
TEST_F(LinkTest, FailedBaseWriteEndsTheConnectionAndTheSyncResumes) {
  std::atomic<bool> fail{true};
  HookEnv env(
      Env::Posix(), [](const std::string& path) { return path.ends_with("/base.img"); },
      {.write = [&](uint64_t offset, size_t) {
        if (!fail) return Status::Ok();
        return IoError("injected write failure at byte " + std::to_string(offset));
      }});
  journal::ReplicaOptions o;
  o.env = &env;
  Target target(dir_ + "/target", nullptr, o);
  SenderConfig c = Config(target.port());
  c.codecs = {"none"};
  sender_ = std::make_unique<LinkSender>(c, log_);
  sender_->Start();
  std::string last_error;
  ASSERT_TRUE(Eventually([&] {
    auto in = target.receiver().Inbound();
    last_error = in.empty() ? "" : in[0].last_error;
    return last_error.find("injected write failure") != std::string::npos;
  })) << last_error;
  EXPECT_NE(last_error.find("IoError"), std::string::npos) << last_error;
  auto replica = TargetReplica(target);
  ASSERT_TRUE(replica);
  EXPECT_TRUE(replica->GetInitialSync().running);
  fail = false;
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ExpectSame(*replica, *m);
}

TEST_F(LinkTest, ResumesAfterDisconnectWithoutCopyingAgainAndTrimsThePendingLog) {
  Target target(dir_ + "/target");
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  sender_->Start();
  auto replica = TargetReplica(target);
  ASSERT_TRUE(replica);
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  // The initial sync sent only the non-zero blocks: every third block of the first quarter.
  EXPECT_EQ(target.receiver().Inbound()[0].sync_bytes, (kSize / kBs / 4 + 2) / 3 * kBs);

  for (int round = 0; round < 3; ++round) {
    sender_->Pause();
    ASSERT_TRUE(Eventually([&] { return sender_->status().state == "paused"; }));
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(splitter_->Write(((round * 300 + i) % 4096) * kBs, Block(round * 1000 + i), false).ok());
    }
    auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "round");
    ASSERT_TRUE(m.ok());
    EXPECT_LT(replica->last_seq(), *m);  // nothing travels while paused
    sender_->Resume();
    ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
    ExpectSame(*replica, *m);
  }
  // Every reconnect resumed from the journal: no second initial sync.
  auto in = target.receiver().Inbound();
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].sync_bytes, 0u) << "the last connection copied volume data again";
  EXPECT_GE(sender_->status().connects, 4u);
  // Acknowledged records leave the pending log (whole segments of 1 MiB; 900 blocks of 4 KiB
  // were written, so several segments are gone).
  const uint64_t before = log_->Stats().oldest_point;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(splitter_->Write(i * kBs, Block(i), false).ok());
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "trim");
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ASSERT_TRUE(Eventually([&] { return log_->Stats().oldest_point > before; }))
      << "the pending log was never trimmed";
}

TEST_F(LinkTest, TargetRestartResumesFromItsDurableSeq) {
  uint64_t first_marker;
  {
    Target target(dir_ + "/target");
    sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
    sender_->Start();
    auto replica = TargetReplica(target);
    ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
    auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "one");
    ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
    first_marker = *m;
    sender_.reset();
  }
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(splitter_->Write(i * kBs, Block(i + 5), false).ok());
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "two");
  Target target(dir_ + "/target");  // reopens the replica from disk
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  sender_->Start();
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  auto replica = TargetReplica(target);
  ExpectSame(*replica, *m);
  EXPECT_TRUE(replica->OpenView(first_marker).ok());
  EXPECT_EQ(target.receiver().Inbound()[0].sync_bytes, 0u);
}

TEST_F(LinkTest, PendingLogOverflowBecomesAResyncOfTheChangedBlocks) {
  Target target(dir_ + "/target");
  auto dirty = StartWithDirtyMap(target);
  auto replica = TargetReplica(target);
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  auto before = splitter_->Mark(MarkerKind::kCrashConsistent, "before");
  ASSERT_TRUE(sender_->WaitAcked(*before, 30'000));

  // The target is unreachable for long: the pending log outgrows its cap and is dropped to
  // the changed-block map.
  sender_->Pause();
  ASSERT_TRUE(Eventually([&] { return sender_->status().state == "paused"; }));
  for (int i = 0; i < 1200; ++i) {
    ASSERT_TRUE(splitter_->Write(((i * 13) % 4000) * kBs, Block(50'000 + i), false).ok());
  }
  auto dropped = capture::DropToDirtyMap(*splitter_, *log_, *dirty, sender_->status().acked_seq);
  ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
  EXPECT_GT(log_->Stats().oldest_point, *before) << "nothing was dropped";
  EXPECT_FALSE(dirty->Empty());
  // Writes go on after the drop.
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(splitter_->Write(i * kBs, Block(90'000 + i), false).ok());

  sender_->Resume();
  // A disconnect in the middle of the resync: the next connection learns of the open window
  // from the target and finishes it.
  ASSERT_TRUE(Eventually([&] { return replica->OpenResync() != 0; }));
  sender_->Pause();
  ASSERT_TRUE(Eventually([&] { return sender_->status().state == "paused"; }));
  EXPECT_NE(replica->OpenResync(), 0u);
  EXPECT_EQ(replica->ResolvePoint(journal::PointSpec{})->seq, *before);  // latest stays consistent
  sender_->Resume();
  // The resync ends at a marker; then the target is consistent again and equals the source.
  ASSERT_TRUE(Eventually([&] { return dirty->phase() == capture::DirtyMap::Phase::kDone; }));
  EXPECT_TRUE(dirty->Empty());
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ASSERT_TRUE(Eventually([&] { return replica->OpenResync() == 0; }));
  ExpectSame(*replica, *m);
  // The point taken before the drop is still there and still right.
  EXPECT_TRUE(replica->OpenView(*before).ok());
  // Points inside the window are not.
  EXPECT_EQ(replica->OpenView(*before + 1).status().code(), Code::kFailedPrecondition);
  // No second initial sync.
  EXPECT_EQ(target.receiver().Inbound()[0].sync_bytes, 0u);
}

// Flips one byte of the first copy of needle in the files under dir; true if one was found.
bool DamageFirstCopy(const std::string& dir, const std::string& needle) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    auto f = std::move(Env::Posix()->OpenFile(e.path().string(), OpenMode::kReadWrite)).value();
    std::string all(e.file_size(), '\0');
    if (!f->ReadAt(0, all.size(), all.data()).ok()) continue;
    size_t at = all.find(needle);
    if (at == std::string::npos) continue;
    std::string flipped(1, static_cast<char>(all[at + 100] ^ 0x5A));
    return f->WriteAt(at + 100, flipped).ok();
  }
  return false;
}

TEST_F(LinkTest, VerifyResyncsOnlyTheBlocksThatDifferAtTheTarget) {
  Target target(dir_ + "/target");
  StartWithDirtyMap(target);
  auto replica = TargetReplica(target);
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  // Records after the initial sync, in the upper half (the target keeps them in its journal).
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(splitter_->Write((2048 + i * 7) * kBs, Block(70'000 + i), false).ok());
  }
  auto m1 = splitter_->Mark(MarkerKind::kCrashConsistent, "one");
  ASSERT_TRUE(sender_->WaitAcked(*m1, 30'000));
  const uint64_t synced = target.receiver().Inbound()[0].sync_bytes;
  auto done = [&] { return sender_->status().verify.state == "done"; };

  // A healthy target: nothing differs and no resync window opens.
  auto v1 = sender_->Verify("v1");
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  ASSERT_TRUE(Eventually(done));
  VerifyStatus v = sender_->status().verify;
  EXPECT_EQ(v.compared_bytes, kSize);
  EXPECT_EQ(v.differing_bytes, 0u);
  EXPECT_EQ(v.consistent_from, 0u);
  EXPECT_EQ(replica->OpenResync(), 0u);
  EXPECT_EQ(sender_->Verify("v1")->state, "done");  // asking again with its id changes nothing

  // Damage the target: three blocks of its base and the payload of one journal record.
  {
    auto base = std::move(Env::Posix()->OpenFile(replica->dir() + "/base.img", OpenMode::kReadWrite)).value();
    for (uint64_t b : {3, 300, 600}) ASSERT_TRUE(base->WriteAt(b * kBs, Block(b + 7)).ok());
  }
  ASSERT_TRUE(DamageFirstCopy(replica->dir() + "/journal", Block(70'005)));
  const uint64_t wire_before = sender_->status().wire_bytes;
  ASSERT_TRUE(sender_->Verify("v2").ok());
  ASSERT_TRUE(Eventually(done));
  v = sender_->status().verify;
  EXPECT_EQ(v.id, "v2");
  EXPECT_EQ(v.differing_bytes, 4 * kBs);
  EXPECT_GT(v.consistent_from, *m1);
  ASSERT_TRUE(sender_->WaitAcked(v.consistent_from, 30'000));
  ASSERT_TRUE(Eventually([&] { return replica->OpenResync() == 0; }));
  ExpectSame(*replica, v.consistent_from);
  // Only the four blocks travelled, with the digests (16 MiB compared).
  EXPECT_LT(sender_->status().wire_bytes - wire_before, 4 * kBs + 64 * 1024);
  // The history is kept as it was (a verify repairs the newest state, not the past).
  EXPECT_TRUE(replica->OpenView(*m1).ok());

  // Damage again, and verify while the machine keeps writing.
  {
    auto base = std::move(Env::Posix()->OpenFile(replica->dir() + "/base.img", OpenMode::kReadWrite)).value();
    ASSERT_TRUE(base->WriteAt(900 * kBs, Block(12)).ok());
  }
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      ASSERT_TRUE(splitter_->Write(((i * 37) % 1024) * kBs, Block(80'000 + i), false).ok());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  ASSERT_TRUE(sender_->Verify("v3").ok());
  ASSERT_TRUE(Eventually(done));
  stop = true;
  writer.join();
  v = sender_->status().verify;
  EXPECT_GE(v.differing_bytes, kBs);
  auto m3 = splitter_->Mark(MarkerKind::kCrashConsistent, "three");
  ASSERT_TRUE(sender_->WaitAcked(*m3, 30'000));
  ASSERT_TRUE(Eventually([&] { return replica->OpenResync() == 0; }));
  ExpectSame(*replica, *m3);
  EXPECT_EQ(target.receiver().Inbound()[0].sync_bytes, synced);  // never a second initial sync

  // A verify cancelled before it compared anything ends at once, finding nothing.
  sender_->Pause();
  ASSERT_TRUE(Eventually([&] { return sender_->status().state == "paused"; }));
  ASSERT_TRUE(sender_->Verify("v4").ok());
  EXPECT_EQ(sender_->Verify("v5").status().code(), Code::kFailedPrecondition);  // one at a time
  sender_->CancelVerify();
  v = sender_->status().verify;
  EXPECT_EQ(v.state, "done");
  EXPECT_TRUE(v.cancelled);
  EXPECT_EQ(v.compared_bytes, 0u);
}

TEST_F(LinkTest, VerifyNeedsAChangedBlockMap) {
  Target target(dir_ + "/target");
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  EXPECT_EQ(sender_->Verify("v1").status().code(), Code::kFailedPrecondition);
}

TEST_F(LinkTest, SeededSyncSendsOnlyTheBlocksThatDiffer) {
  // The target holds an older version of the disk (say, what a failover left behind).
  const std::string seed = dir_ + "/old.img";
  std::filesystem::copy_file(disk_path_, seed);
  // Since then 40 blocks changed at random, 3 of them to zeros.
  std::mt19937_64 rng(3);
  std::set<uint64_t> changed;
  {
    auto f = std::move(Env::Posix()->OpenFile(disk_path_, OpenMode::kReadWrite)).value();
    while (changed.size() < 40) {
      uint64_t b = rng() % (kSize / kBs / 4);  // inside the data region (holes stay equal)
      if (b % 3 != 0 || !changed.insert(b).second) continue;
      ASSERT_TRUE(f->WriteAt(b * kBs, changed.size() <= 3 ? std::string(kBs, '\0') : Block(rng())).ok());
    }
  }
  Target target(dir_ + "/target");
  auto replica = PrepareSeeded(target, seed);
  ASSERT_NE(replica, nullptr);
  EXPECT_TRUE(replica->GetInitialSync().seeded);
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  sender_->Start();
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ExpectSame(*replica, *m);
  // Only the 37 changed data blocks travelled as data; digests and headers stay small.
  auto in = target.receiver().Inbound();
  ASSERT_EQ(in.size(), 1u);
  EXPECT_EQ(in[0].sync_bytes, 37 * kBs);
  const uint64_t wire = sender_->status().wire_bytes;
  EXPECT_LT(wire, 40 * kBs + 64 * 1024) << "wire bytes " << wire;
}

// The source asks for a window's digests before it reads the window itself, so that the
// target reads and digests its copy meanwhile instead of afterwards (link.md, "Seeded sync").
// Here the source's read of the window waits until the target has begun to read its base;
// had the source read first, the target would not have been asked yet, and the wait would run
// out.
TEST_F(LinkTest, SeededSyncAsksForTheDigestsBeforeItReadsTheWindow) {
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool armed = false, target_read = false;
    std::optional<bool> target_first;  // at the source's first window read
  } sig;
  // The target: every read of its base, once armed, is signalled.
  HookEnv target_env(
      Env::Posix(), [](const std::string& path) { return path.ends_with("/base.img"); },
      {.read = [&](uint64_t, size_t) {
        {
          std::lock_guard l(sig.mu);
          if (sig.armed) sig.target_read = true;
        }
        sig.cv.notify_all();
        return Status::Ok();
      }});
  // The source: its first read of a whole window waits (at most 5 s) for the target's read.
  HookEnv source_env(
      Env::Posix(), [&](const std::string& path) { return path == disk_path_; },
      {.read = [&](uint64_t, size_t n) {
        std::unique_lock l(sig.mu);
        if (n == kSize && !sig.target_first) {
          sig.cv.wait_for(l, std::chrono::seconds(5), [&] { return sig.target_read; });
          sig.target_first = sig.target_read;
        }
        return Status::Ok();
      }});
  struct StopSender {  // the sender reads through source_env: it stops before that goes
    std::unique_ptr<LinkSender>* sender;
    ~StopSender() { sender->reset(); }
  } stop{&sender_};

  const std::string seed = dir_ + "/old.img";
  std::filesystem::copy_file(disk_path_, seed);
  {
    auto f = std::move(Env::Posix()->OpenFile(disk_path_, OpenMode::kReadWrite)).value();
    ASSERT_TRUE(f->WriteAt(3 * kBs, Block(7)).ok());
  }
  journal::ReplicaOptions target_options;
  target_options.env = &target_env;
  Target target(dir_ + "/target", nullptr, target_options);
  auto replica = PrepareSeeded(target, seed);
  ASSERT_NE(replica, nullptr);
  {
    std::lock_guard l(sig.mu);
    sig.armed = true;
  }
  SenderConfig c = Config(target.port());
  c.env = &source_env;
  sender_ = std::make_unique<LinkSender>(c, log_);
  sender_->Start();
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  {
    std::lock_guard l(sig.mu);
    ASSERT_TRUE(sig.target_first.has_value()) << "the source never read a whole window";
    EXPECT_TRUE(*sig.target_first) << "the source read its window before the target was asked";
  }
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  ExpectSame(*replica, *m);
  EXPECT_EQ(target.receiver().Inbound().at(0).sync_bytes, kBs);
}

// Regression: a seeded sync read each 64 MiB window into a buffer reused from the window
// before and did not clear what a disk shorter than the volume left unread, so the target
// received the earlier window's bytes there as the volume's content. Past the disk's end the
// volume reads as zeros, as the other sync paths already had it.
TEST_F(LinkTest, SeededSyncOfADiskShorterThanTheVolumeSendsZerosPastItsEnd) {
  constexpr uint64_t kMiB = 1 << 20, kBig = 128 * kMiB;
  splitter_.reset();
  log_.reset();
  disk_path_ = dir_ + "/big.img";
  const std::string pattern = Block(42);
  {
    auto f = std::move(Env::Posix()->OpenFile(disk_path_, OpenMode::kCreate)).value();
    ASSERT_TRUE(f->Truncate(kBig).ok());
    for (uint64_t off = 32 * kMiB; off < 64 * kMiB; off += kBs) {  // data in the first window
      ASSERT_TRUE(f->WriteAt(off, pattern).ok());
    }
  }
  journal::CreateParams lp;
  lp.size = kBig;
  lp.pending_log = true;
  log_ = std::move(Replica::Create(dir_ + "/big-log", lp)).value();
  splitter_ = std::move(capture::Splitter::Open(Env::Posix(), disk_path_, log_)).value();
  // The target's seed equals the disk; then the disk loses its last 32 MiB (whatever an
  // operator did), past which the source reads nothing.
  const std::string seed = dir_ + "/big-old.img";
  std::filesystem::copy_file(disk_path_, seed);
  ASSERT_EQ(::truncate(disk_path_.c_str(), 96 * kMiB), 0);

  Target target(dir_ + "/target");
  auto replica = PrepareSeeded(target, seed);
  ASSERT_NE(replica, nullptr);
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  sender_->Start();
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "after");
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  auto view = replica->OpenView(*m);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  std::string got(kMiB, '?');
  const std::string zeros(kBs, '\0');
  for (uint64_t off = 32 * kMiB; off < kBig; off += kMiB) {
    ASSERT_TRUE((*view)->Read(off, kMiB, got.data()).ok());
    const bool want_data = off < 64 * kMiB;
    for (uint64_t b = 0; b < kMiB; b += kBs) {
      ASSERT_TRUE(std::string_view(got).substr(b, kBs) == (want_data ? pattern : zeros))
          << "the target's volume at " << off + b << " holds "
          << (want_data ? "other bytes than the source's" : "bytes, not zeros");
    }
  }
  // Nothing differed but what lies past the disk's end, and that is zeros at both ends.
  EXPECT_EQ(target.receiver().Inbound().at(0).sync_bytes, 0u);
}

TEST_F(LinkTest, WrongHistoryIsRefusedAndNothingApplied) {
  LogCapture log;
  Target target(dir_ + "/target");
  // The target already holds this volume under another history.
  journal::CreateParams p;
  p.size = kSize;
  p.volume_id = log_->volume_id();
  p.history_id = log_->history_id() ^ 0xff;
  {
    auto other = Replica::Create(dir_ + "/target/" + journal::IdToHex(log_->volume_id()), p);
    ASSERT_TRUE(other.ok());
    ASSERT_TRUE((*other)->Append(journal::Record::Marker(MarkerKind::kCrashConsistent)).ok());
  }
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  sender_->Start();
  ASSERT_TRUE(Eventually([&] { return sender_->status().state == "blocked"; }));
  EXPECT_NE(sender_->status().last_error.find("history_mismatch"), std::string::npos)
      << sender_->status().last_error;
  auto replica = TargetReplica(target);
  EXPECT_EQ(replica->last_seq(), 1u);
  // The target's operator reads why, with the source named.
  EXPECT_TRUE(Eventually([&] { return log.Has({"link from 127.0.0.1:", "refused", "history"}); }))
      << log.Lines();
}

// Removing a replica while its source is connected: the connection ends, the files go, and
// when the source reconnects the target makes a fresh replica that a new initial sync fills.
TEST_F(LinkTest, RemovedReplicaIsMadeAfreshWhenTheSourceReconnects) {
  Target target(dir_ + "/target");
  sender_ = std::make_unique<LinkSender>(Config(target.port()), log_);
  sender_->Start();
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "one");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  auto old = TargetReplica(target);
  const std::string id = journal::IdToHex(log_->volume_id());
  ASSERT_TRUE(target.store().Remove(id).ok());
  target.receiver().Close(id);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/target/.deleted-" + id));
  EXPECT_EQ(target.store().Remove(id).code(), Code::kNotFound);
  std::shared_ptr<Replica> fresh;
  ASSERT_TRUE(Eventually([&] {
    auto f = target.store().Find("disk0");
    if (f.ok()) fresh = *f;
    return f.ok() && *f != old;
  }));
  ASSERT_TRUE(splitter_->Write(0, Block(77), false).ok());
  ASSERT_TRUE(Eventually([&] { return !fresh->GetInitialSync().running; }));
  auto m2 = splitter_->Mark(MarkerKind::kCrashConsistent, "two");
  ASSERT_TRUE(m2.ok());
  ASSERT_TRUE(sender_->WaitAcked(*m2, 30'000));
  ExpectSame(*fresh, *m2);
}

// A hand-driven source: HELLO, then frames of our choosing.
class RawSource {
 public:
  RawSource(uint16_t port, const Hello& hello) {
    stream_ = std::move(ConnectTcp("127.0.0.1", port)).value();
    reader_ = std::make_unique<FrameReader>(stream_.get());
    writer_ = std::make_unique<FrameWriter>(stream_.get(), Codec::kNone);
    EXPECT_TRUE(writer_->Write(MessageType::kHello, EncodeHello(hello)).ok());
    auto f = reader_->Read();
    EXPECT_TRUE(f.ok() && f->type == MessageType::kWelcome);
    welcome_ = std::move(DecodeWelcome(f->payload)).value();
  }
  Stream* stream() { return stream_.get(); }
  FrameWriter& writer() { return *writer_; }
  FrameReader& reader() { return *reader_; }
  const Welcome& welcome() const { return welcome_; }

 private:
  std::unique_ptr<Socket> stream_;
  std::unique_ptr<FrameReader> reader_;
  std::unique_ptr<FrameWriter> writer_;
  Welcome welcome_;
};

class CorruptFrameTest : public LinkTest {
 protected:
  Hello MakeHello() {
    Hello h;
    h.volume = "disk0";
    h.volume_id = log_->volume_id();
    h.history_id = log_->history_id();
    h.volume_size = kSize;
    h.block_size = kBs;
    h.source_first_seq = 1;
    h.source_last_seq = 100;
    h.codecs = {"none"};
    return h;
  }
  std::string TwoRecords(uint64_t first_seq) {
    std::vector<journal::StoredRecord> rs(2);
    rs[0].record = journal::Record::Write(0, Block(1));
    rs[0].record.seq = first_seq;
    rs[0].checksum = Checksum64(rs[0].record.data);
    rs[1].record = journal::Record::Write(kBs, Block(2));
    rs[1].record.seq = first_seq + 1;
    rs[1].checksum = Checksum64(rs[1].record.data);
    std::string payload;
    EncodeRecords(rs, &payload);
    return payload;
  }
  // The next frame the target sends is REFUSE corrupt_frame.
  void ExpectRefused(RawSource& src) {
    auto f = src.reader().Read();
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_EQ(f->type, MessageType::kRefuse);
    EXPECT_EQ(DecodeRefuse(f->payload)->code, "corrupt_frame");
  }
  // The target's status of the link, and its log, say why it reset the connection.
  void ExpectReported(Target& target, std::string_view what) {
    std::string last_error;
    EXPECT_TRUE(Eventually([&] {
      auto in = target.receiver().Inbound();
      last_error = in.empty() ? "" : in[0].last_error;
      return !in.empty() && !in[0].connected && !last_error.empty();
    })) << "no last_error";
    EXPECT_NE(last_error.find("DataLoss: corrupt frame"), std::string::npos) << last_error;
    EXPECT_NE(last_error.find(what), std::string::npos) << last_error;
    EXPECT_TRUE(logs_.Has({"link disk0 from", what, "connection reset, nothing of that frame applied"}))
        << logs_.Lines();
  }
  LogCapture logs_;  // before the Target, which each test makes after it
};

TEST_F(CorruptFrameTest, DamagedFrameResetsTheLinkAndAppliesNothing) {
  Target target(dir_ + "/target");
  RawSource src(target.port(), MakeHello());
  auto replica = TargetReplica(target);
  const uint64_t first = src.welcome().resume_from;
  // A frame whose payload was damaged on the wire (frame checksum no longer matches).
  std::string payload = TwoRecords(first);
  FrameHeader h;
  h.type = MessageType::kRecords;
  h.stored_length = h.raw_length = static_cast<uint32_t>(payload.size());
  h.payload_checksum = Checksum64(payload);
  std::string header = EncodeFrameHeader(h);
  payload[payload.size() - 5] ^= 1;
  ASSERT_TRUE(src.stream()->WriteAll(header + payload).ok());
  ExpectRefused(src);
  EXPECT_EQ(replica->last_seq(), first - 1);
  ExpectReported(target, "RECORDS payload checksum mismatch");
}

// The connection closes in the middle of a frame: the part that came is not applied, and
// the next connection resumes where the last whole frame left off.
TEST_F(CorruptFrameTest, FrameCutShortByTheConnectionAppliesNothing) {
  Target target(dir_ + "/target");
  std::shared_ptr<Replica> replica;
  uint64_t first;
  {
    RawSource src(target.port(), MakeHello());
    replica = TargetReplica(target);
    first = src.welcome().resume_from;
    const std::string payload = TwoRecords(first);
    FrameHeader h;
    h.type = MessageType::kRecords;
    h.stored_length = h.raw_length = static_cast<uint32_t>(payload.size());
    h.payload_checksum = Checksum64(payload);
    // The header and all but the last 100 bytes, then the connection ends.
    ASSERT_TRUE(src.stream()->WriteAll(EncodeFrameHeader(h) + payload.substr(0, payload.size() - 100)).ok());
    src.stream()->Shutdown();
    ExpectReported(target, "connection closed inside a frame");
  }
  EXPECT_EQ(replica->last_seq(), first - 1);
  RawSource again(target.port(), MakeHello());
  EXPECT_EQ(again.welcome().resume_from, first);
  ASSERT_TRUE(again.writer().Write(MessageType::kRecords, TwoRecords(first)).ok());
  ASSERT_TRUE(Eventually([&] { return replica->last_seq() == first + 1; }));
}

TEST_F(CorruptFrameTest, RecordDamagedBeforeFramingIsCaughtByItsOwnChecksum) {
  Target target(dir_ + "/target");
  RawSource src(target.port(), MakeHello());
  auto replica = TargetReplica(target);
  const uint64_t first = src.welcome().resume_from;
  // The second record's data changed after its checksum was taken (memory, disk, a bug):
  // the frame checksum is good, the record's is not. The first record is not applied either.
  std::string payload = TwoRecords(first);
  payload[payload.size() - 1] ^= 0x40;
  ASSERT_TRUE(src.writer().Write(MessageType::kRecords, payload).ok());
  ExpectRefused(src);
  EXPECT_EQ(replica->last_seq(), first - 1);
  ExpectReported(target, "checksum");
}

// The target offers SYNC_DATA whose extents only the frame's checksum covers: it writes them
// from a frame stored uncompressed, and refuses them, writing nothing, from a compressed one.
TEST_F(CorruptFrameTest, SyncDataCheckedByTheFrameAloneOnlyFromAnUncompressedFrame) {
  Target target(dir_ + "/target");
  const std::string a = Block(5), b(kBs, 'b');  // b compresses: zstd keeps its frame small
  auto sync_data = [](uint64_t off, const std::string& data) {
    SyncData d;
    d.scanned_to = off + data.size();
    d.total_bytes = kSize;
    d.extents = {SyncExtent{off, data}};
    std::string headers, payload;
    std::vector<std::string_view> pieces;
    EncodeSyncDataPieces(d, &headers, &pieces, SyncChecksums::kFrame);
    for (std::string_view p : pieces) payload.append(p);
    return payload;
  };
  RawSource src(target.port(), MakeHello());
  auto replica = TargetReplica(target);
  EXPECT_TRUE(src.welcome().sync_frame_checksums);
  std::string before(kBs, '\0'), got(kBs, '\0');
  ASSERT_TRUE(replica->ReadBase(kBs, kBs, before.data()).ok());
  ASSERT_TRUE(src.writer().Write(MessageType::kSyncData, sync_data(0, a)).ok());
  ASSERT_TRUE(src.writer().Write(MessageType::kPing, "").ok());  // answered once it is written
  auto pong = src.reader().Read();
  ASSERT_TRUE(pong.ok()) << pong.status().ToString();
  EXPECT_EQ(pong->type, MessageType::kPing);
  ASSERT_TRUE(replica->ReadBase(0, kBs, got.data()).ok());
  EXPECT_EQ(got, a);

  FrameWriter zstd(src.stream(), Codec::kZstd);
  auto sent = zstd.Write(MessageType::kSyncData, sync_data(kBs, b));
  ASSERT_TRUE(sent.ok());
  ASSERT_LT(*sent, kBs) << "the frame was not compressed";
  ExpectRefused(src);
  ASSERT_TRUE(replica->ReadBase(kBs, kBs, got.data()).ok());
  EXPECT_EQ(got, before);
  ExpectReported(target, "without a checksum in a compressed frame");
}

// DIGEST_REQUESTs about the base: ranges in any order, answered in the order asked, and
// each answer shows the SYNC_DATA written before it.
TEST_F(CorruptFrameTest, DigestsOfTheBaseFollowItsWrites) {
  Target target(dir_ + "/target");
  RawSource src(target.port(), MakeHello());
  auto replica = TargetReplica(target);
  auto write = [&](uint64_t off, const std::string& data) {
    SyncData d;
    d.scanned_to = off + data.size();
    d.total_bytes = kSize;
    d.extents = {SyncExtent{off, data}};
    std::string payload;
    EncodeSyncData(d, &payload);
    ASSERT_TRUE(src.writer().Write(MessageType::kSyncData, payload).ok());
  };
  auto digests = [&](std::vector<DigestRange> ranges) {
    std::string q;
    EncodeDigestRequest(DigestRequest{kBs, ranges}, &q);
    EXPECT_TRUE(src.writer().Write(MessageType::kDigestRequest, q).ok());
    auto f = src.reader().Read();
    EXPECT_TRUE(f.ok() && f->type == MessageType::kDigests);
    auto d = f.ok() ? DecodeDigests(f->payload) : Result<Digests>(Aborted("no answer"));
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    return d.ok() ? d->digests : std::vector<Digest128>{};
  };
  const std::string a = Block(1), b = Block(2), zeros(kBs, '\0');
  write(kBs, a);
  // Later range first, then one the first request did not span.
  EXPECT_EQ(digests({{kBs, kBs}, {0, kBs}}),
            (std::vector<Digest128>{DigestOf(a), DigestOf(zeros)}));
  EXPECT_EQ(digests({{0, 2 * kBs}}), (std::vector<Digest128>{DigestOf(zeros), DigestOf(a)}));
  EXPECT_EQ(digests({{8 * kBs, kBs}, {0, kBs}}),
            (std::vector<Digest128>{DigestOf(zeros), DigestOf(zeros)}));
  write(kBs, b);
  EXPECT_EQ(digests({{kBs, kBs}}), (std::vector<Digest128>{DigestOf(b)}));
}

TEST_F(CorruptFrameTest, GarbageAndGapsAreRefused) {
  Target target(dir_ + "/target");
  {
    RawSource src(target.port(), MakeHello());
    // A batch that skips a seq.
    ASSERT_TRUE(src.writer().Write(MessageType::kRecords, TwoRecords(src.welcome().resume_from + 1)).ok());
    ExpectRefused(src);
  }
  {
    RawSource src(target.port(), MakeHello());
    ASSERT_TRUE(src.stream()->WriteAll(std::string(64, 'x')).ok());
    ExpectRefused(src);
    ExpectReported(target, "bad magic");
  }
  EXPECT_EQ(TargetReplica(target)->last_seq(), 100u);
}

TEST_F(LinkTest, ReplicatesOverMutualTls) {
  auto pki = test::TestPki::Make();
  ASSERT_TRUE(pki);
  auto server = TlsContext::Server(pki->Server());
  auto client = TlsContext::Client(pki->Client());
  ASSERT_TRUE(server.ok() && client.ok());
  Target target(dir_ + "/target", *server);
  SenderConfig c = Config(target.port());
  c.connect = [port = target.port(), ctx = *client]() -> Result<std::unique_ptr<Stream>> {
    ASSIGN_OR_RETURN(auto s, ConnectTcp("127.0.0.1", port));
    ASSIGN_OR_RETURN(auto t, TlsStream::Connect(ctx, std::move(s)));
    return std::unique_ptr<Stream>(std::move(t));
  };
  sender_ = std::make_unique<LinkSender>(c, log_);
  sender_->Start();
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(splitter_->Write(i * 2 * kBs, Block(i), false).ok());
  auto m = splitter_->Mark(MarkerKind::kCrashConsistent, "tls");
  ASSERT_TRUE(sender_->WaitAcked(*m, 30'000));
  auto replica = TargetReplica(target);
  ASSERT_TRUE(Eventually([&] { return !replica->GetInitialSync().running; }));
  auto m2 = splitter_->Mark(MarkerKind::kCrashConsistent, "tls2");
  ASSERT_TRUE(sender_->WaitAcked(*m2, 30'000));
  ExpectSame(*replica, *m2);
}

}  // namespace
}  // namespace ferry::link
