#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "env/env.h"
#include "env/loop_device_test_util.h"
#include "env/page_cache_test_util.h"
#include "env/scratch_dir_test_util.h"

namespace ferry {
namespace {

class PosixEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }

  std::string Path(const std::string& name) const { return JoinPath(dir_, name); }

  std::unique_ptr<File> Open(const std::string& name, OpenMode mode) {
    auto file = env_->OpenFile(Path(name), mode);
    EXPECT_TRUE(file.ok()) << file.status().ToString();
    return file.ok() ? std::move(file).value() : nullptr;
  }

  static std::string ReadAll(File* file) {
    auto size = file->Size();
    EXPECT_TRUE(size.ok());
    std::string out(*size, '?');
    auto n = file->ReadAt(0, out.size(), out.data());
    EXPECT_TRUE(n.ok());
    out.resize(*n);
    return out;
  }

  Env* env_ = Env::Posix();
  test::ScratchDir scratch_{"ferry_posix_env_test"};  // removed after every member below
  std::string dir_;
};

TEST_F(PosixEnvTest, WriteThenReadBack) {
  auto f = Open("a", OpenMode::kCreateNew);
  ASSERT_TRUE(f->WriteAt(0, "hello world").ok());
  ASSERT_TRUE(f->Sync().ok());
  char buf[5];
  auto n = f->ReadAt(6, 5, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);
  EXPECT_EQ(std::string(buf, 5), "world");
  EXPECT_EQ(*f->Size(), 11u);
}

