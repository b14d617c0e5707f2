// The qemu launcher: one QEMU process per machine, started in a session of its own so it
// outlives the node, found again through DIR/qemu.pid, asked through DIR/qmp.sock.
//
// Start    validate (QemuArgv) -> already running here? ok -> check the site (binary,
//          firmware, bridge, kernel files) -> pick a free host port for the tcp probe ->
//          write spec.json -> spawn QEMU (stdout/stderr to qemu.log) -> return once QMP
//          greets (QEMU opened the disks and runs its main loop), or QEMU exited (kIoError:
//          exit status + qemu.log tail), or after 2 s (a slow host: a later failure shows in
//          Status as Failed).
// Status   pid alive (and its command line names this directory's pidfile)? then QMP
//          query-status: running -> Running; prelaunch, paused, migration states ->
//          Starting; shutdown -> Stopped; io-error, guest-panicked, internal-error ->
//          Failed. Not alive: Stopped, or Failed when it was never seen running and qemu.log
//          holds an error (not only warnings). Running: the probe runs (probe.h).
// Stop     graceful: QMP system_powerdown, wait until QEMU is gone or timeout_ms; then QMP
//          quit (2 s), then SIGKILL. !graceful: quit, then SIGKILL.
//
// Thread-safe: no state besides the config; per machine, calls must not overlap.
// Errors as in launcher.h; Stop reports kIoError only when QEMU survives SIGKILL.
#pragma once

#include <string>

#include "base/clock.h"
#include "env/env.h"
#include "launch/launcher.h"

namespace ferry::launch {

class QemuLauncher final : public Launcher {
 public:
  QemuLauncher(LauncherConfig config, Env* env, Clock* clock) : config_(std::move(config)), env_(env), clock_(clock) {}

  std::string kind() const override { return "qemu"; }
  ferry::Status Start(const MachineSpec& spec, const std::string& dir) override;
  Result<MachineStatus> Status(const std::string& dir) override;
  ferry::Status Stop(const std::string& dir, bool graceful, int64_t timeout_ms) override;
  ferry::Status Remove(const std::string& dir) override;
  Result<std::string> Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) override;

 private:
  // The pid of the QEMU running for dir (absolute), or 0.
  int LivePid(const std::string& dir);
  // Checks what the site must provide for spec; kFailedPrecondition / kInvalidArgument.
  ferry::Status CheckSite(const MachineSpec& spec);

  const LauncherConfig config_;
  Env* const env_;
  Clock* const clock_;
};

// Maps QMP query-status to a power state (see the table above).
PowerState PowerStateFromQmp(const std::string& qmp_status);

}  // namespace ferry::launch
