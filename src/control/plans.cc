// Plan definitions (docs/plans.md, "Model", "Actions"); readiness is in plan_readiness.cc.
#include "control/plans.h"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "control/errors.h"
#include "control/fields.h"

namespace ferry::control {

using store::Row;
using store::Sql;

namespace {

constexpr size_t kTextMax = 4096;          // description, instructions
constexpr size_t kMembersPerInsert = 200;  // rows per INSERT (4 parameters each)

const std::vector<std::string> kTypes = {"test", "planned", "unplanned"};
const std::vector<std::string> kDirections = {"forward", "reverse"};

// Where a field of the body is, for error messages: "group 'db' pre action 'stop-app'".
std::string GroupWhere(const std::string& name, size_t index) {
  return name.empty() ? "groups[" + std::to_string(index) + "]" : "group '" + name + "'";
}

// A subset of `allowed`, in allowed's order; all of them when the field is absent.
Result<json> SubsetField(const json& a, const std::string& field, const std::vector<std::string>& allowed,
                         const std::string& where) {
  if (!a.contains(field) || a[field].is_null()) return json(allowed);
  const json& v = a[field];
  std::string list;
  for (const auto& x : allowed) list += (list.empty() ? "" : ", ") + x;
  if (!v.is_array() || v.empty()) {
    return InvalidArgument(where + ": field '" + field + "' must be a non-empty array of " + list);
  }
  std::set<std::string> seen;
  for (const json& e : v) {
    if (!e.is_string() || std::find(allowed.begin(), allowed.end(), e.get<std::string>()) == allowed.end()) {
      return InvalidArgument(where + ": field '" + field + "' holds " + e.dump() + "; the values are: " + list);
    }
    seen.insert(e.get<std::string>());
  }
  json out = json::array();
  for (const auto& x : allowed) {
    if (seen.count(x)) out.push_back(x);
  }
  return out;
}

// One action, validated, with its defaults filled in (the stored form).
// where: "group 'db' pre[0]"; once the action's name is known, errors say "group 'db' pre
// action 'stop-app'" (prefix "group 'db' pre").
Result<json> ParseAction(Sql& sql, Inventory& inv, const json& a, const std::string& where, const std::string& prefix) {
  if (!a.is_object()) return InvalidArgument(where + ": an action must be an object {\"kind\", \"name\", …}");
  std::string at = where;  // names the action once its name is known
  auto field = [&](const std::string& name, std::optional<std::string> fallback) -> Result<std::string> {
    auto r = StringField(a, name, std::move(fallback));
    if (!r.ok()) return r.status().WithContext(at);
    return r;
  };
  ASSIGN_OR_RETURN(std::string kind, field("kind", std::nullopt));
  if (kind != "script" && kind != "manual") {
    return InvalidArgument(where + ": field 'kind' must be 'script' or 'manual', not '" + kind + "'");
  }
  ASSIGN_OR_RETURN(std::string name, field("name", std::nullopt));
  RETURN_IF_ERROR(CheckName("action", name).WithContext(where));
  at = prefix + " action '" + name + "'";
  ASSIGN_OR_RETURN(json types, SubsetField(a, "types", kTypes, at));
  ASSIGN_OR_RETURN(json directions, SubsetField(a, "directions", kDirections, at));
  if (kind == "manual") {
    RETURN_IF_ERROR(CheckFields(a, {"kind", "name", "instructions", "types", "directions"}).WithContext(at));
    ASSIGN_OR_RETURN(std::string instructions, field("instructions", std::nullopt));
    if (instructions.empty() || instructions.size() > kTextMax) {
      return InvalidArgument(at + ": field 'instructions' must hold 1 to 4096 bytes");
    }
    return json{{"kind", kind}, {"name", name}, {"instructions", instructions}, {"types", types},
                {"directions", directions}};
  }
  RETURN_IF_ERROR(CheckFields(a, {"kind", "name", "command", "node", "timeout_s", "on_failure", "types",
                                  "directions"})
                      .WithContext(at));
  ASSIGN_OR_RETURN(std::string command, field("command", std::nullopt));
  if (command.find_first_not_of(" \t\n") == std::string::npos) {
    return InvalidArgument(at + ": field 'command' must not be empty");
  }
  ASSIGN_OR_RETURN(std::string node_ref, field("node", ""));
  std::string node;
  if (!node_ref.empty()) {
    auto id = inv.NodeId(sql, node_ref);
    if (!id.ok() && id.status().code() == Code::kNotFound) {
      return WithAction(Code::kNotFound, at + ": field 'node': no node '" + node_ref + "'",
                        "name an enrolled node (ferry node list), or leave 'node' out to run the script on the server");
    }
    if (!id.ok()) return id.status();
    ASSIGN_OR_RETURN(node, inv.NodeName(sql, *id));
  }
  auto timeout = IntField(a, "timeout_s", 300, 1, 86400);
  if (!timeout.ok()) return timeout.status().WithContext(at);
  ASSIGN_OR_RETURN(std::string on_failure, field("on_failure", ""));
  if (!on_failure.empty() && on_failure != "continue" && on_failure != "stop") {
    return InvalidArgument(at + ": field 'on_failure' must be 'continue' or 'stop' (or left out), not '" +
                           on_failure + "'");
  }
  return json{{"kind", kind},          {"name", name},      {"command", command},
              {"node", node},          {"timeout_s", *timeout}, {"on_failure", on_failure},
              {"types", types},        {"directions", directions}};
}

Result<json> ParseActions(Sql& sql, Inventory& inv, const json& group, const std::string& phase,
                          const std::string& where) {
  json out = json::array();
  if (!group.contains(phase) || group[phase].is_null()) return out;
  if (!group[phase].is_array()) return InvalidArgument(where + ": field '" + phase + "' must be an array of actions");
  std::set<std::string> names;
  for (size_t i = 0; i < group[phase].size(); ++i) {
    ASSIGN_OR_RETURN(json a, ParseAction(sql, inv, group[phase][i], where + " " + phase + "[" + std::to_string(i) + "]",
                                            where + " " + phase));
    if (!names.insert(a["name"].get<std::string>()).second) {
      return InvalidArgument(where + ": two " + phase + " actions are named '" + a["name"].get<std::string>() +
                             "'; names must be unique among a group's " + phase + " actions");
    }
    out.push_back(std::move(a));
  }
  return out;
}

// A validated definition, ready to store.
struct Definition {
  std::string name, description;
  int64_t source_site = 0, target_site = 0;
  json groups = json::array();  // [{"name", "pre", "post"}]
  struct Member {
    int64_t machine_id, group_idx, position;
  };
  std::vector<Member> members;
};

Result<Definition> ParseDefinition(Sql& sql, Inventory& inv, const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"name", "description", "source_site", "target_site", "groups"}));
  Definition d;
  ASSIGN_OR_RETURN(d.name, StringField(body, "name"));
  RETURN_IF_ERROR(CheckName("plan", d.name));
  ASSIGN_OR_RETURN(d.description, StringField(body, "description", ""));
  if (d.description.size() > kTextMax) return InvalidArgument("field 'description' is longer than 4096 bytes");
  ASSIGN_OR_RETURN(std::string source, StringField(body, "source_site"));
  ASSIGN_OR_RETURN(std::string target, StringField(body, "target_site"));
  ASSIGN_OR_RETURN(d.source_site, inv.SiteId(sql, source));
  ASSIGN_OR_RETURN(d.target_site, inv.SiteId(sql, target));
  if (d.source_site == d.target_site) {
    return InvalidArgument("field 'target_site' must differ from 'source_site' ('" + source + "')");
  }
  ASSIGN_OR_RETURN(std::string source_name, inv.SiteName(sql, d.source_site));
  if (!body.contains("groups") || !body["groups"].is_array() || body["groups"].empty()) {
    return InvalidArgument("field 'groups' must be a non-empty array of groups {\"name\", \"machines\", \"pre\", \"post\"}");
  }

  // Every machine in one query, not one per member: plans have up to thousands.
  ASSIGN_OR_RETURN(auto machine_rows, sql.Query("SELECT m.id, m.name, m.site_id, s.name FROM machines m "
                                                "JOIN sites s ON s.id = m.site_id"));
  std::unordered_map<int64_t, size_t> by_id;
  std::unordered_map<std::string, size_t> by_name;
  for (size_t i = 0; i < machine_rows.size(); ++i) {
    by_id[machine_rows[i].Int(0)] = i;
    by_name[machine_rows[i].Text(1)] = i;
  }

  std::set<std::string> group_names;
  std::unordered_map<int64_t, size_t> group_of;  // machine id -> group index
  const json& groups = body["groups"];
  for (size_t g = 0; g < groups.size(); ++g) {
    const json& group = groups[g];
    std::string where = GroupWhere("", g);
    if (!group.is_object()) return InvalidArgument(where + " must be an object {\"name\", \"machines\", \"pre\", \"post\"}");
    RETURN_IF_ERROR(CheckFields(group, {"name", "machines", "pre", "post"}).WithContext(where));
    auto gname = StringField(group, "name");
    if (!gname.ok()) return gname.status().WithContext(where);
    RETURN_IF_ERROR(CheckName("group", *gname).WithContext(where));
    if (!group_names.insert(*gname).second) {
      return InvalidArgument("two groups are named '" + *gname + "'; group names must be unique in a plan");
    }
    where = GroupWhere(*gname, g);
    json machines = group.value("machines", json::array());
    if (!machines.is_array()) return InvalidArgument(where + ": field 'machines' must be an array of machine ids or names");
    int64_t position = 0;
    for (const json& m : machines) {
      if (!m.is_string()) {
        return InvalidArgument(where + ": field 'machines' holds " + m.dump() + "; give machine ids or names");
      }
      const std::string ref = m.get<std::string>();
      int64_t id = ParseId("mach", ref);
      const Row* row = nullptr;
      if (auto it = id > 0 ? by_id.find(id) : by_id.end(); it != by_id.end()) {
        row = &machine_rows[it->second];
      } else if (auto nt = by_name.find(ref); nt != by_name.end()) {
        row = &machine_rows[nt->second];
      }
      if (!row) {
        return WithAction(Code::kNotFound, where + ": field 'machines': no machine '" + ref + "'",
                          "list them with ferry machine list, or add it (ferry machine create)");
      }
      const int64_t machine_id = row->Int(0);
      const std::string machine = row->Text(1);
      if (row->Int(2) != d.source_site) {
        return InvalidArgument(where + ": machine '" + machine + "' is at site '" + row->Text(3) +
                               "', not at the plan's source site '" + source_name +
                               "'; a plan's machines are those whose home site is its source_site");
      }
      if (auto prev = group_of.find(machine_id); prev != group_of.end()) {
        if (prev->second == g) {
          return InvalidArgument(where + ": machine '" + machine + "' is listed twice");
        }
        const std::string other = d.groups[prev->second]["name"];
        return InvalidArgument("machine '" + machine + "' is in group '" + other + "' and in group '" + *gname +
                               "'; a machine may be in one group of a plan");
      }
      group_of[machine_id] = g;
      d.members.push_back({machine_id, static_cast<int64_t>(g), position++});
    }
    ASSIGN_OR_RETURN(json pre, ParseActions(sql, inv, group, "pre", where));
    ASSIGN_OR_RETURN(json post, ParseActions(sql, inv, group, "post", where));
    d.groups.push_back({{"name", *gname}, {"pre", pre}, {"post", post}});
  }
  return d;
}

