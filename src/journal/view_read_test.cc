// Views on real files: small runs of the journal segments and of the base are read through
// memory mappings (File::ReadAtMapped, docs/decisions/0016). These check that a view reads its
// point's content while the newest segment grows under the reader, and that a segment cut
// short behind the replica's back is reported as data loss naming it, not a crash. (The
// model test checks the engine's logic on SimEnv, where there is no mapping.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include "env/scratch_dir_test_util.h"
#include "journal/replica.h"
#include "journal/segment.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

constexpr uint64_t kBs = 4096;
constexpr uint64_t kVolume = 8 << 20;

std::string RandomData(std::mt19937_64* rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>((*rng)() & 0xff);
  return s;
}

class ViewReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    ReplicaOptions o;
    o.env = Env::Posix();
    o.clock = &clock_;
    o.segment_target_bytes = 256 * 1024;  // several segments: sealed ones and a growing one
    CreateParams p;
    p.size = kVolume;
    auto r = Replica::Create(dir_ + "/r", p, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    replica_ = *r;
  }
  // Appends a write and applies it to the model.
  uint64_t Write(uint64_t offset, const std::string& data) {
    auto seq = replica_->Append(Record::Write(offset, data));
    EXPECT_TRUE(seq.ok()) << seq.status().ToString();
    model_.replace(offset, data.size(), data);
    return seq.ok() ? *seq : 0;
  }
  uint64_t RandomWrite(std::mt19937_64* rng) {
    const uint64_t blocks = 1 + (*rng)() % 16;
    const uint64_t first = (*rng)() % (kVolume / kBs - blocks);
    return Write(first * kBs, RandomData(rng, blocks * kBs));
  }

  // The whole volume through v, in pieces of `piece` bytes.
  static std::string ReadAll(View* v, size_t piece) {
    std::string out(kVolume, '?');
    for (uint64_t off = 0; off < kVolume; off += piece) {
      Status s = v->Read(off, std::min<uint64_t>(piece, kVolume - off), out.data() + off);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    return out;
  }

  // A real disk (direct I/O, the page cache); removed after every member below.
  test::ScratchDir scratch_{"ferry_view_read_test", "/var/tmp"};
  std::string dir_;
  ManualClock clock_;
  std::shared_ptr<Replica> replica_;
  std::string model_ = std::string(kVolume, '\0');
};

TEST_F(ViewReadTest, ViewsReadEachPointThroughMappingsWhileTheNewestSegmentGrows) {
  std::mt19937_64 rng(11);
  // Old history, merged into the base below.
  for (int i = 0; i < 300; ++i) RandomWrite(&rng);
  const uint64_t merged_to = replica_->Stats().last_seq;
  clock_.Advance(2 * kNanosPerHour);
  std::vector<std::pair<uint64_t, std::string>> points;
  for (int i = 0; i < 200; ++i) {
    const uint64_t seq = RandomWrite(&rng);
    if (i % 50 == 49) points.push_back({seq, model_});
  }
  RetentionPolicy policy;
  policy.window_ns = kNanosPerHour;
  policy.any_point_ns = kNanosPerHour;
  auto report = replica_->ApplyRetention(policy);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  ASSERT_EQ(report->merged_to_seq, merged_to);
  ASSERT_GT(replica_->Stats().segments, 2u);

  std::vector<std::shared_ptr<View>> views;
  for (const auto& [seq, want] : points) {
    auto v = replica_->OpenView(seq);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_TRUE(ReadAll(v->get(), 1 << 20) == want) << "view at " << seq;
    views.push_back(*v);
  }
  // Appends go on while views read: a view sees its point, never a later write, and the
  // newest view sees everything published before it opened.
  std::atomic<bool> stop{false};
  std::atomic<int> passes{0};
  std::thread reader([&] {
    do {
      for (size_t k = 0; k < views.size(); ++k) {
        std::string got = ReadAll(views[k].get(), 64 * 1024);
        EXPECT_TRUE(got == points[k].second) << "view at " << points[k].first;
      }
      ++passes;
    } while (!stop);
  });
  for (int i = 0; i < 400; ++i) {
    RandomWrite(&rng);
    if (i % 100 == 99) {
      auto v = replica_->OpenView(replica_->Stats().last_seq);
      ASSERT_TRUE(v.ok()) << v.status().ToString();
      EXPECT_TRUE(ReadAll(v->get(), 192 * 1024) == model_) << "the newest view, after " << i;
    }
  }
  // The reader must have overlapped the appends, not only run after them.
  const int passes_while_appending = passes.load();
  stop = true;
  reader.join();
  EXPECT_GE(passes_while_appending, 1) << "no read pass finished while the appends ran";
}

TEST_F(ViewReadTest, ASegmentCutShortBehindTheReplicasBackIsDataLossNamingItNotACrash) {
  std::mt19937_64 rng(12);
  // The first record of the first segment: 16 KiB, a read small enough for the mapping.
  const uint64_t seq = Write(0, RandomData(&rng, 4 * kBs));
  for (int i = 0; i < 200; ++i) {
    const uint64_t blocks = 1 + rng() % 16;
    const uint64_t first = 4 + rng() % (kVolume / kBs - 4 - blocks);  // never blocks 0..3
    Write(first * kBs, RandomData(&rng, blocks * kBs));
  }
  const uint64_t last_block = kVolume - kBs;
  Write(last_block, RandomData(&rng, kBs));  // the newest record: not in the first segment
  auto v = replica_->OpenView(replica_->Stats().last_seq);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(ReadAll(v->get(), 1 << 20) == model_);
  ASSERT_GT(replica_->Stats().segments, 2u);

  // Something outside Ferry cuts the first segment to its first page.
  std::string first_segment;
  uint64_t lowest = UINT64_MAX;
  for (const auto& entry : std::filesystem::directory_iterator(dir_ + "/r/journal")) {
    uint64_t number;
    if (ParseSegmentFileName(entry.path().filename(), &number) && number < lowest) {
      lowest = number;
      first_segment = entry.path();
    }
  }
  ASSERT_FALSE(first_segment.empty());
  ASSERT_EQ(::truncate(first_segment.c_str(), 4096), 0);

  std::string buf(4 * kBs, '?');
  for (int attempt = 0; attempt < 2; ++attempt) {  // the view read before, then a new one
    Status s = (*v)->Read(0, buf.size(), buf.data());
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
    EXPECT_NE(s.ToString().find("segment " + std::to_string(lowest)), std::string::npos)
        << s.ToString();
    EXPECT_NE(s.ToString().find("seq " + std::to_string(seq)), std::string::npos) << s.ToString();
    v = replica_->OpenView(replica_->Stats().last_seq);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
  }
  // Blocks that other segments hold read as before.
  ASSERT_TRUE((*v)->Read(last_block, kBs, buf.data()).ok());
  EXPECT_EQ(buf.substr(0, kBs), model_.substr(last_block, kBs));
}

}  // namespace
}  // namespace ferry::journal
