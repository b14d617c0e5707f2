// Throttle: exact delays on a ManualClock (no test here depends on how fast the machine
// is), plus one real-time test that Cancel wakes a blocked Acquire.
#include "link/throttle.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace ferry {
namespace {

constexpr uint64_t kMBps = 1'000'000;
constexpr uint64_t kMs = 1'000'000;  // nanoseconds

TEST(Throttle, UnlimitedNeverWaits) {
  ManualClock clock;
  Throttle t(&clock, 0);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(t.Acquire(1ull << 30).ok());
  EXPECT_EQ(t.DelayNanosFor(1ull << 40), 0u);
}

TEST(Throttle, BurstIsATenthOfASecondButAtLeast256KiB) {
  ManualClock clock;
  EXPECT_EQ(Throttle(&clock, kMBps).burst(), 256u * 1024);
  EXPECT_EQ(Throttle(&clock, 100 * kMBps).burst(), 10 * kMBps);
}

TEST(Throttle, AfterTheBurstIsSpentEachByteCostsItsShareOfASecond) {
  ManualClock clock;
  Throttle t(&clock, kMBps);
  EXPECT_EQ(t.DelayNanosFor(t.burst()), 0u);
  ASSERT_TRUE(t.Acquire(t.burst()).ok());
  EXPECT_EQ(t.DelayNanosFor(100'000), 100 * kMs);
  EXPECT_EQ(t.DelayNanosFor(1), 1'000u);
}

TEST(Throttle, AdvancingTheClockRefillsUpToTheBurst) {
  ManualClock clock;
  Throttle t(&clock, kMBps);
  ASSERT_TRUE(t.Acquire(t.burst()).ok());
  clock.Advance(40 * kMs);  // earns 40 000 bytes
  EXPECT_EQ(t.DelayNanosFor(100'000), 60 * kMs);
  EXPECT_EQ(t.DelayNanosFor(40'000), 0u);
  clock.Advance(3600 * kNanosPerSecond);  // an idle hour refills only the burst
  ASSERT_TRUE(t.Acquire(t.burst()).ok());
  EXPECT_EQ(t.DelayNanosFor(100'000), 100 * kMs);
}

TEST(Throttle, RequestLargerThanTheBurstGoesIntoDebt) {
  ManualClock clock;
  Throttle t(&clock, kMBps);
  // A full bucket lets a 10 MB frame through at once rather than never.
  ASSERT_TRUE(t.Acquire(10 * kMBps).ok());
  // The debt is 10 MB - 256 KiB; the next byte waits for it to be paid off.
  EXPECT_EQ(t.DelayNanosFor(1), (10 * kMBps - t.burst() + 1) * 1'000);
  // Larger than the burst again: it needs a full bucket, not its whole size.
  EXPECT_EQ(t.DelayNanosFor(10 * kMBps), 10 * kNanosPerSecond);
}

TEST(Throttle, SetRateChangesTheDelay) {
  ManualClock clock;
  Throttle t(&clock, kMBps);
  ASSERT_TRUE(t.Acquire(t.burst()).ok());
  t.SetRate(2 * kMBps);
  EXPECT_EQ(t.DelayNanosFor(100'000), 50 * kMs);
  t.SetRate(0);
  EXPECT_EQ(t.DelayNanosFor(100'000), 0u);
  t.SetRate(kMBps);  // back from unlimited: starts with a full bucket
  EXPECT_EQ(t.DelayNanosFor(t.burst()), 0u);
}

TEST(Throttle, SetRateDropsTokensAboveTheNewBurstButKeepsDebt) {
  ManualClock clock;
  Throttle t(&clock, 100 * kMBps);  // burst 10 MB, full
  t.SetRate(kMBps);                 // burst 256 KiB: the bucket holds 256 KiB now
  EXPECT_EQ(t.DelayNanosFor(t.burst()), 0u);
  ASSERT_TRUE(t.Acquire(t.burst() + 500'000).ok());  // 500 000 bytes of debt
  t.SetRate(10 * kMBps);
  EXPECT_EQ(t.DelayNanosFor(500'000), 100 * kMs);  // 1 000 000 bytes at 10 MB/s
}

TEST(Throttle, ParentAndChildTakeTheStricter) {
  ManualClock clock;
  Throttle node(&clock, 4 * kMBps);  // burst 400 000
  Throttle link_a(&clock, kMBps, &node);
  Throttle link_b(&clock, 8 * kMBps, &node);

  // Spend link_a's 256 KiB burst: both levels pay.
  ASSERT_TRUE(link_a.Acquire(link_a.burst()).ok());
  EXPECT_EQ(link_a.DelayNanosFor(100'000), 100 * kMs);  // the link is stricter
  // link_b's own bucket is full; the node has 400 000 - 262 144 left.
  EXPECT_EQ(link_b.DelayNanosFor(400'000 - 262'144), 0u);
  EXPECT_EQ(link_b.DelayNanosFor(400'000 - 262'144 + 4), 1'000u);  // 4 bytes at 4 MB/s
  // Drain the node through link_b: now the node is the stricter level for link_b.
  ASSERT_TRUE(link_b.Acquire(400'000 - 262'144).ok());
  EXPECT_EQ(link_b.DelayNanosFor(400'000), 100 * kMs);
  EXPECT_EQ(node.DelayNanosFor(400'000), 100 * kMs);
  // For link_a both are empty: its own 1 MB/s is the stricter.
  EXPECT_EQ(link_a.DelayNanosFor(100'000), 100 * kMs);
  EXPECT_EQ(link_a.DelayNanosFor(4), 4'000u);

  node.SetRate(kMBps / 2);  // now the node is the stricter for both
  EXPECT_EQ(link_a.DelayNanosFor(100'000), 200 * kMs);
}

TEST(Throttle, UnlimitedChildUnderALimitedParent) {
  ManualClock clock;
  Throttle node(&clock, kMBps);
  Throttle link(&clock, 0, &node);
  ASSERT_TRUE(link.Acquire(node.burst()).ok());
  EXPECT_EQ(link.DelayNanosFor(100'000), 100 * kMs);
}

TEST(Throttle, CancelledThrottleRefusesAtOnce) {
  ManualClock clock;
  Throttle node(&clock, kMBps);
  Throttle link(&clock, kMBps, &node);
  node.Cancel();
  EXPECT_EQ(link.Acquire(1).code(), Code::kAborted);
  EXPECT_EQ(node.Acquire(0).code(), Code::kAborted);
}

TEST(Throttle, CancelWakesABlockedAcquire) {
  Throttle t(SystemClock::Default(), 1);  // 1 byte per second
  ASSERT_TRUE(t.Acquire(t.burst()).ok());
  Status got;
  std::thread waiter([&] { got = t.Acquire(1'000); });  // would wait ~1000 s
  // Its reservation shows in the delay of the next byte once it is queued.
  while (t.DelayNanosFor(1) < 500 * static_cast<uint64_t>(kNanosPerSecond)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  t.Cancel();
  waiter.join();
  EXPECT_EQ(got.code(), Code::kAborted) << got.ToString();
  // The cancelled request gave its bytes back.
  EXPECT_LT(t.DelayNanosFor(1), 2 * static_cast<uint64_t>(kNanosPerSecond));
}

}  // namespace
}  // namespace ferry
