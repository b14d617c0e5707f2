#include "control/inventory.h"

#include <charconv>
#include <random>

#include "control/errors.h"
#include "control/fields.h"

namespace ferry::control {

using store::Row;
using store::Sql;

namespace {

std::string RandomToken(size_t bytes) {
  std::random_device rd;  // the kernel's random source on Linux
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = rd() & 0xff;
    out += hex[v >> 4];
    out += hex[v & 15];
  }
  return out;
}

// A reference is an id with the prefix ("site-3") or a name.
Result<int64_t> Resolve(Sql& sql, const std::string& table, const std::string& prefix, const std::string& what,
                        const std::string& ref) {
  int64_t id = ParseId(prefix, ref);
  auto rows = id > 0 ? sql.Query("SELECT id FROM " + table + " WHERE id = $1", {id})
                     : sql.Query("SELECT id FROM " + table + " WHERE name = $1", {ref});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    return WithAction(Code::kNotFound, "no " + what + " '" + ref + "'",
                      "list them with GET /api/v1/" + table + " (ferry " + what + " list)");
  }
  return (*rows)[0].Int(0);
}

}  // namespace

Result<Page> ParsePage(const std::string& limit, const std::string& token) {
  Page p;
  if (!limit.empty()) {
    int v = 0;
    auto [e, ec] = std::from_chars(limit.data(), limit.data() + limit.size(), v);
    if (ec != std::errc() || e != limit.data() + limit.size() || v < 1 || v > 1000) {
      return InvalidArgument("query parameter 'limit' must be an integer from 1 to 1000, not '" + limit + "'");
    }
    p.limit = v;
  }
  if (!token.empty()) {
    int64_t v = 0;
    auto [e, ec] = std::from_chars(token.data(), token.data() + token.size(), v);
    if (ec != std::errc() || e != token.data() + token.size() || v < 0) {
      return InvalidArgument("query parameter 'page_token' is not a token this server returned: '" + token + "'");
    }
    p.after_id = v;
  }
  return p;
}

json PageJson(json items, int64_t next_after) {
  return {{"items", std::move(items)}, {"next_page_token", next_after > 0 ? std::to_string(next_after) : ""}};
}

Status Inventory::Init() {
  return db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM policies WHERE name = 'default'"));
    if (!rows.empty()) return Status::Ok();
    ASSIGN_OR_RETURN(int64_t id, store::NextId(tx, "policies"));
    return tx.Exec("INSERT INTO policies (id, name, rpo_threshold_s, retention_hours, app_interval_s, "
                   "crash_interval_s, failback_policy_id, created_at) VALUES ($1, 'default', 60, 24, 3600, 5, "
                   "NULL, $2)",
                   {id, FormatTime(clock_->NowNanos())})
        .status();
  });
}

// ---- sites

Result<json> Inventory::CreateSite(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"name"}));
  ASSIGN_OR_RETURN(std::string name, StringField(body, "name"));
  RETURN_IF_ERROR(CheckName("site", name));
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM sites WHERE name = $1", {name}));
    if (!rows.empty()) return AlreadyExists("a site named '" + name + "' exists");
    ASSIGN_OR_RETURN(id, store::NextId(tx, "sites"));
    return tx.Exec("INSERT INTO sites (id, name, created_at) VALUES ($1, $2, $3)",
                   {id, name, FormatTime(clock_->NowNanos())})
        .status();
  }));
  return GetSite(FormatId("site", id));
}

Result<int64_t> Inventory::SiteId(Sql& sql, const std::string& ref) { return Resolve(sql, "sites", "site", "site", ref); }

Result<json> Inventory::GetSite(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, SiteId(*db_, ref));
  ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT id, name, created_at FROM sites WHERE id = $1", {id}));
  return json{{"id", FormatId("site", id)}, {"name", rows[0].Text(1)}, {"created_at", rows[0].Text(2)}};
}

Result<json> Inventory::ListSites(const Page& page) {
  return ListPage(*db_, "sites", page, [&](int64_t id) { return GetSite(FormatId("site", id)); });
}

Result<std::string> Inventory::SiteName(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT name FROM sites WHERE id = $1", {id}));
  if (rows.empty()) return NotFound("no site " + FormatId("site", id));
  return rows[0].Text(0);
}

// ---- nodes

