// The qemu launcher's process handling against a fake QEMU (a Python script that speaks
// enough QMP, writes its pidfile and console like QEMU). Real QEMU: tests/launch_qemu_test.sh.
#include "launch/qemu_launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "env/process.h"
#include "launch/launch_test_util.h"

namespace ferry::launch {
namespace {

using testing::ReadText;
using testing::TempDir;
using testing::WriteText;

// The fake's shell half fails at once (fast even on a loaded host); its Python half serves.
constexpr const char* kFakeQemu = R"SH(#!/bin/sh
if [ "$FAKE_QEMU_MODE" = fail ]; then
  echo "qemu-system-x86_64: warning: host doesn't support requested feature" >&2
  echo "qemu-system-x86_64: -drive file=nbd://127.0.0.1:1/x: Failed to connect: Connection refused" >&2
  exit 1
fi
exec python3 "$0.py" "$@"
)SH";

constexpr const char* kFakeQemuPy = R"PY(
import json, os, signal, socket, sys
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1]
mode = os.environ.get("FAKE_QEMU_MODE", "obedient")
pidfile = opt("-pidfile")
qmp = opt("-qmp")[len("unix:"):].split(",")[0]
console = open(opt("-serial")[len("file:"):], "w", buffering=1)
with open(pidfile, "w") as f:
    f.write("%d\n" % os.getpid())
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
srv = socket.socket(socket.AF_UNIX)
srv.bind(qmp)
srv.listen(1)
console.write("fake-qemu booting\nferry-guest: ready\n")
def leave():  # QEMU removes its pidfile on a clean exit
    console.write("fake-qemu: exit\n")
    os.unlink(pidfile)
    os.unlink(qmp)
    sys.exit(0)
while True:
    c, _ = srv.accept()
    f = c.makefile("rwb")
    c.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
    for line in f:
        cmd = json.loads(line)["execute"]
        c.sendall(b'{"return": {"status": "running", "running": true}}\r\n' if cmd == "query-status" else b'{"return": {}}\r\n')
        if cmd == "system_powerdown" and mode == "obedient":
            console.write("fake-qemu: power button\n")
            leave()
        if cmd == "quit" and mode != "stubborn":
            leave()
    c.close()
)PY";

class QemuLauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteText(tmp_ / "fake-qemu", kFakeQemu, /*executable=*/true);
    WriteText(tmp_ / "fake-qemu.py", kFakeQemuPy);
    config_.qemu_binary = tmp_ / "fake-qemu";
    config_.accelerator = "tcg";
    setenv("FAKE_QEMU_MODE", "obedient", 1);
  }
  void TearDown() override {
    // Never leave a fake QEMU behind.
    if (auto pid = ReadText(dir_ + "/qemu.pid"); !pid.empty()) (void)SignalProcess(std::stoi(pid), SIGKILL);
    unsetenv("FAKE_QEMU_MODE");
  }
  MachineSpec Spec() {
    MachineSpec s;
    s.name = "fake-1";
    s.disks = {"nbd://127.0.0.1:1/x"};
    s.network = {"off", "none", "", ""};
    s.console_regex = "^ferry-guest: ready$";
    return s;
  }
  MachineStatus StatusOf(Launcher& l) {
    auto st = l.Status(dir_);
    EXPECT_TRUE(st.ok()) << st.status().ToString();
    return st.ok() ? *st : MachineStatus{};
  }
  // The fake, like QEMU, may still be writing its pidfile (truncated, not yet written) when
  // a slow start made Start return before QMP answered.
  int Pid() {
    std::string text = ReadText(dir_ + "/qemu.pid");
    for (int i = 0; i < 500 && text.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      text = ReadText(dir_ + "/qemu.pid");
    }
    return std::stoi("0" + text);
  }
  // Start may return before QMP answers (a slow host: Python can take seconds to start);
  // Status says Starting until then.
  MachineStatus WaitRunning(Launcher& l) {
    MachineStatus st;
    for (int i = 0; i < 600; ++i) {
      st = StatusOf(l);
      if (st.state != PowerState::kStarting) break;
      EXPECT_NE(st.detail.find("QMP not answering"), std::string::npos) << st.detail;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(st.state, PowerState::kRunning) << st.detail;
    return st;
  }

  TempDir tmp_;
  const std::string dir_ = tmp_ / "m";
  LauncherConfig config_;
  ManualClock clock_;
};

