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

}  // namespace ferry::cli
