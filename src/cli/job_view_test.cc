#include "cli/job_view.h"

#include <gtest/gtest.h>

#include "cli/exit_codes.h"

namespace ferry::cli {
namespace {

json Step(const char* name, const char* title, const char* state, const char* message = "",
          const char* started = nullptr, const char* ended = nullptr) {
  return {{"name", name},
          {"title", title},
          {"state", state},
          {"message", message},
          {"started_at", started ? json(started) : json()},
          {"ended_at", ended ? json(ended) : json()}};
}

json Job(const char* state, double progress, json steps) {
  return {{"id", "job-4"},
          {"type", "failover"},
          {"target", {{"kind", "item"}, {"id", "item-1"}, {"name", "web1"}}},
          {"state", state},
          {"progress", progress},
          {"started_at", "2026-11-26T05:06:18Z"},
          {"ended_at", nullptr},
          {"error", nullptr},
          {"steps", std::move(steps)}};
}

TEST(JobStateTest, ExitCodesAndFollowing) {
  EXPECT_EQ(ExitCodeForJobState("Succeeded"), exit_code::kOk);
  EXPECT_EQ(ExitCodeForJobState("Failed"), exit_code::kJobFailed);
  EXPECT_EQ(ExitCodeForJobState("Cancelled"), exit_code::kJobCancelled);
  EXPECT_EQ(ExitCodeForJobState("Suspended"), exit_code::kJobSuspended);
  EXPECT_EQ(ExitCodeForJobState("InProgress"), exit_code::kError);
  EXPECT_TRUE(IsFinalJobState("Cancelled"));
  EXPECT_FALSE(IsFinalJobState("Suspended"));
  EXPECT_TRUE(StopsFollowing(json{{"state", "Suspended"}}));
  EXPECT_FALSE(StopsFollowing(json{{"state", "NotStarted"}}));
  EXPECT_FALSE(StopsFollowing(json()));
}

TEST(CurrentStepTest, InProgressElseLastStartedElseNone) {
  EXPECT_EQ(CurrentStep(Job("NotStarted", 0, {Step("a", "A", "NotStarted"), Step("b", "B", "NotStarted")})),
            -1);
  EXPECT_EQ(CurrentStep(Job(
                "InProgress", 0,
                {Step("a", "A", "Succeeded"), Step("b", "B", "InProgress"), Step("c", "C", "NotStarted")})),
            1);
  EXPECT_EQ(
      CurrentStep(Job("Failed", 0,
                      {Step("a", "A", "Succeeded"), Step("b", "B", "Failed"), Step("c", "C", "NotStarted")})),
      1);
  EXPECT_EQ(CurrentStep(Job("Suspended", 0, {Step("a", "A", "Succeeded"), Step("b", "B", "Suspended")})), 1);
  EXPECT_EQ(CurrentStep(json()), -1);
}

TEST(ProgressLineTest, BarPercentStepAndMessage) {
  json job = Job("InProgress", 42.5,
                 {Step("preflight", "Pre-flight checks", "Succeeded"),
                  Step("copy", "Copy disks", "InProgress", "disk0 12 GiB of 40 GiB"),
                  Step("start", "Start", "NotStarted"), Step("check", "Check", "NotStarted"),
                  Step("done", "Done", "NotStarted")});
  EXPECT_EQ(ProgressLine(job, 200), "[#########...........]  42.5%  2/5 Copy disks: disk0 12 GiB of 40 GiB");
  EXPECT_EQ(ProgressLine(job, 29), "[#########...........]  42.5%");
  EXPECT_EQ(ProgressLine(Job("Succeeded", 100, json::array()), 80),
            "[####################]   100%  Succeeded");
  EXPECT_EQ(ProgressLine(Job("NotStarted", 0, json::array()), 80),
            "[....................]     0%  NotStarted");
}

TEST(ChangeLinesTest, OneLinePerStateChange) {
  json j0 = Job("NotStarted", 0,
                {Step("preflight", "Pre-flight checks", "NotStarted"), Step("start", "Start", "NotStarted")});
  json j1 = Job("InProgress", 10,
                {Step("preflight", "Pre-flight checks", "InProgress", "", "2026-11-26T05:06:18Z"),
                 Step("start", "Start", "NotStarted")});
  json j1b = j1;
  j1b["progress"] = 30;  // progress alone is no change
  json j2 = Job("InProgress", 60,
                {Step("preflight", "Pre-flight checks", "Succeeded", "", "2026-11-26T05:06:18Z",
                      "2026-11-26T05:06:18.250Z"),
                 Step("start", "Start", "InProgress", "booting on node-2", "2026-11-26T05:06:18.250Z")});
  EXPECT_EQ(ChangeLines(nullptr, j0), (std::vector<std::string>{"job-4 failover web1: NotStarted"}));
  EXPECT_EQ(ChangeLines(&j0, j1), (std::vector<std::string>{"job-4 failover web1: InProgress",
                                                            "[1/2] Pre-flight checks: InProgress"}));
  EXPECT_TRUE(ChangeLines(&j1, j1b).empty());
  EXPECT_EQ(ChangeLines(&j1b, j2), (std::vector<std::string>{"[1/2] Pre-flight checks: Succeeded (0.2s)",
                                                             "[2/2] Start: InProgress - booting on node-2"}));
  // Joining late: every step that has started shows once.
  EXPECT_EQ(ChangeLines(nullptr, j2),
            (std::vector<std::string>{"job-4 failover web1: InProgress",
                                      "[1/2] Pre-flight checks: Succeeded (0.2s)",
                                      "[2/2] Start: InProgress - booting on node-2"}));
}

TEST(JobSummaryTest, FinalStateStepsDurationsErrorAndAction) {
  json job = Job("Failed", 50,
                 {Step("preflight", "Pre-flight checks", "Succeeded", "", "2026-11-26T05:06:18Z",
                       "2026-11-26T05:06:19Z"),
                  Step("start", "Start the machine", "Failed", "node-2 did not answer",
                       "2026-11-26T05:06:19Z", "2026-11-26T05:08:24Z"),
                  Step("verify", "Verify", "Skipped")});
  job["ended_at"] = "2026-11-26T05:08:24Z";
  job["error"] = {
      {"code", "Unavailable"}, {"message", "node-2 did not answer"}, {"action", "start node-2, then retry"}};
  EXPECT_EQ(JobSummary(job),
            "job-4 failover web1: Failed in 2m06s\n"
            "STEP               STATE      DURATION  MESSAGE\n"
            "Pre-flight checks  Succeeded  1.0s\n"
            "Start the machine  Failed     2m05s     node-2 did not answer\n"
            "Verify             Skipped    -\n"
            "error: Unavailable: node-2 did not answer\n"
            "action: start node-2, then retry\n");
}

TEST(JobSummaryTest, SuspendedSaysWhatToDoNext) {
  json job = Job("Suspended", 50,
                 {Step("preflight", "Pre-flight checks", "Succeeded", "", "2026-11-26T05:06:18Z",
                       "2026-11-26T05:06:19Z"),
                  Step("manual", "Manual action", "Suspended", "switch DNS to the recovery site",
                       "2026-11-26T05:06:19Z")});
  std::string text = JobSummary(job);
  EXPECT_NE(text.find("job-4 failover web1: Suspended\n"), std::string::npos) << text;
  EXPECT_NE(text.find("waiting for a manual action: Manual action: switch DNS to the recovery site\n"
                      "when it is done: ferry job resume job-4 [--comment TEXT]\n"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace ferry::cli
