// Script actions of recovery plans (docs/plans.md, "Actions"): running one with its context,
// and the readiness check that its program is where it will run. A script without a node runs
// on the server; one with a node runs there through the node's POST /v1/run, and its
// presence is asked with POST /v1/run/check (docs/protocols/node-api.md, "Plan scripts").
// Either way the context JSON goes to a file named by FERRY_CONTEXT, removed afterwards.
//
// `action` is a stored action (Plans validated it): {"kind": "script", "name", "command",
// "node", "timeout_s", …}.
//
// Thread-safety: every function may be called from any thread; a run blocks its caller for
// at most the script's timeout (plus the node's answer).
// Errors: kNotFound for an unknown node or (CheckScriptPresent) a program that is missing;
// kUnavailable when the node cannot be reached; kIoError when the script could not be started
// or its context file written. A script that fails or times out is a CommandResult, not an
// error.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "control/inventory.h"
#include "env/process.h"
#include "store/database.h"

namespace ferry::control {

using nlohmann::json;

class Controller;

// Runs the script action with env (FERRY_PLAN, FERRY_JOB, …) plus FERRY_CONTEXT naming a file
// that holds context; timeout_ms bounds the script (its process group is killed then).
Result<CommandResult> RunPlanScript(Controller& ctl, const json& action, const std::map<std::string, std::string>& env,
                                    const json& context, int64_t timeout_ms);

// Ok when the program of a script action (the first word of its command) is an executable
// file where the script runs; Ok for other actions. The error's message names the program
// and the place (server or node).
Status CheckScriptPresent(Controller& ctl, const json& action);
// The same for callers that hold the store and the inventory rather than a Controller.
Status CheckScriptPresent(store::Database& db, Inventory& inventory, const json& action);

}  // namespace ferry::control
