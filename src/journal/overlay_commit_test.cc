// Commit while the overlay is in use (docs/formats/journal.md, "Overlays"): the background
// fill is held part way by a gated Env, deterministically, while a user writes and reads
// through the overlay; the fill never overwrites a block the user wrote, and every read is
// right before and after the commit finishes.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "env/forwarding_env.h"
#include "env/page_cache_test_util.h"
#include "env/scratch_dir_test_util.h"
#include "env/sim_env.h"
#include "journal/index.h"
#include "journal/overlay.h"
#include "journal/replica.h"

namespace ferry::journal {
namespace {

constexpr uint32_t kBs = 4096;
constexpr uint64_t kChunk = uint64_t{kChunkBlocks} * kBs;  // the fill's unit
constexpr uint64_t kChunks = 8;

// Holds, once armed, the first write to a data.img at or past an offset made by any thread
// but the one that armed it (the commit's fill, not the test's own writes), until Open.
class GatedEnv : public ForwardingEnv {
 public:
  using ForwardingEnv::ForwardingEnv;

  void Arm(uint64_t offset) {
    std::lock_guard l(mu_);
    armed_ = true;
    offset_ = offset;
    owner_ = std::this_thread::get_id();
  }
  // Whether a write is held; waits for one up to a generous bound.
  bool WaitUntilHeld() {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, std::chrono::seconds(120), [&] { return held_; });
  }
  void Open() {
    std::lock_guard l(mu_);
    open_ = true;
    cv_.notify_all();
  }

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    ASSIGN_OR_RETURN(std::unique_ptr<File> f, base_->OpenFile(path, mode));
    if (path.size() < 9 || path.substr(path.size() - 9) != "/data.img") return f;
    return std::unique_ptr<File>(new GatedFile(std::move(f), this));
  }

 private:
  class GatedFile : public ForwardingFile {
   public:
    GatedFile(std::unique_ptr<File> f, GatedEnv* env) : ForwardingFile(std::move(f)), env_(env) {}
    Status WriteAt(uint64_t offset, std::string_view data) override {
      env_->Pass(offset);
      return ForwardingFile::WriteAt(offset, data);
    }

   private:
    GatedEnv* env_;
  };

