#include "launch/qmp.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "launch/launch_test_util.h"

namespace ferry::launch {
namespace {

using testing::TempDir;

// Reads one line from the client ("" at EOF).
std::string ReadLine(Socket& s) {
  std::string line;
  char c;
  while (s.ReadFull(&c, 1).ok()) {
    if (c == '\n') return line;
    line += c;
  }
  return line;
}

// A scripted QMP server for one connection on a unix socket.
class FakeQemu {
 public:
  explicit FakeQemu(const std::string& path, std::function<void(Socket&)> script) {
    auto l = Listener::Unix(path);
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    listener_ = std::move(*l);
    thread_ = std::thread([this, script] {
      auto s = listener_->Accept();
      if (s.ok()) script(**s);
    });
  }
  ~FakeQemu() {
    listener_->Shutdown();
    thread_.join();
  }

 private:
  std::unique_ptr<Listener> listener_;
  std::thread thread_;
};

constexpr const char* kGreeting = R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}})";

// Greets and answers qmp_capabilities, as QEMU does.
void Handshake(Socket& s) {
  (void)s.WriteAll(std::string(kGreeting) + "\r\n");
  EXPECT_EQ(ReadLine(s), R"({"execute":"qmp_capabilities"})");
  (void)s.WriteAll("{\"return\": {}}\r\n");
}

TEST(QmpTest, QueryStatusSkipsEvents) {
  TempDir tmp;
  FakeQemu qemu(tmp / "qmp.sock", [](Socket& s) {
    Handshake(s);
    EXPECT_EQ(ReadLine(s), R"({"execute":"query-status"})");
    (void)s.WriteAll(R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RTC_CHANGE", "data": {"offset": 0}})"
                     "\r\n"
                     R"({"return": {"status": "running", "singlestep": false, "running": true}})"
                     "\r\n");
    EXPECT_EQ(ReadLine(s), R"({"execute":"system_powerdown"})");
    (void)s.WriteAll("{\"return\": {}}\r\n{\"timestamp\": {}, \"event\": \"POWERDOWN\"}\r\n");
    EXPECT_EQ(ReadLine(s), R"({"execute":"quit"})");
    // QEMU may exit before it answers.
  });
  auto c = QmpClient::Connect(tmp / "qmp.sock", 2000);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto st = (*c)->QueryStatus();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(*st, "running");
  EXPECT_TRUE((*c)->SystemPowerdown().ok());
  EXPECT_TRUE((*c)->Quit().ok());
}

TEST(QmpTest, ErrorReplyIsFailedPrecondition) {
  TempDir tmp;
  FakeQemu qemu(tmp / "qmp.sock", [](Socket& s) {
    Handshake(s);
    ReadLine(s);
    (void)s.WriteAll(R"({"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}})" "\n");
  });
  auto c = QmpClient::Connect(tmp / "qmp.sock", 2000);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto r = (*c)->Execute("nope");
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(r.status().message(), "QMP nope: CommandNotFound: The command nope has not been found");
}

TEST(QmpTest, SilentQemuTimesOut) {
  TempDir tmp;
  FakeQemu qemu(tmp / "qmp.sock", [](Socket& s) { ReadLine(s); });  // never greets
  auto start = std::chrono::steady_clock::now();
  auto c = QmpClient::Connect(tmp / "qmp.sock", 300);
  EXPECT_EQ(c.status().code(), Code::kUnavailable) << c.status().ToString();
  EXPECT_NE(c.status().message().find("within 300 ms"), std::string::npos) << c.status().ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
}

TEST(QmpTest, SilentAfterHandshakeTimesOutPerCommand) {
  TempDir tmp;
  FakeQemu qemu(tmp / "qmp.sock", [](Socket& s) {
    Handshake(s);
    ReadLine(s);
    ReadLine(s);  // holds the connection open, answers nothing
  });
  auto c = QmpClient::Connect(tmp / "qmp.sock", 300);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->QueryStatus().status().code(), Code::kUnavailable);
}

TEST(QmpTest, ClosedConnectionIsAborted) {
  TempDir tmp;
  FakeQemu qemu(tmp / "qmp.sock", [](Socket& s) {
    Handshake(s);
    ReadLine(s);
    s.Shutdown();
  });
  auto c = QmpClient::Connect(tmp / "qmp.sock", 2000);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ((*c)->QueryStatus().status().code(), Code::kAborted);
}

TEST(QmpTest, GarbageIsIoError) {
  TempDir tmp;
  FakeQemu qemu(tmp / "qmp.sock", [](Socket& s) { (void)s.WriteAll("SSH-2.0-not-qmp\n"); ReadLine(s); });
  auto c = QmpClient::Connect(tmp / "qmp.sock", 2000);
  EXPECT_EQ(c.status().code(), Code::kIoError) << c.status().ToString();
}

TEST(QmpTest, NoSocketIsUnavailable) {
  TempDir tmp;
  auto c = QmpClient::Connect(tmp / "qmp.sock", 300);
  EXPECT_EQ(c.status().code(), Code::kUnavailable) << c.status().ToString();
}

}  // namespace
}  // namespace ferry::launch
