// Opening a view copies no data and does no I/O, whatever the volume's size (the engine's
// promise: a view resolves blocks lazily, when read). Timing is bench/journal_view_bench's
// job; this checks the structure: zero file calls while views open, on real sparse files.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>

#include "env/forwarding_env.h"
#include "env/scratch_dir_test_util.h"
#include "journal/replica.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

constexpr uint32_t kBs = 4096;

struct Calls {
  std::atomic<uint64_t> opens{0}, reads{0}, writes{0}, syncs{0}, other{0};
  uint64_t Total() const { return opens + reads + writes + syncs + other; }
  void Reset() { opens = reads = writes = syncs = other = 0; }
};

class CountingFile : public ForwardingFile {
 public:
  CountingFile(std::unique_ptr<File> f, Calls* c) : ForwardingFile(std::move(f)), c_(c) {}
  Result<size_t> ReadAt(uint64_t offset, size_t n, void* dst) override {
    ++c_->reads;
    return f_->ReadAt(offset, n, dst);
  }
  Status WriteAt(uint64_t offset, std::string_view data) override {
    ++c_->writes;
    return f_->WriteAt(offset, data);
  }
  Status WriteAtV(uint64_t offset, std::span<const std::string_view> pieces) override {
    ++c_->writes;
    return f_->WriteAtV(offset, pieces);
  }
  Status Sync() override {
    ++c_->syncs;
    return f_->Sync();
  }
  Status Truncate(uint64_t size) override {
    ++c_->other;
    return f_->Truncate(size);
  }
  Status PunchHole(uint64_t offset, uint64_t n) override {
    ++c_->other;
    return f_->PunchHole(offset, n);
  }
  Result<uint64_t> NextData(uint64_t offset) override {
    ++c_->other;
    return f_->NextData(offset);
  }

 private:
  Calls* c_;
};

class CountingEnv : public ForwardingEnv {
 public:
  CountingEnv() : ForwardingEnv(Env::Posix()) {}
  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    ++calls.opens;
    ASSIGN_OR_RETURN(auto f, base_->OpenFile(path, mode));
    return std::unique_ptr<File>(new CountingFile(std::move(f), &calls));
  }
  Status Rename(const std::string& from, const std::string& to) override {
    ++calls.other;
    return base_->Rename(from, to);
  }
  Status RemoveFile(const std::string& path) override {
    ++calls.other;
    return base_->RemoveFile(path);
  }
  Calls calls;
};

class ViewOpenTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }
  test::ScratchDir scratch_{"ferry-view-open"};  // removed after every member below
  std::string dir_;
};

TEST_P(ViewOpenTest, OpeningAViewTouchesNoFile) {
  const uint64_t size = GetParam();
  CountingEnv env;
  ReplicaOptions o;
  o.env = &env;
  o.segment_target_bytes = 4 << 20;  // several sealed segments
  CreateParams p;
  p.size = size;
  p.block_size = kBs;
  auto created = Replica::Create(dir_ + "/r", p, o);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::shared_ptr<Replica> r = *created;
  // 20,000 records of 4 KiB at random blocks, a marker after each batch of 1,000.
  std::mt19937_64 rng(7);
  std::vector<uint64_t> markers;
  const std::string data(kBs, 'x');
  for (int batch = 0; batch < 20; ++batch) {
    std::vector<Record> recs;
    for (int i = 0; i < 1000; ++i) recs.push_back(Record::Write((rng() % (size / kBs)) * kBs, data));
    ASSERT_TRUE(r->Append(recs).ok());
    auto m = r->Append(Record::Marker(MarkerKind::kCrashConsistent, ""));
    ASSERT_TRUE(m.ok());
    markers.push_back(*m);
  }
  ASSERT_GT(r->Stats().segments, 2u);
  const uint64_t index_bytes = r->Stats().index_bytes;

  env.calls.Reset();
  std::vector<std::shared_ptr<View>> views;
  for (uint64_t seq : {uint64_t{1}, markers.front(), markers[markers.size() / 2], markers.back(),
                       r->last_seq()}) {
    auto v = r->OpenView(seq);
    ASSERT_TRUE(v.ok()) << seq << ": " << v.status().ToString();
    views.push_back(*v);
  }
  EXPECT_EQ(env.calls.Total(), 0u) << "opens " << env.calls.opens << ", reads " << env.calls.reads
                                   << ", writes " << env.calls.writes << ", syncs " << env.calls.syncs
                                   << ", other " << env.calls.other;
  // No copy of the index per view either.
  EXPECT_EQ(r->Stats().index_bytes, index_bytes);

  // The counting sees I/O when there is some: a read of the newest view reads the files.
  std::string buf(1 << 20, '\0');
  ASSERT_TRUE(views.back()->Read(0, buf.size(), buf.data()).ok());
  EXPECT_GT(env.calls.reads.load(), 0u);
}

// 1 GiB and 64 GiB (sparse): opening costs the same nothing.
INSTANTIATE_TEST_SUITE_P(Sizes, ViewOpenTest, ::testing::Values(1ull << 30, 64ull << 30));

}  // namespace
}  // namespace ferry::journal
