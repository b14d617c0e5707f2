// The node's command interface: HTTP/JSON over TCP, what `ferry server` (and operators with
// curl) use to drive a node. Routes and payloads: docs/protocols/node-api.md.
// Every request needs "Authorization: Bearer TOKEN" when the node's config sets a token.
// Errors are {"error": {"code": "NotFound", "message": "..."}} with a matching HTTP status.
// Thread-safety: requests are served concurrently; Stop may be called from any thread.
#pragma once

#include <string>

#include "base/status.h"
#include "env/http_listener.h"
#include "node/node.h"

namespace ferry::node {

class Api {
 public:
  Api(Node* node, std::string token);
  ~Api();
  // Binds HOST:PORT (port 0 picks one) and serves in a thread of its own.
  Status Listen(const std::string& address);
  int port() const { return listener_.port(); }
  void Stop();

 private:
  void Routes();
  Node* node_;
  const std::string token_;
  HttpListener listener_;
};

}  // namespace ferry::node
