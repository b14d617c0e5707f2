#include "cli/commands.h"
#include <cstdio>
namespace ferry::cli {
void Check(const Status& s, const std::string& what) {
  if (s.ok()) return;
  std::fprintf(stderr, "ferry: %s%s%s\n", what.c_str(), what.empty() ? "" : ": ", s.ToString().c_str());
  throw Exit{1};
}
void AddReplicaCommands(CLI::App& app) { (void)app; }
}