  void Pass(uint64_t offset) {
    std::unique_lock l(mu_);
    if (!armed_ || open_ || offset < offset_ || std::this_thread::get_id() == owner_) return;
    held_ = true;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, held_ = false, open_ = false;
  uint64_t offset_ = 0;
  std::thread::id owner_;
};

// The point's data: the first half of every chunk holds blocks named by their number; the
// second half was never written (zeros, which the fill punches as holes).
std::string PointBlock(uint64_t block) {
  if (block % kChunkBlocks >= kChunkBlocks / 2) return std::string(kBs, '\0');
  std::string b(kBs, static_cast<char>('A' + block % 26));
  b.replace(0, 8, "blk" + std::to_string(100000 + block).substr(1));
  return b;
}
std::string UserBlock(uint64_t block) {
  std::string b(kBs, 'u');
  b.replace(0, 8, "usr" + std::to_string(100000 + block).substr(1));
  return b;
}

TEST(OverlayCommitTest, FillNeverOverwritesUserWritesAndReadsStayRight) {
  SimEnv sim;
  GatedEnv env(&sim);
  ManualClock clock;
  ReplicaOptions opts;
  opts.env = &env;
  opts.clock = &clock;
  CreateParams params;
  params.size = kChunks * kChunk;
  auto r = Replica::Create("/r", params, opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (uint64_t c = 0; c < kChunks; ++c) {
    std::string half;
    for (uint64_t b = c * kChunkBlocks; b < c * kChunkBlocks + kChunkBlocks / 2; ++b) {
      half += PointBlock(b);
    }
    ASSERT_TRUE((*r)->Append(Record::Write(c * kChunk, half)).ok());
  }
  auto o = (*r)->CreateOverlay("fo", (*r)->Stats().last_seq);
  ASSERT_TRUE(o.ok()) << o.status().ToString();

  // The whole disk as the overlay must read: the point, but where the user wrote.
  std::string want;
  for (uint64_t b = 0; b < kChunks * kChunkBlocks; ++b) want += PointBlock(b);
  std::vector<BlockExtent> user_blocks;
  auto user_write = [&](uint64_t block) {
    ASSERT_TRUE((*o)->Write(block * kBs, UserBlock(block)).ok());
    want.replace(block * kBs, kBs, UserBlock(block));
    user_blocks.push_back({block, 1});
  };
  auto expect_disk = [&](const char* when) {
    std::string got(want.size(), '?');
    ASSERT_TRUE((*o)->Read(0, got.size(), got.data()).ok());
    for (uint64_t b = 0; b < kChunks * kChunkBlocks; ++b) {
      ASSERT_TRUE(got.compare(b * kBs, kBs, want, b * kBs, kBs) == 0) << when << ": block " << b;
    }
  };
  ASSERT_NO_FATAL_FAILURE(user_write(2 * kChunkBlocks + 4));  // before the commit

  env.Arm(3 * kChunk);
  ASSERT_TRUE((*r)->StartCommit("fo").ok());
  ASSERT_TRUE(env.WaitUntilHeld()) << "the fill never reached chunk 3";
  // The fill is inside chunk 3: chunks 0..2 are filled, 4..7 not yet.
  const CommitProgress held = (*r)->GetCommitProgress();
  EXPECT_TRUE(held.running);
  EXPECT_EQ(held.blocks_done, 3u * kChunkBlocks);
  EXPECT_EQ((*o)->state(), OverlayState::kCommitting);

  ASSERT_NO_FATAL_FAILURE(user_write(1 * kChunkBlocks + 5));    // over filled data
  ASSERT_NO_FATAL_FAILURE(user_write(1 * kChunkBlocks + 200));  // over a filled hole
  ASSERT_NO_FATAL_FAILURE(user_write(5 * kChunkBlocks + 7));    // where the fill comes later
  ASSERT_NO_FATAL_FAILURE(user_write(6 * kChunkBlocks + 130));  // a hole it comes to later
  // A partial block not yet filled: completed from the point.
  const uint64_t partial = 7 * kChunkBlocks + 3;
  ASSERT_TRUE((*o)->Write(partial * kBs + 100, "partial").ok());
  want.replace(partial * kBs + 100, 7, "partial");
  user_blocks.push_back({partial, 1});
  // A write into the chunk being filled waits for the fill to finish that chunk.
  const uint64_t in_fill = 3 * kChunkBlocks + 9;
  auto waiting = std::async(std::launch::async,
                            [&] { return (*o)->Write(in_fill * kBs, UserBlock(in_fill)); });
  EXPECT_NE(waiting.wait_for(std::chrono::milliseconds(50)), std::future_status::ready);
  ASSERT_NO_FATAL_FAILURE(expect_disk("while the fill is held"));
  ASSERT_TRUE((*o)->Flush().ok());

  env.Open();
  ASSERT_TRUE(waiting.get().ok());
  want.replace(in_fill * kBs, kBs, UserBlock(in_fill));
  user_blocks.push_back({in_fill, 1});
  ASSERT_TRUE((*r)->WaitForCommit().ok());
  ASSERT_TRUE((*r)->committed());
  EXPECT_EQ((*o)->state(), OverlayState::kCommitted);
  ASSERT_NO_FATAL_FAILURE(expect_disk("after the commit"));
  std::sort(user_blocks.begin(), user_blocks.end(),
            [](const BlockExtent& a, const BlockExtent& b) { return a.first_block < b.first_block; });
  EXPECT_EQ((*o)->ChangedExtents(), user_blocks);

  // The committed disk is a plain image holding exactly that, durably.
  ASSERT_TRUE((*r)->WaitForCommitCleanup().ok());
  ASSERT_TRUE((*o)->Flush().ok());
  const std::string image = (*o)->data_path();
  o->reset();
  r->reset();
  sim.CrashDropAll();
  auto bytes = ReadFileToString(&sim, image);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  ASSERT_EQ(bytes->size(), want.size());
  for (uint64_t b = 0; b < kChunks * kChunkBlocks; ++b) {
    ASSERT_TRUE(bytes->compare(b * kBs, kBs, want, b * kBs, kBs) == 0) << "image block " << b;
  }
}

// On real files, the fill writes the image past the page cache (docs/decisions/0015): a
// commit of a large disk does not push the rest of the machine's cache out, nor pay for
// fresh cache pages. The image is the point, byte for byte, either way.
TEST(OverlayCommitTest, OnRealFilesTheFillWritesPastThePageCache) {
  test::ScratchDir scratch("ferry_overlay_commit_test", "/var/tmp");
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  const bool direct = test::DirectIoBypassesCache(dir);

  ReplicaOptions opts;
  opts.env = Env::Posix();
  CreateParams params;
  params.size = kChunks * kChunk;
  auto r = Replica::Create(dir + "/r", params, opts);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::string want;
  for (uint64_t b = 0; b < kChunks * kChunkBlocks; ++b) want += PointBlock(b);
  for (uint64_t c = 0; c < kChunks; ++c) {
    ASSERT_TRUE((*r)->Append(Record::Write(c * kChunk, want.substr(c * kChunk, kChunk / 2))).ok());
  }
  auto o = (*r)->CreateOverlay("fo", (*r)->Stats().last_seq);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  ASSERT_TRUE((*r)->StartCommit("fo").ok());
  ASSERT_TRUE((*r)->WaitForCommit().ok());
  ASSERT_TRUE((*r)->WaitForCommitCleanup().ok());
  const std::string image = (*o)->data_path();
  if (direct) {
    EXPECT_EQ(test::CachedPages(image, 0, want.size()), 0u)
        << "the fill left the image's pages in the page cache";
  }
  auto bytes = ReadFileToString(Env::Posix(), image);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  ASSERT_EQ(bytes->size(), want.size());
  for (uint64_t b = 0; b < kChunks * kChunkBlocks; ++b) {
    ASSERT_TRUE(bytes->compare(b * kBs, kBs, want, b * kBs, kBs) == 0) << "image block " << b;
  }
}

}  // namespace
}  // namespace ferry::journal
