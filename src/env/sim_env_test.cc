#include "env/sim_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <thread>

namespace ferry {
namespace {

std::unique_ptr<File> MustOpen(Env* env, const std::string& path, OpenMode mode) {
  auto file = env->OpenFile(path, mode);
  EXPECT_TRUE(file.ok()) << path << ": " << file.status().ToString();
  return file.ok() ? std::move(file).value() : nullptr;
}

std::string ReadAll(File* file) {
  auto size = file->Size();
  EXPECT_TRUE(size.ok()) << size.status().ToString();
  if (!size.ok()) return "";
  std::string out(*size, '?');
  auto n = file->ReadAt(0, out.size(), out.data());
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  out.resize(n.ok() ? *n : 0);
  return out;
}

// Contents of path, or "<missing>" if it does not exist.
std::string Contents(Env* env, const std::string& path) {
  auto r = ReadFileToString(env, path);
  if (r.status().code() == Code::kNotFound) return "<missing>";
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : "<error>";
}

// A directory "d" holding "d/f" whose contents `base` are fully durable.
std::unique_ptr<File> MakeDurableFile(SimEnv* env, std::string_view base) {
  EXPECT_TRUE(env->CreateDir("d").ok());
  auto f = MustOpen(env, "d/f", OpenMode::kCreateNew);
  EXPECT_TRUE(f->WriteAt(0, base).ok());
  EXPECT_TRUE(f->Sync().ok());
  EXPECT_TRUE(env->SyncDir("d").ok());
  return f;
}

TEST(SimEnvTest, SyncedDataSurvivesCrash) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    SimEnv env;
    MakeDurableFile(&env, "durable bytes");
    env.Crash(seed);
    EXPECT_EQ(Contents(&env, "d/f"), "durable bytes") << "seed " << seed;
  }
}

TEST(SimEnvTest, CrashDropAllDropsUnsyncedData) {
  SimEnv env;
  auto f = MakeDurableFile(&env, "0123456789");
  ASSERT_TRUE(f->WriteAt(5, "abcdefghij").ok());
  ASSERT_TRUE(f->Truncate(12).ok());
  ASSERT_TRUE(f->PunchHole(0, 3).ok());
  EXPECT_EQ(ReadAll(f.get()), std::string("\0\0\0" "34abcdefg", 12));
  env.CrashDropAll();
  EXPECT_EQ(Contents(&env, "d/f"), "0123456789");
}

// Reference model of one unsynced file operation, on a plain string.
struct RefOp {
  enum Kind { kWrite, kTruncate, kPunch } kind;
  uint64_t offset;
  uint64_t length;  // kPunch
  std::string bytes;

  Status Do(File* f) const {
    switch (kind) {
      case kWrite: return f->WriteAt(offset, bytes);
      case kTruncate: return f->Truncate(offset);
      case kPunch: return f->PunchHole(offset, length);
    }
    return Internal("bad kind");
  }
  void Apply(std::string& s, size_t keep = std::string::npos) const {
    switch (kind) {
      case kWrite: {
        std::string_view b = std::string_view(bytes).substr(0, keep);
        if (b.empty()) return;
        if (s.size() < offset + b.size()) s.resize(offset + b.size(), '\0');
        std::copy(b.begin(), b.end(), s.begin() + offset);
        return;
      }
      case kTruncate: s.resize(offset, '\0'); return;
      case kPunch:
        for (uint64_t i = offset; i < std::min<uint64_t>(s.size(), offset + length); ++i) s[i] = 0;
        return;
    }
  }
};

