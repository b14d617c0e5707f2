#include "link/sender.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

#include "base/crash_point.h"
#include "link/codec.h"
#include "link/frame.h"
#include "link/messages.h"

namespace ferry::link {

// One connection's state. The sending thread owns writer and the cursors; the ack reader
// thread owns reader. Shared fields are under the sender's mu_.
struct LinkSender::Session {
  std::unique_ptr<Stream> stream;
  std::unique_ptr<FrameReader> reader;
  std::unique_ptr<FrameWriter> writer;
  uint64_t next_seq = 0;
  bool sync = false;           // initial sync running
  uint64_t sync_cursor = 0;    // next byte to scan
  uint64_t sync_total = 0;
  uint64_t sync_done_seq = 0;  // the marker that ends the sync, once appended
  bool seeded = false;         // the target's base holds an older version: compare digests
  bool known = false;          // seeded, and config_.delta names every block that may differ
  SyncChecksums sync_sums = SyncChecksums::kPerExtent;
  std::deque<std::string> digests;  // DIGESTS payloads from the ack reader (under mu_)
  std::unique_ptr<File> disk;
  int64_t last_send_ns = 0;
  uint64_t target_resync_open = 0;  // the target's open resync window (missing_from), or 0
  uint64_t resync_cursor = 0;
  uint64_t rewritten_unsaved = 0;
  // Set by the ack reader (under mu_).
  uint64_t acked = 0;
  uint64_t sync_acked = 0;
  bool sync_finished = false;  // the target finished the initial sync (its ACKs say so)
  int64_t last_recv_ns = 0;
  Status ended;  // why the ack reader stopped
  bool reader_done = false;
};

namespace {

nlohmann::json VerifyToJson(const VerifyStatus& v) {
  return {{"id", v.id}, {"state", v.state}, {"compared_bytes", v.compared_bytes},
          {"total_bytes", v.total_bytes}, {"differing_bytes", v.differing_bytes},
          {"consistent_from", v.consistent_from}, {"cancelled", v.cancelled},
          {"started_ns", v.started_ns}, {"finished_ns", v.finished_ns}};
}

Result<VerifyStatus> VerifyFromJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return DataLoss("not JSON");
  VerifyStatus v;
  try {
    v.id = j.at("id").get<std::string>();
    v.state = j.at("state").get<std::string>();
    v.compared_bytes = j.at("compared_bytes").get<uint64_t>();
    v.total_bytes = j.at("total_bytes").get<uint64_t>();
    v.differing_bytes = j.at("differing_bytes").get<uint64_t>();
    v.consistent_from = j.at("consistent_from").get<uint64_t>();
    v.cancelled = j.at("cancelled").get<bool>();
    v.started_ns = j.at("started_ns").get<int64_t>();
    v.finished_ns = j.at("finished_ns").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(e.what());
  }
  if (v.state != "waiting" && v.state != "comparing" && v.state != "rewriting" && v.state != "done") {
    return DataLoss("state '" + v.state + "'");
  }
  return v;
}

// Reads n bytes of the disk at offset into dst: past the end of a shorter file, zeros, not
// whatever the reused buffer held before.
Status ReadDisk(File* disk, uint64_t offset, size_t n, char* dst) {
  ASSIGN_OR_RETURN(size_t got, disk->ReadAt(offset, n, dst));
  if (got < n) std::memset(dst + got, 0, n - got);
  return Status::Ok();
}

}  // namespace

LinkSender::LinkSender(SenderConfig config, std::shared_ptr<journal::Replica> log)
    : config_(std::move(config)),
      log_(std::move(log)),
      throttle_(config_.clock, config_.rate_bytes_per_second, config_.node_throttle) {
  st_.volume = config_.volume;
  st_.rate_bytes_per_second = config_.rate_bytes_per_second;
  delta_live_ = config_.delta != nullptr;
  if (!config_.verify_path.empty() && config_.env->Exists(config_.verify_path)) {
    auto text = ReadFileToString(config_.env, config_.verify_path);
    auto v = text.ok() ? VerifyFromJson(*text) : Result<VerifyStatus>(text.status());
    if (v.ok()) {
      st_.verify = *v;  // an unfinished verify goes on where it was
    } else {
      spdlog::warn("link {}: the saved verify state {} is unreadable ({}); it is forgotten",
                   config_.volume, config_.verify_path, v.status().ToString());
    }
  }
}

void LinkSender::SaveVerify(const VerifyStatus& v) {
  if (config_.verify_path.empty()) return;
  Status s = WriteFileAtomically(config_.env, config_.verify_path, VerifyToJson(v).dump() + "\n");
  if (!s.ok()) {
    // The verify goes on; after a restart it would start over (or be asked again).
    spdlog::warn("link {}: saving the verify's state failed: {}", config_.volume, s.ToString());
  }
}

LinkSender::~LinkSender() { Stop(); }

