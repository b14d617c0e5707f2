// Replica: one volume's replica — base image + journal segments + in-memory index — and the
// operations on it: durable appends with group commit, recovery points, views, overlays,
// pins, retention and health. Format: docs/formats/journal.md.
//
// Ownership: a Replica owns its directory exclusively while open (one process, one Replica
// object). Views and Overlays it hands out hold a shared_ptr to it, so it lives as long as
// they do.
//
// Thread-safety: every public method may be called from any thread. Appends from many
// threads are batched into one write and one sync (group commit, with the next batch's
// write overlapping the previous one's sync; see docs/formats/journal.md). Reads through views run
// in parallel with appends and retention.
//
// Errors (beyond those of Env):
//   kInvalidArgument    a record or point that can never be valid (unaligned, bad name).
//   kOutOfRange         a point outside the retained history, an offset past the volume.
//   kNotFound           no such point, marker, overlay; or no replica in the directory.
//   kFailedPrecondition the replica's state forbids it (committed; point pinned; overlay
//                       exists); the message says what to do first.
//   kResourceExhausted  not enough free space to append; history is never shrunk to make
//                       room — free space or shorten retention.
//   kDataLoss           a stored record is corrupt; the message names segment and offset
//                       (or, for an overlay, its file and offset, or the file missing).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/status.h"
#include "env/env.h"
#include "journal/index.h"
#include "journal/manifest.h"
#include "journal/points.h"
#include "journal/record.h"
#include "journal/retention.h"

