// Consistency groups (docs/plans.md, "Consistency groups").
#include "control/groups.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <future>
#include <optional>

#include "control/errors.h"
#include "control/fields.h"
#include "control/items.h"

namespace ferry::control {

using store::Row;
using store::Sql;

namespace {

constexpr int64_t kHoldTimeoutMs = 2000;      // a node releases a barrier the server lost
constexpr int64_t kMaxPointsPerGroup = 10000;  // group_points rows kept per group at most
constexpr int kStatsPoints = 100;              // hold_ms statistics over this many points
constexpr int kCommonCandidates = 200;         // points LatestCommonPoint looks back over

std::string Hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

std::string PointName(int64_t group_id, int64_t n) {
  return "cg-" + std::to_string(group_id) + "-" + std::to_string(n);
}

// The node's marker id of point "cg-G-N": G in the first 16 hex digits, N in the last 16.
std::string MarkerHex(const std::string& point_name) {
  int64_t g = 0, n = 0;
  if (std::sscanf(point_name.c_str(), "cg-%" SCNd64 "-%" SCNd64, &g, &n) != 2) return "";
  return Hex16(static_cast<uint64_t>(g)) + Hex16(static_cast<uint64_t>(n));
}

bool Replicating(const ItemRecord& it) { return it.state == "Protected" || it.state == "TestFailover"; }

std::string Route(const ItemRecord& it) {
  return std::to_string(it.source_site) + ">" + std::to_string(it.target_site) + "/" + it.direction;
}

// Runs fn on every element at once (one thread each) and returns the results in order.
template <typename T, typename F>
auto Parallel(const std::vector<T>& inputs, F&& fn) {
  using R = decltype(fn(inputs[0]));
  std::vector<std::future<R>> futures;
  for (const T& in : inputs) futures.push_back(std::async(std::launch::async, [&fn, &in] { return fn(in); }));
  std::vector<R> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

}  // namespace

// ---- the resource

Result<int64_t> Groups::GroupId(Sql& sql, const std::string& ref) {
  int64_t id = ParseId("cg", ref);
  auto rows = id > 0 ? sql.Query("SELECT id FROM consistency_groups WHERE id = $1", {id})
                     : sql.Query("SELECT id FROM consistency_groups WHERE name = $1", {ref});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    return WithAction(Code::kNotFound, "no consistency group '" + ref + "'",
                      "list them with GET /api/v1/consistency-groups (ferry group list)");
  }
  return (*rows)[0].Int(0);
}

Result<int64_t> Groups::Ensure(Sql& sql, const std::string& name) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT id FROM consistency_groups WHERE name = $1", {name}));
  if (!rows.empty()) return rows[0].Int(0);
  RETURN_IF_ERROR(CheckName("consistency group", name));
  ASSIGN_OR_RETURN(int64_t id, store::NextId(sql, "consistency_groups"));
  RETURN_IF_ERROR(sql.Exec("INSERT INTO consistency_groups (id, name, created_at) VALUES ($1, $2, $3)",
                           {id, name, FormatTime(clock_->NowNanos())})
                      .status());
  return id;
}

Result<std::vector<ItemRecord>> Groups::Members(Sql& sql, int64_t group_id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT id FROM items WHERE consistency_group_id = $1 AND state <> 'Disabled' "
                                        "ORDER BY id",
                                        {group_id}));
  std::vector<ItemRecord> out;
  for (const Row& r : rows) {
    ASSIGN_OR_RETURN(ItemRecord it, items_->Load(sql, r.Int(0)));
    out.push_back(std::move(it));
  }
  return out;
}