TEST(SimEnvTest, CrashKeepsDurableStatePlusInOrderPrefixWithLastWriteMaybeTorn) {
  const std::string base(40, 'A');
  const std::vector<RefOp> ops = {
      {RefOp::kWrite, 10, 0, "bbbbbbbbbb"},
      {RefOp::kWrite, 35, 0, "cccccccccccccccc"},  // extends the file
      {RefOp::kTruncate, 45, 0, ""},
      {RefOp::kWrite, 5, 0, "dddddddddddddddddddd"},
      {RefOp::kPunch, 0, 8, ""},
      {RefOp::kWrite, 4094, 0, std::string(20, 'e')},  // crosses a block, leaves a hole
  };
  // Every allowed outcome: k whole ops, or k-1 whole ops and a torn write k.
  std::vector<std::string> whole(1, base);
  std::set<std::string> torn;
  for (const RefOp& op : ops) {
    if (op.kind == RefOp::kWrite) {
      for (size_t keep = 0; keep < op.bytes.size(); ++keep) {
        std::string s = whole.back();
        op.Apply(s, keep);
        torn.insert(s);
      }
    }
    std::string s = whole.back();
    op.Apply(s);
    whole.push_back(s);
  }

  std::set<size_t> whole_seen;
  int torn_seen = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    SimEnv env;
    auto f = MakeDurableFile(&env, base);
    for (const RefOp& op : ops) ASSERT_TRUE(op.Do(f.get()).ok());
    ASSERT_EQ(ReadAll(f.get()), whole.back());
    env.Crash(seed);
    std::string got = Contents(&env, "d/f");
    auto it = std::find(whole.begin(), whole.end(), got);
    if (it != whole.end()) {
      whole_seen.insert(static_cast<size_t>(it - whole.begin()));
    } else {
      ASSERT_TRUE(torn.count(got) > 0) << "seed " << seed << ": not a prefix outcome";
      ++torn_seen;
    }
  }
  EXPECT_TRUE(whole_seen.count(0) > 0);            // everything lost
  EXPECT_TRUE(whole_seen.count(ops.size()) > 0);   // everything kept
  EXPECT_GE(whole_seen.size(), 4u);
  EXPECT_GT(torn_seen, 0);
}

TEST(SimEnvTest, CrashIsDeterministicForASeed) {
  auto run = [](uint64_t seed) {
    SimEnv env;
    auto f = MakeDurableFile(&env, "base");
    for (int i = 0; i < 20; ++i) EXPECT_TRUE(f->WriteAt(i * 3, "xyz" + std::to_string(i)).ok());
    for (int i = 0; i < 5; ++i) MustOpen(&env, "d/n" + std::to_string(i), OpenMode::kCreate);
    env.Crash(seed);
    std::string state = Contents(&env, "d/f");
    std::vector<std::string> names = *env.ListDir("d");
    for (const std::string& name : names) state += "|" + name;
    return state;
  };
  for (uint64_t seed = 0; seed < 20; ++seed) EXPECT_EQ(run(seed), run(seed));
}

TEST(SimEnvTest, CreatedFileWithoutSyncDirDisappears) {
  SimEnv env;
  ASSERT_TRUE(env.CreateDir("d").ok());
  auto f = MustOpen(&env, "d/f", OpenMode::kCreateNew);
  ASSERT_TRUE(f->WriteAt(0, "data").ok());
  ASSERT_TRUE(f->Sync().ok());  // the data, not the name
  EXPECT_TRUE(env.Exists("d/f"));
  env.CrashDropAll();
  EXPECT_FALSE(env.Exists("d/f"));
  EXPECT_TRUE(env.Exists("d"));
  EXPECT_EQ(*env.ListDir("d"), std::vector<std::string>{});
  EXPECT_EQ(env.OpenFile("d/f", OpenMode::kRead).status().code(), Code::kNotFound);
}

TEST(SimEnvTest, CreatedFileWithSyncDirSurvives) {
  SimEnv env;
  ASSERT_TRUE(env.CreateDir("d").ok());
  auto f = MustOpen(&env, "d/f", OpenMode::kCreateNew);
  ASSERT_TRUE(f->WriteAt(0, "data").ok());
  ASSERT_TRUE(env.SyncDir("d").ok());
  env.CrashDropAll();
  EXPECT_EQ(Contents(&env, "d/f"), "");  // the name survives; the unsynced data does not
}

TEST(SimEnvTest, UnsyncedCreatesSurviveAsAnInOrderPrefix) {
  std::set<size_t> counts;
  for (uint64_t seed = 0; seed < 100; ++seed) {
    SimEnv env;
    ASSERT_TRUE(env.CreateDir("d").ok());
    for (int i = 0; i < 5; ++i) MustOpen(&env, "d/f" + std::to_string(i), OpenMode::kCreate);
    env.Crash(seed);
    std::vector<std::string> names = *env.ListDir("d");
    for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(names[i], "f" + std::to_string(i));
    counts.insert(names.size());
  }
  EXPECT_EQ(counts.size(), 6u);  // 0..5 files all happen
}

