#include "cli/client.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "cli/exit_codes.h"
#include "cli/resolve.h"

namespace ferry::cli {
namespace {

// A canned HTTP peer on loopback: each test installs the handlers it needs.
class CannedServer {
 public:
  CannedServer() {
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    // stop() before the accept loop runs would be lost (and the join would hang).
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~CannedServer() {
    http_.stop();
    thread_.join();
  }
  httplib::Server& http() { return http_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
};

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

json ErrorBody(const std::string& code, const std::string& message, const std::string& action = "") {
  return {{"error", {{"code", code}, {"message", message}, {"action", action}}}};
}

ApiClient MakeClient(const std::string& server, const std::string& token = "tok") {
  Connection c{server, token, "--server", token.empty() ? "" : "--token"};
  auto client = ApiClient::Create(c);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(client).value();
}

TEST(ParseServerUrlTest, AcceptsHostPortAndPrefix) {
  auto u = ParseServerUrl("http://127.0.0.1:7700");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 7700);
  EXPECT_EQ(u->base_path, "");
  u = ParseServerUrl("http://ferry.example/dr/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "ferry.example");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->base_path, "/dr");
  u = ParseServerUrl("http://[::1]:7700");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 7700);
}

TEST(ParseServerUrlTest, RefusesHttpsAndMalformedUrls) {
  auto u = ParseServerUrl("https://ferry.example:7700");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), Code::kInvalidArgument);
  EXPECT_NE(u.status().message().find("https:// is not supported yet"), std::string::npos);
  for (const char* bad : {"127.0.0.1:7700", "http://", "http://:7700", "http://h:0", "http://h:99999",
                          "http://h:x", "http://h:", "http://[::1", "http://h/?q=1"}) {
    EXPECT_EQ(ParseServerUrl(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

TEST(ApiClientTest, CreateNamesTheSourceOfABadUrl) {
  auto client = ApiClient::Create(Connection{"https://x", "", "FERRY_SERVER", ""});
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(
      client.status().message(),
      "server 'https://x': https:// is not supported yet; use http:// (on a trusted network or through an "
      "SSH tunnel) (from FERRY_SERVER)");
}

TEST(UrlEncodeTest, KeepsUnreservedAndEncodesTheRest) {
  EXPECT_EQ(UrlEncode("item-4_a.b~"), "item-4_a.b~");
  EXPECT_EQ(UrlEncode("2026-11-26T05:06:18+01:00"), "2026-11-26T05%3A06%3A18%2B01%3A00");
  EXPECT_EQ(UrlEncode("a b/c&d"), "a%20b%2Fc%26d");
}

TEST(ApiClientTest, SendsBearerTokenAndJsonAndParsesTheAnswer) {
  CannedServer server;
  std::string auth, content_type, body, query;
  server.http().Post("/api/v1/sites", [&](const httplib::Request& req, httplib::Response& res) {
    auth = req.get_header_value("Authorization");
    content_type = req.get_header_value("Content-Type");
    body = req.body;
    Reply(res, 201, {{"id", "site-1"}, {"name", "primary"}});
  });
  server.http().Get("/api/v1/items", [&](const httplib::Request& req, httplib::Response& res) {
    query = req.get_param_value("state") + "|" + req.get_param_value("after");
    Reply(res, 200, {{"items", json::array()}, {"next_page_token", ""}});
  });
  ApiClient client = MakeClient(server.url(), "s3cret");
  auto created = client.Post("/sites", json{{"name", "primary"}});
  ASSERT_TRUE(created.ok()) << created.error().ToString();
  EXPECT_EQ((*created)["id"], "site-1");
  EXPECT_EQ(auth, "Bearer s3cret");
  EXPECT_EQ(content_type, "application/json");
  EXPECT_EQ(json::parse(body), (json{{"name", "primary"}}));

  auto listed =
      client.Get("/items", {{"state", "Protected"}, {"site", ""}, {"after", "2026-01-02T03:04:05Z"}});
  ASSERT_TRUE(listed.ok()) << listed.error().ToString();
  EXPECT_EQ(query, "Protected|2026-01-02T03:04:05Z");
}

TEST(ApiClientTest, ErrorAnswersCarryStatusCodeMessageActionAndMapToExitCodes) {
  CannedServer server;
  struct Case {
    int status;
    const char* code;
    int exit;
  };
  const Case cases[] = {
      {400, "InvalidArgument", exit_code::kBadRequest},
      {401, "Unauthenticated", exit_code::kUnauthenticated},
      {404, "NotFound", exit_code::kNotFound},
      {409, "InvalidState", exit_code::kRefused},
      {409, "FailedPrecondition", exit_code::kRefused},
      {413, "PayloadTooLarge", exit_code::kBadRequest},
      {500, "Internal", exit_code::kError},
      {503, "Unavailable", exit_code::kError},
  };
  std::atomic<const Case*> current{nullptr};
  server.http().Post("/api/v1/items/item-1/commit", [&](const httplib::Request&, httplib::Response& res) {
    const Case* c = current.load();
    Reply(res, c->status, ErrorBody(c->code, "item web1 is Protected", "fail it over first"));
  });
  for (const Case& c : cases) {
    current = &c;
    ApiClient client = MakeClient(server.url());
    auto r = client.Post("/items/item-1/commit");
    ASSERT_FALSE(r.ok());
    const ApiError& e = r.error();
    EXPECT_EQ(e.kind, ApiError::Kind::kHttp);
    EXPECT_EQ(e.http_status, c.status);
    EXPECT_EQ(e.code, c.code);
    EXPECT_EQ(e.message, "item web1 is Protected");
    EXPECT_EQ(ExitCodeFor(e), c.exit) << c.status << " " << c.code;
    if (c.status != 401) {
      EXPECT_EQ(e.action, "fail it over first");
      EXPECT_EQ(e.ToString(), std::string(c.code) + ": item web1 is Protected; fail it over first");
    }
  }
}

TEST(ApiClientTest, UnauthenticatedSaysWhereTheTokenCameFrom) {
  CannedServer server;
  server.http().Get("/api/v1/sites/site-1", [](const httplib::Request&, httplib::Response& res) {
    Reply(res, 401, ErrorBody("Unauthenticated", "missing or wrong bearer token"));
  });
  ApiClient with_token = MakeClient(server.url(), "wrong");
  auto r = with_token.Get("/sites/site-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kUnauthenticated);
  EXPECT_NE(r.error().action.find("refused the token from --token"), std::string::npos) << r.error().action;

  ApiClient without = MakeClient(server.url(), "");
  r = without.Get("/sites/site-1");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().action.find("no API token is configured"), std::string::npos) << r.error().action;
}

TEST(ApiClientTest, ErrorWithoutTheErrorObjectKeepsStatusAndBody) {
  CannedServer server;
  server.http().Get("/api/v1/jobs/job-1", [](const httplib::Request&, httplib::Response& res) {
    res.status = 502;
    res.set_content("Bad Gateway\n", "text/plain");
  });
  ApiClient client = MakeClient(server.url());
  auto r = client.Get("/jobs/job-1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "HTTP 502");
  EXPECT_EQ(r.error().message, "Bad Gateway");
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kError);
}

TEST(ApiClientTest, NonJsonSuccessIsABadResponse) {
  CannedServer server;
  server.http().Get("/api/v1/sites", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("<html>hello</html>", "text/html");
  });
  ApiClient client = MakeClient(server.url());
  auto r = client.Get("/sites");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ApiError::Kind::kBadResponse);
  EXPECT_NE(r.error().message.find("is not JSON"), std::string::npos);
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kError);
}

// A loopback port nobody listens on: bound to learn a free number, then closed.
int RefusingPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(ApiClientTest, ConnectionRefusedIsUnreachableWithAHint) {
  const std::string url = "http://127.0.0.1:" + std::to_string(RefusingPort());
  ApiClient client = MakeClient(url);
  auto r = client.Get("/items");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ApiError::Kind::kUnreachable);
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kUnreachable);
  EXPECT_EQ(r.error().ToString(), "cannot reach the Ferry server at " + url +
                                      ": connection failed; is `ferry server` (or `ferry up`) running? "
                                      "(server from --server)");
}

