#include "control/plan_actions.h"

#include <algorithm>
#include <filesystem>

#include "control/controller.h"
#include "control/errors.h"
#include "env/context_command.h"

namespace ferry::control {

namespace {

std::string NodeOf(const json& action) {
  return action.is_object() && action.contains("node") && action["node"].is_string() ? action["node"].get<std::string>()
                                                                                       : "";
}

// A client of the script's node whose answers may take as long as the script (Inventory::Client
// waits 30 s at most).
Result<NodeClient> ScriptNodeClient(store::Database& db, Inventory& inventory, const std::string& node_ref,
                                    int64_t timeout_ms) {
  ASSIGN_OR_RETURN(int64_t node_id, inventory.NodeId(db, node_ref));
  ASSIGN_OR_RETURN(auto rows, db.Query("SELECT name, api_url, api_token FROM nodes WHERE id = $1", {node_id}));
  if (rows.empty()) return NotFound("no node '" + node_ref + "'");
  const int read_timeout_s = static_cast<int>(std::min<int64_t>(timeout_ms / 1000 + 30, 86400 + 60));
  return NodeClient(rows[0].Text(0), rows[0].Text(1), rows[0].Text(2), read_timeout_s);
}

}  // namespace

Result<CommandResult> RunPlanScript(Controller& ctl, const json& action, const std::map<std::string, std::string>& env,
                                    const json& context, int64_t timeout_ms) {
  const std::string command = action.value("command", "");
  const std::string node = NodeOf(action);
  if (node.empty()) {
    std::error_code ec;
    std::filesystem::path tmp = std::filesystem::temp_directory_path(ec);
    if (ec) tmp = "/tmp";
    return RunWithContextFile(Env::Posix(), tmp.string(), command, env, context.dump(2), timeout_ms);
  }
  ASSIGN_OR_RETURN(NodeClient client, ScriptNodeClient(ctl.db(), ctl.inventory(), node, timeout_ms));
  json vars = json::object();
  for (const auto& [k, v] : env) vars[k] = v;
  ASSIGN_OR_RETURN(json r, client.Post("/v1/run", json{{"command", command}, {"env", vars}, {"context", context},
                                                       {"timeout_ms", timeout_ms}}));
  CommandResult out;
  out.exit_code = r.value("exit_code", -1);
  out.term_signal = r.value("signal", 0);
  out.timed_out = r.value("timed_out", false);
  out.output = r.value("output", "");
  return out;
}

Status CheckScriptPresent(Controller& ctl, const json& action) {
  return CheckScriptPresent(ctl.db(), ctl.inventory(), action);
}

Status CheckScriptPresent(store::Database& db, Inventory& inventory, const json& action) {
  if (!action.is_object() || action.value("kind", "") != "script") return Status::Ok();
  const std::string command = action.value("command", "");
  const std::string node = NodeOf(action);
  if (node.empty()) {
    Result<std::string> path = CommandProgram(command);
    if (!path.ok()) {
      return Status(path.status().code(), "the program of `" + command + "` is not on the server: " +
                                              std::string(path.status().message()));
    }
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(int64_t node_id, inventory.NodeId(db, node));
  ASSIGN_OR_RETURN(NodeClient client, inventory.Client(node_id));
  ASSIGN_OR_RETURN(json r, client.Post("/v1/run/check", json{{"command", command}}));
  if (!r.value("present", false)) {
    return NotFound("the program of `" + command + "` is not on node '" + client.name() +
                    "': " + r.value("message", std::string("not found")));
  }
  return Status::Ok();
}

}  // namespace ferry::control
