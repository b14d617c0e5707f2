#include "journal/view.h"

#include "journal/replica.h"

namespace ferry::journal {

const ResolvedChunk* ResolvedCache::Find(uint64_t chunk, uint64_t generation) {
  if (generation != generation_) {
    lru_.clear();
    map_.clear();
    generation_ = generation;
    return nullptr;
  }
  auto it = map_.find(chunk);
  if (it == map_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return &it->second->data;
}

ResolvedChunk* ResolvedCache::Insert(uint64_t chunk, uint64_t generation) {
  if (generation != generation_) {
    lru_.clear();
    map_.clear();
    generation_ = generation;
  }
  if (lru_.size() >= capacity_) {
    map_.erase(lru_.back().chunk);
    lru_.pop_back();
  }
  lru_.push_front(Slot{chunk, {}});
  map_[chunk] = lru_.begin();
  return &lru_.front().data;
}

// 4096 chunks = 4 MiB of resolutions cover 4 GiB of a volume with 4 KiB blocks.
View::View(const std::shared_ptr<Replica>& replica, uint64_t point, bool strong)
    : weak_(replica),
      strong_(strong ? replica : nullptr),
      size_(replica->size()),
      block_size_(replica->block_size()),
      point_(point),
      cache_(4096) {}

View::~View() {
  if (auto r = weak_.lock()) r->ReleaseViewPoint(point_);
}

uint64_t View::size() const { return size_; }
uint32_t View::block_size() const { return block_size_; }

Status View::Read(uint64_t offset, size_t n, void* dst) {
  auto r = weak_.lock();
  if (!r) return FailedPrecondition("the replica of this view was closed");
  return r->ReadAsOf(point_, &cache_, offset, n, dst);
}

Result<std::vector<ViewExtent>> View::Extents(uint64_t offset, uint64_t n) {
  auto r = weak_.lock();
  if (!r) return FailedPrecondition("the replica of this view was closed");
  std::vector<ViewExtent> out;
  RETURN_IF_ERROR(r->ExtentsAsOf(point_, &cache_, offset, n, &out));
  return out;
}

}  // namespace ferry::journal