TEST_F(PosixEnvTest, ReadIsShortOnlyAtEndOfFile) {
  auto f = Open("a", OpenMode::kCreate);
  ASSERT_TRUE(f->WriteAt(0, "0123456789").ok());
  char buf[16];
  auto n = f->ReadAt(7, sizeof buf, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(std::string(buf, 3), "789");
  n = f->ReadAt(10, sizeof buf, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  n = f->ReadAt(1000, sizeof buf, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

TEST_F(PosixEnvTest, WriteAtVWritesPiecesBackToBack) {
  auto f = Open("a", OpenMode::kCreate);
  ASSERT_TRUE(f->WriteAt(0, "xxxx").ok());
  std::string big(100000, 'b');
  std::vector<std::string_view> pieces = {"head", "", big, "tail"};
  ASSERT_TRUE(f->WriteAtV(2, pieces).ok());
  EXPECT_EQ(ReadAll(f.get()), "xx" + std::string("head") + big + "tail");
}

TEST_F(PosixEnvTest, WriteAtVWithManyPiecesSplitsPastIovMax) {
  auto f = Open("a", OpenMode::kCreate);
  std::vector<std::string> storage;
  std::string expected;
  for (int i = 0; i < 3000; ++i) {
    storage.push_back(std::to_string(i) + ",");
    expected += storage.back();
  }
  std::vector<std::string_view> pieces(storage.begin(), storage.end());
  ASSERT_TRUE(f->WriteAtV(0, pieces).ok());
  EXPECT_EQ(ReadAll(f.get()), expected);
}

TEST_F(PosixEnvTest, TruncateShrinksAndGrowsWithZeros) {
  auto f = Open("a", OpenMode::kCreate);
  ASSERT_TRUE(f->WriteAt(0, "abcdef").ok());
  ASSERT_TRUE(f->Truncate(3).ok());
  EXPECT_EQ(ReadAll(f.get()), "abc");
  ASSERT_TRUE(f->Truncate(6).ok());
  EXPECT_EQ(ReadAll(f.get()), std::string("abc\0\0\0", 6));
}

TEST_F(PosixEnvTest, PunchHoleReadsZerosAndKeepsSize) {
  auto f = Open("a", OpenMode::kCreate);
  std::string data(3 * 4096, 'd');
  ASSERT_TRUE(f->WriteAt(0, data).ok());
  ASSERT_TRUE(f->PunchHole(100, 5000).ok());
  std::string expected = data;
  std::fill(expected.begin() + 100, expected.begin() + 5100, '\0');
  EXPECT_EQ(ReadAll(f.get()), expected);
  EXPECT_EQ(*f->Size(), data.size());
  // Past the end: nothing changes, the size stays.
  ASSERT_TRUE(f->PunchHole(data.size(), 4096).ok());
  EXPECT_EQ(*f->Size(), data.size());
  ASSERT_TRUE(f->PunchHole(0, 0).ok());
}

TEST_F(PosixEnvTest, NextDataSkipsHolesOrIsConservative) {
  constexpr uint64_t kMiB = 1 << 20;
  auto f = Open("a", OpenMode::kCreate);
  ASSERT_TRUE(f->WriteAt(0, std::string(4096, 'a')).ok());
  ASSERT_TRUE(f->WriteAt(kMiB, std::string(4096, 'b')).ok());
  ASSERT_TRUE(f->Truncate(4 * kMiB).ok());
  EXPECT_EQ(*f->NextData(0), 0u);
  EXPECT_EQ(*f->NextData(100), 100u);
  uint64_t next = *f->NextData(64 * 1024);
  EXPECT_TRUE(next == 64 * 1024 || next == kMiB) << next;  // conservative or exact
  uint64_t tail = *f->NextData(2 * kMiB);
  EXPECT_TRUE(tail == 2 * kMiB || tail == 4 * kMiB) << tail;
  EXPECT_EQ(*f->NextData(4 * kMiB), 4 * kMiB);
}

TEST_F(PosixEnvTest, ZeroRangeReadsZerosKeepsSizeAndStaysAllocated) {
  auto f = Open("a", OpenMode::kCreate);
  std::string data(64 * 4096, 'd');
  ASSERT_TRUE(f->WriteAt(0, data).ok());
  ASSERT_TRUE(f->Sync().ok());
  struct stat before;
  ASSERT_EQ(::stat(Path("a").c_str(), &before), 0);
  ASSERT_TRUE(f->ZeroRange(4096, 32 * 4096).ok());
  ASSERT_TRUE(f->Sync().ok());
  std::string expected = data;
  std::fill(expected.begin() + 4096, expected.begin() + 33 * 4096, '\0');
  EXPECT_EQ(ReadAll(f.get()), expected);
  EXPECT_EQ(*f->Size(), data.size());
  struct stat after;
  ASSERT_EQ(::stat(Path("a").c_str(), &after), 0);
  EXPECT_GE(after.st_blocks, before.st_blocks) << "zeroed blocks were freed";
  ASSERT_TRUE(f->ZeroRange(data.size(), 4096).ok());  // past the end: the size stays
  EXPECT_EQ(*f->Size(), data.size());
}

// A loop device (over a file here) stands in for the block device a splitter serves: fstat
// gives it no size, it cannot be resized, and it has no holes.
class BlockDeviceTest : public PosixEnvTest {
 protected:
  static constexpr uint64_t kDeviceBytes = 4 << 20;
  void SetUp() override {
    PosixEnvTest::SetUp();
    {
      auto backing = Open("backing", OpenMode::kCreateNew);
      ASSERT_TRUE(backing->WriteAt(0, std::string(kDeviceBytes, 'x')).ok());
      ASSERT_TRUE(backing->Sync().ok());
    }
    auto loop = test::LoopDevice::Attach(Path("backing"));
    if (!loop.ok()) GTEST_SKIP() << loop.status().ToString();
    loop_ = std::move(*loop);
    device_ = loop_->path();
  }
  void TearDown() override {
    loop_.reset();
    PosixEnvTest::TearDown();
  }
  std::unique_ptr<test::LoopDevice> loop_;
  std::string device_;
};

TEST_F(BlockDeviceTest, HasItsDeviceSizeNoHolesAndAFixedSize) {
  auto opened = env_->OpenFile(device_, OpenMode::kReadWrite);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  File& f = **opened;
  EXPECT_EQ(*f.Size(), kDeviceBytes);
  EXPECT_EQ(*f.NextData(0), 0u);
  EXPECT_EQ(*f.NextData(12345), 12345u);
  EXPECT_EQ(*f.NextData(kDeviceBytes), kDeviceBytes);
  EXPECT_TRUE(f.Truncate(kDeviceBytes).ok());  // already that size
  Status grow = f.Truncate(2 * kDeviceBytes);
  EXPECT_EQ(grow.code(), Code::kFailedPrecondition) << grow.ToString();
  EXPECT_NE(grow.message().find("block device"), std::string_view::npos) << grow.ToString();
  EXPECT_EQ(*f.Size(), kDeviceBytes);
  // Punched and zeroed ranges read as zeros at once, and after a sync from a fresh handle.
  ASSERT_TRUE(f.PunchHole(8192, 3 * 4096).ok());
  ASSERT_TRUE(f.ZeroRange(1 << 20, 64 * 1024).ok());
  ASSERT_TRUE(f.Sync().ok());
  std::string expected(kDeviceBytes, 'x');
  std::fill_n(expected.begin() + 8192, 3 * 4096, '\0');
  std::fill_n(expected.begin() + (1 << 20), 64 * 1024, '\0');
  std::string got(kDeviceBytes, '?');
  ASSERT_EQ(*f.ReadAt(0, got.size(), got.data()), got.size());
  EXPECT_TRUE(got == expected) << "the device does not read back as punched and zeroed";
  auto again = env_->OpenFile(device_, OpenMode::kRead);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(*(*again)->ReadAt(0, got.size(), got.data()), got.size());
  EXPECT_TRUE(got == expected);
}

TEST_F(PosixEnvTest, ListDirIsSortedWithoutDotEntries) {
  for (const char* name : {"c", "a", "b"}) Open(name, OpenMode::kCreate);
  ASSERT_TRUE(env_->CreateDir(Path("sub")).ok());
  auto names = env_->ListDir(dir_);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c", "sub"}));
}

TEST_F(PosixEnvTest, RenameReplacesDestination) {
  ASSERT_TRUE(Open("from", OpenMode::kCreate)->WriteAt(0, "new").ok());
  ASSERT_TRUE(Open("to", OpenMode::kCreate)->WriteAt(0, "old content").ok());
  ASSERT_TRUE(env_->Rename(Path("from"), Path("to")).ok());
  ASSERT_TRUE(env_->SyncDir(dir_).ok());
  EXPECT_FALSE(env_->Exists(Path("from")));
  auto contents = ReadFileToString(env_, Path("to"));
  ASSERT_TRUE(contents.ok());
  EXPECT_EQ(*contents, "new");
}

TEST_F(PosixEnvTest, CreateDirMakesParentsAndIsIdempotent) {
  std::string deep = Path("x/y/z");
  ASSERT_TRUE(env_->CreateDir(deep).ok());
  ASSERT_TRUE(env_->CreateDir(deep).ok());
  ASSERT_TRUE(env_->CreateDir(deep + "/").ok());
  EXPECT_TRUE(env_->Exists(deep));
  ASSERT_TRUE(env_->RemoveDir(deep).ok());
  EXPECT_FALSE(env_->Exists(deep));
  EXPECT_TRUE(env_->Exists(Path("x/y")));
}

TEST_F(PosixEnvTest, ErrorCodes) {
  EXPECT_EQ(env_->OpenFile(Path("missing"), OpenMode::kRead).status().code(), Code::kNotFound);
  EXPECT_EQ(env_->OpenFile(Path("missing"), OpenMode::kReadWrite).status().code(),
            Code::kNotFound);
  EXPECT_EQ(env_->OpenFile(Path("nodir/f"), OpenMode::kCreate).status().code(),
            Code::kNotFound);
  Open("exists", OpenMode::kCreateNew);
  Status st = env_->OpenFile(Path("exists"), OpenMode::kCreateNew).status();
  EXPECT_EQ(st.code(), Code::kAlreadyExists);
  EXPECT_NE(st.message().find(Path("exists")), std::string_view::npos) << st.ToString();
  EXPECT_NE(st.message().find("File exists"), std::string_view::npos) << st.ToString();
  EXPECT_TRUE(env_->OpenFile(Path("exists"), OpenMode::kCreate).ok());

  EXPECT_EQ(env_->RemoveFile(Path("missing")).code(), Code::kNotFound);
  EXPECT_EQ(env_->RemoveDir(Path("missing")).code(), Code::kNotFound);
  EXPECT_EQ(env_->Rename(Path("missing"), Path("x")).code(), Code::kNotFound);
  EXPECT_EQ(env_->ListDir(Path("missing")).status().code(), Code::kNotFound);
  EXPECT_EQ(env_->SyncDir(Path("missing")).code(), Code::kNotFound);
  EXPECT_EQ(env_->GetSpace(Path("missing")).status().code(), Code::kNotFound);
  EXPECT_EQ(env_->CreateDir(Path("exists")).code(), Code::kAlreadyExists);
  EXPECT_EQ(env_->CreateDir(Path("exists/sub")).code(), Code::kAlreadyExists);
  EXPECT_EQ(env_->RemoveDir(dir_).code(), Code::kIoError);  // not empty
  EXPECT_EQ(env_->SyncDir(Path("exists")).code(), Code::kIoError);  // not a directory

  auto ro = Open("exists", OpenMode::kRead);
  EXPECT_EQ(ro->WriteAt(0, "x").code(), Code::kIoError);
}

TEST_F(PosixEnvTest, GetSpaceReportsFilesystem) {
  auto space = env_->GetSpace(dir_);
  ASSERT_TRUE(space.ok());
  EXPECT_GT(space->total_bytes, 0u);
  EXPECT_LE(space->free_bytes, space->total_bytes);
}

TEST_F(PosixEnvTest, WriteFileAtomicallyReplacesAndLeavesNoTemp) {
  std::string path = Path("manifest");
  ASSERT_TRUE(WriteFileAtomically(env_, path, "version 1, long").ok());
  ASSERT_TRUE(WriteFileAtomically(env_, path, "v2").ok());
  EXPECT_EQ(*ReadFileToString(env_, path), "v2");
  EXPECT_EQ(*env_->ListDir(dir_), std::vector<std::string>{"manifest"});
  EXPECT_EQ(ReadFileToString(env_, Path("missing")).status().code(), Code::kNotFound);
}

TEST_F(PosixEnvTest, ReadFileToStringReadsLargeFiles) {
  std::string data;
  for (int i = 0; i < 200000; ++i) data += static_cast<char>('a' + i % 26);
  ASSERT_TRUE(Open("big", OpenMode::kCreate)->WriteAt(0, data).ok());
  EXPECT_EQ(*ReadFileToString(env_, Path("big")), data);
  Open("empty", OpenMode::kCreate);
  EXPECT_EQ(*ReadFileToString(env_, Path("empty")), "");
}

// An aligned buffer of n bytes of `fill`.
std::string_view AlignedBytes(std::vector<char>* storage, size_t n, char fill) {
  storage->assign(n + kDirectIoAlignment, fill);
  char* p = storage->data();
  p += (kDirectIoAlignment - reinterpret_cast<uintptr_t>(p) % kDirectIoAlignment) % kDirectIoAlignment;
  return std::string_view(p, n);
}

TEST_F(PosixEnvTest, WriteDurableWritesAlignedDataDirectly) {
  const bool direct = test::DirectIoBypassesCache(dir_);

  auto f = Open("seg", OpenMode::kCreateNew);
  ASSERT_TRUE(f->WriteAt(0, std::string(100, 'h')).ok());
  std::vector<char> storage;
  const std::string_view data = AlignedBytes(&storage, 64 * 1024, 'd');
  // The file is renamed after it was opened (a recycled segment is): the write still lands in it.
  ASSERT_TRUE(env_->Rename(Path("seg"), Path("seg2")).ok());
  ASSERT_TRUE(f->WriteDurable(4096, data).ok());
  EXPECT_EQ(*f->Size(), 4096u + data.size());
  const std::string all = *ReadFileToString(env_, Path("seg2"));
  EXPECT_EQ(all.substr(0, 100), std::string(100, 'h'));
  EXPECT_EQ(all.substr(4096), std::string(data));
  if (direct) {
    // Read back above through the cache, so drop it: a direct write leaves none behind, a
    // buffered one would leave every page.
    f->DropCache(0, 0);
    ASSERT_TRUE(f->WriteDurable(4096, AlignedBytes(&storage, 64 * 1024, 'e')).ok());
    EXPECT_EQ(test::CachedPages(Path("seg2"), 4096, data.size()), 0u) << "the aligned write went through the page cache";
    EXPECT_EQ(ReadFileToString(env_, Path("seg2"))->substr(4096), std::string(64 * 1024, 'e'));
  }
}

TEST_F(PosixEnvTest, WriteDurableWritesUnalignedDataThroughTheCache) {
  auto f = Open("seg", OpenMode::kCreateNew);
  std::vector<char> storage;
  const std::string_view aligned = AlignedBytes(&storage, 3 * 4096, 'x');
  ASSERT_TRUE(f->WriteDurable(0, aligned).ok());
  // Unaligned offset, length, address: each works, through the page cache and fdatasync.
  ASSERT_TRUE(f->WriteDurable(10, aligned.substr(0, 4096)).ok());
  ASSERT_TRUE(f->WriteDurable(4096, aligned.substr(0, 100)).ok());
  ASSERT_TRUE(f->WriteDurable(8192, std::string(4096, 'y')).ok());
  std::string want(3 * 4096, 'x');
  want.replace(8192, 4096, std::string(4096, 'y'));
  EXPECT_EQ(*ReadFileToString(env_, Path("seg")), want);
  EXPECT_GT(test::CachedPages(Path("seg"), 8192, 4096), 0u);
}

TEST_F(PosixEnvTest, WriteDurableRespectsAReadOnlyOpen) {
  Open("seg", OpenMode::kCreateNew);
  auto f = Open("seg", OpenMode::kRead);
  std::vector<char> storage;
  EXPECT_FALSE(f->WriteDurable(0, AlignedBytes(&storage, 4096, 'z')).ok());
  EXPECT_EQ(*f->Size(), 0u);
}

TEST_F(PosixEnvTest, MappedReadsFollowTheFileAndAFileCutShortUnderThemIsAnErrorNotACrash) {
  auto f = Open("seg", OpenMode::kCreateNew);
  ASSERT_TRUE(f->WriteAt(0, std::string(10000, 'a')).ok());
  char buf[64];
  auto n = f->ReadAtMapped(9990, sizeof buf, buf);  // past the end: short, like ReadAt
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(buf, *n), std::string(10, 'a'));
  // Writes after the mapping was made are seen: buffered, and direct ones past the cache.
  ASSERT_TRUE(f->WriteAt(100, "bbbb").ok());
  std::vector<char> storage;
  ASSERT_TRUE(f->WriteDurable(8192, AlignedBytes(&storage, 4096, 'c')).ok());
  n = f->ReadAtMapped(98, 8, buf);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(buf, *n), "aabbbbaa");
  n = f->ReadAtMapped(8190, 4, buf);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(buf, *n), "aacc");
  // The file grows past what its first mapping reserved (a segment being appended to).
  const uint64_t far = 200ull << 20;
  ASSERT_TRUE(f->WriteAt(far, "far away").ok());
  n = f->ReadAtMapped(far, 8, buf);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(buf, *n), "far away");
  n = f->ReadAtMapped(100, 4, buf);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(buf, *n), "bbbb");

  // Another writer cuts the file short: the bytes the mapping promised are gone.
  auto other = Open("seg", OpenMode::kReadWrite);
  ASSERT_TRUE(other->Truncate(4096).ok());
  n = f->ReadAtMapped(far, 8, buf);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), Code::kIoError) << n.status().ToString();
  EXPECT_NE(n.status().ToString().find("cut short"), std::string::npos) << n.status().ToString();
  // The process lives on, and what is still there reads as before, again and again.
  for (int i = 0; i < 3; ++i) {
    n = f->ReadAtMapped(100, 4, buf);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(std::string(buf, *n), "bbbb");
    EXPECT_FALSE(f->ReadAtMapped(8192, 16, buf).ok());
  }
}

