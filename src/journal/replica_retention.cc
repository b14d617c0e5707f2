// Replica: retention — merging old history into the base, thinning markers, compaction.
#include <algorithm>
#include <future>
#include <map>
#include <set>

#include "journal/replica.h"
#include "journal/segment.h"

namespace ferry::journal {

namespace {

// A read of a segment covers runs spanning at most this much (or one longer run) ...
constexpr uint64_t kMergeWindowBytes = uint64_t{4} << 20;
// ... with no gap between two of them larger than this (superseded records are read over).
constexpr uint64_t kMergeGapBytes = uint64_t{256} << 10;
// A merge copying at least this many runs drops the base's cached pages before it starts.
constexpr size_t kDropCacheRuns = 4096;

}  // namespace

Result<RetentionReport> Replica::ApplyRetention(const RetentionPolicy& policy) {
  if (policy.window_ns <= 0 || policy.any_point_ns < 0 || policy.any_point_ns > policy.window_ns) {
    return InvalidArgument("retention needs window > 0 and 0 <= any-point window <= window");
  }
  std::lock_guard mt(maintenance_mu_);
  RetentionReport report;
  const int64_t now = options_.clock->NowNanos();
  uint64_t target = 0;
  {
    std::lock_guard ml(meta_mu_);
    if (manifest_.state == "committed") {
      return FailedPrecondition("replica was committed; it has no history to retain");
    }
    // The initial sync writes the base; history is kept whole until it finished.
    if (manifest_.initial_sync) return report;
    if (manifest_.role == "pending-log") {
      return FailedPrecondition("a pending log is trimmed by its link (DiscardThrough), not by "
                                "retention");
    }
    std::shared_lock il(index_mu_);
    const uint64_t oldest = OldestPointLocked();
    uint64_t s = index_.SeqAtTime(now - policy.window_ns - 1);
    if (s > oldest) {
      uint64_t protect = MinProtectedSeqLocked();
      if (s > protect) {
        s = protect;
        report.held_by_pins = protect;
      }
      if (s < manifest_.any_point_from && !markers_.count(s)) {
        auto it = markers_.upper_bound(s);
        s = it == markers_.begin() ? oldest : std::prev(it)->first;
      }
      // Never fold the base into a resync window: the base would not be consistent.
      if (const Gap* g = GapAtLocked(s)) s = g->missing_from - 1;
      if (s > oldest) target = s;
    }
    if (target != 0) {
      // Recorded before meta_mu_ is released, so no view can open on a point the merge will
      // fold away (OpenView checks points against merge_target).
      Manifest next = manifest_;
      next.merge_target = target;
      il.unlock();
      RETURN_IF_ERROR(next.Store(env_, dir_));
      manifest_ = std::move(next);
    }
  }
  if (target != 0) {
    uint64_t before = Stats().records;
    RETURN_IF_ERROR(MergeTo(target));
    report.merged_to_seq = target;
    report.records_merged = before - Stats().records;
  }
  RETURN_IF_ERROR(ThinAndCompact(policy, now, &report));
  return report;
}

Status Replica::MergeTo(uint64_t target) {
  {
    std::lock_guard ml(meta_mu_);
    if (manifest_.merge_target != target) {
      Manifest next = manifest_;
      next.merge_target = target;
      RETURN_IF_ERROR(next.Store(env_, dir_));
      manifest_ = std::move(next);
    }
  }
  std::vector<uint64_t> chunks;
  size_t limit;
  {
    std::shared_lock il(index_mu_);
    limit = index_.VisibleLimit(target);
    chunks = index_.TouchedChunks(limit);
  }
  // Resolve a batch of chunks to the runs of blocks to copy, then copy them in journal order:
  // each window of a segment is read once, front to back (a journal just appended directly is
  // not in the page cache, and in volume order every run would cost the disk a seek), the next
  // window while the runs of this one are written.
  std::vector<MergeRun> runs;
  std::map<uint32_t, std::shared_ptr<File>> files;
  const size_t batch_runs = std::max<size_t>(options_.merge_batch_runs, 1);
  for (size_t next_chunk = 0; next_chunk < chunks.size();) {
    const bool first_batch = next_chunk == 0;
    runs.clear();
    {
      std::shared_lock il(index_mu_);
      ResolvedChunk rc;
      for (; next_chunk < chunks.size() && runs.size() < batch_runs; ++next_chunk) {
        RETURN_IF_ERROR(CollectMergeRunsLocked(chunks[next_chunk], limit, &rc, &runs, &files));
      }
    }
    // Small writes at random places into a file whose cached pages are large folios (as an
    // initial sync's or a commit's large writes leave them) cost this kernel tens of µs each,
    // into uncached places a few (bench/RESULTS.md, f): a large merge drops the base's
    // cached pages first.
    if (first_batch && runs.size() >= kDropCacheRuns) base_->DropCache(0, 0);
    RETURN_IF_ERROR(CopyRuns(&runs, files));
  }
  files.clear();  // DropThrough may reuse a segment's file only where nobody else holds it
  RETURN_IF_ERROR(base_->Sync());
  {
    std::lock_guard ml(meta_mu_);
    Manifest next = manifest_;
    next.base_seq = target;
    next.merge_target = 0;
    next.any_point_from = std::max(next.any_point_from, target);
    RETURN_IF_ERROR(next.Store(env_, dir_));
    manifest_ = std::move(next);
  }
  return DropThrough(target);
}

Status Replica::CollectMergeRunsLocked(uint64_t chunk, size_t limit, ResolvedChunk* rc,
                                       std::vector<MergeRun>* runs,
                                       std::map<uint32_t, std::shared_ptr<File>>* files) {
  const uint64_t bs = manifest_.block_size;
  index_.ResolveChunk(chunk, limit, rc);
  const uint64_t first = chunk * kChunkBlocks;
  for (uint32_t i = 0; i < kChunkBlocks;) {
    const uint32_t slot = rc->slot[i];
    if (slot == kNoRecord) {
      ++i;
      continue;
    }
    const IndexEntry& e = index_.at(slot - 1);
    uint32_t j = i + 1;
    while (j < kChunkBlocks && rc->slot[j] == slot) ++j;
    const uint64_t block = first + i;
    const uint64_t len = uint64_t{j - i} * bs;
    i = j;
    if (e.type() != RecordType::kWrite) {
      RETURN_IF_ERROR(base_->PunchHole(block * bs, len));
      continue;
    }
    if (!files->count(e.segment)) {
      ASSIGN_OR_RETURN((*files)[e.segment], SegmentFile(e.segment));
    }
    runs->push_back({e.segment, static_cast<uint32_t>(len),
                     e.payload_offset + (block - e.block()) * bs, block * bs, e.seq()});
  }
  return Status::Ok();
}

Status Replica::CopyRuns(std::vector<MergeRun>* runs,
                         const std::map<uint32_t, std::shared_ptr<File>>& files) {
  std::sort(runs->begin(), runs->end(), [](const MergeRun& a, const MergeRun& b) {
    return a.segment != b.segment ? a.segment < b.segment : a.file_offset < b.file_offset;
  });
  struct Window {
    size_t first, last;  // runs [first, last)
    uint64_t begin, end;  // segment bytes read
  };
  std::vector<Window> windows;
  for (size_t i = 0; i < runs->size();) {
    const MergeRun& head = (*runs)[i];
    Window w{i, i + 1, head.file_offset, head.file_offset + head.length};
    while (w.last < runs->size()) {
      const MergeRun& r = (*runs)[w.last];
      const uint64_t end = r.file_offset + r.length;
      if (r.segment != head.segment || end - w.begin > kMergeWindowBytes ||
          r.file_offset > w.end + kMergeGapBytes) {
        break;
      }
      w.end = std::max(w.end, end);
      ++w.last;
    }
    windows.push_back(w);
    i = w.last;
  }
  std::string buffers[2];
  auto read = [&](size_t k) -> Result<size_t> {
    const Window& w = windows[k];
    std::string& buf = buffers[k % 2];
    buf.resize(w.end - w.begin);
    return files.at((*runs)[w.first].segment)->ReadAt(w.begin, buf.size(), buf.data());
  };
  // Declared after the buffers: leaving early waits for the read in flight before they go.
  std::future<Result<size_t>> reading;
  if (!windows.empty()) reading = std::async(std::launch::async, read, 0);
  for (size_t k = 0; k < windows.size(); ++k) {
    ASSIGN_OR_RETURN(const size_t got, reading.get());
    if (k + 1 < windows.size()) reading = std::async(std::launch::async, read, k + 1);
    const Window& w = windows[k];
    const std::string& buf = buffers[k % 2];
    for (size_t i = w.first; i < w.last; ++i) {
      const MergeRun& r = (*runs)[i];
      const uint64_t at = r.file_offset - w.begin;
      if (at + r.length > got) {
        return DataLoss("segment " + std::to_string(r.segment) + " offset " +
                        std::to_string(r.file_offset) + ": record seq " + std::to_string(r.seq) +
                        " is cut short");
      }
      RETURN_IF_ERROR(base_->WriteAt(r.base_offset, std::string_view(buf).substr(at, r.length)));
    }
  }
  return Status::Ok();
}

Status Replica::DropThrough(uint64_t target) {
  // A segment holds only merged records when the next one starts at or below target + 1. Its
  // seq range counts, not what compaction left in it: deleting an emptied segment whose range
  // reaches past the target would look, to the next Open, like lost records. The segment of
  // the newest record stays even if merged: the next Open takes the timestamp floor from it.
  std::vector<std::pair<uint32_t, std::shared_ptr<File>>> files;
  uint32_t active;
  bool active_empty;
  {
    std::lock_guard wl(write_mu_);
    std::shared_lock il(index_mu_);
    files.assign(segments_.begin(), segments_.end());
    active = static_cast<uint32_t>(active_->segment_number());
    active_empty = active_->size() == kSegmentHeaderSize;
  }
  std::vector<uint32_t> dead;
  for (size_t i = 0; i + 1 < files.size() && files[i].first != active; ++i) {
    if (files[i + 1].first == active && active_empty) break;
    ASSIGN_OR_RETURN(SegmentHeader next, ReadSegmentHeader(files[i + 1].second.get(),
                                                           files[i + 1].first));
    if (next.first_seq > target + 1) break;
    dead.push_back(files[i].first);
  }
  std::vector<std::shared_ptr<File>> dead_files(dead.size());
  std::vector<uint64_t> dead_bytes(dead.size());
  std::vector<bool> uncached(dead.size());
  {
    std::lock_guard wl(write_mu_);
    std::unique_lock il(index_mu_);
    index_.RemovePrefix(index_.VisibleLimit(target));
    markers_.erase(markers_.begin(), markers_.upper_bound(target));
    for (size_t k = 0; k < dead.size(); ++k) {
      auto it = segments_.find(dead[k]);
      if (it != segments_.end()) dead_files[k] = std::move(it->second);
      segments_.erase(dead[k]);
      auto bytes = segment_bytes_.find(dead[k]);
      if (bytes != segment_bytes_.end()) dead_bytes[k] = bytes->second;
      segment_bytes_.erase(dead[k]);
      uncached[k] = uncached_segments_.erase(dead[k]) > 0;
    }
  }
  files.clear();
  const bool recycle = options_.recycle_segments > 0;
  for (size_t k = 0; k < dead.size(); ++k) {
    const std::string path = JoinPath(journal_dir_, SegmentFileName(dead[k]));
    // Some are kept as spares (docs/decisions/0011), but only a file nobody else holds: no
    // reader can find it any more, and none may see it rewritten.
    // Nor a file whose pages were dropped from the cache: appends that end inside a block
    // would read that block from the disk first.
    const bool reusable = recycle && !uncached[k] && dead_files[k] && dead_files[k].use_count() == 1;
    dead_files[k].reset();
    if (reusable) {
      std::lock_guard wl(write_mu_);
      if (spares_.size() < options_.recycle_segments) {
        const std::string spare = JoinPath(journal_dir_, kSpareSegmentPrefix + SegmentFileName(dead[k]));
        RETURN_IF_ERROR(env_->Rename(path, spare));
        spares_.push_back({spare, dead_bytes[k]});
        continue;
      }
    }
    RETURN_IF_ERROR(env_->RemoveFile(path));
  }
  if (!dead.empty()) RETURN_IF_ERROR(env_->SyncDir(journal_dir_));
  return Status::Ok();
}

Status Replica::SealForThinning(const RetentionPolicy& policy, int64_t now) {
  uint64_t active_segment;
  {
    std::lock_guard wl(write_mu_);
    if (!active_) return Status::Ok();
    active_segment = active_->segment_number();
  }
  bool seal = false;
  {
    std::lock_guard ml(meta_mu_);
    std::set<uint64_t> protected_points;
    for (const journal::Pin& p : manifest_.pins) protected_points.insert(p.seq);
    protected_points.insert(view_points_.begin(), view_points_.end());
    std::shared_lock il(index_mu_);
    std::vector<MarkerRef> refs;
    for (const auto& [seq, m] : markers_) {
      int64_t pos = index_.FindSeq(seq);
      if (pos >= 0) refs.push_back({seq, index_.at(static_cast<size_t>(pos)).timestamp_ns(), m.kind});
    }
    const std::set<uint64_t> keep = MarkersToKeep(refs, policy, now, protected_points);
    for (const MarkerRef& r : refs) {
      if (!keep.count(r.seq) &&
          index_.at(static_cast<size_t>(index_.FindSeq(r.seq))).segment == active_segment) {
        seal = true;
        break;
      }
    }
  }
  if (!seal) return Status::Ok();
  std::unique_lock l(write_mu_);
  // Only between batches: one being written or published is in that segment.
  if (!active_ || active_->segment_number() != active_segment || leading_ || in_flight_ != 0 ||
      !write_error_.ok()) {
    return Status::Ok();
  }
  if (Status s = RollTo(next_seq_); !s.ok()) {
    write_error_ = s;  // as a failed roll in Append: appends wait for a reopen
    return s;
  }
  return Status::Ok();
}

Status Replica::ThinAndCompact(const RetentionPolicy& policy, int64_t now,
                               RetentionReport* report) {
  // Markers the tiers thin that lie in the active segment: that segment is sealed first, so
  // it can be rewritten like the others.
  RETURN_IF_ERROR(SealForThinning(policy, now));
  uint32_t active_segment;
  {
    std::lock_guard wl(write_mu_);
    active_segment = active_ ? static_cast<uint32_t>(active_->segment_number()) : 0;
  }
  // Markers chosen for thinning are refused as points from the moment they are chosen until
  // they are gone (ValidatePointLocked), so no view can open on one meanwhile.
  struct ClearThinning {
    Replica* r;
    ~ClearThinning() {
      std::lock_guard ml(r->meta_mu_);
      r->thinning_markers_.clear();
    }
  } clear_thinning{this};

  // 1. Raise any_point_from: older history keeps only its markers. 2. Decide what the thinned
  // history no longer needs. Both under meta_mu_: the protected points cannot change between.
  std::set<uint64_t> protected_points;
  uint64_t from;
  std::vector<bool> drop;
  std::set<uint32_t> rewrite;
  {
    std::lock_guard ml(meta_mu_);
    for (const journal::Pin& p : manifest_.pins) protected_points.insert(p.seq);
    protected_points.insert(view_points_.begin(), view_points_.end());
    std::shared_lock il(index_mu_);
    from = manifest_.any_point_from;
    uint64_t s = index_.SeqAtTime(now - policy.any_point_ns - 1);
    // However old, the newest record stays a point: it is the volume as it is now.
    uint64_t want = s == 0 ? 0 : std::min(s + 1, index_.last_seq());
    for (uint64_t p : protected_points) {
      if (p < want && !markers_.count(p) && p > OldestPointLocked()) want = std::min(want, p);
    }
    if (want > from) {
      Manifest next = manifest_;
      next.any_point_from = want;
      il.unlock();
      RETURN_IF_ERROR(next.Store(env_, dir_));
      manifest_ = std::move(next);
      from = want;
    }
    if (il.owns_lock()) il.unlock();
    report->any_point_from = from;
    if (from == 0) return Status::Ok();

    std::shared_lock decide(index_mu_);
    // Only sealed segments are rewritten (records at or after `from` are never dropped, so
    // one that reaches past it keeps them); a record in the active segment stays, so a marker
    // there stays a point and its data must stay too.
    auto rewritable = [&](size_t pos) { return index_.at(pos).segment != active_segment; };
    std::vector<MarkerRef> refs;
    for (const auto& [seq, m] : markers_) {
      if (seq >= from) break;
      int64_t pos = index_.FindSeq(seq);
      if (pos >= 0) refs.push_back({seq, index_.at(static_cast<size_t>(pos)).timestamp_ns(), m.kind});
    }
    std::set<uint64_t> keep = MarkersToKeep(refs, policy, now, protected_points);
    for (const MarkerRef& r : refs) {
      if (!rewritable(static_cast<size_t>(index_.FindSeq(r.seq)))) keep.insert(r.seq);
    }
    std::vector<uint64_t> kept(keep.begin(), keep.end());
    for (uint64_t p : protected_points) kept.push_back(p);
    kept.push_back(from);
    std::sort(kept.begin(), kept.end());
    drop = index_.FindSuperseded(kept, from);
    for (const MarkerRef& r : refs) {
      if (!keep.count(r.seq)) {
        drop[static_cast<size_t>(index_.FindSeq(r.seq))] = true;
      }
    }
    for (size_t i = 0; i < index_.size(); ++i) {
      if (!drop[i]) continue;
      if (!rewritable(i)) {
        drop[i] = false;
        continue;
      }
      rewrite.insert(index_.at(i).segment);
      if (index_.at(i).type() == RecordType::kMarker) thinning_markers_.insert(index_.at(i).seq());
    }
  }

  // 3. Rewrite each affected segment without its dropped records, newest first: a thinned
  // marker may need records of older segments, so they go only after it has gone, and a
  // crash between two rewrites leaves every point that still exists intact.
  for (auto it = rewrite.rbegin(); it != rewrite.rend(); ++it) {
    const uint32_t seg = *it;
    std::vector<size_t> positions;
    std::shared_ptr<File> old;
    {
      std::shared_lock il(index_mu_);
      for (size_t i = 0; i < index_.size(); ++i) {
        if (index_.at(i).segment == seg) positions.push_back(i);
      }
      ASSIGN_OR_RETURN(old, SegmentFile(seg));
    }
    ASSIGN_OR_RETURN(SegmentHeader header, ReadSegmentHeader(old.get(), seg));
    header.flags |= kSegmentCompacted;
    const std::string path = JoinPath(journal_dir_, SegmentFileName(seg));
    const std::string tmp = path + ".compact";
    ASSIGN_OR_RETURN(auto out, env_->OpenFile(tmp, OpenMode::kCreate));
    RETURN_IF_ERROR(out->Truncate(0));
    uint64_t out_off = 0;
    std::string data = EncodeSegmentHeader(header);
    std::string rec;
    std::map<uint64_t, uint32_t> new_offsets;  // seq -> payload offset in the new file
    for (size_t pos : positions) {
      IndexEntry e;
      {
        std::shared_lock il(index_mu_);
        e = index_.at(pos);
      }
      if (drop[pos]) continue;
      uint64_t hoff = e.payload_offset - kRecordHeaderSize;
      rec.resize(kRecordHeaderSize);
      ASSIGN_OR_RETURN(size_t n, old->ReadAt(hoff, kRecordHeaderSize, rec.data()));
      if (n < kRecordHeaderSize) return DataLoss("segment " + std::to_string(seg) + ": short record");
      ASSIGN_OR_RETURN(RecordHeader h, DecodeRecordHeader(reinterpret_cast<const uint8_t*>(rec.data())));
      rec.resize(kRecordHeaderSize + h.payload_length);
      ASSIGN_OR_RETURN(n, old->ReadAt(e.payload_offset, h.payload_length, rec.data() + kRecordHeaderSize));
      if (n < h.payload_length) return DataLoss("segment " + std::to_string(seg) + ": short record");
      new_offsets[e.seq()] = static_cast<uint32_t>(out_off + data.size() + kRecordHeaderSize);
      data += rec;
      if (data.size() >= (8u << 20)) {  // write in pieces to bound memory
        RETURN_IF_ERROR(out->WriteAt(out_off, data));
        out_off += data.size();
        data.clear();
      }
    }
    RETURN_IF_ERROR(out->WriteAt(out_off, data));
    RETURN_IF_ERROR(out->Sync());
    const uint64_t new_size = out_off + data.size();
    out.reset();
    RETURN_IF_ERROR(env_->Rename(tmp, path));
    RETURN_IF_ERROR(env_->SyncDir(journal_dir_));
    ASSIGN_OR_RETURN(auto reopened, env_->OpenFile(path, OpenMode::kRead));
    {
      std::unique_lock il(index_mu_);
      uint64_t old_bytes = segment_bytes_[seg];
      std::vector<bool> keep(index_.size(), true);
      for (size_t pos : positions) {
        const IndexEntry& e = index_.at(pos);
        if (drop[pos]) {
          keep[pos] = false;
        } else {
          index_.Relocate(pos, new_offsets.at(e.seq()));
        }
      }
      for (size_t pos : positions) {
        if (drop[pos] && index_.at(pos).type() == RecordType::kMarker) {
          markers_.erase(index_.at(pos).seq());
          ++report->markers_thinned;
        } else if (drop[pos]) {
          ++report->records_compacted;
        }
      }
      // Positions shift after Retain; drop entries for later segments consistently.
      index_.Retain(keep);
      std::vector<bool> shifted;
      shifted.reserve(drop.size());
      for (size_t i = 0; i < drop.size(); ++i) {
        if (keep[i]) shifted.push_back(drop[i]);
      }
      drop.swap(shifted);
      segments_[seg] = std::shared_ptr<File>(std::move(reopened));
      segment_bytes_[seg] = new_size;
      report->bytes_reclaimed += old_bytes > new_size ? old_bytes - new_size : 0;
    }
  }
  return Status::Ok();
}

}  // namespace ferry::journal
