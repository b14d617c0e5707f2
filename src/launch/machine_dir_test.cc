#include "launch/machine_dir.h"

#include <gtest/gtest.h>

#include "launch/launch_test_util.h"

namespace ferry::launch {
namespace {

using testing::ReadText;
using testing::TempDir;
using testing::WriteText;

TEST(MachineDirTest, RecordRoundTrips) {
  TempDir tmp;
  Env* env = Env::Posix();
  MachineRecord r;
  r.spec.name = "x";
  r.spec.disks = {"nbd://a:1/x", "nbd://a:1/y"};
  r.spec.cpus = 3;
  r.spec.memory_mib = 300;
  r.spec.network = {"prod", "bridge", "br0", "10.1.0.0/16"};
  r.spec.ip_address = "10.1.2.3";
  r.spec.mac_address = "52:54:00:01:02:03";
  r.spec.kernel = "/k";
  r.spec.initrd = "/i";
  r.spec.cmdline = "quiet";
  r.spec.tcp_port = 22;
  r.spec.console_regex = "login:";
  r.kind = "qemu";
  r.accelerator = "kvm";
  r.host_port = 40000;
  r.started_ns = 17;
  r.stopped_ns = 18;
  r.failure = "why";
  ASSERT_TRUE(WriteRecord(env, tmp.path(), r).ok());
  auto back = ReadRecord(env, tmp.path());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(SpecToJson(back->spec), SpecToJson(r.spec));
  EXPECT_EQ(back->kind, "qemu");
  EXPECT_EQ(back->accelerator, "kvm");
  EXPECT_EQ(back->host_port, 40000);
  EXPECT_EQ(back->started_ns, 17);
  EXPECT_EQ(back->stopped_ns, 18);
  EXPECT_EQ(back->failure, "why");
}

TEST(MachineDirTest, MissingBadAndFutureRecords) {
  TempDir tmp;
  Env* env = Env::Posix();
  EXPECT_EQ(ReadRecord(env, tmp.path()).status().code(), Code::kNotFound);
  WriteText(tmp / "spec.json", "{not json");
  EXPECT_EQ(ReadRecord(env, tmp.path()).status().code(), Code::kDataLoss);
  WriteText(tmp / "spec.json", R"({"version": 2, "spec": {}})");
  auto r = ReadRecord(env, tmp.path());
  EXPECT_EQ(r.status().code(), Code::kDataLoss);
  EXPECT_NE(r.status().message().find("unknown version 2"), std::string::npos) << r.status().ToString();
  WriteText(tmp / "spec.json", R"({"version": 1, "spec": {"cpus": "two"}})");
  r = ReadRecord(env, tmp.path());
  EXPECT_EQ(r.status().code(), Code::kDataLoss);
  EXPECT_NE(r.status().message().find("'cpus'"), std::string::npos) << r.status().ToString();
}

TEST(MachineDirTest, SpecFromJsonKeepsDefaults) {
  auto s = SpecFromJson(nlohmann::json::parse(R"({"name": "a", "disks": ["nbd://h:1/a"]})"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->cpus, 1);
  EXPECT_EQ(s->memory_mib, 512);
  EXPECT_EQ(s->network.mode, "user");
  EXPECT_EQ(SpecFromJson(nlohmann::json::parse(R"({"disks": "nbd://h:1/a"})")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SpecFromJson(nlohmann::json::parse(R"([1])")).status().code(), Code::kInvalidArgument);
}

TEST(MachineDirTest, RunningTimeIsKeptOnce) {
  TempDir tmp;
  Env* env = Env::Posix();
  EXPECT_EQ(RunningSince(env, tmp.path()), 0);
  EXPECT_EQ(*NoteRunning(env, tmp.path(), 100), 100);
  EXPECT_EQ(*NoteRunning(env, tmp.path(), 200), 100);
  EXPECT_EQ(RunningSince(env, tmp.path()), 100);
  ASSERT_TRUE(ClearRunning(env, tmp.path()).ok());
  ASSERT_TRUE(ClearRunning(env, tmp.path()).ok());
  EXPECT_EQ(*NoteRunning(env, tmp.path(), 300), 300);
}

TEST(MachineDirTest, ConsoleReads) {
  TempDir tmp;
  Env* env = Env::Posix();
  int64_t next = -1;
  EXPECT_EQ(ReadConsole(env, tmp / "nope", 0, 10, &next).status().code(), Code::kNotFound);
  auto text = ReadConsole(env, tmp.path(), 0, 10, &next);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "");
  EXPECT_EQ(next, 0);
  ASSERT_TRUE(AppendConsole(env, tmp.path(), "hello ").ok());
  ASSERT_TRUE(AppendConsole(env, tmp.path(), "world\n").ok());
  text = ReadConsole(env, tmp.path(), 0, 5, &next);
  EXPECT_EQ(*text, "hello");
  EXPECT_EQ(next, 5);
  text = ReadConsole(env, tmp.path(), next, 100, &next);
  EXPECT_EQ(*text, " world\n");
  EXPECT_EQ(next, 12);
  text = ReadConsole(env, tmp.path(), 12, 100, &next);
  EXPECT_EQ(*text, "");
  EXPECT_EQ(next, 12);
  EXPECT_EQ(ReadConsole(env, tmp.path(), 13, 100, &next).status().code(), Code::kOutOfRange);
}

TEST(MachineDirTest, TailLinesAndRemoveTree) {
  TempDir tmp;
  Env* env = Env::Posix();
  WriteText(tmp / "log", "one\ntwo\nthree\nfour\n");
  EXPECT_EQ(TailLines(env, tmp / "log", 2), "three\nfour");
  EXPECT_EQ(TailLines(env, tmp / "log", 10), "one\ntwo\nthree\nfour");
  EXPECT_EQ(TailLines(env, tmp / "missing", 2), "");
  ASSERT_TRUE(env->CreateDir(tmp / "m/sub").ok());
  WriteText(tmp / "m/a", "a");
  WriteText(tmp / "m/sub/b", "b");
  ASSERT_TRUE(RemoveTree(env, tmp / "m").ok());
  EXPECT_FALSE(env->Exists(tmp / "m"));
  EXPECT_TRUE(RemoveTree(env, tmp / "m").ok());
}

TEST(MachineDirTest, AbsoluteDir) {
  EXPECT_EQ(AbsoluteDir("/a/b/../c/"), "/a/c");
  EXPECT_EQ(AbsoluteDir("rel").front(), '/');
}

}  // namespace
}  // namespace ferry::launch
