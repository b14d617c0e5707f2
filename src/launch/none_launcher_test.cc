#include "launch/none_launcher.h"

#include <gtest/gtest.h>

#include "launch/launch_test_util.h"

namespace ferry::launch {
namespace {

using testing::TempDir;

TEST(NoneLauncherTest, RunsFromStartUntilStop) {
  TempDir tmp;
  ManualClock clock;
  NoneLauncher l(Env::Posix(), &clock);
  const std::string dir = tmp / "m";
  MachineSpec s;
  s.name = "n-1";
  s.disks = {"nbd://h:1/n-1"};
  s.console_regex = "never matches";
  s.tcp_port = 22;
  EXPECT_EQ(l.Status(dir).status().code(), Code::kNotFound);
  ASSERT_TRUE(l.Start(s, dir).ok());
  auto st = l.Status(dir);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, PowerState::kRunning);
  EXPECT_TRUE(st->probe_ok) << "the probe is not run";
  EXPECT_EQ(st->probe_detail, "launcher none: the disks are exported, nothing was started");
  EXPECT_EQ(st->started_ns, clock.NowNanos());
  EXPECT_EQ(st->running_ns, clock.NowNanos());
  clock.Advance(10);
  ASSERT_TRUE(l.Start(s, dir).ok());
  EXPECT_EQ(l.Status(dir)->started_ns, clock.NowNanos() - 10) << "idempotent";
  int64_t next = 0;
  EXPECT_EQ(*l.Console(dir, 0, 100, &next), "");
  ASSERT_TRUE(l.Stop(dir, true, 1000).ok());
  EXPECT_EQ(l.Status(dir)->state, PowerState::kStopped);
  EXPECT_TRUE(l.Stop(dir, true, 1000).ok());
  ASSERT_TRUE(l.Start(s, dir).ok());
  EXPECT_EQ(l.Status(dir)->state, PowerState::kRunning);
  ASSERT_TRUE(l.Remove(dir).ok());
  EXPECT_EQ(l.Status(dir).status().code(), Code::kNotFound);
  s.name = "bad name";
  EXPECT_EQ(l.Start(s, dir).code(), Code::kInvalidArgument);
}

TEST(MakeLauncherTest, Kinds) {
  LauncherConfig c;
  EXPECT_EQ((*MakeLauncher(c))->kind(), "qemu");
  c.kind = "none";
  EXPECT_EQ((*MakeLauncher(c))->kind(), "none");
  c.kind = "exec";
  c.start_command = "true";
  EXPECT_EQ((*MakeLauncher(c))->kind(), "exec");
  c.kind = "libvirt";
  auto l = MakeLauncher(c);
  ASSERT_EQ(l.status().code(), Code::kInvalidArgument);
  EXPECT_NE(l.status().message().find("'libvirt'"), std::string::npos);
  c.kind = "qemu";
  c.accelerator = "xen";
  EXPECT_EQ(MakeLauncher(c).status().code(), Code::kInvalidArgument);
  c.accelerator = "auto";
  c.command_timeout_ms = 0;
  EXPECT_EQ(MakeLauncher(c).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::launch
