// Hooks: operator-supplied shell commands the node runs around app-consistent markers
// (freeze before, thaw after), each bounded by a timeout so a hung hook never leaves a
// machine frozen. A thin wrapper over ferry::RunCommand (env/process.h): `/bin/sh -c
// COMMAND` in its own process group with the given extra environment; on timeout the whole
// group is killed.
//
// Errors: kFailedPrecondition when the command exits non-zero (message: exit code and the
// last lines of its output), kAborted when it ran past the timeout (killed), kIoError when it
// could not be started.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "base/status.h"

namespace ferry::node {

Status RunHook(const std::string& command, const std::map<std::string, std::string>& env,
               int64_t timeout_ms, std::string* output = nullptr);

}  // namespace ferry::node
