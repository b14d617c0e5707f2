#include "launch/exec_launcher.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "launch/launch_test_util.h"

namespace ferry::launch {
namespace {

using testing::ReadText;
using testing::TempDir;

class ExecLauncherTest : public ::testing::Test {
 protected:
  MachineSpec Spec() {
    MachineSpec s;
    s.name = "vm-7";
    s.disks = {"nbd://127.0.0.1:10809/vm-7"};
    s.network.name = "default";
    return s;
  }
  std::unique_ptr<Launcher> Make(LauncherConfig c) {
    c.kind = "exec";
    if (c.command_timeout_ms == 60000) c.command_timeout_ms = 5000;
    auto l = MakeLauncher(c);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? std::move(l).value() : nullptr;
  }
  MachineStatus StatusOf(Launcher& l) {
    auto st = l.Status(dir_);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : MachineStatus{};
  }

  TempDir tmp_;
  const std::string dir_ = tmp_ / "m";
  // A stand-in for a hypervisor: the "machine" runs while this file exists.
  const std::string state_ = tmp_ / "state";
};

TEST_F(ExecLauncherTest, StartStatusStopWithRealCommands) {
  LauncherConfig c;
  c.start_command = "echo starting {name} with {disks}; echo $FERRY_ACTION:$FERRY_MACHINE_NAME:$FERRY_DISK0; touch " + state_;
  c.status_command = "test -e " + state_ + " && exit 0; exit 3";
  c.stop_command = "echo stop graceful=$FERRY_GRACEFUL timeout=$FERRY_TIMEOUT_MS; rm " + state_;
  auto l = Make(c);
  ASSERT_TRUE(l);
  EXPECT_EQ(l->Status(dir_).status().code(), Code::kNotFound);
  ASSERT_TRUE(l->Start(Spec(), dir_).ok());
  MachineStatus st = StatusOf(*l);
  EXPECT_EQ(st.state, PowerState::kRunning) << st.detail;
  EXPECT_TRUE(st.probe_ok) << "no probe set";
  EXPECT_GT(st.started_ns, 0);
  EXPECT_GT(st.running_ns, 0);
  const std::string console = ReadText(dir_ + "/console.log");
  EXPECT_NE(console.find("starting vm-7 with nbd://127.0.0.1:10809/vm-7\n"), std::string::npos) << console;
  EXPECT_NE(console.find("start:vm-7:nbd://127.0.0.1:10809/vm-7\n"), std::string::npos) << console;

  ASSERT_TRUE(l->Stop(dir_, true, 1234).ok());
  EXPECT_NE(ReadText(dir_ + "/console.log").find("stop graceful=1 timeout=1234"), std::string::npos);
  st = StatusOf(*l);
  EXPECT_EQ(st.state, PowerState::kStopped) << st.detail;
  EXPECT_TRUE(l->Stop(dir_, true, 0).ok()) << "stopping a stopped machine succeeds";
  int64_t next = 0;
  auto text = l->Console(dir_, 0, 1 << 20, &next);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, ReadText(dir_ + "/console.log"));
  EXPECT_EQ(next, static_cast<int64_t>(text->size()));
}

TEST_F(ExecLauncherTest, StatusExitCodes) {
  const std::string code = tmp_ / "code";
  LauncherConfig c;
  c.start_command = "true";
  c.status_command = "echo status says $(cat " + code + "); exit $(cat " + code + ")";
  auto l = Make(c);
  testing::WriteText(code, "0");
  ASSERT_TRUE(l->Start(Spec(), dir_).ok());
  EXPECT_EQ(StatusOf(*l).state, PowerState::kRunning);
  testing::WriteText(code, "3");
  EXPECT_EQ(StatusOf(*l).state, PowerState::kStopped);
  testing::WriteText(code, "4");
  MachineStatus st = StatusOf(*l);
  EXPECT_EQ(st.state, PowerState::kUnknown);
  EXPECT_NE(st.detail.find("exited with 4"), std::string::npos) << st.detail;
  EXPECT_NE(st.detail.find("status says 4"), std::string::npos) << st.detail;
  EXPECT_FALSE(st.probe_ok);
  testing::WriteText(code, "1");
  EXPECT_EQ(StatusOf(*l).state, PowerState::kUnknown);
}

TEST_F(ExecLauncherTest, FailedStartIsIoErrorWithCodeAndOutput) {
  LauncherConfig c;
  c.start_command = "echo the hypervisor is full >&2; exit 7";
  auto l = Make(c);
  Status s = l->Start(Spec(), dir_);
  ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
  EXPECT_NE(s.message().find("exited with 7"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("the hypervisor is full"), std::string::npos) << s.ToString();
  MachineStatus st = StatusOf(*l);
  EXPECT_EQ(st.state, PowerState::kFailed);
  EXPECT_NE(st.detail.find("exited with 7"), std::string::npos) << st.detail;
  EXPECT_TRUE(l->Stop(dir_, true, 0).ok()) << "nothing runs: nothing to stop";
}

TEST_F(ExecLauncherTest, StartTimeoutKillsTheCommand) {
  LauncherConfig c;
  c.start_command = "sleep 30";
  c.command_timeout_ms = 300;
  auto l = Make(c);
  Status s = l->Start(Spec(), dir_);
  ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
  EXPECT_NE(s.message().find("ran past its timeout of 300 ms"), std::string::npos) << s.ToString();
}

TEST_F(ExecLauncherTest, WithoutStatusCommandRunningUntilStopped) {
  const std::string starts = tmp_ / "starts";
  LauncherConfig c;
  c.start_command = "echo x >> " + starts;
  c.stop_command = "true";
  auto l = Make(c);
  ASSERT_TRUE(l->Start(Spec(), dir_).ok());
  EXPECT_EQ(StatusOf(*l).state, PowerState::kRunning);
  ASSERT_TRUE(l->Start(Spec(), dir_).ok());
  EXPECT_EQ(ReadText(starts), "x\n") << "a second Start of a running machine starts nothing";
  ASSERT_TRUE(l->Stop(dir_, false, 0).ok());
  EXPECT_EQ(StatusOf(*l).state, PowerState::kStopped);
  ASSERT_TRUE(l->Start(Spec(), dir_).ok());
  EXPECT_EQ(ReadText(starts), "x\nx\n") << "a stopped machine starts again";
  ASSERT_TRUE(l->Remove(dir_).ok());
  EXPECT_EQ(l->Status(dir_).status().code(), Code::kNotFound);
}

TEST_F(ExecLauncherTest, WithoutStopCommandStopIsRefused) {
  LauncherConfig c;
  c.start_command = "true";
  auto l = Make(c);
  ASSERT_TRUE(l->Start(Spec(), dir_).ok());
  Status s = l->Stop(dir_, true, 0);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(l->Remove(dir_).code(), Code::kFailedPrecondition) << "it may still run";
  EXPECT_EQ(StatusOf(*l).state, PowerState::kRunning);
}

TEST_F(ExecLauncherTest, ConsoleProbeReadsTheCommandsOutput) {
  LauncherConfig c;
  c.start_command = "echo booting";
  c.status_command = "test -e " + state_ + " && echo login: ready; exit 0";
  auto l = Make(c);
  MachineSpec s = Spec();
  s.console_regex = "^login: (ready|ok)$";
  ASSERT_TRUE(l->Start(s, dir_).ok());
  MachineStatus st = StatusOf(*l);
  EXPECT_EQ(st.state, PowerState::kRunning);
  EXPECT_FALSE(st.probe_ok) << st.probe_detail;
  EXPECT_EQ(st.running_ns, 0);
  testing::WriteText(state_, "");
  st = StatusOf(*l);
  EXPECT_TRUE(st.probe_ok) << st.probe_detail;
  EXPECT_GT(st.running_ns, 0);
}

TEST_F(ExecLauncherTest, BadTemplatesAreRefusedAtMake) {
  LauncherConfig c;
  c.kind = "exec";
  c.start_command = "virsh start {domain}";
  auto l = MakeLauncher(c);
  ASSERT_EQ(l.status().code(), Code::kInvalidArgument);
  EXPECT_NE(l.status().message().find("{domain}"), std::string::npos);
  c.start_command = "true";
  c.stop_command = "virsh destroy {nme}";
  l = MakeLauncher(c);
  ASSERT_EQ(l.status().code(), Code::kInvalidArgument);
  EXPECT_NE(l.status().message().find("launcher.stop_command"), std::string::npos);
  c.start_command = "";
  c.stop_command = "";
  EXPECT_EQ(MakeLauncher(c).status().code(), Code::kFailedPrecondition);
}

TEST_F(ExecLauncherTest, InvalidSpecRunsNothing) {
  const std::string ran = tmp_ / "ran";
  LauncherConfig c;
  c.start_command = "touch " + ran + " {disk3}";
  auto l = Make(c);
  MachineSpec s = Spec();
  EXPECT_EQ(l->Start(s, dir_).code(), Code::kInvalidArgument);
  s.cpus = 0;
  EXPECT_EQ(l->Start(s, dir_).code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(ran));
}

}  // namespace
}  // namespace ferry::launch
