#include "nbd/session.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

namespace ferry::nbd {

constexpr uint32_t kMetaContextId = 1;

Session::Session(Server* server, ExportCatalog* catalog, std::unique_ptr<Socket> socket,
                 const ServerOptions& options)
    : server_(server), catalog_(catalog), socket_(std::move(socket)), options_(options) {}

Status Session::Run() {
  Status s = Handshake();
  if (s.ok() && export_) s = Transmission();
  // Hang up: the client waits for the server to close after NBD_CMD_DISC or NBD_OPT_ABORT.
  socket_->Shutdown();
  return s;
}

// ---------------------------------------------------------------- handshake

Status Session::OptionReply(uint32_t option, uint32_t type, std::string_view data) {
  uint8_t h[20];
  PutBe<uint64_t>(h, kMagicOptionReply);
  PutBe<uint32_t>(h + 8, option);
  PutBe<uint32_t>(h + 12, type);
  PutBe<uint32_t>(h + 16, static_cast<uint32_t>(data.size()));
  std::string_view pieces[2] = {std::string_view(reinterpret_cast<char*>(h), 20), data};
  return socket_->WriteAllV(pieces);
}

uint16_t Session::TransmissionFlags(const Export& e) const {
  uint16_t flags = kTransHasFlags | kTransSendFlush;
  // DF is about structured read replies: the protocol forbids advertising it without them.
  if (structured_) flags |= kTransSendDf;
  if (e.read_only()) {
    flags |= kTransReadOnly;
  } else {
    flags |= kTransSendFua | kTransSendTrim | kTransSendWriteZeroes;
  }
  if (e.multi_conn()) flags |= kTransCanMultiConn;
  return flags;
}

Status Session::OptionError(uint32_t option, uint32_t type, const std::string& message) {
  return OptionReply(option, type, message.substr(0, kMaxNameBytes));
}

Status Session::Handshake() {
  uint8_t hello[18];
  PutBe<uint64_t>(hello, kMagicNbd);
  PutBe<uint64_t>(hello + 8, kMagicOption);
  PutBe<uint16_t>(hello + 16, kFlagFixedNewstyle | kFlagNoZeroes);
  RETURN_IF_ERROR(socket_->WriteAll(std::string_view(reinterpret_cast<char*>(hello), 18)));
  uint8_t cf[4];
  RETURN_IF_ERROR(socket_->ReadFull(cf, 4));
  uint32_t client_flags = GetBe<uint32_t>(cf);
  if (client_flags & ~(kClientFlagFixedNewstyle | kClientFlagNoZeroes)) {
    return InvalidArgument("client sent unknown handshake flags");
  }
  no_zeroes_ = client_flags & kClientFlagNoZeroes;

  for (;;) {
    uint8_t oh[16];
    RETURN_IF_ERROR(socket_->ReadFull(oh, 16));
    if (GetBe<uint64_t>(oh) != kMagicOption) return InvalidArgument("bad option magic");
    uint32_t option = GetBe<uint32_t>(oh + 8);
    uint32_t length = GetBe<uint32_t>(oh + 12);
    if (length > kMaxOptionBytes) {
      return InvalidArgument("option of " + std::to_string(length) + " bytes is too large");
    }
    std::string data(length, '\0');
    if (length) RETURN_IF_ERROR(socket_->ReadFull(data.data(), length));

    switch (option) {
      case kOptExportName: {
        auto e = catalog_->Find(data);
        if (!e.ok()) return NotFound("client asked for an unknown export (NBD_OPT_EXPORT_NAME)");
        export_ = *e;
        trans_flags_ = TransmissionFlags(*export_);
        std::string reply;
        AppendBe<uint64_t>(&reply, export_->size());
        AppendBe<uint16_t>(&reply, trans_flags_);
        if (!no_zeroes_) reply.append(124, '\0');
        return socket_->WriteAll(reply);
      }
      case kOptAbort:
        (void)OptionReply(option, kRepAck);
        return Status::Ok();
      case kOptList: {
        if (length != 0) {
          RETURN_IF_ERROR(OptionError(option, kRepErrInvalid, "NBD_OPT_LIST takes no data"));
          break;
        }
        for (const auto& [name, description] : catalog_->List()) {
          std::string d;
          AppendBe<uint32_t>(&d, static_cast<uint32_t>(name.size()));
          d += name;
          d += description;
          RETURN_IF_ERROR(OptionReply(option, kRepServer, d));
        }
        RETURN_IF_ERROR(OptionReply(option, kRepAck));
        break;
      }
      case kOptStructuredReply:
        if (length != 0) {
          RETURN_IF_ERROR(OptionError(option, kRepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data"));
        } else if (structured_) {
          RETURN_IF_ERROR(OptionError(option, kRepErrInvalid, "structured replies already negotiated"));
        } else {
          structured_ = true;
          RETURN_IF_ERROR(OptionReply(option, kRepAck));
        }
        break;
      case kOptInfo:
      case kOptGo: {
        bool done = false;
        RETURN_IF_ERROR(HandleInfoOrGo(option, data, &done));
        if (done) return Status::Ok();
        break;
      }
      case kOptListMetaContext:
      case kOptSetMetaContext:
        RETURN_IF_ERROR(HandleMetaContext(option, data));
        break;
      case kOptStartTls:
        RETURN_IF_ERROR(OptionError(option, kRepErrPolicy, "TLS is not offered on this server"));
        break;
      default:
        RETURN_IF_ERROR(OptionError(option, kRepErrUnsup, "option " + std::to_string(option) + " is not supported"));
        break;
    }
  }
}

Status Session::HandleInfoOrGo(uint32_t option, const std::string& data, bool* done) {
  auto p = reinterpret_cast<const uint8_t*>(data.data());
  if (data.size() < 6) return OptionError(option, kRepErrInvalid, "option data too short");
  uint32_t name_len = GetBe<uint32_t>(p);
  if (name_len > kMaxNameBytes || 4ull + name_len + 2 > data.size()) {
    return OptionError(option, kRepErrInvalid, "export name length does not fit the option");
  }
  std::string name = data.substr(4, name_len);
  uint16_t n = GetBe<uint16_t>(p + 4 + name_len);
  if (4ull + name_len + 2 + 2ull * n != data.size()) {
    return OptionError(option, kRepErrInvalid, "information request count does not fit the option");
  }
  bool want_name = false, want_description = false;
  for (uint16_t i = 0; i < n; ++i) {
    uint16_t info = GetBe<uint16_t>(p + 4 + name_len + 2 + 2 * i);
    want_name |= info == kInfoName;
    want_description |= info == kInfoDescription;
  }
  auto found = catalog_->Find(name);
  // Whatever the reason (no such name, not a point, a point that does not exist), the export
  // is not available: NBD_REP_ERR_UNKNOWN, with the catalog's message saying why. (Other
  // error replies make clients report the option itself as unsupported.)
  if (!found.ok()) return OptionError(option, kRepErrUnknown, std::string(found.status().message()));
  std::shared_ptr<Export> e = *found;
  const uint16_t flags = TransmissionFlags(*e);

  std::string info;
  AppendBe<uint16_t>(&info, kInfoExport);
  AppendBe<uint64_t>(&info, e->size());
  AppendBe<uint16_t>(&info, flags);
  RETURN_IF_ERROR(OptionReply(option, kRepInfo, info));
  info.clear();
  AppendBe<uint16_t>(&info, kInfoBlockSize);
  AppendBe<uint32_t>(&info, 1);
  AppendBe<uint32_t>(&info, e->preferred_block_size());
  AppendBe<uint32_t>(&info, kMaxRequestBytes);
  RETURN_IF_ERROR(OptionReply(option, kRepInfo, info));
  if (want_name) {
    info.clear();
    AppendBe<uint16_t>(&info, kInfoName);
    info += name;
    RETURN_IF_ERROR(OptionReply(option, kRepInfo, info));
  }
  if (want_description && !e->description().empty()) {
    info.clear();
    AppendBe<uint16_t>(&info, kInfoDescription);
    info += e->description().substr(0, kMaxNameBytes);
    RETURN_IF_ERROR(OptionReply(option, kRepInfo, info));
  }
  RETURN_IF_ERROR(OptionReply(option, kRepAck));
  if (option == kOptGo) {
    export_ = std::move(e);
    trans_flags_ = flags;
    *done = true;
  }
  return Status::Ok();
}

Status Session::HandleMetaContext(uint32_t option, const std::string& data) {
  if (!structured_) {
    return OptionError(option, kRepErrInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY before meta contexts");
  }
  auto p = reinterpret_cast<const uint8_t*>(data.data());
  if (data.size() < 8) return OptionError(option, kRepErrInvalid, "option data too short");
  uint32_t name_len = GetBe<uint32_t>(p);
  if (name_len > kMaxNameBytes || 4ull + name_len + 4 > data.size()) {
    return OptionError(option, kRepErrInvalid, "export name length does not fit the option");
  }
  std::string name = data.substr(4, name_len);
  uint32_t queries = GetBe<uint32_t>(p + 4 + name_len);
  size_t off = 8 + name_len;
  std::vector<std::string> asked;
  for (uint32_t i = 0; i < queries; ++i) {
    if (off + 4 > data.size()) return OptionError(option, kRepErrInvalid, "query list does not fit the option");
    uint32_t qlen = GetBe<uint32_t>(p + off);
    off += 4;
    if (qlen > data.size() - off) return OptionError(option, kRepErrInvalid, "query does not fit the option");
    asked.push_back(data.substr(off, qlen));
    off += qlen;
  }
  if (off != data.size()) return OptionError(option, kRepErrInvalid, "trailing bytes after the queries");
  auto found = catalog_->Find(name);
  if (!found.ok()) return OptionError(option, kRepErrUnknown, std::string(found.status().message()));
  bool match = false;
  if (option == kOptListMetaContext && asked.empty()) match = true;
  for (const std::string& q : asked) {
    if (q == kMetaBaseAllocation || (option == kOptListMetaContext && q == "base:")) match = true;
  }
  if (option == kOptSetMetaContext) base_allocation_ = match;
  if (match) {
    std::string d;
    AppendBe<uint32_t>(&d, kMetaContextId);
    d += kMetaBaseAllocation;
    RETURN_IF_ERROR(OptionReply(option, kRepMetaContext, d));
  }
  return OptionReply(option, kRepAck);
}

// ---------------------------------------------------------------- transmission

Status Session::Transmission() {
  std::vector<std::thread> workers;
  for (size_t i = 0; i < std::max<size_t>(1, options_.workers_per_connection); ++i) {
    workers.emplace_back([this] { Worker(); });
  }
  Status result;
  // Small writes are served by this thread, a batch at a time: those already received are
  // logged together and answered with one send. Handing each to a worker cost more than
  // serving it (a wake-up and two context switches each; see bench/RESULTS.md). Reads,
  // flushes, large writes and the rest go to the workers.
  constexpr size_t kSmallWrite = 64u << 10;
  constexpr size_t kMaxBatch = 64;
  std::vector<Job> small;
  bool unwoken = false;  // jobs queued since the workers were last woken
  for (;;) {
    uint8_t rb[kRequestSize];
    Status s = Receive(rb, kRequestSize);
    if (!s.ok()) {
      result = s.code() == Code::kAborted ? Status::Ok() : s;  // client went away
      break;
    }
    Job job;
    if (!DecodeRequest(rb, &job.req)) {
      result = InvalidArgument("bad request magic");
      break;
    }
    server_->requests_.fetch_add(1);
    if (job.req.type == kCmdDisc) break;
    const size_t payload = job.req.type == kCmdWrite ? job.req.length : 0;
    if (payload > kMaxRequestBytes) {
      // The payload cannot be skipped safely: say why, then hang up.
      (void)ReplyError(job.req, kEoverflow, "write larger than the advertised maximum");
      result = InvalidArgument("write payload too large");
      break;
    }
    // Admit the request before taking its payload: a bounded number of requests and of
    // payload bytes per connection (a single write of any allowed size always fits).
    {
      std::unique_lock l(mu_);
      auto admitted = [&] {
        return write_failed_ ||
               (inflight_ < std::max<size_t>(1, options_.max_inflight_per_connection) &&
                (inflight_bytes_ == 0 || inflight_bytes_ + payload <= options_.max_inflight_bytes_per_connection));
      };
      if (!admitted()) {
        l.unlock();
        ServeSmallWrites(&small);  // they hold slots too
        l.lock();
      }
      if (!admitted()) {
        work_cv_.notify_one();  // the queued jobs must be running for a slot to free up
        reader_waiting_ = true;
        admit_cv_.wait(l, admitted);
        reader_waiting_ = false;
      }
      if (write_failed_) break;
      ++inflight_;
      inflight_bytes_ += payload;
    }
    if (payload) {
      job.payload = TakeBuffer();
      s = ReadPayload(payload, &job.payload);
      if (!s.ok()) {
        Release(1, payload);
        result = s.code() == Code::kAborted ? Status::Ok() : s;
        break;
      }
    }
    if (job.req.type == kCmdWrite && job.req.length <= kSmallWrite) {
      small.push_back(std::move(job));
    } else {
      std::lock_guard l(mu_);
      queue_.push_back(std::move(job));
      unwoken = true;
    }
    // While the next request is already in the buffer, the workers are woken once for the
    // lot (a woken worker wakes another while jobs are left), and small writes gather.
    if (rbuf_end_ - rbuf_pos_ < kRequestSize || small.size() >= kMaxBatch) {
      if (unwoken) {
        std::lock_guard l(mu_);
        work_cv_.notify_one();
        unwoken = false;
      }
      ServeSmallWrites(&small);
    }
  }
  ServeSmallWrites(&small);  // received before the end: served like the rest
  {
    std::unique_lock l(mu_);
    stopping_ = true;
    work_cv_.notify_all();
  }
  for (auto& t : workers) t.join();
  // A clean disconnect: everything acknowledged must be durable where the export promises it.
  if (export_) (void)export_->Flush();
  return result;
}

void Session::Worker() {
  for (;;) {
    Job job;
    {
      std::unique_lock l(mu_);
      work_cv_.wait(l, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
      if (!queue_.empty()) work_cv_.notify_one();
    }
    const size_t held = job.req.type == kCmdWrite ? job.req.length : 0;
    Handle(job);
    GiveBack(std::move(job.payload));
    Release(1, held);
  }
}

void Session::ServeSmallWrites(std::vector<Job>* writes) {
  if (writes->empty()) return;
  HandleWrites(*writes);
  size_t held = 0;
  for (Job& job : *writes) {
    held += job.req.length;
    GiveBack(std::move(job.payload));
  }
  Release(writes->size(), held);
  writes->clear();
}

std::string Session::TakeBuffer() {
  std::lock_guard l(mu_);
  if (spare_.empty()) return {};
  std::string buf = std::move(spare_.back());
  spare_.pop_back();
  spare_bytes_ -= buf.capacity();
  return buf;
}

void Session::GiveBack(std::string buf) {
  // An idle connection keeps at most kKeepBytes of buffers.
  constexpr size_t kKeepBytes = 16u << 20;
  if (buf.capacity() == 0) return;
  std::lock_guard l(mu_);
  if (spare_bytes_ + buf.capacity() <= kKeepBytes) {
    spare_bytes_ += buf.capacity();
    spare_.push_back(std::move(buf));
  }
}

Status Session::Receive(void* dst, size_t n) {
  constexpr size_t kBufferBytes = 64 << 10;
  if (rbuf_.empty()) rbuf_.resize(kBufferBytes);
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    if (rbuf_pos_ == rbuf_end_) {
      // Large payloads go straight to their buffer.
      if (n >= kBufferBytes) return socket_->ReadFull(p, n);
      rbuf_pos_ = rbuf_end_ = 0;
      ASSIGN_OR_RETURN(rbuf_end_, socket_->ReadSome(rbuf_.data(), rbuf_.size()));
    }
    const size_t take = std::min(n, rbuf_end_ - rbuf_pos_);
    std::memcpy(p, rbuf_.data() + rbuf_pos_, take);
    rbuf_pos_ += take;
    p += take;
    n -= take;
  }
  return Status::Ok();
}

void Session::Release(size_t requests, size_t payload_bytes) {
  std::lock_guard l(mu_);
  inflight_ -= requests;
  inflight_bytes_ -= payload_bytes;
  if (reader_waiting_) admit_cv_.notify_one();
}

Status Session::ReadPayload(size_t length, std::string* out) {
  // A reused buffer takes the payload in place, without zeroing it first. Beyond its size the
  // buffer grows with the bytes received, so a request that lies about its length costs
  // little.
  constexpr size_t kStep = 64 << 10;
  size_t have = std::min(out->size(), length);
  out->resize(have);
  RETURN_IF_ERROR(Receive(out->data(), have));
  while (have < length) {
    const size_t n = std::min(kStep, length - have);
    out->resize(have + n);
    RETURN_IF_ERROR(Receive(out->data() + have, n));
    have += n;
  }
  return Status::Ok();
}

uint32_t Session::ErrorFor(const Status& s, bool write) {
  switch (s.code()) {
    case Code::kInvalidArgument: return kEinval;
    case Code::kOutOfRange: return write ? kEnospc : kEinval;
    case Code::kFailedPrecondition: return kEperm;
    case Code::kResourceExhausted: return kEnospc;
    default: return kEio;
  }
}

void Session::Handle(Job& job) {
  const Request& r = job.req;
  const uint64_t size = export_->size();
  const bool in_range = r.offset <= size && r.length <= size - r.offset;
  Status sent;
  auto fail = [&](uint32_t err, const std::string& msg) {
    server_->errors_.fetch_add(1);
    sent = ReplyError(r, err, msg);
  };
  if (auto [err, msg] = FlagsRefusal(r); err != 0) {
    fail(err, msg);
  } else {
    switch (r.type) {
      case kCmdRead: {
        if (r.length > kMaxRequestBytes) {
          fail(kEoverflow, "read larger than the advertised maximum");
        } else if (!in_range) {
          fail(kEinval, "read past the end of the export");
        } else {
          std::string data = TakeBuffer();
          data.resize(r.length);
          Status s = export_->Read(r.offset, r.length, data.data());
          if (!s.ok()) {
            fail(ErrorFor(s, false), s.ToString());
          } else {
            server_->bytes_read_.fetch_add(r.length);
            sent = ReplyRead(r, data);
          }
          GiveBack(std::move(data));
        }
        break;
      }
      case kCmdWrite:
      case kCmdTrim:
      case kCmdWriteZeroes: {
        const bool fua = r.flags & kCmdFlagFua;
        const bool no_hole = r.flags & kCmdFlagNoHole;
        if (auto [err, msg] = ChangeRefusal(r); err != 0) {
          fail(err, msg);
        } else {
          Status s = r.type == kCmdWrite   ? export_->Write(r.offset, job.payload, fua)
                     : r.type == kCmdTrim ? export_->Trim(r.offset, r.length, fua)
                                          : export_->WriteZeroes(r.offset, r.length, fua, no_hole);
          if (!s.ok()) {
            fail(ErrorFor(s, true), s.ToString());
          } else {
            if (r.type == kCmdWrite) server_->bytes_written_.fetch_add(r.length);
            sent = ReplyOk(r);
          }
        }
        break;
      }
      case kCmdFlush: {
        Status s = export_->Flush();
        if (!s.ok()) {
          fail(ErrorFor(s, true), s.ToString());
        } else {
          sent = ReplyOk(r);
        }
        break;
      }
      case kCmdCache:
        if (!in_range) {
          fail(kEinval, "cache request past the end of the export");
        } else {
          sent = ReplyOk(r);
        }
        break;
      case kCmdBlockStatus: {
        if (!base_allocation_) {
          fail(kEinval, "block status needs the base:allocation meta context");
        } else if (r.length == 0 || !in_range) {
          fail(kEinval, "block status range is empty or past the end");
        } else {
          auto extents = export_->BlockStatus(r.offset, r.length);
          if (!extents.ok()) {
            fail(ErrorFor(extents.status(), false), extents.status().ToString());
          } else if (std::string d = ExtentDescriptors(r, *extents); d.empty()) {
            // The protocol needs at least one extent; an export that gave none is broken.
            fail(kEio, "the export described no extents");
          } else {
            sent = ReplyBlockStatus(r, d);
          }
        }
        break;
      }
      default:
        fail(kEinval, "unknown command " + std::to_string(r.type));
        break;
    }
  }
  if (!sent.ok()) SendFailed();
}

std::pair<uint32_t, std::string> Session::FlagsRefusal(const Request& r) const {
  // FUA is valid on every command (the protocol has servers accept it anywhere, and clients
  // do send it on commands that write nothing); the others only on their one command.
  // FAST_ZERO is not advertised, so it is never valid.
  const uint16_t known = kCmdFlagFua | kCmdFlagNoHole | kCmdFlagDf | kCmdFlagReqOne;
  if (r.flags & ~known) {
    return {kEinval, "unknown or unsupported command flags (value " + std::to_string(r.flags & ~known) + ")"};
  }
  if ((r.flags & kCmdFlagNoHole) && r.type != kCmdWriteZeroes) {
    return {kEinval, "NBD_CMD_FLAG_NO_HOLE is only valid on NBD_CMD_WRITE_ZEROES"};
  }
  if ((r.flags & kCmdFlagDf) && r.type != kCmdRead) {
    return {kEinval, "NBD_CMD_FLAG_DF is only valid on NBD_CMD_READ"};
  }
  if ((r.flags & kCmdFlagDf) && !structured_) return {kEinval, "NBD_CMD_FLAG_DF needs structured replies"};
  if ((r.flags & kCmdFlagReqOne) && r.type != kCmdBlockStatus) {
    return {kEinval, "NBD_CMD_FLAG_REQ_ONE is only valid on NBD_CMD_BLOCK_STATUS"};
  }
  return {0, {}};
}

std::pair<uint32_t, std::string> Session::ChangeRefusal(const Request& r) const {
  const uint64_t size = export_->size();
  if (export_->read_only()) return {kEperm, "this export is read-only"};
  if (r.offset > size || r.length > size - r.offset) return {kEnospc, "request past the end of the export"};
  return {0, {}};
}

void Session::HandleWrites(std::vector<Job>& batch) {
  std::vector<WriteOp> ops;
  std::vector<size_t> op_of(batch.size(), SIZE_MAX);
  std::string replies;
  for (size_t i = 0; i < batch.size(); ++i) {
    const Request& r = batch[i].req;
    auto refusal = FlagsRefusal(r);
    if (refusal.first == 0) refusal = ChangeRefusal(r);
    if (refusal.first != 0) {
      server_->errors_.fetch_add(1);
      AppendReplyError(r, refusal.first, refusal.second, &replies);
      continue;
    }
    op_of[i] = ops.size();
    ops.push_back(WriteOp{r.offset, batch[i].payload, (r.flags & kCmdFlagFua) != 0});
  }
  std::vector<Status> results(ops.size());
  if (!ops.empty()) export_->WriteMany(ops, results);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (op_of[i] == SIZE_MAX) continue;
    const Request& r = batch[i].req;
    if (const Status& s = results[op_of[i]]; !s.ok()) {
      server_->errors_.fetch_add(1);
      AppendReplyError(r, ErrorFor(s, true), s.ToString(), &replies);
    } else {
      server_->bytes_written_.fetch_add(r.length);
      AppendReplyOk(r, &replies);
    }
  }
  Send(replies);
}

void Session::Send(std::string_view reply) {
  Status sent;
  {
    std::lock_guard l(write_mu_);
    sent = socket_->WriteAll(reply);
  }
  if (!sent.ok()) SendFailed();
}

void Session::SendFailed() {
  std::lock_guard l(mu_);
  write_failed_ = true;
  socket_->Shutdown();
  admit_cv_.notify_all();
}

void Session::AppendReplyOk(const Request& req, std::string* out) const {
  if (structured_) {
    AppendBe<uint32_t>(out, kMagicStructuredReply);
    AppendBe<uint16_t>(out, kReplyFlagDone);
    AppendBe<uint16_t>(out, kReplyTypeNone);
    AppendBe<uint64_t>(out, req.cookie);
    AppendBe<uint32_t>(out, 0);
  } else {
    AppendBe<uint32_t>(out, kMagicSimpleReply);
    AppendBe<uint32_t>(out, 0);
    AppendBe<uint64_t>(out, req.cookie);
  }
}

void Session::AppendReplyError(const Request& req, uint32_t error, const std::string& message,
                               std::string* out) const {
  if (structured_) {
    std::string msg = message.substr(0, 4096);
    AppendBe<uint32_t>(out, kMagicStructuredReply);
    AppendBe<uint16_t>(out, kReplyFlagDone);
    AppendBe<uint16_t>(out, kReplyTypeError);
    AppendBe<uint64_t>(out, req.cookie);
    AppendBe<uint32_t>(out, static_cast<uint32_t>(6 + msg.size()));
    AppendBe<uint32_t>(out, error);
    AppendBe<uint16_t>(out, static_cast<uint16_t>(msg.size()));
    *out += msg;
  } else {
    AppendBe<uint32_t>(out, kMagicSimpleReply);
    AppendBe<uint32_t>(out, error);
    AppendBe<uint64_t>(out, req.cookie);
  }
}

Status Session::ReplyOk(const Request& req) {
  std::string h;
  AppendReplyOk(req, &h);
  std::lock_guard l(write_mu_);
  return socket_->WriteAll(h);
}

Status Session::ReplyError(const Request& req, uint32_t error, const std::string& message) {
  std::string h;
  AppendReplyError(req, error, message, &h);
  std::lock_guard l(write_mu_);
  return socket_->WriteAll(h);
}

Status Session::ReplyRead(const Request& req, const std::string& data) {
  std::string h;
  if (structured_ && !data.empty()) {
    AppendBe<uint32_t>(&h, kMagicStructuredReply);
    AppendBe<uint16_t>(&h, kReplyFlagDone);
    AppendBe<uint16_t>(&h, kReplyTypeOffsetData);
    AppendBe<uint64_t>(&h, req.cookie);
    AppendBe<uint32_t>(&h, static_cast<uint32_t>(8 + data.size()));
    AppendBe<uint64_t>(&h, req.offset);
  } else if (structured_) {
    return ReplyOk(req);
  } else {
    AppendBe<uint32_t>(&h, kMagicSimpleReply);
    AppendBe<uint32_t>(&h, 0);
    AppendBe<uint64_t>(&h, req.cookie);
  }
  std::string_view pieces[2] = {h, data};
  std::lock_guard l(write_mu_);
  return socket_->WriteAllV(pieces);
}

std::string Session::ExtentDescriptors(const Request& req, const std::vector<Extent>& extents) {
  std::string out;
  uint64_t covered = 0;
  for (const Extent& e : extents) {
    if (covered >= req.length) break;
    uint64_t len = std::min<uint64_t>(e.length, req.length - covered);
    if (len == 0) continue;
    AppendBe<uint32_t>(&out, static_cast<uint32_t>(len));
    AppendBe<uint32_t>(&out, (e.hole ? kStateHole : 0) | (e.zero ? kStateZero : 0));
    covered += len;
    if (req.flags & kCmdFlagReqOne) break;
  }
  return out;
}

Status Session::ReplyBlockStatus(const Request& req, const std::string& descriptors) {
  std::string h;
  AppendBe<uint32_t>(&h, kMagicStructuredReply);
  AppendBe<uint16_t>(&h, kReplyFlagDone);
  AppendBe<uint16_t>(&h, kReplyTypeBlockStatus);
  AppendBe<uint64_t>(&h, req.cookie);
  AppendBe<uint32_t>(&h, static_cast<uint32_t>(4 + descriptors.size()));
  AppendBe<uint32_t>(&h, kMetaContextId);
  std::string_view pieces[2] = {h, descriptors};
  std::lock_guard l(write_mu_);
  return socket_->WriteAllV(pieces);
}

}  // namespace ferry::nbd
