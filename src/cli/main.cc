// The `ferry` command line.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"Ferry: disaster recovery for Linux servers"};
  app.require_subcommand(1);
  ferry::cli::AddReplicaCommands(app);
  ferry::cli::AddDemoCommand(app);
  ferry::cli::AddCaptureCommands(app);
  ferry::cli::AddNodeCommand(app);
  ferry::cli::AddControlCommands(app);
  ferry::cli::AddServerCommand(app);
  ferry::cli::AddUpCommands(app);
  auto* version = app.add_subcommand("version", "Print the version");
  version->callback([] { std::printf("ferry 0.1.0\n"); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is a ParseError too; usage errors exit 2 (docs/cli.md)
  } catch (const ferry::cli::Exit& e) {
    return e.code;
  }
  return 0;
}
