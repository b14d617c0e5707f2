// ApiServer: the control plane's REST/JSON API under /api/v1 (docs/protocols/server-api.md,
// described for machines by src/api/openapi.yaml). Authentication: the bearer API token on
// every route but GET /health and POST /nodes/register; heartbeats carry the node's secret.
// Bodies are JSON objects of at most 1 MiB. Errors: {"error": {"code", "message", "action"}}
// with the HTTP status of the code.
// Thread-safety: requests are served concurrently; Stop may be called from any thread.
#pragma once

#include <string>

#include "base/status.h"
#include "control/controller.h"
#include "env/http_listener.h"

namespace ferry::api {

class ApiServer {
 public:
  ApiServer(control::Controller* ctl, std::string token);
  ~ApiServer();
  // Binds HOST:PORT (port 0 picks one) and serves in a thread of its own.
  Status Listen(const std::string& address);
  int port() const { return listener_.port(); }
  void Stop();

 private:
  void Routes();
  control::Controller* ctl_;
  const std::string token_;
  HttpListener listener_;
};

}  // namespace ferry::api