Status Groups::Join(Sql& sql, int64_t group_id, int64_t item_id) {
  ASSIGN_OR_RETURN(ItemRecord it, items_->Load(sql, item_id));
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT i.consistency_group_id, g.name FROM items i LEFT JOIN "
                                        "consistency_groups g ON g.id = i.consistency_group_id WHERE i.id = $1",
                                        {item_id}));
  ASSIGN_OR_RETURN(auto names, sql.Query("SELECT name FROM consistency_groups WHERE id = $1", {group_id}));
  const std::string group = names.empty() ? FormatId("cg", group_id) : names[0].Text(0);
  if (it.state == "Disabled") {
    return WithAction(Code::kFailedPrecondition, "item '" + it.name + "' is Disabled: it takes no recovery points",
                      "protect the machine again (ferry protect) and add the new item");
  }
  if (!rows[0].IsNull(0) && rows[0].Int(0) == group_id) return Status::Ok();
  if (!rows[0].IsNull(0) && !rows[0].IsNull(1)) {
    return WithAction(Code::kFailedPrecondition,
                      "item '" + it.name + "' is already in consistency group '" + rows[0].Text(1) +
                          "'; an item belongs to one group at most",
                      "remove it from there first (ferry group remove " + rows[0].Text(1) + " " + it.name + ")");
  }
  ASSIGN_OR_RETURN(auto members, Members(sql, group_id));
  if (!members.empty() && Route(members[0]) != Route(it)) {
    ASSIGN_OR_RETURN(std::string from, inv_->SiteName(sql, members[0].source_site));
    ASSIGN_OR_RETURN(std::string to, inv_->SiteName(sql, members[0].target_site));
    return WithAction(Code::kFailedPrecondition,
                      "item '" + it.name + "' does not replicate like the members of group '" + group + "' (" +
                          members[0].direction + ", from " + from + " to " + to + ")",
                      "a group's members replicate in the same direction between the same sites; make a "
                      "group for this item");
  }
  return sql.Exec("UPDATE items SET consistency_group_id = $2 WHERE id = $1", {item_id, group_id}).status();
}

Result<json> Groups::GroupOf(Sql& sql, int64_t item_id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT g.name FROM items i JOIN consistency_groups g ON "
                                        "g.id = i.consistency_group_id WHERE i.id = $1",
                                        {item_id}));
  return rows.empty() ? json(nullptr) : json(rows[0].Text(0));
}

Result<json> Groups::Create(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"name", "members"}));
  ASSIGN_OR_RETURN(std::string name, StringField(body, "name"));
  RETURN_IF_ERROR(CheckName("consistency group", name));
  json refs = body.value("members", json::array());
  if (!refs.is_array() || !std::all_of(refs.begin(), refs.end(), [](const json& r) { return r.is_string(); })) {
    return InvalidArgument("field 'members' must be an array of item ids or names");
  }
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM consistency_groups WHERE name = $1", {name}));
    if (!rows.empty()) return AlreadyExists("a consistency group named '" + name + "' exists");
    ASSIGN_OR_RETURN(id, Ensure(tx, name));
    for (const json& ref : refs) {
      ASSIGN_OR_RETURN(int64_t item, items_->ItemId(tx, ref.get<std::string>()));
      RETURN_IF_ERROR(Join(tx, id, item));
    }
    return Status::Ok();
  }));
  return ToJson(*db_, id);
}

Result<json> Groups::AddMember(const std::string& ref, const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"item"}));
  ASSIGN_OR_RETURN(std::string item_ref, StringField(body, "item"));
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(id, GroupId(tx, ref));
    ASSIGN_OR_RETURN(int64_t item, items_->ItemId(tx, item_ref));
    return Join(tx, id, item);
  }));
  return ToJson(*db_, id);
}

Result<json> Groups::RemoveMember(const std::string& ref, const std::string& item_ref) {
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(id, GroupId(tx, ref));
    ASSIGN_OR_RETURN(int64_t item, items_->ItemId(tx, item_ref));
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT name FROM items WHERE id = $1 AND consistency_group_id = $2",
                                         {item, id}));
    if (rows.empty()) {
      return WithAction(Code::kNotFound, "item '" + item_ref + "' is not a member of consistency group '" + ref + "'",
                        "see the members with ferry group show " + ref);
    }
    return tx.Exec("UPDATE items SET consistency_group_id = NULL WHERE id = $1", {item}).status();
  }));
  return ToJson(*db_, id);
}

Status Groups::Delete(const std::string& ref) {
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(id, GroupId(tx, ref));
    RETURN_IF_ERROR(tx.Exec("UPDATE items SET consistency_group_id = NULL WHERE consistency_group_id = $1", {id}).status());
    RETURN_IF_ERROR(tx.Exec("DELETE FROM group_points WHERE group_id = $1", {id}).status());
    return tx.Exec("DELETE FROM consistency_groups WHERE id = $1", {id}).status();
  }));
  std::lock_guard l(mu_);
  schedules_.erase(id);
  return Status::Ok();
}

