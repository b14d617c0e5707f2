// Power control of a QEMU machine Ferry did not start, through its QMP socket: the protected
// machine at the source site, which the node powers off before a failover when asked.
// Errors: kUnavailable when the socket does not answer (the machine is off or not there),
// kIoError for a QMP error reply.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace ferry::launch {

// QMP query-status: "running", "paused", "shutdown", ...
Result<std::string> QmpRunState(const std::string& socket_path);
// graceful: system_powerdown, then wait up to timeout_ms for QEMU to close the socket; then
// (or at once when !graceful) quit. A socket that does not answer counts as powered off.
Status QmpPowerOff(const std::string& socket_path, bool graceful, int64_t timeout_ms);

}  // namespace ferry::launch
