// The parts of Replica that links use: reading stored records for shipping, waiting for
// appends, trimming a pending log, and the initial sync's writes into the base.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>

#include "base/checksum.h"
#include "journal/replica.h"
#include "journal/segment.h"

namespace ferry::journal {

uint64_t Replica::last_seq() const {
  std::lock_guard ml(meta_mu_);
  return std::max(published_seq_.load(), manifest_.base_seq);
}

uint64_t Replica::next_seq() const {
  std::lock_guard wl(write_mu_);
  return next_seq_;
}

uint64_t Replica::WaitForAppend(uint64_t after_seq, int64_t timeout_ms) const {
  std::unique_lock l(append_mu_);
  append_cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
                      [&] { return published_seq_.load() > after_seq; });
  l.unlock();
  return last_seq();
}

Result<std::vector<StoredRecord>> Replica::ReadRecords(uint64_t from_seq, uint64_t up_to_seq,
                                                       size_t max_bytes) const {
  struct Loc {
    uint64_t seq;
    uint32_t segment;
    uint64_t header_at;  // file offset of the record header
    uint64_t end;        // file offset just past the payload (an upper bound for markers)
  };
  std::vector<Loc> locs;
  std::map<uint32_t, std::shared_ptr<File>> files;
  {
    std::lock_guard ml(meta_mu_);
    std::shared_lock il(index_mu_);
    if (from_seq <= manifest_.base_seq) {
      return OutOfRange("records through seq " + std::to_string(manifest_.base_seq) +
                        " are no longer in the journal; seq " + std::to_string(from_seq) +
                        " cannot be read");
    }
    size_t pos = index_.VisibleLimit(from_seq - 1);
    if (pos < index_.size() && index_.at(pos).seq() != from_seq && from_seq <= up_to_seq) {
      return OutOfRange("seq " + std::to_string(from_seq) + " is not in the journal (the next "
                        "held record is " + std::to_string(index_.at(pos).seq()) + ")");
    }
    size_t bytes = 0;
    for (; pos < index_.size() && (locs.empty() || bytes < max_bytes); ++pos) {
      const IndexEntry& e = index_.at(pos);
      if (e.seq() > up_to_seq) break;
      uint64_t payload = e.type() == RecordType::kMarker
                             ? kMarkerBodyFixed + kMaxLabelLength
                         : e.type() == RecordType::kWrite ? uint64_t{e.nblocks} * manifest_.block_size
                                                          : 0;
      locs.push_back({e.seq(), e.segment, e.payload_offset - kRecordHeaderSize,
                      e.payload_offset + payload});
      bytes += kRecordHeaderSize + payload;
      if (!files.count(e.segment)) {
        ASSIGN_OR_RETURN(files[e.segment], SegmentFile(e.segment));
      }
    }
  }
  std::vector<StoredRecord> out;
  out.reserve(locs.size());
  std::string buf;
  size_t i = 0;
  while (i < locs.size()) {
    // One read for a run of records stored close together in one segment.
    size_t j = i + 1;
    while (j < locs.size() && locs[j].segment == locs[i].segment &&
           locs[j].header_at >= locs[j - 1].header_at &&
           locs[j].header_at <= locs[j - 1].end + (1u << 20)) {
      ++j;
    }
    const uint64_t start = locs[i].header_at;
    const uint64_t end = locs[j - 1].end;
    File* f = files[locs[i].segment].get();
    buf.resize(end - start);
    ASSIGN_OR_RETURN(size_t got, f->ReadAt(start, buf.size(), buf.data()));
    buf.resize(got);
    for (size_t k = i; k < j; ++k) {
      const uint64_t at = locs[k].header_at - start;
      auto where = [&] {
        return "segment " + std::to_string(locs[k].segment) + " offset " +
               std::to_string(locs[k].header_at) + ": ";
      };
      if (at + kRecordHeaderSize > buf.size()) {
        return DataLoss(where() + "record seq " + std::to_string(locs[k].seq) + " is cut short");
      }
      auto h = DecodeRecordHeader(reinterpret_cast<const uint8_t*>(buf.data() + at));
      if (!h.ok()) return h.status().WithContext(where());
      if (h->seq != locs[k].seq) {
        return DataLoss(where() + "holds seq " + std::to_string(h->seq) + ", the index says " +
                        std::to_string(locs[k].seq));
      }
      if (at + kRecordHeaderSize + h->payload_length > buf.size()) {
        return DataLoss(where() + "record seq " + std::to_string(h->seq) + " is cut short");
      }
      std::string_view payload(buf.data() + at + kRecordHeaderSize, h->payload_length);
      if (Checksum64(payload) != h->payload_checksum) {
        return DataLoss(where() + "record seq " + std::to_string(h->seq) +
                        " fails its payload checksum");
      }
      StoredRecord sr;
      sr.checksum = h->payload_checksum;
      Record& r = sr.record;
      r.type = h->type;
      r.seq = h->seq;
      r.timestamp_ns = h->timestamp_ns;
      r.offset = h->offset;
      r.length = h->length;
      if (h->type == RecordType::kWrite) {
        r.data.assign(payload);
      } else if (h->type == RecordType::kMarker) {
        auto m = DecodeMarkerBody(payload);
        if (!m.ok()) return m.status().WithContext(where());
        r.marker = std::move(*m);
      } else {
        sr.checksum = 0;
      }
      out.push_back(std::move(sr));
    }
    i = j;
  }
  return out;
}

