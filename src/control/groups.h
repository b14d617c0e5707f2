// Consistency groups (docs/plans.md): items that recover to the same instant. The server
// takes group points across the members' source nodes with the node barrier, and finds the
// newest point every member's target holds.
//
// A group point, in three phases over the source nodes of the members that replicate
// (Protected or TestFailover), each phase on every node at once (a thread per node):
//
//   hold (POST /v1/barriers, app_consistent every app interval) ─▶ mark (the same marker
//   everywhere) ─▶ release ─▶ a group_points row
//        │ any failure: release what is held, no row; the group shows the problem
//
// Names: group "cg-3"; its points "cg-3-17" (group_points.marker_id, and the marker's label
// on every volume, which the monitor copies into recovery_points); on the nodes the marker id
// is 32 hex digits, the group id in the first 16 and the point's number in the last 16, so
// "marker:<hex>" opens the point on every member's replica (GroupPoint.points).
//
// Thread-safety: every method may be called from any thread; TakeDuePoints from one thread.
// Errors: kInvalidArgument (a field, named), kNotFound, kAlreadyExists (a name taken),
// kFailedPrecondition (a member that cannot join: Disabled, in another group, another
// direction).
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/clock.h"
#include "control/inventory.h"
#include "store/database.h"

namespace ferry::control {

class Items;
struct ItemRecord;

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
  Groups(store::Database* db, Inventory* inventory, Items* items, Clock* clock)
      : db_(db), inv_(inventory), items_(items), clock_(clock) {}

  Result<json> Create(const json& body);  // {"name", "members": [item refs]}
  Result<json> List(const Page& page);
  Result<json> Get(const std::string& ref);
  // Members leave the group; its points are forgotten (the markers stay on the replicas).
  Status Delete(const std::string& ref);
  Result<json> AddMember(const std::string& ref, const json& body);  // {"item": ref}
  Result<json> RemoveMember(const std::string& ref, const std::string& item_ref);
  Result<int64_t> GroupId(store::Sql& sql, const std::string& ref);
  // The group named name, created when missing (enable replication's consistency_group).
  Result<int64_t> Ensure(store::Sql& sql, const std::string& name);
  // Puts the item in the group; again is fine. kFailedPrecondition when the item is Disabled,
  // in another group, or replicates between other sites (or the other way) than the members.
  Status Join(store::Sql& sql, int64_t group_id, int64_t item_id);
  // The name of the item's group, or null.
  Result<json> GroupOf(store::Sql& sql, int64_t item_id);

  // Takes the group points that are due (the controller's group-point thread calls it every
  // ~200 ms).
  void TakeDuePoints();
  // The newest group point every member's target holds; kNotFound when there is none yet.
  Result<GroupPoint> LatestCommonPoint(int64_t group_id, bool app_consistent);

 private:
  // What the point-taking thread remembers of a group between passes.
  struct Schedule {
    bool loaded = false;    // last_* read from group_points
    int64_t last_ns = 0;    // the last attempt (a miss waits an interval too)
    int64_t last_app_ns = 0;  // the last app-consistent point taken
    std::string problem;    // the last attempt's failure; empty after a success
  };
  Result<std::vector<ItemRecord>> Members(store::Sql& sql, int64_t group_id);
  Result<json> ToJson(store::Sql& sql, int64_t id);
  void TakeDue(int64_t group_id, int64_t now);
  // The three phases; the new group_points row's marker_id.
  Result<std::string> TakePoint(int64_t group_id, const std::vector<ItemRecord>& members, bool app);

  store::Database* db_;
  Inventory* inv_;
  Items* items_;
  Clock* clock_;
  std::mutex mu_;  // guards schedules_
  std::map<int64_t, Schedule> schedules_;
};

}  // namespace ferry::control