Result<json> Groups::Get(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, GroupId(*db_, ref));
  return ToJson(*db_, id);
}

Result<json> Groups::List(const Page& page) {
  return ListPage(*db_, "consistency_groups", page, [&](int64_t id) { return ToJson(*db_, id); });
}

namespace {

json PointJson(const Row& r) {  // marker_id, time_ns, app_consistent, hold_ms
  return {{"marker_id", r.Text(0)}, {"time", FormatTime(r.Int(1))}, {"app_consistent", r.Int(2) != 0},
          {"hold_ms", r.Real(3)}};
}

}  // namespace

Result<json> Groups::ToJson(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto g, sql.Query("SELECT name, created_at FROM consistency_groups WHERE id = $1", {id}));
  if (g.empty()) return NotFound("no consistency group " + FormatId("cg", id));
  ASSIGN_OR_RETURN(auto members, Members(sql, id));
  json list = json::array();
  json problems = json::array();
  std::optional<int64_t> crash, app;
  bool replicating = false;
  for (const ItemRecord& it : members) {
    list.push_back({{"item", FormatId("item", it.id)}, {"name", it.name}, {"state", it.state}});
    replicating = replicating || it.state == "Protected";
    ASSIGN_OR_RETURN(json policy, inv_->PolicyById(sql, it.policy_id));
    int64_t c = policy["crash_consistent_interval_seconds"], a = policy["app_consistent_interval_seconds"];
    crash = std::min(crash.value_or(c), c);
    if (a > 0) app = std::min(app.value_or(a), a);
    if (Route(it) != Route(members[0])) {
      problems.push_back("item '" + it.name + "' no longer replicates like '" + members[0].name +
                         "' (after a failover of one member): its points are not consistent with the others; "
                         "fail the other members over too, or remove it from the group");
    }
  }
  if (!members.empty() && !replicating) problems.push_back("no member is Protected: no group points are taken");
  ASSIGN_OR_RETURN(auto last, sql.Query("SELECT marker_id, time_ns, app_consistent, hold_ms FROM group_points WHERE "
                                        "group_id = $1 ORDER BY time_ns DESC LIMIT $2",
                                        {id, int64_t{kStatsPoints}}));
  std::vector<double> holds;
  for (const Row& r : last) holds.push_back(r.Real(3));
  std::sort(holds.begin(), holds.end());
  {
    std::lock_guard l(mu_);
    auto s = schedules_.find(id);
    if (s != schedules_.end() && !s->second.problem.empty()) problems.push_back(s->second.problem);
  }
  json common = nullptr;
  if (auto p = LatestCommonPoint(id, false); p.ok()) {
    json points = json::object();
    for (const auto& [item, point] : p->points) points[FormatId("item", item)] = point;
    common = {{"marker_id", p->marker_id}, {"time", FormatTime(p->time_ns)}, {"app_consistent", p->app_consistent},
              {"points", points}};
  }
  return json{{"id", FormatId("cg", id)},
              {"name", g[0].Text(0)},
              {"members", list},
              {"interval_s", crash ? json(*crash) : json(nullptr)},
              {"app_interval_s", app ? json(*app) : json(nullptr)},
              {"last_point", last.empty() ? json(nullptr) : PointJson(last[0])},
              {"hold_ms", holds.empty() ? json(nullptr)
                                        : json{{"p50", Percentile(holds, 50)}, {"p99", Percentile(holds, 99)},
                                               {"max", holds.back()}, {"points", holds.size()}}},
              {"latest_common_point", common},
              {"problems", problems},
              {"created_at", g[0].Text(1)}};
}

// ---- taking points

void Groups::TakeDuePoints() {
  auto rows = db_->Query("SELECT id FROM consistency_groups ORDER BY id");
  if (!rows.ok()) {
    spdlog::warn("group points: cannot read the groups: {}", rows.status().ToString());
    return;
  }
  for (const Row& r : *rows) TakeDue(r.Int(0), clock_->NowNanos());
}

