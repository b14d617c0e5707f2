#include "launch/probe.h"

#include <gtest/gtest.h>

#include <thread>

#include "env/socket.h"
#include "launch/launch_test_util.h"

namespace ferry::launch {
namespace {

using testing::TempDir;
using testing::WriteText;

TEST(ProbeTest, NoProbeIsOk) {
  ProbeResult r = RunProbe(Env::Posix(), {});
  EXPECT_TRUE(r.ok);
  EXPECT_EQ(r.detail, "no probe");
}

TEST(ProbeTest, ConsoleRegexMatchesALine) {
  TempDir tmp;
  const std::string console = tmp / "console.log";
  ProbeTarget t{console, "^ferry-guest: ready$", 0, ""};
  ProbeResult r = RunProbe(Env::Posix(), t);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("no output yet"), std::string::npos) << r.detail;

  WriteText(console, "booting\r\nnot ferry-guest: ready\nferry-guest: ready soon\n");
  r = RunProbe(Env::Posix(), t);
  EXPECT_FALSE(r.ok) << "anchored: no line is exactly that";
  EXPECT_NE(r.detail.find("3 lines"), std::string::npos) << r.detail;

  WriteText(console, "booting\r\nferry-guest: ready\r\nwrote 0\n");
  r = RunProbe(Env::Posix(), t);
  EXPECT_TRUE(r.ok) << r.detail;
  EXPECT_EQ(r.detail, "console matched '^ferry-guest: ready$' at line 2");

  // POSIX extended syntax; a last line without its newline counts.
  WriteText(console, "a\nlogin: ok");
  r = RunProbe(Env::Posix(), {console, "login: (ready|ok)", 0, ""});
  EXPECT_TRUE(r.ok) << r.detail;
  r = RunProbe(Env::Posix(), {console, "login: (ready", 0, ""});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("invalid"), std::string::npos) << r.detail;
}

TEST(ProbeTest, ConsoleLinesAcrossReadChunks) {
  TempDir tmp;
  const std::string console = tmp / "console.log";
  std::string text;
  while (text.size() < (200u << 10)) text += "wrote " + std::to_string(text.size()) + "\n";
  WriteText(console, text + "the marker line\n");
  ProbeResult r = RunProbe(Env::Posix(), {console, "^the marker", 0, ""});
  EXPECT_TRUE(r.ok) << r.detail;
}

// A TCP server on 127.0.0.1 that accepts `connections` connections and sends banner to each
// (nothing when empty), holding each open for hold_ms.
class Server {
 public:
  Server(std::string banner, int connections, int hold_ms) {
    auto l = Listener::Tcp("127.0.0.1", 0);
    EXPECT_TRUE(l.ok());
    listener_ = std::move(*l);
    thread_ = std::thread([this, banner, connections, hold_ms] {
      for (int i = 0; i < connections; ++i) {
        auto s = listener_->Accept();
        if (!s.ok()) return;
        if (!banner.empty()) (void)(*s)->WriteAll(banner);
        std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
      }
    });
  }
  ~Server() {
    listener_->Shutdown();
    thread_.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(listener_->port()); }

 private:
  std::unique_ptr<Listener> listener_;
  std::thread thread_;
};

TEST(ProbeTest, TcpWithBannerIsOk) {
  Server server("SSH-2.0-OpenSSH_9.2\r\n", 1, 0);
  ProbeResult r = RunProbe(Env::Posix(), {"", "", 22, server.address()});
  EXPECT_TRUE(r.ok) << r.detail;
  EXPECT_EQ(r.detail, "tcp " + server.address() + " sent 'SSH-2.0-OpenSSH_9.2'");
}

TEST(ProbeTest, TcpAcceptedButSilentIsNotOk) {
  // What QEMU's user-mode forwarding does when nothing listens in the guest: the host side
  // is accepted, nothing arrives.
  Server server("", 1, 1500);
  auto start = std::chrono::steady_clock::now();
  ProbeResult r = RunProbe(Env::Posix(), {"", "", 22, server.address()});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("sent nothing within 1 s"), std::string::npos) << r.detail;
  EXPECT_LT(took, std::chrono::milliseconds(1900));
}

TEST(ProbeTest, TcpAcceptedThenClosedIsNotOk) {
  Server server("", 1, 0);
  ProbeResult r = RunProbe(Env::Posix(), {"", "", 22, server.address()});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("before the machine sent a byte"), std::string::npos) << r.detail;
}

TEST(ProbeTest, TcpNothingListeningIsNotOk) {
  std::string address;
  {
    Server gone("", 0, 0);
    address = gone.address();
  }
  ProbeResult r = RunProbe(Env::Posix(), {"", "", 22, address});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("refused"), std::string::npos) << r.detail;
  r = RunProbe(Env::Posix(), {"", "", 22, ""});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.detail.find("no address"), std::string::npos) << r.detail;
}

TEST(ProbeTest, BothMustPass) {
  TempDir tmp;
  WriteText(tmp / "console.log", "ready\n");
  Server server("hello\n", 2, 0);
  ProbeResult r = RunProbe(Env::Posix(), {tmp / "console.log", "^ready", 7, server.address()});
  EXPECT_TRUE(r.ok) << r.detail;
  EXPECT_NE(r.detail.find("; tcp"), std::string::npos) << r.detail;
  r = RunProbe(Env::Posix(), {tmp / "console.log", "^not yet", 7, server.address()});
  EXPECT_FALSE(r.ok) << r.detail;
}

}  // namespace
}  // namespace ferry::launch