namespace ferry::journal {

class View;
struct ViewExtent;
class Overlay;
class ResolvedCache;
class SegmentWriter;

// How durable an append is when it returns.
enum class Durability {
  kSynced,   // on stable storage (fdatasync): survives power loss. The replica's default.
  kWritten,  // written to the file: survives a crash of the process, not of the machine,
             // until Sync(). For the source's pending log, where a flush decides.
};

struct ReplicaOptions {
  Env* env = Env::Posix();
  Clock* clock = SystemClock::Default();
  uint64_t segment_target_bytes = 256ull << 20;
  // Up to this many segments trimmed (a pending log) or merged by retention (a replica) are
  // kept as spare files, and new segments reuse them, so that appends overwrite cached pages
  // or allocated blocks instead of filling new ones (docs/decisions/0011). 0: they are deleted.
  uint32_t recycle_segments = 0;
  // Pending logs: how much of the newest appended data is left to the page cache. Data further
  // back than half of it starts writing back; data further back than all of it is dropped
  // from the cache (its segment is then deleted when trimmed, not reused), so a log that no
  // link trims keeps a bounded footprint instead of filling memory with dirty pages
  // (docs/decisions/0012). 0: left to the kernel.
  uint64_t cache_window_bytes = 0;
  // Synced appends to a replica (not a pending log) are written with direct, synchronous I/O
  // (File::WriteDurable): one request per batch the device completes durably, instead of a
  // copy into the page cache and an fdatasync (docs/decisions/0014). Batches are then
  // written one at a time. false: the page cache and fdatasync, two batches in flight.
  bool direct_appends = true;
  // A retention merge resolves and copies at most this many runs of blocks at a time; it
  // holds 32 bytes per run.
  size_t merge_batch_runs = size_t{1} << 20;
  // Appends fail with kResourceExhausted when the filesystem would have less than this free.
  uint64_t min_free_bytes = 64ull << 20;
  // Health turns Warning below this fraction of the filesystem free.
  double warn_free_fraction = 0.10;
};

// The page-cache window of a pending log that nothing trims (`capture serve`); the node gives
// its pending logs four times as much (docs/decisions/0012).
inline constexpr uint64_t kPendingLogCacheWindow = 64ull << 20;

struct CreateParams {
  uint64_t size = 0;           // bytes, a multiple of block_size
  uint32_t block_size = 4096;  // 512..65536, power of two
  Id128 volume_id{};           // zeros: pick one
  uint64_t history_id = 0;     // 0: pick one
  uint64_t first_seq = 1;      // the journal's first record (a link's target continues the
                               // source's numbering)
  bool pending_log = false;    // role "pending-log" (see DiscardThrough)
  bool initial_sync = false;   // the base will be filled by a link's initial sync
  // With initial_sync: start the base as a copy of this file (an older version of the volume,
  // e.g. the disk a failover left behind), so the sync sends only what differs.
  std::string seed_path;
};

// A record as the journal stores it, with the payload checksum computed when it was appended
// (what a link ships, so the target checks the data against the source's own checksum).
struct StoredRecord {
  Record record;
  uint64_t checksum = 0;  // XXH3-64 of the write data or the encoded marker body; 0 otherwise
};

struct InitialSyncState {
  bool running = false;
  bool seeded = false;
  uint64_t offset = 0;           // bytes below it are durable in the base
  uint64_t consistent_from = 0;  // points before this seq are not consistent
};

struct Health {
  enum class Level { kHealthy, kWarning, kCritical };
  Level level = Level::kHealthy;
  std::vector<std::string> problems;  // one line each: what is wrong and what to do
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t journal_bytes = 0;
  // Held by spare segment files (ReplicaOptions::recycle_segments): counted as free, since
  // they are deleted before a write is refused for want of space.
  uint64_t spare_bytes = 0;
};
std::string_view HealthLevelName(Health::Level level);

struct ReplicaStats {
  uint64_t oldest_point = 0;
  int64_t oldest_point_ns = 0;
  uint64_t any_point_from = 0;
  uint64_t last_seq = 0;
  int64_t last_ns = 0;
  uint64_t records = 0;
  uint64_t markers = 0;
  uint64_t segments = 0;
  uint64_t journal_bytes = 0;
  uint64_t index_bytes = 0;
  uint64_t syncs = 0;       // group commits so far
  uint64_t appends = 0;     // Append calls so far
};

struct CommitProgress {
  std::string overlay;
  bool running = false;
  bool done = false;
  bool cleaning = false;  // done; the old journal and base files are being removed
  uint64_t blocks_done = 0;
  uint64_t blocks_total = 0;
  Status status;  // the failure, if it stopped on one
};

class Replica : public std::enable_shared_from_this<Replica> {
 public:
  static Result<std::shared_ptr<Replica>> Create(const std::string& dir, const CreateParams& p,
                                                 const ReplicaOptions& options = {});
  // Opens an existing replica: recovers a torn tail, finishes an interrupted merge, and
  // resumes an interrupted commit in the background (see GetCommitProgress). Removes what a
  // crash left of an overlay being created (before anything could be written through it)
  // or discarded; an overlay missing any other way is kDataLoss, never removed.
  static Result<std::shared_ptr<Replica>> Open(const std::string& dir,
                                               const ReplicaOptions& options = {});
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  const std::string& dir() const { return dir_; }
  Env* env() const { return env_; }
  uint64_t size() const { return manifest_.size; }
  uint32_t block_size() const { return manifest_.block_size; }
  const Id128& volume_id() const { return manifest_.volume_id; }
  uint64_t history_id() const { return manifest_.history_id; }
  bool committed() const;

  // Appends records durably; returns the seq of the last one. Records with seq 0 get the next
  // seq; a nonzero seq must be exactly the next. Timestamps 0 get the clock's time; a
  // timestamp older than the previous record's is raised to it. All or nothing.
  Result<uint64_t> Append(std::span<Record> records, Durability durability = Durability::kSynced);
  Result<uint64_t> Append(Record record, Durability durability = Durability::kSynced);
  // Makes every record appended so far durable (after kWritten appends).
  Status Sync();
  uint64_t last_seq() const;
  // The seq the next appended record gets (after a resync jump, the resume point).
  uint64_t next_seq() const;
  // Every record with seq <= synced_seq() is on stable storage.
  uint64_t synced_seq() const { return synced_seq_.load(); }
  // Waits up to timeout_ms for a record with seq > after_seq; returns last_seq().
  uint64_t WaitForAppend(uint64_t after_seq, int64_t timeout_ms) const;

  // Records with from_seq <= seq <= up_to_seq in seq order, at most about max_bytes of payload
  // (always at least one if any). Each payload is checked against its stored checksum.
  // kOutOfRange when from_seq is no longer held (discarded or merged away).
  Result<std::vector<StoredRecord>> ReadRecords(uint64_t from_seq, uint64_t up_to_seq,
                                                size_t max_bytes) const;
  // Pending logs only: forgets the records with seq <= seq (whole segments; the segment being
  // written stays). The caller guarantees the target and the source disk hold them durably.
  Status DiscardThrough(uint64_t seq);

