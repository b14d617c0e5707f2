#include "control/jobs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "base/crash_point.h"
#include "control/errors.h"

namespace ferry::control {

using store::Row;
using store::Sql;
using store::Value;

StepOutcome StepOutcome::Done(std::string message) {
  StepOutcome o;
  o.kind = Kind::kDone;
  o.message = std::move(message);
  return o;
}
StepOutcome StepOutcome::Wait(std::string message, double progress, int64_t wait_ms) {
  StepOutcome o;
  o.kind = Kind::kWait;
  o.message = std::move(message);
  o.progress = std::clamp(progress, 0.0, 100.0);
  o.wait_ms = std::max<int64_t>(wait_ms, 10);
  return o;
}
StepOutcome StepOutcome::Fail(Status error) {
  StepOutcome o;
  o.kind = Kind::kFail;
  o.error = error.ok() ? Internal("a step failed without saying why") : std::move(error);
  return o;
}
StepOutcome StepOutcome::Suspend(std::string instructions) {
  StepOutcome o;
  o.kind = Kind::kSuspend;
  o.message = std::move(instructions);
  return o;
}

namespace {

constexpr const char* kJobColumns =
    "id, type, target_kind, target_id, target_name, state, phase, progress, cancel_requested, "
    "spec, data, error, created_at, started_at, ended_at";

bool Final(const std::string& state) {
  return state == "Succeeded" || state == "Failed" || state == "Cancelled";
}

json NullableText(const Row& r, size_t i) { return r.IsNull(i) ? json(nullptr) : json(r.Text(i)); }

json JobFromRow(const Row& r) {
  json j;
  j["id"] = JobEngine::JobId(r.Int(0));
  j["type"] = r.Text(1);
  j["target"] = {{"kind", r.Text(2)}, {"id", r.Text(2) + "-" + std::to_string(r.Int(3))},
                 {"name", r.Text(4)}};
  j["state"] = r.Text(5);
  j["phase"] = r.Text(6);
  j["progress"] = std::round(r.Real(7) * 10) / 10;
  j["cancel_requested"] = r.Int(8) != 0;
  j["spec"] = json::parse(r.Text(9), nullptr, false);
  j["data"] = json::parse(r.Text(10), nullptr, false);
  j["error"] = r.IsNull(11) ? json(nullptr) : json::parse(r.Text(11), nullptr, false);
  j["created_at"] = r.Text(12);
  j["started_at"] = NullableText(r, 13);
  j["ended_at"] = NullableText(r, 14);
  return j;
}

json ErrorJson(const Status& s) {
  ErrorParts p = Describe(s);
  return {{"code", p.code}, {"message", p.message}, {"action", p.action}};
}

}  // namespace

JobEngine::JobEngine(store::Database* db, Controller* ctl, Clock* clock)
    : db_(db), ctl_(ctl), clock_(clock) {}

JobEngine::~JobEngine() { Stop(); }

void JobEngine::Register(const std::string& type, std::unique_ptr<Workflow> workflow) {
  workflows_[type] = std::move(workflow);
}

const Workflow* JobEngine::Find(const std::string& type) const {
  auto it = workflows_.find(type);
  return it == workflows_.end() ? nullptr : it->second.get();
}

Result<int64_t> JobEngine::Create(Sql& tx, const std::string& type, const std::string& target_kind,
                                  int64_t target_id, const std::string& target_name,
                                  const json& spec, const json& data) {
  const Workflow* wf = Find(type);
  if (!wf) return Internal("no workflow for job type " + type);
  ASSIGN_OR_RETURN(int64_t id, store::NextId(tx, "jobs"));
  std::string now = FormatTime(clock_->NowNanos());
  RETURN_IF_ERROR(tx.Exec("INSERT INTO jobs (id, type, target_kind, target_id, target_name, state, "
                          "phase, progress, cancel_requested, spec, data, error, created_at) "
                          "VALUES ($1, $2, $3, $4, $5, 'NotStarted', 'run', 0, 0, $6, $7, NULL, $8)",
                          {id, type, target_kind, target_id, target_name, spec.dump(), data.dump(), now})
                      .status());
  int64_t idx = 0;
  for (const StepDef& s : wf->Steps(spec)) {
    RETURN_IF_ERROR(tx.Exec("INSERT INTO job_steps (job_id, idx, phase, name, title, state, weight, "
                            "progress, message) VALUES ($1, $2, 'run', $3, $4, 'NotStarted', $5, 0, '')",
                            {id, idx++, s.name, s.title, s.weight})
                        .status());
  }
  return id;
}

void JobEngine::Kick(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return;
  for (auto& t : finished_) t.join();
  finished_.clear();
  if (threads_.count(id)) {
    kicked_.insert(id);
    cv_.notify_all();
    return;
  }
  threads_.emplace(id, std::thread([this, id] { Run(id); }));
}

Status JobEngine::Start() {
  ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT id FROM jobs WHERE state IN ('NotStarted', 'InProgress') "
                                         "ORDER BY id"));
  for (const Row& r : rows) Kick(r.Int(0));
  return Status::Ok();
}

