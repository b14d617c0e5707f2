// The parts of Node that its .cc files share (node.cc: volumes, links, scans, the periodic
// work; node_markers.cc: markers, barriers, fencing; node_catalog.cc: NBD names;
// node_status.cc: the status JSON; node_replicas.cc: replica commands, promote, removal).
// Not an interface: only Node's files include it.
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "capture/dirty_map.h"
#include "capture/scan_capture.h"
#include "nbd/forwarding_export.h"
#include "nbd/replica_exports.h"
#include "node/node.h"

namespace ferry::node {

// Volume and replica names: 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'.
bool ValidName(const std::string& n);

// A link's verify as JSON (status and POST .../link/resync).
json VerifyJson(const link::VerifyStatus& v);

inline double Percent(uint64_t done, uint64_t total) {
  return total ? std::min(100.0, 100.0 * static_cast<double>(done) / static_cast<double>(total)) : 0;
}

// A capture volume. Fields other than the immutable ones (name, disk, capture, log, splitter,
// scan, dirty) are guarded by Node::mu_.
struct Node::Volume {
  std::string name;
  std::string disk;
  std::string capture = "splitter";  // or "scan"
  int64_t scan_interval_ms = 60'000;
  std::shared_ptr<capture::ScanCapture> scan;
  std::mutex scan_mu;  // one cycle at a time
  int64_t last_scan_ns = 0;
  bool scan_due_running = false;
  std::atomic<bool> reset_pending{false};
  std::atomic<uint64_t> full_cycle_marker{0};
  json last_scan = nullptr;
  std::shared_ptr<journal::Replica> log;
  std::shared_ptr<capture::Splitter> splitter;
  std::shared_ptr<capture::DirtyMap> dirty;
  // A promoted volume's known changes since it diverged from the old source (delta.map),
  // and {"volume_id", "history_id", "through"} of that divergence; null when none.
  std::shared_ptr<capture::DirtyMap> delta;
  json diverged = nullptr;
  // The newest seq the target had acknowledged when the link was last stopped (0: none).
  uint64_t acked_at_stop = 0;
  bool dropping = false;
  bool protect = false;
  ProtectParams params;
  std::string link_state = "none";  // none | running | paused | stopped
  std::shared_ptr<link::LinkSender> sender;
  int64_t last_marker_ns = 0;
  int64_t last_app_ns = 0;
  bool app_running = false;
  std::shared_ptr<std::atomic<bool>> sync_active = std::make_shared<std::atomic<bool>>(false);
  std::string last_state;
  std::string verify_reported;  // the id of the last verify whose outcome became an event
  // Churn sampling (marker thread).
  int64_t sample_ns = 0;
  uint64_t sample_bytes = 0;
  double churn = 0;
  // Fenced: the splitter refuses writes (persisted, so a restart keeps it fenced).
  bool fenced = false;
  // Other NBD names of this volume's export: a promoted overlay's "REPLICA/overlay/NAME",
  // under the replica's name and its volume id.
  std::vector<std::string> aliases;
  // {"replica", "volume_id", "overlay"} of the replica it was promoted from, or null.
  json promoted_from = nullptr;
};

// NBD names: "VOLUME" (a capture volume's splitter), the aliases of promoted volumes,
// "REPLICA@POINT" and "REPLICA/overlay/NAME" (a replica's recovery point or overlay).
// Every session of one overlay shares one ForwardingExport, so that promote can switch them
// all to the new volume's splitter.
class Node::Catalog final : public nbd::ExportCatalog {
 public:
  explicit Catalog(Node* node) : node_(node) {}
  Result<std::shared_ptr<nbd::Export>> Find(const std::string& name) override;
  std::vector<std::pair<std::string, std::string>> List() override;

  // The export that the sessions of this overlay share (made now when none holds one).
  Result<std::shared_ptr<nbd::ForwardingExport>> OverlayExport(
      const std::shared_ptr<journal::Replica>& replica, const std::string& overlay);
  // While a promote runs, these names resolve to its held overlay export, so that sessions
  // connecting then wait like the others and land on the volume; EndAliases forgets them
  // (the volume's own aliases answer from then on).
  void BeginAliases(const std::vector<std::string>& names, std::shared_ptr<nbd::ForwardingExport> e);
  void EndAliases(const std::vector<std::string>& names);
  // The replica is gone: forget its cached exports, and make the sessions of its overlays
  // fail (all but `keep`, which a promote has switched to a volume).
  void ForgetReplica(const std::string& volume_id, const nbd::Export* keep);

 private:
  struct SharedOverlay {
    std::weak_ptr<nbd::ForwardingExport> export_;
    std::weak_ptr<journal::Overlay> overlay;  // a new overlay of the same name gets a new export
  };
  Node* node_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<nbd::ReplicaCatalog>> catalogs_;  // by volume id
  std::map<std::string, SharedOverlay> overlays_;                          // "ID/overlay/NAME"
  std::map<std::string, std::shared_ptr<nbd::ForwardingExport>> pending_;   // promote running
};

}  // namespace ferry::node
