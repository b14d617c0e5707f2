#include "node/hooks.h"

#include "env/process.h"

namespace ferry::node {

Status RunHook(const std::string& command, const std::map<std::string, std::string>& env,
               int64_t timeout_ms, std::string* output) {
  ASSIGN_OR_RETURN(CommandResult r, RunCommand(command, env, timeout_ms));
  if (output) *output = r.output;
  return CommandStatus("hook", command, r, timeout_ms);
}

}  // namespace ferry::node
