#include "cli/commands.h"
namespace ferry::cli {
void AddDemoCommand(CLI::App& app) { (void)app; }
}
