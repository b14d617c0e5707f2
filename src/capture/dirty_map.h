// DirtyMap: the blocks of a volume that changed but whose records were dropped from the
// pending log (it outgrew its cap while the target was unreachable). One bit per chunk of
// 64 KiB, persisted in one file (docs/formats/dirty-map.md) with the resync's phase, so a
// restart resumes the resync instead of forgetting changes.
//
// Ordering that keeps it safe: bits are saved before the records they stand for are dropped
// (DropToDirtyMap), and cleared only after the rewritten records are in the log. A crash in
// between resends (safe), never skips.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "env/env.h"

namespace ferry::journal {
class Replica;
}

namespace ferry::capture {

class Splitter;

class DirtyMap {
 public:
  enum class Phase : uint8_t {
    kIdle = 0,       // bits (if any) wait for a resync
    kRewriting = 1,  // the target opened a resync window; bits are being rewritten
    kDone = 2,       // every bit rewritten; the window closes at consistent_from
  };
  static constexpr uint64_t kChunk = 64 * 1024;

  // Loads path, or starts empty (one bit per `chunk` bytes) when it does not exist; a file
  // keeps the chunk size it was written with. A damaged file is kDataLoss (the caller then
  // marks every chunk dirty: a full resync is safe).
  static Result<std::unique_ptr<DirtyMap>> Open(Env* env, const std::string& path, uint64_t volume_size,
                                                uint64_t chunk = kChunk);

  uint64_t chunk() const { return chunk_; }
  void Set(uint64_t offset, uint64_t length);
  // Set for (first block, count) runs of block_size bytes.
  void SetRuns(const std::vector<std::pair<uint64_t, uint64_t>>& block_runs, uint32_t block_size);
  void SetAll();
  // The next dirty run at or after offset, at most max_length bytes (chunk-aligned).
  std::optional<std::pair<uint64_t, uint64_t>> NextDirty(uint64_t offset, uint64_t max_length) const;
  void Clear(uint64_t offset, uint64_t length);
  bool Empty() const;
  uint64_t DirtyBytes() const;

  Phase phase() const;
  uint64_t consistent_from() const;
  void SetPhase(Phase phase, uint64_t consistent_from = 0);

  // Writes the file atomically (temp, sync, rename, sync dir).
  Status Save();
  // Deletes the file (the map in memory stays); Ok when there is none.
  Status Remove();

 private:
  DirtyMap(Env* env, std::string path, uint64_t volume_size, uint64_t chunk);
  Env* env_;
  const std::string path_;
  const uint64_t volume_size_;
  const uint64_t chunk_;
  mutable std::mutex mu_;
  std::vector<uint64_t> bits_;
  uint64_t chunks_;
  Phase phase_ = Phase::kIdle;
  uint64_t consistent_from_ = 0;
};

// Drops the pending log's records up to the disk's checkpoint, first marking the blocks they
// touched in the map (saved before anything is dropped). Records the target already holds
// (seq <= acked) need no bits. Returns the bytes the log held before.
Result<uint64_t> DropToDirtyMap(Splitter& splitter, journal::Replica& log, DirtyMap& map,
                                uint64_t acked);

}  // namespace ferry::capture