void JobEngine::Stop() {
  std::map<int64_t, std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
    threads.swap(threads_);
  }
  for (auto& [id, t] : threads) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& t : finished_) t.join();
  finished_.clear();
}

Result<json> JobEngine::Load(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = $1", {id}));
  if (rows.empty()) return NotFound("no job " + JobId(id));
  json j = JobFromRow(rows[0]);
  ASSIGN_OR_RETURN(auto steps, sql.Query("SELECT idx, phase, name, title, state, weight, progress, message, "
                                         "started_at, ended_at FROM job_steps WHERE job_id = $1 ORDER BY idx",
                                         {id}));
  j["steps"] = json::array();
  for (const Row& s : steps) {
    j["steps"].push_back({{"index", s.Int(0)}, {"phase", s.Text(1)}, {"name", s.Text(2)},
                          {"title", s.Text(3)}, {"state", s.Text(4)}, {"weight", s.Real(5)},
                          {"progress", std::round(s.Real(6) * 10) / 10}, {"message", s.Text(7)},
                          {"started_at", NullableText(s, 8)}, {"ended_at", NullableText(s, 9)}});
  }
  return j;
}

std::vector<std::string> JobEngine::AllowedActions(const json& job) const {
  const std::string state = job["state"];
  if (Final(state) && state != "Failed") return {};
  std::vector<std::string> out;
  if (state == "Suspended") out.push_back("resume");
  if (state == "Failed") out.push_back("retry");
  if (job["phase"] == "undo") return out;
  const Workflow* wf = Find(job["type"]);
  bool irreversible = false;
  if (wf) {
    std::vector<StepDef> defs = wf->Steps(job["spec"]);
    for (const json& s : job["steps"]) {
      if (s["phase"] != "run" || s["state"] != "Succeeded") continue;
      for (const StepDef& d : defs) {
        if (d.name == s["name"] && d.point_of_no_return) irreversible = true;
      }
    }
  }
  if (!irreversible) out.push_back("cancel");
  return out;
}

Result<json> JobEngine::Get(int64_t id) {
  ASSIGN_OR_RETURN(json j, Load(*db_, id));
  j["allowed_actions"] = AllowedActions(j);
  for (json& s : j["steps"]) s.erase("weight");
  j.erase("data");
  return j;
}

