#include "env/process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "env/scratch_dir_test_util.h"

namespace ferry {
namespace {

class ProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }
  std::string Read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  test::ScratchDir scratch_{"ferry_process_test"};  // removed after every member below
  std::string dir_;
};

TEST_F(ProcessTest, RunCommandCapturesOutputAndExitCode) {
  auto r = RunCommand("echo out; echo err >&2; echo $FERRY_X; exit 3", {{"FERRY_X", "from env"}}, 5000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->succeeded());
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->output, "out\nerr\nfrom env\n");
  EXPECT_EQ(r->Describe(5000), "exited with 3");
  r = RunCommand("true", {}, 5000);
  EXPECT_TRUE(r->succeeded());
}

TEST_F(ProcessTest, RunCommandTimeoutKillsTheWholeGroup) {
  // The background child holds the pipe open: the group kill must end it too.
  const std::string marker = dir_ + "/survived";
  auto start = std::chrono::steady_clock::now();
  auto r = RunCommand("(sleep 1; touch " + marker + ") & sleep 30", {}, 300);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(r->Describe(300), "ran past its timeout of 300 ms and was killed");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_FALSE(std::filesystem::exists(marker)) << "a child of the timed-out command lived on";
}

TEST_F(ProcessTest, RunCommandSignalAndStatus) {
  auto r = RunCommand("kill -9 $$", {}, 5000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_EQ(r->term_signal, 9);
  Status s = CommandStatus("hook", "kill -9 $$", *r, 5000);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_EQ(s.message(), "hook `kill -9 $$` was killed by signal 9");
  r = RunCommand("echo why; exit 2", {}, 5000);
  s = CommandStatus("hook", "x", *r, 5000);
  EXPECT_EQ(s.message(), "hook `x` exited with 2: why\n");
  r = RunCommand("sleep 5", {}, 100);
  EXPECT_EQ(CommandStatus("hook", "sleep 5", *r, 100).code(), Code::kAborted);
}

TEST_F(ProcessTest, RunCommandDoesNotLeakIgnoredSignals) {
  // An ignored SIGPIPE in the caller would survive exec and break `yes | head`.
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old);
  auto r = RunCommand("yes | head -1; echo \"${PIPESTATUS:-done}\"", {}, 5000);
  sigaction(SIGPIPE, &old, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->output, "y\ndone\n");
}

TEST_F(ProcessTest, FindProgram) {
  EXPECT_EQ(*FindProgram("/bin/sh"), "/bin/sh");
  auto sh = FindProgram("sh");
  ASSERT_TRUE(sh.ok());
  EXPECT_EQ(sh->substr(sh->size() - 3), "/sh");
  EXPECT_EQ(FindProgram("ferry-no-such-program").status().code(), Code::kNotFound);
  EXPECT_EQ(FindProgram(dir_ + "/nothing").status().code(), Code::kNotFound);
}

TEST_F(ProcessTest, SpawnDetachedOutlivesAndIsNoChild) {
  const std::string log = dir_ + "/log";
  auto p = SpawnDetached({"sh", "-c", "echo started; echo to-stderr >&2; exec sleep 30"}, log, 5000,
                         [&] { return std::filesystem::file_size(log) > 0; });
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->exited);
  ASSERT_GT(p->pid, 0);
  EXPECT_TRUE(ProcessAlive(p->pid));
  EXPECT_NE(getsid(p->pid), getsid(0)) << "a session of its own";
  EXPECT_NE(getppid(), p->pid);
  auto argv = ProcessCommandLine(p->pid);
  ASSERT_TRUE(argv.ok());
  EXPECT_EQ((*argv)[0], "sleep");
  // Not our child: waitpid has nothing to wait for.
  EXPECT_EQ(waitpid(p->pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
  ASSERT_TRUE(SignalProcess(p->pid, SIGKILL).ok());
  for (int i = 0; i < 100 && ProcessAlive(p->pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(ProcessAlive(p->pid));
  EXPECT_EQ(Read("log"), "started\nto-stderr\n");
}

TEST_F(ProcessTest, SpawnDetachedReportsAnEarlyExit) {
  auto p = SpawnDetached({"sh", "-c", "echo bad option >&2; exit 4"}, dir_ + "/log", 5000, [] { return false; });
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->exited);
  EXPECT_EQ(p->exit_code, 4);
  EXPECT_EQ(Read("log"), "bad option\n");
  p = SpawnDetached({"sh", "-c", "kill -9 $$"}, dir_ + "/log", 5000, [] { return false; });
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->exited);
  EXPECT_EQ(p->term_signal, 9);
}

TEST_F(ProcessTest, SpawnDetachedStopsWatchingAfterTheWindow) {
  auto start = std::chrono::steady_clock::now();
  auto p = SpawnDetached({"sleep", "30"}, dir_ + "/log", 200, nullptr);
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->exited);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(ProcessAlive(p->pid));
  (void)SignalProcess(p->pid, SIGKILL);
}

TEST_F(ProcessTest, SpawnDetachedMissingProgram) {
  auto p = SpawnDetached({"ferry-no-such-program"}, dir_ + "/log", 1000, nullptr);
  EXPECT_EQ(p.status().code(), Code::kNotFound);
  std::ofstream(dir_ + "/not-exec") << "x";
  p = SpawnDetached({dir_ + "/not-exec"}, dir_ + "/log", 1000, nullptr);
  EXPECT_EQ(p.status().code(), Code::kNotFound);
}

TEST_F(ProcessTest, ProcessAliveAndCommandLine) {
  EXPECT_TRUE(ProcessAlive(getpid()));
  EXPECT_FALSE(ProcessAlive(0));
  EXPECT_FALSE(ProcessAlive(-1));
  EXPECT_EQ(ProcessCommandLine(0).status().code(), Code::kNotFound);
  // A zombie (exited, not reaped) is not alive.
  pid_t child = fork();
  if (child == 0) _exit(0);
  for (int i = 0; i < 100 && ProcessAlive(child); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(ProcessAlive(child));
  waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace ferry