TEST(ApiClientTest, ListFollowsPageTokensAndStopsAtTheLimit) {
  CannedServer server;
  std::mutex mu;
  std::vector<std::string> requests;
  // 7 items served 3 per page at most, whatever limit the client asks for.
  server.http().Get("/api/v1/jobs", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back(req.get_param_value("limit") + "@" + req.get_param_value("page_token") + "/" +
                       req.get_param_value("state"));
    int start = req.has_param("page_token") ? std::stoi(req.get_param_value("page_token")) : 0;
    int n = std::min({3, std::stoi(req.get_param_value("limit")), 7 - start});
    json items = json::array();
    for (int i = start; i < start + n; ++i) items.push_back({{"id", "job-" + std::to_string(i)}});
    Reply(res, 200, {{"items", items}, {"next_page_token", start + n < 7 ? std::to_string(start + n) : ""}});
  });
  ApiClient client = MakeClient(server.url());
  auto all = client.List("/jobs", {{"state", "Failed"}});
  ASSERT_TRUE(all.ok()) << all.error().ToString();
  ASSERT_EQ((*all)["items"].size(), 7u);
  EXPECT_EQ((*all)["items"][6]["id"], "job-6");
  EXPECT_EQ((*all)["next_page_token"], "");
  EXPECT_EQ(requests, (std::vector<std::string>{"1000@/Failed", "1000@3/Failed", "1000@6/Failed"}));

  requests.clear();
  auto some = client.List("/jobs", {}, 4);
  ASSERT_TRUE(some.ok());
  ASSERT_EQ((*some)["items"].size(), 4u);
  EXPECT_EQ((*some)["next_page_token"], "4");
  EXPECT_EQ(requests, (std::vector<std::string>{"4@/", "1@3/"}));
}

