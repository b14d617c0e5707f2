// LinkSender: the source side of one volume's link (docs/protocols/link.md). Connects to the
// target node, learns where to resume, and ships the pending log's records in batches while
// copying the volume's content once if the target asks for an initial sync. Reconnects with
// backoff after any failure and resumes from what the target made durable.
//
// States (status().state):
//   connecting  → (HELLO/WELCOME) → syncing (initial sync running) / replicating
//   any         → paused (Pause) → connecting (Resume)
//   any         → stopped (Stop; final)
//   failures    → backoff → connecting; refusals that retrying cannot fix (history or volume
//                 mismatch, target ahead, log discarded past the resume point) → blocked,
//                 with the reason in last_error, until Resume.
//
// Memory: at most one batch of records (batch_bytes) and one sync chunk are held; the bytes
// sent but not acknowledged are bounded by window_bytes, so a slow target slows the sender.
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "env/env.h"
#include "env/stream.h"
#include "journal/replica.h"
#include "capture/dirty_map.h"
#include "link/frame.h"
#include "link/messages.h"
#include "link/throttle.h"

namespace ferry::link {

struct SenderConfig {
  std::string volume;       // name, for logs and the target's status
  std::string source_node;  // this node's name
  // Opens a stream to the target (TCP, TLS over TCP, or anything a test wants).
  std::function<Result<std::unique_ptr<Stream>>()> connect;
  std::string disk_path;    // read by the initial sync
  // Appends a marker to the pending log, ordered after every write logged so far.
  std::function<Result<uint64_t>(const std::string& label)> mark;
  // Makes the disk durable through the returned seq (see capture::Splitter::Checkpoint).
  std::function<Result<uint64_t>()> checkpoint;
  // Trim the pending log every 2 s, and at once (every 100 ms at most) when it holds more.
  uint64_t trim_above_bytes = 256ull << 20;
  // Resync (optional): blocks whose records were dropped from the pending log, and a way to
  // append a range's current content to the log (capture::Splitter::Rewrite).
  std::shared_ptr<capture::DirtyMap> dirty;
  std::function<Status(uint64_t offset, uint64_t length)> rewrite;
  // Known changes (optional; docs/protocols/link.md, "Known changes"): a promoted volume's
  // blocks that may differ from the disk of the old source it diverged from (volume id and
  // history id below; that history's records up to seq diverged_through were in the replica
  // when it was committed). A seeded sync whose target says its seed is that disk, and names
  // the seed's own changes since then, sends just these blocks instead of comparing digests.
  std::shared_ptr<capture::DirtyMap> delta;
  std::string diverged_volume_id;   // 32 hex digits
  std::string diverged_history_id;  // hex
  uint64_t diverged_through = 0;
  // Where a verify's state is kept (JSON, written atomically), so that a restart goes on with
  // it; empty: in memory only.
  std::string verify_path;
  // Scan-captured volumes: instead of copying the disk, the initial sync asks the capture to
  // send everything again (reset_capture) and ends at the marker of the first full cycle
  // after that (full_cycle_marker returns it, 0 until then).
  std::function<void()> reset_capture;
  std::function<uint64_t()> full_cycle_marker;
  std::vector<std::string> codecs = {"zstd", "lz4", "none"};
  // Told to the target in HELLO: how long it keeps the volume's recovery points (0: unsaid).
  int64_t retention_seconds = 0;
  size_t batch_bytes = 4u << 20;
  size_t window_bytes = 64u << 20;
  uint64_t sync_window_bytes = 256ull << 20;  // scanned bytes ahead of the target's progress (copy)
  size_t sync_chunk_bytes = 1u << 20;
  uint64_t rate_bytes_per_second = 0;  // 0: unlimited
  Throttle* node_throttle = nullptr;   // shared by every link of the node
  Clock* clock = SystemClock::Default();
  Env* env = Env::Posix();
  int64_t min_backoff_ms = 200;
  int64_t max_backoff_ms = 30'000;
  int64_t ping_after_ms = 5'000;
  int64_t dead_after_ms = 30'000;
};

// A verify (link.md, "Verify"): the disk compared with the target's newest state, and the
// blocks that differ resynced.
struct VerifyStatus {
  std::string id;                // the requester's, to make asking again harmless
  std::string state = "none";    // none | waiting | comparing | rewriting | done
  uint64_t compared_bytes = 0;
  uint64_t total_bytes = 0;
  uint64_t differing_bytes = 0;  // found by the compare (chunks of 64 KiB)
  uint64_t consistent_from = 0;  // the marker that closed the resync (0: nothing differed)
  bool cancelled = false;
  int64_t started_ns = 0;
  int64_t finished_ns = 0;
};

struct LinkStatus {
  std::string volume;
  std::string state = "connecting";
  std::string peer;
  std::string codec;  // what frames are compressed with, as the target chose at the handshake
  uint64_t sent_seq = 0;   // newest seq put on the wire
  uint64_t acked_seq = 0;  // newest seq durable at the target
  uint64_t log_last_seq = 0;
  uint64_t pending_bytes = 0;  // journal bytes the pending log still holds
  bool initial_sync = false;
  // How the initial sync finds (or, once done, found) what to send: "copy" (every allocated
  // block), "digests" (seeded: compare with the target's base), "known-changes" (seeded,
  // with known changes); "" before any in this process.
  std::string sync_method;
  std::string sync_method_reason;  // why not "known-changes" when the volume has a delta
  uint64_t sync_offset = 0;    // acknowledged by the target
  uint64_t sync_scanned = 0;   // sent
  uint64_t sync_total = 0;     // allocated bytes of the volume (estimate)
  std::string resync = "none";  // none | rewriting | closing
  uint64_t dirty_bytes = 0;     // still to rewrite
  VerifyStatus verify;
  uint64_t wire_bytes = 0;
  uint64_t raw_bytes = 0;      // payload bytes before compression
  uint64_t records = 0;
  uint64_t connects = 0;
  double upload_bytes_per_second = 0;
  int64_t newest_acked_marker_ns = 0;  // RPO = now - this
  uint64_t newest_acked_marker_seq = 0;
  uint64_t rate_bytes_per_second = 0;
  std::string last_error;
};

class LinkSender {
 public:
  LinkSender(SenderConfig config, std::shared_ptr<journal::Replica> log);
  ~LinkSender();
  LinkSender(const LinkSender&) = delete;
  LinkSender& operator=(const LinkSender&) = delete;

