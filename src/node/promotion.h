// Promotion: the steps on disk that turn a committed replica into a capture volume
// (POST /v1/replicas/REPLICA/promote, docs/protocols/node-api.md). The committed overlay's
// plain image becomes the volume's disk, the volume gets a new pending log (so a new volume
// id and history id: its history left the old source's at the failover), and the replica's
// directory goes.
//
// The steps, in this order, and what a crash after each leaves:
//   1. Stage: VOLUMES/.promote-NAME/ gets the new pending log (log/), the known changes
//      (delta.map) and volume.json, which holds the volume's settings and the intent
//      {"replica_id", "image"}.
//        crash → before: Recover removes the staging directory; the replica is untouched,
//        promote can run again.
//   2. Commit point: VOLUMES/.promote-NAME is renamed to VOLUMES/NAME (one rename, synced).
//        crash → after: Recover finishes steps 3 to 5.
//   3. Move: the image is renamed to the volume's disk path (so the same filesystem), and
//      both directories are synced.
//   4. The replica's directory is removed (link::ReplicaStore::Remove renames it aside
//      first, so no half-deleted replica is ever opened).
//   5. volume.json is rewritten without the intent.
// Finish (steps 3 to 5) is idempotent: it redoes what is missing. Recover runs when the node
// starts, before it opens the replicas, so a replica whose image moved out is never opened.
//
// Thread-safety: none; the node runs one promote at a time, and Recover before it serves.
// Errors: the Env's; kFailedPrecondition when another file sits at the disk path while the
// image still exists (move that file away, then retry or restart) and when the image cannot
// be renamed to the disk's directory (another filesystem); kDataLoss when neither the image
// nor the disk exists; kDataLoss for a volume.json that does not parse.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "env/env.h"

namespace ferry::node {

// A promoted volume's known changes (docs/protocols/link.md, "Known changes").
inline constexpr char kDeltaMapFile[] = "delta.map";

struct PromotePlan {
  std::string name;        // the new volume
  std::string image;       // the committed overlay's data.img
  std::string replica_id;  // the replica's volume id, 32 hex digits
  uint64_t size = 0;
  uint32_t block_size = 4096;
  // The volume's volume.json without the intent; its "disk" is where the image goes.
  nlohmann::json settings;
  // The blocks that may differ from the old source's disk (Overlay::DifferingExtents),
  // staged as delta.map (a changed-block map at block granularity) when has_delta.
  bool has_delta = false;
  std::vector<std::pair<uint64_t, uint64_t>> delta_runs;
};

class Promotion {
 public:
  // Deletes a replica's files (and closes its users); Ok also when it is gone already.
  using RemoveReplica = std::function<Status(const std::string& replica_id)>;

  Promotion(Env* env, std::string volumes_root, RemoveReplica remove_replica);

  // Whether renaming a file from from_dir into to_dir works (same filesystem, writable), by
  // renaming a probe file. kFailedPrecondition saying so when it does not.
  Status CheckRename(const std::string& from_dir, const std::string& to_dir) const;

  // Step 1; removes what an earlier attempt left first.
  Status Stage(const PromotePlan& plan);
  // Step 2.
  Status Commit(const std::string& name);
  // Steps 3 to 5 for VOLUMES/NAME; nothing when its volume.json has no intent.
  Status Finish(const std::string& name);
  // The replica id of VOLUMES/NAME's unfinished promotion, or "" (none, or no such volume).
  Result<std::string> Pending(const std::string& name) const;
  // At node start: removes staging directories and finishes every committed promotion.
  Status Recover();

  std::string VolumeDir(const std::string& name) const;
  std::string StagingDir(const std::string& name) const;

 private:
  Result<nlohmann::json> ReadSettings(const std::string& dir) const;

  Env* const env_;
  const std::string root_;
  const RemoveReplica remove_replica_;
};

}  // namespace ferry::node
