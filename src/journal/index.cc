#include "journal/index.h"

#include <algorithm>
#include <cassert>
#include <cstdlib>

namespace ferry::journal {

void EntryPages::push_back(const IndexEntry& e) {
  if (size_ % kPageEntries == 0) {
    pages_.push_back(std::unique_ptr<IndexEntry[]>(new IndexEntry[kPageEntries]));
  }
  (*this)[size_++] = e;
}

ChunkLists::~ChunkLists() {
  for (List& l : slots_) std::free(l.data);
}

static uint64_t HashChunk(uint64_t c) {
  c ^= c >> 33;
  c *= 0xff51afd7ed558ccdull;
  c ^= c >> 33;
  return c;
}

ChunkLists::List* ChunkLists::Slot(uint64_t chunk) {
  const size_t mask = slots_.size() - 1;
  for (size_t i = HashChunk(chunk) & mask;; i = (i + 1) & mask) {
    List& l = slots_[i];
    if (!l.data || l.chunk == chunk) return &l;
  }
}

const ChunkLists::List* ChunkLists::Find(uint64_t chunk) const {
  if (slots_.empty()) return nullptr;
  const size_t mask = slots_.size() - 1;
  for (size_t i = HashChunk(chunk) & mask;; i = (i + 1) & mask) {
    const List& l = slots_[i];
    if (!l.data) return nullptr;
    if (l.chunk == chunk) return &l;
  }
}

void ChunkLists::Grow() {
  std::vector<List> old;
  old.swap(slots_);
  slots_.assign(old.empty() ? 64 : old.size() * 2, List{0, nullptr, 0, 0});
  for (const List& l : old) {
    if (l.data) *Slot(l.chunk) = l;
  }
}

void ChunkLists::Append(uint64_t chunk, uint32_t pos) {
  if ((count_ + 1) * 4 > slots_.size() * 3) Grow();  // load factor <= 0.75
  List* l = Slot(chunk);
  if (!l->data) {
    l->chunk = chunk;
    l->cap = 4;
    l->size = 0;
    l->data = static_cast<uint32_t*>(std::malloc(l->cap * sizeof(uint32_t)));
    if (!l->data) std::abort();
    ++count_;
  } else if (l->size == l->cap) {
    l->cap += std::max<uint32_t>(l->cap / 2, 2);  // ~1.5x: less slack than doubling
    l->data = static_cast<uint32_t*>(std::realloc(l->data, l->cap * sizeof(uint32_t)));
    if (!l->data) std::abort();
  }
  l->data[l->size++] = pos;
}

void ChunkLists::Compact() {
  std::vector<List> old;
  old.swap(slots_);
  count_ = 0;
  for (List& l : old) {
    if (l.data && l.size > 0) ++count_;
  }
  size_t cap = 64;
  while (count_ * 4 > cap * 3) cap *= 2;
  slots_.assign(cap, List{0, nullptr, 0, 0});
  for (List& l : old) {
    if (!l.data) continue;
    if (l.size == 0) {
      std::free(l.data);
      continue;
    }
    if (l.cap > l.size + l.size / 4 + 4) {
      l.cap = l.size;
      l.data = static_cast<uint32_t*>(std::realloc(l.data, l.cap * sizeof(uint32_t)));
      if (!l.data) std::abort();
    }
    *Slot(l.chunk) = l;
  }
}

size_t ChunkLists::MemoryBytes() const {
  // Table slots, list storage, and malloc's per-allocation header (16 bytes with glibc).
  size_t bytes = slots_.size() * sizeof(List);
  for (const List& l : slots_) {
    if (l.data) bytes += l.cap * sizeof(uint32_t) + 16;
  }
  return bytes;
}

void Index::Add(const IndexEntry& e) {
  assert(entries_.empty() || e.seq() > entries_[entries_.size() - 1].seq());
  uint32_t pos = static_cast<uint32_t>(entries_.size());
  entries_.push_back(e);
  if (e.nblocks == 0) return;
  uint64_t first = e.block() / kChunkBlocks;
  uint64_t last = (e.block() + e.nblocks - 1) / kChunkBlocks;
  for (uint64_t c = first; c <= last; ++c) chunks_.Append(c, pos);
}

size_t Index::VisibleLimit(uint64_t point) const {
  return PartitionPoint([point](const IndexEntry& e) { return e.seq() <= point; });
}

int64_t Index::FindSeq(uint64_t seq) const {
  size_t pos = PartitionPoint([seq](const IndexEntry& e) { return e.seq() < seq; });
  if (pos == entries_.size() || entries_[pos].seq() != seq) return -1;
  return static_cast<int64_t>(pos);
}

uint64_t Index::SeqAtTime(int64_t t) const {
  size_t pos = PartitionPoint([t](const IndexEntry& e) { return e.timestamp_ns() <= t; });
  if (pos == 0) return 0;
  return entries_[pos - 1].seq();
}

void Index::ResolveChunk(uint64_t chunk, size_t limit, ResolvedChunk* out) const {
  std::fill(std::begin(out->slot), std::end(out->slot), kNoRecord);
  const ChunkLists::List* list = chunks_.Find(chunk);
  if (list == nullptr) return;
  const uint32_t* begin = list->data;
  const uint32_t* end = std::lower_bound(begin, begin + list->size,
                                         static_cast<uint32_t>(std::min<size_t>(limit, UINT32_MAX)));
  const uint64_t chunk_first = chunk * kChunkBlocks;
  uint32_t unresolved = kChunkBlocks;
  for (const uint32_t* it = end; it != begin && unresolved > 0;) {
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
  chunks_.ForEach([&](const ChunkLists::List& l) {
    if (l.size > 0 && l.data[0] < limit) out.push_back(l.chunk);
  });
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
  chunks_.ForEach([&](const ChunkLists::List& list) {
    std::fill(std::begin(next_version), std::end(next_version), UINT64_MAX);
    const uint64_t chunk_first = list.chunk * kChunkBlocks;
    for (const uint32_t* it = list.data + list.size; it != list.data;) {
      --it;
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
  });
  std::vector<bool> superseded(entries_.size(), false);
  for (size_t i = 0; i < entries_.size(); ++i) superseded[i] = candidate[i] && !needed[i];
  return superseded;
}

void Index::Retain(const std::vector<bool>& keep) {
  assert(keep.size() == entries_.size());
  std::vector<uint32_t> remap(entries_.size(), UINT32_MAX);
  EntryPages kept;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (keep[i]) {
      remap[i] = static_cast<uint32_t>(kept.size());
      kept.push_back(entries_[i]);
    }
  }
  entries_ = std::move(kept);
  chunks_.ForEach([&](ChunkLists::List& list) {
    uint32_t w = 0;
    for (uint32_t i = 0; i < list.size; ++i) {
      uint32_t p = remap[list.data[i]];
      if (p != UINT32_MAX) list.data[w++] = p;
    }
    list.size = w;
  });
  chunks_.Compact();
  ++generation_;
}

void Index::RemovePrefix(size_t n) {
  std::vector<bool> keep(entries_.size(), true);
  for (size_t i = 0; i < n && i < keep.size(); ++i) keep[i] = false;
  Retain(keep);
}

size_t Index::MemoryBytes() const { return entries_.MemoryBytes() + chunks_.MemoryBytes(); }

}  // namespace ferry::journal
