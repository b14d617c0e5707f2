// Shared by the commands that serve NBD until Ctrl-C / SIGTERM.
#pragma once

#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "env/socket.h"
#include "nbd/server.h"

namespace ferry::cli {

// "tcp://HOST:PORT", "HOST:PORT", "unix:///PATH" or "unix:PATH".
Result<std::unique_ptr<Listener>> ListenOn(const std::string& address);
// Blocks SIGINT and SIGTERM in this thread (call before starting any thread) and returns them.
sigset_t BlockStopSignals();
// Daemons: keep MiB-sized buffers in the heap once freed instead of mapping them anew.
void KeepLargeBuffersInTheHeap();
// Listens on every address, prints "serving WHAT at URI" for each, waits for a stop signal,
// then stops the server.
void ServeUntilSignalled(nbd::Server& server, const std::vector<std::string>& addresses,
                         const std::string& what, const sigset_t& stop);

}  // namespace ferry::cli