TEST(SimEnvTest, RemoveNeedsSyncDir) {
  SimEnv env;
  MakeDurableFile(&env, "keep me");
  ASSERT_TRUE(env.RemoveFile("d/f").ok());
  EXPECT_FALSE(env.Exists("d/f"));
  env.CrashDropAll();
  EXPECT_EQ(Contents(&env, "d/f"), "keep me");
  ASSERT_TRUE(env.RemoveFile("d/f").ok());
  ASSERT_TRUE(env.SyncDir("d").ok());
  env.CrashDropAll();
  EXPECT_FALSE(env.Exists("d/f"));
}

TEST(SimEnvTest, RenameMadeDurableBySyncDirSurvives) {
  SimEnv env;
  MakeDurableFile(&env, "payload");
  ASSERT_TRUE(env.Rename("d/f", "d/g").ok());
  env.CrashDropAll();  // not synced: the old name is back
  EXPECT_EQ(Contents(&env, "d/f"), "payload");
  EXPECT_FALSE(env.Exists("d/g"));

  ASSERT_TRUE(env.Rename("d/f", "d/g").ok());
  ASSERT_TRUE(env.SyncDir("d").ok());
  env.CrashDropAll();
  EXPECT_EQ(Contents(&env, "d/g"), "payload");
  EXPECT_FALSE(env.Exists("d/f"));
}

TEST(SimEnvTest, RenameAcrossDirsIsDurableWithTheDestinationDir) {
  SimEnv env;
  MakeDurableFile(&env, "payload");
  ASSERT_TRUE(env.CreateDir("e").ok());
  ASSERT_TRUE(env.Rename("d/f", "e/f").ok());
  ASSERT_TRUE(env.SyncDir("e").ok());
  env.CrashDropAll();
  EXPECT_EQ(Contents(&env, "e/f"), "payload");
  EXPECT_FALSE(env.Exists("d/f"));
}

TEST(SimEnvTest, RenameReplacesDestination) {
  SimEnv env;
  MakeDurableFile(&env, "new");
  auto g = MustOpen(&env, "d/g", OpenMode::kCreate);
  ASSERT_TRUE(g->WriteAt(0, "old old").ok());
  ASSERT_TRUE(g->Sync().ok());
  ASSERT_TRUE(env.SyncDir("d").ok());
  ASSERT_TRUE(env.Rename("d/f", "d/g").ok());
  EXPECT_EQ(Contents(&env, "d/g"), "new");
  EXPECT_EQ(*env.ListDir("d"), std::vector<std::string>{"g"});
  EXPECT_EQ(env.GetSpace(".")->free_bytes, SimEnv::kDefaultCapacity - 3);
  env.CrashDropAll();
  EXPECT_EQ(Contents(&env, "d/g"), "old old");
  EXPECT_EQ(Contents(&env, "d/f"), "new");
}

// WriteFileAtomically interrupted after any number of steps, then a crash with any seed:
// the file holds the old or the new contents, never anything else.
TEST(SimEnvTest, WriteFileAtomicallyLeavesOldOrNewAfterCrashAtAnyPoint) {
  const std::string kOld = "old manifest";
  const std::string kNew = "the new manifest, longer than the old one";
  std::set<std::string> outcomes;
  bool completed = false;
  for (int64_t budget = 0; !completed; ++budget) {
    ASSERT_LT(budget, 20) << "WriteFileAtomically never completed";
    for (uint64_t seed = 0; seed < 40; ++seed) {
      SimEnv env;
      ASSERT_TRUE(env.CreateDir("d").ok());
      ASSERT_TRUE(env.SyncDir(".").ok());
      ASSERT_TRUE(WriteFileAtomically(&env, "d/m", kOld).ok());
      env.FailAfter(budget);
      Status st = WriteFileAtomically(&env, "d/m", kNew);
      env.FailAfter(-1);
      if (!st.ok()) {
        EXPECT_EQ(st.code(), Code::kIoError);
        EXPECT_EQ(st.message(), "injected I/O error");
      }
      completed = st.ok();
      env.Crash(seed);
      std::string got = Contents(&env, "d/m");
      if (st.ok()) {
        EXPECT_EQ(got, kNew) << "budget " << budget << " seed " << seed;
      } else {
        EXPECT_TRUE(got == kOld || got == kNew) << "budget " << budget << " seed " << seed
                                                << ": " << got;
      }
      outcomes.insert(got);
      // Recovery: a retry after the crash succeeds whatever the leftover temp file holds.
      ASSERT_TRUE(WriteFileAtomically(&env, "d/m", "again").ok());
      EXPECT_EQ(Contents(&env, "d/m"), "again");
    }
  }
  EXPECT_EQ(outcomes, (std::set<std::string>{kOld, kNew}));
}

