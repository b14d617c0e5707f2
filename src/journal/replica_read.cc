// Replica: point-in-time reads for views.
#include <algorithm>
#include <cstring>
#include <functional>
#include <span>

#include "journal/replica.h"
#include "journal/view.h"

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

std::vector<std::pair<uint64_t, uint64_t>> Replica::JournaledBlockRuns(uint64_t after) const {
  std::shared_lock il(index_mu_);
  return JournaledBlockRunsLocked(after);
}

std::vector<std::pair<uint64_t, uint64_t>> Replica::JournaledBlockRunsLocked(uint64_t after) const {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  ResolvedChunk rc;
  for (uint64_t chunk : index_.TouchedChunks(index_.size())) {
    index_.ResolveChunk(chunk, index_.size(), &rc);
    for (uint32_t i = 0; i < kChunkBlocks; ++i) {
      // The newest record of the block: if it is not after `after`, none is.
      if (rc.slot[i] == kNoRecord || index_.at(rc.slot[i] - 1).seq() <= after) continue;
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

// Splits [offset, offset+n) as of point into runs with one source each — the base
// (kNoRecord), one zero/trim run, or one write record (contiguous in its segment) — and calls
// visit with the runs of each chunk in turn, holding index_mu_ shared. Reads and extents both
// walk a view this way.
Status Replica::WalkRuns(uint64_t point, ResolvedCache* cache, uint64_t offset, uint64_t n,
                         const std::function<Status(std::span<const ViewRun>)>& visit) {
  const uint64_t size = manifest_.size;
  if (offset > size || n > size - offset) {
    return OutOfRange("request at " + std::to_string(offset) + "+" + std::to_string(n) +
                      " past the end of the volume (" + std::to_string(size) + " bytes)");
  }
  const uint64_t bs = manifest_.block_size;
  const uint64_t chunk_bytes = bs * kChunkBlocks;
  std::shared_lock il(index_mu_);
  if (!base_) return FailedPrecondition("replica was committed; its views are closed");
  const size_t limit = index_.VisibleLimit(point);
  const uint64_t generation = index_.generation();
  ResolvedChunk resolved;
  ViewRun runs[kChunkBlocks];
  uint64_t pos = offset;
  const uint64_t end = offset + n;
  while (pos < end) {
    const uint64_t chunk = pos / chunk_bytes;
    const uint64_t chunk_first_block = chunk * kChunkBlocks;
    ResolveCached(chunk, limit, generation, cache, &resolved);
    const uint64_t chunk_end = std::min(end, (chunk + 1) * chunk_bytes);
    size_t nruns = 0;
    while (pos < chunk_end) {
      uint32_t slot = resolved.slot[pos / bs - chunk_first_block];
      uint64_t run_end = std::min(chunk_end, (pos / bs + 1) * bs);
      while (run_end < chunk_end) {
        uint32_t next = resolved.slot[run_end / bs - chunk_first_block];
        bool same = next == slot;
        if (!same && slot != kNoRecord && next != kNoRecord) {
          same = index_.at(slot - 1).type() != RecordType::kWrite &&
                 index_.at(next - 1).type() != RecordType::kWrite;
        }
        if (!same) break;
        run_end = std::min(chunk_end, (run_end / bs + 1) * bs);
      }
      runs[nruns++] = ViewRun{pos, run_end, slot};
      pos = run_end;
    }
    RETURN_IF_ERROR(visit(std::span<const ViewRun>(runs, nruns)));
  }
  return Status::Ok();
}

Status Replica::ExtentsAsOf(uint64_t point, ResolvedCache* cache, uint64_t offset, uint64_t n,
                            std::vector<ViewExtent>* out) {
  auto add = [out](uint64_t len, bool zero, bool hole) {
    if (len == 0) return;
    if (!out->empty() && out->back().zero == zero && out->back().hole == hole) {
      out->back().length += len;
    } else {
      out->push_back(ViewExtent{len, zero, hole});
    }
  };
  return WalkRuns(point, cache, offset, n, [&](std::span<const ViewRun> runs) -> Status {
    for (const ViewRun& run : runs) {
      if (run.slot != kNoRecord) {
        const bool data = index_.at(run.slot - 1).type() == RecordType::kWrite;
        add(run.end - run.start, !data, !data);
        continue;
      }
      // The base: holes in base.img are zeros.
      ASSIGN_OR_RETURN(uint64_t next_data, base_->NextData(run.start));
      next_data = std::clamp(next_data, run.start, run.end);
      add(next_data - run.start, true, true);
      add(run.end - next_data, false, false);
    }
    return Status::Ok();
  });
}

// Runs of the base and the segments are read with File::ReadAtMapped (docs/decisions/0016):
// a view's request is many small runs, and a copy out of a mapping costs less than a system
// call each; large or uncached runs are still preads.
Status Replica::ReadAsOf(uint64_t point, ResolvedCache* cache, uint64_t offset, size_t n,
                         void* dst) {
  char* out = static_cast<char*>(dst);
  const uint64_t bs = manifest_.block_size;
  return WalkRuns(point, cache, offset, n, [&](std::span<const ViewRun> runs) -> Status {
    // Several base runs: one read of the base across all of them costs fewer system calls
    // than one each; the journal runs in between are read over it afterwards.
    size_t base_runs = 0;
    uint64_t base_lo = UINT64_MAX, base_hi = 0;
    for (const ViewRun& run : runs) {
      if (run.slot != kNoRecord) continue;
      ++base_runs;
      base_lo = std::min(base_lo, run.start);
      base_hi = run.end;
    }
    const bool base_at_once = base_runs > 1;
    if (base_at_once) {
      char* to = out + (base_lo - offset);
      ASSIGN_OR_RETURN(size_t got, base_->ReadAtMapped(base_lo, base_hi - base_lo, to));
      if (got < base_hi - base_lo) std::memset(to + got, 0, base_hi - base_lo - got);
    }
    for (const ViewRun& run : runs) {
      const size_t len = run.end - run.start;
      char* to = out + (run.start - offset);
      if (run.slot == kNoRecord) {
        if (base_at_once) continue;
        ASSIGN_OR_RETURN(size_t got, base_->ReadAtMapped(run.start, len, to));
        if (got < len) std::memset(to + got, 0, len - got);  // past the base's end: zeros
        continue;
      }
      const IndexEntry& e = index_.at(run.slot - 1);
      if (e.type() != RecordType::kWrite) {
        std::memset(to, 0, len);
        continue;
      }
      ASSIGN_OR_RETURN(std::shared_ptr<File> f, SegmentFile(e.segment));
      const uint64_t file_off = e.payload_offset + (run.start - e.block() * bs);
      Result<size_t> got = f->ReadAtMapped(file_off, len, to);
      if (!got.ok() || *got < len) {
        return DataLoss("segment " + std::to_string(e.segment) + " offset " +
                        std::to_string(file_off) + ": record seq " + std::to_string(e.seq()) +
                        (got.ok() ? std::string(" is cut short")
                                  : " cannot be read: " + std::string(got.status().message())));
      }
    }
    return Status::Ok();
  });
}

}  // namespace ferry::journal
