// The exec launcher: the site's own commands start, check and stop machines (libvirt, a
// cloud CLI, IPMI for bare metal). Each command is a template (exec_template.h) run through
// `/bin/sh -c` by ferry::RunCommand, bounded by command_timeout_ms (stop: timeout_ms more),
// with FERRY_* environment variables and FERRY_ACTION=start|status|stop; its output is
// appended to DIR/console.log, which Console returns and the console probe reads.
//
// Exit codes (docs/launchers.md):
//   start   0 started; anything else failed: kIoError with the code and the output's tail,
//           and Status reports Failed until the next Start.
//   status  0 running; 3 stopped (as LSB `status`); 4 or anything else unknown (the detail
//           has the code and output). Without a status command the machine counts as
//           running from a successful start until it is stopped.
//   stop    0 stopped; else kIoError. FERRY_GRACEFUL=1|0 and FERRY_TIMEOUT_MS tell the
//           command how to stop. Without a stop command Stop is kFailedPrecondition (the
//           launcher cannot stop the machine; stop it by hand), and Remove only removes a
//           machine known to be stopped.
// Start is idempotent: a machine started here and not stopped (status 0, or no status
// command) is left alone.
//
// Thread-safe (no state besides the config); per machine, calls must not overlap.
#pragma once

#include <map>
#include <string>

#include "base/clock.h"
#include "env/env.h"
#include "launch/launcher.h"
#include "launch/machine_dir.h"

namespace ferry::launch {

class ExecLauncher final : public Launcher {
 public:
  // config's templates must have passed CheckTemplate (MakeLauncher does).
  ExecLauncher(LauncherConfig config, Env* env, Clock* clock) : config_(std::move(config)), env_(env), clock_(clock) {}

  std::string kind() const override { return "exec"; }
  ferry::Status Start(const MachineSpec& spec, const std::string& dir) override;
  Result<MachineStatus> Status(const std::string& dir) override;
  ferry::Status Stop(const std::string& dir, bool graceful, int64_t timeout_ms) override;
  ferry::Status Remove(const std::string& dir) override;
  Result<std::string> Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) override;

 private:
  struct Outcome {
    int exit_code = -1;   // -1: killed or timed out
    std::string summary;  // "exited with 3: OUTPUT TAIL"
  };
  // Runs one template for the machine in dir; its output goes to console.log.
  Result<Outcome> Run(const std::string& what, const std::string& tmpl, const MachineSpec& spec, const std::string& dir,
                      const std::map<std::string, std::string>& extra_env, int64_t timeout_ms);
  // Status without the probe.
  Result<MachineStatus> PowerStatus(const MachineRecord& rec, const std::string& dir);

  const LauncherConfig config_;
  Env* const env_;
  Clock* const clock_;
};

}  // namespace ferry::launch
