// The none launcher: starts nothing. For sites where the operator (or another tool) boots
// the machine from the exported disks: Start validates the spec and records it in
// DIR/spec.json; the machine then counts as Running (probe not run: probe_ok, with a detail
// saying so) until Stop, which only records that it stopped. Console is always empty.
// Thread-safe (no state besides the Env and Clock); per machine, calls must not overlap.
#pragma once

#include <string>

#include "base/clock.h"
#include "env/env.h"
#include "launch/launcher.h"

namespace ferry::launch {

class NoneLauncher final : public Launcher {
 public:
  NoneLauncher(Env* env, Clock* clock) : env_(env), clock_(clock) {}

  std::string kind() const override { return "none"; }
  ferry::Status Start(const MachineSpec& spec, const std::string& dir) override;
  Result<MachineStatus> Status(const std::string& dir) override;
  ferry::Status Stop(const std::string& dir, bool graceful, int64_t timeout_ms) override;
  ferry::Status Remove(const std::string& dir) override;
  Result<std::string> Console(const std::string& dir, int64_t offset, int64_t max_bytes, int64_t* next) override;

 private:
  Env* const env_;
  Clock* const clock_;
};

}  // namespace ferry::launch
