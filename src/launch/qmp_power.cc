#include "launch/qmp_power.h"

#include <chrono>
#include <thread>

#include "launch/qmp.h"

namespace ferry::launch {

namespace {

constexpr int64_t kQmpTimeoutMs = 5000;

}  // namespace

Result<std::string> QmpRunState(const std::string& socket_path) {
  ASSIGN_OR_RETURN(auto qmp, QmpClient::Connect(socket_path, kQmpTimeoutMs));
  return qmp->QueryStatus();
}

Status QmpPowerOff(const std::string& socket_path, bool graceful, int64_t timeout_ms) {
  auto qmp = QmpClient::Connect(socket_path, kQmpTimeoutMs);
  if (!qmp.ok()) {
    // Nobody listens: the machine is off already (or was never there).
    if (qmp.status().code() == Code::kUnavailable || qmp.status().code() == Code::kAborted) return Status::Ok();
    return qmp.status();
  }
  if (graceful) {
    RETURN_IF_ERROR((*qmp)->SystemPowerdown());
    qmp->reset();  // QEMU serves one client at a time: let go while the guest shuts down
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      auto again = QmpClient::Connect(socket_path, kQmpTimeoutMs);
      if (!again.ok()) return Status::Ok();  // QEMU exited: powered off
      auto state = (*again)->QueryStatus();
      if (!state.ok() || *state == "shutdown") {
        (void)(*again)->Quit();  // a guest halted with -no-shutdown: end QEMU too
        return Status::Ok();
      }
      again->reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    qmp = QmpClient::Connect(socket_path, kQmpTimeoutMs);
    if (!qmp.ok()) return Status::Ok();
  }
  return (*qmp)->Quit();
}

}  // namespace ferry::launch
