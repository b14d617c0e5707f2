// Replica: open/create, recovery, group-commit appends, points, pins, health.
// Views' reads live in replica_read.cc; retention in replica_retention.cc; overlays and
// commit in replica_overlays.cc.
#include "journal/replica.h"

#include <algorithm>
#include <cinttypes>
#include <random>

#include "base/bytes.h"
#include "journal/overlay.h"
#include "journal/segment.h"
#include "journal/view.h"

namespace ferry::journal {

// Two commits in flight overlap one batch's write with the previous one's fdatasync. Measured
// (bench/RESULTS.md, "a."): +25% with 64 appenders, the same with 16; four in flight made
// batches smaller and throughput lower.
// Batches written and not yet published: two through the page cache (one is written while
// the other syncs); one with direct appends, whose writes go one at a time anyway: while it is
// written, every append that arrives joins the next batch, and larger batches won over
// copying a smaller next batch meanwhile (docs/decisions/0014).
constexpr size_t kMaxCommitsInFlight = 2;

struct Replica::Writer {
  std::span<Record> records;
  Durability durability = Durability::kSynced;
  Status status;
  uint64_t last_seq = 0;
  bool done = false;
  std::condition_variable cv;
};

std::string_view HealthLevelName(Health::Level level) {
  switch (level) {
    case Health::Level::kHealthy: return "Healthy";
    case Health::Level::kWarning: return "Warning";
    case Health::Level::kCritical: return "Critical";
  }
  return "Unknown";
}

Replica::Replica(std::string dir, const ReplicaOptions& options)
    : dir_(std::move(dir)),
      journal_dir_(JoinPath(dir_, "journal")),
      options_(options),
      env_(options.env) {}

Replica::~Replica() {
  commit_stop_.store(true);
  if (commit_thread_.joinable()) commit_thread_.join();
  // Direct appends leave zeros after the last record, up to the end of its block. Open cuts
  // them as a torn tail anyway; a clean close leaves the file as long as its records.
  std::lock_guard l(write_mu_);
  if (direct_ && active_ && write_error_.ok()) {
    auto size = active_->file()->Size();
    if (size.ok() && *size > active_->size()) (void)active_->file()->Truncate(active_->size());
  }
}

bool Replica::committed() const {
  std::lock_guard l(meta_mu_);
  return manifest_.state == "committed";
}

Result<std::shared_ptr<Replica>> Replica::Create(const std::string& dir, const CreateParams& p,
                                                 const ReplicaOptions& options) {
  if (p.block_size < 512 || p.block_size > 65536 || (p.block_size & (p.block_size - 1))) {
    return InvalidArgument("block size " + std::to_string(p.block_size) +
                           " must be a power of two from 512 to 65536");
  }
  if (p.size == 0 || p.size % p.block_size) {
    return InvalidArgument("volume size " + std::to_string(p.size) +
                           " must be a positive multiple of the block size " +
                           std::to_string(p.block_size));
  }
  if (p.size / p.block_size >= (1ull << 56)) return InvalidArgument("volume too large");
  Env* env = options.env;
  if (env->Exists(JoinPath(dir, "MANIFEST"))) {
    return AlreadyExists(dir + " already holds a replica; open it or choose another directory");
  }
  RETURN_IF_ERROR(env->CreateDir(dir));
  RETURN_IF_ERROR(env->CreateDir(JoinPath(dir, "journal")));
  RETURN_IF_ERROR(env->CreateDir(JoinPath(dir, "overlays")));
  RETURN_IF_ERROR(env->SyncDir(dir));

  Manifest m;
  m.volume_id = p.volume_id;
  m.history_id = p.history_id;
  std::random_device rd;
  if (m.volume_id == Id128{}) {
    for (auto& b : m.volume_id) b = static_cast<uint8_t>(rd());
  }
  if (m.history_id == 0) m.history_id = (uint64_t{rd()} << 32) | rd() | 1;
  m.size = p.size;
  m.block_size = p.block_size;
  m.created_ns = options.clock->NowNanos();
  m.any_point_from = 0;
  if (p.first_seq == 0) return InvalidArgument("the first seq of a journal is at least 1");
  m.base_seq = p.first_seq - 1;
  m.role = p.pending_log ? "pending-log" : "replica";
  m.initial_sync = p.initial_sync;

  {
    ASSIGN_OR_RETURN(auto base, env->OpenFile(JoinPath(dir, "base.img"), OpenMode::kCreate));
    RETURN_IF_ERROR(base->Truncate(0));
    RETURN_IF_ERROR(base->Truncate(p.size));
    if (!p.seed_path.empty()) {
      if (!p.initial_sync) return InvalidArgument("a seed is only used by an initial sync");
      ASSIGN_OR_RETURN(auto seed, env->OpenFile(p.seed_path, OpenMode::kRead));
      ASSIGN_OR_RETURN(uint64_t seed_size, seed->Size());
      if (seed_size != p.size) {
        return InvalidArgument("seed " + p.seed_path + " is " + std::to_string(seed_size) +
                               " bytes; the volume is " + std::to_string(p.size));
      }
      // Copy what the seed holds, keeping its holes and skipping zero blocks.
      std::string buf;
      for (uint64_t off = 0; off < p.size;) {
        ASSIGN_OR_RETURN(uint64_t data, seed->NextData(off));
        if (data >= p.size) break;
        data -= data % p.block_size;
        const uint64_t n = std::min<uint64_t>(4u << 20, p.size - data);
        buf.resize(n);
        ASSIGN_OR_RETURN(size_t got, seed->ReadAt(data, n, buf.data()));
        if (got < n) std::fill(buf.begin() + static_cast<std::ptrdiff_t>(got), buf.end(), '\0');
        // Runs of non-zero blocks, one write each.
        const std::string_view all(buf);
        for (uint64_t b = 0; b < n;) {
          if (IsAllZero(all.substr(b, p.block_size))) {
            b += p.block_size;
            continue;
          }
          uint64_t e = b + p.block_size;
          while (e < n && !IsAllZero(all.substr(e, p.block_size))) e += p.block_size;
          RETURN_IF_ERROR(base->WriteAt(data + b, all.substr(b, e - b)));
          b = e;
        }
        off = data + n;
      }
      m.seeded = true;
    }
    RETURN_IF_ERROR(base->Sync());
  }
  // The MANIFEST is written last: a directory without one holds no replica.
  RETURN_IF_ERROR(m.Store(env, dir));
  return Open(dir, options);
}

Result<std::shared_ptr<Replica>> Replica::Open(const std::string& dir,
                                               const ReplicaOptions& options) {
  std::shared_ptr<Replica> r(new Replica(dir, options));
  RETURN_IF_ERROR(r->Load());
  RETURN_IF_ERROR(r->Recover());
  // A commit interrupted by a crash resumes where its block log says it stopped.
  for (const std::string& name : r->ListOverlays()) {
    auto o = r->GetOverlay(name);
    if (o.ok() && (*o)->state() == OverlayState::kCommitting && !r->committed()) {
      RETURN_IF_ERROR(r->StartCommit(name));
    }
  }
  return r;
}

Status Replica::Load() {
  ASSIGN_OR_RETURN(manifest_, Manifest::Load(env_, dir_));
  auto lock = env_->LockFile(JoinPath(dir_, "LOCK"));
  if (!lock.ok()) {
    if (lock.status().code() == Code::kFailedPrecondition) {
      return FailedPrecondition("replica " + dir_ +
                                " is in use by another process (a ferry node or another ferry "
                                "command); stop that process or wait for it");
    }
    return lock.status();
  }
  lock_ = std::move(*lock);
  direct_ = options_.direct_appends && manifest_.role != "pending-log";
  // What we act on must be durable: a MANIFEST renamed into place by a store that then
  // failed, or segment files whose creation was not yet synced.
  RETURN_IF_ERROR(env_->SyncDir(dir_));
  if (manifest_.state == "committed") return Status::Ok();

  std::string base_path = JoinPath(dir_, "base.img");
  if (!env_->Exists(base_path)) {
    return DataLoss(base_path + " is missing: the replica's base image is gone");
  }
  ASSIGN_OR_RETURN(auto base, env_->OpenFile(base_path, OpenMode::kReadWrite));
  base_ = std::shared_ptr<File>(std::move(base));

  RETURN_IF_ERROR(env_->CreateDir(journal_dir_));
  RETURN_IF_ERROR(env_->SyncDir(journal_dir_));
  ASSIGN_OR_RETURN(auto names, env_->ListDir(journal_dir_));
  std::vector<uint64_t> numbers;
  for (const std::string& name : names) {
    uint64_t n;
    if (ParseSegmentFileName(name, &n)) {
      numbers.push_back(n);
    } else if ((name.size() > 8 && name.substr(name.size() - 8) == ".compact") ||
               name.starts_with(kSpareSegmentPrefix)) {
      // A compaction that did not finish (the original segment is intact), or a trimmed
      // segment kept for reuse.
      RETURN_IF_ERROR(env_->RemoveFile(JoinPath(journal_dir_, name)));
    }
  }
  std::sort(numbers.begin(), numbers.end());

  const uint64_t base_seq = manifest_.base_seq;
  uint64_t prev_last = 0;      // last record seq seen in the previous segment (0: none)
  uint64_t prev_expect = 0;    // seq the next segment must start at (0: unknown)
  uint64_t highest_seq = base_seq;
  bool have_tail = false;
  ScanResult tail;
  for (size_t i = 0; i < numbers.size(); ++i) {
    const uint64_t number = numbers[i];
    const bool last = i + 1 == numbers.size();
    std::string path = JoinPath(journal_dir_, SegmentFileName(number));
    ASSIGN_OR_RETURN(auto file, env_->OpenFile(path, OpenMode::kRead));
    ScanOptions so;
    so.allow_torn_tail = last;
    so.verify_payloads = last;
    auto scanned = ScanSegment(
        file.get(), number, so,
        [&](const RecordHeader& h, uint64_t off, std::string_view payload) -> Status {
          // Merged records still count for the timestamp floor: timestamps never go back.
          const int64_t ts = std::max(h.timestamp_ns, last_ts_);
          last_ts_ = ts;
          if (h.seq <= base_seq) return Status::Ok();  // already in the base
          uint64_t first_block = 0;
          uint32_t nblocks = 0;
          if (h.type == RecordType::kMarker) {
            ASSIGN_OR_RETURN(markers_[h.seq], DecodeMarkerBody(payload));
          } else {
            if (h.offset % manifest_.block_size || h.length % manifest_.block_size ||
                h.offset > manifest_.size || h.length > manifest_.size - h.offset) {
              return DataLoss("segment " + std::to_string(number) + " offset " +
                              std::to_string(off) + ": record outside the volume");
            }
            first_block = h.offset / manifest_.block_size;
            nblocks = static_cast<uint32_t>(h.length / manifest_.block_size);
          }
          index_.Add(IndexEntry::Make(h.seq, ts, h.type, first_block, nblocks,
                                      static_cast<uint32_t>(number),
                                      static_cast<uint32_t>(off + kRecordHeaderSize)));
          return Status::Ok();
        });
    if (!scanned.ok()) return scanned.status();
    const ScanResult& s = *scanned;
    if (s.header.block_size != 0 && s.header.block_size != manifest_.block_size) {
      return DataLoss("segment " + std::to_string(number) + ": block size differs from MANIFEST");
    }
    if (s.valid_end >= kSegmentHeaderSize && s.header.volume_id != manifest_.volume_id) {
      return DataLoss("segment " + std::to_string(number) + ": belongs to another volume");
    }
    if (s.valid_end >= kSegmentHeaderSize) {
      // Continuity: nothing may be missing between segments.
      auto bridged = [&](uint64_t from, uint64_t to) {
        for (const Gap& g : manifest_.gaps) {
          if (g.missing_from == from && g.resume_at == to) return true;
        }
        return false;
      };
      if (prev_expect != 0 && s.header.first_seq != prev_expect &&
          !bridged(prev_expect, s.header.first_seq)) {
        return DataLoss("missing records " + std::to_string(prev_expect) + ".." +
                        std::to_string(s.header.first_seq - 1) + " before segment " +
                        std::to_string(number));
      }
      if (i == 0 && s.header.first_seq > base_seq + 1 && !bridged(base_seq + 1, s.header.first_seq)) {
        return DataLoss("missing records " + std::to_string(base_seq + 1) + ".." +
                        std::to_string(s.header.first_seq - 1) +
                        " between the base and the first segment");
      }
      if (prev_last != 0 && s.records > 0 && s.header.first_seq <= prev_last) {
        return DataLoss("segment " + std::to_string(number) + " overlaps the previous one");
      }
      uint64_t seg_last = s.records ? s.last_seq : s.header.first_seq - 1;
      prev_last = s.records ? s.last_seq : prev_last;
      prev_expect = (s.header.flags & kSegmentCompacted) ? 0 : seg_last + 1;
      if (s.header.flags & kSegmentCompacted) {
        // A compacted segment may have lost its last records; the next header says where
        // the sequence resumes.
        prev_expect = 0;
      }
      highest_seq = std::max(highest_seq, seg_last);
    }
    segments_[static_cast<uint32_t>(number)] = std::shared_ptr<File>(std::move(file));
    segment_bytes_[static_cast<uint32_t>(number)] = s.valid_end;
    if (last) {
      have_tail = true;
      tail = s;
    }
  }
  next_seq_ = highest_seq + 1;
  next_ts_floor_ = last_ts_;
  published_seq_.store(highest_seq);
  synced_seq_.store(highest_seq);  // Reopen below syncs what it keeps

  // Reopen the last segment for appending (truncating a torn tail), or start a new one.
  if (have_tail && tail.valid_end >= kSegmentHeaderSize) {
    uint32_t number = static_cast<uint32_t>(tail.header.segment_number);
    ASSIGN_OR_RETURN(active_, SegmentWriter::Reopen(env_, journal_dir_, number, tail.valid_end));
    segments_[number] = active_->shared_file();
  } else {
    uint64_t number = 1;
    if (have_tail) {
      // Its header never became durable: it holds nothing.
      number = tail.header.segment_number;
      segments_.erase(static_cast<uint32_t>(number));
      segment_bytes_.erase(static_cast<uint32_t>(number));
      RETURN_IF_ERROR(env_->RemoveFile(JoinPath(journal_dir_, SegmentFileName(number))));
    } else if (!numbers.empty()) {
      number = numbers.back() + 1;
    }
    SegmentHeader h;
    h.segment_number = number;
    h.first_seq = next_seq_;
    h.block_size = manifest_.block_size;
    h.volume_id = manifest_.volume_id;
    ASSIGN_OR_RETURN(active_, SegmentWriter::Create(env_, journal_dir_, h));
    segments_[static_cast<uint32_t>(number)] = active_->shared_file();
    segment_bytes_[static_cast<uint32_t>(number)] = active_->size();
  }
  return Status::Ok();
}

Status Replica::StoreManifestLocked() { return manifest_.Store(env_, dir_); }

const Gap* Replica::GapAtLocked(uint64_t seq) const {
  for (const Gap& g : manifest_.gaps) {
    if (seq >= g.missing_from && (g.consistent_from == 0 || seq < g.consistent_from)) return &g;
  }
  return nullptr;
}

uint64_t Replica::OldestPointLocked() const {
  return std::max(manifest_.base_seq, manifest_.merge_target);
}

Status Replica::ValidatePointLocked(uint64_t seq) const {
  if (manifest_.role == "pending-log") {
    return FailedPrecondition("this is a pending log: it holds only the writes not yet "
                              "replicated, not the volume; read the volume through its splitter "
                              "export, or a recovery point from the replica at the target");
  }
  if (manifest_.initial_sync) {
    return FailedPrecondition("the initial sync is still copying the volume (" +
                              std::to_string(manifest_.sync_offset * 100 / manifest_.size) +
                              "% done); no recovery point is consistent until it finishes");
  }
  if (const Gap* g = GapAtLocked(seq)) {
    return FailedPrecondition(
        "point " + std::to_string(seq) + " falls in a resync (from seq " +
        std::to_string(g->missing_from) +
        (g->consistent_from ? " to " + std::to_string(g->consistent_from) + ")"
                            : ", still running)") +
        ": it is not consistent; choose a point before seq " + std::to_string(g->missing_from) +
        (g->consistent_from ? " or at/after " + std::to_string(g->consistent_from) : ""));
  }
  if (seq < manifest_.consistent_from) {
    return OutOfRange("point " + std::to_string(seq) + " is before seq " +
                      std::to_string(manifest_.consistent_from) +
                      ", where the initial sync finished; earlier points are not consistent — "
                      "choose a point at or after it");
  }
  uint64_t oldest = OldestPointLocked();
  uint64_t last;
  {
    std::shared_lock il(index_mu_);
    last = std::max(index_.last_seq(), manifest_.base_seq);
    if (seq > last) {
      return OutOfRange("point " + std::to_string(seq) + " is newer than the latest point " +
                        std::to_string(last));
    }
    if (seq < oldest) {
      return OutOfRange("point " + std::to_string(seq) +
                        " is older than the oldest retained point " + std::to_string(oldest) +
                        "; choose a point at or after it");
    }
    if (thinning_markers_.count(seq)) {
      return NotFound("point " + std::to_string(seq) +
                      " is being thinned away by retention; list the points and choose a kept one");
    }
    if (seq < manifest_.any_point_from && seq != oldest && !markers_.count(seq)) {
      return NotFound("point " + std::to_string(seq) +
                      " was thinned away (history before seq " +
                      std::to_string(manifest_.any_point_from) +
                      " keeps only its markers); list the points and choose a marker");
    }
  }
  return Status::Ok();
}

Result<PointInfo> Replica::ResolvePoint(const PointSpec& spec) const {
  std::lock_guard ml(meta_mu_);
  if (manifest_.state == "committed") {
    return FailedPrecondition("replica was committed to overlay " + manifest_.committed_overlay +
                              "; it has no recovery points any more");
  }
  uint64_t seq = 0;
  {
    std::shared_lock il(index_mu_);
    const uint64_t last = std::max(index_.last_seq(), manifest_.base_seq);
    switch (spec.kind) {
      case PointSpec::Kind::kLatest:
        seq = last;
        // During a resync the newest consistent point is the one before it.
        if (const Gap* g = GapAtLocked(seq)) seq = g->missing_from - 1;
        break;
      case PointSpec::Kind::kSeq:
        seq = spec.seq;
        break;
      case PointSpec::Kind::kTime: {
        uint64_t s = index_.SeqAtTime(spec.time_ns);
        if (s == 0 || s < OldestPointLocked()) {
          int64_t oldest_ns = 0;
          int64_t p = index_.FindSeq(OldestPointLocked() + 1);
          if (p >= 0) oldest_ns = index_.at(static_cast<size_t>(p)).timestamp_ns();
          return OutOfRange("no point at or before " + FormatTime(spec.time_ns) +
                            " is retained; the oldest is after " + FormatTime(oldest_ns));
        }
        seq = s;
        // Older history keeps only markers: take the newest marker at or before the time.
        if (seq < manifest_.any_point_from && !markers_.count(seq)) {
          auto it = markers_.upper_bound(seq);
          if (it == markers_.begin()) {
            seq = OldestPointLocked();
          } else {
            seq = std::prev(it)->first;
          }
        }
        break;
      }
      case PointSpec::Kind::kLatestOfKind: {
        for (auto it = markers_.rbegin(); it != markers_.rend(); ++it) {
          if (it->second.kind == spec.marker_kind && !GapAtLocked(it->first)) {
            seq = it->first;
            break;
          }
        }
        if (seq == 0) {
          return NotFound("no " + std::string(MarkerKindName(spec.marker_kind)) +
                          " recovery point is retained");
        }
        break;
      }
      case PointSpec::Kind::kMarkerId: {
        for (const auto& [s, m] : markers_) {
          if (m.marker_id == spec.marker_id) seq = s;
        }
        if (seq == 0) return NotFound("no marker with id " + IdToHex(spec.marker_id));
        break;
      }
    }
  }
  RETURN_IF_ERROR(ValidatePointLocked(seq));
  PointInfo info;
  info.seq = seq;
  std::shared_lock il(index_mu_);
  int64_t pos = index_.FindSeq(seq);
  if (pos >= 0) info.timestamp_ns = index_.at(static_cast<size_t>(pos)).timestamp_ns();
  auto m = markers_.find(seq);
  if (m != markers_.end()) {
    info.is_marker = true;
    info.marker = m->second;
  }
  return info;
}

Result<PointPage> Replica::ListPoints(const PointFilter& filter) const {
  if (filter.limit == 0) return InvalidArgument("page limit must be at least 1");
  std::lock_guard ml(meta_mu_);
  std::shared_lock il(index_mu_);
  PointPage page;
  if (manifest_.initial_sync || manifest_.role == "pending-log") return page;
  const uint64_t oldest = OldestPointLocked();
  auto it = filter.before_seq ? markers_.lower_bound(filter.before_seq) : markers_.end();
  while (it != markers_.begin()) {
    --it;
    if (it->first <= oldest || it->first < manifest_.consistent_from) break;
    if (GapAtLocked(it->first)) continue;
    if (filter.kind && it->second.kind != *filter.kind) continue;
    int64_t pos = index_.FindSeq(it->first);
    if (pos < 0) continue;
    int64_t ts = index_.at(static_cast<size_t>(pos)).timestamp_ns();
    if (ts > filter.to_ns) continue;
    if (ts < filter.from_ns) break;  // timestamps ascend with seq
    if (page.points.size() == filter.limit) {
      page.next_token = page.points.back().seq;
      break;
    }
    page.points.push_back(PointInfo{it->first, ts, true, it->second});
  }
  return page;
}

ReplicaStats Replica::Stats() const {
  std::lock_guard ml(meta_mu_);
  std::shared_lock il(index_mu_);
  ReplicaStats s;
  s.oldest_point = OldestPointLocked();
  s.any_point_from = manifest_.any_point_from;
  if (index_.size()) {
    s.oldest_point_ns = index_.at(0).timestamp_ns();
    s.last_ns = index_.at(index_.size() - 1).timestamp_ns();
  }
  s.last_seq = std::max(index_.last_seq(), manifest_.base_seq);
  s.records = index_.size();
  s.markers = markers_.size();
  s.segments = segments_.size();
  for (const auto& [n, bytes] : segment_bytes_) s.journal_bytes += bytes;
  s.index_bytes = index_.MemoryBytes();
  s.syncs = syncs_.load();
  s.appends = appends_.load();
  return s;
}

Health Replica::GetHealth() const {
  Health h;
  {
    std::shared_lock il(index_mu_);
    for (const auto& [n, bytes] : segment_bytes_) h.journal_bytes += bytes;
  }
  {
    std::lock_guard wl(write_mu_);
    for (const Spare& spare : spares_) h.spare_bytes += spare.bytes;
  }
  auto space = env_->GetSpace(dir_);
  if (!space.ok()) {
    h.level = Health::Level::kWarning;
    h.problems.push_back("cannot read free space: " + space.status().ToString());
  } else {
    h.free_bytes = space->free_bytes;
    h.total_bytes = space->total_bytes;
    // Spare segments give their space back before a write is refused (CheckSpace).
    const uint64_t free = space->free_bytes + h.spare_bytes;
    // Critical while writes are refused: below the reserve, or too little above it for the
    // batch that was last refused (CheckSpace).
    if (free < options_.min_free_bytes + refused_bytes_.load()) {
      h.level = Health::Level::kCritical;
      h.problems.push_back("journal space exhausted: " + std::to_string(free) +
                           " bytes free, " + std::to_string(options_.min_free_bytes) +
                           " reserved; new writes are refused and history is kept — free "
                           "space, add capacity, or shorten the retention window");
    } else if (static_cast<double>(free) <
               options_.warn_free_fraction * static_cast<double>(space->total_bytes)) {
      h.level = Health::Level::kWarning;
      h.problems.push_back("journal space low: " + std::to_string(free) +
                           " bytes free of " + std::to_string(space->total_bytes) +
                           "; history will not be shrunk to make room — add capacity or "
                           "shorten the retention window before writes are refused");
    }
  }
  std::lock_guard wl(write_mu_);
  if (!write_error_.ok()) {
    h.level = Health::Level::kCritical;
    h.problems.push_back("journal writes stopped after an I/O error (" +
                         write_error_.ToString() + "); reopen the replica");
  }
  return h;
}

Status Replica::CheckSpace(uint64_t incoming) {
  constexpr uint64_t kSpaceSlack = 256ull << 20;
  constexpr int64_t kSpaceRecheckNs = 1'000'000'000;
  const int64_t now = options_.clock->NowNanos();
  const uint64_t spent = space_appended_since_ + incoming;
  if (space_seen_ns_ != 0 && now - space_seen_ns_ < kSpaceRecheckNs &&
      space_seen_free_ > spent && space_seen_free_ - spent >= options_.min_free_bytes + kSpaceSlack) {
    space_appended_since_ = spent;
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(SpaceInfo space, env_->GetSpace(dir_));
  auto short_of_space = [&] {
    return space.free_bytes < incoming || space.free_bytes - incoming < options_.min_free_bytes;
  };
  if (short_of_space() && !spares_.empty()) {
    // Spare segment files only spare the filesystem work: they give their space back before
    // an append is refused.
    for (const Spare& spare : spares_) (void)env_->RemoveFile(spare.path);
    spares_.clear();
    ASSIGN_OR_RETURN(space, env_->GetSpace(dir_));
  }
  space_seen_free_ = space.free_bytes;
  space_seen_ns_ = now;
  space_appended_since_ = incoming;
  if (short_of_space()) {
    space_seen_ns_ = 0;  // look again next time: space may be freed any moment
    return ResourceExhausted("no space for the journal: " + std::to_string(space.free_bytes) +
                             " bytes free, " + std::to_string(incoming) + " needed and " +
                             std::to_string(options_.min_free_bytes) +
                             " kept in reserve. History is never shrunk automatically: free "
                             "space, add capacity, or shorten the retention window");
  }
  return Status::Ok();
}

Result<uint64_t> Replica::Append(Record record, Durability durability) {
  return Append(std::span<Record>(&record, 1), durability);
}

Status Replica::Sync() {
  std::shared_ptr<File> file;
  uint64_t through;
  {
    std::lock_guard l(write_mu_);
    if (!write_error_.ok()) return write_error_;
    if (!active_) return Status::Ok();
    file = active_->shared_file();
    unsynced_ = false;
    through = published_seq_.load();  // earlier segments are synced; later batches sync themselves
  }
  Status s = file->Sync();
  if (!s.ok()) {
    std::lock_guard l(write_mu_);
    write_error_ = s.WithContext("journal sync failed; reopen the replica to recover");
    return s;
  }
  uint64_t cur = synced_seq_.load();
  while (cur < through && !synced_seq_.compare_exchange_weak(cur, through)) {
  }
  return s;
}

Result<uint64_t> Replica::Append(std::span<Record> records, Durability durability) {
  if (records.empty()) return InvalidArgument("nothing to append");
  for (const Record& r : records) RETURN_IF_ERROR(ValidateRecord(r, manifest_.size, manifest_.block_size));
  appends_.fetch_add(1);
  Writer w;
  w.records = records;
  w.durability = durability;
  std::unique_lock l(write_mu_);
  writers_.push_back(&w);
  while (!w.done &&
         (&w != writers_.front() || leading_ || in_flight_ >= MaxCommitsInFlight())) {
    w.cv.wait(l);
  }
  if (!w.done) {
    // This writer leads: it takes everything queued (up to a cap) as one batch.
    leading_ = true;
    std::vector<Writer*> batch;
    uint64_t bytes = 0;
    while (!writers_.empty()) {
      Writer* q = writers_.front();
      uint64_t b = 0;
      for (const Record& r : q->records) b += kRecordHeaderSize + r.payload().size();
      if (!batch.empty() && bytes + b > (32u << 20)) break;
      batch.push_back(q);
      bytes += b;
      writers_.pop_front();
    }
    CommitBatch(batch, l);
  }
  if (!w.status.ok()) return w.status;
  return w.last_seq;
}

size_t Replica::MaxCommitsInFlight() const { return direct_ ? 1 : kMaxCommitsInFlight; }

void Replica::WakeFrontLocked() {
  if (!writers_.empty()) writers_.front()->cv.notify_one();
}

void Replica::CommitBatch(std::vector<Writer*>& batch, std::unique_lock<std::mutex>& l) {
  std::vector<Writer*> good;  // the writers whose records were given seqs
  // Ends the batch for its writers (the leader's own writer is among them). A failed batch
  // takes back the seqs it gave.
  auto finish = [&](const Status& s) {
    if (!s.ok()) {
      for (Writer* q : good) {
        for (Record& r : q->records) r.seq = 0;
      }
    }
    for (Writer* q : batch) {
      if (!s.ok() && q->status.ok()) q->status = s;
      q->done = true;
      q->cv.notify_one();
    }
  };
  // Before anything is written: give up leadership and fail the batch.
  auto refuse = [&](const Status& s) {
    leading_ = false;
    WakeFrontLocked();
    finish(s);
  };
  if (!write_error_.ok()) return refuse(write_error_);
  {
    std::lock_guard ml(meta_mu_);
    if (manifest_.state == "committed") {
      return refuse(FailedPrecondition("replica was committed to overlay " +
                                       manifest_.committed_overlay +
                                       "; it accepts no more journal records"));
    }
  }
  // Assign sequence numbers and timestamps; a writer with a wrong explicit seq fails alone.
  const uint64_t first_seq = next_seq_;
  uint64_t seq = first_seq;
  int64_t now = options_.clock->NowNanos();
  int64_t ts_floor = next_ts_floor_;
  uint64_t bytes = 0;
  for (Writer* q : batch) {
    bool ok = true;
    for (size_t i = 0; i < q->records.size(); ++i) {
      uint64_t want = q->records[i].seq;
      if (want != 0 && want != seq + i) {
        q->status = InvalidArgument("record seq " + std::to_string(want) + " out of order: the "
                                    "journal expects seq " + std::to_string(seq + i));
        ok = false;
        break;
      }
    }
    if (!ok) continue;
    for (Record& r : q->records) {
      r.seq = seq++;
      if (r.timestamp_ns == 0) r.timestamp_ns = now;
      r.timestamp_ns = std::max(r.timestamp_ns, ts_floor);
      ts_floor = r.timestamp_ns;
      bytes += kRecordHeaderSize + (r.type == RecordType::kMarker ? 0 : r.payload().size());
    }
    q->last_seq = seq - 1;
    good.push_back(q);
  }
  if (good.empty()) return refuse(Status::Ok());

  if (Status space = CheckSpace(bytes); !space.ok()) {
    refused_bytes_.store(bytes);
    return refuse(space);
  }
  if (active_->size() >= options_.segment_target_bytes) {
    // A segment is sealed only once everything written to it is published (or failed).
    flight_cv_.wait(l, [&] { return in_flight_ == 0; });
    if (!write_error_.ok()) return refuse(write_error_);
    if (Status s = RollTo(next_seq_); !s.ok()) {
      write_error_ = s;
      return refuse(s);
    }
  }

  // Encode: headers into one buffer; payloads are written from the callers' memory.
  std::string headers;
  std::vector<std::string> marker_bodies;
  size_t nrec = 0;
  for (Writer* q : good) nrec += q->records.size();
  headers.reserve(nrec * kRecordHeaderSize);
  marker_bodies.reserve(nrec);
  struct Pending {
    const Record* r;
    size_t header_at;
    size_t marker_body = SIZE_MAX;
  };
  std::vector<Pending> pend;
  pend.reserve(nrec);
  for (Writer* q : good) {
    for (const Record& r : q->records) {
      Pending p{&r, headers.size()};
      std::string_view payload;
      if (r.type == RecordType::kMarker) {
        p.marker_body = marker_bodies.size();
        marker_bodies.push_back(EncodeMarkerBody(r.marker));
        payload = marker_bodies.back();
      } else if (r.type == RecordType::kWrite) {
        payload = r.payload();
      }
      EncodeRecordHeader(r, payload, &headers);
      pend.push_back(p);
    }
  }
  std::vector<std::string_view> pieces;
  pieces.reserve(nrec * 2);
  std::vector<IndexEntry> entries;
  entries.reserve(nrec);
  const uint64_t start = active_->size();
  uint64_t off = start;
  const uint32_t segment = static_cast<uint32_t>(active_->segment_number());
  for (const Pending& p : pend) {
    const Record& r = *p.r;
    pieces.push_back(std::string_view(headers).substr(p.header_at, kRecordHeaderSize));
    std::string_view payload = r.type == RecordType::kMarker ? std::string_view(marker_bodies[p.marker_body])
                               : r.type == RecordType::kWrite ? r.payload()
                                                              : std::string_view();
    if (!payload.empty()) pieces.push_back(payload);
    const bool marker = r.type == RecordType::kMarker;
    entries.push_back(IndexEntry::Make(
        r.seq, r.timestamp_ns, r.type, marker ? 0 : r.offset / manifest_.block_size,
        marker ? 0 : static_cast<uint32_t>(r.length / manifest_.block_size), segment,
        static_cast<uint32_t>(off + kRecordHeaderSize)));
    off += kRecordHeaderSize + payload.size();
  }

  bool sync = false;
  for (Writer* q : good) sync |= q->durability == Durability::kSynced;
  const bool direct = sync && direct_;
  // Write stage, under write_mu_: batches land in the file in seq order. A direct batch only
  // takes its place here; it is written, durably, at its turn below.
  SegmentWriter::Reservation reservation;
  std::vector<CacheHint> hints;
  if (direct) {
    auto r = active_->Reserve(pieces);
    if (!r.ok()) {
      write_error_ = r.status().WithContext("journal append failed; reopen the replica to recover");
      return refuse(write_error_);
    }
    reservation = std::move(*r);
  } else {
    if (Status s = active_->Write(pieces); !s.ok()) {
      write_error_ = s.WithContext("journal append failed; reopen the replica to recover");
      (void)active_->CutBackTo(start);  // a partial write must not look like records later
      return refuse(write_error_);
    }
    hints = NoteAppendedLocked(segment, start, active_->size());
  }
  if (!sync) unsynced_ = true;
  next_seq_ = seq;
  next_ts_floor_ = ts_floor;
  const uint64_t ticket = next_ticket_++;
  ++in_flight_;
  std::shared_ptr<File> file = active_->shared_file();
  leading_ = false;
  WakeFrontLocked();

  // Sync stage, outside the lock: the next batch is written meanwhile. One fdatasync covers
  // every batch written before it began.
  Status s;
  if (direct) {
    // Copied into the one direct buffer (one batch is in flight at a time), then written,
    // unless the journal failed meanwhile (another caller's Sync).
    l.unlock();
    DirectBatch batch_writer(reservation, pieces, &direct_buffer_);
    bool more = batch_writer.Fill();
    l.lock();
    if (write_error_.ok()) {
      l.unlock();
      while (more && s.ok()) {
        s = batch_writer.Write(file.get());
        if (s.ok()) more = batch_writer.Fill();
      }
      l.lock();
      syncs_.fetch_add(1);
    }
  } else if (sync) {
    l.unlock();
    s = file->Sync();
    l.lock();
    syncs_.fetch_add(1);
  }

  // Publish stage, in write order.
  flight_cv_.wait(l, [&] { return publish_turn_ == ticket; });
  if (!s.ok() && write_error_.ok()) {
    // The tail is uncertain now (a failed sync may have dropped pages). Batches written after
    // this one fail at their turn; cutting the segment back here keeps them from surviving,
    // after a hole, as records a later Open would take for damaged history.
    write_error_ = s.WithContext("journal append failed; reopen the replica to recover");
    if (active_ && active_->segment_number() == segment) (void)active_->CutBackTo(start);
  }
  if (!write_error_.ok()) {
    next_seq_ = std::min(next_seq_, first_seq);
    s = write_error_;
  } else {
    refused_bytes_.store(0);
    {
      std::unique_lock il(index_mu_);
      for (const IndexEntry& e : entries) index_.Add(e);
      for (const Pending& p : pend) {
        if (p.r->type == RecordType::kMarker) markers_[p.r->seq] = p.r->marker;
      }
      segment_bytes_[segment] = off;
      last_ts_ = ts_floor;
    }
    published_seq_.store(seq - 1);
    if (sync) synced_seq_.store(seq - 1);
  }
  ++publish_turn_;
  --in_flight_;
  flight_cv_.notify_all();
  WakeFrontLocked();
  finish(s);
  if (s.ok()) {
    { std::lock_guard al(append_mu_); }
    append_cv_.notify_all();
  }
  // The page-cache hints last, outside the lock: the batches behind this one publish without
  // waiting for them, and only the leader's own caller does.
  if (!hints.empty()) {
    l.unlock();
    for (const CacheHint& h : hints) {
      if (h.drop) {
        h.file->DropCache(h.offset, h.n);
      } else {
        h.file->StartWriteback(h.offset, h.n);
      }
    }
    hints.clear();
    l.lock();
  }
}

std::vector<Replica::CacheHint> Replica::NoteAppendedLocked(uint32_t segment, uint64_t begin,
                                                            uint64_t end) {
  std::vector<CacheHint> hints;
  const uint64_t half = options_.cache_window_bytes / 2;
  if (half == 0 || end <= begin) return hints;
  constexpr uint64_t kChunk = 4ull << 20;
  if (!dirty_ranges_.empty() && dirty_ranges_.back().segment == segment &&
      dirty_ranges_.back().end == begin && begin - dirty_ranges_.back().begin < kChunk) {
    dirty_ranges_.back().end = end;
  } else {
    dirty_ranges_.push_back({segment, begin, end});
  }
  dirty_range_bytes_ += end - begin;
  // A range whose segment was trimmed meanwhile (a link that keeps up) needs nothing: its
  // pages are overwritten when the file is reused, never written back for nothing.
  auto held = [&](uint32_t s) -> std::shared_ptr<File> {
    std::shared_lock il(index_mu_);
    auto it = segments_.find(s);
    return it == segments_.end() ? nullptr : it->second;
  };
  while (dirty_range_bytes_ > half && dirty_ranges_.size() > 1) {
    const CachedRange r = dirty_ranges_.front();
    dirty_ranges_.pop_front();
    dirty_range_bytes_ -= r.end - r.begin;
    if (auto f = held(r.segment)) {
      hints.push_back({std::move(f), false, r.begin, r.end - r.begin});
      writing_ranges_.push_back(r);
      writing_range_bytes_ += r.end - r.begin;
    }
  }
  while (writing_range_bytes_ > half) {
    const CachedRange r = writing_ranges_.front();
    writing_ranges_.pop_front();
    writing_range_bytes_ -= r.end - r.begin;
    if (auto f = held(r.segment)) {
      hints.push_back({std::move(f), true, r.begin, r.end - r.begin});
      uncached_segments_.insert(r.segment);
    }
  }
  return hints;
}

Status Replica::RollTo(uint64_t first_seq) {
  // A sealed segment is complete and durable before records follow it in the next one.
  if (unsynced_) {
    RETURN_IF_ERROR(active_->file()->Sync());
    unsynced_ = false;
  }
  // A reused file holds older records after the segment's end: they go before it is sealed
  // (sealed segments are read without a torn tail's allowance).
  ASSIGN_OR_RETURN(uint64_t on_disk, active_->file()->Size());
  if (on_disk > active_->size()) {
    RETURN_IF_ERROR(active_->file()->Truncate(active_->size()));
    RETURN_IF_ERROR(active_->file()->Sync());
  }
  SegmentHeader h;
  h.segment_number = active_->segment_number() + 1;
  h.first_seq = first_seq;
  h.block_size = manifest_.block_size;
  h.volume_id = manifest_.volume_id;
  std::unique_ptr<SegmentWriter> next;
  while (!next && !spares_.empty()) {
    const std::string spare = spares_.back().path;
    spares_.pop_back();
    auto reused = SegmentWriter::Recycle(env_, journal_dir_, h, spare);
    if (reused.ok()) {
      next = std::move(*reused);
    } else {
      // Not worth failing an append for: a new file does the same job (and reports what
      // is wrong with the disk, if anything is).
      (void)env_->RemoveFile(spare);
    }
  }
  if (!next) {
    ASSIGN_OR_RETURN(next, SegmentWriter::Create(env_, journal_dir_, h));
  }
  std::unique_lock il(index_mu_);
  active_ = std::move(next);
  segments_[static_cast<uint32_t>(h.segment_number)] = active_->shared_file();
  segment_bytes_[static_cast<uint32_t>(h.segment_number)] = active_->size();
  return Status::Ok();
}

Status Replica::Pin(uint64_t seq, const std::string& owner, const std::string& reason) {
  if (owner.empty()) return InvalidArgument("a pin needs an owner");
  std::lock_guard ml(meta_mu_);
  RETURN_IF_ERROR(ValidatePointLocked(seq));
  Manifest next = manifest_;
  auto it = std::find_if(next.pins.begin(), next.pins.end(),
                         [&](const journal::Pin& p) { return p.owner == owner; });
  if (it != next.pins.end()) {
    it->seq = seq;
    it->reason = reason;
  } else {
    next.pins.push_back({seq, owner, reason});
  }
  RETURN_IF_ERROR(next.Store(env_, dir_));
  manifest_ = std::move(next);
  return Status::Ok();
}

Status Replica::Unpin(const std::string& owner) {
  std::lock_guard ml(meta_mu_);
  Manifest next = manifest_;
  auto it = std::find_if(next.pins.begin(), next.pins.end(),
                         [&](const journal::Pin& p) { return p.owner == owner; });
  if (it == next.pins.end()) return NotFound("no pin owned by " + owner);
  next.pins.erase(it);
  RETURN_IF_ERROR(next.Store(env_, dir_));
  manifest_ = std::move(next);
  return Status::Ok();
}

std::vector<journal::Pin> Replica::Pins() const {
  std::lock_guard ml(meta_mu_);
  return manifest_.pins;
}

uint64_t Replica::MinProtectedSeqLocked() const {
  uint64_t m = UINT64_MAX;
  for (const journal::Pin& p : manifest_.pins) m = std::min(m, p.seq);
  if (!view_points_.empty()) m = std::min(m, *view_points_.begin());
  return m;
}

void Replica::PrefetchSegments(const std::atomic<bool>* stop) const {
  constexpr uint64_t kPrefetchBytes = 2ull << 30;
  struct Range {
    std::shared_ptr<File> file;
    uint64_t begin, end;
  };
  std::vector<Range> ranges;
  {
    std::shared_lock il(index_mu_);
    if (index_.size() == 0) return;
    // From the oldest record not merged yet: what lies before it in its segment (records
    // already in the base) is never read again.
    const IndexEntry& oldest = index_.at(0);
    uint64_t total = 0;
    for (const auto& [number, file] : segments_) {
      if (number < oldest.segment) continue;
      if (total >= kPrefetchBytes) break;
      auto bytes = segment_bytes_.find(number);
      if (bytes == segment_bytes_.end()) continue;
      const uint64_t begin = number == oldest.segment ? oldest.payload_offset - kRecordHeaderSize : 0;
      if (begin >= bytes->second) continue;
      ranges.push_back({file, begin, bytes->second});
      total += bytes->second - begin;
    }
  }
  // The kernel's own read-ahead hint reads a few hundred KiB at most; a read front to back
  // fills the cache at the disk's sequential speed. Failures only cost the later reads time.
  std::string buf(4u << 20, '\0');
  for (const Range& r : ranges) {
    for (uint64_t off = r.begin; off < r.end; off += buf.size()) {
      if (stop->load()) return;
      auto got = r.file->ReadAt(off, std::min<uint64_t>(buf.size(), r.end - off), buf.data());
      if (!got.ok() || *got == 0) break;
    }
  }
}

Result<std::shared_ptr<File>> Replica::SegmentFile(uint32_t segment) const {
  auto it = segments_.find(segment);
  if (it == segments_.end()) {
    return DataLoss("segment " + std::to_string(segment) + " is missing");
  }
  return it->second;
}

Result<std::vector<std::string>> Replica::Verify() const {
  std::vector<std::string> problems;
  std::vector<uint32_t> numbers;
  {
    std::shared_lock il(index_mu_);
    for (const auto& [n, f] : segments_) numbers.push_back(n);
  }
  for (uint32_t n : numbers) {
    std::string path = JoinPath(journal_dir_, SegmentFileName(n));
    auto file = env_->OpenFile(path, OpenMode::kRead);
    if (!file.ok()) {
      problems.push_back(file.status().ToString());
      continue;
    }
    ScanOptions so;
    so.verify_payloads = true;
    so.payload_problems = &problems;
    // The newest segment may end in an append under way, or (a reused file) in older
    // records: a tail, as Open would take it.
    so.allow_torn_tail = n == numbers.back();
    auto r = ScanSegment(file->get(), n, so,
                         [](const RecordHeader&, uint64_t, std::string_view) { return Status::Ok(); });
    if (!r.ok()) problems.push_back(r.status().ToString());
  }
  return problems;
}

}  // namespace ferry::journal