Status Replica::DiscardThrough(uint64_t seq) {
  std::lock_guard mt(maintenance_mu_);
  {
    std::lock_guard ml(meta_mu_);
    if (manifest_.role != "pending-log") {
      return FailedPrecondition("only a pending log discards records; a replica's history is "
                                "trimmed by retention");
    }
  }
  // The segments, taken in lock order (write_mu_ before meta_mu_; never the reverse).
  std::vector<std::pair<uint32_t, std::shared_ptr<File>>> files;
  uint32_t active;
  {
    std::lock_guard wl(write_mu_);
    std::shared_lock il(index_mu_);
    files.assign(segments_.begin(), segments_.end());
    active = static_cast<uint32_t>(active_->segment_number());
  }
  uint64_t target;
  {
    std::lock_guard ml(meta_mu_);
    // Whole segments only: the target is the last seq of the newest sealed segment <= seq.
    target = manifest_.base_seq;
    for (size_t i = 0; i + 1 < files.size() && files[i].first != active; ++i) {
      ASSIGN_OR_RETURN(SegmentHeader next, ReadSegmentHeader(files[i + 1].second.get(),
                                                             files[i + 1].first));
      if (next.first_seq - 1 > seq) break;
      target = std::max(target, next.first_seq - 1);
    }
    if (target <= manifest_.base_seq) return Status::Ok();
    Manifest next = manifest_;
    next.base_seq = target;
    next.any_point_from = std::max(next.any_point_from, target);
    RETURN_IF_ERROR(next.Store(env_, dir_));
    manifest_ = std::move(next);
  }
  files.clear();  // a segment file held here could not be reused
  return DropThrough(target);
}

InitialSyncState Replica::GetInitialSync() const {
  std::lock_guard ml(meta_mu_);
  InitialSyncState st;
  st.running = manifest_.initial_sync;
  st.seeded = manifest_.seeded;
  st.offset = manifest_.sync_offset;
  st.consistent_from = manifest_.consistent_from;
  return st;
}

Status Replica::WriteBase(uint64_t offset, std::string_view data) {
  {
    std::lock_guard ml(meta_mu_);
    if (!manifest_.initial_sync) {
      return FailedPrecondition("no initial sync is running on this replica; its base is "
                                "written only by retention");
    }
  }
  const uint64_t bs = manifest_.block_size;
  if (offset % bs || data.size() % bs || offset > manifest_.size ||
      data.size() > manifest_.size - offset) {
    return InvalidArgument("base write at " + std::to_string(offset) + " of " +
                           std::to_string(data.size()) + " bytes is not whole blocks inside the "
                           "volume of " + std::to_string(manifest_.size) + " bytes");
  }
  RETURN_IF_ERROR(base_->WriteAt(offset, data));
  // The sync makes progress durable every few dozen MiB: writing back as the data arrives
  // keeps the disk busy meanwhile instead of idle between those syncs.
  base_->StartWriteback(offset, data.size());
  return Status::Ok();
}

Status Replica::ZeroBase(uint64_t offset, uint64_t length) {
  {
    std::lock_guard ml(meta_mu_);
    if (!manifest_.initial_sync) {
      return FailedPrecondition("no initial sync is running on this replica");
    }
  }
  const uint64_t bs = manifest_.block_size;
  if (offset % bs || length % bs || offset > manifest_.size || length > manifest_.size - offset) {
    return InvalidArgument("base zero range is not whole blocks inside the volume");
  }
  return base_->PunchHole(offset, length);
}

