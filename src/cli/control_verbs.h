// Plumbing shared by the control-plane verbs (control_commands.cc registers them; the verbs
// live in inventory_commands.cc, item_commands.cc and job_commands.cc). Every verb takes
// --server, --token and --output; the verbs that start a job also take --wait.
// Failures print "ferry: WHAT: ERROR" on stderr and throw Exit with the code of exit_codes.h.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "cli/api_json.h"
#include "cli/client.h"
#include "cli/tables.h"

namespace ferry::cli {

struct VerbOptions {
  std::string server;
  std::string token;
  std::string output = "table";
  bool wait = false;
  bool json() const { return output == "json"; }
};

// Adds --server, --token and --output to a verb; the returned options fill in at parse time.
std::shared_ptr<VerbOptions> AddVerbOptions(CLI::App* verb);
// Adds --wait (follow the started job to its end).
void AddWaitFlag(CLI::App* verb, VerbOptions* options);

// A client for the server the options and the environment name (cli_config.h).
ApiClient Connect(const VerbOptions& options);

// The value, or: print the error and throw Exit{ExitCodeFor(error)}.
[[noreturn]] void FailWith(const ApiError& error, const std::string& what);
template <typename T>
T OrExit(ApiOr<T> r, const std::string& what) {
  if (!r.ok()) FailWith(r.error(), what);
  return std::move(r).value();
}

void PrintJson(const json& value);
// A list answer ({"items": [...]}) as the table or as the server's JSON.
void PrintList(const VerbOptions& options, const json& list, Table (*table)(const json&));
// A single resource: `details` of it, or its JSON.
void PrintResource(const VerbOptions& options, const json& resource, std::string (*details)(const json&));

// For an operation's answer ({"job": {...}}): prints the job id (or the JSON); with --wait
// follows the job (FollowAndReport).
void ReportStartedJob(ApiClient& client, const VerbOptions& options, const json& answer);
// Follows the job to its end, prints the summary (or the final job's JSON) and throws Exit
// with ExitCodeForJobState unless it Succeeded. Ctrl-C stops the watching only.
void FollowAndReport(ApiClient& client, const VerbOptions& options, const std::string& job_id);

void AddInventoryCommands(CLI::App& app);  // site, node (list|show|enroll), policy, machine
void AddItemCommands(CLI::App& app);       // item, protect, recovery-points, the operations
void AddJobCommands(CLI::App& app);        // job
void AddPlanCommands(CLI::App& app);       // plan (plan_commands.cc)
void AddGroupCommands(CLI::App& app);      // group (consistency groups)

}  // namespace ferry::cli
