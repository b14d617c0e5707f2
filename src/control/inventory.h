// Inventory: the control plane's sites, nodes (enrollment, registration, heartbeats),
// replication policies and machines, in the store. Results are the API's JSON objects
// (docs/protocols/server-api.md). References in bodies accept an id ("site-1") or a name.
//
// Node health is computed when read: Healthy while heartbeats arrive, Warning after
// kHeartbeatWarningSeconds without one, Critical after kHeartbeatCriticalSeconds.
//
// Thread-safety: every method may be called from any thread (the store serializes).
// Errors: kInvalidArgument (a field, named), kNotFound, kAlreadyExists (a name taken),
// kFailedPrecondition (an enrollment token spent or expired).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/clock.h"
#include "control/node_client.h"
#include "store/database.h"

namespace ferry::control {

using nlohmann::json;

inline constexpr int64_t kHeartbeatWarningSeconds = 15;
inline constexpr int64_t kHeartbeatCriticalSeconds = 60;

struct Page {
  int limit = 50;
  int64_t after_id = 0;  // from the previous page's next_page_token
};
// Parses "limit" and "page_token" query values.
Result<Page> ParsePage(const std::string& limit, const std::string& token);

// A machine's "run" settings, validated and with defaults filled in: how it boots under the
// qemu launcher ("boot": kernel, initrd, cmdline; none: from its first disk), when it counts
// as started ("probe": tcp_port, console ERE, timeout_s, default 600), and how to power it
// off at its home site when Ferry did not start it ("shutdown": qmp socket or command,
// timeout_s, default 60), and the commands its source node runs around app-consistent points
// ("hooks": freeze, thaw). docs/launchers.md.
Result<json> ParseMachineRun(const json& run);

class Inventory {
 public:
  Inventory(store::Database* db, Clock* clock) : db_(db), clock_(clock) {}

  // Creates the "default" policy on a new database.
  Status Init();

  Result<json> CreateSite(const json& body);
  Result<json> ListSites(const Page& page);
  Result<json> GetSite(const std::string& ref);
  Result<int64_t> SiteId(store::Sql& sql, const std::string& ref);

  Result<json> CreateEnrollment(const json& body);
  Result<json> RegisterNode(const json& body);
  // kNotFound for an unknown node; kFailedPrecondition (reported as 401) for a wrong secret.
  Status Heartbeat(const std::string& node_ref, const std::string& secret, const json& body);
  Result<json> ListNodes(const Page& page);
  Result<json> GetNode(const std::string& ref);
  Result<int64_t> NodeId(store::Sql& sql, const std::string& ref);
  // A client for the node's command interface.
  Result<NodeClient> Client(int64_t node_id);
  // The node's latest heartbeat status (GET /v1/status of the node) and its age in seconds.
  Result<std::pair<json, double>> LastStatus(int64_t node_id);
  std::string NodeHealth(int64_t last_heartbeat_ns) const;

  Result<json> CreatePolicy(const json& body);
  Result<json> ListPolicies(const Page& page);
  Result<json> GetPolicy(const std::string& ref);
  Result<int64_t> PolicyId(store::Sql& sql, const std::string& ref);
  Result<json> PolicyById(store::Sql& sql, int64_t id);

  // body: {"name", "site", "node", "disks": [{"name", "path", "size"}], "run"} — run as
  // ParseMachineRun takes it.
  Result<json> CreateMachine(const json& body);
  Result<json> ListMachines(const Page& page);
  Result<json> GetMachine(const std::string& ref);
  Result<int64_t> MachineId(store::Sql& sql, const std::string& ref);
  Result<json> MachineById(store::Sql& sql, int64_t id);

  Result<std::string> SiteName(store::Sql& sql, int64_t id);
  Result<std::string> NodeName(store::Sql& sql, int64_t id);

 private:
  Result<json> NodeJson(store::Sql& sql, int64_t id);
  store::Database* db_;
  Clock* clock_;
};

// Paged list envelope: {"items": [...], "next_page_token": "..."}.
json PageJson(json items, int64_t next_after);
// Runs "SELECT id FROM table WHERE id > after ORDER BY id LIMIT n+1" and turns each id into
// JSON with to_json(id); a row deleted meanwhile (to_json answers kNotFound) is left out.
template <typename F>
Result<json> ListPage(store::Sql& sql, const std::string& table, const Page& page, F&& to_json) {
  ASSIGN_OR_RETURN(auto rows, sql.Query("SELECT id FROM " + table + " WHERE id > $1 ORDER BY id LIMIT $2",
                                        {page.after_id, int64_t{page.limit} + 1}));
  json items = json::array();
  int64_t next = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (static_cast<int>(i) == page.limit) {
      next = rows[i - 1].Int(0);
      break;
    }
    Result<json> j = to_json(rows[i].Int(0));
    if (!j.ok() && j.status().code() == Code::kNotFound) continue;
    if (!j.ok()) return j.status();
    items.push_back(std::move(*j));
  }
  return PageJson(std::move(items), next);
}

}  // namespace ferry::control
