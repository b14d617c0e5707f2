#include "journal/index.h"

#include <algorithm>
#include <cassert>

namespace ferry::journal {

void Index::Add(const IndexEntry& e) {
  assert(entries_.empty() || e.seq() > entries_.back().seq());
  uint32_t pos = static_cast<uint32_t>(entries_.size());
  entries_.push_back(e);
  if (e.nblocks == 0) return;
  uint64_t first = e.block() / kChunkBlocks;
  uint64_t last = (e.block() + e.nblocks - 1) / kChunkBlocks;
  for (uint64_t c = first; c <= last; ++c) chunks_[c].push_back(pos);
}

size_t Index::VisibleLimit(uint64_t point) const {
  auto it = std::upper_bound(entries_.begin(), entries_.end(), point,
                             [](uint64_t p, const IndexEntry& e) { return p < e.seq(); });
  return static_cast<size_t>(it - entries_.begin());
}

int64_t Index::FindSeq(uint64_t seq) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), seq,
                             [](const IndexEntry& e, uint64_t s) { return e.seq() < s; });
  if (it == entries_.end() || it->seq() != seq) return -1;
  return it - entries_.begin();
}

uint64_t Index::SeqAtTime(int64_t t) const {
  auto it = std::upper_bound(entries_.begin(), entries_.end(), t,
                             [](int64_t v, const IndexEntry& e) { return v < e.timestamp_ns(); });
  if (it == entries_.begin()) return 0;
  return std::prev(it)->seq();
}

void Index::ResolveChunk(uint64_t chunk, size_t limit, ResolvedChunk* out) const {
  std::fill(std::begin(out->slot), std::end(out->slot), kNoRecord);
  auto found = chunks_.find(chunk);
  if (found == chunks_.end()) return;
  const std::vector<uint32_t>& list = found->second;
  auto end = std::lower_bound(list.begin(), list.end(), static_cast<uint32_t>(std::min<size_t>(limit, UINT32_MAX)));
  const uint64_t chunk_first = chunk * kChunkBlocks;
  uint32_t unresolved = kChunkBlocks;
  for (auto it = end; it != list.begin() && unresolved > 0;) {
    --it;
    const IndexEntry& e = entries_[*it];
    uint64_t lo = std::max(e.block(), chunk_first);
    uint64_t hi = std::min(e.block() + e.nblocks, chunk_first + kChunkBlocks);
    for (uint64_t b = lo; b < hi; ++b) {
      uint32_t& s = out->slot[b - chunk_first];
      if (s == kNoRecord) {
        s = *it + 1;
        --unresolved;
      }
    }
  }
}

std::vector<uint64_t> Index::TouchedChunks(size_t limit) const {
  std::vector<uint64_t> out;
  for (const auto& [chunk, list] : chunks_) {
    if (!list.empty() && list.front() < limit) out.push_back(chunk);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<bool> Index::FindSuperseded(const std::vector<uint64_t>& kept,
                                        uint64_t below) const {
  std::vector<bool> needed(entries_.size(), false);
  std::vector<bool> candidate(entries_.size(), false);
  for (size_t i = 0; i < entries_.size(); ++i) {
    candidate[i] = entries_[i].seq() < below && entries_[i].nblocks > 0;
  }
  uint64_t next_version[kChunkBlocks];
  for (const auto& [chunk, list] : chunks_) {
    std::fill(std::begin(next_version), std::end(next_version), UINT64_MAX);
    const uint64_t chunk_first = chunk * kChunkBlocks;
    for (auto it = list.rbegin(); it != list.rend(); ++it) {
      const IndexEntry& e = entries_[*it];
      uint64_t lo = std::max(e.block(), chunk_first);
      uint64_t hi = std::min(e.block() + e.nblocks, chunk_first + kChunkBlocks);
      if (candidate[*it] && !needed[*it]) {
        auto k = std::lower_bound(kept.begin(), kept.end(), e.seq());
        uint64_t next_kept = k == kept.end() ? UINT64_MAX : *k;
        for (uint64_t b = lo; b < hi; ++b) {
          if (next_version[b - chunk_first] > next_kept) {
            needed[*it] = true;
            break;
          }
        }
      }
      for (uint64_t b = lo; b < hi; ++b) next_version[b - chunk_first] = e.seq();
    }
  }
  std::vector<bool> superseded(entries_.size(), false);
  for (size_t i = 0; i < entries_.size(); ++i) superseded[i] = candidate[i] && !needed[i];
  return superseded;
}

void Index::Retain(const std::vector<bool>& keep) {
  assert(keep.size() == entries_.size());
  std::vector<uint32_t> remap(entries_.size(), UINT32_MAX);
  std::vector<IndexEntry> kept;
  kept.reserve(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (keep[i]) {
      remap[i] = static_cast<uint32_t>(kept.size());
      kept.push_back(entries_[i]);
    }
  }
  entries_ = std::move(kept);
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    std::vector<uint32_t>& list = it->second;
    size_t w = 0;
    for (uint32_t p : list) {
      if (remap[p] != UINT32_MAX) list[w++] = remap[p];
    }
    list.resize(w);
    if (list.empty()) {
      it = chunks_.erase(it);
    } else {
      list.shrink_to_fit();
      ++it;
    }
  }
  ++generation_;
}

void Index::RemovePrefix(size_t n) {
  std::vector<bool> keep(entries_.size(), true);
  for (size_t i = 0; i < n && i < keep.size(); ++i) keep[i] = false;
  Retain(keep);
}

size_t Index::MemoryBytes() const {
  size_t bytes = entries_.capacity() * sizeof(IndexEntry);
  // unordered_map node: key + vector + next pointer + cached hash, plus a bucket pointer.
  bytes += chunks_.size() * (sizeof(uint64_t) + sizeof(std::vector<uint32_t>) + 2 * sizeof(void*));
  bytes += chunks_.bucket_count() * sizeof(void*);
  for (const auto& [chunk, list] : chunks_) bytes += list.capacity() * sizeof(uint32_t);
  return bytes;
}

}  // namespace ferry::journal
