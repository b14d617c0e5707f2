// The node's configuration file (TOML), as `ferry node --config FILE` reads it:
//
//   name = "node-a"                  # this node, as links and the server know it
//   site = "primary"
//   data_dir = "/var/lib/ferry"      # pending logs, replicas, volume settings
//   [listen]
//   api  = "127.0.0.1:7800"          # the command interface (docs/protocols/node-api.md)
//   nbd  = ["unix:///run/ferry/nbd.sock", "127.0.0.1:10809"]   # splitter and recovery exports
//   link = "0.0.0.0:7801"            # replication links from source nodes
//   [tls]                            # links use mutual TLS with these files
//   cert = "node-a.pem"; key = "node-a.key"; ca = "ca.pem"
//   insecure = false                 # true: plain TCP links (tests on one machine only)
//   [api_auth]
//   token = "…"                      # bearer token the command interface requires
//   [server]                         # the control plane to register with (optional)
//   url = "http://ferry.example:7443" # http only for now: https is refused
//   enroll_token = "…"               # one-time token from POST /api/v1/nodes/enrollments;
//                                    # spent at the first registration
//   advertise_host = "10.0.0.5"      # the host the server is told for this node's
//                                    # listeners bound to 0.0.0.0 or :: (default 127.0.0.1)
//   [throttle]
//   bytes_per_second = 0             # for all links together; 0 = unlimited
//   [retention]
//   interval_ms = 60000              # how often each replica's retention is applied
//   [launcher]                       # how this site starts recovered machines (docs/launchers.md)
//   kind = "qemu"                    # qemu | exec | none (default none: only export the disks)
//   qemu_binary = "qemu-system-x86_64"; accelerator = "auto"   # auto | kvm | tcg
//   firmware = ""                    # optional -bios file
//   start_command = "…"; status_command = "…"; stop_command = "…"   # exec templates
//   command_timeout_ms = 60000
//   [networks.default]               # the networks items may name (property `network`)
//   mode = "user"                    # user | bridge | none; test failovers get an isolated copy
//   bridge = "br0"                   # for mode bridge
//   subnet = "10.0.2.0/24"           # the addresses DHCP hands out (user and isolated)
//   A site without [networks] has `default` (user, 10.0.2.0/24).
//
// With server.url set, the node registers with the control plane at start (once: the identity
// it gets is kept in DATA/server.json) and sends it a heartbeat every 5 s (node/server_client.h).
//
// Relative paths are relative to the file's directory. Errors are kInvalidArgument naming the
// file, the key and what to write instead.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "base/status.h"
#include "launch/launcher.h"

namespace ferry::node {

struct NodeConfig {
  std::string name;
  std::string site;
  std::string data_dir;
  std::string api_listen;
  std::vector<std::string> nbd_listen;
  std::string link_listen;
  std::string tls_cert, tls_key, tls_ca;
  bool insecure = false;
  std::string api_token;
  std::string server_url;  // "" : no registration, no heartbeats
  std::string enroll_token;
  std::string advertise_host;
  uint64_t throttle_bytes_per_second = 0;
  int64_t retention_interval_ms = 60'000;
  launch::LauncherConfig launcher;  // kind "none" unless [launcher] says otherwise
  std::map<std::string, launch::NetworkSpec> networks;
};

Result<NodeConfig> LoadNodeConfig(const std::string& path);
Result<NodeConfig> ParseNodeConfig(const std::string& text, const std::string& origin,
                                   const std::string& base_dir);

}  // namespace ferry::node