Result<json> Inventory::CreateEnrollment(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"site"}));
  ASSIGN_OR_RETURN(std::string site, StringField(body, "site"));
  std::string token = RandomToken(24);
  int64_t expires = clock_->NowNanos() + 3600 * kNanosPerSecond;
  std::string site_name;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(int64_t site_id, SiteId(tx, site));
    ASSIGN_OR_RETURN(site_name, SiteName(tx, site_id));
    return tx.Exec("INSERT INTO enrollments (token, site_id, expires_ns, used) VALUES ($1, $2, $3, 0)",
                   {token, site_id, expires})
        .status();
  }));
  return json{{"token", token}, {"site", site_name}, {"expires_at", FormatTime(expires)}};
}

Result<json> Inventory::RegisterNode(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"token", "name", "site", "api_url", "api_token", "link_address", "nbd"}));
  ASSIGN_OR_RETURN(std::string token, StringField(body, "token"));
  ASSIGN_OR_RETURN(std::string name, StringField(body, "name"));
  ASSIGN_OR_RETURN(std::string site, StringField(body, "site", ""));
  ASSIGN_OR_RETURN(std::string api_url, StringField(body, "api_url"));
  ASSIGN_OR_RETURN(std::string api_token, StringField(body, "api_token", ""));
  ASSIGN_OR_RETURN(std::string link, StringField(body, "link_address"));
  json nbd = body.value("nbd", json::array());
  if (!nbd.is_array()) return InvalidArgument("field 'nbd' must be an array of addresses");
  for (const json& a : nbd) {
    if (!a.is_string()) return InvalidArgument("field 'nbd' must be an array of strings");
  }
  RETURN_IF_ERROR(CheckName("node", name));
  if (api_url.rfind("http://", 0) != 0) {
    return InvalidArgument("field 'api_url' must be an http:// URL of the node's command interface");
  }
  std::string secret = RandomToken(24);
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT site_id, expires_ns, used FROM enrollments WHERE token = $1", {token}));
    if (rows.empty() || rows[0].Int(2) != 0 || rows[0].Int(1) < clock_->NowNanos()) {
      return WithAction(Code::kFailedPrecondition,
                        rows.empty() ? "the enrollment token is not known to this server"
                                     : (rows[0].Int(2) ? "the enrollment token was already used"
                                                       : "the enrollment token expired"),
                        "create a new one (ferry node enroll --site SITE) and put it in the node's [server] "
                        "enroll_token");
    }
    int64_t site_id = rows[0].Int(0);
    ASSIGN_OR_RETURN(std::string site_name, SiteName(tx, site_id));
    if (!site.empty() && site != site_name) {
      return InvalidArgument("the node says it is at site '" + site + "' but the token was made for site '" +
                             site_name + "'; fix the node's site or enroll it for the right site");
    }
    RETURN_IF_ERROR(tx.Exec("UPDATE enrollments SET used = 1 WHERE token = $1", {token}).status());
    ASSIGN_OR_RETURN(auto existing, tx.Query("SELECT id FROM nodes WHERE name = $1", {name}));
    std::string now = FormatTime(clock_->NowNanos());
    if (!existing.empty()) {
      // A reinstalled node with a fresh token takes over its old record (and its machines).
      id = existing[0].Int(0);
      return tx.Exec("UPDATE nodes SET site_id = $2, api_url = $3, api_token = $4, link_address = $5, nbd = $6, "
                     "secret = $7, registered_at = $8, last_heartbeat_ns = $9 WHERE id = $1",
                     {id, site_id, api_url, api_token, link, nbd.dump(), secret, now, clock_->NowNanos()})
          .status();
    }
    ASSIGN_OR_RETURN(id, store::NextId(tx, "nodes"));
    return tx.Exec("INSERT INTO nodes (id, name, site_id, api_url, api_token, link_address, nbd, secret, "
                   "registered_at, last_heartbeat_ns, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '{}')",
                   {id, name, site_id, api_url, api_token, link, nbd.dump(), secret, now, clock_->NowNanos()})
        .status();
  }));
  ASSIGN_OR_RETURN(json node, NodeJson(*db_, id));
  return json{{"node", node}, {"secret", secret}};
}

Status Inventory::Heartbeat(const std::string& node_ref, const std::string& secret, const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"status"}));
  if (!body.contains("status") || !body["status"].is_object()) {
    return InvalidArgument("field 'status' must be the node's status object");
  }
  int64_t id = ParseId("node", node_ref);
  ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT secret FROM nodes WHERE id = $1", {id}));
  if (rows.empty()) return NotFound("no node '" + node_ref + "'");
  if (rows[0].Text(0) != secret) return FailedPrecondition("wrong node secret");
  return db_->Exec("UPDATE nodes SET last_heartbeat_ns = $2, status = $3 WHERE id = $1",
                   {id, clock_->NowNanos(), body["status"].dump()})
      .status();
}

