// Group commit: many threads appending at once share writes and syncs, every record lands
// exactly once in one sequence, and each caller's batch stays contiguous and in order.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "env/sim_env.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

// An Env whose File::Sync takes a while, as a disk's fsync does; everything else is the
// wrapped Env's.
class SlowSyncEnv final : public Env {
 public:
  SlowSyncEnv(Env* base, std::chrono::microseconds delay) : base_(base), delay_(delay) {}

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    ASSIGN_OR_RETURN(auto f, base_->OpenFile(path, mode));
    return std::unique_ptr<File>(new SlowFile(std::move(f), delay_));
  }
  Status CreateDir(const std::string& p) override { return base_->CreateDir(p); }
  Result<std::vector<std::string>> ListDir(const std::string& p) override {
    return base_->ListDir(p);
  }
  Status RemoveFile(const std::string& p) override { return base_->RemoveFile(p); }
  Status RemoveDir(const std::string& p) override { return base_->RemoveDir(p); }
  Status Rename(const std::string& a, const std::string& b) override { return base_->Rename(a, b); }
  Status SyncDir(const std::string& p) override { return base_->SyncDir(p); }
  bool Exists(const std::string& p) override { return base_->Exists(p); }
  Result<SpaceInfo> GetSpace(const std::string& p) override { return base_->GetSpace(p); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& p) override {
    return base_->LockFile(p);
  }

 private:
  class SlowFile final : public File {
   public:
    SlowFile(std::unique_ptr<File> f, std::chrono::microseconds delay)
        : f_(std::move(f)), delay_(delay) {}
    Result<size_t> ReadAt(uint64_t o, size_t n, void* d) override { return f_->ReadAt(o, n, d); }
    Status WriteAt(uint64_t o, std::string_view d) override { return f_->WriteAt(o, d); }
    Status WriteAtV(uint64_t o, std::span<const std::string_view> p) override {
      return f_->WriteAtV(o, p);
    }
    Status Sync() override {
      std::this_thread::sleep_for(delay_);
      return f_->Sync();
    }
    Result<uint64_t> Size() override { return f_->Size(); }
    Status Truncate(uint64_t s) override { return f_->Truncate(s); }
    Status PunchHole(uint64_t o, uint64_t n) override { return f_->PunchHole(o, n); }
    Result<uint64_t> NextData(uint64_t o) override { return f_->NextData(o); }

   private:
    std::unique_ptr<File> f_;
    std::chrono::microseconds delay_;
  };
  Env* base_;
  std::chrono::microseconds delay_;
};

constexpr uint32_t kBs = 4096;
constexpr int kThreads = 16;
constexpr int kAppendsPerThread = 40;

// What one Append call did.
struct Appended {
  int thread;
  int index;
  uint64_t last_seq;
  bool with_marker;  // a write followed by a marker in the same call
};

uint64_t BlockOf(int thread, int index) { return static_cast<uint64_t>(thread) * 16 + index % 16; }

std::string ContentOf(int thread, int index) {
  std::string s(kBs, static_cast<char>('a' + thread));
  std::memcpy(s.data(), &index, sizeof index);
  return s;
}

TEST(GroupCommitTest, ConcurrentAppendsShareSyncsAndLandOnceInOrder) {
  SimEnv sim;
  SlowSyncEnv env(&sim, std::chrono::microseconds(2000));
  ManualClock clock;
  ReplicaOptions o;
  o.env = &env;
  o.clock = &clock;
  o.segment_target_bytes = 256 * 1024;
  CreateParams p;
  p.size = uint64_t{kThreads} * 16 * kBs;
  auto created = Replica::Create("/g", p, o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::shared_ptr<Replica> r = std::move(created).value();
  const ReplicaStats before = r->Stats();

  std::vector<std::vector<Appended>> done(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kAppendsPerThread; ++i) {
        std::vector<Record> batch = {Record::Write(BlockOf(t, i) * kBs, ContentOf(t, i))};
        const bool with_marker = i % 5 == 4;
        if (with_marker) {
          batch.push_back(Record::Marker(MarkerKind::kCrashConsistent,
                                         std::to_string(t) + "/" + std::to_string(i)));
        }
        auto res = r->Append(std::span<Record>(batch));
        ASSERT_TRUE(res.ok()) << res.status().ToString();
        done[t].push_back({t, i, *res, with_marker});
      }
    });
  }
  for (std::thread& th : threads) th.join();
  ASSERT_FALSE(::testing::Test::HasFailure());

  // Every record exactly once, in one gapless sequence; each call's records contiguous; each
  // thread's calls in the order it made them.
  std::vector<const Appended*> by_seq;
  uint64_t total = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (size_t i = 0; i < done[t].size(); ++i) {
      const Appended& a = done[t][i];
      total += a.with_marker ? 2 : 1;
      if (i > 0) {
        EXPECT_GT(a.last_seq, done[t][i - 1].last_seq) << "thread " << t << " call " << i;
      }
    }
  }
  std::vector<int> owner(total + 1, -1);
  for (int t = 0; t < kThreads; ++t) {
    for (const Appended& a : done[t]) {
      const uint64_t first = a.last_seq - (a.with_marker ? 1 : 0);
      ASSERT_GE(first, 1u);
      ASSERT_LE(a.last_seq, total);
      for (uint64_t s = first; s <= a.last_seq; ++s) {
        EXPECT_EQ(owner[s], -1) << "seq " << s << " given twice";
        owner[s] = t;
      }
    }
  }
  for (uint64_t s = 1; s <= total; ++s)
    EXPECT_NE(owner[s], -1) << "seq " << s << " given to nobody";

  const ReplicaStats st = r->Stats();
  EXPECT_EQ(st.last_seq, total);
  EXPECT_EQ(st.appends - before.appends, uint64_t{kThreads} * kAppendsPerThread);
  EXPECT_LT(st.syncs - before.syncs, st.appends - before.appends) << "no two appends shared a sync";
  std::printf("[ group    ] %llu appends, %llu syncs\n",
              static_cast<unsigned long long>(st.appends - before.appends),
              static_cast<unsigned long long>(st.syncs - before.syncs));

  // Durable and readable, each write at its own point, after a power loss too.
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "before the crash" : "after the crash");
    EXPECT_EQ(r->Stats().last_seq, total);
    for (int t = 0; t < kThreads; ++t) {
      for (const Appended& a : done[t]) {
        const uint64_t write_seq = a.last_seq - (a.with_marker ? 1 : 0);
        auto v = r->OpenView(write_seq);
        ASSERT_TRUE(v.ok()) << v.status().ToString();
        std::string got(kBs, '?');
        ASSERT_TRUE((*v)->Read(BlockOf(a.thread, a.index) * kBs, kBs, got.data()).ok());
        ASSERT_TRUE(got == ContentOf(a.thread, a.index))
            << "seq " << write_seq << " does not read back";
        if (a.with_marker) {
          PointSpec spec;
          spec.kind = PointSpec::Kind::kSeq;
          spec.seq = a.last_seq;
          auto point = r->ResolvePoint(spec);
          ASSERT_TRUE(point.ok()) << point.status().ToString();
          EXPECT_TRUE(point->is_marker);
          EXPECT_EQ(point->marker.label, std::to_string(a.thread) + "/" + std::to_string(a.index));
        }
      }
    }
    if (pass == 0) {
      sim.CrashDropAll();
      r.reset();
      auto reopened = Replica::Open("/g", o);
      ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
      r = std::move(reopened).value();
    }
  }
}

}  // namespace
}  // namespace ferry::journal
