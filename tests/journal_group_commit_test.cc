// Group commit: many threads appending at once share writes and syncs, every record lands
// exactly once in one sequence, and each caller's batch stays contiguous and in order.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "env/forwarding_env.h"
#include "env/sim_env.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

// An Env whose File::Sync takes a while, as a disk's fsync does; everything else is the
// wrapped Env's. A test may also hold or fail syncs through on_sync.
class SlowSyncEnv final : public ForwardingEnv {
 public:
  SlowSyncEnv(Env* base, std::chrono::microseconds delay) : ForwardingEnv(base), delay_(delay) {}

  // Runs at the start of every File::Sync (set it before the syncs it should see); a status
  // other than ok fails that Sync, which then syncs nothing.
  std::function<Status()> on_sync;

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    ASSIGN_OR_RETURN(auto f, base_->OpenFile(path, mode));
    return std::unique_ptr<File>(new SlowFile(std::move(f), this));
  }

 private:
  class SlowFile final : public ForwardingFile {
   public:
    SlowFile(std::unique_ptr<File> f, SlowSyncEnv* env) : ForwardingFile(std::move(f)), env_(env) {}
    Status Sync() override {
      if (env_->on_sync) RETURN_IF_ERROR(env_->on_sync());
      std::this_thread::sleep_for(env_->delay_);
      return f_->Sync();
    }

   private:
    SlowSyncEnv* env_;
  };
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

