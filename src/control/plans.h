// Plans: recovery plans (docs/plans.md) — their definitions, the readiness check, and the
// entry point of plan operations, each a job over every machine of the plan.
//
// plans.cc: definitions (create, list, get, replace, delete); plan_readiness.cc: readiness.
// plan_jobs.cc: Operate and the plan workflows.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/clock.h"
#include "control/inventory.h"
#include "control/items.h"
#include "control/jobs.h"
#include "store/database.h"

namespace ferry::control {

// One member of a plan, as operations see it.
struct PlanMember {
  int64_t machine_id = 0;
  std::string machine;  // its name
  int64_t group_idx = 0;  // 0-based
  int64_t item_id = 0;    // its item that is not Disabled; 0 when none
};

struct PlanRecord {
  int64_t id = 0;
  std::string name, description;
  int64_t source_site = 0, target_site = 0;
  // [{"name", "pre": [action], "post": [action]}], the actions as stored (defaults filled in).
  json groups = json::array();
  std::vector<PlanMember> members;  // ordered by group, then position in the group
  int64_t active_job = 0;
  json last_operation;  // {"operation", "job", "state", "at"} or null
  std::string created_at, updated_at;
};

class Plans {
 public:
  Plans(store::Database* db, Inventory* inventory, Items* items, JobEngine* jobs, Clock* clock)
      : db_(db), inv_(inventory), items_(items), jobs_(jobs), clock_(clock) {}

  // Definitions. The body: {"name", "source_site", "target_site", "description",
  // "groups": [{"name", "machines": [machine refs], "pre": [action], "post": [action]}]}.
  Result<json> Create(const json& body);
  Result<json> List(const Page& page);
  Result<json> Get(const std::string& ref);
  // Replaces the whole definition (the same body as Create); refused while a job runs.
  Result<json> Replace(const std::string& ref, const json& body);
  // Refused while a job runs.
  Status Delete(const std::string& ref);
  Result<int64_t> PlanId(store::Sql& sql, const std::string& ref);

  Result<json> Readiness(const std::string& ref);

  // A plan operation (test-failover, cleanup-test-failover, failover, failback, commit,
  // reprotect): {"job": <job>} (plan_jobs.cc).
  Result<json> Operate(const std::string& ref, const std::string& op, const json& body);

  // For workflows.
  Result<PlanRecord> Load(store::Sql& sql, int64_t id);
  Result<json> ToJson(store::Sql& sql, const PlanRecord& plan);

 private:
  store::Database* db_;
  Inventory* inv_;
  Items* items_;
  JobEngine* jobs_;
  Clock* clock_;
};

// Registers the plan workflows (plan_jobs.cc) on the engine.
void RegisterPlanWorkflows(JobEngine& engine);

}  // namespace ferry::control
