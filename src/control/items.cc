#include "control/items.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "control/errors.h"
#include "control/fields.h"
#include "control/groups.h"

namespace ferry::control {

using store::Row;
using store::Sql;

std::vector<std::string> AllowedOperations(const std::string& state) {
  if (state == "Enabling" || state == "InitialSync") return {"disable"};
  if (state == "Protected") return {"test-failover", "failover", "update", "resync", "disable"};
  if (state == "TestFailover") return {"cleanup-test-failover", "update"};
  if (state == "FailedOver") return {"change-recovery-point", "commit"};
  if (state == "Committed") return {"reprotect"};
  return {};
}

namespace {

constexpr const char* kItemColumns =
    "id, name, machine_id, state, direction, active_site_id, source_site_id, target_site_id, source_node_id, "
    "target_node_id, policy_id, health, problems, rpo_seconds, properties, disks, live, failover, test_failover, "
    "last_test, active_job_id, created_at, updated_at, running";

json ParseOrNull(const Row& r, size_t i) {
  if (r.IsNull(i)) return nullptr;
  return json::parse(r.Text(i), nullptr, false);
}

store::Value JsonOrNull(const json& j) {
  if (j.is_null()) return store::Value{};
  return j.dump();
}

// What each operation needs the item to be doing, for the refusal's action.
std::string WhatToDo(const std::string& state, const std::string& op) {
  if (state == "Enabling" || state == "InitialSync") return "wait until the initial sync finishes (ferry item show)";
  if (state == "TestFailover") return "clean up the test failover first (ferry cleanup-test-failover)";
  if (state == "FailedOver") {
    return op == "reprotect" ? "commit the failover first (ferry commit)"
                             : "commit the failover (ferry commit) or change its recovery point";
  }
  if (state == "Committed") return "reprotect the item (ferry reprotect)";
  if (state == "Protected") {
    return op == "commit" || op == "change-recovery-point" ? "fail over first (ferry failover)"
                                                            : "this operation is not for a protected item";
  }
  if (state == "Disabled") return "protect the machine again (ferry protect)";
  return "wait for the running job to finish";
}

}  // namespace

// A recovery point the API accepts: a named latest, "seq:N", "marker:HEX32" or an RFC 3339 time.
Status CheckPoint(const std::string& point) {
  static const char* named[] = {"latest", "latest-processed", "latest-app-consistent", "latest-crash-consistent"};
  for (const char* n : named) {
    if (point == n) return Status::Ok();
  }
  if (point.rfind("seq:", 0) == 0) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(point.data() + 4, point.data() + point.size(), v);
    if (ec == std::errc() && p == point.data() + point.size() && v > 0) return Status::Ok();
  }
  if (point.rfind("marker:", 0) == 0 && point.size() == 39 &&
      std::all_of(point.begin() + 7, point.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); })) {
    return Status::Ok();
  }
  int64_t t = 0;
  if (ParseTime(point, &t)) return Status::Ok();
  return InvalidArgument("recovery point '" + point +
                         "' is not one of latest, latest-processed, latest-app-consistent, "
                         "latest-crash-consistent, a point id from the list (seq:N) or an RFC 3339 time");
}

Result<ItemRecord> Items::Load(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query(std::string("SELECT ") + kItemColumns + " FROM items WHERE id = $1", {id}));
  if (rows.empty()) return NotFound("no item " + FormatId("item", id));
  const Row& r = rows[0];
  ItemRecord it;
  it.id = r.Int(0);
  it.name = r.Text(1);
  it.machine_id = r.Int(2);
  it.state = r.Text(3);
  it.direction = r.Text(4);
  it.active_site = r.Int(5);
  it.source_site = r.Int(6);
  it.target_site = r.Int(7);
  it.source_node = r.Int(8);
  it.target_node = r.Int(9);
  it.policy_id = r.Int(10);
  it.health = r.Text(11);
  it.problems = ParseOrNull(r, 12);
  if (!r.IsNull(13)) it.rpo_seconds = r.Real(13);
  it.properties = ParseOrNull(r, 14);
  it.disks = ParseOrNull(r, 15);
  it.live = ParseOrNull(r, 16);
  it.failover = ParseOrNull(r, 17);
  it.test_failover = ParseOrNull(r, 18);
  it.last_test = ParseOrNull(r, 19);
  it.active_job = r.Int(20);
  it.created_at = r.Text(21);
  it.updated_at = r.Text(22);
  it.running = ParseOrNull(r, 23);
  return it;
}