// Inserts the members, many rows per statement.
Status InsertMembers(Sql& tx, int64_t plan_id, const std::vector<Definition::Member>& members) {
  for (size_t start = 0; start < members.size(); start += kMembersPerInsert) {
    const size_t end = std::min(members.size(), start + kMembersPerInsert);
    std::string sql = "INSERT INTO plan_members (plan_id, machine_id, group_idx, position) VALUES ";
    std::vector<store::Value> params;
    params.reserve((end - start) * 4);
    for (size_t i = start; i < end; ++i) {
      const size_t p = params.size();
      sql += (i == start ? "" : ", ") + std::string("($") + std::to_string(p + 1) + ", $" + std::to_string(p + 2) +
             ", $" + std::to_string(p + 3) + ", $" + std::to_string(p + 4) + ")";
      params.insert(params.end(), {plan_id, members[i].machine_id, members[i].group_idx, members[i].position});
    }
    RETURN_IF_ERROR(tx.Exec(sql, params).status());
  }
  return Status::Ok();
}

Status RefuseWhileRunning(const std::string& name, int64_t job, const std::string& what) {
  if (!job) return Status::Ok();
  const std::string id = JobEngine::JobId(job);
  return WithAction(Code::kFailedPrecondition, "plan '" + name + "' has a job running: " + id + "; it cannot be " + what,
                    "wait for it (ferry job watch " + id + ") or cancel it (ferry job cancel " + id + ")");
}

}  // namespace

