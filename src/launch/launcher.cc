#include "launch/launcher.h"

#include "base/clock.h"
#include "env/env.h"
#include "launch/exec_launcher.h"
#include "launch/exec_template.h"
#include "launch/none_launcher.h"
#include "launch/qemu_launcher.h"

namespace ferry::launch {

const char* PowerStateName(PowerState s) {
  switch (s) {
    case PowerState::kStarting: return "Starting";
    case PowerState::kRunning: return "Running";
    case PowerState::kStopped: return "Stopped";
    case PowerState::kFailed: return "Failed";
    case PowerState::kUnknown: return "Unknown";
  }
  return "Unknown";
}

Result<std::unique_ptr<Launcher>> MakeLauncher(const LauncherConfig& config) {
  Env* env = Env::Posix();
  Clock* clock = SystemClock::Default();
  if (config.command_timeout_ms <= 0) {
    return InvalidArgument("launcher.command_timeout_ms must be positive, not " + std::to_string(config.command_timeout_ms));
  }
  if (config.kind == "none") return std::unique_ptr<Launcher>(new NoneLauncher(env, clock));
  if (config.kind == "qemu") {
    if (config.accelerator != "auto" && config.accelerator != "kvm" && config.accelerator != "tcg") {
      return InvalidArgument("launcher.accelerator '" + config.accelerator + "' is unknown: use auto, kvm or tcg");
    }
    if (config.qemu_binary.empty()) return InvalidArgument("launcher.qemu_binary is empty");
    return std::unique_ptr<Launcher>(new QemuLauncher(config, env, clock));
  }
  if (config.kind == "exec") {
    if (config.start_command.empty()) {
      return FailedPrecondition("launcher kind exec needs launcher.start_command (docs/launchers.md)");
    }
    RETURN_IF_ERROR(CheckTemplate("launcher.start_command", config.start_command));
    RETURN_IF_ERROR(CheckTemplate("launcher.status_command", config.status_command));
    RETURN_IF_ERROR(CheckTemplate("launcher.stop_command", config.stop_command));
    return std::unique_ptr<Launcher>(new ExecLauncher(config, env, clock));
  }
  return InvalidArgument("launcher.kind '" + config.kind + "' is unknown: use qemu, exec or none");
}

}  // namespace ferry::launch
