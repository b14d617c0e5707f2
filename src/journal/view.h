// View: a read-only virtual disk showing a replica's volume as of one recovery point.
//
// Opening a view copies nothing and costs the same whatever the volume's size or the length
// of the journal: blocks are resolved to their record (or the base) when first read, chunk by
// chunk, and the resolutions are cached in the view (bounded, LRU).
// The point stays protected from retention while the view is open.
//
// Thread-safety: Read may be called from several threads at once.
// Errors: kOutOfRange for reads past the volume's end; kDataLoss if a record cannot be read;
// kFailedPrecondition if the replica was committed since the view opened.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "base/status.h"
#include "journal/index.h"

namespace ferry::journal {

class Replica;

// A run of a view's bytes and whether it is known to read as zeros. `hole` means nothing is
// stored for it (it reads as zeros and takes no space); a zero run may also be a hole.
struct ViewExtent {
  uint64_t length = 0;
  bool zero = false;
  bool hole = false;
  bool operator==(const ViewExtent&) const = default;
};

// Per-view cache of resolved chunks, invalidated when the index's positions change.
class ResolvedCache {
 public:
  explicit ResolvedCache(size_t capacity_chunks) : capacity_(capacity_chunks) {}
  // Returns the cached chunk or nullptr. Not thread-safe: the caller holds mu().
  const ResolvedChunk* Find(uint64_t chunk, uint64_t generation);
  ResolvedChunk* Insert(uint64_t chunk, uint64_t generation);
  std::mutex& mu() { return mu_; }

 private:
  struct Slot {
    uint64_t chunk;
    ResolvedChunk data;
  };
  std::mutex mu_;
  size_t capacity_;
  uint64_t generation_ = 0;
  std::list<Slot> lru_;  // front: most recent
  std::unordered_map<uint64_t, std::list<Slot>::iterator> map_;
};

class View {
 public:
  ~View();
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  uint64_t point() const { return point_; }
  uint64_t size() const;
  uint32_t block_size() const;
  // Reads n bytes at offset (any alignment) into dst.
  Status Read(uint64_t offset, size_t n, void* dst);
  // Describes [offset, offset+n) as consecutive extents (for NBD block status and for
  // copies that skip zeros). Conservative: a run may be reported as data yet read as zeros.
  Result<std::vector<ViewExtent>> Extents(uint64_t offset, uint64_t n);

 private:
  friend class Replica;
  // strong: whether the view keeps the replica alive (user views do; an overlay's own view
  // does not, since the replica owns the overlay).
  View(const std::shared_ptr<Replica>& replica, uint64_t point, bool strong);
  std::weak_ptr<Replica> weak_;
  std::shared_ptr<Replica> strong_;
  const uint64_t size_;
  const uint32_t block_size_;
  uint64_t point_;
  ResolvedCache cache_;
};

}  // namespace ferry::journal