// Holds the first File::Sync after Arm() until Release(), then gives it `result`; later syncs
// pass at once. Lets a test put a second batch's write and sync inside the first one's sync.
class SyncGate {
 public:
  void Arm(SlowSyncEnv* env, Status result) {
    result_ = std::move(result);
    env->on_sync = [this]() -> Status {
      std::unique_lock l(mu_);
      const int n = ++seen_;
      cv_.notify_all();
      if (n != 1) return Status::Ok();
      cv_.wait(l, [&] { return released_; });
      return result_;
    };
  }
  void WaitForSyncs(int n) {
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return seen_ >= n; });
  }
  int seen() {
    std::lock_guard l(mu_);
    return seen_;
  }
  void Release() {
    std::lock_guard l(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int seen_ = 0;
  bool released_ = false;
  Status result_;
};

// The page-cache path (direct_appends off): a batch is written under the lock and synced
// outside it, so two batches' syncs overlap.
class PipelinedCommitTest : public ::testing::Test {
 protected:
  explicit PipelinedCommitTest(bool direct = false) : env_(&sim_, std::chrono::microseconds(0)) {
    o_.env = &env_;
    o_.clock = &clock_;
    o_.direct_appends = direct;
    CreateParams p;
    p.size = 64 * kBs;
    auto created = Replica::Create("/p", p, o_);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    r_ = std::move(created).value();
    for (int i = 0; i < 3; ++i) {
      EXPECT_TRUE(r_->Append(Record::Write(uint64_t(i) * kBs, std::string(kBs, 'a' + i))).ok());
    }
  }
  // Two appends, x at block 10 and then y at block 11: the first one's sync is held until
  // `meanwhile` (run once the second append has started) returns, then ends with
  // `first_result`. Their results land in first_ and second_.
  void TwoAppends(Status first_result,
                  const std::function<void(SyncGate&, const std::atomic<bool>&)>& meanwhile) {
    SyncGate gate;
    gate.Arm(&env_, std::move(first_result));
    std::atomic<bool> second_returned{false};
    std::thread t1([&] { first_ = r_->Append(Record::Write(10 * kBs, std::string(kBs, 'x'))); });
    gate.WaitForSyncs(1);
    std::thread t2([&] {
      second_ = r_->Append(Record::Write(11 * kBs, std::string(kBs, 'y')));
      second_returned = true;
    });
    meanwhile(gate, second_returned);
    gate.Release();
    t1.join();
    t2.join();
    env_.on_sync = nullptr;
  }
  // The page-cache path: the second batch is written and its sync begins while the first
  // one's sync is held; it is not acknowledged before the first.
  void Overlap(Status first_sync) {
    TwoAppends(std::move(first_sync), [](SyncGate& gate, const std::atomic<bool>& second_returned) {
      gate.WaitForSyncs(2);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      EXPECT_FALSE(second_returned.load()) << "a batch was acknowledged before the one written before it";
    });
  }
  // Direct appends: while the first batch's durable write is held, the second must not be
  // written at all, since it rewrites the block the first ended in.
  void Serialised(Status first_write) {
    TwoAppends(std::move(first_write), [](SyncGate& gate, const std::atomic<bool>& second_returned) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      EXPECT_FALSE(second_returned.load()) << "a batch was acknowledged before the one before it";
      EXPECT_EQ(gate.seen(), 1) << "a batch was written while the one before it was still being written";
    });
  }
  // Both batches were acknowledged, in order, and are there after a reopen and a power loss.
  void ExpectBothLanded() {
    ASSERT_TRUE(first_.ok()) << first_.status().ToString();
    ASSERT_TRUE(second_.ok()) << second_.status().ToString();
    EXPECT_EQ(*first_, 4u);
    EXPECT_EQ(*second_, 5u);
    EXPECT_EQ(r_->synced_seq(), 5u);
    ReopenBothWays([&] {
      EXPECT_EQ(r_->Stats().last_seq, 5u);
      EXPECT_EQ(ReadAt(4, 10), std::string(kBs, 'x'));
      EXPECT_EQ(ReadAt(5, 11), std::string(kBs, 'y'));
    });
  }
  // Both batches failed; the replica refuses appends until it is reopened; neither batch
  // comes back after a reopen or a power loss; and the journal goes on from there.
  void ExpectBothFailedForGood() {
    ASSERT_FALSE(first_.ok());
    EXPECT_EQ(first_.status().code(), Code::kIoError) << first_.status().ToString();
    ASSERT_FALSE(second_.ok());
    EXPECT_EQ(second_.status().code(), Code::kIoError) << second_.status().ToString();
    EXPECT_EQ(r_->Stats().last_seq, 3u);
    auto later = r_->Append(Record::Write(0, std::string(kBs, 'z')));
    ASSERT_FALSE(later.ok());
    EXPECT_NE(later.status().message().find("reopen"), std::string_view::npos) << later.status().ToString();
    ReopenBothWays([&] {
      EXPECT_EQ(r_->Stats().last_seq, 3u);
      EXPECT_EQ(ReadAt(3, 2), std::string(kBs, 'c'));
      EXPECT_EQ(ReadAt(3, 11), std::string(kBs, '\0'));
    });
    ASSERT_FALSE(HasFatalFailure());
    auto next = r_->Append(Record::Write(11 * kBs, std::string(kBs, 'w')));
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    EXPECT_EQ(*next, 4u);
  }
  // Reopens the replica cleanly, then after a power loss, and runs check after each.
  void ReopenBothWays(const std::function<void()>& check) {
    for (bool crash : {false, true}) {
      SCOPED_TRACE(crash ? "after a power loss" : "after a clean reopen");
      if (crash) sim_.CrashDropAll();
      r_.reset();
      auto reopened = Replica::Open("/p", o_);
      ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
      r_ = std::move(reopened).value();
      check();
    }
  }
  std::string ReadAt(uint64_t seq, uint64_t block) {
    auto v = r_->OpenView(seq);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    if (!v.ok()) return "";
    std::string got(kBs, '?');
    EXPECT_TRUE((*v)->Read(block * kBs, kBs, got.data()).ok());
    return got;
  }

  SimEnv sim_;
  SlowSyncEnv env_;
  ManualClock clock_;
  ReplicaOptions o_;
  std::shared_ptr<Replica> r_;
  Result<uint64_t> first_ = Internal("not run"), second_ = Internal("not run");
};

TEST_F(PipelinedCommitTest, OverlappingCommitsAreAcknowledgedInWriteOrder) {
  Overlap(Status::Ok());
  ExpectBothLanded();
}

// The first batch's sync fails after the second batch was written behind it and synced. The
// second must fail too (acknowledging it would put a hole before it), and neither may come
// back on the next Open as records after damaged ones.
TEST_F(PipelinedCommitTest, AFailedSyncFailsTheBatchWrittenBehindIt) {
  Overlap(IoError("injected sync failure"));
  ExpectBothFailedForGood();
}

// Direct appends (the default): batches are written one at a time, each durable when its
// write returns; an append that arrives meanwhile waits for the next batch.
class DirectCommitTest : public PipelinedCommitTest {
 protected:
  DirectCommitTest() : PipelinedCommitTest(/*direct=*/true) {}
};

TEST_F(DirectCommitTest, BatchesAreWrittenOneAtATimeAndAcknowledgedInOrder) {
  Serialised(Status::Ok());
  ExpectBothLanded();
}

// The first batch's durable write fails: the append waiting behind it is never written and
// fails too, the replica refuses appends until reopened, and neither comes back.
TEST_F(DirectCommitTest, AFailedWriteFailsTheAppendBehindIt) {
  Serialised(IoError("injected write failure"));
  ExpectBothFailedForGood();
}

}  // namespace
}  // namespace ferry::journal