  // Initial sync (created with initial_sync): the link writes the volume's content into the
  // base while journal records keep arriving; WriteBase is refused once it finished.
  InitialSyncState GetInitialSync() const;
  Status WriteBase(uint64_t offset, std::string_view data);
  Status ZeroBase(uint64_t offset, uint64_t length);
  // Reads the base (for a seeded sync's digests).
  Status ReadBase(uint64_t offset, size_t n, void* dst) const;
  // Makes the base durable and records that every byte below offset is in it.
  Status SaveSyncProgress(uint64_t offset);
  // Ends the initial sync: points from consistent_from on become usable.
  Status FinishInitialSync(uint64_t consistent_from);

  // Resync (docs/protocols/link.md, "Resync"): the source dropped records missing_from..
  // resume_at-1 and rewrites the blocks they touched after resume_at. Records the window
  // durably and continues the journal at resume_at; points from missing_from on are not
  // consistent (latest resolves to missing_from - 1, the newest consistent point) until
  // EndResync. Calling it again for the same missing_from is harmless.
  Status BeginResync(uint64_t missing_from, uint64_t resume_at);
  // Closes the open resync window: points from consistent_from on are consistent.
  Status EndResync(uint64_t consistent_from);
  // The open resync window's missing_from, or 0.
  uint64_t OpenResync() const;

  // Points.
  Result<PointInfo> ResolvePoint(const PointSpec& spec) const;
  Result<PointPage> ListPoints(const PointFilter& filter) const;
  ReplicaStats Stats() const;
  Health GetHealth() const;

  // The block runs that records still in the journal with seq > after wrote (zeroed or
  // trimmed), ascending: what redoing the journal onto a disk must copy. (first block, count)
  // pairs.
  std::vector<std::pair<uint64_t, uint64_t>> JournaledBlockRuns(uint64_t after = 0) const;

  // A read-only view of the volume as of seq (use ResolvePoint first for other specs).
  Result<std::shared_ptr<View>> OpenView(uint64_t seq);

  // Overlays: writable layers over a point. The point stays pinned while the overlay exists.
  Result<std::shared_ptr<Overlay>> CreateOverlay(const std::string& name, uint64_t seq);
  Result<std::shared_ptr<Overlay>> GetOverlay(const std::string& name);
  std::vector<std::string> ListOverlays() const;
  Status DiscardOverlay(const std::string& name);
  // Consolidates the overlay into a plain image in the background while it stays in use;
  // when done the replica is committed: the journal, base and every other point are dropped.
  // WaitForCommit returns once the replica is committed (or the commit failed); removing the
  // old journal and base files goes on in the background (closing the replica waits for it,
  // Open finishes it). WaitForCommitCleanup waits for that too and returns its error, if any.
  Status StartCommit(const std::string& name);
  CommitProgress GetCommitProgress() const;
  Status WaitForCommit();
  Status WaitForCommitCleanup();

  // Pins keep a point through retention. One pin per owner; re-pinning moves it.
  Status Pin(uint64_t seq, const std::string& owner, const std::string& reason);
  Status Unpin(const std::string& owner);
  std::vector<journal::Pin> Pins() const;

  // Merges history older than the window into the base and thins old markers.
  Result<RetentionReport> ApplyRetention(const RetentionPolicy& policy);

  // Full check of every record's checksums; returns every problem found (empty when clean).
  Result<std::vector<std::string>> Verify() const;

 private:
  friend class View;
  friend class Overlay;
  struct Writer;

