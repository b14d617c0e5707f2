// NodeClient: the server's side of the node command interface (docs/protocols/node-api.md),
// over HTTP with the node's bearer token. One short-lived connection per call; calls time out
// (connect 3 s, read 30 s by default) so that an unreachable node never hangs a job.
// Errors: the node's own error (its code and message, prefixed with the node's name), or
// kUnavailable when the node cannot be reached or its answer is not JSON.
// Thread-safety: a NodeClient is immutable; calls may run concurrently.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"

namespace ferry::control {

using nlohmann::json;

class NodeClient {
 public:
  NodeClient(std::string name, std::string api_url, std::string token, int read_timeout_s = 30);

  Result<json> Get(const std::string& path) const;
  Result<json> Post(const std::string& path, const json& body = json::object()) const;
  Result<json> Put(const std::string& path, const json& body) const;
  Result<json> Delete(const std::string& path) const;

  const std::string& name() const { return name_; }

 private:
  Result<json> Call(const std::string& method, const std::string& path, const json* body) const;
  std::string name_, url_, token_;
  int read_timeout_s_;
};

}  // namespace ferry::control
