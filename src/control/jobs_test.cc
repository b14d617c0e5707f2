#include "control/jobs.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "control/schema.h"
#include "env/scratch_dir_test_util.h"

namespace ferry::control {
namespace {

// A workflow whose steps do what the test scripts in the job's spec: {"script": {"a":
// "done"|"wait:N"|"fail-once"|"suspend"}}; each step counts its runs in a shared table.
struct Counters {
  std::mutex mu;
  std::map<std::string, int> runs;
  std::atomic<bool> fail_armed{true};
  int Add(const std::string& s) {
    std::lock_guard<std::mutex> l(mu);
    return ++runs[s];
  }
  int Get(const std::string& s) {
    std::lock_guard<std::mutex> l(mu);
    return runs[s];
  }
};

class ScriptWorkflow : public Workflow {
 public:
  explicit ScriptWorkflow(Counters* c) : c_(c) {}
  std::vector<StepDef> Steps(const json& spec) const override {
    std::vector<StepDef> out;
    for (const auto& name : {"a", "b", "c"}) {
      std::string n = name;
      out.push_back({n, "step " + n, 1,
                     [this, n](JobContext& ctx) {
                       int run = c_->Add(n);
                       std::string what = ctx.spec()["script"].value(n, "done");
                       ctx.data()["last"] = n;
                       if (what.rfind("wait:", 0) == 0) {
                         int needed = std::stoi(what.substr(5));
                         if (run < needed) return StepOutcome::Wait("waiting", 100.0 * run / needed, 10);
                         return StepOutcome::Done("waited");
                       }
                       if (what == "fail-once" && c_->fail_armed.exchange(false)) {
                         return StepOutcome::Fail(Unavailable("peer away"));
                       }
                       if (what == "suspend" && run == 1) return StepOutcome::Suspend("press the button");
                       if (what == "block") {
                         if (ctx.cancel_requested()) return StepOutcome::Wait("cancelling", 0, 10);
                         return StepOutcome::Wait("blocked", 0, 10);
                       }
                       return StepOutcome::Done();
                     },
                     n == "c" && spec.value("c_no_return", false)});
    }
    return out;
  }
  std::vector<StepDef> UndoSteps(const json&) const override {
    return {{"undo", "undo it", 1, [this](JobContext&) {
               c_->Add("undo");
               return StepOutcome::Done();
             }}};
  }

