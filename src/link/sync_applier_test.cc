#include "link/sync_applier.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace ferry::link {
namespace {

using namespace std::chrono_literals;

TEST(SyncApplier, RunsJobsInOrderOnAnotherThread) {
  SyncApplier a;
  std::vector<int> order;
  std::thread::id ran_on;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(a.Submit([&, i] {
      order.push_back(i);
      ran_on = std::this_thread::get_id();
      return Status::Ok();
    }).ok());
  }
  ASSERT_TRUE(a.Wait().ok());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

// Submit returns at once while the job runs, and the next Submit (or Wait) waits for it: at
// most one job is in flight.
TEST(SyncApplier, OneJobAtATime) {
  SyncApplier a;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> running{0}, most{0};
  auto job = [&] {
    most = std::max(most.load(), ++running);
    released.wait();
    --running;
    return Status::Ok();
  };
  ASSERT_TRUE(a.Submit(job).ok());  // returns while the job waits for release
  auto second = std::async(std::launch::async, [&] { return a.Submit(job); });
  EXPECT_EQ(second.wait_for(200ms), std::future_status::timeout) << "did not wait";
  release.set_value();
  ASSERT_TRUE(second.get().ok());
  ASSERT_TRUE(a.Wait().ok());
  EXPECT_EQ(most.load(), 1);
}

// The first failure is sticky: Wait and Submit return it, and later jobs do not run.
TEST(SyncApplier, FirstFailureStopsLaterJobs) {
  SyncApplier a;
  int ran = 0;
  ASSERT_TRUE(a.Submit([&] {
    ++ran;
    return IoError("base write failed: no space left");
  }).ok());
  Status w = a.Wait();
  EXPECT_EQ(w.code(), Code::kIoError);
  EXPECT_EQ(w.message(), "base write failed: no space left");
  Status s = a.Submit([&] {
    ++ran;
    return Status::Ok();
  });
  EXPECT_EQ(s.code(), Code::kIoError);
  EXPECT_EQ(a.Wait().message(), "base write failed: no space left");
  EXPECT_EQ(ran, 1);
}

// Destroying the applier waits for the job in flight (its captures live until then).
TEST(SyncApplier, DestructorWaitsForTheJobInFlight) {
  std::atomic<bool> finished{false};
  {
    SyncApplier a;
    ASSERT_TRUE(a.Submit([&] {
      std::this_thread::sleep_for(100ms);
      finished = true;
      return Status::Ok();
    }).ok());
  }
  EXPECT_TRUE(finished);
  SyncApplier never_used;  // no thread to end
}

}  // namespace
}  // namespace ferry::link
