// Commands that get a context file: recovery-plan scripts (docs/plans.md, "Actions") run with
// FERRY_CONTEXT naming a JSON file that describes the operation. The server runs them for
// scripts without a node, and a node for `POST /v1/run` (docs/protocols/node-api.md); both
// go through RunWithContextFile, so the file's life is the same wherever a script runs.
//
// Thread-safety: both functions may be called from several threads at once.
// Errors: RunWithContextFile returns an error only when the file cannot be written
// (kIoError, kResourceExhausted) or the command not started (kIoError); a command that fails
// is a CommandResult like any other. CommandProgram: kInvalidArgument for a command without
// a program word, kNotFound for a program that is not an executable file.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"
#include "env/env.h"
#include "env/process.h"

namespace ferry {

// Writes context to a new file in dir (ferry-context-RANDOM.json), runs command as RunCommand
// does with env plus FERRY_CONTEXT=<that file>, and removes the file when the command ended
// (also when it timed out).
Result<CommandResult> RunWithContextFile(Env* env, const std::string& dir, const std::string& command,
                                         const std::map<std::string, std::string>& vars, const std::string& context,
                                         int64_t timeout_ms);

// The program a shell command starts: its first word after leading VAR=value assignments,
// resolved as FindProgram does (an absolute or relative path as it is, else through PATH),
// and required to be a regular executable file. Returns the path found.
Result<std::string> CommandProgram(const std::string& command);

}  // namespace ferry