std::string Inventory::NodeHealth(int64_t last_heartbeat_ns) const {
  double age = static_cast<double>(clock_->NowNanos() - last_heartbeat_ns) / kNanosPerSecond;
  if (age > kHeartbeatCriticalSeconds) return "Critical";
  if (age > kHeartbeatWarningSeconds) return "Warning";
  return "Healthy";
}

Result<json> Inventory::NodeJson(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT n.id, n.name, s.name, n.api_url, n.link_address, n.nbd, "
                                        "n.registered_at, n.last_heartbeat_ns FROM nodes n JOIN sites s ON "
                                        "s.id = n.site_id WHERE n.id = $1",
                                        {id}));
  if (rows.empty()) return NotFound("no node " + FormatId("node", id));
  const Row& r = rows[0];
  int64_t hb = r.Int(7);
  std::string health = NodeHealth(hb);
  json problems = json::array();
  if (health != "Healthy") {
    problems.push_back("no heartbeat for " +
                       std::to_string((clock_->NowNanos() - hb) / kNanosPerSecond) +
                       " s: check that the node runs and can reach the server");
  }
  return json{{"id", FormatId("node", id)}, {"name", r.Text(1)}, {"site", r.Text(2)}, {"api_url", r.Text(3)},
              {"link_address", r.Text(4)}, {"nbd", json::parse(r.Text(5), nullptr, false)},
              {"registered_at", r.Text(6)}, {"health", health},
              {"last_heartbeat_at", hb > 0 ? json(FormatTime(hb)) : json(nullptr)}, {"problems", problems}};
}

Result<int64_t> Inventory::NodeId(Sql& sql, const std::string& ref) { return Resolve(sql, "nodes", "node", "node", ref); }

Result<json> Inventory::GetNode(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, NodeId(*db_, ref));
  return NodeJson(*db_, id);
}

Result<json> Inventory::ListNodes(const Page& page) {
  return ListPage(*db_, "nodes", page, [&](int64_t id) { return NodeJson(*db_, id); });
}

Result<std::string> Inventory::NodeName(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT name FROM nodes WHERE id = $1", {id}));
  if (rows.empty()) return NotFound("no node " + FormatId("node", id));
  return rows[0].Text(0);
}

Result<NodeClient> Inventory::Client(int64_t node_id) {
  ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT name, api_url, api_token FROM nodes WHERE id = $1", {node_id}));
  if (rows.empty()) return NotFound("no node " + FormatId("node", node_id));
  return NodeClient(rows[0].Text(0), rows[0].Text(1), rows[0].Text(2));
}

Result<std::pair<json, double>> Inventory::LastStatus(int64_t node_id) {
  ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT status, last_heartbeat_ns FROM nodes WHERE id = $1", {node_id}));
  if (rows.empty()) return NotFound("no node " + FormatId("node", node_id));
  double age = static_cast<double>(clock_->NowNanos() - rows[0].Int(1)) / kNanosPerSecond;
  return std::make_pair(json::parse(rows[0].Text(0), nullptr, false), age);
}

// ---- policies

Result<json> Inventory::PolicyById(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT id, name, rpo_threshold_s, retention_hours, app_interval_s, "
                                        "crash_interval_s, failback_policy_id, created_at FROM policies WHERE id = $1",
                                        {id}));
  if (rows.empty()) return NotFound("no policy " + FormatId("pol", id));
  const Row& r = rows[0];
  return json{{"id", FormatId("pol", id)}, {"name", r.Text(1)}, {"rpo_threshold_seconds", r.Int(2)},
              {"retention_hours", r.Int(3)}, {"app_consistent_interval_seconds", r.Int(4)},
              {"crash_consistent_interval_seconds", r.Int(5)},
              {"failback_policy", FormatId("pol", r.IsNull(6) ? id : r.Int(6))}, {"created_at", r.Text(7)}};
}

Result<int64_t> Inventory::PolicyId(Sql& sql, const std::string& ref) {
  return Resolve(sql, "policies", "pol", "policy", ref);
}