 private:
  Counters* c_;
};

class JobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    Open();
  }
  void TearDown() override {
    engine_.reset();
    unsetenv("FERRY_HOLD_AT");
    db_.reset();
  }
  void Open() {
    engine_.reset();
    db_.reset();
    auto db = store::OpenSqlite(dir_ + "/ferry.db");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(*db);
    ASSERT_TRUE(store::Migrate(*db_, ControlMigrations()).ok());
    engine_ = std::make_unique<JobEngine>(db_.get(), nullptr, SystemClock::Default());
    engine_->Register("script", std::make_unique<ScriptWorkflow>(&counters_));
  }
  int64_t Create(const json& script, bool c_no_return = false) {
    return CreateJob("script", json{{"script", script}, {"c_no_return", c_no_return}});
  }
  int64_t CreateJob(const std::string& type, const json& spec) {
    int64_t id = 0;
    Status s = db_->Transaction([&](store::Sql& tx) -> Status {
      auto r = engine_->Create(tx, type, "item", 1, "it", spec, json::object());
      if (!r.ok()) return r.status();
      id = *r;
      return Status::Ok();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return id;
  }
  std::string WaitState(int64_t id) {
    auto r = engine_->Wait(id, 20000);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : "";
  }
  json Get(int64_t id) {
    auto j = engine_->Get(id);
    EXPECT_TRUE(j.ok());
    return *j;
  }

  test::ScratchDir scratch_{"ferry-jobs"};  // removed after every member below
  std::string dir_;
  Counters counters_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<JobEngine> engine_;
};

TEST_F(JobsTest, RunsStepsInOrderAndSucceeds) {
  int64_t id = Create({{"b", "wait:3"}});
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Succeeded");
  json j = Get(id);
  EXPECT_EQ(j["progress"], 100.0);
  ASSERT_EQ(j["steps"].size(), 3u);
  for (const json& s : j["steps"]) EXPECT_EQ(s["state"], "Succeeded") << s.dump();
  EXPECT_EQ(counters_.Get("a"), 1);
  EXPECT_EQ(counters_.Get("b"), 3);
  EXPECT_EQ(counters_.Get("c"), 1);
  EXPECT_TRUE(j["allowed_actions"].empty());
}

TEST_F(JobsTest, FailedStepCanBeRetried) {
  int64_t id = Create({{"b", "fail-once"}});
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Failed");
  json j = Get(id);
  EXPECT_EQ(j["error"]["code"], "Unavailable");
  EXPECT_EQ(j["steps"][1]["state"], "Failed");
  EXPECT_EQ(j["allowed_actions"], json({"retry", "cancel"}));
  ASSERT_TRUE(engine_->Retry(id).ok());
  EXPECT_EQ(WaitState(id), "Succeeded");
  EXPECT_EQ(counters_.Get("a"), 1);  // a succeeded before: not run again
  EXPECT_EQ(counters_.Get("b"), 2);
}

TEST_F(JobsTest, CancelRunsUndoSteps) {
  int64_t id = Create({{"b", "block"}});
  engine_->Kick(id);
  while (counters_.Get("b") < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_TRUE(engine_->Cancel(id).ok());
  EXPECT_EQ(WaitState(id), "Cancelled");
  json j = Get(id);
  ASSERT_EQ(j["steps"].size(), 4u);
  EXPECT_EQ(j["steps"][0]["state"], "Succeeded");
  EXPECT_EQ(j["steps"][1]["state"], "Cancelled");
  EXPECT_EQ(j["steps"][2]["state"], "Cancelled");
  EXPECT_EQ(j["steps"][3]["phase"], "undo");
  EXPECT_EQ(j["steps"][3]["state"], "Succeeded");
  EXPECT_EQ(counters_.Get("undo"), 1);
  EXPECT_EQ(counters_.Get("c"), 0);
  // A finished job refuses another cancel with the documented error.
  Status again = engine_->Cancel(id);
  EXPECT_EQ(again.code(), Code::kFailedPrecondition);
}

TEST_F(JobsTest, SuspendWaitsForResume) {
  int64_t id = Create({{"b", "suspend"}});
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Suspended");
  json j = Get(id);
  EXPECT_EQ(j["steps"][1]["state"], "Suspended");
  EXPECT_EQ(j["steps"][1]["message"], "press the button");
  EXPECT_EQ(j["allowed_actions"], json({"resume", "cancel"}));
  EXPECT_EQ(engine_->Retry(id).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(engine_->Resume(id, "done by hand").ok());
  EXPECT_EQ(WaitState(id), "Succeeded");
  EXPECT_EQ(Get(id)["steps"][1]["message"], "resumed: done by hand");
  EXPECT_EQ(counters_.Get("b"), 1);  // the manual action is not run again
}

TEST_F(JobsTest, PointOfNoReturnRefusesCancel) {
  int64_t id = Create({{"c", "done"}}, /*c_no_return=*/true);
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Succeeded");
  // Succeeded: no actions. A failed job past the point of no return may only be retried.
  int64_t id2 = Create({{"a", "done"}}, true);
  ASSERT_TRUE(db_->Exec("UPDATE job_steps SET state = 'Succeeded' WHERE job_id = $1 AND name = 'c'", {id2}).ok());
  ASSERT_TRUE(db_->Exec("UPDATE jobs SET state = 'Failed' WHERE id = $1", {id2}).ok());
  json j = Get(id2);
  EXPECT_EQ(j["allowed_actions"], json({"retry"}));
  Status s = engine_->Cancel(id2);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
}

TEST_F(JobsTest, ResumesAfterRestartFromFirstUnfinishedStep) {
  int64_t id = Create({{"b", "block"}});
  engine_->Kick(id);
  while (counters_.Get("b") < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  engine_->Stop();  // the process goes away with the job InProgress
  ASSERT_EQ(Get(id)["state"], "InProgress");
  // A new server on the same store, where step b now completes.
  ASSERT_TRUE(db_->Exec("UPDATE jobs SET spec = $2 WHERE id = $1",
                        {id, json{{"script", json::object()}, {"c_no_return", false}}.dump()})
                  .ok());
  Open();
  ASSERT_TRUE(engine_->Start().ok());
  EXPECT_EQ(WaitState(id), "Succeeded");
  EXPECT_EQ(counters_.Get("a"), 1);
  EXPECT_EQ(counters_.Get("c"), 1);
}

// Hold points (FERRY_HOLD_AT): the held step waits without running, and says why.
json WaitHeld(JobEngine& engine, int64_t id, size_t step) {
  for (int i = 0; i < 2000; ++i) {
    auto j = engine.Get(id);
    if (j.ok() && (*j)["steps"][step]["message"] == "held by FERRY_HOLD_AT=job.script." +
                                                        (*j)["steps"][step]["name"].get<std::string>()) {
      return *j;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ADD_FAILURE() << "step " << step << " of job " << id << " was not held";
  return {};
}

TEST_F(JobsTest, HeldStepDoesNotRun) {
  setenv("FERRY_HOLD_AT", "job.other.b,job.script.b", 1);
  int64_t id = Create(json::object());
  engine_->Kick(id);
  json j = WaitHeld(*engine_, id, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // more than two re-checks
  j = Get(id);
  EXPECT_EQ(j["state"], "InProgress");
  EXPECT_EQ(j["steps"][0]["state"], "Succeeded");
  EXPECT_EQ(j["steps"][1]["state"], "InProgress");
  EXPECT_EQ(j["steps"][2]["state"], "NotStarted");
  EXPECT_EQ(j["allowed_actions"], json({"cancel"}));
  EXPECT_EQ(counters_.Get("a"), 1);
  EXPECT_EQ(counters_.Get("b"), 0);
  EXPECT_EQ(counters_.Get("c"), 0);
}

TEST_F(JobsTest, CancelWhileHeldRunsUndoSteps) {
  setenv("FERRY_HOLD_AT", "job.script.b", 1);
  int64_t id = Create(json::object());
  engine_->Kick(id);
  WaitHeld(*engine_, id, 1);
  ASSERT_TRUE(engine_->Cancel(id).ok());
  EXPECT_EQ(WaitState(id), "Cancelled");
  json j = Get(id);
  ASSERT_EQ(j["steps"].size(), 4u);
  EXPECT_EQ(j["steps"][1]["state"], "Cancelled");
  EXPECT_EQ(j["steps"][2]["state"], "Cancelled");
  EXPECT_EQ(j["steps"][3]["name"], "undo");
  EXPECT_EQ(j["steps"][3]["state"], "Succeeded");
  EXPECT_EQ(counters_.Get("b"), 0);
  EXPECT_EQ(counters_.Get("c"), 0);
  EXPECT_EQ(counters_.Get("undo"), 1);
}

TEST_F(JobsTest, HoldingEveryStepHoldsTheFirstButNoUndoStep) {
  setenv("FERRY_HOLD_AT", "job.script.*", 1);
  int64_t id = Create(json::object());
  engine_->Kick(id);
  json j = WaitHeld(*engine_, id, 0);
  EXPECT_EQ(j["steps"][0]["state"], "InProgress");
  EXPECT_EQ(counters_.Get("a"), 0);
  ASSERT_TRUE(engine_->Cancel(id).ok());
  EXPECT_EQ(WaitState(id), "Cancelled");  // "job.script.undo" is not held
  EXPECT_EQ(counters_.Get("undo"), 1);
}

TEST_F(JobsTest, HeldJobGoesOnUnderAServerWithoutTheHold) {
  setenv("FERRY_HOLD_AT", "job.script.b", 1);
  int64_t id = Create(json::object());
  engine_->Kick(id);
  WaitHeld(*engine_, id, 1);
  engine_->Stop();
  unsetenv("FERRY_HOLD_AT");
  Open();
  ASSERT_TRUE(engine_->Start().ok());
  EXPECT_EQ(WaitState(id), "Succeeded");
  EXPECT_EQ(counters_.Get("a"), 1);
  EXPECT_EQ(counters_.Get("b"), 1);
  EXPECT_EQ(counters_.Get("c"), 1);
}

TEST_F(JobsTest, WithoutHoldNothingIsHeld) {
  // Names that are not exactly a step's point hold nothing either.
  setenv("FERRY_HOLD_AT", "job.script,job.script.b.done,script.b,job.script.bb", 1);
  int64_t id = Create(json::object());
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Succeeded");
  unsetenv("FERRY_HOLD_AT");
  int64_t id2 = Create(json::object());
  engine_->Kick(id2);
  EXPECT_EQ(WaitState(id2), "Succeeded");
  const json job2 = Get(id2);  // named: the loop must not run over a destroyed temporary
  for (const json& s : job2["steps"]) EXPECT_EQ(s["message"], "") << s.dump();
  EXPECT_EQ(counters_.Get("b"), 2);
}

// Three machines of a batch ("m1".."m3", scopes "s1".."s3") then "z". Each machine step waits
// until every machine has run once, so the batch only finishes when its steps run together.
// spec: {"fail": "m2", "keep_going": bool}.
class BatchWorkflow : public Workflow {
 public:
  explicit BatchWorkflow(Counters* c) : c_(c) {}
  std::vector<StepDef> Steps(const json& spec) const override {
    std::vector<StepDef> out;
    for (const std::string n : {"m1", "m2", "m3"}) {
      StepDef d{n, "machine " + n, 1, [this, n](JobContext& ctx) {
                  c_->Add(n);
                  if (ctx.spec().value("who", "") != n) return StepOutcome::Fail(Internal("wrong scope spec"));
                  ctx.data()["runs"] = ctx.data().value("runs", 0) + 1;
                  if (c_->Get("m1") == 0 || c_->Get("m2") == 0 || c_->Get("m3") == 0) {
                    return StepOutcome::Wait("waiting for the others", 0, 10);
                  }
                  if (ctx.spec().value("fail", false) && c_->fail_armed.exchange(false)) {
                    return StepOutcome::Fail(FailedPrecondition("machine " + n + " broke"));
                  }
                  return StepOutcome::Done("ran " + std::to_string(ctx.data()["runs"].get<int>()) + " times");
                }};
      d.batch = "machines";
      d.scope = "s-" + n;
      d.keep_going = spec.value("keep_going", false);
      out.push_back(d);
    }
    out.push_back({"z", "after the batch", 1, [this](JobContext& ctx) {
                     c_->Add("z");
                     // The scopes are the machines' own: each saw only its runs.
                     for (const std::string n : {"m1", "m2", "m3"}) {
                       if (!ctx.data()["scopes"]["s-" + n].contains("runs")) {
                         return StepOutcome::Fail(Internal("no scope data for " + n));
                       }
                     }
                     return StepOutcome::Done();
                   }});
    return out;
  }
  std::vector<StepDef> UndoSteps(const json&) const override { return {}; }

 private:
  Counters* c_;
};

class BatchTest : public JobsTest {
 protected:
  int64_t CreateBatch(bool keep_going) {
    engine_->Register("batch", std::make_unique<BatchWorkflow>(&counters_));
    json scopes = json::object();
    for (const std::string n : {"m1", "m2", "m3"}) scopes["s-" + n] = {{"who", n}, {"fail", n == "m2"}};
    return CreateJob("batch", json{{"scopes", scopes}, {"keep_going", keep_going}});
  }
};

TEST_F(BatchTest, AFailedStepStopsTheJobOnlyAfterItsBatch) {
  int64_t id = CreateBatch(false);
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Failed");
  json j = Get(id);
  EXPECT_EQ(j["steps"][0]["state"], "Succeeded") << j.dump();
  EXPECT_EQ(j["steps"][1]["state"], "Failed");
  EXPECT_EQ(j["steps"][2]["state"], "Succeeded");
  EXPECT_EQ(j["steps"][3]["state"], "NotStarted");
  EXPECT_EQ(j["error"]["message"], "machine m2 broke");
  EXPECT_EQ(counters_.Get("z"), 0);
  ASSERT_TRUE(engine_->Retry(id).ok());
  EXPECT_EQ(WaitState(id), "Succeeded");
  EXPECT_EQ(counters_.Get("z"), 1);
  int m1 = counters_.Get("m1");
  EXPECT_EQ(Get(id)["steps"][1]["state"], "Succeeded");
  EXPECT_EQ(counters_.Get("m1"), m1);  // only the failed machine ran again
}

TEST_F(BatchTest, KeepGoingRunsTheRestAndFailsAtTheEnd) {
  int64_t id = CreateBatch(true);
  engine_->Kick(id);
  EXPECT_EQ(WaitState(id), "Failed");
  json j = Get(id);
  EXPECT_EQ(j["steps"][1]["state"], "Failed");
  EXPECT_EQ(j["steps"][3]["state"], "Succeeded") << j.dump();
  EXPECT_EQ(counters_.Get("z"), 1);
  EXPECT_EQ(j["error"]["message"], "machine m2 broke");
  ASSERT_TRUE(engine_->Retry(id).ok());
  EXPECT_EQ(WaitState(id), "Succeeded");
  EXPECT_EQ(counters_.Get("z"), 1);  // z had succeeded: only m2 runs again
}

}  // namespace
}  // namespace ferry::control
