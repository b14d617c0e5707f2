#include "capture/splitter.h"

#include <cstring>

#include "journal/index.h"
#include "journal/points.h"

namespace ferry::capture {

using journal::Record;
using journal::RecordType;

Result<std::unique_ptr<Splitter>> Splitter::Open(Env* env, const std::string& disk_path,
                                                 std::shared_ptr<journal::Replica> log) {
  ASSIGN_OR_RETURN(auto disk, env->OpenFile(disk_path, OpenMode::kReadWrite));
  ASSIGN_OR_RETURN(uint64_t size, disk->Size());
  if (size != log->size()) {
    return InvalidArgument("disk " + disk_path + " is " + std::to_string(size) +
                           " bytes but its pending log is for a volume of " +
                           std::to_string(log->size()) + " bytes");
  }
  std::unique_ptr<Splitter> s(new Splitter(std::move(disk), std::move(log), size));
  RETURN_IF_ERROR(s->Redo());
  return s;
}

Status Splitter::Redo() {
  // Replays the log in order: after a crash the disk may lack any of its records' writes.
  const uint64_t last = log_->last_seq();
  uint64_t next = log_->Stats().oldest_point + 1;
  while (next <= last) {
    ASSIGN_OR_RETURN(auto batch, log_->ReadRecords(next, last, 16u << 20));
    if (batch.empty()) break;
    for (const journal::StoredRecord& sr : batch) {
      const Record& r = sr.record;
      if (r.type == RecordType::kWrite) {
        RETURN_IF_ERROR(disk_->WriteAt(r.offset, r.data));
      } else if (r.type != RecordType::kMarker) {
        RETURN_IF_ERROR(disk_->PunchHole(r.offset, r.length));
      }
    }
    next = batch.back().record.seq + 1;
  }
  return disk_->Sync();
}

Result<uint64_t> Splitter::Checkpoint() {
  uint64_t through;
  {
    // With every stripe held no write is between its log append and its disk write.
    std::array<std::unique_lock<std::mutex>, 64> held;
    for (size_t i = 0; i < stripes_.size(); ++i) held[i] = std::unique_lock(stripes_[i]);
    through = log_->last_seq();
  }
  RETURN_IF_ERROR(log_->Sync());
  RETURN_IF_ERROR(disk_->Sync());
  return through;
}

Splitter::Splitter(std::unique_ptr<File> disk, std::shared_ptr<journal::Replica> log, uint64_t size)
    : disk_(std::move(disk)), log_(std::move(log)), size_(size), block_size_(log_->block_size()) {}

std::mutex& Splitter::Stripe(uint64_t block) {
  return stripes_[(block / journal::kChunkBlocks) % stripes_.size()];
}

Status Splitter::Read(uint64_t offset, size_t n, void* dst) {
  if (offset > size_ || n > size_ - offset) return OutOfRange("read past the end of the disk");
  ASSIGN_OR_RETURN(size_t got, disk_->ReadAt(offset, n, dst));
  if (got < n) std::memset(static_cast<char*>(dst) + got, 0, n - got);
  return Status::Ok();
}

Status Splitter::Apply(RecordType type, uint64_t first_block, uint64_t count, std::string_view data,
                       bool keep_allocated, uint64_t* seq) {
  const uint64_t off = first_block * block_size_;
  const uint64_t len = count * block_size_;
  Record r = type == RecordType::kWrite  ? Record::WriteView(off, data)
             : type == RecordType::kZero ? Record::Zero(off, len)
                                         : Record::Trim(off, len);
  // The log first: if it refuses (full), the disk stays as it was.
  ASSIGN_OR_RETURN(*seq, log_->Append(std::move(r), journal::Durability::kWritten));
  bytes_changed_.fetch_add(len);
  if (type == RecordType::kWrite) return disk_->WriteAt(off, data);
  return keep_allocated ? disk_->ZeroRange(off, len) : disk_->PunchHole(off, len);
}

Status Splitter::Modify(uint64_t offset, uint64_t n, std::string_view data, RecordType type, bool fua,
                        bool keep_allocated) {
  if (offset > size_ || n > size_ - offset) {
    return OutOfRange("request at " + std::to_string(offset) + "+" + std::to_string(n) +
                      " ends past the disk (" + std::to_string(size_) + " bytes)");
  }
  uint64_t seq = 0;
  Status s = BeginChange() ? LogAndApply(offset, n, data, type, fua, keep_allocated, &seq) : FencedError();
  EndChange();
  RETURN_IF_ERROR(s);
  HoldReply(seq);
  return Status::Ok();
}

bool Splitter::BeginChange() {
  // Counted before the fence is checked (both sequentially consistent): a Fence that does not
  // see this change counted is seen by it, so it is refused.
  changing_.fetch_add(1);
  return !fenced_.load();
}

void Splitter::EndChange() {
  if (changing_.fetch_sub(1) == 1 && fenced_.load()) {
    std::lock_guard l(fence_mu_);
    fence_cv_.notify_all();
  }
}

void Splitter::WriteMany(std::span<const BlockWrite> writes, std::span<Status> results) {
  const uint64_t bs = block_size_;
  std::vector<size_t> whole;
  for (size_t i = 0; i < writes.size(); ++i) {
    const BlockWrite& w = writes[i];
    if (w.offset % bs || w.data.size() % bs || w.data.empty() || w.offset > size_ ||
        w.data.size() > size_ - w.offset) {
      results[i] = Write(w.offset, w.data, w.fua);  // partial blocks, or refused
    } else {
      whole.push_back(i);
    }
  }
  if (whole.empty()) return;
  auto answer = [&](const Status& s) {
    for (size_t i : whole) results[i] = s;
  };
  uint64_t seq = 0;
  if (!BeginChange()) {
    answer(FencedError());
  } else {
    // Every stripe the writes touch, taken in ascending order (as Checkpoint takes them all),
    // held from the log's append to the last disk write: overlapping writes reach log and
    // disk in the same order.
    const uint64_t chunk_bytes = bs * journal::kChunkBlocks;
    uint64_t mask = 0;
    for (size_t i : whole) {
      const uint64_t first = writes[i].offset / chunk_bytes;
      const uint64_t last = (writes[i].offset + writes[i].data.size() - 1) / chunk_bytes;
      for (uint64_t c = first; c <= last && c < first + stripes_.size(); ++c) {
        mask |= uint64_t{1} << (c % stripes_.size());
      }
    }
    std::array<std::unique_lock<std::mutex>, 64> held;
    for (size_t k = 0; k < stripes_.size(); ++k) {
      if (mask & (uint64_t{1} << k)) held[k] = std::unique_lock(stripes_[k]);
    }
    std::vector<Record> records;
    records.reserve(whole.size());
    for (size_t i : whole) records.push_back(Record::WriteView(writes[i].offset, writes[i].data));
    // The log first: if it refuses (full), the disk stays as it was.
    Result<uint64_t> last = log_->Append(records, journal::Durability::kWritten);
    if (!last.ok()) {
      answer(last.status());
    } else {
      seq = *last;
      bool fua = false;
      for (size_t i : whole) {
        bytes_changed_.fetch_add(writes[i].data.size());
        results[i] = disk_->WriteAt(writes[i].offset, writes[i].data);
        fua |= writes[i].fua;
      }
      for (auto& h : held) {
        if (h.owns_lock()) h.unlock();
      }
      if (fua) {
        if (Status f = Flush(); !f.ok()) {
          for (size_t i : whole) {
            if (writes[i].fua && results[i].ok()) results[i] = f;
          }
        }
      }
    }
  }
  EndChange();
  if (seq) HoldReply(seq);
}

Status Splitter::LogAndApply(uint64_t offset, uint64_t n, std::string_view data, RecordType type,
                             bool fua, bool keep_allocated, uint64_t* seq) {
  const uint64_t bs = block_size_;
  const uint64_t chunk_bytes = bs * journal::kChunkBlocks;
  uint64_t pos = offset;
  const uint64_t end = offset + n;
  std::string block(bs, '\0');
  while (pos < end) {
    const uint64_t b = pos / bs;
    std::lock_guard stripe(Stripe(b));
    if (pos % bs != 0 || end - pos < bs) {
      // Partial block: complete it from the disk, then log and write the whole block.
      RETURN_IF_ERROR(Read(b * bs, bs, block.data()));
      uint64_t in_block = pos % bs;
      size_t len = std::min<uint64_t>(bs - in_block, end - pos);
      if (type == RecordType::kWrite) {
        std::memcpy(block.data() + in_block, data.data() + (pos - offset), len);
      } else {
        std::memset(block.data() + in_block, 0, len);
      }
      RETURN_IF_ERROR(Apply(RecordType::kWrite, b, 1, block, false, seq));
      pos += len;
      continue;
    }
    // Whole blocks up to the end of this chunk (one stripe lock covers them).
    uint64_t run_end = std::min((pos / chunk_bytes + 1) * chunk_bytes, end - (end % bs));
    uint64_t count = (run_end - pos) / bs;
    if (type == RecordType::kWrite) {
      RETURN_IF_ERROR(Apply(type, b, count, data.substr(pos - offset, run_end - pos), false, seq));
    } else {
      RETURN_IF_ERROR(Apply(type, b, count, {}, keep_allocated, seq));
    }
    pos = run_end;
  }
  if (fua) RETURN_IF_ERROR(Flush());
  return Status::Ok();
}

Status Splitter::FencedError() {
  return FailedPrecondition("the volume is fenced (its source was shut down); writes are "
                            "refused until it is unfenced");
}

void Splitter::Fence() {
  fenced_.store(true);
  std::unique_lock l(fence_mu_);
  fence_cv_.wait(l, [&] { return changing_.load() == 0; });
}

void Splitter::Unfence() { fenced_.store(false); }

Status Splitter::Rewrite(uint64_t offset, uint64_t n) {
  const uint64_t bs = block_size_;
  if (offset % bs || n % bs || offset > size_ || n > size_ - offset) {
    return InvalidArgument("rewrite of " + std::to_string(offset) + "+" + std::to_string(n) +
                           " is not whole blocks inside the disk");
  }
  const uint64_t chunk_bytes = bs * journal::kChunkBlocks;
  std::string buf;
  for (uint64_t pos = offset; pos < offset + n;) {
    const uint64_t end = std::min((pos / chunk_bytes + 1) * chunk_bytes, offset + n);
    std::lock_guard stripe(Stripe(pos / bs));
    buf.resize(end - pos);
    RETURN_IF_ERROR(Read(pos, buf.size(), buf.data()));
    RETURN_IF_ERROR(log_->Append(Record::Write(pos, buf), journal::Durability::kWritten).status());
    pos = end;
  }
  return Status::Ok();
}

void Splitter::HoldReply(uint64_t seq) {
  std::function<void(uint64_t)> waiter;
  {
    std::unique_lock l(gate_mu_);
    gate_cv_.wait(l, [&] { return !held_; });
    waiter = ack_waiter_;
  }
  if (waiter && seq) waiter(seq);
}

void Splitter::HoldAcks() {
  std::lock_guard l(gate_mu_);
  held_ = true;
}

void Splitter::ReleaseAcks() {
  {
    std::lock_guard l(gate_mu_);
    held_ = false;
  }
  gate_cv_.notify_all();
}

void Splitter::SetAckWaiter(std::function<void(uint64_t seq)> waiter) {
  std::lock_guard l(gate_mu_);
  ack_waiter_ = std::move(waiter);
}

Status Splitter::Write(uint64_t offset, std::string_view data, bool fua) {
  return Modify(offset, data.size(), data, RecordType::kWrite, fua);
}

Status Splitter::WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) {
  return Modify(offset, n, {}, RecordType::kZero, fua, no_hole);
}

Status Splitter::Trim(uint64_t offset, uint64_t n, bool fua) {
  return Modify(offset, n, {}, RecordType::kTrim, fua);
}

Status Splitter::Flush() {
  // The log first: a record durable in the log but not on disk is redone; never the reverse.
  RETURN_IF_ERROR(log_->Sync());
  return disk_->Sync();
}

Result<uint64_t> Splitter::Mark(journal::MarkerKind kind, const std::string& label,
                                const journal::Id128& marker_id, const journal::Id128& group_id) {
  return log_->Append(Record::Marker(kind, label, marker_id, group_id));
}

}  // namespace ferry::capture