Result<json> JobEngine::List(const std::string& target_kind, int64_t target_id, const std::string& state,
                             int limit, int64_t before_id, int64_t* next_before) {
  std::string sql = std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id < $1";
  std::vector<Value> params{before_id > 0 ? before_id : INT64_MAX};
  if (!target_kind.empty()) {
    sql += " AND target_kind = $2 AND target_id = $3";
    params.push_back(target_kind);
    params.push_back(target_id);
  }
  if (!state.empty()) {
    sql += " AND state = $" + std::to_string(params.size() + 1);
    params.push_back(state);
  }
  sql += " ORDER BY id DESC LIMIT $" + std::to_string(params.size() + 1);
  params.push_back(int64_t{limit} + 1);
  ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  json out = json::array();
  *next_before = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (static_cast<int>(i) == limit) {
      *next_before = rows[i - 1].Int(0);
      break;
    }
    ASSIGN_OR_RETURN(json j, Get(rows[i].Int(0)));
    out.push_back(std::move(j));
  }
  return out;
}

Result<std::string> JobEngine::Wait(int64_t id, int64_t timeout_ms) {
  int64_t deadline = clock_->NowNanos() + timeout_ms * 1'000'000;
  for (;;) {
    ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT state FROM jobs WHERE id = $1", {id}));
    if (rows.empty()) return NotFound("no job " + JobId(id));
    std::string state = rows[0].Text(0);
    if (Final(state) || state == "Suspended") return state;
    if (clock_->NowNanos() > deadline) return Aborted("job " + JobId(id) + " is still " + state);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Status JobEngine::Cancel(int64_t id) {
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(json j, Load(tx, id));
    std::string state = j["state"];
    if (state == "Succeeded" || state == "Cancelled") {
      return InvalidState("job " + JobId(id) + " is " + state + ": there is nothing to cancel", "");
    }
    if (j["phase"] == "undo") {
      if (state == "Failed") {
        return WithAction(Code::kFailedPrecondition,
                          "job " + JobId(id) + " is already cancelling and its undo step failed",
                          "fix the cause in the job's error, then retry the job (ferry job retry " + JobId(id) + ")");
      }
      return Status::Ok();  // already cancelling
    }
    auto allowed = AllowedActions(j);
    if (std::find(allowed.begin(), allowed.end(), "cancel") == allowed.end()) {
      return WithAction(Code::kFailedPrecondition,
                        "job " + JobId(id) + " has passed a step that cannot be undone; it can no longer be cancelled",
                        "let it finish (retry it if it failed)");
    }
    return tx.Exec("UPDATE jobs SET cancel_requested = 1, state = CASE WHEN state IN ('Failed', 'Suspended', "
                   "'NotStarted') THEN 'InProgress' ELSE state END WHERE id = $1",
                   {id})
        .status();
  }));
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_[id] = true;
    cv_.notify_all();
  }
  Kick(id);
  return Status::Ok();
}

Status JobEngine::Resume(int64_t id, const std::string& comment) {
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(json j, Load(tx, id));
    if (j["state"] != "Suspended") {
      return InvalidState("job " + JobId(id) + " is " + j["state"].get<std::string>() +
                              ", not Suspended: only a job waiting for a manual action can be resumed",
                          "");
    }
    std::string now = FormatTime(clock_->NowNanos());
    RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'Succeeded', progress = 100, ended_at = $2, "
                            "message = $3 WHERE job_id = $1 AND state = 'Suspended'",
                            {id, now, comment.empty() ? std::string("resumed") : "resumed: " + comment})
                        .status());
    return tx.Exec("UPDATE jobs SET state = 'InProgress' WHERE id = $1", {id}).status();
  }));
  Kick(id);
  return Status::Ok();
}

Status JobEngine::Retry(int64_t id) {
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(json j, Load(tx, id));
    if (j["state"] != "Failed") {
      return InvalidState("job " + JobId(id) + " is " + j["state"].get<std::string>() +
                              ": only a failed job can be retried",
                          "");
    }
    RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'NotStarted', ended_at = NULL WHERE job_id = $1 "
                            "AND state = 'Failed'",
                            {id})
                        .status());
    return tx.Exec("UPDATE jobs SET state = 'InProgress', error = NULL, ended_at = NULL WHERE id = $1", {id})
        .status();
  }));
  Kick(id);
  return Status::Ok();
}

