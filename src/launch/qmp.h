// A QMP client (QEMU Machine Protocol) over QEMU's unix socket, for the qemu launcher:
// negotiates capabilities, asks the run state, presses the power button, quits.
// Wire: one JSON object per line. QEMU greets with {"QMP": ...}; the client must send
// {"execute":"qmp_capabilities"} before any other command; each command is answered by
// {"return": ...} or {"error": {"class", "desc"}}, with asynchronous {"event": ...} lines
// possibly in between (skipped here).
//
// QEMU serves one QMP client at a time on a socket: connect, do the few commands, destroy.
// Every read has a deadline. Not thread-safe (one caller at a time).
//
// Errors: kUnavailable when the socket cannot be connected (QEMU not running or not yet
// listening) or QEMU did not answer in time; kAborted when QEMU closed the connection
// (it exited); kFailedPrecondition when QEMU answered a command with an error (message: its
// class and description); kIoError for a reply that is not QMP.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "env/socket.h"

namespace ferry::launch {

class QmpClient {
 public:
  // Connects, reads the greeting and negotiates capabilities, each step within timeout_ms.
  static Result<std::unique_ptr<QmpClient>> Connect(const std::string& socket_path, int64_t timeout_ms);

  // Runs a command and returns its "return" value.
  Result<nlohmann::json> Execute(const std::string& command, const nlohmann::json& arguments = nullptr);
  // query-status "status": "running", "paused", "prelaunch", "shutdown", "io-error", ...
  Result<std::string> QueryStatus();
  // The ACPI power button: the guest decides whether and how to power off.
  Status SystemPowerdown();
  // QEMU exits at once. A connection closed before the answer counts as success.
  Status Quit();

 private:
  QmpClient(std::unique_ptr<Socket> socket, int64_t timeout_ms) : socket_(std::move(socket)), timeout_ms_(timeout_ms) {}
  // The next JSON object QEMU sent, within the deadline.
  Result<nlohmann::json> ReadMessage();

  std::unique_ptr<Socket> socket_;
  const int64_t timeout_ms_;
  std::string buffer_;  // bytes read past the last complete line
};

}  // namespace ferry::launch