void Groups::TakeDue(int64_t group_id, int64_t now) {
  auto members = Members(*db_, group_id);
  if (!members.ok()) return;
  std::vector<ItemRecord> active;
  int64_t crash = INT64_MAX, app = INT64_MAX, retention_h = 0;
  bool protected_member = false;
  for (ItemRecord& it : *members) {
    auto policy = inv_->PolicyById(*db_, it.policy_id);
    if (!policy.ok()) return;
    crash = std::min<int64_t>(crash, (*policy)["crash_consistent_interval_seconds"]);
    int64_t a = (*policy)["app_consistent_interval_seconds"];
    if (a > 0) app = std::min(app, a);
    retention_h = std::max<int64_t>(retention_h, (*policy)["retention_hours"]);
    protected_member = protected_member || it.state == "Protected";
    if (Replicating(it)) active.push_back(std::move(it));
  }
  if (!protected_member) return;
  bool take_app = false;
  {
    std::lock_guard l(mu_);
    Schedule& s = schedules_[group_id];
    if (!s.loaded) {
      // After a restart, the schedule goes on from the points already taken.
      auto newest = db_->Query("SELECT MAX(time_ns) FROM group_points WHERE group_id = $1", {group_id});
      auto newest_app = db_->Query("SELECT MAX(time_ns) FROM group_points WHERE group_id = $1 AND app_consistent = 1",
                                   {group_id});
      if (newest.ok() && !newest->empty() && !(*newest)[0].IsNull(0)) s.last_ns = (*newest)[0].Int(0);
      if (newest_app.ok() && !newest_app->empty() && !(*newest_app)[0].IsNull(0)) s.last_app_ns = (*newest_app)[0].Int(0);
      s.loaded = true;
    }
    take_app = app != INT64_MAX && now - s.last_app_ns >= app * kNanosPerSecond;
    if (!take_app && now - s.last_ns < crash * kNanosPerSecond) return;
    s.last_ns = now;
  }
  auto taken = TakePoint(group_id, active, take_app);
  std::lock_guard l(mu_);
  Schedule& s = schedules_[group_id];
  if (taken.ok()) {
    s.problem.clear();
    // A missed app-consistent point is tried again at the next crash-consistent one.
    if (take_app) s.last_app_ns = now;
  } else {
    s.problem = "the last group point (" + FormatTime(now) + ") was missed: " + taken.status().ToString();
    spdlog::warn("consistency group {}: {}", FormatId("cg", group_id), s.problem);
    return;
  }
  // Bounded: the members' longest retention, and kMaxPointsPerGroup rows.
  (void)db_->Exec("DELETE FROM group_points WHERE group_id = $1 AND time_ns < $2",
                  {group_id, now - retention_h * 3600 * kNanosPerSecond});
  (void)db_->Exec("DELETE FROM group_points WHERE group_id = $1 AND time_ns < (SELECT time_ns FROM group_points "
                  "WHERE group_id = $1 ORDER BY time_ns DESC LIMIT 1 OFFSET $2)",
                  {group_id, kMaxPointsPerGroup - 1});
}

namespace {

// One source node's part of a group point.
struct NodePart {
  int64_t node_id = 0;
  std::vector<std::string> volumes;
  std::optional<NodeClient> client;
  std::string barrier;  // the held barrier's id; empty when not held
};

}  // namespace