Status Items::Store(Sql& sql, const ItemRecord& it) {
  store::Value rpo;
  if (it.rpo_seconds) rpo = *it.rpo_seconds;
  store::Value job;
  if (it.active_job) job = it.active_job;
  return sql.Exec("UPDATE items SET name = $2, state = $3, direction = $4, active_site_id = $5, source_site_id = $6, "
                  "target_site_id = $7, source_node_id = $8, target_node_id = $9, policy_id = $10, health = $11, "
                  "problems = $12, rpo_seconds = $13, properties = $14, disks = $15, live = $16, failover = $17, "
                  "test_failover = $18, last_test = $19, active_job_id = $20, updated_at = $21, running = $22 WHERE id = $1",
                  {it.id, it.name, it.state, it.direction, it.active_site, it.source_site, it.target_site,
                   it.source_node, it.target_node, it.policy_id, it.health, it.problems.dump(), rpo,
                   it.properties.dump(), it.disks.dump(), it.live.dump(), JsonOrNull(it.failover),
                   JsonOrNull(it.test_failover), JsonOrNull(it.last_test), job, FormatTime(clock_->NowNanos()),
                   JsonOrNull(it.running)})
      .status();
}

Result<json> Items::ToJson(Sql& sql, const ItemRecord& it) {
  json j;
  j["id"] = FormatId("item", it.id);
  j["name"] = it.name;
  j["machine"] = FormatId("mach", it.machine_id);
  j["state"] = it.state;
  j["health"] = it.health;
  j["problems"] = it.problems;
  j["direction"] = it.direction;
  ASSIGN_OR_RETURN(j["active_site"], inv_->SiteName(sql, it.active_site));
  ASSIGN_OR_RETURN(j["source_site"], inv_->SiteName(sql, it.source_site));
  ASSIGN_OR_RETURN(j["target_site"], inv_->SiteName(sql, it.target_site));
  j["source_node"] = FormatId("node", it.source_node);
  j["target_node"] = FormatId("node", it.target_node);
  j["policy"] = FormatId("pol", it.policy_id);
  j["rpo_seconds"] = it.rpo_seconds ? json(*it.rpo_seconds) : json(nullptr);
  j["allowed_operations"] = it.active_job ? json::array() : json(AllowedOperations(it.state));
  j["properties"] = it.properties;
  json disks = json::array();
  for (const json& d : it.disks) {
    json live = it.live.value(d["volume"].get<std::string>(), json::object());
    json out = {{"name", d["name"]}, {"volume", d["volume"]}, {"size", d.value("size", 0)},
                {"initial_sync", live.value("initial_sync", json{{"percent", 0.0}, {"eta_seconds", nullptr}})},
                {"pending_bytes", live.value("pending_bytes", 0)},
                {"rpo_seconds", live.value("rpo_seconds", json(nullptr))}, {"uri", ""}};
    if (it.failover.is_object() && it.failover.contains("uris")) {
      out["uri"] = it.failover["uris"].value(d["volume"].get<std::string>(), "");
    }
    disks.push_back(std::move(out));
  }
  j["disks"] = disks;
  j["last_test_failover"] = it.last_test;
  j["test_failover"] = it.test_failover;
  j["failover"] = it.failover;
  j["running_machine"] = it.running.is_object() ? json{{"name", it.running.value("name", "")},
                                                        {"node", FormatId("node", it.running.value("node", int64_t{0}))},
                                                        {"site", it.running.value("site_name", "")}}
                                                : json(nullptr);
  ASSIGN_OR_RETURN(j["consistency_group"], groups_->GroupOf(sql, it.id));
  j["active_job"] = it.active_job ? json(JobEngine::JobId(it.active_job)) : json(nullptr);
  j["created_at"] = it.created_at;
  j["updated_at"] = it.updated_at;
  return j;
}