Result<json> Inventory::CreatePolicy(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"name", "rpo_threshold_seconds", "retention_hours",
                                     "app_consistent_interval_seconds", "crash_consistent_interval_seconds",
                                     "failback_policy"}));
  ASSIGN_OR_RETURN(std::string name, StringField(body, "name"));
  RETURN_IF_ERROR(CheckName("policy", name));
  ASSIGN_OR_RETURN(int64_t rpo, IntField(body, "rpo_threshold_seconds", 60, 1, 86400));
  ASSIGN_OR_RETURN(int64_t retention, IntField(body, "retention_hours", 24, 1, 24 * 365));
  ASSIGN_OR_RETURN(int64_t app, IntField(body, "app_consistent_interval_seconds", 3600, 0, 86400));
  ASSIGN_OR_RETURN(int64_t crash, IntField(body, "crash_consistent_interval_seconds", 5, 1, 3600));
  ASSIGN_OR_RETURN(std::string failback, StringField(body, "failback_policy", ""));
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM policies WHERE name = $1", {name}));
    if (!rows.empty()) return AlreadyExists("a policy named '" + name + "' exists");
    store::Value fb;
    if (!failback.empty()) {
      ASSIGN_OR_RETURN(int64_t f, PolicyId(tx, failback));
      fb = f;
    }
    ASSIGN_OR_RETURN(id, store::NextId(tx, "policies"));
    return tx.Exec("INSERT INTO policies (id, name, rpo_threshold_s, retention_hours, app_interval_s, "
                   "crash_interval_s, failback_policy_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                   {id, name, rpo, retention, app, crash, fb, FormatTime(clock_->NowNanos())})
        .status();
  }));
  return PolicyById(*db_, id);
}

Result<json> Inventory::GetPolicy(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, PolicyId(*db_, ref));
  return PolicyById(*db_, id);
}

Result<json> Inventory::ListPolicies(const Page& page) {
  return ListPage(*db_, "policies", page, [&](int64_t id) { return PolicyById(*db_, id); });
}

// ---- machines

Result<json> Inventory::MachineById(Sql& sql, int64_t id) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT m.id, m.name, s.name, m.node_id, m.disks, m.created_at, m.run FROM machines m "
                                        "JOIN sites s ON s.id = m.site_id WHERE m.id = $1",
                                        {id}));
  if (rows.empty()) return NotFound("no machine " + FormatId("mach", id));
  const Row& r = rows[0];
  return json{{"id", FormatId("mach", id)}, {"name", r.Text(1)}, {"site", r.Text(2)},
              {"node", FormatId("node", r.Int(3))}, {"disks", json::parse(r.Text(4), nullptr, false)},
              {"run", json::parse(r.Text(6), nullptr, false)}, {"created_at", r.Text(5)}};
}

Result<int64_t> Inventory::MachineId(Sql& sql, const std::string& ref) {
  return Resolve(sql, "machines", "mach", "machine", ref);
}

Result<json> ParseMachineRun(const json& run) {
  if (!run.is_object()) return InvalidArgument("field 'run' must be an object {\"boot\", \"probe\", \"shutdown\"}");
  RETURN_IF_ERROR(CheckFields(run, {"boot", "probe", "shutdown", "hooks"}).WithContext("run"));
  json out = json::object();
  auto object = [&](const char* key) -> Result<json> {
    json v = run.value(key, json::object());
    if (!v.is_object()) return InvalidArgument(std::string("field 'run.") + key + "' must be an object");
    return v;
  };
  ASSIGN_OR_RETURN(json boot, object("boot"));
  RETURN_IF_ERROR(CheckFields(boot, {"kernel", "initrd", "cmdline"}).WithContext("run.boot"));
  for (const char* k : {"kernel", "initrd", "cmdline"}) {
    ASSIGN_OR_RETURN(std::string v, StringField(boot, k, ""));
    if (!v.empty() && std::string(k) != "cmdline" && v[0] != '/') {
      return InvalidArgument(std::string("field 'run.boot.") + k + "' must be an absolute path on the target nodes");
    }
    if (!v.empty()) out["boot"][k] = v;
  }
  if (out.contains("boot") && !out["boot"].contains("kernel")) {
    return InvalidArgument("field 'run.boot' has an initrd or cmdline but no kernel: add run.boot.kernel, or boot from the disk");
  }
  ASSIGN_OR_RETURN(json probe, object("probe"));
  RETURN_IF_ERROR(CheckFields(probe, {"tcp_port", "console", "timeout_s"}).WithContext("run.probe"));
  ASSIGN_OR_RETURN(int64_t port, IntField(probe, "tcp_port", 0, 0, 65535));
  ASSIGN_OR_RETURN(std::string console, StringField(probe, "console", ""));
  ASSIGN_OR_RETURN(int64_t probe_timeout, IntField(probe, "timeout_s", 600, 1, 86400));
  out["probe"] = {{"tcp_port", port}, {"console", console}, {"timeout_s", probe_timeout}};
  ASSIGN_OR_RETURN(json shutdown, object("shutdown"));
  RETURN_IF_ERROR(CheckFields(shutdown, {"qmp", "command", "timeout_s"}).WithContext("run.shutdown"));
  ASSIGN_OR_RETURN(std::string qmp, StringField(shutdown, "qmp", ""));
  ASSIGN_OR_RETURN(std::string command, StringField(shutdown, "command", ""));
  ASSIGN_OR_RETURN(int64_t shutdown_timeout, IntField(shutdown, "timeout_s", 60, 0, 3600));
  if (!qmp.empty() && !command.empty()) {
    return InvalidArgument("field 'run.shutdown': give 'qmp' (a QEMU machine's QMP socket) or 'command' (for a physical "
                           "server), not both");
  }
  if (!qmp.empty() && qmp[0] != '/') return InvalidArgument("field 'run.shutdown.qmp' must be an absolute socket path");
  out["shutdown"] = {{"qmp", qmp}, {"command", command}, {"timeout_s", shutdown_timeout}};
  ASSIGN_OR_RETURN(json hooks, object("hooks"));
  RETURN_IF_ERROR(CheckFields(hooks, {"freeze", "thaw"}).WithContext("run.hooks"));
  ASSIGN_OR_RETURN(std::string freeze, StringField(hooks, "freeze", ""));
  ASSIGN_OR_RETURN(std::string thaw, StringField(hooks, "thaw", ""));
  if (freeze.empty() && !thaw.empty()) {
    return InvalidArgument("field 'run.hooks' has a thaw command but no freeze command");
  }
  out["hooks"] = {{"freeze", freeze}, {"thaw", thaw}};
  return out;
}

