// Subcommands of the `ferry` binary. Each Add* registers its verbs on the app.
// Commands print for operators: results on stdout, one-line errors on stderr with what to do,
// and signal failure by throwing Exit with the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "base/status.h"

namespace ferry::cli {

struct Exit {
  int code;
};

// Prints "ferry: <status>" to stderr and throws Exit{1} unless ok.
void Check(const Status& s, const std::string& what = {});

void AddReplicaCommands(CLI::App& app);
// Adds `serve` under the `replica` subcommand.
void AddServeCommand(CLI::App& replica);
void AddDemoCommand(CLI::App& app);
// `ferry capture serve`: the write splitter over NBD.
void AddCaptureCommands(CLI::App& app);
// `ferry node --config FILE`: the node daemon.
void AddNodeCommand(CLI::App& app);
// The verbs that drive the control plane through the server's REST API (control_commands.cc,
// docs/cli.md); `node list|show|enroll` go under the `node` command, so call after AddNodeCommand.
void AddControlCommands(CLI::App& app);
// `ferry server`: the control plane.
void AddServerCommand(CLI::App& app);
// `ferry up` (a server and two local sites) and `ferry demo` (the whole cycle on them).
void AddUpCommands(CLI::App& app);

}  // namespace ferry::cli