Result<int64_t> Items::ItemId(Sql& sql, const std::string& ref) {
  int64_t id = ParseId("item", ref);
  auto rows = id > 0 ? sql.Query("SELECT id FROM items WHERE id = $1", {id})
                     : sql.Query("SELECT id FROM items WHERE name = $1 ORDER BY (state = 'Disabled'), id DESC", {ref});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    return WithAction(Code::kNotFound, "no replicated item '" + ref + "'", "list them with ferry item list");
  }
  return (*rows)[0].Int(0);
}

Result<json> Items::Get(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, ItemId(*db_, ref));
  ASSIGN_OR_RETURN(ItemRecord it, Load(*db_, id));
  return ToJson(*db_, it);
}

Result<json> Items::List(const std::string& state, const std::string& site, const Page& page) {
  std::string sql = "SELECT id FROM items WHERE id > $1";
  std::vector<store::Value> params{page.after_id};
  static const char* kStates[] = {"Enabling", "InitialSync", "Protected", "TestFailover", "FailingOver",
                                  "FailedOver", "Committed", "Reprotecting", "Disabled"};
  if (!state.empty() && std::find(std::begin(kStates), std::end(kStates), state) == std::end(kStates)) {
    return InvalidArgument("query parameter 'state' is not an item state: '" + state + "'");
  }
  if (!state.empty()) {
    sql += " AND state = $" + std::to_string(params.size() + 1);
    params.push_back(state);
  }
  if (!site.empty()) {
    ASSIGN_OR_RETURN(int64_t site_id, inv_->SiteId(*db_, site));
    sql += " AND active_site_id = $" + std::to_string(params.size() + 1);
    params.push_back(site_id);
  }
  sql += " ORDER BY id LIMIT $" + std::to_string(params.size() + 1);
  params.push_back(int64_t{page.limit} + 1);
  json items = json::array();
  int64_t next = 0;
  ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  for (size_t i = 0; i < rows.size(); ++i) {
    if (static_cast<int>(i) == page.limit) {
      next = rows[i - 1].Int(0);
      break;
    }
    ASSIGN_OR_RETURN(ItemRecord it, Load(*db_, rows[i].Int(0)));
    ASSIGN_OR_RETURN(json j, ToJson(*db_, it));
    items.push_back(std::move(j));
  }
  return PageJson(std::move(items), next);
}

Result<json> Items::Launch(const std::function<Result<int64_t>(Sql&)>& fn) {
  int64_t job = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(job, fn(tx));
    return Status::Ok();
  }));
  jobs_->Kick(job);
  ASSIGN_OR_RETURN(json j, jobs_->Get(job));
  return json{{"job", j}};
}

Status Items::Start(Sql& tx, ItemRecord& item, const std::string& op, const std::string& job_type,
                          const json& spec, const std::string& transitional_state, int64_t* job_id) {
  if (item.active_job) {
    return WithAction(Code::kFailedPrecondition,
                      "item '" + item.name + "' has a job running: " + JobEngine::JobId(item.active_job),
                      "wait for it (ferry job watch " + JobEngine::JobId(item.active_job) + ") or cancel it");
  }
  auto allowed = AllowedOperations(item.state);
  if (std::find(allowed.begin(), allowed.end(), op) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    return InvalidState("item '" + item.name + "' is " + item.state + ": " + op + " is not allowed (allowed: " +
                            (list.empty() ? std::string("none") : list) + ")",
                        WhatToDo(item.state, op));
  }
  json data = {{"prev_state", item.state}};
  ASSIGN_OR_RETURN(*job_id, jobs_->Create(tx, job_type, "item", item.id, item.name, spec, data));
  item.active_job = *job_id;
  if (!transitional_state.empty()) item.state = transitional_state;
  return Store(tx, item);
}