namespace {

double PhaseProgress(const json& job, const std::string& phase) {
  double total = 0, done = 0;
  for (const json& s : job["steps"]) {
    if (s["phase"] != phase) continue;
    double w = s["weight"];
    total += w;
    std::string st = s["state"];
    if (st == "Succeeded" || st == "Skipped") {
      done += w;
    } else {
      done += w * s["progress"].get<double>() / 100.0;
    }
  }
  return total > 0 ? 100.0 * done / total : 100.0;
}

}  // namespace

namespace {

bool StepFinal(const std::string& st) { return st == "Succeeded" || st == "Skipped" || st == "Cancelled"; }

const StepDef* FindDef(const std::vector<StepDef>& defs, const std::string& name) {
  for (const StepDef& d : defs) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

// The job's error when failed steps stop it: the step's own error when one failed, else a
// summary that names each.
json FailedError(const json& job, const std::vector<const json*>& failed, const std::string& id) {
  if (failed.size() == 1 && job["error"].is_object()) return job["error"];
  std::string msg = std::to_string(failed.size()) + (failed.size() == 1 ? " step" : " steps") + " failed: ";
  for (size_t i = 0; i < failed.size() && i < 10; ++i) {
    msg += (i ? "; " : "") + (*failed[i])["title"].get<std::string>() + ": " + (*failed[i])["message"].get<std::string>();
  }
  if (failed.size() > 10) msg += "; and " + std::to_string(failed.size() - 10) + " more";
  std::string code = job["error"].is_object() ? job["error"].value("code", "FailedPrecondition") : "FailedPrecondition";
  return {{"code", code}, {"message", msg},
          {"action", "fix the causes shown with each step, then retry the job to run the failed steps again (ferry job "
                     "retry " + id + "), or cancel it to undo what it did"}};
}

// One step of a round: what it runs with and what came out.
struct Work {
  int64_t idx = 0;
  std::string name, point, prev_message;
  const StepDef* def = nullptr;
  const json* spec = nullptr;
  json* data = nullptr;
  StepOutcome out;
};

}  // namespace

// One job's thread. Every decision is taken from the store, so that what it does after a
// restart is what it would have done without one. Each pass runs a round: the first step
// that is not done, with the rest of its batch (the steps of a batch that are due).
void JobEngine::Run(int64_t id) {
  auto persist_fail = [&](const Status& s) {
    spdlog::error("job {}: cannot update the store: {}; the job will resume after a restart",
                  JobId(id), s.ToString());
  };
  std::map<int64_t, int64_t> due;  // step index -> when it asked to run again (ns)
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      kicked_.erase(id);
      if (stopping_) break;
    }
    auto loaded = Load(*db_, id);
    if (!loaded.ok()) {
      persist_fail(loaded.status());
      break;
    }
    json job = std::move(*loaded);
    const std::string state = job["state"];
    const std::string type = job["type"];
    const Workflow* wf = Find(type);
    bool stop_here = Final(state) || state == "Suspended" || wf == nullptr;
    if (!stop_here) {
      std::string now = FormatTime(clock_->NowNanos());
      if (state == "NotStarted") {
        Status s = db_->Exec("UPDATE jobs SET state = 'InProgress', started_at = $2 WHERE id = $1", {id, now})
                       .status();
        if (!s.ok()) { persist_fail(s); break; }
      }
      std::string phase = job["phase"];
      bool cancel = job["cancel_requested"].get<bool>();
      if (phase == "run" && cancel) {
        // Switch to the undo phase: what did not run is cancelled, the undo steps follow.
        Status s = db_->Transaction([&](Sql& tx) -> Status {
          RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'Cancelled', ended_at = $2 WHERE job_id = $1 "
                                  "AND phase = 'run' AND state NOT IN ('Succeeded', 'Skipped')",
                                  {id, now})
                              .status());
          int64_t idx = static_cast<int64_t>(job["steps"].size());
          for (const StepDef& d : wf->UndoSteps(job["spec"])) {
            RETURN_IF_ERROR(tx.Exec("INSERT INTO job_steps (job_id, idx, phase, name, title, state, weight, "
                                    "progress, message) VALUES ($1, $2, 'undo', $3, $4, 'NotStarted', $5, 0, '')",
                                    {id, idx++, d.name, d.title, d.weight})
                                .status());
          }
          return tx.Exec("UPDATE jobs SET phase = 'undo', state = 'InProgress', error = NULL WHERE id = $1", {id})
              .status();
        });
        if (!s.ok()) { persist_fail(s); break; }
        spdlog::info("job {} ({}): cancel requested; undoing what it did", JobId(id), type);
        due.clear();
        continue;
      }
      std::vector<StepDef> defs = phase == "run" ? wf->Steps(job["spec"]) : wf->UndoSteps(job["spec"]);
      std::vector<const json*> steps;  // this phase's, in order
      for (const json& s : job["steps"]) {
        if (s["phase"] == phase) steps.push_back(&s);
      }
      // The first step that is not done; failed keep_going steps count as done until the end.
      size_t first = steps.size();
      for (size_t i = 0; i < steps.size(); ++i) {
        std::string st = (*steps[i])["state"];
        if (StepFinal(st)) continue;
        const StepDef* d = FindDef(defs, (*steps[i])["name"]);
        if (st == "Failed" && d && d->keep_going) continue;
        first = i;
        break;
      }
      if (first == steps.size()) {
        std::vector<const json*> failed;
        for (const json* s : steps) {
          if ((*s)["state"] == "Failed") failed.push_back(s);
        }
        Status s;
        if (!failed.empty()) {
          s = db_->Exec("UPDATE jobs SET state = 'Failed', error = $2, ended_at = $3 WHERE id = $1",
                        {id, FailedError(job, failed, JobId(id)).dump(), now})
                  .status();
          spdlog::warn("job {} ({}) ended with {} failed steps", JobId(id), type, failed.size());
        } else {
          std::string final_state = phase == "run" ? "Succeeded" : "Cancelled";
          s = db_->Exec("UPDATE jobs SET state = $2, progress = $3, ended_at = $4 WHERE id = $1",
                        {id, final_state, phase == "run" ? 100.0 : PhaseProgress(job, "run"), now})
                  .status();
          spdlog::info("job {} ({}) {}", JobId(id), type, final_state == "Succeeded" ? "succeeded" : "was cancelled");
        }
        if (!s.ok()) { persist_fail(s); break; }
        continue;  // re-reads the job and stops
      }
      const StepDef* first_def = FindDef(defs, (*steps[first])["name"]);
      if (first_def == nullptr) {
        Status s = db_->Exec("UPDATE jobs SET state = 'Failed', error = $2, ended_at = $3 WHERE id = $1",
                             {id, ErrorJson(Internal("step " + (*steps[first])["name"].get<std::string>() +
                                                     " is unknown to this server version")).dump(), now})
                       .status();
        if (!s.ok()) persist_fail(s);
        continue;
      }
      // The round: the first step, or the steps of its batch that are left and due.
      std::vector<const json*> batch_left, batch_failed;
      for (size_t i = first; i < steps.size(); ++i) {
        const StepDef* d = FindDef(defs, (*steps[i])["name"]);
        if (i > first && (first_def->batch.empty() || !d || d->batch != first_def->batch)) break;
        std::string st = (*steps[i])["state"];
        if (st == "Failed") {
          if (!d || !d->keep_going) batch_failed.push_back(steps[i]);
        } else if (!StepFinal(st)) {
          batch_left.push_back(steps[i]);
        }
      }
      if (batch_left.empty()) {
        // Nothing of the batch is left but some of it failed: the job stops here.
        Status s = db_->Exec("UPDATE jobs SET state = 'Failed', error = $2, ended_at = $3 WHERE id = $1",
                             {id, FailedError(job, batch_failed, JobId(id)).dump(), now})
                       .status();
        if (!s.ok()) { persist_fail(s); break; }
        spdlog::warn("job {} ({}) failed at step {}", JobId(id), type, (*batch_failed[0])["name"].get<std::string>());
        continue;
      }
      const int64_t now_ns = clock_->NowNanos();
      json data = job["data"];
      std::vector<Work> work;
      for (const json* row : batch_left) {
        int64_t idx = (*row)["index"];
        auto d = due.find(idx);
        if (d != due.end() && d->second > now_ns) continue;
        Work w;
        w.idx = idx;
        w.name = (*row)["name"];
        w.prev_message = (*row)["message"];
        w.def = FindDef(defs, w.name);
        w.point = "job." + type + "." + w.name;
        w.spec = &job["spec"];
        w.data = &data;
        if (!w.def->scope.empty()) {
          // Made here, before any step runs: steps of a round only touch their own scope.
          json& scoped = data["scopes"][w.def->scope];
          if (!scoped.is_object()) scoped = json::object();
          w.data = &scoped;
          const json& spec = job["spec"];
          if (spec.contains("scopes") && spec["scopes"].contains(w.def->scope)) w.spec = &spec["scopes"][w.def->scope];
        }
        work.push_back(std::move(w));
      }
      if (!work.empty()) {
        Status s = db_->Transaction([&](Sql& tx) -> Status {
          for (const Work& w : work) {
            RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'InProgress', started_at = COALESCE(started_at, $3) "
                                    "WHERE job_id = $1 AND idx = $2 AND (state <> 'InProgress' OR started_at IS NULL)",
                                    {id, w.idx, now})
                                .status());
          }
          return Status::Ok();
        });
        if (!s.ok()) { persist_fail(s); break; }
        for (const Work& w : work) CrashPoint(w.point);
        auto cancelled = [this, id] {
          std::lock_guard<std::mutex> lock(mu_);
          auto it = cancel_.find(id);
          return it != cancel_.end() && it->second;
        };
        auto run_one = [&](Work& w) {
          JobContext ctx(id, *w.spec, w.data, ctl_, cancelled);
          if (phase == "run" && HoldPoint(w.point)) {
            // A test holds the job here (base/crash_point.h): the step stays InProgress and
            // does not run, until the job is cancelled or a server started without the hold
            // resumes it. Undo steps are never held: a cancelled job must be able to finish.
            w.out = StepOutcome::Wait("held by FERRY_HOLD_AT=" + w.point, 0, 200);
            return;
          }
          try {
            w.out = w.def->run(ctx);
          } catch (const std::exception& e) {
            w.out = StepOutcome::Fail(Internal(std::string("step ") + w.name + " threw: " + e.what()));
          }
        };
        if (work.size() == 1) {
          run_one(work[0]);
        } else {
          std::atomic<size_t> next{0};
          std::vector<std::thread> pool;
          for (size_t t = 0; t < std::min<size_t>(work.size(), kBatchParallelism); ++t) {
            pool.emplace_back([&] {
              for (size_t i = next++; i < work.size(); i = next++) run_one(work[i]);
            });
          }
          for (auto& t : pool) t.join();
        }
        std::string when = FormatTime(clock_->NowNanos());
        s = db_->Transaction([&](Sql& tx) -> Status {
          RETURN_IF_ERROR(tx.Exec("UPDATE jobs SET data = $2 WHERE id = $1", {id, data.dump()}).status());
          for (const Work& w : work) {
            const StepOutcome& out = w.out;
            switch (out.kind) {
              case StepOutcome::Kind::kDone:
                RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'Succeeded', progress = 100, message = $3, "
                                        "ended_at = $4 WHERE job_id = $1 AND idx = $2",
                                        {id, w.idx, out.message, when})
                                    .status());
                break;
              case StepOutcome::Kind::kWait:
                RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET progress = $3, message = $4 WHERE job_id = $1 AND idx = $2",
                                        {id, w.idx, out.progress, out.message})
                                    .status());
                break;
              case StepOutcome::Kind::kFail:
                RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'Failed', message = $3, ended_at = $4 "
                                        "WHERE job_id = $1 AND idx = $2",
                                        {id, w.idx, Describe(out.error).message, when})
                                    .status());
                // The first failure's error; the job fails when its batch is over.
                RETURN_IF_ERROR(tx.Exec("UPDATE jobs SET error = $2 WHERE id = $1 AND error IS NULL",
                                        {id, ErrorJson(out.error).dump()})
                                    .status());
                break;
              case StepOutcome::Kind::kSuspend:
                RETURN_IF_ERROR(tx.Exec("UPDATE job_steps SET state = 'Suspended', message = $3 WHERE job_id = $1 "
                                        "AND idx = $2",
                                        {id, w.idx, out.message})
                                    .status());
                RETURN_IF_ERROR(tx.Exec("UPDATE jobs SET state = 'Suspended' WHERE id = $1", {id}).status());
                break;
            }
          }
          // Progress of the phase the job is in, from the steps as they are now.
          ASSIGN_OR_RETURN(json fresh, Load(tx, id));
          return tx.Exec("UPDATE jobs SET progress = $2 WHERE id = $1",
                         {id, phase == "run" ? PhaseProgress(fresh, "run") : fresh["progress"].get<double>()})
              .status();
        });
        if (!s.ok()) { persist_fail(s); break; }
        const int64_t after = clock_->NowNanos();
        for (const Work& w : work) {
          switch (w.out.kind) {
            case StepOutcome::Kind::kDone:
              CrashPoint(w.point + ".done");
              due.erase(w.idx);
              break;
            case StepOutcome::Kind::kWait:
              if (w.out.message != w.prev_message && w.out.message.rfind("held by FERRY_HOLD_AT", 0) == 0) {
                spdlog::warn("job {} ({}): held before step {} by FERRY_HOLD_AT; cancel it or restart without the hold",
                             JobId(id), type, w.name);
              }
              due[w.idx] = after + w.out.wait_ms * 1'000'000;
              break;
            case StepOutcome::Kind::kFail:
              spdlog::warn("job {} ({}): step {} failed: {}", JobId(id), type, w.name, w.out.error.ToString());
              due.erase(w.idx);
              break;
            case StepOutcome::Kind::kSuspend:
              due.erase(w.idx);
              break;
          }
        }
        bool progressed = std::any_of(work.begin(), work.end(),
                                      [](const Work& w) { return w.out.kind != StepOutcome::Kind::kWait; });
        if (progressed) continue;
      }
      // Every step of the round waits: sleep until the first is due again.
      int64_t next_due = INT64_MAX;
      for (const json* row : batch_left) {
        auto d = due.find((*row)["index"].get<int64_t>());
        next_due = std::min(next_due, d == due.end() ? clock_->NowNanos() : d->second);
      }
      int64_t wait_ms = std::max<int64_t>(0, (next_due - clock_->NowNanos()) / 1'000'000);
      if (wait_ms > 0) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] {
          return stopping_ || kicked_.count(id) || (phase == "run" && cancel_[id]);
        });
      }
      continue;
    }
    // Nothing to run now: leave, unless someone kicked the job meanwhile.
    std::lock_guard<std::mutex> lock(mu_);
    if (kicked_.count(id) && !stopping_) continue;
    cancel_.erase(id);
    auto it = threads_.find(id);
    if (it != threads_.end()) {
      finished_.push_back(std::move(it->second));
      threads_.erase(it);
    }
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = threads_.find(id);
  if (it != threads_.end()) {
    finished_.push_back(std::move(it->second));
    threads_.erase(it);
  }
}

}  // namespace ferry::control
