// ReplicaStore: the replicas a target node keeps, one directory each under a root
// (ROOT/<volume id hex>/), opened once and shared by the link receiver and the node's views.
// Implements ReplicaDirectory: a HELLO for an unknown volume creates its replica (same volume
// id and history id, journal continuing the source's numbering, initial sync pending). A HELLO
// that names a retention (how long the protection keeps recovery points) records it beside
// the replica (file RETENTION), where the node's retention pass reads it.
//
// Thread-safety: all methods may be called from any thread.
// Errors: ReplicaFor returns kFailedPrecondition "history …" when the replica has another
// history id, "volume …" when size or block size differ.
//
// Removal renames a replica's directory to ROOT/.deleted-<id> before deleting it, so a crash
// part way never leaves a half-deleted replica for OpenAll (which finishes such deletions).
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
  struct Entry {
    std::string name;
    std::string volume_id;
    std::shared_ptr<journal::Replica> replica;
    int64_t retention_seconds = 0;  // as the source's last HELLO said; 0: never said
  };
  // By volume name (as the source named it) or volume id hex.
  Result<Entry> FindEntry(const std::string& name_or_id) const;
  Result<std::shared_ptr<journal::Replica>> Find(const std::string& name_or_id) const;
  std::vector<Entry> List() const;
  std::string root() const { return root_; }
  // Forgets the replica of this volume id (hex) and deletes its directory. Whoever still holds
  // the Replica keeps an object whose files are gone (appends land nowhere), so close its
  // users first where that matters. A HELLO for the volume afterwards creates a fresh replica.
  // Works also before OpenAll and on a directory that is no longer open; kNotFound when
  // there is neither an open replica nor a directory.
  Status Remove(const std::string& volume_id);

  // The seed's known changes, kept in a seeded replica's directory (file SEED-CHANGES) until
  // its initial sync is done; none when there is no file. A damaged file reads as none (the
  // source then compares digests: slower, never wrong) and is logged.
  static Status WriteSeedChanges(Env* env, const std::string& replica_dir, const SeedChanges& changes);
  static std::optional<SeedChanges> ReadSeedChanges(Env* env, const std::string& replica_dir);
  // Once the initial sync is done (best effort: a file left behind is never read again).
  static void RemoveSeedChanges(Env* env, const std::string& replica_dir);

 private:
  const std::string root_;
  const journal::ReplicaOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> by_id_;
};

}  // namespace ferry::link