Result<json> Items::Enable(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"machine", "target_site", "target_node", "policy", "name", "consistency_group"}));
  ASSIGN_OR_RETURN(std::string machine_ref, StringField(body, "machine"));
  ASSIGN_OR_RETURN(std::string target_site_ref, StringField(body, "target_site"));
  ASSIGN_OR_RETURN(std::string target_node_ref, StringField(body, "target_node", ""));
  ASSIGN_OR_RETURN(std::string policy_ref, StringField(body, "policy", "default"));
  ASSIGN_OR_RETURN(std::string name, StringField(body, "name", ""));
  ASSIGN_OR_RETURN(std::string group, StringField(body, "consistency_group", ""));
  if (!group.empty()) RETURN_IF_ERROR(CheckName("consistency group", group));
  return Launch([&](Sql& tx) -> Result<int64_t> {
    ASSIGN_OR_RETURN(int64_t machine_id, inv_->MachineId(tx, machine_ref));
    ASSIGN_OR_RETURN(json machine, inv_->MachineById(tx, machine_id));
    std::string item_name = name.empty() ? machine["name"].get<std::string>() : name;
    RETURN_IF_ERROR(CheckName("item", item_name));
    ASSIGN_OR_RETURN(auto existing, tx.Query("SELECT id, state FROM items WHERE machine_id = $1 AND state <> 'Disabled'",
                                             {machine_id}));
    if (!existing.empty()) {
      return WithAction(Code::kAlreadyExists,
                        "machine '" + machine["name"].get<std::string>() + "' is already protected by " +
                            FormatId("item", existing[0].Int(0)) + " (" + existing[0].Text(1) + ")",
                        "disable that item first to protect it anew");
    }
    ASSIGN_OR_RETURN(auto taken, tx.Query("SELECT id FROM items WHERE name = $1 AND state <> 'Disabled'", {item_name}));
    if (!taken.empty()) {
      return WithAction(Code::kAlreadyExists, "an item named '" + item_name + "' exists",
                        "choose another name with the field 'name'");
    }
    ASSIGN_OR_RETURN(int64_t source_site, inv_->SiteId(tx, machine["site"].get<std::string>()));
    ASSIGN_OR_RETURN(int64_t target_site, inv_->SiteId(tx, target_site_ref));
    if (target_site == source_site) {
      return InvalidArgument("target_site must differ from the machine's site '" +
                             machine["site"].get<std::string>() + "'");
    }
    int64_t source_node = ParseId("node", machine["node"].get<std::string>());
    int64_t target_node = 0;
    if (!target_node_ref.empty()) {
      ASSIGN_OR_RETURN(target_node, inv_->NodeId(tx, target_node_ref));
      ASSIGN_OR_RETURN(auto nrows, tx.Query("SELECT site_id FROM nodes WHERE id = $1", {target_node}));
      if (nrows[0].Int(0) != target_site) {
        return InvalidArgument("target_node '" + target_node_ref + "' is not at site '" + target_site_ref + "'");
      }
    } else {
      // The node of the site that heard from last (the healthiest), then the lowest id.
      ASSIGN_OR_RETURN(auto nrows, tx.Query("SELECT id FROM nodes WHERE site_id = $1 ORDER BY last_heartbeat_ns DESC, "
                                            "id LIMIT 1",
                                            {target_site}));
      if (nrows.empty()) {
        return WithAction(Code::kFailedPrecondition, "site '" + target_site_ref + "' has no node",
                          "install a node there and enroll it (ferry node enroll --site " + target_site_ref + ")");
      }
      target_node = nrows[0].Int(0);
    }
    ASSIGN_OR_RETURN(int64_t policy_id, inv_->PolicyId(tx, policy_ref));
    json disks = json::array();
    for (const json& d : machine["disks"]) {
      disks.push_back({{"name", d["name"]}, {"volume", item_name + "." + d["name"].get<std::string>()},
                       {"size", d["size"]}, {"path", d["path"]}});
    }
    ASSIGN_OR_RETURN(int64_t id, store::NextId(tx, "items"));
    std::string now = FormatTime(clock_->NowNanos());
    json props = {{"target_name", item_name}, {"cpus", 1}, {"memory_mib", 512}, {"network", "default"},
                  {"ip_address", ""}};
    RETURN_IF_ERROR(tx.Exec("INSERT INTO items (id, name, machine_id, state, direction, active_site_id, source_site_id, "
                            "target_site_id, source_node_id, target_node_id, policy_id, health, problems, rpo_seconds, "
                            "properties, disks, live, failover, test_failover, last_test, active_job_id, created_at, "
                            "updated_at) VALUES ($1, $2, $3, 'Enabling', 'forward', $4, $4, $5, $6, $7, $8, 'Healthy', "
                            "'[]', NULL, $9, $10, '{}', NULL, NULL, NULL, NULL, $11, $11)",
                            {id, item_name, machine_id, source_site, target_site, source_node, target_node, policy_id,
                             props.dump(), disks.dump(), now})
                        .status());
    if (!group.empty()) {
      ASSIGN_OR_RETURN(int64_t group_id, groups_->Ensure(tx, group));
      RETURN_IF_ERROR(groups_->Join(tx, group_id, id));
    }
    ASSIGN_OR_RETURN(int64_t job, jobs_->Create(tx, "enable", "item", id, item_name, json{{"item", id}},
                                                json{{"prev_state", "Enabling"}}));
    RETURN_IF_ERROR(tx.Exec("UPDATE items SET active_job_id = $2 WHERE id = $1", {id, job}).status());
    return job;
  });
}