Result<json> Inventory::CreateMachine(const json& body) {
  RETURN_IF_ERROR(CheckFields(body, {"name", "site", "node", "disks", "run"}));
  ASSIGN_OR_RETURN(json run, ParseMachineRun(body.value("run", json::object())));
  ASSIGN_OR_RETURN(std::string name, StringField(body, "name"));
  RETURN_IF_ERROR(CheckName("machine", name));
  ASSIGN_OR_RETURN(std::string site, StringField(body, "site"));
  ASSIGN_OR_RETURN(std::string node, StringField(body, "node"));
  if (!body.contains("disks") || !body["disks"].is_array() || body["disks"].empty() || body["disks"].size() > 16) {
    return InvalidArgument("field 'disks' must be an array of 1 to 16 disks {\"name\", \"path\", \"size\"}");
  }
  json disks = json::array();
  for (const json& d : body["disks"]) {
    RETURN_IF_ERROR(CheckFields(d, {"name", "path", "size"}).WithContext("disks[]"));
    ASSIGN_OR_RETURN(std::string dname, StringField(d, "name"));
    RETURN_IF_ERROR(CheckName("disk", dname));
    ASSIGN_OR_RETURN(std::string path, StringField(d, "path"));
    if (path.empty() || path[0] != '/') {
      return InvalidArgument("disk '" + dname + "': field 'path' must be an absolute path on the node");
    }
    ASSIGN_OR_RETURN(int64_t size, IntField(d, "size", 0, 0, INT64_MAX));
    if (size % 4096 != 0) return InvalidArgument("disk '" + dname + "': field 'size' must be a multiple of 4096");
    for (const json& e : disks) {
      if (e["name"] == dname) return InvalidArgument("two disks are named '" + dname + "'");
    }
    disks.push_back({{"name", dname}, {"path", path}, {"size", size}});
  }
  int64_t id = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT id FROM machines WHERE name = $1", {name}));
    if (!rows.empty()) return AlreadyExists("a machine named '" + name + "' exists");
    ASSIGN_OR_RETURN(int64_t site_id, SiteId(tx, site));
    ASSIGN_OR_RETURN(int64_t node_id, NodeId(tx, node));
    ASSIGN_OR_RETURN(auto nrows, tx.Query("SELECT site_id FROM nodes WHERE id = $1", {node_id}));
    if (nrows[0].Int(0) != site_id) {
      return InvalidArgument("node '" + node + "' is not at site '" + site + "'");
    }
    ASSIGN_OR_RETURN(id, store::NextId(tx, "machines"));
    return tx.Exec("INSERT INTO machines (id, name, site_id, node_id, disks, created_at, run) "
                   "VALUES ($1, $2, $3, $4, $5, $6, $7)",
                   {id, name, site_id, node_id, disks.dump(), FormatTime(clock_->NowNanos()), run.dump()})
        .status();
  }));
  return MachineById(*db_, id);
}

Result<json> Inventory::GetMachine(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, MachineId(*db_, ref));
  return MachineById(*db_, id);
}

Result<json> Inventory::ListMachines(const Page& page) {
  return ListPage(*db_, "machines", page, [&](int64_t id) { return MachineById(*db_, id); });
}

}  // namespace ferry::control
