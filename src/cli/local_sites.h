// LocalSites: Ferry on one machine, for trying it out (`ferry up`) and for `ferry demo`: a
// `ferry server` (SQLite) and one `ferry node` for each of two sites, `primary` and
// `recovery`, as child processes of this one, talking over loopback sockets. The nodes
// enroll with one-time tokens like any node would. Links between the two nodes are plain TCP
// on 127.0.0.1 (`tls.insecure`): for one machine only.
//
// Layout under DIR: server/ (ferry.db, api-token), primary/ and recovery/ (each node's data,
// configuration and NBD socket), *.log (each process's output).
// Thread-compatible; the destructor stops the processes it started.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status.h"

namespace ferry::cli {

class LocalSites {
 public:
  LocalSites(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  ~LocalSites();

  // Starts the server and both nodes, creates the sites and waits until the nodes registered.
  // A directory used before is reused: its store, nodes and items are kept.
  Status Start();
  void Stop();

  std::string server_url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& token() const { return token_; }
  const std::string& dir() const { return dir_; }
  // The NBD socket of a site's node.
  std::string nbd_socket(const std::string& site) const { return dir_ + "/" + site + "/nbd.sock"; }

  // The REST API, with the token: the parsed answer, or the error the server sent.
  Result<nlohmann::json> Call(const std::string& method, const std::string& path,
                              const nlohmann::json& body = nullptr) const;

 private:
  Result<pid_t> Spawn(const std::vector<std::string>& args, const std::string& log);
  Status StartNode(const std::string& site, int index);

  std::string dir_;
  int port_;
  std::string token_;
  std::vector<pid_t> children_;
};

}  // namespace ferry::cli
