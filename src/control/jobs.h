// Jobs: every operation of the control plane is a durable job of ordered steps.
//
// A Workflow names a job type's steps (forward) and its undo steps (run when the job is
// cancelled, to return what it changed to a consistent state). The JobEngine persists every
// job and step in the store and runs each job in a thread of its own:
//
//   NotStarted ──▶ InProgress ──▶ Succeeded
//                   │  ▲   │
//          suspend  ▼  │   └──▶ Failed ──retry──▶ InProgress
//               Suspended        │
//                   │ resume     └──cancel──▶ (undo steps) ──▶ Cancelled
//                   └──cancel──▶ (undo steps) ──▶ Cancelled
//
// Steps are idempotent: a server killed at any moment resumes its jobs at the first step
// that had not succeeded, which runs again from its start. A step returns an outcome: done,
// wait (poll again later, with a progress figure), fail (an error with cause and action), or
// suspend (a manual action: the job waits for Resume). Cancel is accepted in every
// non-final state until a step marked point_of_no_return has succeeded (an irreversible change
// such as a commit that dropped the other recovery points); the undo steps then run, each
// tolerating any amount of the forward work having been done.
//
// Batches: consecutive steps that name the same batch run together, in parallel (up to
// kBatchParallelism at once), each with its own state, progress and timing — the
// machines of a recovery plan. A step of a batch that fails does not stop the others; once
// none of the batch is left to run, the job fails (unless the failed steps are keep_going:
// then the job goes on and ends Failed after its last step). A scoped step sees
// spec["scopes"][scope] as its spec (when present) and data["scopes"][scope] as its data, so
// that the steps of one machine share their state and never touch another's.
//
// Crash points (base/crash_point.h): "job.TYPE.STEP" before a step runs and
// "job.TYPE.STEP.done" after its success is persisted. Hold points: with FERRY_HOLD_AT
// naming "job.TYPE.STEP" (or "job.TYPE.*": its first step), that forward step stays
// InProgress without running (a wait outcome whose message says "held by FERRY_HOLD_AT",
// checked again every 200 ms), so that a test can cancel the job at exactly that step.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "store/database.h"

namespace ferry::control {

using nlohmann::json;

class Controller;

struct StepOutcome {
  enum class Kind { kDone, kWait, kFail, kSuspend };
  Kind kind = Kind::kDone;
  std::string message;    // shown with the step (the manual action's instructions)
  double progress = 0;    // kWait: this step's progress, 0 to 100
  int64_t wait_ms = 500;  // kWait: when to run the step again
  Status error;           // kFail

  static StepOutcome Done(std::string message = {});
  static StepOutcome Wait(std::string message, double progress = 0, int64_t wait_ms = 500);
  static StepOutcome Fail(Status error);
  static StepOutcome Suspend(std::string instructions);
};

inline constexpr int kBatchParallelism = 16;

class JobContext {
 public:
  JobContext(int64_t id, const json& spec, json* data, Controller* ctl,
             std::function<bool()> cancel_requested)
      : id_(id), spec_(spec), data_(data), ctl_(ctl), cancel_(std::move(cancel_requested)) {}
  int64_t id() const { return id_; }
  // The operation's parameters, as given when the job was created.
  const json& spec() const { return spec_; }
  // The job's scratch state: what steps found or made (overlay names, seqs), persisted after
  // every outcome so that a resumed job knows it.
  json& data() { return *data_; }
  Controller& ctl() { return *ctl_; }
  bool cancel_requested() const { return cancel_(); }

 private:
  int64_t id_;
  const json& spec_;
  json* data_;
  Controller* ctl_;
  std::function<bool()> cancel_;
};

struct StepDef {
  std::string name;   // stable: crash points and tests use it
  std::string title;  // for people
  double weight = 1;
  std::function<StepOutcome(JobContext&)> run;
  bool point_of_no_return = false;
  std::string batch = {};   // run in parallel with the neighbouring steps of the same batch
  std::string scope = {};   // the spec and data this step sees (see the top of this file)
  bool keep_going = false;  // a failure does not stop the job (it ends Failed)
};

class Workflow {
 public:
  virtual ~Workflow() = default;
  virtual std::vector<StepDef> Steps(const json& spec) const = 0;
  virtual std::vector<StepDef> UndoSteps(const json& spec) const = 0;
};

class JobEngine {
 public:
  JobEngine(store::Database* db, Controller* ctl, Clock* clock);
  ~JobEngine();
  void Register(const std::string& type, std::unique_ptr<Workflow> workflow);

  // Inserts a job and its steps inside the caller's transaction (so that it commits together
  // with the state change that goes with it). Call Kick(id) once the transaction committed.
  Result<int64_t> Create(store::Sql& tx, const std::string& type, const std::string& target_kind,
                         int64_t target_id, const std::string& target_name, const json& spec,
                         const json& data);
  void Kick(int64_t id);
  // Resumes every job that was NotStarted or InProgress (after a restart).
  Status Start();
  // Stops the job threads at their next wait; jobs stay InProgress in the store.
  void Stop();

  Status Cancel(int64_t id);
  Status Resume(int64_t id, const std::string& comment);
  Status Retry(int64_t id);

  // The workflow registered for a job type, or null (plan workflows run item steps).
  const Workflow* Find(const std::string& type) const;

  Result<json> Get(int64_t id);
  // Newest first. item_id 0: all; state "": all.
  Result<json> List(const std::string& target_kind, int64_t target_id, const std::string& state,
                    int limit, int64_t before_id, int64_t* next_before);
  // Blocks until the job is in a final or suspended state, or the timeout passes (tests,
  // `ferry demo`). Returns the state name.
  Result<std::string> Wait(int64_t id, int64_t timeout_ms);

  static std::string JobId(int64_t id) { return "job-" + std::to_string(id); }

 private:
  struct Running;
  void Run(int64_t id);
  Result<json> Load(store::Sql& sql, int64_t id);
  std::vector<std::string> AllowedActions(const json& job) const;

  store::Database* db_;
  Controller* ctl_;
  Clock* clock_;
  std::map<std::string, std::unique_ptr<Workflow>> workflows_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<int64_t, std::thread> threads_;
  std::map<int64_t, bool> cancel_;  // in-memory mirror of cancel_requested for running jobs
  std::set<int64_t> kicked_;        // jobs to re-read at once (cancel, resume, retry)
  std::vector<std::thread> finished_;
};

}  // namespace ferry::control
