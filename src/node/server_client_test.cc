// ServerClient against a test peer: a small HTTP server in the test that records the
// registration and heartbeat requests and answers as told (it stands for the control plane's
// "Nodes" routes, docs/protocols/server-api.md).
#include "node/server_client.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <thread>

#include "env/scratch_dir_test_util.h"

namespace ferry::node {
namespace {

using nlohmann::json;

bool Eventually(const std::function<bool()>& cond, int ms = 10'000) {
  for (int i = 0; i < ms / 5; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

struct Heartbeat {
  std::string node_id, authorization;
  json body;
};

class TestServer {
 public:
  TestServer() {
    http_.Post(R"((/prefix)?/api/v1/nodes/register)", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard l(mu_);
      registers_.push_back(json::parse(req.body));
      res.status = register_status_;
      res.set_content(register_status_ == 201
                          ? R"({"node": {"id": "node-7", "name": "n1"}, "secret": "s3cret"})"
                          : R"({"error": {"code": "Unavailable", "message": "not now"}})",
                      "application/json");
    });
    http_.Post(R"((/prefix)?/api/v1/nodes/([^/]+)/heartbeat)", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard l(mu_);
      heartbeats_.push_back({req.matches[2], req.get_header_value("Authorization"), json::parse(req.body)});
      res.status = heartbeat_status_;
      res.set_content(heartbeat_status_ == 200 ? R"({"ok": true})" : R"({"error": {"code": "Unauthenticated"}})",
                      "application/json");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    // httplib's stop() does nothing before the server runs, and join() would then wait
    // forever: a test that never reaches the server ends before the thread got going.
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~TestServer() {
    http_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void set_register_status(int s) {
    std::lock_guard l(mu_);
    register_status_ = s;
  }
  void set_heartbeat_status(int s) {
    std::lock_guard l(mu_);
    heartbeat_status_ = s;
  }
  std::vector<json> registers() {
    std::lock_guard l(mu_);
    return registers_;
  }
  std::vector<Heartbeat> heartbeats() {
    std::lock_guard l(mu_);
    return heartbeats_;
  }

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  int register_status_ = 201;
  int heartbeat_status_ = 200;
  std::vector<json> registers_;
  std::vector<Heartbeat> heartbeats_;
};

class ServerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }

  ServerClientOptions Options(const std::string& url) {
    ServerClientOptions o;
    o.url = url;
    o.enroll_token = "enroll-123";
    o.data_dir = dir_;
    o.advert = {"n1", "primary", "http://127.0.0.1:7800", "api-secret", "127.0.0.1:7801",
                {"unix:///run/ferry/nbd.sock", "tcp://127.0.0.1:10809"}};
    o.status = [] { return json{{"node", {{"name", "n1"}}}, {"volumes", json::array()}}; };
    o.event = [this](const std::string& severity, const std::string& message) {
      std::lock_guard l(mu_);
      events_.push_back(severity + ": " + message);
    };
    o.interval_ms = 20;
    return o;
  }
  std::vector<std::string> Events() {
    std::lock_guard l(mu_);
    return events_;
  }
  json Identity() {
    auto text = ReadFileToString(Env::Posix(), dir_ + "/server.json");
    EXPECT_TRUE(text.ok());
    return text.ok() ? json::parse(*text) : json();
  }

  test::ScratchDir scratch_{"ferry-server-client"};  // removed after every member below
  std::string dir_;
  std::mutex mu_;
  std::vector<std::string> events_;
};

TEST_F(ServerClientTest, RegistersOnceThenSendsHeartbeatsWithItsSecret) {
  TestServer server;
  auto c = ServerClient::Start(Options(server.url()));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 3; }));
  (*c)->Stop();
  auto regs = server.registers();
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0], (json{{"token", "enroll-123"},
                           {"name", "n1"},
                           {"site", "primary"},
                           {"api_url", "http://127.0.0.1:7800"},
                           {"api_token", "api-secret"},
                           {"link_address", "127.0.0.1:7801"},
                           {"nbd", {"unix:///run/ferry/nbd.sock", "tcp://127.0.0.1:10809"}}}));
  for (const Heartbeat& h : server.heartbeats()) {
    EXPECT_EQ(h.node_id, "node-7");
    EXPECT_EQ(h.authorization, "Bearer s3cret");
    EXPECT_EQ(h.body["status"]["node"]["name"], "n1");
  }
  EXPECT_EQ(Identity(), (json{{"node_id", "node-7"}, {"secret", "s3cret"}, {"url", server.url()}}));
  EXPECT_EQ((*c)->node_id(), "node-7");
  EXPECT_TRUE(Events().empty());
}