Result<int64_t> Plans::PlanId(Sql& sql, const std::string& ref) {
  int64_t id = ParseId("plan", ref);
  auto rows = id > 0 ? sql.Query("SELECT id FROM plans WHERE id = $1", {id})
                     : sql.Query("SELECT id FROM plans WHERE name = $1", {ref});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return WithAction(Code::kNotFound, "no recovery plan '" + ref + "'", "list them with ferry plan list");
  return (*rows)[0].Int(0);
}

Result<PlanRecord> Plans::Load(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT id, name, description, source_site_id, target_site_id, groups, "
                                        "active_job_id, last_operation, created_at, updated_at FROM plans WHERE id = $1",
                                        {id}));
  if (rows.empty()) return NotFound("no recovery plan " + FormatId("plan", id));
  const Row& r = rows[0];
  PlanRecord p;
  p.id = r.Int(0);
  p.name = r.Text(1);
  p.description = r.Text(2);
  p.source_site = r.Int(3);
  p.target_site = r.Int(4);
  p.groups = json::parse(r.Text(5), nullptr, false);
  if (!p.groups.is_array()) return DataLoss("plan " + FormatId("plan", id) + ": its stored groups are not JSON");
  p.active_job = r.Int(6);
  p.last_operation = r.IsNull(7) ? json(nullptr) : json::parse(r.Text(7), nullptr, false);
  p.created_at = r.Text(8);
  p.updated_at = r.Text(9);
  // The items: the unique index items_one_per_machine leaves at most one that is not Disabled.
  ASSIGN_OR_RETURN(auto members, sql.Query("SELECT pm.machine_id, m.name, pm.group_idx, i.id FROM plan_members pm "
                                           "JOIN machines m ON m.id = pm.machine_id LEFT JOIN items i ON "
                                           "i.machine_id = pm.machine_id AND i.state <> 'Disabled' "
                                           "WHERE pm.plan_id = $1 ORDER BY pm.group_idx, pm.position",
                                           {id}));
  p.members.reserve(members.size());
  for (const Row& m : members) {
    p.members.push_back({m.Int(0), m.Text(1), m.Int(2), m.IsNull(3) ? 0 : m.Int(3)});
  }
  return p;
}