Status Items::ValidateProperties(Sql& sql, const ItemRecord& item, json* props, const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"target_name", "cpus", "memory_mib", "network", "ip_address"}));
  json p = item.properties;
  ASSIGN_OR_RETURN(std::string name, StringField(body, "target_name", p.value("target_name", item.name)));
  RETURN_IF_ERROR(CheckName("target", name));
  ASSIGN_OR_RETURN(int64_t cpus, IntField(body, "cpus", p.value("cpus", 1), 1, 64));
  ASSIGN_OR_RETURN(int64_t mem, IntField(body, "memory_mib", p.value("memory_mib", 512), 64, 1048576));
  ASSIGN_OR_RETURN(std::string network, StringField(body, "network", p.value("network", "default")));
  RETURN_IF_ERROR(CheckName("network", network));
  ASSIGN_OR_RETURN(std::string ip, StringField(body, "ip_address", p.value("ip_address", "")));
  if (!ip.empty()) {
    in_addr addr{};
    if (inet_pton(AF_INET, ip.c_str(), &addr) != 1) {
      return InvalidArgument("field 'ip_address' must be an IPv4 address like 10.0.0.5, not '" + ip + "'");
    }
    ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT id, name, properties FROM items WHERE id <> $1 AND state <> 'Disabled'",
                                          {item.id}));
    for (const Row& r : rows) {
      json other = json::parse(r.Text(2), nullptr, false);
      if (other.is_object() && other.value("network", "") == network && other.value("ip_address", "") == ip) {
        return WithAction(Code::kAlreadyExists,
                          "IP address " + ip + " is already used in network '" + network + "' by item '" + r.Text(1) + "'",
                          "choose a free address");
      }
    }
  }
  *props = {{"target_name", name}, {"cpus", cpus}, {"memory_mib", mem}, {"network", network}, {"ip_address", ip}};
  return Status::Ok();
}

Result<json> Items::Update(const std::string& ref, const json& body) {
  return Launch([&](Sql& tx) -> Result<int64_t> {
    ASSIGN_OR_RETURN(int64_t id, ItemId(tx, ref));
    ASSIGN_OR_RETURN(ItemRecord it, Load(tx, id));
    json props;
    RETURN_IF_ERROR(ValidateProperties(tx, it, &props, body));
    int64_t job = 0;
    RETURN_IF_ERROR(Start(tx, it, "update", "update", json{{"item", id}, {"properties", props}}, "", &job));
    return job;
  });
}

Result<json> Items::Disable(const std::string& ref) {
  return Launch([&](Sql& tx) -> Result<int64_t> {
    ASSIGN_OR_RETURN(int64_t id, ItemId(tx, ref));
    ASSIGN_OR_RETURN(ItemRecord it, Load(tx, id));
    if (it.active_job && (it.state == "Enabling" || it.state == "InitialSync")) {
      return WithAction(Code::kFailedPrecondition,
                        "item '" + it.name + "' is still being enabled by " + JobEngine::JobId(it.active_job),
                        "cancel that job (ferry job cancel " + JobEngine::JobId(it.active_job) +
                            "): cancelling an enable removes the replication");
    }
    int64_t job = 0;
    RETURN_IF_ERROR(Start(tx, it, "disable", "disable", json{{"item", id}}, "", &job));
    return job;
  });
}

