// Consistency groups (docs/plans.md): items that recover to the same instant. The server
// takes group points across the members' source nodes with the node barrier, and finds the
// newest point every member's target holds.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "base/clock.h"
#include "control/inventory.h"
#include "store/database.h"

namespace ferry::control {

// A group point every member's target replica holds.
struct GroupPoint {
  int64_t group_id = 0;
  std::string marker_id;  // "cg-<group>-<n>"; "marker:<marker_id>" names it on each replica
  int64_t time_ns = 0;
  bool app_consistent = false;
  std::map<int64_t, std::string> points;  // item id -> the point to open ("marker:…")
};

class Groups {
 public:
  Groups(store::Database* db, Inventory* inventory, Clock* clock) : db_(db), inv_(inventory), clock_(clock) {}

  Result<json> Create(const json& body);  // {"name", "members": [item refs]}
  Result<json> List(const Page& page);
  Result<json> Get(const std::string& ref);
  Status Delete(const std::string& ref);
  Result<json> AddMember(const std::string& ref, const json& body);  // {"item": ref}
  Result<json> RemoveMember(const std::string& ref, const std::string& item_ref);
  Result<int64_t> GroupId(store::Sql& sql, const std::string& ref);
  // The group named name, created when missing (enable replication's consistency_group).
  Result<int64_t> Ensure(store::Sql& sql, const std::string& name);

  // Takes the group points that are due (the controller calls it every monitor pass).
  void TakeDuePoints();
  // The newest group point every member's target holds; kNotFound when there is none yet.
  Result<GroupPoint> LatestCommonPoint(int64_t group_id, bool app_consistent);

 private:
  store::Database* db_;
  Inventory* inv_;
  Clock* clock_;
};

}  // namespace ferry::control