Result<json> Plans::ToJson(Sql& sql, const PlanRecord& plan) {
  std::unordered_map<int64_t, std::string> states;
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT i.id, i.state FROM items i JOIN plan_members pm ON "
                                        "pm.machine_id = i.machine_id WHERE pm.plan_id = $1 AND i.state <> 'Disabled'",
                                        {plan.id}));
  for (const Row& r : rows) states[r.Int(0)] = r.Text(1);
  json groups = json::array();
  for (size_t g = 0; g < plan.groups.size(); ++g) {
    const json& def = plan.groups[g];
    groups.push_back({{"index", g + 1}, {"name", def.value("name", "")}, {"machines", json::array()},
                      {"pre", def.value("pre", json::array())}, {"post", def.value("post", json::array())}});
  }
  for (const PlanMember& m : plan.members) {
    if (m.group_idx < 0 || m.group_idx >= static_cast<int64_t>(groups.size())) continue;
    json entry = {{"machine", m.machine}, {"item", nullptr}, {"state", nullptr}};
    if (m.item_id) {
      entry["item"] = FormatId("item", m.item_id);
      auto it = states.find(m.item_id);
      if (it != states.end()) entry["state"] = it->second;
    }
    groups[m.group_idx]["machines"].push_back(std::move(entry));
  }
  json j;
  j["id"] = FormatId("plan", plan.id);
  j["name"] = plan.name;
  j["description"] = plan.description;
  ASSIGN_OR_RETURN(j["source_site"], inv_->SiteName(sql, plan.source_site));
  ASSIGN_OR_RETURN(j["target_site"], inv_->SiteName(sql, plan.target_site));
  j["groups"] = std::move(groups);
  j["machine_count"] = plan.members.size();
  j["active_job"] = plan.active_job ? json(JobEngine::JobId(plan.active_job)) : json(nullptr);
  j["last_operation"] = plan.last_operation.is_discarded() ? json(nullptr) : plan.last_operation;
  j["created_at"] = plan.created_at;
  j["updated_at"] = plan.updated_at;
  return j;
}

