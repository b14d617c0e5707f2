#include "link/receiver.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>

#include "journal/view.h"
#include "link/frame.h"
#include "link/replica_store.h"
#include "link/sync_applier.h"

namespace ferry::link {

struct LinkReceiver::Conn {
  std::unique_ptr<Stream> stream;
  std::unique_ptr<FrameReader> reader;
  std::unique_ptr<FrameWriter> writer;
  std::shared_ptr<journal::Replica> replica;
  Hello hello;
  std::string key;  // volume id hex
  uint64_t next_seq = 0;
  uint64_t sync_saved = 0;
  bool sync_seeded = false;       // the base held an older version: few of its bytes are sent
  uint64_t sync_unsaved = 0;      // base bytes written since sync_saved
  mutable std::mutex mu;  // guards st
  InboundStatus st;
  bool closed = false;  // by Close: its status is not kept (guarded by the receiver's mu_)
};

LinkReceiver::LinkReceiver(ReplicaDirectory* directory, ReceiverOptions options)
    : directory_(directory), options_(options) {}

LinkReceiver::~LinkReceiver() { Stop(); }

void LinkReceiver::Stop() {
  std::lock_guard l(mu_);
  stopping_ = true;
  for (auto& [k, c] : by_volume_) c->stream->Shutdown();
}

void LinkReceiver::Close(const std::string& volume_id) {
  std::lock_guard l(mu_);
  auto it = by_volume_.find(volume_id);
  if (it != by_volume_.end()) {
    it->second->stream->Shutdown();
    it->second->closed = true;
  }
  last_.erase(volume_id);
}

std::vector<InboundStatus> LinkReceiver::Inbound() const {
  std::lock_guard l(mu_);
  std::vector<InboundStatus> out;
  for (const auto& [k, st] : last_) {
    auto it = by_volume_.find(k);
    if (it != by_volume_.end()) {
      std::lock_guard cl(it->second->mu);
      out.push_back(it->second->st);
    } else {
      out.push_back(st);
    }
  }
  return out;
}

namespace {

ferry::Status SendRefuse(FrameWriter* w, const std::string& code, const std::string& message) {
  auto r = w->Write(MessageType::kRefuse, EncodeRefuse({code, message}));
  return r.ok() ? ferry::Status::Ok() : r.status();
}

// The digests of q's granules, reading n bytes at an offset with read. A run that cannot be
// read is read again granule by granule; a granule that still fails gets the digest 0, which
// the source takes as a difference (link.md, "Verify").
Result<Digests> DigestsOf(const DigestRequest& q,
                          const std::function<ferry::Status(uint64_t, size_t, char*)>& read) {
  Digests d;
  d.granularity = q.granularity;
  d.ranges = q.ranges;
  const uint64_t step = std::max<uint64_t>(q.granularity, 4u << 20) / q.granularity * q.granularity;
  std::string buf;
  for (const DigestRange& r : q.ranges) {
    for (uint64_t off = r.offset; off < r.offset + r.length;) {
      const uint64_t n = std::min<uint64_t>(step, r.offset + r.length - off);
      buf.resize(n);
      const bool whole = read(off, n, buf.data()).ok();
      for (uint64_t g = 0; g < n; g += q.granularity) {
        const uint64_t len = std::min<uint64_t>(q.granularity, n - g);
        if (!whole) {
          ferry::Status s = read(off + g, len, buf.data() + g);
          if (!s.ok()) {
            spdlog::warn("digest of bytes {}..{}: {}; counted as differing", off + g, off + g + len,
                         s.ToString());
            d.digests.push_back({});
            continue;
          }
        }
        d.digests.push_back(DigestOf(std::string_view(buf).substr(g, len)));
      }
      off += n;
    }
  }
  return d;
}

Result<Digests> BaseDigests(journal::Replica& replica, const DigestRequest& q) {
  // The base of a seeded sync is a plain file: a read error is an error, not a difference.
  ferry::Status failed;
  auto d = DigestsOf(q, [&](uint64_t off, size_t n, char* dst) {
    ferry::Status s = replica.ReadBase(off, n, dst);
    if (!s.ok() && failed.ok()) failed = s;
    return s;
  });
  if (!failed.ok()) return failed;
  return d;
}

// The target's newest state: the view at the newest seq it holds.
Result<Digests> NewestDigests(journal::Replica& replica, const DigestRequest& q,
                              const std::string& volume) {
  if (replica.GetInitialSync().running || replica.OpenResync() != 0) {
    return FailedPrecondition("link " + volume + ": VERIFY_REQUEST while an initial sync or a "
                              "resync is running; the source asks again after it");
  }
  ASSIGN_OR_RETURN(auto view, replica.OpenView(replica.last_seq()));
  return DigestsOf(q, [&](uint64_t off, size_t n, char* dst) { return view->Read(off, n, dst); });
}

}  // namespace

ferry::Status LinkReceiver::Serve(std::unique_ptr<Stream> stream) {
  auto c = std::make_shared<Conn>();
  c->stream = std::move(stream);
  c->reader = std::make_unique<FrameReader>(c->stream.get());
  c->writer = std::make_unique<FrameWriter>(c->stream.get(), Codec::kNone);
  c->st.peer = c->stream->PeerName();
  ferry::Status s = Handshake(c.get());
  if (!s.ok()) {
    spdlog::warn("link from {} refused: {}", c->st.peer, s.ToString());
    return s;
  }
  // One connection per volume: a newer one replaces the older, which ends when its stream
  // is shut down; the volume's mutex makes sure they never append at the same time.
  std::shared_ptr<std::mutex> vmu;
  {
    std::lock_guard l(mu_);
    if (stopping_) return Aborted("the node is stopping");
    auto old = by_volume_.find(c->key);
    if (old != by_volume_.end()) old->second->stream->Shutdown();
    auto& m = volume_mu_[c->key];
    if (!m) m = std::make_shared<std::mutex>();
    vmu = m;
  }
  std::lock_guard vl(*vmu);
  {
    std::lock_guard l(mu_);
    if (stopping_) return Aborted("the node is stopping");
    by_volume_[c->key] = c;
    std::lock_guard cl(c->mu);
    c->st.connected = true;
    last_[c->key] = c->st;
  }
  s = Run(c.get());
  if (s.code() == Code::kDataLoss) {
    spdlog::error("link {} from {}: {}; connection reset, nothing of that frame applied",
                  c->hello.volume, c->st.peer, s.ToString());
    (void)SendRefuse(c->writer.get(), "corrupt_frame", std::string(s.message()));
  } else if (!s.ok() && s.code() != Code::kAborted) {
    spdlog::warn("link {} from {} ended: {}", c->hello.volume, c->st.peer, s.ToString());
    (void)SendRefuse(c->writer.get(), "unavailable", std::string(s.message()));
  }
  c->stream->Shutdown();
  {
    std::lock_guard l(mu_);
    std::lock_guard cl(c->mu);
    c->st.connected = false;
    if (!s.ok() && s.code() != Code::kAborted) c->st.last_error = s.ToString();
    if (!c->closed) last_[c->key] = c->st;
    auto it = by_volume_.find(c->key);
    if (it != by_volume_.end() && it->second == c) by_volume_.erase(it);
  }
  return s.code() == Code::kAborted ? ferry::Status::Ok() : s;
}

ferry::Status LinkReceiver::Handshake(Conn* c) {
  ASSIGN_OR_RETURN(Frame f, c->reader->Read());
  if (f.type != MessageType::kHello) {
    (void)SendRefuse(c->writer.get(), "protocol", "the first message must be HELLO");
    return InvalidArgument("peer sent " + std::string(MessageTypeName(f.type)) + " before HELLO");
  }
  auto hello = DecodeHello(f.payload);
  if (!hello.ok()) {
    (void)SendRefuse(c->writer.get(), "protocol", std::string(hello.status().message()));
    return hello.status();
  }
  c->hello = *hello;
  c->key = journal::IdToHex(hello->volume_id);
  c->st.volume = hello->volume;
  c->st.volume_id = c->key;
  if (hello->protocol != kProtocolVersion) {
    std::string m = "link protocol " + std::to_string(hello->protocol) +
                    " is not supported (this node speaks 1); upgrade the older node";
    (void)SendRefuse(c->writer.get(), "protocol", m);
    return InvalidArgument(m);
  }
  auto replica = directory_->ReplicaFor(*hello);
  if (!replica.ok()) {
    std::string code = "unavailable";
    std::string msg(replica.status().message());
    if (replica.status().code() == Code::kFailedPrecondition) {
      code = msg.rfind("history", 0) == 0 ? "history_mismatch" : "volume_mismatch";
    }
    (void)SendRefuse(c->writer.get(), code, msg);
    return replica.status();
  }
  c->replica = *replica;
  // The next seq, not last_seq() + 1: after a resync jump the journal continues further on.
  const uint64_t last = c->replica->next_seq() - 1;
  if (last > hello->source_last_seq) {
    std::string m = "the target holds records up to seq " + std::to_string(last) +
                    " but the source's newest is " + std::to_string(hello->source_last_seq) +
                    "; the histories diverged — resync the volume";
    (void)SendRefuse(c->writer.get(), "target_ahead", m);
    return FailedPrecondition(m);
  }
  Welcome w;
  w.resume_from = last + 1;
  w.codec = "none";
  for (const std::string& name : hello->codecs) {
    Codec codec;
    if (ParseCodec(name, &codec)) {
      w.codec = name;
      break;
    }
  }
  journal::InitialSyncState st_sync = c->replica->GetInitialSync();
  w.sync_needed = st_sync.running;
  w.resync_open = c->replica->OpenResync();
  w.sync_frame_checksums = true;
  w.sync_offset = st_sync.offset;
  w.sync_seeded = st_sync.seeded;
  if (st_sync.running && st_sync.seeded) {
    w.seed = ReplicaStore::ReadSeedChanges(c->replica->env(), c->replica->dir());
  }
  c->next_seq = w.resume_from;
  c->sync_saved = st_sync.offset;
  c->sync_seeded = st_sync.seeded;
  c->sync_unsaved = 0;
  {
    std::lock_guard cl(c->mu);
    c->st.durable_seq = last;
    c->st.initial_sync = st_sync.running;
    c->st.sync_offset = st_sync.offset;
    c->st.sync_started_ns = options_.clock->NowNanos();
  }
  auto sent = c->writer->Write(MessageType::kWelcome, EncodeWelcome(w));
  if (!sent.ok()) return sent.status();
  spdlog::info("link {} ({}) from {}: resuming at seq {}{}", hello->volume, c->key, c->st.peer,
               w.resume_from,
               st_sync.running ? ", initial sync at byte " + std::to_string(st_sync.offset) : "");
  return ferry::Status::Ok();
}

ferry::Status LinkReceiver::SendAck(Conn* c, uint64_t sync_offset) {
  auto r = c->writer->Write(MessageType::kAck, EncodeAck({c->next_seq - 1, sync_offset}));
  return r.ok() ? ferry::Status::Ok() : r.status();
}

ferry::Status LinkReceiver::ApplySyncData(Conn* c, const SyncData& d) {
  journal::Replica& replica = *c->replica;
  uint64_t bytes = 0;
  for (const SyncExtent& e : d.extents) {
    if (e.zero_length) {
      RETURN_IF_ERROR(replica.ZeroBase(e.offset, e.zero_length));
      continue;
    }
    RETURN_IF_ERROR(replica.WriteBase(e.offset, e.data));
    bytes += e.data.size();
  }
  {
    std::lock_guard cl(c->mu);
    c->st.sync_bytes += bytes;
    c->st.sync_total = d.total_bytes;
    c->st.sync_offset = d.scanned_to;
  }
  // Progress is made durable every sync_save_bytes scanned; in a seeded sync, where
  // windows of the volume pass with a few blocks or none, every sync_save_bytes written
  // or 16 times that scanned (each save syncs the base and the manifest).
  c->sync_unsaved += bytes;
  const uint64_t every = c->sync_seeded ? 16 * options_.sync_save_bytes : options_.sync_save_bytes;
  if (d.scanned_to >= c->sync_saved + every || c->sync_unsaved >= options_.sync_save_bytes ||
      d.scanned_to == replica.size()) {
    RETURN_IF_ERROR(replica.SaveSyncProgress(d.scanned_to));
    c->sync_saved = d.scanned_to;
    c->sync_unsaved = 0;
    RETURN_IF_ERROR(SendAck(c, c->sync_saved));
  }
  return ferry::Status::Ok();
}

ferry::Status LinkReceiver::Run(Conn* c) {
  journal::Replica& replica = *c->replica;
  // SYNC_DATA is written into the base on the applier's thread while this one reads,
  // decrypts and checks the next frame.
  SyncApplier applier;
  for (;;) {
    auto f = c->reader->Read();
    if (!f.ok()) {
      // A failed write explains the end better than the closed connection that followed it.
      ferry::Status applied = applier.Wait();
      return applied.ok() ? f.status() : applied;
    }
    {
      std::lock_guard cl(c->mu);
      c->st.frames++;
      c->st.wire_bytes += f->wire_bytes;
    }
    if (f->type != MessageType::kSyncData) RETURN_IF_ERROR(applier.Wait());
    switch (f->type) {
      case MessageType::kRecords: {
        ASSIGN_OR_RETURN(auto records, DecodeRecords(f->payload, c->next_seq, replica.size(),
                                                     replica.block_size()));
        ASSIGN_OR_RETURN(uint64_t last, replica.Append(records, journal::Durability::kSynced));
        c->next_seq = last + 1;
        {
          std::lock_guard cl(c->mu);
          c->st.durable_seq = last;
          c->st.records += records.size();
        }
        RETURN_IF_ERROR(SendAck(c, replica.GetInitialSync().running ? c->sync_saved : kNoSync));
        break;
      }
      case MessageType::kSyncData: {
        // Decoded (every extent checked) before any of it is written.
        ASSIGN_OR_RETURN(SyncData d, DecodeSyncData(f->payload, replica.size(),
                                                    replica.block_size(), f->raw_checked));
        RETURN_IF_ERROR(
            applier.Submit([this, c, d = std::move(d)] { return ApplySyncData(c, d); }));
        break;
      }
      case MessageType::kSyncDone: {
        ASSIGN_OR_RETURN(SyncDone d, DecodeSyncDone(f->payload));
        if (d.consistent_from >= c->next_seq) {
          return DataLoss("corrupt frame: SYNC_DONE at seq " + std::to_string(d.consistent_from) +
                          " before its records arrived");
        }
        if (replica.GetInitialSync().running) {
          RETURN_IF_ERROR(replica.FinishInitialSync(d.consistent_from));
          ReplicaStore::RemoveSeedChanges(replica.env(), replica.dir());
          spdlog::info("link {}: initial sync finished; recovery points from seq {} on",
                       c->hello.volume, d.consistent_from);
        }
        {
          std::lock_guard cl(c->mu);
          c->st.initial_sync = false;
        }
        RETURN_IF_ERROR(SendAck(c, kNoSync));
        break;
      }
      case MessageType::kResyncBegin: {
        ASSIGN_OR_RETURN(ResyncBegin b, DecodeResyncBegin(f->payload));
        if (b.missing_from != c->next_seq) {
          return DataLoss("corrupt frame: RESYNC_BEGIN at seq " + std::to_string(b.missing_from) +
                          " but the replica's next seq is " + std::to_string(c->next_seq));
        }
        RETURN_IF_ERROR(replica.BeginResync(b.missing_from, b.resume_at));
        c->next_seq = b.resume_at;
        spdlog::warn("link {}: resync: records {}..{} were dropped at the source; points from seq "
                     "{} on wait for the resync to finish (latest stays at seq {})",
                     c->hello.volume, b.missing_from, b.resume_at - 1, b.missing_from,
                     b.missing_from - 1);
        break;
      }
      case MessageType::kResyncDone: {
        ASSIGN_OR_RETURN(SyncDone d, DecodeSyncDone(f->payload));
        if (d.consistent_from >= c->next_seq) {
          return DataLoss("corrupt frame: RESYNC_DONE at seq " + std::to_string(d.consistent_from) +
                          " before its records arrived");
        }
        if (replica.OpenResync() != 0) {
          RETURN_IF_ERROR(replica.EndResync(d.consistent_from));
          spdlog::info("link {}: resync finished; recovery points from seq {} on",
                       c->hello.volume, d.consistent_from);
        }
        RETURN_IF_ERROR(SendAck(c, replica.GetInitialSync().running ? c->sync_saved : kNoSync));
        break;
      }
      case MessageType::kDigestRequest:
      case MessageType::kVerifyRequest: {
        ASSIGN_OR_RETURN(DigestRequest q, DecodeDigestRequest(f->payload, replica.size(),
                                                               replica.block_size()));
        Digests d;
        if (f->type == MessageType::kDigestRequest) {
          ASSIGN_OR_RETURN(d, BaseDigests(replica, q));
        } else {
          ASSIGN_OR_RETURN(d, NewestDigests(replica, q, c->hello.volume));
        }
        std::string payload;
        EncodeDigests(d, &payload);
        auto r = c->writer->Write(MessageType::kDigests, payload);
        if (!r.ok()) return r.status();
        break;
      }
      case MessageType::kPing: {
        auto r = c->writer->Write(MessageType::kPing, "");
        if (!r.ok()) return r.status();
        break;
      }
      default:
        return DataLoss("corrupt frame: unexpected " + std::string(MessageTypeName(f->type)) +
                        " from the source");
    }
  }
}

}  // namespace ferry::link
