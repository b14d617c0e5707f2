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
// Persistence: DATA/volumes/NAME/volume.json (disk path, link settings, fencing, aliases;
// rewritten atomically), DATA/volumes/NAME/log/ (pending log), DATA/replicas/VOLUME_ID/
// (replicas); DATA/machines/NAME/ (node/machines.h); DATA/server.json is the server client's (node/server_client.h). A restart
// finishes an interrupted promote (node/promotion.h), reopens all of them and restarts the
// links that were running.
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
#include "node/events.h"
#include "node/machines.h"

namespace ferry::node {

using nlohmann::json;

// A replica whose source never said how long to keep its points keeps them this long.
inline constexpr int64_t kDefaultRetentionSeconds = 24 * 3600;
inline constexpr int64_t kMaxRetentionSeconds = 10ll * 366 * 24 * 3600;
// The window a target applies to a replica: what its source said, else the default.
inline int64_t RetentionWindowSeconds(const link::ReplicaStore::Entry& e) {
  return e.retention_seconds > 0 ? e.retention_seconds : kDefaultRetentionSeconds;
}

struct ProtectParams {
  std::string target;  // the target node's link address, HOST:PORT
  uint64_t bytes_per_second = 0;
  int64_t marker_interval_ms = 5000;  // crash-consistent markers; 1000 at least
  // "async", or "sync": a write is answered only once the target holds it (RPO 0); a target
  // that does not answer within sync_timeout_ms turns the link asynchronous (an event) until
  // it has caught up again.
  std::string mode = "async";
  int64_t sync_timeout_ms = 2000;
  // App-consistent markers: freeze command, marker, thaw command (each bounded by
  // hook_timeout_ms; thaw runs even when freeze failed). app_interval_ms 0: only on request.
  std::string freeze_command;
  std::string thaw_command;
  int64_t hook_timeout_ms = 10'000;
  int64_t app_interval_ms = 0;
  // When the pending log holds more than this (the target unreachable for long), its records
  // are dropped to a changed-block map and resynced when the link is back.
  uint64_t pending_cap_bytes = 4ull << 30;
  // What the link compresses with (docs/decisions/0003): "zstd" for WAN links (the default),
  // "lz4", or "none" for links faster than the compression (a LAN above about 6 Gbit/s).
  std::string compression = "zstd";
  // How long the target keeps recovery points (sent in the link's HELLO; the target merges
  // older history into its base and thins older markers, docs/protocols/node-api.md,
  // "Retention"). The control plane sends its policy's retention_hours.
  int64_t retention_seconds = kDefaultRetentionSeconds;
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
  // The export the NBD server serves under this name ("VOLUME", "REPLICA@POINT",
  // "REPLICA/overlay/NAME"), for users in the same process.
  Result<std::shared_ptr<nbd::Export>> Export(const std::string& name);
  // capture: "splitter" (writes go through the node's NBD export) or "scan" (the disk is read
  // and compared every scan_interval_ms; for disks that cannot go through the splitter).
  Result<json> AddVolume(const std::string& name, const std::string& disk, uint64_t create_size,
                         const std::string& capture = "splitter", int64_t scan_interval_ms = 60'000);
  // Scan volumes: run a cycle now (freeze/thaw hooks of the protection, if any).
  Result<json> Scan(const std::string& name);
  Status RemoveVolume(const std::string& name);
  Result<json> Protect(const std::string& name, const ProtectParams& p);
  Status LinkAction(const std::string& name, const std::string& action);  // pause|resume|stop
  Status SetLinkRate(const std::string& name, uint64_t bytes_per_second);
  // Verify (link.md, "Verify"): compare the disk with the target's newest state and resync
  // the blocks that differ. Asking again with the same id returns that verify's status.
  Result<json> VerifyLink(const std::string& name, const std::string& id);
  Status CancelVerify(const std::string& name);
  void SetNodeRate(uint64_t bytes_per_second);
  // kind "app-consistent" runs the volume's freeze and thaw hooks around the marker.
  Result<json> Mark(const std::string& name, const std::string& kind, const std::string& label);
  // Fencing a splitter volume (the control plane shuts its source down): every later write,
  // zero and trim fails (NBD EPERM), reads work; then a crash-consistent marker labelled
  // "fence" follows every write answered. Returns {"volume", "seq"}; again when already
  // fenced, with a new marker. kFailedPrecondition for scan volumes. Persisted.
  Result<json> Fence(const std::string& name);
  Status Unfence(const std::string& name);

  // Consistency-group barrier over some of this node's volumes: Hold stops answering their
  // writes (they are still captured), Mark appends the same group-consistent marker to each,
  // Release answers again. A hold not released within timeout_ms is released by the node
  // (an event says so) and can no longer be marked. app_consistent: the volumes' freeze hooks
  // run before the hold (a failure thaws what was frozen and fails with the hook's error),
  // their thaw hooks at release or expiry; kAborted while one of them is taking an
  // app-consistent marker of its own.
  Result<json> BarrierHold(const std::vector<std::string>& volumes, int64_t timeout_ms,
                           bool app_consistent = false);
  Result<json> BarrierMark(const std::string& id, const std::string& marker_id,
                           const std::string& group_id, const std::string& label);
  Status BarrierRelease(const std::string& id);
  json Events(uint64_t after);
  // The recovered machines this node's launcher runs (node/machines.h).
  Machines& machines() { return *machines_; }
  // Adds an event (for the node's other parts, e.g. the server client); volume may be "".
  void AddEvent(const std::string& severity, const std::string& volume, const std::string& message) {
    events_.Add(severity, volume, message);
  }

  // Creates a replica a source will fill, its base seeded from a local file holding an older
  // version of the volume (reprotect, failback): only differing blocks travel. seed_volume:
  // a capture volume of this node whose disk is the seed; it is fenced, what it wrote is kept
  // as the seed's known changes, and it is removed once the replica exists.
  Result<json> PrepareReplica(const std::string& name, const std::string& volume_id,
                              const std::string& history_id, uint64_t size, uint32_t block_size,
                              uint64_t first_seq, const std::string& seed,
                              const std::string& seed_volume = "");
  Result<json> ListPoints(const std::string& replica, const std::string& kind, size_t limit,
                          uint64_t before_seq);
  Result<json> OpenView(const std::string& replica, const std::string& point);
  Result<json> CreateOverlay(const std::string& replica, const std::string& overlay,
                             const std::string& point);
  Status DiscardOverlay(const std::string& replica, const std::string& overlay);
  Status CommitOverlay(const std::string& replica, const std::string& overlay);
  // Reprotect after a failover: the replica's committed overlay image becomes the disk of a
  // new splitter volume `volume` (new volume and history ids), moved to `disk` ("" is
  // DATA/volumes/NAME/disk.img; same filesystem), and the replica is removed. The overlay's
  // NBD name stays an alias of the volume, and its connected sessions continue on the
  // volume's splitter. Crash-safe and idempotent (node/promotion.h). Returns the volume's
  // status object. Errors: kNotFound (no replica), kFailedPrecondition (commit not done; disk
  // on another filesystem), kAlreadyExists (name or disk taken; replica promoted already),
  // kInvalidArgument (bad name or path).
  Result<json> Promote(const std::string& replica, const std::string& volume, const std::string& disk);
  // Removes a replica and its files and closes its source's link. Without force,
  // kFailedPrecondition while overlays are active or committing (named); with force they go
  // too (their sessions get errors). A source that connects later gets a fresh replica.
  Status DeleteReplica(const std::string& replica, bool force);
  // Applies the replica's retention now (the node also does it every
  // config.retention_interval_ms): history older than the window its source asked for is
  // merged into the base, older markers thinned; points pinned by overlays and open views
  // stay. Returns what it did. kNotFound (no replica), kFailedPrecondition (committed).
  Result<json> ApplyRetention(const std::string& replica);

 private:
  struct Volume;
  class Catalog;
  explicit Node(NodeConfig config);
  Status Open();
  Status OpenVolume(const std::string& name);
  Status StoreVolume(const Volume& v);
  Status StartLink(Volume& v);
  Result<std::shared_ptr<Volume>> FindVolume(const std::string& name);
  // The volume that has this NBD alias, or null.
  std::shared_ptr<Volume> FindVolumeByAlias(const std::string& name);
  // The volume's volume.json.
  static json VolumeSettings(const Volume& v);
  // Removes a replica's files and closes its inbound link (promote, DeleteReplica, start).
  Status RemoveReplicaFiles(const std::string& volume_id);
  void MarkerLoop();
  void RetentionLoop();
  // One replica's retention pass; records its outcome for the status (and an event when the
  // outcome turns to or from an error).
  Result<journal::RetentionReport> RunRetention(const link::ReplicaStore::Entry& e);
  Result<uint64_t> AppConsistentMarker(const std::shared_ptr<Volume>& v, const std::string& label);
  // A thaw hook to run after a freeze (app-consistent markers and barriers share them).
  struct HookRun {
    std::string volume, command;
    std::map<std::string, std::string> env;
    int64_t timeout_ms = 0;
  };
  // Runs the freeze hooks of volumes, each distinct command once; returns their thaw hooks.
  Result<std::vector<HookRun>> Freeze(const std::vector<std::shared_ptr<Volume>>& volumes);
  void Thaw(const std::vector<HookRun>& thaws);
  Result<json> RunScan(const std::shared_ptr<Volume>& v);
  struct Barrier;
  // Releases the barriers past their deadline (mu_ held); returns them for EndBarrier.
  std::vector<Barrier> ExpireBarriers(int64_t now);
  // Thaws a released barrier's volumes (without mu_).
  void EndBarrier(Barrier& b);
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
  std::thread retention_thread_;
  // The last retention pass of each replica (by volume id).
  struct RetentionRun {
    int64_t time_ns = 0;
    journal::RetentionReport report;
    std::string error;  // "" when it worked
  };
  std::mutex retention_mu_;
  std::map<std::string, RetentionRun> retention_runs_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Volume>> volumes_;
  std::list<std::thread> link_conns_;
  EventLog events_;
  struct Barrier {
    std::vector<std::shared_ptr<Volume>> volumes;
    int64_t deadline_ns = 0;
    bool marked = false;
    bool app_consistent = false;  // its volumes are frozen (app_running) until EndBarrier
    std::vector<HookRun> thaws;
  };
  std::map<std::string, Barrier> barriers_;
  uint64_t next_barrier_ = 1;
  std::mutex promote_mu_;  // one promote (or replica removal) at a time
  std::unique_ptr<Machines> machines_;
};

}  // namespace ferry::node