TEST(SimEnvTest, CapacityExceededIsResourceExhaustedAndChangesNothing) {
  SimEnv env;
  env.SetCapacity(100);
  ASSERT_TRUE(env.CreateDir("d").ok());
  auto f = MustOpen(&env, "d/f", OpenMode::kCreate);
  ASSERT_TRUE(f->WriteAt(0, std::string(60, 'a')).ok());
  auto space = env.GetSpace("d");
  ASSERT_TRUE(space.ok());
  EXPECT_EQ(space->total_bytes, 100u);
  EXPECT_EQ(space->free_bytes, 40u);

  Status st = f->WriteAt(50, std::string(60, 'b'));
  EXPECT_EQ(st.code(), Code::kResourceExhausted);
  EXPECT_EQ(st.message().substr(0, 23), "no space left on device");
  std::vector<std::string_view> pieces = {std::string_view("0123456789"),
                                          std::string_view("0123456789012345678901234567890")};
  EXPECT_EQ(f->WriteAtV(60, pieces).code(), Code::kResourceExhausted);
  EXPECT_EQ(f->Truncate(101).code(), Code::kResourceExhausted);
  auto g = MustOpen(&env, "d/g", OpenMode::kCreate);
  EXPECT_EQ(g->WriteAt(0, std::string(41, 'c')).code(), Code::kResourceExhausted);
  EXPECT_EQ(ReadAll(f.get()), std::string(60, 'a'));
  EXPECT_EQ(*g->Size(), 0u);

  // Overwrites and growth that fit still work; removing a file frees its space.
  ASSERT_TRUE(f->WriteAt(0, std::string(60, 'z')).ok());
  ASSERT_TRUE(g->WriteAt(0, std::string(40, 'c')).ok());
  EXPECT_EQ(env.GetSpace("d")->free_bytes, 0u);
  ASSERT_TRUE(env.RemoveFile("d/f").ok());
  EXPECT_EQ(env.GetSpace("d")->free_bytes, 60u);
  env.CrashDropAll();  // neither name was made durable
  EXPECT_EQ(env.GetSpace("d")->free_bytes, 100u);
}

TEST(SimEnvTest, OldHandlesReturnAbortedAfterCrash) {
  SimEnv env;
  auto f = MakeDurableFile(&env, "data");
  env.Crash(7);
  char buf[4];
  std::vector<std::string_view> pieces = {"x"};
  std::vector<Status> results = {
      f->ReadAt(0, 4, buf).status(), f->WriteAt(0, "x"),        f->WriteAtV(0, pieces),
      f->Sync(),                     f->Size().status(),         f->Truncate(0),
      f->PunchHole(0, 1),            f->NextData(0).status(),
  };
  for (const Status& st : results) {
    EXPECT_EQ(st.code(), Code::kAborted);
    EXPECT_EQ(st.message(), "simulated crash: reopen");
  }
  auto reopened = MustOpen(&env, "d/f", OpenMode::kReadWrite);
  EXPECT_EQ(ReadAll(reopened.get()), "data");
  env.CrashDropAll();
  EXPECT_EQ(reopened->Size().status().code(), Code::kAborted);
}

TEST(SimEnvTest, FailAfterFailsEveryMutatingCallAfterTheBudget) {
  SimEnv env;
  auto f = MakeDurableFile(&env, "base");
  env.FailAfter(2);
  EXPECT_TRUE(f->WriteAt(0, "1").ok());
  EXPECT_TRUE(f->Sync().ok());
  for (int i = 0; i < 3; ++i) {
    Status st = f->WriteAt(1, "2");
    EXPECT_EQ(st.code(), Code::kIoError);
    EXPECT_EQ(st.message(), "injected I/O error");
  }
  EXPECT_EQ(f->Sync().code(), Code::kIoError);
  EXPECT_EQ(f->Truncate(0).code(), Code::kIoError);
  EXPECT_EQ(f->PunchHole(0, 1).code(), Code::kIoError);
  EXPECT_EQ(env.OpenFile("d/new", OpenMode::kCreate).status().code(), Code::kIoError);
  EXPECT_EQ(env.CreateDir("e").code(), Code::kIoError);
  EXPECT_EQ(env.Rename("d/f", "d/g").code(), Code::kIoError);
  EXPECT_EQ(env.RemoveFile("d/f").code(), Code::kIoError);
  EXPECT_EQ(env.SyncDir("d").code(), Code::kIoError);
  // Reads are not gated, and the refused calls changed nothing.
  EXPECT_EQ(ReadAll(f.get()), "1ase");
  EXPECT_TRUE(env.OpenFile("d/f", OpenMode::kRead).ok());
  EXPECT_EQ(*env.ListDir("d"), std::vector<std::string>{"f"});
  EXPECT_FALSE(env.Exists("e"));
  env.FailAfter(-1);
  EXPECT_TRUE(f->WriteAt(1, "2").ok());
  EXPECT_EQ(ReadAll(f.get()), "12se");
}

