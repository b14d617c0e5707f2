#include "cli/job_follow.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "cli/job_view.h"

namespace ferry::cli {
namespace {

// A server whose job moves one state further at each poll.
class JobServer {
 public:
  explicit JobServer(std::vector<json> states) : states_(std::move(states)) {
    http_.Get("/api/v1/jobs/job-4", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      size_t i = std::min(polls_++, states_.size() - 1);
      res.set_content(states_[i].dump(), "application/json");
    });
    http_.Get("/api/v1/jobs/job-404", [](const httplib::Request&, httplib::Response& res) {
      res.status = 404;
      res.set_content(R"({"error": {"code": "NotFound", "message": "no job job-404", "action": ""}})",
                      "application/json");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    // stop() before the accept loop runs would be lost (and the join would hang).
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~JobServer() {
    http_.stop();
    thread_.join();
  }
  ApiClient Client() {
    auto c = ApiClient::Create(
        Connection{"http://127.0.0.1:" + std::to_string(port_), "t", "--server", "--token"});
    EXPECT_TRUE(c.ok());
    return std::move(c).value();
  }
  size_t polls() {
    std::lock_guard<std::mutex> lock(mu_);
    return polls_;
  }

 private:
  httplib::Server http_;
  std::mutex mu_;
  std::vector<json> states_;
  size_t polls_ = 0;
  int port_ = 0;
  std::thread thread_;
};

json Job(const char* state, double progress, const char* step_state, const char* end_state = "NotStarted") {
  return {{"id", "job-4"},
          {"type", "commit"},
          {"target", {{"kind", "item"}, {"id", "item-1"}, {"name", "web1"}}},
          {"state", state},
          {"progress", progress},
          {"steps",
           {{{"name", "consolidate"}, {"title", "Consolidate disks"}, {"state", step_state}},
            {{"name", "drop"}, {"title", "Drop recovery points"}, {"state", end_state}}}}};
}

// Captures what the follower prints.
class Capture {
 public:
  Capture() : file_(std::tmpfile()) {}
  ~Capture() { std::fclose(file_); }
  std::FILE* file() { return file_; }
  std::string Text() {
    std::fflush(file_);
    std::rewind(file_);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) out.append(buf, n);
    return out;
  }

 private:
  std::FILE* file_;
};

FollowOptions Fast(std::FILE* out, bool tty) {
  FollowOptions o;
  o.out = out;
  o.tty = tty;
  o.width = 200;
  o.poll_interval_ms = 5;
  return o;
}

TEST(FollowJobTest, NotATerminalPrintsOneLinePerChangeUntilTheEnd) {
  JobServer server({Job("NotStarted", 0, "NotStarted"), Job("InProgress", 20, "InProgress"),
                    Job("InProgress", 40, "InProgress"), Job("InProgress", 80, "Succeeded", "InProgress"),
                    Job("Succeeded", 100, "Succeeded", "Succeeded")});
  ApiClient client = server.Client();
  Capture out;
  auto r = FollowJob(client, "job-4", Fast(out.file(), false));
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_FALSE(r->interrupted);
  EXPECT_EQ(r->job["state"], "Succeeded");
  EXPECT_EQ(server.polls(), 5u);
  EXPECT_EQ(out.Text(),
            "job-4 commit web1: NotStarted\n"
            "job-4 commit web1: InProgress\n"
            "[1/2] Consolidate disks: InProgress\n"
            "[1/2] Consolidate disks: Succeeded\n"
            "[2/2] Drop recovery points: InProgress\n"
            "job-4 commit web1: Succeeded\n"
            "[2/2] Drop recovery points: Succeeded\n");
}

TEST(FollowJobTest, TerminalRedrawsOneLineAndEndsIt) {
  JobServer server({Job("InProgress", 50, "InProgress"), Job("Failed", 50, "Failed")});
  ApiClient client = server.Client();
  Capture out;
  auto r = FollowJob(client, "job-4", Fast(out.file(), true));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->job["state"], "Failed");
  EXPECT_EQ(ExitCodeForJobState(r->job["state"]), 5);
  EXPECT_EQ(out.Text(),
            "\r[##########..........]    50%  1/2 Consolidate disks\x1b[K"
            "\r[##########..........]    50%  Failed  1/2 Consolidate disks\x1b[K\n");
}

TEST(FollowJobTest, StopsAtSuspended) {
  JobServer server({Job("InProgress", 50, "InProgress"), Job("Suspended", 50, "Suspended"),
                    Job("InProgress", 60, "InProgress")});
  ApiClient client = server.Client();
  auto r = FollowJob(client, "job-4", Fast(nullptr, false));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->job["state"], "Suspended");
  EXPECT_EQ(server.polls(), 2u);
}

TEST(FollowJobTest, StopRequestEndsTheWatchingNotTheJob) {
  JobServer server(std::vector<json>{Job("InProgress", 10, "InProgress")});
  ApiClient client = server.Client();
  std::atomic<int> asked{0};
  FollowOptions o = Fast(nullptr, false);
  o.stop_requested = [&] { return ++asked > 20; };
  auto r = FollowJob(client, "job-4", o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->interrupted);
  EXPECT_EQ(r->job["state"], "InProgress");
}

TEST(FollowJobTest, UnknownJobIsNotFound) {
  JobServer server(std::vector<json>{Job("InProgress", 10, "InProgress")});
  ApiClient client = server.Client();
  auto r = FollowJob(client, "job-404", Fast(nullptr, false));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().http_status, 404);
}

TEST(FollowJobTest, ServerGoneAfterTheFirstPollIsRetriedThenUnreachable) {
  auto server = std::make_unique<JobServer>(std::vector<json>{Job("InProgress", 10, "InProgress")});
  ApiClient client = server->Client();
  Capture out;
  FollowOptions o = Fast(out.file(), false);
  o.unreachable_grace_ms = 50;
  std::atomic<int> asked{0};
  o.stop_requested = [&] {
    if (++asked == 2) server.reset();  // after the first answer
    return false;
  };
  auto r = FollowJob(client, "job-4", o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ApiError::Kind::kUnreachable);
  EXPECT_NE(out.Text().find("server unreachable; retrying for up to 0s\n"), std::string::npos) << out.Text();
}

}  // namespace
}  // namespace ferry::cli
