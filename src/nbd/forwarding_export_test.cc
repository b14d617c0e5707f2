// ForwardingExport: calls reach the current backend; Replace under Hold switches every later
// call, and no call runs while the export is held.
#include "nbd/forwarding_export.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "nbd/memory_export.h"

namespace ferry::nbd {
namespace {

TEST(ForwardingExportTest, ReplaceSwitchesLaterCallsToTheNewBackend) {
  auto a = std::make_shared<MemoryExport>(std::string(8192, 'a'), false, "overlay");
  auto b = std::make_shared<MemoryExport>(std::string(8192, 'b'), false, "splitter");
  ForwardingExport f(a);
  EXPECT_EQ(f.size(), 8192u);
  EXPECT_EQ(f.description(), "overlay");
  ASSERT_TRUE(f.Write(0, "xy", false).ok());
  {
    auto hold = f.Hold();
    ASSERT_TRUE(f.Replace(b, hold).ok());
  }
  ASSERT_TRUE(f.Write(10, "zz", false).ok());
  char buf[2];
  ASSERT_TRUE(f.Read(0, 2, buf).ok());
  EXPECT_EQ(std::string(buf, 2), "bb");
  EXPECT_EQ(a->contents().substr(0, 2), "xy");
  EXPECT_EQ(b->contents().substr(10, 2), "zz");
  EXPECT_EQ(a->contents().substr(10, 2), "aa");
  EXPECT_EQ(f.description(), "overlay");  // properties are fixed at creation
}

TEST(ForwardingExportTest, ReplaceRefusesAnotherSizeOrAStaleHold) {
  auto a = std::make_shared<MemoryExport>(std::string(8192, 'a'), false);
  ForwardingExport f(a);
  auto hold = f.Hold();
  Status s = f.Replace(std::make_shared<MemoryExport>(std::string(4096, 'b'), false), hold);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  s = f.Replace(std::make_shared<MemoryExport>(std::string(8192, 'b'), true), hold);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  hold.unlock();
  s = f.Replace(std::make_shared<MemoryExport>(std::string(8192, 'b'), false), hold);
  EXPECT_EQ(s.code(), Code::kInternal);
}

TEST(ForwardingExportTest, CallsWaitWhileHeld) {
  auto a = std::make_shared<MemoryExport>(std::string(4096, 'a'), false);
  auto b = std::make_shared<MemoryExport>(std::string(4096, 'b'), false);
  ForwardingExport f(a);
  auto hold = f.Hold();
  std::atomic<bool> written{false};
  std::thread writer([&] {
    EXPECT_TRUE(f.Write(0, "w", false).ok());
    written = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(written.load());
  ASSERT_TRUE(f.Replace(b, hold).ok());
  hold.unlock();
  writer.join();
  EXPECT_TRUE(written.load());
  EXPECT_EQ(b->contents()[0], 'w');  // the waiting write ran on the new backend
  EXPECT_EQ(a->contents()[0], 'a');
}

TEST(ForwardingExportTest, BusyCallsDoNotStarveAHold) {
  auto a = std::make_shared<MemoryExport>(std::string(4096, 'a'), false);
  ForwardingExport f(a);
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      char c;
      while (!stop.load()) EXPECT_TRUE(f.Read(0, 1, &c).ok());
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (int i = 0; i < 50; ++i) {
    auto hold = f.Hold();
    ASSERT_TRUE(f.Replace(a, hold).ok());
  }
  stop = true;
  for (auto& t : readers) t.join();
}

// Batches of writes reach the backend as batches (a splitter behind a promoted volume's
// export logs each batch in one append), not one Write each.
class BatchRecordingExport final : public Export {
 public:
  uint64_t size() const override { return 8192; }
  bool read_only() const override { return false; }
  Status Read(uint64_t, size_t, void*) override { return Status::Ok(); }
  Status Write(uint64_t, std::string_view, bool) override {
    ++single_writes;
    return Status::Ok();
  }
  void WriteMany(std::span<const WriteOp> ops, std::span<Status> results) override {
    batches.push_back(ops.size());
    for (Status& r : results) r = Status::Ok();
  }
  Status WriteZeroes(uint64_t, uint64_t, bool, bool) override { return Status::Ok(); }
  Status Trim(uint64_t, uint64_t, bool) override { return Status::Ok(); }
  Status Flush() override { return Status::Ok(); }
  std::vector<size_t> batches;
  int single_writes = 0;
};

TEST(ForwardingExportTest, WriteManyReachesTheBackendAsOneBatch) {
  auto backend = std::make_shared<BatchRecordingExport>();
  ForwardingExport f(backend);
  const std::vector<WriteOp> ops = {{0, "a", false}, {4096, "b", true}, {100, "c", false}};
  std::vector<Status> results(ops.size(), Internal("unanswered"));
  f.WriteMany(ops, results);
  EXPECT_EQ(backend->batches, std::vector<size_t>{3});
  EXPECT_EQ(backend->single_writes, 0);
  for (const Status& r : results) EXPECT_TRUE(r.ok()) << r.ToString();
}

TEST(ForwardingExportTest, UnavailableExportFailsEveryCall) {
  UnavailableExport u(4096, "replica db0 was deleted");
  char c;
  EXPECT_EQ(u.Read(0, 1, &c).code(), Code::kUnavailable);
  EXPECT_EQ(u.Write(0, "x", false).code(), Code::kUnavailable);
  EXPECT_EQ(u.Flush().message(), "replica db0 was deleted");
}

}  // namespace
}  // namespace ferry::nbd
