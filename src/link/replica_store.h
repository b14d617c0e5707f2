// ReplicaStore: the replicas a target node keeps, one directory each under a root
// (ROOT/<volume id hex>/), opened once and shared by the link receiver and the node's views.
// Implements ReplicaDirectory: a HELLO for an unknown volume creates its replica (same volume
// id and history id, journal continuing the source's numbering, initial sync pending).
//
// Thread-safety: all methods may be called from any thread.
// Errors: ReplicaFor returns kFailedPrecondition "history …" when the replica has another
// history id, "volume …" when size or block size differ.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "journal/replica.h"
#include "link/receiver.h"

namespace ferry::link {

class ReplicaStore final : public ReplicaDirectory {
 public:
  ReplicaStore(std::string root, journal::ReplicaOptions options = {});
  // Opens every replica under the root (after a restart).
  Status OpenAll();

  Result<std::shared_ptr<journal::Replica>> ReplicaFor(const Hello& hello) override;
  // Creates the replica a source will fill before it connects, with its base seeded from a
  // local file holding an older version of the volume (reprotect, failback): the initial
  // sync then sends only the blocks that differ. first_seq: the source's next seq.
  Result<std::shared_ptr<journal::Replica>> Prepare(const std::string& name,
                                                    const journal::CreateParams& params);
  // By volume name (as the source named it) or volume id hex.
  Result<std::shared_ptr<journal::Replica>> Find(const std::string& name_or_id) const;
  struct Entry {
    std::string name;
    std::string volume_id;
    std::shared_ptr<journal::Replica> replica;
  };
  std::vector<Entry> List() const;

 private:
  const std::string root_;
  const journal::ReplicaOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> by_id_;
};

}  // namespace ferry::link
