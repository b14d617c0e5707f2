// Replica: point-in-time reads for views.
#include <cstring>

#include "journal/replica.h"
#include "journal/view.h"

#include <algorithm>

namespace ferry::journal {

Result<std::shared_ptr<View>> Replica::OpenView(uint64_t seq) { return OpenViewImpl(seq, true); }

Result<std::shared_ptr<View>> Replica::OpenViewImpl(uint64_t seq, bool strong) {
  std::lock_guard ml(meta_mu_);
  if (manifest_.state == "committed") {
    return FailedPrecondition("replica was committed to overlay " + manifest_.committed_overlay +
                              "; its recovery points were dropped");
  }
  RETURN_IF_ERROR(ValidatePointLocked(seq));
  view_points_.insert(seq);
  return std::shared_ptr<View>(new View(shared_from_this(), seq, strong));
}

void Replica::ReleaseViewPoint(uint64_t seq) {
  std::lock_guard ml(meta_mu_);
  auto it = view_points_.find(seq);
  if (it != view_points_.end()) view_points_.erase(it);
}

void Replica::ResolveCached(uint64_t chunk, size_t limit, uint64_t generation,
                            ResolvedCache* cache, ResolvedChunk* out) const {
  std::lock_guard cl(cache->mu());
  const ResolvedChunk* hit = cache->Find(chunk, generation);
  if (hit) {
    *out = *hit;
    return;
  }
  ResolvedChunk* slot = cache->Insert(chunk, generation);
  index_.ResolveChunk(chunk, limit, slot);
  *out = *slot;
}

std::vector<std::pair<uint64_t, uint64_t>> Replica::JournaledBlockRuns() const {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  std::shared_lock il(index_mu_);
  ResolvedChunk rc;
  for (uint64_t chunk : index_.TouchedChunks(index_.size())) {
    index_.ResolveChunk(chunk, index_.size(), &rc);
    for (uint32_t i = 0; i < kChunkBlocks; ++i) {
      if (rc.slot[i] == kNoRecord) continue;
      uint64_t block = chunk * kChunkBlocks + i;
      if (!runs.empty() && runs.back().first + runs.back().second == block) {
        ++runs.back().second;
      } else {
        runs.push_back({block, 1});
      }
    }
  }
  return runs;
}

Status Replica::ExtentsAsOf(uint64_t point, ResolvedCache* cache, uint64_t offset, uint64_t n,
                            std::vector<ViewExtent>* out) {
  const uint64_t size = manifest_.size;
  if (offset > size || n > size - offset) {
    return OutOfRange("block status at " + std::to_string(offset) + "+" + std::to_string(n) +
                      " past the end of the volume (" + std::to_string(size) + " bytes)");
  }
  auto add = [out](uint64_t len, bool zero, bool hole) {
    if (len == 0) return;
    if (!out->empty() && out->back().zero == zero && out->back().hole == hole) {
      out->back().length += len;
    } else {
      out->push_back(ViewExtent{len, zero, hole});
    }
  };
  const uint64_t bs = manifest_.block_size;
  const uint64_t chunk_bytes = bs * kChunkBlocks;
  std::shared_lock il(index_mu_);
  if (!base_) return FailedPrecondition("replica was committed; its views are closed");
  const size_t limit = index_.VisibleLimit(point);
  const uint64_t generation = index_.generation();
  ResolvedChunk resolved;
  uint64_t pos = offset;
  const uint64_t end = offset + n;
  while (pos < end) {
    const uint64_t chunk = pos / chunk_bytes;
    const uint64_t chunk_first_block = chunk * kChunkBlocks;
    ResolveCached(chunk, limit, generation, cache, &resolved);
    const uint64_t chunk_end = std::min(end, (chunk + 1) * chunk_bytes);
    while (pos < chunk_end) {
      uint64_t block = pos / bs;
      uint32_t slot = resolved.slot[block - chunk_first_block];
      auto kind = [&](uint32_t s) {
        if (s == kNoRecord) return 0;
        return index_.at(s - 1).type() == RecordType::kWrite ? 1 : 2;
      };
      const int k = kind(slot);
      uint64_t run_end = std::min(chunk_end, (block + 1) * bs);
      while (run_end < chunk_end && kind(resolved.slot[run_end / bs - chunk_first_block]) == k) {
        run_end = std::min(chunk_end, (run_end / bs + 1) * bs);
      }
      if (k == 1) {
        add(run_end - pos, false, false);
      } else if (k == 2) {
        add(run_end - pos, true, true);
      } else {
        // The base: holes in base.img are zeros.
        ASSIGN_OR_RETURN(uint64_t data, base_->NextData(pos));
        data = std::max(data, pos);
        if (data >= run_end) {
          add(run_end - pos, true, true);
        } else {
          add(data - pos, true, true);
          add(run_end - data, false, false);
        }
      }
      pos = run_end;
    }
  }
  return Status::Ok();
}

Status Replica::ReadAsOf(uint64_t point, ResolvedCache* cache, uint64_t offset, size_t n,
                         void* dst) {
  const uint64_t size = manifest_.size;
  if (offset > size || n > size - offset) {
    return OutOfRange("read at " + std::to_string(offset) + "+" + std::to_string(n) +
                      " past the end of the volume (" + std::to_string(size) + " bytes)");
  }
  char* out = static_cast<char*>(dst);
  const uint64_t bs = manifest_.block_size;
  const uint64_t chunk_bytes = bs * kChunkBlocks;
  std::shared_lock il(index_mu_);
  if (!base_) return FailedPrecondition("replica was committed; its views are closed");
  const size_t limit = index_.VisibleLimit(point);
  const uint64_t generation = index_.generation();
  ResolvedChunk resolved;
  uint64_t pos = offset;
  const uint64_t end = offset + n;
  while (pos < end) {
    const uint64_t chunk = pos / chunk_bytes;
    const uint64_t chunk_first_block = chunk * kChunkBlocks;
    ResolveCached(chunk, limit, generation, cache, &resolved);
    const uint64_t chunk_end = std::min(end, (chunk + 1) * chunk_bytes);
    // Split the range into runs with one source each.
    struct Run {
      uint64_t start, end;
      uint32_t slot;
    };
    Run runs[kChunkBlocks];
    size_t nruns = 0, base_runs = 0;
    uint64_t base_lo = UINT64_MAX, base_hi = 0;
    while (pos < chunk_end) {
      uint64_t block = pos / bs;
      uint32_t slot = resolved.slot[block - chunk_first_block];
      uint64_t run_end = std::min(chunk_end, (block + 1) * bs);
      // Extend over following blocks with the same source and contiguous storage.
      while (run_end < chunk_end) {
        uint64_t nb = run_end / bs;
        uint32_t ns = resolved.slot[nb - chunk_first_block];
        bool same = ns == slot;
        if (!same && slot != kNoRecord && ns != kNoRecord) {
          same = index_.at(slot - 1).type() != RecordType::kWrite &&
                 index_.at(ns - 1).type() != RecordType::kWrite;
        }
        if (!same) break;
        run_end = std::min(chunk_end, (nb + 1) * bs);
      }
      runs[nruns++] = Run{pos, run_end, slot};
      if (slot == kNoRecord) {
        ++base_runs;
        base_lo = std::min(base_lo, pos);
        base_hi = run_end;
      }
      pos = run_end;
    }
    // Several base runs: one read of the base across all of them costs fewer system calls
    // than one each; the journal runs in between are read over it afterwards.
    const bool base_at_once = base_runs > 1;
    if (base_at_once) {
      char* to = out + (base_lo - offset);
      ASSIGN_OR_RETURN(size_t got, base_->ReadAt(base_lo, base_hi - base_lo, to));
      if (got < base_hi - base_lo) std::memset(to + got, 0, base_hi - base_lo - got);
    }
    for (size_t i = 0; i < nruns; ++i) {
      const Run& run = runs[i];
      const size_t len = run.end - run.start;
      char* to = out + (run.start - offset);
      if (run.slot == kNoRecord) {
        if (base_at_once) continue;
        ASSIGN_OR_RETURN(size_t got, base_->ReadAt(run.start, len, to));
        if (got < len) std::memset(to + got, 0, len - got);
        continue;
      }
      const IndexEntry& e = index_.at(run.slot - 1);
      if (e.type() != RecordType::kWrite) {
        std::memset(to, 0, len);
        continue;
      }
      ASSIGN_OR_RETURN(std::shared_ptr<File> f, SegmentFile(e.segment));
      uint64_t file_off = e.payload_offset + (run.start - e.block() * bs);
      ASSIGN_OR_RETURN(size_t got, f->ReadAt(file_off, len, to));
      if (got < len) {
        return DataLoss("segment " + std::to_string(e.segment) + " offset " +
                        std::to_string(file_off) + ": record seq " + std::to_string(e.seq()) +
                        " is cut short");
      }
    }
  }
  return Status::Ok();
}

}  // namespace ferry::journal