  Replica(std::string dir, const ReplicaOptions& options);
  Result<std::shared_ptr<View>> OpenViewImpl(uint64_t seq, bool strong);
  Status Load();
  Status Recover();
  Status StoreManifestLocked();
  Status ValidatePointLocked(uint64_t seq) const;
  uint64_t OldestPointLocked() const;
  uint64_t MinProtectedSeqLocked() const;
  // Called by the group-commit leader (write_mu_ held). statvfs costs as much as a small
  // append, so it runs only when the free space last seen, less what was appended since,
  // comes within 256 MiB of the reserve, or when the last look is a second old.
  Status CheckSpace(uint64_t incoming_bytes);
  // The leader's work for one batch (write_mu_ held through l; released for the sync).
  // Sets every writer's status and marks it done.
  void CommitBatch(std::vector<Writer*>& batch, std::unique_lock<std::mutex>& l);
  // Wakes the queue's front writer: it may lead now.
  void WakeFrontLocked();
  // Seals the active segment and starts one whose first record will be first_seq.
  Status RollTo(uint64_t first_seq);
  // The gap holding seq (not consistent there), or null.
  const Gap* GapAtLocked(uint64_t seq) const;
  Status MergeTo(uint64_t target);
  // A run of blocks a merge copies from a segment into the base.
  struct MergeRun {
    uint32_t segment;
    uint32_t length;
    uint64_t file_offset;
    uint64_t base_offset;
    uint64_t seq;  // its record's, for errors
  };
  // Under index_mu_: resolves a chunk as of the merge's limit; punches its trimmed and zeroed
  // runs in the base and adds its written ones to *runs (their segment files to *files).
  Status CollectMergeRunsLocked(uint64_t chunk, size_t limit, ResolvedChunk* rc,
                                std::vector<MergeRun>* runs,
                                std::map<uint32_t, std::shared_ptr<File>>* files);
  // Writes the runs into the base (not synced), reading their segments in order, in windows
  // of a few MiB, the next window while the runs of one are written. Sorts *runs.
  Status CopyRuns(std::vector<MergeRun>* runs,
                  const std::map<uint32_t, std::shared_ptr<File>>& files);
  // After base_seq moved to target: drops the index entries and segments at or below it.
  Status DropThrough(uint64_t target);
  Status ThinAndCompact(const RetentionPolicy& policy, int64_t now, RetentionReport* report);
  // Seals the active segment when it holds a marker the tiers thin, so that thinning can
  // rewrite it; not while a batch is being written or published (the next run does it).
  Status SealForThinning(const RetentionPolicy& policy, int64_t now);
  // The commit point: the manifest says committed and the journal, base and points are
  // forgotten in memory. Then the files go (DropJournalAndBaseOf); Finish… does both.
  Status SwitchToCommittedLocked(const std::string& name);
  std::vector<std::pair<uint64_t, uint64_t>> JournaledBlockRunsLocked(uint64_t after) const;  // index_mu_ held
  Status FinishCommitLocked(const std::string& name);
  Status DropJournalAndBase();
  Status DropJournalAndBaseOf(const std::string& overlay_name);
  void RunCommit(std::shared_ptr<Overlay> overlay);

  // Reads [offset, offset+n) as of point into dst; used by View (cache is the view's).
  Status ReadAsOf(uint64_t point, ResolvedCache* cache, uint64_t offset, size_t n, void* dst);
  struct ViewRun {
    uint64_t start, end;  // bytes
    uint32_t slot;        // record position + 1, or kNoRecord for the base
  };
  Status WalkRuns(uint64_t point, ResolvedCache* cache, uint64_t offset, uint64_t n,
                  const std::function<Status(std::span<const ViewRun>)>& visit);
  Status ExtentsAsOf(uint64_t point, ResolvedCache* cache, uint64_t offset, uint64_t n,
                     std::vector<ViewExtent>* out);
  // Copies chunk's resolution as of the visible limit into *out, through the view's cache.
  // Caller holds index_mu_ (shared).
  void ResolveCached(uint64_t chunk, size_t limit, uint64_t generation, ResolvedCache* cache,
                     ResolvedChunk* out) const;
  void ReleaseViewPoint(uint64_t seq);

  Result<std::shared_ptr<File>> SegmentFile(uint32_t segment) const;

  // The page cache of a pending log (options_.cache_window_bytes). A hint to the kernel
  // about one appended range: start writeback, or drop the cached pages.
  struct CacheHint {
    std::shared_ptr<File> file;
    bool drop = false;
    uint64_t offset = 0, n = 0;
  };
  // Notes [begin, end) of segment as appended (write_mu_ held); returns the hints the caller
  // gives outside the lock.
  std::vector<CacheHint> NoteAppendedLocked(uint32_t segment, uint64_t begin, uint64_t end);

  const std::string dir_;
  const std::string journal_dir_;
  std::unique_ptr<FileLock> lock_;  // one process at a time
  const ReplicaOptions options_;
  Env* const env_;