Status Replica::ReadBase(uint64_t offset, size_t n, void* dst) const {
  if (offset > manifest_.size || n > manifest_.size - offset) {
    return OutOfRange("base read past the volume's end");
  }
  ASSIGN_OR_RETURN(size_t got, base_->ReadAt(offset, n, dst));
  if (got < n) std::memset(static_cast<char*>(dst) + got, 0, n - got);
  return Status::Ok();
}

Status Replica::SaveSyncProgress(uint64_t offset) {
  RETURN_IF_ERROR(base_->Sync());
  std::lock_guard ml(meta_mu_);
  if (!manifest_.initial_sync) return FailedPrecondition("no initial sync is running");
  // What was written since the last save is durable now, and the target seldom reads its
  // base: a sync of a large disk keeps only a window of it in the page cache, not all of it.
  if (offset > manifest_.sync_offset) {
    base_->DropCache(manifest_.sync_offset, offset - manifest_.sync_offset);
  }
  Manifest next = manifest_;
  next.sync_offset = std::min(offset, manifest_.size);
  RETURN_IF_ERROR(next.Store(env_, dir_));
  manifest_ = std::move(next);
  return Status::Ok();
}

Status Replica::FinishInitialSync(uint64_t consistent_from) {
  RETURN_IF_ERROR(base_->Sync());
  std::lock_guard ml(meta_mu_);
  if (!manifest_.initial_sync) return FailedPrecondition("no initial sync is running");
  if (consistent_from > published_seq_.load() && consistent_from > manifest_.base_seq) {
    return FailedPrecondition("the initial sync ends at seq " + std::to_string(consistent_from) +
                              " but the journal holds only up to " +
                              std::to_string(published_seq_.load()));
  }
  Manifest next = manifest_;
  next.initial_sync = false;
  next.sync_offset = manifest_.size;
  next.consistent_from = std::max(consistent_from, manifest_.base_seq);
  RETURN_IF_ERROR(next.Store(env_, dir_));
  manifest_ = std::move(next);
  return Status::Ok();
}

Status Replica::BeginResync(uint64_t missing_from, uint64_t resume_at) {
  std::lock_guard wl(write_mu_);
  if (!write_error_.ok()) return write_error_;
  if (!writers_.empty() || leading_ || in_flight_ > 0) {
    return FailedPrecondition("appends are in progress; a resync starts between them");
  }
  if (missing_from != next_seq_) {
    return FailedPrecondition("a resync must start at the next seq " + std::to_string(next_seq_) +
                              ", not " + std::to_string(missing_from));
  }
  if (resume_at < missing_from) {
    return InvalidArgument("a resync cannot resume at seq " + std::to_string(resume_at) +
                           " before " + std::to_string(missing_from));
  }
  {
    std::lock_guard ml(meta_mu_);
    Manifest next = manifest_;
    // A second drop during an open window adds a jump; EndResync closes them together.
    std::erase_if(next.gaps, [&](const Gap& g) { return g.missing_from == missing_from; });
    next.gaps.push_back({missing_from, resume_at, 0});
    RETURN_IF_ERROR(next.Store(env_, dir_));
    manifest_ = std::move(next);
  }
  if (resume_at != next_seq_) {
    RETURN_IF_ERROR(RollTo(resume_at));
    next_seq_ = resume_at;
  }
  return Status::Ok();
}

Status Replica::EndResync(uint64_t consistent_from) {
  std::lock_guard ml(meta_mu_);
  Manifest next = manifest_;
  uint64_t resumed = 0;
  for (const Gap& g : next.gaps) {
    if (g.consistent_from == 0) resumed = std::max(resumed, g.resume_at);
  }
  if (resumed == 0) return FailedPrecondition("no resync is open on this replica");
  if (consistent_from < resumed || consistent_from > published_seq_.load()) {
    return FailedPrecondition("a resync that resumed at seq " + std::to_string(resumed) +
                              " cannot end at seq " + std::to_string(consistent_from) +
                              " (the journal holds up to " +
                              std::to_string(published_seq_.load()) + ")");
  }
  for (Gap& g : next.gaps) {
    if (g.consistent_from == 0) g.consistent_from = consistent_from;
  }
  RETURN_IF_ERROR(next.Store(env_, dir_));
  manifest_ = std::move(next);
  return Status::Ok();
}

uint64_t Replica::OpenResync() const {
  std::lock_guard ml(meta_mu_);
  for (const Gap& g : manifest_.gaps) {
    if (g.consistent_from == 0) return g.missing_from;
  }
  return 0;
}

}  // namespace ferry::journal
