// Index: the in-memory map from (block, point) to the journal record that holds the block's
// content as of that point. Rebuilt from the segments when a replica opens.
//
// Layout, chosen for memory (a goal of <= 48 bytes per retained record):
//   - entries_: one packed 36-byte Entry per retained record, in seq order. A record's
//     "position" is its index in this vector.
//   - chunks_: for each chunk of kChunkBlocks blocks that any record touched, the positions
//     (ascending) of the records touching it: 4 bytes per (record, chunk) pair.
// Resolving a chunk as of a point scans that chunk's list backwards from the point until every
// block is found; views cache resolved chunks, so the cost is paid once per chunk per view.
// Opening a view therefore costs nothing, whatever the volume's size or the journal's length.
//
// Not thread-safe: the Replica guards it with a shared mutex (readers resolve under a shared
// lock; appends and retention mutate under an exclusive lock). Positions change only when
// records are removed (retention), which bumps generation().
#pragma once

#include <cstdint>
#include <unordered_map>
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

class Index {
 public:
  // Appends an entry; seq must be larger than the last one.
  void Add(const IndexEntry& e);

  size_t size() const { return entries_.size(); }
  const IndexEntry& at(size_t pos) const { return entries_[pos]; }
  uint64_t first_seq() const { return entries_.empty() ? 0 : entries_.front().seq(); }
  uint64_t last_seq() const { return entries_.empty() ? 0 : entries_.back().seq(); }

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
  std::vector<IndexEntry> entries_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> chunks_;
  uint64_t generation_ = 0;
};

}  // namespace ferry::journal