  // meta_mu_ guards manifest_, overlays_, view_points_, commit_ state. Lock order:
  // write_mu_ -> meta_mu_ -> index_mu_.
  mutable std::mutex meta_mu_;
  Manifest manifest_;
  std::map<std::string, std::shared_ptr<Overlay>> overlays_;
  std::multiset<uint64_t> view_points_;
  std::set<uint64_t> thinning_markers_;  // chosen for thinning, not yet gone: not points
  CommitProgress commit_;
  std::condition_variable commit_cv_;  // with meta_mu_: commit_.running turned false
  std::thread commit_thread_;
  std::atomic<bool> commit_stop_{false};
  std::atomic<uint64_t> commit_done_{0};

  // index_mu_ guards index_, markers_, segments_, base_.
  mutable std::shared_mutex index_mu_;
  Index index_;
  std::map<uint64_t, MarkerInfo> markers_;
  std::map<uint32_t, std::shared_ptr<File>> segments_;
  std::map<uint32_t, uint64_t> segment_bytes_;
  std::shared_ptr<File> base_;
  int64_t last_ts_ = 0;

  // Group commit: writers queue here; the front one leads: it takes the queue off as one
  // batch. Through the page cache it writes it under write_mu_, then hands leadership on and
  // syncs outside the lock, so the next batch is written while this one syncs. With direct
  // appends it reserves the batch's place under the lock and writes it, durably, outside.
  // Batches are published to the index (and acknowledged) in the order they were written,
  // at most MaxCommitsInFlight() written and not yet published (2; 1 with direct appends).
  mutable std::mutex write_mu_;
  std::deque<Writer*> writers_;
  bool leading_ = false;         // a leader is forming or writing its batch
  size_t in_flight_ = 0;         // batches written, not yet published
  uint64_t next_ticket_ = 0;     // write order of batches
  uint64_t publish_turn_ = 0;    // the ticket that publishes next
  std::condition_variable flight_cv_;  // publish turns and in_flight_ changes
  std::unique_ptr<SegmentWriter> active_;
  uint64_t next_seq_ = 1;
  int64_t next_ts_floor_ = 0;
  bool unsynced_ = false;  // the active segment holds kWritten records not yet synced
  bool direct_ = false;    // synced batches are written directly (options_.direct_appends)
  size_t MaxCommitsInFlight() const;
  // Used by the batch in flight, outside write_mu_ (direct appends: at most one in flight).
  DirectBuffer direct_buffer_;
  struct Spare {
    std::string path;
    uint64_t bytes;  // what the file holds: space it gives back when deleted
  };
  std::vector<Spare> spares_;  // trimmed segments' files kept for reuse
  // Appended ranges still in the page cache, oldest first, in chunks of a few MiB: those
  // not yet written back, then those whose writeback started (cache_window_bytes).
  struct CachedRange {
    uint32_t segment;
    uint64_t begin, end;
  };
  std::deque<CachedRange> dirty_ranges_, writing_ranges_;
  uint64_t dirty_range_bytes_ = 0, writing_range_bytes_ = 0;
  std::set<uint32_t> uncached_segments_;  // pages dropped: reading them back costs a disk read
  Status write_error_;  // sticky: the journal's tail is uncertain; reopen the replica
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> appends_{0};
  std::atomic<uint64_t> published_seq_{0};  // last seq in the index
  std::atomic<uint64_t> synced_seq_{0};
  mutable std::mutex append_mu_;  // with append_cv_: wakes WaitForAppend
  mutable std::condition_variable append_cv_;
  std::atomic<uint64_t> refused_bytes_{0};  // the last batch refused for space; 0 once one fits
  // CheckSpace's last look (guarded by write_mu_): free bytes then, bytes appended since.
  uint64_t space_seen_free_ = 0;
  uint64_t space_appended_since_ = 0;
  int64_t space_seen_ns_ = 0;

  // Reads the journal's segments (oldest first, at most 2 GiB) front to back, into the page
  // cache: a commit then reads their records in volume order, which from the disk costs a
  // read each, and direct appends leave nothing cached. Stops early once *stop is set (the
  // replica closing during a commit).
  void PrefetchSegments(const std::atomic<bool>* stop) const;
  // Serialises retention and commit with each other.
  std::mutex maintenance_mu_;
};

}  // namespace ferry::journal