  void Start();
  void Pause();
  void Resume();
  void Stop();  // final; joins the thread
  void SetRate(uint64_t bytes_per_second);
  LinkStatus status() const;
  // Waits until the target acknowledged seq (or timeout_ms passed); true if it did.
  bool WaitAcked(uint64_t seq, int64_t timeout_ms) const;
  // Starts a verify named id (link.md, "Verify"); asking again with the id of the current or
  // last verify returns its status. kFailedPrecondition when the volume has no changed-block
  // map (scan capture) or another verify is running.
  Result<VerifyStatus> Verify(const std::string& id);
  // Stops comparing; the blocks found so far are still resynced.
  void CancelVerify();

 private:
  struct Session;
  void Loop();
  Status RunSession();
  Status Handshake(Session* s);
  void ReadAcks(Session* s);
  Status SendRecords(Session* s, bool* sent);
  Status SendSync(Session* s, bool* sent);
  Status SendResync(Session* s, bool* sent);
  Status SendSeededWindow(Session* s, bool* sent);
  Status SendKnownWindow(Session* s, bool* sent);
  // Sends the blocks of ranges (inside buf, which holds the disk from buf_offset) as SYNC_DATA
  // frames of up to 4 MiB, zero blocks as zero extents; the last frame says scanned_to.
  Status SendBlocks(Session* s, std::string_view buf, uint64_t buf_offset,
                    const std::vector<DigestRange>& ranges, uint64_t scanned_to);
  struct SentBytes {
    size_t raw = 0;   // the message's bytes
    size_t wire = 0;  // the frame's, as sent
  };
  // One SYNC_DATA frame (throttled), its extents' data sent from where it lies.
  Result<SentBytes> SendSyncData(Session* s, const SyncData& d);
  // At the handshake of a seeded sync: whether the known changes can stand in for digests
  // (merging the target's into config_.delta); the reason when they cannot.
  Result<std::string> UseKnownChanges(const Welcome& w);
  Status SendVerify(Session* s, bool* sent);
  // A request for the digests of ranges at granularity; AwaitDigests takes the answer. The
  // caller works in between (reads and digests its own copy) while the target does the same.
  // Answers come in the order of the requests; an error ends the session, so no answer is
  // left over for a later request.
  Status RequestDigests(Session* s, MessageType ask, uint32_t granularity,
                        const std::vector<DigestRange>& ranges);
  Result<Digests> AwaitDigests(Session* s, uint32_t granularity,
                               const std::vector<DigestRange>& ranges);
  // The blocks of buf (the disk from start, buf.size() bytes) whose digests differ from the
  // target's, asking from coarse to fine with ask (DIGEST_REQUEST: its base; VERIFY_REQUEST:
  // its newest state). fill reads the disk into buf; it runs once the first request is out.
  Result<std::vector<DigestRange>> DifferingBlocks(Session* s, MessageType ask, uint64_t start,
                                                   const std::string& buf,
                                                   const std::function<Status()>& fill);
  bool CanResync() const;
  std::string& WindowBuffer(size_t n);
  // Writes v to config_.verify_path (callers hold mu_; the file is a few hundred bytes).
  void SaveVerify(const VerifyStatus& v);
  Status BeginResync(Session* s, uint64_t missing_from, uint64_t resume_at);
  void MaybeTrim();
  void SetState(const std::string& state);
  void SampleRates();

  const SenderConfig config_;
  std::shared_ptr<journal::Replica> log_;
  Throttle throttle_;
  std::thread thread_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool started_ = false;
  bool stopping_ = false;
  bool paused_ = false;
  bool blocked_ = false;
  Stream* stream_ = nullptr;  // of the current session, to wake it
  LinkStatus st_;
  std::deque<std::pair<uint64_t, int64_t>> sent_markers_;  // (seq, timestamp) not yet acked
  uint64_t inflight_bytes_ = 0;
  std::deque<std::pair<uint64_t, uint64_t>> inflight_;  // (last seq of a batch, its bytes)
  int64_t last_sample_ns_ = 0;
  uint64_t sample_wire_ = 0;
  int64_t last_checkpoint_ns_ = 0;
  uint64_t trimmed_through_ = 0;
  bool delta_live_ = false;  // config_.delta still describes a sync to come (sending thread)
  std::string window_buf_;   // sending thread only (WindowBuffer)
  std::string payload_buf_;  // sending thread only: SYNC_DATA's fixed parts (SendSyncData)
  std::vector<std::string_view> pieces_;  // and the pieces of the frame
};

}  // namespace ferry::link
