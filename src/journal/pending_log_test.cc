// Pending logs: discarding acknowledged records while the splitter appends.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "journal/replica.h"

namespace ferry::journal {
namespace {

// Regression: DiscardThrough took the manifest lock before the write lock, the reverse of an
// append's order, and a trim racing an append deadlocked both (the source node hung).
TEST(PendingLogTest, TrimDuringAppendsDoesNotDeadlock) {
  const std::string dir = ::testing::TempDir() + "/ferry-pending-" + std::to_string(::getpid());
  std::filesystem::remove_all(dir);
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
      ASSERT_TRUE(log->Append(Record::Write((i % 4096) * 4096, std::string(4096, 'x')),
                              Durability::kWritten).ok());
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
  log.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace ferry::journal
