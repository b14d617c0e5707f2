// ServerClient: the node's side of the control plane's "Nodes" API
// (docs/protocols/server-api.md): it registers the node once with its one-time enrollment
// token, keeps the identity the server answers with, and then sends a heartbeat carrying the
// node's status every interval (5 s).
//
//   register:  POST URL/api/v1/nodes/register
//              {"token", "name", "site", "api_url", "api_token", "link_address", "nbd"}
//              → 201 {"node": {"id": "node-N", ...}, "secret": "..."}
//   heartbeat: POST URL/api/v1/nodes/ID/heartbeat with "Authorization: Bearer SECRET"
//              {"status": <the node's GET /v1/status>} → 200
//
// The identity is DATA/server.json, {"node_id", "secret", "url"}, written atomically (temp
// file, fsync, rename). A file for another URL does not count: the node registers again.
// Failed registrations are retried every interval with one log line each, and a warning
// event the first time. A 401 to a heartbeat means the server no longer knows the node: one
// error log line and one error event, until a heartbeat succeeds again; heartbeats go on.
// Only http:// URLs for now (https would need the client's TLS setup: CA, verification).
//
// Thread-safety: Start and Stop from one thread; the client works in a thread of its own.
// Errors: Start returns kInvalidArgument for a URL that is not http://HOST[:PORT][/PATH].
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "env/env.h"

namespace httplib {
class Client;
}

namespace ferry::node {

class Node;
struct NodeConfig;

// What the server is told about the node at registration.
struct NodeAdvert {
  std::string name;
  std::string site;
  std::string api_url;       // http://HOST:PORT of the command interface
  std::string api_token;     // its bearer token, "" if none
  std::string link_address;  // HOST:PORT of the link listener, "" if none
  std::vector<std::string> nbd;  // NBD listeners, as in GET /v1/status
};

struct ServerClientOptions {
  std::string url;  // http://HOST[:PORT][/PATH]
  std::string enroll_token;
  std::string data_dir;  // where server.json lives
  NodeAdvert advert;
  std::function<nlohmann::json()> status;  // the heartbeat's body
  // Adds a node event (severity "info", "warning" or "error").
  std::function<void(const std::string& severity, const std::string& message)> event;
  int64_t interval_ms = 5000;
  Env* env = Env::Posix();
};

class ServerClient {
 public:
  static Result<std::unique_ptr<ServerClient>> Start(ServerClientOptions options);
  ~ServerClient();
  void Stop();
  // The id the server gave this node; "" until registered.
  std::string node_id() const;

 private:
  explicit ServerClient(ServerClientOptions options);
  void Run();
  Status LoadIdentity();
  Status Register();
  // Ok, or why the heartbeat failed; unauthorized is set on a 401.
  Status Heartbeat(bool* unauthorized);

  const ServerClientOptions o_;
  std::string path_prefix_;  // the URL's path, without a trailing '/'
  std::unique_ptr<httplib::Client> http_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::string node_id_, secret_;
};

// The address to advertise for a bound HOST:PORT: an unspecified host (0.0.0.0, ::, empty)
// becomes advertise_host, or 127.0.0.1 when that is empty. IPv6 hosts get brackets.
std::string AdvertisedHostPort(const std::string& host_port, const std::string& advertise_host);
// The advert of a started node whose command interface listens on api_port.
NodeAdvert AdvertOf(const NodeConfig& config, const Node& node, int api_port);

}  // namespace ferry::node
