#include "node/scripts.h"

#include <filesystem>
#include <map>

#include "env/context_command.h"

namespace ferry::node {

namespace {

Status CheckKeys(const json& body, std::initializer_list<const char*> allowed) {
  for (const auto& [k, v] : body.items()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || k == a;
    if (!ok) return InvalidArgument("field '" + k + "' is unknown");
  }
  return Status::Ok();
}

Result<std::string> Command(const json& body) {
  if (!body.contains("command") || !body["command"].is_string() || body["command"].get<std::string>().empty()) {
    return InvalidArgument("field 'command' must be a non-empty string");
  }
  return body["command"].get<std::string>();
}

}  // namespace

Result<json> RunScript(const std::string& data_dir, const json& body) {
  RETURN_IF_ERROR(CheckKeys(body, {"command", "env", "context", "timeout_ms"}));
  ASSIGN_OR_RETURN(std::string command, Command(body));
  std::map<std::string, std::string> vars;
  if (body.contains("env") && !body["env"].is_null()) {
    if (!body["env"].is_object()) return InvalidArgument("field 'env' must be an object of strings");
    for (const auto& [k, v] : body["env"].items()) {
      if (!v.is_string()) return InvalidArgument("field 'env." + k + "' must be a string");
      if (k.empty() || k.find('=') != std::string::npos || k == "FERRY_CONTEXT") {
        return InvalidArgument("field 'env' cannot set a variable named '" + k + "'");
      }
      vars[k] = v.get<std::string>();
    }
  }
  int64_t timeout_ms = 300'000;
  if (body.contains("timeout_ms") && !body["timeout_ms"].is_null()) {
    const json& t = body["timeout_ms"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > 86'400'000) {
      return InvalidArgument("field 'timeout_ms' must be an integer from 1 to 86400000");
    }
    timeout_ms = t.get<int64_t>();
  }
  const json context = body.value("context", json::object());
  std::error_code ec;
  const std::string dir = (std::filesystem::absolute(data_dir, ec) / "run").string();
  ASSIGN_OR_RETURN(CommandResult r, RunWithContextFile(Env::Posix(), dir, command, vars, context.dump(2), timeout_ms));
  // A script's output need not be UTF-8; JSON strings must be (invalid bytes become U+FFFD).
  std::string output =
      json::parse(json(r.output).dump(-1, ' ', false, json::error_handler_t::replace)).get<std::string>();
  return json{{"exit_code", r.exit_code}, {"signal", r.term_signal}, {"timed_out", r.timed_out}, {"output", output}};
}

Result<json> CheckScript(const json& body) {
  RETURN_IF_ERROR(CheckKeys(body, {"command"}));
  ASSIGN_OR_RETURN(std::string command, Command(body));
  Result<std::string> path = CommandProgram(command);
  if (!path.ok()) {
    return json{{"present", false}, {"path", ""}, {"message", std::string(path.status().message())}};
  }
  return json{{"present", true}, {"path", *path}, {"message", ""}};
}

}  // namespace ferry::node
