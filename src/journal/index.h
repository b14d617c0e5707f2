// Index: the in-memory map from (block, point) to the journal record that holds the block's
// content as of that point. Rebuilt from the segments when a replica opens.
//
// Layout, chosen for memory (a goal of <= 48 bytes per retained record):
//   - entries_: one packed 36-byte Entry per retained record, in seq order, in fixed pages
//     (no reallocation, no doubling slack). A record's "position" is its index.
//   - chunks_: for each chunk of kChunkBlocks blocks that any record touched, the positions
//     (ascending) of the records touching it: 4 bytes per (record, chunk) pair, in an
//     open-addressing table (about 40 bytes per touched chunk).
// Resolving a chunk as of a point scans that chunk's list backwards from the point until every
// block is found; views cache resolved chunks, so the cost is paid once per chunk per view.
// Opening a view therefore costs nothing, whatever the volume's size or the journal's length.
//
// Not thread-safe: the Replica guards it with a shared mutex (readers resolve under a shared
// lock; appends and retention mutate under an exclusive lock). Positions change only when
// records are removed (retention), which bumps generation().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "journal/record.h"

namespace ferry::journal {

inline constexpr uint32_t kChunkBlocks = 256;
inline constexpr uint32_t kNoRecord = 0;  // in a resolved chunk: read the base

// Packed to 36 bytes, so the 64-bit fields may be misaligned: they are reached only through
// accessors that return copies (never bind a reference or pointer to them).
#pragma pack(push, 4)
struct IndexEntry {
  uint64_t seq_;
  int64_t timestamp_;
  uint64_t block_type_;  // first block << 8 | RecordType
  uint32_t nblocks;      // 0 for markers
  uint32_t segment;      // segment number
  uint32_t payload_offset;

  static IndexEntry Make(uint64_t seq, int64_t timestamp_ns, RecordType type, uint64_t block,
                         uint32_t nblocks, uint32_t segment, uint32_t payload_offset) {
    return IndexEntry{seq, timestamp_ns, block << 8 | static_cast<uint64_t>(type), nblocks,
                      segment, payload_offset};
  }
  uint64_t seq() const { return seq_; }
  int64_t timestamp_ns() const { return timestamp_; }
  uint64_t block() const { return block_type_ >> 8; }
  RecordType type() const { return static_cast<RecordType>(block_type_ & 0xff); }
};
#pragma pack(pop)
static_assert(sizeof(IndexEntry) == 36);

// A chunk resolved as of a point: for each block, its record's position + 1, or kNoRecord.
struct ResolvedChunk {
  uint32_t slot[kChunkBlocks];
};

// Append-only paged array of IndexEntry: stable cost per entry, O(1) access.
class EntryPages {
 public:
  static constexpr size_t kPageEntries = 4096;
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  IndexEntry& operator[](size_t i) { return pages_[i / kPageEntries][i % kPageEntries]; }
  const IndexEntry& operator[](size_t i) const { return pages_[i / kPageEntries][i % kPageEntries]; }
  void push_back(const IndexEntry& e);
  void clear() {
    pages_.clear();
    size_ = 0;
  }
  size_t MemoryBytes() const {
    return pages_.size() * (kPageEntries * sizeof(IndexEntry) + sizeof(void*));
  }

 private:
  std::vector<std::unique_ptr<IndexEntry[]>> pages_;
  size_t size_ = 0;
};

// Map from chunk number to its ascending list of positions. Open addressing, linear probing.
class ChunkLists {
 public:
  ChunkLists() = default;
  ~ChunkLists();
  ChunkLists(const ChunkLists&) = delete;
  ChunkLists& operator=(const ChunkLists&) = delete;

  struct List {
    uint64_t chunk;
    uint32_t* data;
    uint32_t size;
    uint32_t cap;
  };
  void Append(uint64_t chunk, uint32_t pos);
  const List* Find(uint64_t chunk) const;
  // Calls fn(List&) for every list; lists left empty are removed afterwards.
  template <typename Fn>
  void ForEach(Fn fn) {
    for (List& l : slots_) {
      if (l.data) fn(l);
    }
  }
  template <typename Fn>
  void ForEach(Fn fn) const {
    for (const List& l : slots_) {
      if (l.data) fn(l);
    }
  }
  // Drops empty lists and shrinks the rest to fit (after Retain).
  void Compact();
  size_t count() const { return count_; }
  size_t MemoryBytes() const;

 private:
  List* Slot(uint64_t chunk);
  void Grow();
  std::vector<List> slots_;  // data == nullptr: free
  size_t count_ = 0;
};

class Index {
 public:
  // Appends an entry; seq must be larger than the last one.
  void Add(const IndexEntry& e);

  size_t size() const { return entries_.size(); }
  const IndexEntry& at(size_t pos) const { return entries_[pos]; }
  uint64_t first_seq() const { return entries_.empty() ? 0 : entries_[0].seq(); }
  uint64_t last_seq() const { return entries_.empty() ? 0 : entries_[entries_.size() - 1].seq(); }

  // Number of entries with seq <= point: positions below it are visible at the point.
  size_t VisibleLimit(uint64_t point) const;
  // Position of the record with exactly this seq, or -1.
  int64_t FindSeq(uint64_t seq) const;
  // Largest seq whose timestamp is <= t, or 0 if none.
  uint64_t SeqAtTime(int64_t t) const;

  // Resolves chunk c among positions < limit. volume_blocks bounds the last chunk.
  void ResolveChunk(uint64_t chunk, size_t limit, ResolvedChunk* out) const;

  // Chunks touched by records at positions < limit, ascending.
  std::vector<uint64_t> TouchedChunks(size_t limit) const;

  // For compaction: marks the data records (write/zero/trim) with seq < below that no kept
  // point needs — every block of theirs is written again at or before the first kept point
  // at or after them. kept must be sorted and contain a point >= below.
  std::vector<bool> FindSuperseded(const std::vector<uint64_t>& kept, uint64_t below) const;
  // Overrides a record's payload offset after its segment was rewritten.
  void Relocate(size_t pos, uint32_t payload_offset) { entries_[pos].payload_offset = payload_offset; }

  // Removes the entries for which keep[pos] is false, renumbering positions.
  void Retain(const std::vector<bool>& keep);
  // Removes the first n entries.
  void RemovePrefix(size_t n);

  uint64_t generation() const { return generation_; }
  // Bytes held by the index's structures (approximate, for the benchmark and health).
  size_t MemoryBytes() const;

 private:
  // First position whose entry fails pred (entries are partitioned by pred), like
  // std::partition_point over positions.
  template <typename Pred>
  size_t PartitionPoint(Pred pred) const {
    size_t lo = 0, hi = entries_.size();
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      if (pred(entries_[mid])) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  EntryPages entries_;
  ChunkLists chunks_;
  uint64_t generation_ = 0;
};

}  // namespace ferry::journal
