// HttpListener: an HTTP server (cpp-httplib) that serves on a thread of its own. The control
// plane's API and the node's command interface are each one: they set their routes on
// server(), then Listen.
//
// Socket options: TCP_NODELAY (headers and body leave in two writes, and without it a
// kept-alive client waits for its delayed ACK, ~40 ms, on every answer), and SO_REUSEADDR
// without httplib's default SO_REUSEPORT (which lets a second process bind the same port and
// silently take half the connections: a port in use must be an error instead).
//
// Thread-safety: routes are set before Listen; Stop may be called from any thread, more than
// once. Errors: Listen returns kIoError when the address cannot be bound, kInvalidArgument
// when it is not HOST:PORT.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "base/status.h"

namespace httplib {
class Server;
}

namespace ferry {

class HttpListener {
 public:
  HttpListener();
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  httplib::Server& server() { return *http_; }
  // Binds HOST:PORT (port 0 picks one) and serves in a thread of its own. `what` names the
  // service in the error ("the API").
  Status Listen(const std::string& address, std::string_view what);
  // The bound port, once listening.
  int port() const { return port_; }
  // Stops serving and waits for the serving thread. Handlers may still run until it returns.
  void Stop();

 private:
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace ferry
