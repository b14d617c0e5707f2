// Node: the `ferry node` daemon's core. It wires the engine, the NBD exports and the links:
//   - source role: capture volumes (a disk behind a write splitter and its pending log),
//     served over NBD by name, each optionally protected by a link toward a target node,
//     with a crash-consistent marker every marker interval;
//   - target role: the replicas that source nodes' links fill (ReplicaStore), served over
//     NBD as recovery points ("NAME@POINT") and overlays ("NAME/overlay/OVERLAY").
// Commands arrive through the HTTP command interface (node/api.h,
// docs/protocols/node-api.md); this class is what they call. Results are JSON objects, the
// same the interface returns.
//
// Persistence: DATA/volumes/NAME/volume.json (disk path and link settings; rewritten
// atomically), DATA/volumes/NAME/log/ (pending log), DATA/replicas/VOLUME_ID/ (replicas).
// A restart reopens all of them and restarts the links that were running.
//
// Thread-safety: every public method may be called from any thread.
// Errors: kNotFound (no such volume/replica/overlay), kAlreadyExists, kInvalidArgument (bad
// parameters, the message names the field), kFailedPrecondition (the state forbids it; the
// message says what to do first), and the engine's errors.
#pragma once

#include <atomic>
#include <condition_variable>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "capture/splitter.h"
#include "env/socket.h"
#include "journal/replica.h"
#include "link/receiver.h"
#include "link/replica_store.h"
#include "link/sender.h"
#include "link/throttle.h"
#include "link/tls.h"
#include "nbd/server.h"
#include "node/config.h"

namespace ferry::node {

using nlohmann::json;

struct ProtectParams {
  std::string target;  // the target node's link address, HOST:PORT
  uint64_t bytes_per_second = 0;
  int64_t marker_interval_ms = 5000;  // crash-consistent markers; 1000 at least
};

class Node {
 public:
  // Opens the data directory (volumes, replicas) and starts links and listeners.
  static Result<std::unique_ptr<Node>> Start(const NodeConfig& config);
  ~Node();
  void Stop();

  const NodeConfig& config() const { return config_; }
  // The addresses actually bound (port 0 in the config picks one).
  std::vector<std::string> nbd_addresses() const;
  std::string link_address() const;

  json StatusJson();
  Result<json> AddVolume(const std::string& name, const std::string& disk, uint64_t create_size);
  Status RemoveVolume(const std::string& name);
  Result<json> Protect(const std::string& name, const ProtectParams& p);
  Status LinkAction(const std::string& name, const std::string& action);  // pause|resume|stop
  Status SetLinkRate(const std::string& name, uint64_t bytes_per_second);
  void SetNodeRate(uint64_t bytes_per_second);
  Result<json> Mark(const std::string& name, const std::string& kind, const std::string& label);

  Result<json> ListPoints(const std::string& replica, const std::string& kind, size_t limit,
                          uint64_t before_seq);
  Result<json> OpenView(const std::string& replica, const std::string& point);
  Result<json> CreateOverlay(const std::string& replica, const std::string& overlay,
                             const std::string& point);
  Status DiscardOverlay(const std::string& replica, const std::string& overlay);
  Status CommitOverlay(const std::string& replica, const std::string& overlay);

 private:
  struct Volume;
  class Catalog;
  explicit Node(NodeConfig config);
  Status Open();
  Status OpenVolume(const std::string& name);
  Status StoreVolume(const Volume& v);
  Status StartLink(Volume& v);
  Result<std::shared_ptr<Volume>> FindVolume(const std::string& name);
  void MarkerLoop();
  void AcceptLinks();
  std::string ExportUri(const std::string& export_name) const;
  json VolumeJson(Volume& v, int64_t now);
  json ReplicaJson(const link::ReplicaStore::Entry& e, int64_t now);

  const NodeConfig config_;
  std::shared_ptr<TlsContext> tls_server_, tls_client_;
  Throttle node_throttle_;
  link::ReplicaStore replicas_;
  link::LinkReceiver receiver_;
  std::shared_ptr<Catalog> catalog_;
  std::unique_ptr<nbd::Server> nbd_;
  std::vector<std::string> nbd_addresses_;
  std::unique_ptr<Listener> link_listener_;
  std::thread link_accept_;
  std::thread marker_thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Volume>> volumes_;
  std::list<std::thread> link_conns_;
};

}  // namespace ferry::node