TEST(ApiClientTest, ListRefusesAnAnswerWithoutItems) {
  CannedServer server;
  server.http().Get("/api/v1/sites", [](const httplib::Request&, httplib::Response& res) {
    Reply(res, 200, {{"sites", json::array()}});
  });
  ApiClient client = MakeClient(server.url());
  auto r = client.List("/sites");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ApiError::Kind::kBadResponse);
}

TEST(ApiClientTest, BasePathPrefixesEveryRequest) {
  CannedServer server;
  server.http().Get("/dr/api/v1/sites/site-1", [](const httplib::Request&, httplib::Response& res) {
    Reply(res, 200, {{"id", "site-1"}});
  });
  ApiClient client = MakeClient(server.url() + "/dr/");
  auto r = client.Get("/sites/site-1");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
}

TEST(ResolveTest, IdShapedRefIsFetchedDirectlyAndNamesAreLookedUpInTheList) {
  CannedServer server;
  int lists = 0;
  server.http().Get(R"(/api/v1/machines/([^/]+))", [](const httplib::Request& req, httplib::Response& res) {
    if (req.matches[1] == "mach-1") return Reply(res, 200, {{"id", "mach-1"}, {"name", "web1"}});
    Reply(res, 404, ErrorBody("NotFound", "no machine " + std::string(req.matches[1])));
  });
  server.http().Get("/api/v1/machines", [&](const httplib::Request&, httplib::Response& res) {
    ++lists;
    Reply(res, 200,
          {{"items",
            json::array({{{"id", "mach-1"}, {"name", "web1"}}, {{"id", "mach-2"}, {"name", "mach-9"}}})},
           {"next_page_token", ""}});
  });
  ApiClient client = MakeClient(server.url());
  auto r = Resolve(client, "mach-1", kMachineKind);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ((*r)["name"], "web1");
  EXPECT_EQ(lists, 0);

  r = Resolve(client, "web1", kMachineKind);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["id"], "mach-1");
  EXPECT_EQ(lists, 1);

  // Shaped like an id but a name: the 404 of the direct fetch falls back to the list.
  r = Resolve(client, "mach-9", kMachineKind);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["id"], "mach-2");

  r = Resolve(client, "db1", kMachineKind);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kNotFound);
}

}  // namespace
}  // namespace ferry::cli