TEST_F(ServerClientTest, KeepsItsIdentityAcrossRestarts) {
  TestServer server;
  {
    auto c = ServerClient::Start(Options(server.url()));
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 1; }));
  }
  auto c = ServerClient::Start(Options(server.url()));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 4; }));
  EXPECT_EQ(server.registers().size(), 1u);
}

TEST_F(ServerClientTest, IdentityForAnotherServerMeansRegisteringAgain) {
  TestServer server;
  ASSERT_TRUE(WriteFileAtomically(Env::Posix(), dir_ + "/server.json",
                                  R"({"node_id": "node-1", "secret": "old", "url": "http://elsewhere:1"})")
                  .ok());
  auto c = ServerClient::Start(Options(server.url()));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 1; }));
  EXPECT_EQ(server.registers().size(), 1u);
  EXPECT_EQ(server.heartbeats()[0].authorization, "Bearer s3cret");
  EXPECT_EQ(Identity()["url"], server.url());
}

TEST_F(ServerClientTest, FailedRegistrationIsRetriedWithOneWarningEvent) {
  TestServer server;
  server.set_register_status(503);
  auto c = ServerClient::Start(Options(server.url()));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Eventually([&] { return server.registers().size() >= 3; }));
  EXPECT_TRUE(server.heartbeats().empty());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/server.json"));
  server.set_register_status(201);
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 1; }));
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rfind("warning: registering with the server", 0), 0u) << events[0];
  EXPECT_NE(events[0].find("HTTP 503"), std::string::npos) << events[0];
}

TEST_F(ServerClientTest, UnknownNodeGivesOneErrorEventAndKeepsTrying) {
  TestServer server;
  server.set_heartbeat_status(401);
  auto c = ServerClient::Start(Options(server.url()));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 4; }));
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].rfind("error: the server", 0), 0u) << events[0];
  server.set_heartbeat_status(200);
  const size_t seen = server.heartbeats().size();
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= seen + 2; }));
  EXPECT_EQ(server.registers().size(), 1u);
  EXPECT_EQ(Events().size(), 1u);
}

TEST_F(ServerClientTest, UrlPathIsAPrefix) {
  TestServer server;
  auto c = ServerClient::Start(Options(server.url() + "/prefix/"));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Eventually([&] { return server.heartbeats().size() >= 1; }));
  EXPECT_EQ(server.registers().size(), 1u);
}

TEST_F(ServerClientTest, WithoutATokenTheNodeSaysWhatToSet) {
  TestServer server;
  ServerClientOptions o = Options(server.url());
  o.enroll_token = "";
  auto c = ServerClient::Start(std::move(o));
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(Eventually([&] { return !Events().empty(); }));
  EXPECT_NE(Events()[0].find("enroll_token"), std::string::npos) << Events()[0];
  EXPECT_TRUE(server.registers().empty());
}

TEST_F(ServerClientTest, RefusesHttpsAndOtherSchemes) {
  EXPECT_EQ(ServerClient::Start(Options("https://ferry.example:7443")).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ServerClient::Start(Options("ferry.example:7443")).status().code(), Code::kInvalidArgument);
}

TEST(AdvertisedHostPortTest, UnspecifiedHostsBecomeTheAdvertisedOne) {
  EXPECT_EQ(AdvertisedHostPort("tcp://0.0.0.0:7801", ""), "127.0.0.1:7801");
  EXPECT_EQ(AdvertisedHostPort("tcp://[::]:7801", ""), "127.0.0.1:7801");
  EXPECT_EQ(AdvertisedHostPort("0.0.0.0:7800", "10.0.0.5"), "10.0.0.5:7800");
  EXPECT_EQ(AdvertisedHostPort("[::]:7800", "fd00::5"), "[fd00::5]:7800");
  EXPECT_EQ(AdvertisedHostPort("tcp://192.168.1.2:7801", "10.0.0.5"), "192.168.1.2:7801");
  EXPECT_EQ(AdvertisedHostPort("[::1]:7800", ""), "[::1]:7800");
}

}  // namespace
}  // namespace ferry::node