Result<json> Plans::Create(const json& body) {
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(Definition d, ParseDefinition(tx, *inv_, body));
    ASSIGN_OR_RETURN(auto taken, tx.Query("SELECT id FROM plans WHERE name = $1", {d.name}));
    if (!taken.empty()) {
      return WithAction(Code::kAlreadyExists, "a recovery plan named '" + d.name + "' exists",
                        "choose another name, or replace that plan (ferry plan replace " + d.name + ")");
    }
    ASSIGN_OR_RETURN(id, store::NextId(tx, "plans"));
    const std::string now = FormatTime(clock_->NowNanos());
    RETURN_IF_ERROR(tx.Exec("INSERT INTO plans (id, name, source_site_id, target_site_id, description, groups, "
                            "active_job_id, last_operation, created_at, updated_at) "
                            "VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $7)",
                            {id, d.name, d.source_site, d.target_site, d.description, d.groups.dump(), now})
                        .status());
    return InsertMembers(tx, id, d.members);
  }));
  ASSIGN_OR_RETURN(PlanRecord p, Load(*db_, id));
  return ToJson(*db_, p);
}

Result<json> Plans::List(const Page& page) {
  return ListPage(*db_, "plans", page, [&](int64_t id) -> Result<json> {
    ASSIGN_OR_RETURN(PlanRecord p, Load(*db_, id));
    return ToJson(*db_, p);
  });
}

Result<json> Plans::Get(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, PlanId(*db_, ref));
  ASSIGN_OR_RETURN(PlanRecord p, Load(*db_, id));
  return ToJson(*db_, p);
}

Result<json> Plans::Replace(const std::string& ref, const json& body) {
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(id, PlanId(tx, ref));
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT name, active_job_id FROM plans WHERE id = $1", {id}));
    RETURN_IF_ERROR(RefuseWhileRunning(rows[0].Text(0), rows[0].Int(1), "replaced"));
    ASSIGN_OR_RETURN(Definition d, ParseDefinition(tx, *inv_, body));
    ASSIGN_OR_RETURN(auto taken, tx.Query("SELECT id FROM plans WHERE name = $1 AND id <> $2", {d.name, id}));
    if (!taken.empty()) {
      return WithAction(Code::kAlreadyExists, "another recovery plan is named '" + d.name + "'",
                        "choose another name");
    }
    RETURN_IF_ERROR(tx.Exec("UPDATE plans SET name = $2, source_site_id = $3, target_site_id = $4, description = $5, "
                            "groups = $6, updated_at = $7 WHERE id = $1",
                            {id, d.name, d.source_site, d.target_site, d.description, d.groups.dump(),
                             FormatTime(clock_->NowNanos())})
                        .status());
    RETURN_IF_ERROR(tx.Exec("DELETE FROM plan_members WHERE plan_id = $1", {id}).status());
    return InsertMembers(tx, id, d.members);
  }));
  ASSIGN_OR_RETURN(PlanRecord p, Load(*db_, id));
  return ToJson(*db_, p);
}

Status Plans::Delete(const std::string& ref) {
  return db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(int64_t id, PlanId(tx, ref));
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT name, active_job_id FROM plans WHERE id = $1", {id}));
    RETURN_IF_ERROR(RefuseWhileRunning(rows[0].Text(0), rows[0].Int(1), "deleted"));
    RETURN_IF_ERROR(tx.Exec("DELETE FROM plan_members WHERE plan_id = $1", {id}).status());
    return tx.Exec("DELETE FROM plans WHERE id = $1", {id}).status();
  });
}

}  // namespace ferry::control