TEST_F(QemuLauncherTest, StartStatusGracefulStop) {
  QemuLauncher l(config_, Env::Posix(), &clock_);
  EXPECT_EQ(l.Status(dir_).status().code(), Code::kNotFound);
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  const int pid = Pid();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(ProcessAlive(pid));
  // Idempotent: the running machine is kept.
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  EXPECT_EQ(Pid(), pid);

  MachineStatus st = WaitRunning(l);
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  EXPECT_EQ(Pid(), pid);
  EXPECT_EQ(st.accelerator, "tcg");
  EXPECT_EQ(st.detail, "QEMU pid " + std::to_string(pid) + ", TCG, status running");
  EXPECT_TRUE(st.probe_ok) << st.probe_detail;
  EXPECT_EQ(st.started_ns, clock_.NowNanos());
  const int64_t first_seen = clock_.NowNanos();
  EXPECT_EQ(st.running_ns, first_seen);
  clock_.Advance(5 * kNanosPerSecond);
  EXPECT_EQ(StatusOf(l).running_ns, first_seen) << "running_ns is when it was first seen running";

  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(l.Stop(dir_, /*graceful=*/true, 10000).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "the guest obeyed the button";
  EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_NE(ReadText(dir_ + "/console.log").find("fake-qemu: power button"), std::string::npos);
  st = StatusOf(l);
  EXPECT_EQ(st.state, PowerState::kStopped) << st.detail;
  EXPECT_EQ(st.running_ns, first_seen);
  EXPECT_TRUE(l.Stop(dir_, true, 1000).ok()) << "stopping a stopped machine succeeds";

  // A new launch forgets the last one's running time.
  clock_.Advance(kNanosPerSecond);
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  EXPECT_NE(Pid(), pid);
  EXPECT_EQ(WaitRunning(l).running_ns, clock_.NowNanos());
  ASSERT_TRUE(l.Remove(dir_).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_));
}

// Regression: QEMU (and Start's fallback) truncate the pidfile before writing the pid. Status
// read the empty file as "QEMU is not running", and Stop then left QEMU running.
TEST_F(QemuLauncherTest, PidfileBeingWrittenIsNotAStoppedMachine) {
  QemuLauncher l(config_, Env::Posix(), &clock_);
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  const int pid = Pid();
  ASSERT_GT(pid, 0);
  WaitRunning(l);
  WriteText(dir_ + "/qemu.pid", "");
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    WriteText(dir_ + "/qemu.pid", std::to_string(pid) + "\n");
  });
  const MachineStatus st = StatusOf(l);
  writer.join();
  EXPECT_EQ(st.state, PowerState::kRunning) << st.detail;
  ASSERT_TRUE(l.Stop(dir_, /*graceful=*/false, 0).ok());
  EXPECT_FALSE(ProcessAlive(pid));
}

TEST_F(QemuLauncherTest, ForcedStopQuits) {
  QemuLauncher l(config_, Env::Posix(), &clock_);
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  const int pid = Pid();
  WaitRunning(l);
  ASSERT_TRUE(l.Stop(dir_, /*graceful=*/false, 0).ok());
  EXPECT_FALSE(ProcessAlive(pid));
  const std::string console = ReadText(dir_ + "/console.log");
  EXPECT_EQ(console.find("power button"), std::string::npos) << "no power button when forced";
  EXPECT_NE(console.find("fake-qemu: exit"), std::string::npos) << "quit, not SIGKILL";
}

TEST_F(QemuLauncherTest, StubbornQemuIsKilled) {
  setenv("FAKE_QEMU_MODE", "stubborn", 1);
  QemuLauncher l(config_, Env::Posix(), &clock_);
  ASSERT_TRUE(l.Start(Spec(), dir_).ok());
  const int pid = Pid();
  WaitRunning(l);
  ASSERT_TRUE(l.Stop(dir_, /*graceful=*/true, 200).ok());
  EXPECT_FALSE(ProcessAlive(pid));
  EXPECT_EQ(ReadText(dir_ + "/console.log").find("fake-qemu: exit"), std::string::npos) << "it never left by itself";
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/qemu.pid")) << "the stale pidfile is removed";
  EXPECT_EQ(StatusOf(l).state, PowerState::kStopped);
}