void LinkSender::Start() {
  std::lock_guard l(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void LinkSender::Pause() {
  std::lock_guard l(mu_);
  paused_ = true;
  if (stream_) stream_->Shutdown();
  cv_.notify_all();
}

void LinkSender::Resume() {
  std::lock_guard l(mu_);
  paused_ = false;
  blocked_ = false;
  cv_.notify_all();
}

void LinkSender::Stop() {
  {
    std::lock_guard l(mu_);
    stopping_ = true;
    if (stream_) stream_->Shutdown();
    cv_.notify_all();
  }
  throttle_.Cancel();
  if (thread_.joinable()) thread_.join();
  std::lock_guard l(mu_);
  st_.state = "stopped";
}

void LinkSender::SetRate(uint64_t bytes_per_second) {
  throttle_.SetRate(bytes_per_second);
  std::lock_guard l(mu_);
  st_.rate_bytes_per_second = bytes_per_second;
}

LinkStatus LinkSender::status() const {
  LinkStatus s;
  {
    std::lock_guard l(mu_);
    s = st_;
  }
  auto stats = log_->Stats();
  s.log_last_seq = stats.last_seq;
  s.pending_bytes = stats.journal_bytes;
  return s;
}

bool LinkSender::WaitAcked(uint64_t seq, int64_t timeout_ms) const {
  std::unique_lock l(mu_);
  return cv_.wait_for(l, std::chrono::milliseconds(timeout_ms),
                      [&] { return st_.acked_seq >= seq || stopping_; }) &&
         st_.acked_seq >= seq;
}

Result<VerifyStatus> LinkSender::Verify(const std::string& id) {
  if (!config_.dirty || !config_.rewrite) {
    return FailedPrecondition("volume " + config_.volume + " has no changed-block map (scan "
                              "capture): each scan cycle already compares every block");
  }
  std::lock_guard l(mu_);
  VerifyStatus& v = st_.verify;
  if (!id.empty() && v.id == id) return v;
  if (v.state == "waiting" || v.state == "comparing" || v.state == "rewriting") {
    return FailedPrecondition("volume " + config_.volume + " is being verified already (" + v.id +
                              ", " + v.state + ")");
  }
  v = VerifyStatus{};
  v.id = id;
  v.state = "waiting";
  v.total_bytes = log_->size();
  v.started_ns = config_.clock->NowNanos();
  SaveVerify(v);
  cv_.notify_all();
  spdlog::info("link {}: verify {} requested", config_.volume, id);
  return v;
}

void LinkSender::CancelVerify() {
  std::lock_guard l(mu_);
  VerifyStatus& v = st_.verify;
  if (v.state == "waiting") {
    v.state = "done";
    v.finished_ns = config_.clock->NowNanos();
  }
  if (v.state == "waiting" || v.state == "comparing" || v.state == "done") v.cancelled = true;
  SaveVerify(v);
}

void LinkSender::SetState(const std::string& state) {
  std::lock_guard l(mu_);
  st_.state = state;
}

void LinkSender::Loop() {
  int64_t backoff = config_.min_backoff_ms;
  for (;;) {
    {
      std::unique_lock l(mu_);
      if (paused_ || blocked_) st_.state = paused_ ? "paused" : "blocked";
      cv_.wait(l, [&] { return stopping_ || (!paused_ && !blocked_); });
      if (stopping_) return;
      st_.state = "connecting";
      st_.connects++;
    }
    const int64_t started = config_.clock->NowNanos();
    Status s = RunSession();
    std::unique_lock l(mu_);
    if (stopping_) return;
    if (paused_) continue;
    if (!s.ok()) {
      st_.last_error = s.ToString();
      if (s.code() == Code::kFailedPrecondition) {
        blocked_ = true;
        spdlog::error("link {}: {}; the link waits for an operator (resume it after fixing)",
                      config_.volume, s.ToString());
        continue;
      }
      spdlog::warn("link {}: {}; reconnecting in {} ms", config_.volume, s.ToString(), backoff);
    }
    // A session that ran for a while earns a fresh, short backoff.
    if (config_.clock->NowNanos() - started > 10 * kNanosPerSecond) backoff = config_.min_backoff_ms;
    st_.state = "connecting";
    cv_.wait_for(l, std::chrono::milliseconds(backoff), [&] { return stopping_ || paused_; });
    backoff = std::min(backoff * 2, config_.max_backoff_ms);
  }
}

Status LinkSender::RunSession() {
  Session s;
  ASSIGN_OR_RETURN(s.stream, config_.connect());
  s.reader = std::make_unique<FrameReader>(s.stream.get());
  s.writer = std::make_unique<FrameWriter>(s.stream.get(), Codec::kNone);
  {
    std::lock_guard l(mu_);
    if (stopping_ || paused_) return Aborted("stopping");
    stream_ = s.stream.get();
    st_.peer = s.stream->PeerName();
    inflight_.clear();
    inflight_bytes_ = 0;
  }
  struct Unhook {
    LinkSender* self;
    ~Unhook() {
      std::lock_guard l(self->mu_);
      self->stream_ = nullptr;
    }
  } unhook{this};

  Status hs = Handshake(&s);
  if (!hs.ok()) {
    s.stream->Shutdown();
    return hs;
  }
  std::thread acks([&] { ReadAcks(&s); });
  Status result;
  for (;;) {
    {
      std::lock_guard l(mu_);
      if (stopping_ || paused_) {
        result = Aborted("stopping");
        break;
      }
      if (s.reader_done) {
        result = s.ended.ok() ? Aborted("the target closed the link") : s.ended;
        break;
      }
      const int64_t now = config_.clock->NowNanos();
      if (now - s.last_recv_ns > config_.dead_after_ms * 1'000'000) {
        result = Aborted("nothing heard from the target for " +
                         std::to_string(config_.dead_after_ms / 1000) + " s");
        break;
      }
    }
    bool sent_records = false, sent_sync = false;
    result = SendRecords(&s, &sent_records);
    if (!result.ok()) break;
    result = SendSync(&s, &sent_sync);
    if (!result.ok()) break;
    bool sent_resync = false;
    result = SendResync(&s, &sent_resync);
    if (!result.ok()) break;
    sent_sync |= sent_resync;
    bool sent_verify = false;
    result = SendVerify(&s, &sent_verify);
    if (!result.ok()) break;
    sent_sync |= sent_verify;
    SampleRates();
    MaybeTrim();
    bool finished;
    {
      std::lock_guard l(mu_);
      finished = s.sync_finished;
    }
    if (finished && delta_live_) {
      // The known changes were for this target's initial sync only.
      Status removed = config_.delta->Remove();
      if (!removed.ok()) spdlog::warn("link {}: removing the known changes: {}", config_.volume, removed.ToString());
      delta_live_ = false;
    }
    if (sent_records || sent_sync) continue;
    if (config_.clock->NowNanos() - s.last_send_ns > config_.ping_after_ms * 1'000'000) {
      auto w = s.writer->Write(MessageType::kPing, "");
      if (!w.ok()) {
        result = w.status();
        break;
      }
      s.last_send_ns = config_.clock->NowNanos();
    }
    // Idle: wait for acks when a window is full (an ack wakes cv_), else for new records.
    // The sync window counts too: a sync blocked on it used to sleep the full timeout on the
    // log's condition variable, which no ack wakes.
    auto window_full = [&] {
      return inflight_bytes_ >= config_.window_bytes ||
             (s.sync && !config_.reset_capture && !s.seeded && s.sync_cursor < log_->size() &&
              s.sync_cursor >= s.sync_acked + config_.sync_window_bytes);
    };
    std::unique_lock l(mu_);
    if (window_full()) {
      const uint64_t acked = s.acked, sync_acked = s.sync_acked;
      cv_.wait_for(l, std::chrono::milliseconds(200), [&] {
        return s.acked != acked || s.sync_acked != sync_acked || s.reader_done || stopping_;
      });
    } else {
      l.unlock();
      log_->WaitForAppend(s.next_seq - 1, 200);
    }
  }
  s.stream->Shutdown();
  acks.join();
  return result;
}

Status LinkSender::Handshake(Session* s) {
  Hello h;
  h.volume = config_.volume;
  h.volume_id = log_->volume_id();
  h.history_id = log_->history_id();
  h.volume_size = log_->size();
  h.block_size = log_->block_size();
  h.source_node = config_.source_node;
  h.source_first_seq = log_->Stats().oldest_point + 1;
  h.source_last_seq = log_->last_seq();
  h.codecs = config_.codecs;
  h.initial_sync = true;
  h.retention_seconds = config_.retention_seconds;
  RETURN_IF_ERROR(s->writer->Write(MessageType::kHello, EncodeHello(h)).status());
  ASSIGN_OR_RETURN(Frame f, s->reader->Read());
  if (f.type == MessageType::kRefuse) {
    ASSIGN_OR_RETURN(Refuse r, DecodeRefuse(f.payload));
    std::string m = "target refused the link (" + r.code + "): " + r.message;
    if (r.code == "unavailable" || r.code == "corrupt_frame" || r.code == "replaced") {
      return Aborted(m);
    }
    return FailedPrecondition(m);
  }
  if (f.type != MessageType::kWelcome) {
    return DataLoss("corrupt frame: target answered HELLO with " +
                    std::string(MessageTypeName(f.type)));
  }
  ASSIGN_OR_RETURN(Welcome w, DecodeWelcome(f.payload));
  Codec codec;
  if (!ParseCodec(w.codec, &codec)) return DataLoss("corrupt frame: target chose codec " + w.codec);
  s->writer->set_codec(codec);
  if (w.sync_frame_checksums && codec == Codec::kNone) s->sync_sums = SyncChecksums::kFrame;
  {
    std::lock_guard l(mu_);
    st_.codec = w.codec;
  }
  const uint64_t oldest_held = log_->Stats().oldest_point + 1;
  s->next_seq = w.resume_from;
  s->target_resync_open = w.resync_open;
  if (config_.dirty) {
    using Phase = capture::DirtyMap::Phase;
    if (w.resync_open && config_.dirty->phase() == Phase::kIdle) {
      // The target waits for a resync this node lost track of: rewriting everything is safe.
      config_.dirty->SetAll();
      config_.dirty->SetPhase(Phase::kRewriting);
      RETURN_IF_ERROR(config_.dirty->Save());
    } else if (!w.resync_open && config_.dirty->phase() == Phase::kDone) {
      config_.dirty->SetPhase(Phase::kIdle);  // the target closed the window
      RETURN_IF_ERROR(config_.dirty->Save());
    }
  }
  if (w.resume_from < oldest_held) {
    if (!CanResync()) {
      return FailedPrecondition("the target needs seq " + std::to_string(w.resume_from) +
                                " but the pending log starts at " + std::to_string(oldest_held) +
                                " and no changed-block map covers the difference; the volume "
                                "needs a full resync");
    }
    RETURN_IF_ERROR(BeginResync(s, w.resume_from, oldest_held));
  } else if (!w.resync_open && config_.dirty &&
             config_.dirty->phase() == capture::DirtyMap::Phase::kRewriting) {
    // A verify's RESYNC_BEGIN (a window that drops nothing) was lost with the connection.
    RETURN_IF_ERROR(BeginResync(s, w.resume_from, w.resume_from));
  }
  s->sync = w.sync_needed;
  s->sync_cursor = w.sync_offset;
  s->seeded = w.sync_seeded;
  std::string method = !s->sync ? "" : !s->seeded ? "copy" : "digests", reason;
  if (s->sync && s->seeded && delta_live_) {
    ASSIGN_OR_RETURN(reason, UseKnownChanges(w));
    if (reason.empty()) {
      s->known = true;
      method = "known-changes";
    } else {
      spdlog::info("link {}: seeded sync compares digests: {}", config_.volume, reason);
    }
  } else if (!s->sync && delta_live_) {
    // The target is past its initial sync: the changes were for it only. A replica prepared
    // later starts from its own seed, which these no longer describe.
    RETURN_IF_ERROR(config_.delta->Remove());
    delta_live_ = false;
  }
  s->last_recv_ns = s->last_send_ns = config_.clock->NowNanos();
  if (s->sync && config_.reset_capture) {
    config_.reset_capture();  // the next full cycle carries the whole disk
  } else if (s->sync) {
    ASSIGN_OR_RETURN(s->disk, config_.env->OpenFile(config_.disk_path, OpenMode::kRead));
  }
  std::lock_guard l(mu_);
  st_.state = s->sync ? "syncing" : "replicating";
  st_.acked_seq = std::max(st_.acked_seq, w.resume_from - 1);
  st_.sent_seq = w.resume_from - 1;
  st_.initial_sync = s->sync;
  if (s->sync) {  // else the last initial sync's method stays on show
    st_.sync_method = method;
    st_.sync_method_reason = reason;
  }
  st_.sync_offset = s->sync ? w.sync_offset : 0;
  st_.last_error.clear();
  s->acked = w.resume_from - 1;
  s->sync_acked = w.sync_offset;
  spdlog::info("link {} → {}: resuming at seq {}{} ({})", config_.volume, st_.peer, w.resume_from,
               s->sync ? ", initial sync at byte " + std::to_string(w.sync_offset) : "", w.codec);
  return Status::Ok();
}

void LinkSender::ReadAcks(Session* s) {
  Status ended;
  for (;;) {
    auto f = s->reader->Read();
    if (!f.ok()) {
      ended = f.status();
      break;
    }
    const int64_t now = config_.clock->NowNanos();
    if (f->type == MessageType::kPing) {
      std::lock_guard l(mu_);
      s->last_recv_ns = now;
      continue;
    }
    if (f->type == MessageType::kDigests) {
      std::lock_guard l(mu_);
      s->last_recv_ns = now;
      s->digests.emplace_back(f->payload);
      cv_.notify_all();
      continue;
    }
    if (f->type == MessageType::kRefuse) {
      auto r = DecodeRefuse(f->payload);
      ended = r.ok() ? Aborted("target reset the link (" + r->code + "): " + r->message) : r.status();
      break;
    }
    if (f->type != MessageType::kAck) {
      ended = DataLoss("corrupt frame: unexpected " + std::string(MessageTypeName(f->type)) +
                       " from the target");
      break;
    }
    auto a = DecodeAck(f->payload);
    if (!a.ok()) {
      ended = a.status();
      break;
    }
    uint64_t acked;
    {
      std::lock_guard l(mu_);
      s->last_recv_ns = now;
      if (a->durable_seq > s->acked) s->acked = a->durable_seq;
      acked = s->acked;
      if (a->sync_offset != kNoSync) {
        s->sync_acked = std::max(s->sync_acked, a->sync_offset);
        st_.sync_offset = s->sync_acked;
      } else if (s->sync_done_seq && acked >= s->sync_done_seq) {
        s->sync_finished = true;
        st_.initial_sync = false;
        st_.state = "replicating";
      }
      while (!inflight_.empty() && inflight_.front().first <= acked) {
        inflight_bytes_ -= inflight_.front().second;
        inflight_.pop_front();
      }
      st_.acked_seq = std::max(st_.acked_seq, acked);
      while (!sent_markers_.empty() && sent_markers_.front().first <= acked) {
        st_.newest_acked_marker_seq = sent_markers_.front().first;
        st_.newest_acked_marker_ns = sent_markers_.front().second;
        sent_markers_.pop_front();
      }
      cv_.notify_all();
    }
  }
  std::lock_guard l(mu_);
  s->ended = ended;
  s->reader_done = true;
  cv_.notify_all();
}

// Trims the pending log: records the target holds durably and the disk holds durably.
void LinkSender::MaybeTrim() {
  const int64_t now = config_.clock->NowNanos();
  if (!config_.checkpoint || now - last_checkpoint_ns_ < kNanosPerSecond / 10) return;
  if (now - last_checkpoint_ns_ < 2 * kNanosPerSecond &&
      log_->Stats().journal_bytes < config_.trim_above_bytes) {
    return;
  }
  uint64_t acked;
  {
    std::lock_guard l(mu_);
    acked = st_.acked_seq;
  }
  if (acked <= trimmed_through_) return;
  last_checkpoint_ns_ = now;
  auto cp = config_.checkpoint();
  if (!cp.ok()) {
    spdlog::warn("link {}: disk checkpoint failed: {}", config_.volume, cp.status().ToString());
    return;
  }
  const uint64_t through = std::min(acked, *cp);
  Status d = log_->DiscardThrough(through);
  if (d.ok()) {
    trimmed_through_ = through;
  } else if (d.code() != Code::kFailedPrecondition) {
    spdlog::warn("link {}: trimming the pending log failed: {}", config_.volume, d.ToString());
  }
}

Status LinkSender::SendRecords(Session* s, bool* sent) {
  {
    std::lock_guard l(mu_);
    if (inflight_bytes_ >= config_.window_bytes) return Status::Ok();
  }
  const uint64_t last = log_->last_seq();
  if (last < s->next_seq) return Status::Ok();
  // Only records durable in the pending log leave the node (see link.md, "Identity").
  if (log_->synced_seq() < s->next_seq) RETURN_IF_ERROR(log_->Sync());
  const uint64_t up_to = log_->synced_seq();
  if (up_to < s->next_seq) return Status::Ok();
  auto batch = log_->ReadRecords(s->next_seq, up_to, config_.batch_bytes);
  if (!batch.ok()) {
    if (batch.status().code() == Code::kOutOfRange) {
      if (CanResync()) {
        *sent = true;
        return BeginResync(s, s->next_seq, log_->Stats().oldest_point + 1);
      }
      return FailedPrecondition("pending log no longer holds seq " + std::to_string(s->next_seq) +
                                ": " + std::string(batch.status().message()) +
                                "; the volume needs a full resync");
    }
    return batch.status();
  }
  if (batch->empty()) return Status::Ok();
  std::string payload;
  uint64_t raw = 0;
  for (const auto& r : *batch) raw += r.record.data.size();
  payload.reserve(raw + batch->size() * kWireRecordHeaderSize + 8);
  EncodeRecords(*batch, &payload);
  ASSIGN_OR_RETURN(size_t wire, s->writer->Write(MessageType::kRecords, payload));
  const uint64_t last_sent = batch->back().record.seq;
  s->next_seq = last_sent + 1;
  s->last_send_ns = config_.clock->NowNanos();
  *sent = true;
  {
    std::lock_guard l(mu_);
    inflight_.push_back({last_sent, payload.size()});
    inflight_bytes_ += payload.size();
    st_.sent_seq = last_sent;
    st_.wire_bytes += wire;
    st_.raw_bytes += payload.size();
    st_.records += batch->size();
    for (const auto& r : *batch) {
      if (r.record.type == journal::RecordType::kMarker) {
        sent_markers_.push_back({r.record.seq, r.record.timestamp_ns});
      }
    }
  }
  // The throttle counts the bytes on the wire (after compression), charged once they are
  // sent: the next frame waits for them.
  return throttle_.Acquire(wire);
}

Status LinkSender::SendSync(Session* s, bool* sent) {
  if (!s->sync) return Status::Ok();
  const uint64_t size = log_->size();
  if (config_.reset_capture) {
    if (s->sync_done_seq == 0) s->sync_done_seq = config_.full_cycle_marker();
    if (s->sync_done_seq == 0 || s->next_seq <= s->sync_done_seq) return Status::Ok();
    RETURN_IF_ERROR(
        s->writer->Write(MessageType::kSyncDone, EncodeSyncDone({s->sync_done_seq})).status());
    s->sync = false;
    *sent = true;
    return Status::Ok();
  }
  if (s->sync_cursor >= size) {
    if (s->sync_done_seq == 0) {
      // Every byte was read: the marker appended now orders after all of those reads.
      ASSIGN_OR_RETURN(s->sync_done_seq, config_.mark("initial sync complete"));
      *sent = true;
      return Status::Ok();
    }
    if (s->next_seq <= s->sync_done_seq) return Status::Ok();  // its records go first
    RETURN_IF_ERROR(
        s->writer->Write(MessageType::kSyncDone, EncodeSyncDone({s->sync_done_seq})).status());
    s->sync = false;
    *sent = true;
    std::string().swap(window_buf_);
    std::string().swap(payload_buf_);
    std::vector<std::string_view>().swap(pieces_);
    spdlog::info("link {}: initial sync sent; consistent from seq {}", config_.volume,
                 s->sync_done_seq);
    return Status::Ok();
  }
  if (!s->seeded) {
    // A copy runs at most this far ahead of the target's durable progress. A seeded sync
    // sends few of the bytes it scans, and the target makes its progress durable less often
    // (the stream's own flow control holds what is sent).
    std::lock_guard l(mu_);
    if (s->sync_cursor >= s->sync_acked + config_.sync_window_bytes) return Status::Ok();
  }
  if (s->known) return SendKnownWindow(s, sent);
  if (s->seeded) return SendSeededWindow(s, sent);
  if (s->sync_total == 0) {
    // Allocated bytes, for progress: walk the data extents once.
    uint64_t total = 0;
    for (uint64_t off = 0; off < size;) {
      ASSIGN_OR_RETURN(uint64_t data, s->disk->NextData(off));
      if (data >= size) break;
      uint64_t end = std::min<uint64_t>(size, data + (1ull << 20));
      total += end - data;
      off = end;
    }
    s->sync_total = std::max<uint64_t>(total, 1);
  }
  const uint32_t bs = log_->block_size();
  SyncData d;
  d.total_bytes = s->sync_total;
  ASSIGN_OR_RETURN(uint64_t data_at, s->disk->NextData(s->sync_cursor));
  data_at = data_at / bs * bs;
  if (data_at >= size) {
    d.scanned_to = size;
  } else {
    const uint64_t n = std::min<uint64_t>(config_.sync_chunk_bytes, size - data_at);
    std::string& buf = WindowBuffer(n);
    RETURN_IF_ERROR(ReadDisk(s->disk.get(), data_at, n, buf.data()));
    // Runs of non-zero blocks become extents; zero blocks are not sent.
    for (uint64_t b = 0; b < n / bs;) {
      std::string_view block(buf.data() + b * bs, bs);
      if (IsAllZero(block)) {
        ++b;
        continue;
      }
      uint64_t e = b + 1;
      while (e < n / bs && !IsAllZero(std::string_view(buf.data() + e * bs, bs))) ++e;
      d.extents.push_back({data_at + b * bs, std::string_view(buf).substr(b * bs, (e - b) * bs)});
      b = e;
    }
    d.scanned_to = data_at + n;
  }
  ASSIGN_OR_RETURN(SentBytes put, SendSyncData(s, d));
  s->sync_cursor = d.scanned_to;
  s->last_send_ns = config_.clock->NowNanos();
  *sent = true;
  std::lock_guard l(mu_);
  st_.wire_bytes += put.wire;
  st_.raw_bytes += put.raw;
  st_.sync_scanned = d.scanned_to;
  st_.sync_total = s->sync_total;
  return Status::Ok();
}

bool LinkSender::CanResync() const {
  return config_.dirty && config_.rewrite &&
         (!config_.dirty->Empty() || config_.dirty->phase() != capture::DirtyMap::Phase::kIdle);
}

Status LinkSender::BeginResync(Session* s, uint64_t missing_from, uint64_t resume_at) {
  RETURN_IF_ERROR(s->writer->Write(MessageType::kResyncBegin,
                                   EncodeResyncBegin({missing_from, resume_at})).status());
  config_.dirty->SetPhase(capture::DirtyMap::Phase::kRewriting);
  RETURN_IF_ERROR(config_.dirty->Save());
  s->next_seq = resume_at;
  s->target_resync_open = missing_from;
  s->resync_cursor = 0;
  if (missing_from == resume_at) {
    spdlog::warn("link {}: verify: resyncing {} bytes that differ from the target", config_.volume,
                 config_.dirty->DirtyBytes());
  } else {
    spdlog::warn("link {}: records {}..{} are no longer in the pending log; resyncing {} bytes of "
                 "changed blocks", config_.volume, missing_from, resume_at - 1,
                 config_.dirty->DirtyBytes());
  }
  return Status::Ok();
}

// Rewrites the changed blocks into the pending log (they then travel as records), then ends
// the target's resync window at a marker.
Status LinkSender::SendResync(Session* s, bool* sent) {
  if (!config_.dirty) return Status::Ok();
  using Phase = capture::DirtyMap::Phase;
  capture::DirtyMap& dirty = *config_.dirty;
  const Phase phase = dirty.phase();
  if (phase == Phase::kRewriting && s->target_resync_open) {
    {
      std::lock_guard l(mu_);
      if (inflight_bytes_ >= config_.window_bytes / 2) return Status::Ok();
      st_.resync = "rewriting";
      st_.dirty_bytes = dirty.DirtyBytes();
    }
    // One rewrite at a time, after the link shipped everything before it: the log grows by
    // at most one range, whatever the volume's size.
    if (log_->last_seq() >= s->next_seq) return Status::Ok();
    auto next = dirty.NextDirty(s->resync_cursor, 4u << 20);
    if (!next && s->resync_cursor != 0) {
      s->resync_cursor = 0;  // once more from the start: bits set meanwhile
      next = dirty.NextDirty(0, 4u << 20);
    }
    *sent = true;
    if (!next) {
      RETURN_IF_ERROR(log_->Sync());
      ASSIGN_OR_RETURN(uint64_t m, config_.mark("resync complete"));
      dirty.SetPhase(Phase::kDone, m);
      return dirty.Save();
    }
    RETURN_IF_ERROR(config_.rewrite(next->first, next->second));
    dirty.Clear(next->first, next->second);
    s->resync_cursor = next->first + next->second;
    s->rewritten_unsaved += next->second;
    if (s->rewritten_unsaved >= (64u << 20)) {
      RETURN_IF_ERROR(log_->Sync());  // the rewrites are in the log before their bits go
      RETURN_IF_ERROR(dirty.Save());
      s->rewritten_unsaved = 0;
    }
    return Status::Ok();
  }
  if (phase == Phase::kDone && s->target_resync_open) {
    const uint64_t m = dirty.consistent_from();
    if (s->next_seq <= m) return Status::Ok();  // its records go first
    RETURN_IF_ERROR(s->writer->Write(MessageType::kResyncDone, EncodeSyncDone({m})).status());
    s->target_resync_open = 0;
    *sent = true;
    std::lock_guard l(mu_);
    st_.resync = "none";
    st_.dirty_bytes = 0;
    if (st_.verify.state == "rewriting") {
      st_.verify.state = "done";
      st_.verify.consistent_from = m;
      st_.verify.finished_ns = config_.clock->NowNanos();
      SaveVerify(st_.verify);
    }
    spdlog::info("link {}: resync sent; consistent from seq {}", config_.volume, m);
  }
  return Status::Ok();
}

Status LinkSender::RequestDigests(Session* s, MessageType ask, uint32_t granularity,
                                  const std::vector<DigestRange>& ranges) {
  DigestRequest q;
  q.granularity = granularity;
  q.ranges = ranges;
  std::string payload;
  EncodeDigestRequest(q, &payload);
  ASSIGN_OR_RETURN(size_t wire, s->writer->Write(ask, payload));
  std::lock_guard l(mu_);
  st_.wire_bytes += wire;
  st_.raw_bytes += payload.size();
  return Status::Ok();
}

Result<Digests> LinkSender::AwaitDigests(Session* s, uint32_t granularity,
                                         const std::vector<DigestRange>& ranges) {
  std::string reply;
  {
    std::unique_lock l(mu_);
    cv_.wait_for(l, std::chrono::milliseconds(config_.dead_after_ms),
                 [&] { return !s->digests.empty() || s->reader_done || stopping_ || paused_; });
    if (s->digests.empty()) return Aborted("no digests from the target");
    reply = std::move(s->digests.front());
    s->digests.pop_front();
    st_.wire_bytes += reply.size() + kFrameHeaderSize;  // what came back counts too
  }
  ASSIGN_OR_RETURN(Digests d, DecodeDigests(reply));
  uint64_t granules = 0;
  for (const DigestRange& r : ranges) granules += (r.length + granularity - 1) / granularity;
  if (d.granularity != granularity || d.digests.size() != granules) {
    return DataLoss("corrupt frame: DIGESTS do not answer the request");
  }
  return d;
}

// The buffer of a read window (a sync chunk, a compared window), kept from one to the next: a
// fresh buffer each time is mapped and zeroed anew, and its page faults cost more than the
// work on it (on a virtual machine, most of a 64 MiB window's time). Freed once the sync or
// verify is over.
std::string& LinkSender::WindowBuffer(size_t n) {
  window_buf_.resize(n);
  return window_buf_;
}

// Verify: one window of the compare per call, at the link's pace; then the resync of what
// differs, through the changed-block map (link.md, "Verify").
Status LinkSender::SendVerify(Session* s, bool* sent) {
  VerifyStatus v;
  {
    std::lock_guard l(mu_);
    v = st_.verify;
    if (inflight_bytes_ >= config_.window_bytes / 2) return Status::Ok();
  }
  using Phase = capture::DirtyMap::Phase;
  if (v.state == "rewriting" && !s->target_resync_open && config_.dirty->phase() == Phase::kIdle) {
    // Restarted after RESYNC_DONE went out but before the verify was saved as done: the
    // handshake found the target's window closed.
    std::lock_guard l(mu_);
    st_.verify.state = "done";
    st_.verify.finished_ns = config_.clock->NowNanos();
    SaveVerify(st_.verify);
    return Status::Ok();
  }
  if (v.state != "waiting" && v.state != "comparing") return Status::Ok();
  // A verify waits for the initial sync and for any resync to finish (kDone with the target's
  // window closed is finished: the phase turns idle at the next handshake).
  const Phase phase = config_.dirty->phase();
  if (s->sync || s->target_resync_open || (phase != Phase::kIdle && phase != Phase::kDone)) {
    return Status::Ok();
  }
  const uint64_t size = log_->size();
  *sent = true;
  if (!v.cancelled && v.compared_bytes < size) {
    const uint64_t start = v.compared_bytes;
    const uint64_t window = std::min<uint64_t>(64ull << 20, size - start);
    std::string& buf = WindowBuffer(window);
    ASSIGN_OR_RETURN(auto disk, config_.env->OpenFile(config_.disk_path, OpenMode::kRead));
    auto fill = [&] { return ReadDisk(disk.get(), start, window, buf.data()); };
    ASSIGN_OR_RETURN(std::vector<DigestRange> ranges,
                     DifferingBlocks(s, MessageType::kVerifyRequest, start, buf, fill));
    uint64_t differing = 0;
    for (const DigestRange& r : ranges) {
      config_.dirty->Set(r.offset, r.length);
      differing += r.length;
    }
    if (!ranges.empty()) {
      RETURN_IF_ERROR(config_.dirty->Save());
      CrashPoint("link.verify.compared");  // tests: bits saved, the window not yet marked done
    }
    s->last_send_ns = config_.clock->NowNanos();
    std::lock_guard l(mu_);
    st_.verify.state = "comparing";
    st_.verify.compared_bytes = start + window;
    st_.verify.differing_bytes += differing;
    SaveVerify(st_.verify);
    return Status::Ok();
  }
  std::string().swap(window_buf_);
  if (!config_.dirty->Empty()) {
    RETURN_IF_ERROR(BeginResync(s, s->next_seq, s->next_seq));
    {
      std::lock_guard l(mu_);
      st_.verify.state = "rewriting";
      SaveVerify(st_.verify);
    }
    CrashPoint("link.verify.rewriting");  // tests: RESYNC_BEGIN sent, nothing rewritten yet
    spdlog::info("link {}: verify {}: {} bytes differ from the target; resyncing them",
                 config_.volume, v.id, v.differing_bytes);
    return Status::Ok();
  }
  std::lock_guard l(mu_);
  st_.verify.state = "done";
  st_.verify.finished_ns = config_.clock->NowNanos();
  // What it found was resynced by a resync that ran meanwhile (after a restart): that one's
  // closing marker stands for it.
  if (st_.verify.differing_bytes) st_.verify.consistent_from = config_.dirty->consistent_from();
  SaveVerify(st_.verify);
  if (v.cancelled) {
    spdlog::info("link {}: verify {} cancelled after {} bytes; nothing to resync", config_.volume,
                 v.id, v.compared_bytes);
  } else {
    spdlog::info("link {}: verify {}: the target equals the source", config_.volume, v.id);
  }
  return Status::Ok();
}

Result<std::vector<DigestRange>> LinkSender::DifferingBlocks(Session* s, MessageType ask,
                                                             uint64_t start,
                                                             const std::string& buf,
                                                             const std::function<Status()>& fill) {
  const uint32_t bs = log_->block_size();
  std::vector<DigestRange> ranges = {{start, buf.size()}};
  bool filled = false;
  std::vector<Digest128> mine;
  for (uint32_t g : {uint32_t{1} << 20, uint32_t{64} << 10, bs}) {
    if (g < bs || g % bs) continue;
    // Each level's request goes out first: the target reads and digests its copy while this
    // side reads its own (the first level) and digests it, instead of one after the other.
    RETURN_IF_ERROR(RequestDigests(s, ask, g, ranges));
    if (!filled) {
      RETURN_IF_ERROR(fill());
      filled = true;
    }
    mine.clear();
    for (const DigestRange& r : ranges) {
      for (uint64_t off = r.offset; off < r.offset + r.length; off += g) {
        const uint64_t len = std::min<uint64_t>(g, r.offset + r.length - off);
        mine.push_back(DigestOf(std::string_view(buf).substr(off - start, len)));
      }
    }
    ASSIGN_OR_RETURN(Digests d, AwaitDigests(s, g, ranges));
    std::vector<DigestRange> next;
    size_t i = 0;
    for (const DigestRange& r : ranges) {
      for (uint64_t off = r.offset; off < r.offset + r.length; off += g, ++i) {
        const uint64_t len = std::min<uint64_t>(g, r.offset + r.length - off);
        // Digest 0 is a granule the target could not read: always a difference.
        if (d.digests[i] != Digest128{} && mine[i] == d.digests[i]) continue;
        if (!next.empty() && next.back().offset + next.back().length == off) {
          next.back().length += len;
        } else {
          next.push_back({off, len});
        }
      }
    }
    ranges = std::move(next);
    if (ranges.empty()) break;
  }
  return ranges;
}

// Seeded sync of one window: compare digests from coarse to fine (1 MiB, 64 KiB, a block),
// then send only the blocks that differ (zero blocks as zero extents).
Status LinkSender::SendSeededWindow(Session* s, bool* sent) {
  const uint64_t size = log_->size();
  const uint64_t start = s->sync_cursor;
  const uint64_t window = std::min<uint64_t>(64ull << 20, size - start);
  std::string& buf = WindowBuffer(window);
  auto fill = [&] { return ReadDisk(s->disk.get(), start, window, buf.data()); };
  ASSIGN_OR_RETURN(std::vector<DigestRange> ranges,
                   DifferingBlocks(s, MessageType::kDigestRequest, start, buf, fill));
  RETURN_IF_ERROR(SendBlocks(s, buf, start, ranges, start + window));
  *sent = true;
  return Status::Ok();
}

// Seeded sync of one window with known changes: read and send only the blocks they name.
Status LinkSender::SendKnownWindow(Session* s, bool* sent) {
  const uint64_t size = log_->size();
  const uint64_t start = s->sync_cursor;
  const uint64_t window = std::min<uint64_t>(64ull << 20, size - start);
  std::vector<DigestRange> ranges;
  for (uint64_t at = start; at < start + window;) {
    auto next = config_.delta->NextDirty(at, 4u << 20);
    if (!next || next->first >= start + window) break;
    const uint64_t end = std::min(next->first + next->second, start + window);
    if (!ranges.empty() && ranges.back().offset + ranges.back().length == next->first) {
      ranges.back().length += end - next->first;
    } else {
      ranges.push_back({next->first, end - next->first});
    }
    at = end;
  }
  std::string& buf = WindowBuffer(window);
  for (const DigestRange& r : ranges) {
    RETURN_IF_ERROR(ReadDisk(s->disk.get(), r.offset, r.length, buf.data() + (r.offset - start)));
  }
  RETURN_IF_ERROR(SendBlocks(s, buf, start, ranges, start + window));
  *sent = true;
  return Status::Ok();
}

Result<LinkSender::SentBytes> LinkSender::SendSyncData(Session* s, const SyncData& d) {
  // The extents' data goes from the read buffer to the stream: no payload is gathered.
  EncodeSyncDataPieces(d, &payload_buf_, &pieces_, s->sync_sums);
  size_t raw = 0;
  for (std::string_view p : pieces_) raw += p.size();
  ASSIGN_OR_RETURN(size_t wire, s->writer->WriteV(MessageType::kSyncData, pieces_));
  // Bytes on the wire, charged once sent (as for records).
  RETURN_IF_ERROR(throttle_.Acquire(wire));
  return SentBytes{raw, wire};
}

Status LinkSender::SendBlocks(Session* s, std::string_view buf, uint64_t start,
                              const std::vector<DigestRange>& ranges, uint64_t scanned_to) {
  const uint32_t bs = log_->block_size();
  SyncData d;
  d.total_bytes = log_->size();
  size_t payload_bytes = 0;
  auto flush = [&](uint64_t to) -> Status {
    d.scanned_to = to;
    ASSIGN_OR_RETURN(SentBytes put, SendSyncData(s, d));
    std::lock_guard l(mu_);
    st_.wire_bytes += put.wire;
    st_.raw_bytes += put.raw;
    d.extents.clear();
    payload_bytes = 0;
    return Status::Ok();
  };
  for (const DigestRange& r : ranges) {
    for (uint64_t b = r.offset; b < r.offset + r.length;) {
      const bool zero = IsAllZero(buf.substr(b - start, bs));
      uint64_t e = b + bs;
      while (e < r.offset + r.length && IsAllZero(buf.substr(e - start, bs)) == zero &&
             e - b < (4u << 20)) {
        e += bs;
      }
      SyncExtent x;
      x.offset = b;
      if (zero) {
        x.zero_length = static_cast<uint32_t>(e - b);
      } else {
        x.data = buf.substr(b - start, e - b);
        payload_bytes += x.data.size();
      }
      d.extents.push_back(std::move(x));
      if (payload_bytes >= (4u << 20)) RETURN_IF_ERROR(flush(e));
      b = e;
    }
  }
  RETURN_IF_ERROR(flush(scanned_to));
  s->sync_cursor = scanned_to;
  s->last_send_ns = config_.clock->NowNanos();
  std::lock_guard l(mu_);
  st_.sync_scanned = s->sync_cursor;
  st_.sync_total = log_->size();
  return Status::Ok();
}

Result<std::string> LinkSender::UseKnownChanges(const Welcome& w) {
  if (!w.seed) return std::string("the target does not know which blocks its seed changed");
  const SeedChanges& seed = *w.seed;
  if (seed.volume_id != config_.diverged_volume_id || seed.history_id != config_.diverged_history_id) {
    return "the target's seed is the disk of volume " + seed.volume_id + " history " + seed.history_id +
           ", not of " + config_.diverged_volume_id + " history " + config_.diverged_history_id +
           " that this volume diverged from";
  }
  if (seed.from_seq == 0 || seed.from_seq > config_.diverged_through + 1) {
    return "the seed's changes start at seq " + std::to_string(seed.from_seq) +
           " but this volume's history holds them only up to seq " +
           std::to_string(config_.diverged_through);
  }
  if (seed.block_size != log_->block_size()) {
    return "the seed's blocks are " + std::to_string(seed.block_size) + " bytes, this volume's " +
           std::to_string(log_->block_size());
  }
  const uint32_t bs = log_->block_size();
  for (auto [first, count] : seed.runs) {
    if (first > log_->size() / bs || count > log_->size() / bs - first) {
      return std::string("the seed's changes name blocks past the end of the volume");
    }
  }
  // What may differ: this side's changes since the divergence (config_.delta), the seed's,
  // the blocks of records the target will not get as records (all those the log holds), and
  // the blocks whose records were dropped (the changed-block map). Saved before any record
  // is trimmed.
  config_.delta->SetRuns(seed.runs, bs);
  config_.delta->SetRuns(log_->JournaledBlockRuns(), bs);
  if (config_.dirty) {
    for (uint64_t at = 0;;) {
      auto next = config_.dirty->NextDirty(at, 64u << 20);
      if (!next) break;
      config_.delta->Set(next->first, next->second);
      at = next->first + next->second;
    }
  }
  RETURN_IF_ERROR(config_.delta->Save());
  return std::string();
}

void LinkSender::SampleRates() {
  const int64_t now = config_.clock->NowNanos();
  std::lock_guard l(mu_);
  if (last_sample_ns_ == 0) {
    last_sample_ns_ = now;
    sample_wire_ = st_.wire_bytes;
    return;
  }
  const int64_t dt = now - last_sample_ns_;
  if (dt < kNanosPerSecond) return;
  st_.upload_bytes_per_second =
      static_cast<double>(st_.wire_bytes - sample_wire_) * kNanosPerSecond / static_cast<double>(dt);
  last_sample_ns_ = now;
  sample_wire_ = st_.wire_bytes;
}

}  // namespace ferry::link