// A read larger than kMappedReadMax goes through the mapping only when its pages are cached:
// faults would read it a page at a time, a pread reads it with read-ahead. The two paths are
// told apart by the faults the thread takes (a copy out of a mapping faults its pages in; a
// pread into a buffer already touched takes none).
TEST_F(PosixEnvTest, LargerMappedReadsUseTheMappingOnlyForCachedPages) {
  const bool direct = test::DirectIoBypassesCache(dir_);
  if (!direct) GTEST_SKIP() << "the filesystem keeps no page out of the cache";
  auto f = Open("seg", OpenMode::kCreateNew);
  std::vector<char> storage;
  const size_t n = 64 * 1024;
  static_assert(64 * 1024 > kMappedReadMax && 64 * 1024 <= kMappedCachedReadMax);
  ASSERT_TRUE(f->WriteDurable(0, AlignedBytes(&storage, 2 * n, 'm')).ok());  // not cached
  auto faults = [] {  // minor (page cached) and major (read from the disk)
    struct rusage ru;
    ::getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt + ru.ru_majflt;
  };
  char small[16];
  ASSERT_TRUE(f->ReadAtMapped(0, sizeof small, small).ok());  // maps the file
  ASSERT_EQ(test::CachedPages(Path("seg"), n, n), 0u);
  std::string buf(n, '?');
  const std::string want(n, 'm');
  long before = faults();
  auto got = f->ReadAtMapped(n, n, buf.data());
  const long pread_faults = faults() - before;  // nothing else in between allocates
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, n);
  EXPECT_EQ(buf, want);
  EXPECT_EQ(pread_faults, 0) << "pages not cached were read through the mapping";
  ASSERT_EQ(test::CachedPages(Path("seg"), n, n), n / 4096) << "the read did not cache them";
  buf.assign(n, '?');
  before = faults();
  got = f->ReadAtMapped(n, n, buf.data());
  const long mapped_faults = faults() - before;
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(buf, want);
  EXPECT_GE(mapped_faults, 1) << "cached pages were not read through the mapping";
}

}  // namespace
}  // namespace ferry