Result<OperationSpec> ParseOperation(const std::string& op, const json& body, bool plan) {
  auto check_point = [plan](const std::string& point) {
    if (plan && (point == "latest-multi-machine" || point == "latest-multi-machine-app-consistent")) {
      return Status::Ok();
    }
    return CheckPoint(point);
  };
  OperationSpec o;
  if (op == "test-failover") {
    RETURN_IF_ERROR(CheckFields(body, {"point", "network"}));
    ASSIGN_OR_RETURN(std::string point, StringField(body, "point", "latest-processed"));
    RETURN_IF_ERROR(check_point(point));
    ASSIGN_OR_RETURN(std::string network, StringField(body, "network", "isolated"));
    RETURN_IF_ERROR(CheckName("network", network));
    o.spec = {{"point", point}, {"network", network}};
  } else if (op == "cleanup-test-failover") {
    RETURN_IF_ERROR(CheckFields(body, {"notes"}));
    ASSIGN_OR_RETURN(std::string notes, StringField(body, "notes", ""));
    if (notes.size() > 4096) return InvalidArgument("field 'notes' is longer than 4096 bytes");
    o.spec = {{"notes", notes}};
  } else if (op == "failover" || (plan && op == "failback")) {
    RETURN_IF_ERROR(CheckFields(body, {"point", "shutdown_source", "planned"}));
    ASSIGN_OR_RETURN(std::string point, StringField(body, "point", "latest"));
    RETURN_IF_ERROR(check_point(point));
    ASSIGN_OR_RETURN(bool shutdown, BoolField(body, "shutdown_source", false));
    ASSIGN_OR_RETURN(bool planned, BoolField(body, "planned", op == "failback"));
    if (planned && body.contains("point") && point != "latest") {
      return InvalidArgument("a planned failover always uses the last write of the shut-down source; leave out 'point'");
    }
    o.spec = {{"point", point}, {"shutdown_source", shutdown || planned}, {"planned", planned}};
    o.transitional = "FailingOver";
  } else if (op == "change-recovery-point" && !plan) {
    RETURN_IF_ERROR(CheckFields(body, {"point"}));
    ASSIGN_OR_RETURN(std::string point, StringField(body, "point"));
    RETURN_IF_ERROR(CheckPoint(point));
    o.spec = {{"point", point}};
  } else if (op == "commit") {
    RETURN_IF_ERROR(CheckFields(body, {}));
    o.spec = json::object();
  } else if (op == "reprotect") {
    RETURN_IF_ERROR(CheckFields(body, {"location", "disk_dir"}));
    ASSIGN_OR_RETURN(std::string location, StringField(body, "location", "original"));
    if (location != "original" && location != "alternate") {
      return InvalidArgument("field 'location' must be 'original' (delta only) or 'alternate' (full copy)");
    }
    ASSIGN_OR_RETURN(std::string dir, StringField(body, "disk_dir", ""));
    if (!dir.empty() && dir[0] != '/') return InvalidArgument("field 'disk_dir' must be an absolute path");
    o.spec = {{"location", location}, {"disk_dir", dir}};
    o.transitional = "Reprotecting";
  } else if (op == "resync" && !plan) {
    RETURN_IF_ERROR(CheckFields(body, {}));
    o.spec = json::object();
  } else if (plan) {
    return WithAction(Code::kNotFound, "no plan operation '" + op + "'",
                      "use test-failover, cleanup-test-failover, failover, failback, commit or reprotect");
  } else {
    return NotFound("no operation '" + op + "'");
  }
  return o;
}

