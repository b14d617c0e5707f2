// Scripts of recovery plans that run on this node (docs/protocols/node-api.md, "Plan
// scripts"): POST /v1/run runs a command with a context file written under the node's data
// directory; POST /v1/run/check says whether a command's program is here. The API thread that
// serves a run waits for the command (at most its timeout).
//
// Thread-safety: both functions may be called from several threads at once.
// Errors: kInvalidArgument naming the field for a bad body; kIoError or kResourceExhausted
// when the context file cannot be written or the command not started. A command that fails
// is an answer, not an error.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"

namespace ferry::node {

using nlohmann::json;

// body: {"command", "env": {NAME: value}, "context": <any JSON>, "timeout_ms"} →
// {"exit_code", "signal", "timed_out", "output"}. The context file goes to DATA_DIR/run/.
Result<json> RunScript(const std::string& data_dir, const json& body);
// body: {"command"} → {"present": bool, "path": "/usr/bin/…" or "", "message"}.
Result<json> CheckScript(const json& body);

}  // namespace ferry::node
