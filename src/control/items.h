// Items: replicated items (one machine's protection from one site to the other), their
// states, and the entry point of every operation on them.
//
// States (docs/protocols/server-api.md, "Replicated items"):
//
//   Enabling ─▶ InitialSync ─▶ Protected ◀──────────────────────────────┐
//                               │  ▲   ├──test-failover──▶ TestFailover ─┘ (cleanup)
//                               │  │   └──failover──▶ FailingOver ─▶ FailedOver
//                               │  │                   (change-recovery-point) │ commit
//                               │  └──── Reprotecting ◀──reprotect── Committed ◀┘
//                               └──disable──▶ Disabled
//
// Reprotect swaps the direction (forward ⇄ reverse): the same states then describe the way
// back, and failback is a planned failover of a reverse item. An operation is allowed when
// the state lists it and no job is active on the item; it starts a job (jobs.h) in the same
// transaction that moves the item to its transitional state, so a crash never leaves one
// without the other.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/clock.h"
#include "control/inventory.h"
#include "control/jobs.h"
#include "store/database.h"

namespace ferry::control {

std::vector<std::string> AllowedOperations(const std::string& state);

// An operation's job spec from its request body, and the state it moves an item to ("" when
// it stays). plan: the body of a plan operation (docs/plans.md), which also takes the
// multi-machine points and `failback` (planned unless "planned": false), but not
// change-recovery-point or resync. Errors: kInvalidArgument naming the field, kNotFound for
// an unknown operation.
struct OperationSpec {
  json spec;
  std::string transitional;
};
Result<OperationSpec> ParseOperation(const std::string& op, const json& body, bool plan);
// A recovery point the API accepts (items.cc).
Status CheckPoint(const std::string& point);

// The persisted item, as workflows read and change it.
struct ItemRecord {
  int64_t id = 0;
  std::string name;
  int64_t machine_id = 0;
  std::string state, direction;
  int64_t active_site = 0, source_site = 0, target_site = 0, source_node = 0, target_node = 0;
  int64_t policy_id = 0;
  std::string health;
  json problems = json::array();
  std::optional<double> rpo_seconds;
  json properties = json::object();
  // [{"name", "volume", "size", "path"}]: path is the disk at the current source.
  json disks = json::array();
  json live = json::object();  // per-disk figures the monitor keeps fresh, by volume
  json failover, test_failover, last_test;  // null when none
  json running;  // the machine a launcher runs for the item (schema.cc, migration 2), or null
  int64_t active_job = 0;
  std::string created_at, updated_at;
};

class Groups;

class Items {
 public:
  Items(store::Database* db, Inventory* inventory, JobEngine* jobs, Groups* groups, Clock* clock)
      : db_(db), inv_(inventory), jobs_(jobs), groups_(groups), clock_(clock) {}

  Result<json> List(const std::string& state, const std::string& site, const Page& page);
  Result<json> Get(const std::string& ref);
  Result<int64_t> ItemId(store::Sql& sql, const std::string& ref);

  // Each returns {"job": <job>}.
  Result<json> Enable(const json& body);
  Result<json> Update(const std::string& ref, const json& body);
  Result<json> Operate(const std::string& ref, const std::string& op, const json& body);
  Result<json> Disable(const std::string& ref);

  Result<json> RecoveryPoints(const std::string& ref, const std::string& kind, const std::string& before,
                              const std::string& after, const Page& page);

  // The serial console of the machine a launcher runs for the item (test: its test-failover
  // machine), from the node that runs it: {"machine", "node", "status", "offset", "next",
  // "text"}. kFailedPrecondition when no machine runs.
  Result<json> Console(const std::string& ref, bool test, int64_t offset, int64_t limit);

  // For workflows and the monitor.
  Result<ItemRecord> Load(store::Sql& sql, int64_t id);
  Status Store(store::Sql& sql, const ItemRecord& item);
  Result<json> ToJson(store::Sql& sql, const ItemRecord& item);

 private:
  Status Start(store::Sql& tx, ItemRecord& item, const std::string& op, const std::string& job_type,
                     const json& spec, const std::string& transitional_state, int64_t* job_id);
  Result<json> Launch(const std::function<Result<int64_t>(store::Sql&)>& fn);
  Status ValidateProperties(store::Sql& sql, const ItemRecord& item, json* props, const json& body);

  store::Database* db_;
  Inventory* inv_;
  JobEngine* jobs_;
  Groups* groups_;  // enable replication's consistency_group
  Clock* clock_;
};

}  // namespace ferry::control