TEST(SimEnvTest, FailAfterZeroFailsTheNextCall) {
  SimEnv env;
  env.FailAfter(0);
  EXPECT_EQ(env.CreateDir("d").code(), Code::kIoError);
  env.FailAfter(-1);
  EXPECT_TRUE(env.CreateDir("d").ok());
}

TEST(SimEnvTest, PunchHoleZerosAndNextDataFindsBlocks) {
  SimEnv env;
  ASSERT_TRUE(env.CreateDir("d").ok());
  auto f = MustOpen(&env, "d/f", OpenMode::kCreate);
  ASSERT_TRUE(f->WriteAt(0, std::string(8192, 'a')).ok());
  ASSERT_TRUE(f->WriteAt(40960, std::string(100, 'b')).ok());
  ASSERT_TRUE(f->Truncate(100000).ok());
  EXPECT_EQ(*f->NextData(0), 0u);
  EXPECT_EQ(*f->NextData(100), 100u);
  EXPECT_EQ(*f->NextData(8192), 40960u);
  EXPECT_EQ(*f->NextData(50000), 100000u);
  EXPECT_EQ(*f->NextData(200000), 100000u);

  ASSERT_TRUE(f->PunchHole(10, 8182).ok());  // partial first block, whole second block
  EXPECT_EQ(*f->NextData(4096), 40960u);
  EXPECT_EQ(*f->NextData(0), 0u);
  std::string all = ReadAll(f.get());
  ASSERT_EQ(all.size(), 100000u);
  EXPECT_EQ(all.substr(0, 10), std::string(10, 'a'));
  EXPECT_EQ(all.substr(10, 40950), std::string(40950, '\0'));
  EXPECT_EQ(all.substr(40960, 100), std::string(100, 'b'));
  EXPECT_EQ(*f->Size(), 100000u);

  ASSERT_TRUE(f->PunchHole(0, 1 << 20).ok());  // past the end: size unchanged
  EXPECT_EQ(*f->Size(), 100000u);
  EXPECT_EQ(*f->NextData(0), 100000u);
}

TEST(SimEnvTest, SparseFilesDoNotAllocate) {
  SimEnv env;
  auto f = MustOpen(&env, "image", OpenMode::kCreate);
  constexpr uint64_t kTenGiB = uint64_t{10} << 30;
  ASSERT_TRUE(f->Truncate(kTenGiB).ok());
  ASSERT_TRUE(f->WriteAt(kTenGiB - 3, "end").ok());
  char buf[8];
  auto n = f->ReadAt(kTenGiB - 5, sizeof buf, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::string(buf, *n), std::string("\0\0end", 5));
  EXPECT_EQ(env.GetSpace(".")->free_bytes, SimEnv::kDefaultCapacity - kTenGiB);
  ASSERT_TRUE(f->Truncate(2).ok());
  ASSERT_TRUE(f->Truncate(kTenGiB).ok());  // the old tail must not come back
  n = f->ReadAt(kTenGiB - 5, sizeof buf, buf);
  EXPECT_EQ(std::string(buf, *n), std::string(5, '\0'));
}

TEST(SimEnvTest, SyncCountCountsFileSyncs) {
  SimEnv env;
  auto f = MustOpen(&env, "f", OpenMode::kCreate);
  EXPECT_EQ(env.sync_count(), 0u);
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(env.SyncDir(".").ok());
  EXPECT_EQ(env.sync_count(), 2u);
  env.FailAfter(0);
  EXPECT_EQ(f->Sync().code(), Code::kIoError);
  EXPECT_EQ(env.sync_count(), 2u);
}