TEST_F(QemuLauncherTest, QemuThatExitsAtOnceFailsStart) {
  setenv("FAKE_QEMU_MODE", "fail", 1);
  QemuLauncher l(config_, Env::Posix(), &clock_);
  Status s = l.Start(Spec(), dir_);
  ASSERT_EQ(s.code(), Code::kIoError) << s.ToString();
  EXPECT_NE(s.message().find("QEMU exited at once with status 1"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("Failed to connect: Connection refused"), std::string::npos) << s.ToString();
  MachineStatus st = StatusOf(l);
  EXPECT_EQ(st.state, PowerState::kFailed);
  EXPECT_NE(st.detail.find("Failed to connect"), std::string::npos) << st.detail;
  EXPECT_EQ(st.detail.find("warning"), std::string::npos) << "the error, not the warning: " << st.detail;
}

TEST_F(QemuLauncherTest, MissingSiteThingsAreFailedPrecondition) {
  LauncherConfig c = config_;
  c.qemu_binary = "no-such-qemu-binary";
  QemuLauncher missing(c, Env::Posix(), &clock_);
  Status s = missing.Start(Spec(), dir_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("no-such-qemu-binary"), std::string::npos) << s.ToString();
  c = config_;
  c.firmware = tmp_ / "no-such.rom";
  s = QemuLauncher(c, Env::Posix(), &clock_).Start(Spec(), dir_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  MachineSpec spec = Spec();
  spec.network = {"prod", "bridge", "ferry-no-such-br", ""};
  s = QemuLauncher(config_, Env::Posix(), &clock_).Start(spec, dir_);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("ferry-no-such-br"), std::string::npos) << s.ToString();
  spec = Spec();
  spec.kernel = tmp_ / "no-such-kernel";
  EXPECT_EQ(QemuLauncher(config_, Env::Posix(), &clock_).Start(spec, dir_).code(), Code::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir_)) << "nothing was created for a start that could not run";
}

TEST_F(QemuLauncherTest, ForwardedProbePortIsReported) {
  QemuLauncher l(config_, Env::Posix(), &clock_);
  MachineSpec s = Spec();
  s.network = {"default", "user", "", ""};
  s.tcp_port = 22;
  ASSERT_TRUE(l.Start(s, dir_).ok());
  MachineStatus st = WaitRunning(l);
  ASSERT_EQ(st.probe_address.rfind("127.0.0.1:", 0), 0u) << st.probe_address;
  EXPECT_GT(std::stoi(st.probe_address.substr(10)), 0);
  EXPECT_FALSE(st.probe_ok) << "nothing serves the forwarded port here: " << st.probe_detail;
  EXPECT_EQ(st.running_ns, 0);
  ASSERT_TRUE(l.Stop(dir_, false, 0).ok());
}

TEST(PowerStateTest, FromQmp) {
  EXPECT_EQ(PowerStateFromQmp("running"), PowerState::kRunning);
  EXPECT_EQ(PowerStateFromQmp("prelaunch"), PowerState::kStarting);
  EXPECT_EQ(PowerStateFromQmp("paused"), PowerState::kStarting);
  EXPECT_EQ(PowerStateFromQmp("inmigrate"), PowerState::kStarting);
  EXPECT_EQ(PowerStateFromQmp("shutdown"), PowerState::kStopped);
  EXPECT_EQ(PowerStateFromQmp("io-error"), PowerState::kFailed);
  EXPECT_EQ(PowerStateFromQmp("guest-panicked"), PowerState::kFailed);
  EXPECT_EQ(PowerStateFromQmp("internal-error"), PowerState::kFailed);
  EXPECT_STREQ(PowerStateName(PowerState::kRunning), "Running");
  EXPECT_STREQ(PowerStateName(PowerState::kStarting), "Starting");
  EXPECT_STREQ(PowerStateName(PowerState::kStopped), "Stopped");
  EXPECT_STREQ(PowerStateName(PowerState::kFailed), "Failed");
  EXPECT_STREQ(PowerStateName(PowerState::kUnknown), "Unknown");
}

}  // namespace
}  // namespace ferry::launch