Result<std::string> Groups::TakePoint(int64_t group_id, const std::vector<ItemRecord>& members, bool app) {
  std::vector<NodePart> parts;
  for (const ItemRecord& it : members) {
    auto p = std::find_if(parts.begin(), parts.end(), [&](const NodePart& n) { return n.node_id == it.source_node; });
    if (p == parts.end()) {
      ASSIGN_OR_RETURN(NodeClient c, inv_->Client(it.source_node));
      parts.push_back({it.source_node, {}, std::move(c), ""});
      p = parts.end() - 1;
    }
    for (const json& d : it.disks) p->volumes.push_back(d["volume"]);
  }
  ASSIGN_OR_RETURN(int64_t n, store::NextId(*db_, "group_points." + std::to_string(group_id)));
  const std::string name = PointName(group_id, n);
  const json mark = {{"marker_id", MarkerHex(name)}, {"group_id", Hex16(0) + Hex16(group_id)}, {"label", name}};
  auto release = [&] {
    return Parallel(parts, [](const NodePart& p) -> Status {
      if (p.barrier.empty()) return Status::Ok();
      return p.client->Post("/v1/barriers/" + p.barrier + "/release").status();
    });
  };
  const int64_t start = clock_->NowNanos();
  auto held = Parallel(parts, [&](const NodePart& p) {
    return p.client->Post("/v1/barriers",
                          json{{"volumes", p.volumes}, {"timeout_ms", kHoldTimeoutMs}, {"app_consistent", app}});
  });
  Status failed;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (held[i].ok()) parts[i].barrier = (*held[i]).value("id", "");
    if (!held[i].ok() && failed.ok()) failed = held[i].status().WithContext("hold");
  }
  std::vector<Result<json>> marked;
  if (failed.ok()) {
    marked = Parallel(parts, [&](const NodePart& p) { return p.client->Post("/v1/barriers/" + p.barrier + "/mark", mark); });
    for (auto& m : marked) {
      if (!m.ok() && failed.ok()) failed = m.status().WithContext("mark");
    }
  }
  const int64_t marked_at = clock_->NowNanos();
  for (Status& s : release()) {
    if (!s.ok() && failed.ok()) failed = s.WithContext("release");
  }
  const double hold_ms = static_cast<double>(clock_->NowNanos() - start) / 1e6;
  RETURN_IF_ERROR(failed);
  json seqs = json::object();
  for (const auto& m : marked) seqs.update((*m).value("seqs", json::object()));
  json point_members = json::object();
  for (const ItemRecord& it : members) {
    point_members[std::to_string(it.id)] = it.disks.empty() ? json(nullptr) : seqs.value(it.disks[0]["volume"].get<std::string>(), json(nullptr));
  }
  RETURN_IF_ERROR(db_->Exec("INSERT INTO group_points (group_id, marker_id, time_ns, app_consistent, hold_ms, members) "
                            "VALUES ($1, $2, $3, $4, $5, $6)",
                            {group_id, name, marked_at, int64_t{app}, hold_ms, point_members.dump()})
                      .status());
  return name;
}

// ---- the newest common point

Result<GroupPoint> Groups::LatestCommonPoint(int64_t group_id, bool app_consistent) {
  ASSIGN_OR_RETURN(auto members, Members(*db_, group_id));
  if (members.empty()) return NotFound("consistency group " + FormatId("cg", group_id) + " has no members");
  ASSIGN_OR_RETURN(auto rows, db_->Query(std::string("SELECT marker_id, time_ns, app_consistent, members FROM "
                                                     "group_points WHERE group_id = $1") +
                                             (app_consistent ? " AND app_consistent = 1" : "") +
                                             " ORDER BY time_ns DESC LIMIT $2",
                                         {group_id, int64_t{kCommonCandidates}}));
  for (const Row& r : rows) {
    const std::string name = r.Text(0);
    json taken = json::parse(r.Text(3), nullptr, false);
    bool held = true;
    for (const ItemRecord& it : members) {
      // A member that joined later, or was not replicating then, is not in the point.
      if (!held || !taken.is_object() || !taken.contains(std::to_string(it.id))) {
        held = false;
        break;
      }
      // The monitor copies each item's first disk's markers, labels included.
      ASSIGN_OR_RETURN(auto found, db_->Query("SELECT 1 FROM recovery_points WHERE item_id = $1 AND "
                                              "kind = 'group-consistent' AND label = $2",
                                              {it.id, name}));
      held = !found.empty();
      // The other disks replicate on links of their own: ask their replicas.
      for (size_t d = 1; held && d < it.disks.size(); ++d) {
        ASSIGN_OR_RETURN(NodeClient target, inv_->Client(it.target_node));
        auto view = target.Post("/v1/replicas/" + it.disks[d]["volume"].get<std::string>() + "/views",
                                json{{"point", "marker:" + MarkerHex(name)}});
        if (!view.ok() && view.status().code() != Code::kNotFound) return view.status();
        held = view.ok();
      }
    }
    if (!held) continue;
    GroupPoint p{group_id, name, r.Int(1), r.Int(2) != 0, {}};
    for (const ItemRecord& it : members) p.points[it.id] = "marker:" + MarkerHex(name);
    return p;
  }
  return WithAction(Code::kNotFound,
                    std::string("no ") + (app_consistent ? "app-consistent " : "") + "group point of " +
                        FormatId("cg", group_id) + " is held by every member's target yet",
                    "wait for the next group point to replicate (ferry group show " + FormatId("cg", group_id) + ")");
}

}  // namespace ferry::control