TEST(SimEnvTest, ErrorCodes) {
  SimEnv env;
  EXPECT_EQ(env.OpenFile("missing", OpenMode::kRead).status().code(), Code::kNotFound);
  EXPECT_EQ(env.OpenFile("missing", OpenMode::kReadWrite).status().code(), Code::kNotFound);
  EXPECT_EQ(env.OpenFile("nodir/f", OpenMode::kCreate).status().code(), Code::kNotFound);
  ASSERT_TRUE(env.CreateDir("d/e").ok());
  MustOpen(&env, "d/f", OpenMode::kCreateNew);
  EXPECT_EQ(env.OpenFile("d/f", OpenMode::kCreateNew).status().code(), Code::kAlreadyExists);
  EXPECT_TRUE(env.OpenFile("d/f", OpenMode::kCreate).ok());
  EXPECT_EQ(env.OpenFile("d", OpenMode::kRead).status().code(), Code::kIoError);
  EXPECT_EQ(env.RemoveFile("d/missing").code(), Code::kNotFound);
  EXPECT_EQ(env.RemoveFile("d").code(), Code::kIoError);
  EXPECT_EQ(env.RemoveDir("d/missing").code(), Code::kNotFound);
  EXPECT_EQ(env.RemoveDir("d").code(), Code::kIoError);  // not empty
  EXPECT_EQ(env.RemoveDir("d/f").code(), Code::kIoError);  // not a directory
  EXPECT_EQ(env.Rename("d/missing", "d/x").code(), Code::kNotFound);
  EXPECT_EQ(env.Rename("d/f", "nodir/x").code(), Code::kNotFound);
  EXPECT_EQ(env.Rename("d/f", "d/e").code(), Code::kIoError);
  EXPECT_EQ(env.Rename("d/e", "d/x").code(), Code::kIoError);  // directories: unsupported
  EXPECT_EQ(env.ListDir("missing").status().code(), Code::kNotFound);
  EXPECT_EQ(env.ListDir("d/f").status().code(), Code::kIoError);
  EXPECT_EQ(env.SyncDir("missing").code(), Code::kNotFound);
  EXPECT_EQ(env.GetSpace("missing").status().code(), Code::kNotFound);
  EXPECT_EQ(env.CreateDir("d/f").code(), Code::kAlreadyExists);
  EXPECT_EQ(env.CreateDir("d/f/g").code(), Code::kAlreadyExists);
  auto ro = MustOpen(&env, "d/f", OpenMode::kRead);
  EXPECT_EQ(ro->WriteAt(0, "x").code(), Code::kIoError);
  EXPECT_EQ(ro->Truncate(0).code(), Code::kIoError);
}

TEST(SimEnvTest, DirectoriesListSortedAndRemove) {
  SimEnv env;
  ASSERT_TRUE(env.CreateDir("/data/vol/").ok());
  ASSERT_TRUE(env.CreateDir("/data/vol").ok());
  for (const char* name : {"/data/c", "/data/a", "/data/b"}) MustOpen(&env, name, OpenMode::kCreate);
  EXPECT_EQ(*env.ListDir("/data"), (std::vector<std::string>{"a", "b", "c", "vol"}));
  EXPECT_EQ(*env.ListDir("/"), std::vector<std::string>{"data"});
  EXPECT_TRUE(env.Exists("/data/vol"));
  ASSERT_TRUE(env.RemoveDir("/data/vol").ok());
  EXPECT_FALSE(env.Exists("/data/vol"));
}

TEST(SimEnvTest, RemovedButOpenFileStaysReadable) {
  SimEnv env;
  auto f = MakeDurableFile(&env, "still here");
  ASSERT_TRUE(env.RemoveFile("d/f").ok());
  EXPECT_EQ(ReadAll(f.get()), "still here");
  ASSERT_TRUE(f->WriteAt(0, "STILL").ok());
  EXPECT_EQ(ReadAll(f.get()), "STILL here");
}

TEST(SimEnvTest, ConcurrentWritersOnDisjointRanges) {
  SimEnv env;
  auto f = MustOpen(&env, "f", OpenMode::kCreate);
  constexpr int kThreads = 4;
  constexpr int kRecords = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRecords; ++i) {
        uint64_t offset = (static_cast<uint64_t>(t) * kRecords + i) * 4;
        EXPECT_TRUE(f->WriteAt(offset, std::string(4, static_cast<char>('a' + t))).ok());
        if (i % 100 == 0) {
          EXPECT_TRUE(f->Sync().ok());
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  std::string all = ReadAll(f.get());
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kRecords * 4));
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(all.substr(t * kRecords * 4, kRecords * 4),
              std::string(kRecords * 4, static_cast<char>('a' + t)));
  }
}

}  // namespace
}  // namespace ferry
