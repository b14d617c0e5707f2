// SimEnv: an in-memory, deterministic Env that loses what was not made durable, for crash
// tests. It enforces the durability contract of env.h to the letter, so code that forgets a
// Sync or a SyncDir loses data here even where a real filesystem would have been lenient.
//
// Model:
//   - A file is an inode holding its current bytes and its durable bytes, plus the ordered
//     list of writes, truncates and hole punches made since its last File::Sync. Sync makes
//     the current bytes durable.
//   - The namespace (path -> inode) changes at once on create, rename and remove; each change
//     is logged in order and becomes durable when SyncDir is called on the directory holding
//     the entry. A Rename is one atomic change made durable by SyncDir of the destination's
//     directory (the source's removal included, even across directories).
//   - Directories are a set of path strings. CreateDir and RemoveDir are durable at once (a
//     simplification: a real filesystem also wants SyncDir of the parent). A file's parent
//     directory must exist. Paths are used as given, except trailing '/' is ignored; "." and
//     "/" always exist. Renaming a directory is not supported (kIoError).
//   - Crash(seed) is a power loss: every inode keeps its durable bytes plus a seeded random
//     in-order prefix of its unsynced operations, the last of which, if a write, may be torn
//     (a random prefix of its bytes); the namespace keeps its durable entries plus a random
//     in-order prefix of its unsynced changes. CrashDropAll() keeps exactly the durable state.
//     After either, every File opened before returns kAborted from every method; reopen.
//   - Space: the sum of the sizes of all named files must stay <= capacity (default 1 TiB).
//     Punched holes still count. A removed file's space is freed at once, even while open.
//   - Files are sparse, in 4 KiB blocks: a block never written, or wholly punched or cut off
//     by Truncate, is a hole and takes no memory. NextData(offset) returns the start of the
//     first non-hole block at or after offset (or offset itself if inside one), else Size().
//   - Nothing depends on the wall clock or on hash order: the same calls and seeds give the
//     same results.
//
// Fault injection (settings survive Crash):
//   - SetCapacity(bytes): a write, WriteAtV or growing Truncate that would exceed it returns
//     kResourceExhausted and changes nothing.
//   - FailAfter(n): after n more mutating calls succeed in passing this gate, every mutating
//     call returns kIoError("injected I/O error") and changes nothing, until FailAfter(-1).
//     Mutating calls: WriteAt, WriteAtV, Truncate, PunchHole, File::Sync, OpenFile with
//     kCreate or kCreateNew, CreateDir, RemoveFile, RemoveDir, Rename, SyncDir.
//
// Errors, beyond those of env.h: kAborted ("simulated crash: reopen") from a File opened
// before the last crash; kIoError for injected faults, writes through a kRead handle,
// opening a directory as a file, removing a non-empty directory and other misuse the OS
// would refuse.
//
// Thread-safety: all methods may be called concurrently; one mutex serialises them. Files
// hold a pointer to their SimEnv, which must outlive them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "env/env.h"

namespace ferry {

class SimEnv final : public Env {
 public:
  SimEnv();
  ~SimEnv() override;
  SimEnv(const SimEnv&) = delete;
  SimEnv& operator=(const SimEnv&) = delete;

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override;
  Status CreateDir(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  Status RemoveFile(const std::string& path) override;
  Status RemoveDir(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Result<SpaceInfo> GetSpace(const std::string& path) override;
  // Locks live in memory; a crash releases them all (the process that held them died).
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;

  // Power loss keeping a seeded random part of what was not durable (see above).
  void Crash(uint64_t seed);
  // Power loss keeping exactly the durable state.
  void CrashDropAll();

  static constexpr uint64_t kDefaultCapacity = uint64_t{1} << 40;
  void SetCapacity(uint64_t bytes);
  // n >= 0: the next n mutating calls pass, later ones fail; n < 0: no injected failures.
  void FailAfter(int64_t ops);
  // Successful File::Sync calls so far (SyncDir not included).
  uint64_t sync_count();

 private:
  class SimFile;
  struct Inode;
  struct NamespaceOp;

  // The helpers below run with mu_ held.
  Status Gate();  // fault injection: counts one mutating call
  bool IsDir(const std::string& path) const;
  bool HasChildren(const std::string& dir) const;
  void Unname(Inode& inode);  // the inode lost its name: its bytes no longer count as used
  void ApplyCrash(uint64_t seed, bool keep_nothing);

  std::mutex mu_;
  std::shared_ptr<std::set<std::string>> locks_ = std::make_shared<std::set<std::string>>();
  friend class SimFileLock;
  std::map<std::string, std::shared_ptr<Inode>> files_;          // current namespace
  // The durable namespace is durable_files_ with the synced ops of ns_log_ applied; ns_log_
  // holds the changes since the oldest unsynced one, in order.
  std::map<std::string, std::shared_ptr<Inode>> durable_files_;
  std::vector<NamespaceOp> ns_log_;
  std::set<std::string> dirs_;
  uint64_t generation_ = 0;  // bumped by each crash; Files remember theirs
  uint64_t capacity_ = kDefaultCapacity;
  uint64_t used_ = 0;  // sum of the current sizes of named files
  int64_t fail_after_ = -1;
  uint64_t sync_count_ = 0;
};

}  // namespace ferry
