// Deadlines for env/socket.h's blocking sockets, which the launchers need and the data path
// does not: a probe must not hang on a machine that swallows SYNs, and a QMP read must not
// hang on a QEMU that stopped answering. (The one place src/launch calls the OS itself;
// candidates to move into env/socket.h.)
//
// Thread-safety: as ferry::Socket. Errors: kUnavailable when the connect or the read did not
// finish within the time (the message says which and how long); kAborted when the peer
// closed the connection; kIoError for anything else the OS reported (errno text).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "env/socket.h"

namespace ferry::launch {

// TCP connect to host:port (numeric or a name), giving up after timeout_ms.
Result<std::unique_ptr<Socket>> ConnectTcpWithin(const std::string& host, uint16_t port, int64_t timeout_ms);
// Waits up to timeout_ms for bytes, then returns what one read gives (1..max_bytes bytes).
Result<std::string> ReadSomeWithin(Socket& socket, size_t max_bytes, int64_t timeout_ms);

}  // namespace ferry::launch