Result<json> Items::Operate(const std::string& ref, const std::string& op, const json& body) {
  ASSIGN_OR_RETURN(OperationSpec o, ParseOperation(op, body, false));
  const json& spec = o.spec;
  const std::string& transitional = o.transitional;
  return Launch([&](Sql& tx) -> Result<int64_t> {
    ASSIGN_OR_RETURN(int64_t id, ItemId(tx, ref));
    ASSIGN_OR_RETURN(ItemRecord it, Load(tx, id));
    json s = spec;
    s["item"] = id;
    int64_t job = 0;
    RETURN_IF_ERROR(Start(tx, it, op, op, s, transitional, &job));
    return job;
  });
}

Result<json> Items::RecoveryPoints(const std::string& ref, const std::string& kind, const std::string& before,
                                   const std::string& after, const Page& page) {
  ASSIGN_OR_RETURN(int64_t id, ItemId(*db_, ref));
  ASSIGN_OR_RETURN(ItemRecord it, Load(*db_, id));
  std::string sql = "SELECT seq, time_ns, kind, label FROM recovery_points WHERE item_id = $1 AND seq < $2";
  std::vector<store::Value> params{id, page.after_id > 0 ? page.after_id : INT64_MAX};
  if (!kind.empty()) {
    if (kind != "crash-consistent" && kind != "app-consistent" && kind != "group-consistent") {
      return InvalidArgument("query parameter 'kind' must be crash-consistent, app-consistent or group-consistent");
    }
    sql += " AND kind = $" + std::to_string(params.size() + 1);
    params.push_back(kind);
  }
  for (const auto& [name, text, op] : {std::tuple{"before", before, "<"}, std::tuple{"after", after, ">"}}) {
    if (text.empty()) continue;
    int64_t t = 0;
    if (!ParseTime(text, &t)) {
      return InvalidArgument(std::string("query parameter '") + name + "' must be an RFC 3339 time");
    }
    sql += std::string(" AND time_ns ") + op + " $" + std::to_string(params.size() + 1);
    params.push_back(t);
  }
  sql += " ORDER BY seq DESC LIMIT $" + std::to_string(params.size() + 1);
  params.push_back(int64_t{page.limit} + 1);
  ASSIGN_OR_RETURN(auto rows, db_->Query(sql, params));
  json items = json::array();
  int64_t next = 0;
  std::string first_disk = it.disks.empty() ? "" : it.disks[0]["name"].get<std::string>();
  for (size_t i = 0; i < rows.size(); ++i) {
    if (static_cast<int>(i) == page.limit) {
      next = rows[i - 1].Int(0);
      break;
    }
    const Row& r = rows[i];
    items.push_back({{"id", "seq:" + std::to_string(r.Int(0))}, {"time", FormatTime(r.Int(1))},
                     {"kind", r.Text(2)}, {"label", r.Text(3)}, {"seqs", {{first_disk, r.Int(0)}}}});
  }
  return PageJson(std::move(items), next);
}

Result<json> Items::Console(const std::string& ref, bool test, int64_t offset, int64_t limit) {
  if (offset < 0 || limit < 1 || limit > (1 << 20)) {
    return InvalidArgument("offset must be >= 0 and limit 1 to 1048576");
  }
  ASSIGN_OR_RETURN(int64_t id, ItemId(*db_, ref));
  ASSIGN_OR_RETURN(ItemRecord it, Load(*db_, id));
  json m = test ? (it.test_failover.is_object() ? it.test_failover.value("machine", json()) : json()) : it.running;
  if (!m.is_object()) {
    return WithAction(Code::kFailedPrecondition,
                      "item '" + it.name + "' has no " + (test ? "test machine" : "machine started by a launcher") +
                          " (state " + it.state + ")",
                      test ? "run a test failover first" : "fail the item over to start its machine");
  }
  const std::string name = m["name"];
  ASSIGN_OR_RETURN(NodeClient node, inv_->Client(m["node"].get<int64_t>()));
  ASSIGN_OR_RETURN(json out, node.Get("/v1/machines/" + name + "/console?offset=" + std::to_string(offset) +
                                      "&limit=" + std::to_string(limit)));
  auto st = node.Get("/v1/machines/" + name);
  out["machine"] = name;
  out["node"] = node.name();
  out["status"] = st.ok() ? *st : json(nullptr);
  return out;
}

}  // namespace ferry::control
