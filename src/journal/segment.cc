#include "journal/segment.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/checksum.h"

namespace ferry::journal {
namespace {

// Reads a file front to back through a window so small records cost no syscall each.
class WindowReader {
 public:
  WindowReader(File* f, uint64_t size) : f_(f), size_(size) {}
  // Makes [off, off+n) available and returns a pointer to it, or nullptr past EOF.
  Result<const uint8_t*> Get(uint64_t off, size_t n) {
    if (off + n > size_) return static_cast<const uint8_t*>(nullptr);
    if (off < start_ || off + n > start_ + buf_.size()) {
      size_t want = std::max<size_t>(n, kWindow);
      if (off + want > size_) want = size_ - off;
      buf_.resize(want);
      ASSIGN_OR_RETURN(size_t got, f_->ReadAt(off, want, buf_.data()));
      if (got < n) return static_cast<const uint8_t*>(nullptr);
      buf_.resize(got);
      start_ = off;
    }
    return buf_.data() + (off - start_);
  }

 private:
  static constexpr size_t kWindow = 1 << 20;
  File* f_;
  uint64_t size_;
  uint64_t start_ = 0;
  std::vector<uint8_t> buf_;
};

std::string Where(uint64_t segment, uint64_t offset) {
  return "segment " + std::to_string(segment) + " offset " + std::to_string(offset);
}

}  // namespace

std::string SegmentFileName(uint64_t n) {
  char buf[32];
  snprintf(buf, sizeof buf, "%016" PRIx64 ".seg", n);
  return buf;
}

bool ParseSegmentFileName(const std::string& name, uint64_t* n) {
  if (name.size() != 20 || name.substr(16) != ".seg") return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; ++i) {
    char c = name[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  *n = v;
  return true;
}

Result<SegmentHeader> ReadSegmentHeader(File* file, uint64_t segment_number) {
  uint8_t buf[kSegmentHeaderSize];
  ASSIGN_OR_RETURN(size_t got, file->ReadAt(0, kSegmentHeaderSize, buf));
  if (got < kSegmentHeaderSize) {
    return DataLoss(Where(segment_number, 0) + ": segment shorter than its header");
  }
  auto header = DecodeSegmentHeader(buf);
  if (!header.ok()) {
    return DataLoss(Where(segment_number, 0) + ": " + std::string(header.status().message()));
  }
  return header;
}

Result<ScanResult> ScanSegment(File* file, uint64_t segment_number, const ScanOptions& options,
                               const RecordVisitor& visit) {
  ScanResult r;
  ASSIGN_OR_RETURN(r.file_size, file->Size());
  WindowReader reader(file, r.file_size);
  ASSIGN_OR_RETURN(const uint8_t* hp, reader.Get(0, kSegmentHeaderSize));
  if (hp == nullptr) {
    if (options.allow_torn_tail) {
      // Created but its header never became durable: an empty segment.
      r.torn = true;
      r.torn_reason = "segment header incomplete";
      r.header.segment_number = segment_number;
      return r;
    }
    return DataLoss(Where(segment_number, 0) + ": segment shorter than its header");
  }
  auto header = DecodeSegmentHeader(hp);
  if (!header.ok()) {
    if (options.allow_torn_tail && r.file_size <= kSegmentHeaderSize) {
      r.torn = true;
      r.torn_reason = std::string(header.status().message());
      r.header.segment_number = segment_number;
      return r;
    }
    return DataLoss(Where(segment_number, 0) + ": " + std::string(header.status().message()));
  }
  r.header = *header;
  if (r.header.segment_number != segment_number) {
    return DataLoss(Where(segment_number, 0) + ": header says segment " +
                    std::to_string(r.header.segment_number));
  }
  const bool compacted = r.header.flags & kSegmentCompacted;
  uint64_t expect_seq = r.header.first_seq;
  uint64_t off = kSegmentHeaderSize;
  std::string payload;
  std::string problem;
  bool whole = false;  // the damaged record was written as it reads: never a torn tail
  while (off < r.file_size) {
    ASSIGN_OR_RETURN(const uint8_t* p, reader.Get(off, kRecordHeaderSize));
    if (p == nullptr) {
      problem = "record header incomplete";
      break;
    }
    auto h = DecodeRecordHeader(p);
    if (!h.ok()) {
      // A header whose checksum holds was written whole: what it says (a type this build
      // does not know, inconsistent lengths) is no torn write, wherever it is.
      problem = std::string(h.status().message());
      whole = RecordHeaderIsWhole(p);
      break;
    }
    if (compacted ? h->seq < expect_seq : h->seq != expect_seq) {
      problem = "seq " + std::to_string(h->seq) + " where " + std::to_string(expect_seq) +
                (compacted ? " or later" : "") + " was expected";
      break;
    }
    const bool need_payload = options.verify_payloads || h->type == RecordType::kMarker;
    std::string_view payload_view;
    if (off + kRecordHeaderSize + h->payload_length > r.file_size) {
      problem = "record payload incomplete";
      break;
    }
    if (need_payload) {
      ASSIGN_OR_RETURN(const uint8_t* pp, reader.Get(off + kRecordHeaderSize, h->payload_length));
      if (pp == nullptr) {
        problem = "record payload incomplete";
        break;
      }
      payload_view = std::string_view(reinterpret_cast<const char*>(pp), h->payload_length);
      if (Checksum64(payload_view) != h->payload_checksum) {
        problem = "record payload checksum mismatch (seq " + std::to_string(h->seq) + ")";
      } else if (h->type == RecordType::kMarker) {
        auto m = DecodeMarkerBody(payload_view);
        if (!m.ok()) {
          problem = std::string(m.status().message());
          // Likewise a marker body whose checksum holds.
          whole = true;
        }
      }
      if (!problem.empty()) {
        if (options.payload_problems == nullptr) break;
        const Status damaged = DataLoss(Where(segment_number, off) + ": " + problem);
        options.payload_problems->push_back(damaged.ToString());
        problem.clear();
        whole = false;
        expect_seq = h->seq + 1;
        off += kRecordHeaderSize + h->payload_length;
        continue;
      }
    }
    RETURN_IF_ERROR(visit(*h, off, payload_view));
    ++r.records;
    r.last_seq = h->seq;
    expect_seq = h->seq + 1;
    off += kRecordHeaderSize + h->payload_length;
  }
  r.valid_end = off;
  if (problem.empty()) return r;

  // Something is wrong at `off`. It is a torn tail only in the last segment and only if no
  // valid record follows: acknowledged records were synced before anything after them.
  if (options.allow_torn_tail && !whole) {
    bool later_valid = false;
    std::vector<uint8_t> buf(kRecordHeaderSize);
    for (uint64_t scan = off + 1; scan + kRecordHeaderSize <= r.file_size; ++scan) {
      ASSIGN_OR_RETURN(const uint8_t* p, reader.Get(scan, kRecordHeaderSize));
      if (p == nullptr) break;
      if (std::memcmp(p, "FREC", 4) != 0) continue;
      auto h = DecodeRecordHeader(p);
      if (h.ok() && h->seq >= expect_seq) {
        later_valid = true;
        break;
      }
    }
    if (!later_valid) {
      r.torn = true;
      r.torn_reason = problem;
      return r;
    }
  }
  return DataLoss(Where(segment_number, off) + ": " + problem);
}

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::Create(Env* env, const std::string& dir,
                                                             const SegmentHeader& header) {
  std::string path = JoinPath(dir, SegmentFileName(header.segment_number));
  ASSIGN_OR_RETURN(std::unique_ptr<File> f, env->OpenFile(path, OpenMode::kCreateNew));
  RETURN_IF_ERROR(f->WriteAt(0, EncodeSegmentHeader(header)));
  RETURN_IF_ERROR(f->Sync());
  RETURN_IF_ERROR(env->SyncDir(dir));
  return std::unique_ptr<SegmentWriter>(
      new SegmentWriter(header.segment_number, std::shared_ptr<File>(std::move(f)),
                        kSegmentHeaderSize));
}

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::Recycle(Env* env, const std::string& dir,
                                                              const SegmentHeader& header,
                                                              const std::string& spare_path) {
  ASSIGN_OR_RETURN(std::unique_ptr<File> f, env->OpenFile(spare_path, OpenMode::kReadWrite));
  RETURN_IF_ERROR(f->WriteAt(0, EncodeSegmentHeader(header)));
  RETURN_IF_ERROR(f->Sync());
  RETURN_IF_ERROR(env->Rename(spare_path, JoinPath(dir, SegmentFileName(header.segment_number))));
  RETURN_IF_ERROR(env->SyncDir(dir));
  return std::unique_ptr<SegmentWriter>(
      new SegmentWriter(header.segment_number, std::shared_ptr<File>(std::move(f)),
                        kSegmentHeaderSize));
}

Result<std::unique_ptr<SegmentWriter>> SegmentWriter::Reopen(Env* env, const std::string& dir,
                                                             uint64_t segment_number,
                                                             uint64_t valid_end) {
  std::string path = JoinPath(dir, SegmentFileName(segment_number));
  ASSIGN_OR_RETURN(std::unique_ptr<File> f, env->OpenFile(path, OpenMode::kReadWrite));
  ASSIGN_OR_RETURN(uint64_t size, f->Size());
  if (size != valid_end) RETURN_IF_ERROR(f->Truncate(valid_end));
  // The records kept may never have been synced (an append whose sync failed); they are
  // points from now on, and later segments will follow them, so they must be durable.
  RETURN_IF_ERROR(f->Sync());
  return std::unique_ptr<SegmentWriter>(
      new SegmentWriter(segment_number, std::shared_ptr<File>(std::move(f)), valid_end));
}

Status SegmentWriter::Write(std::span<const std::string_view> pieces) {
  uint64_t n = 0;
  for (auto p : pieces) n += p.size();
  RETURN_IF_ERROR(file_->WriteAtV(end_, pieces));
  if (tail_known_) AdvanceTail(tail_, pieces, end_ + n);
  end_ += n;
  return Status::Ok();
}

Status SegmentWriter::CutBackTo(uint64_t end) {
  if (end >= end_) return Status::Ok();
  RETURN_IF_ERROR(file_->Truncate(end));
  RETURN_IF_ERROR(file_->Sync());
  end_ = end;
  tail_known_ = false;
  return Status::Ok();
}

Result<std::string> SegmentWriter::Tail() {
  if (!tail_known_) {
    const uint64_t block = end_ - end_ % kDirectIoAlignment;
    std::string tail(end_ - block, '\0');
    ASSIGN_OR_RETURN(size_t got, file_->ReadAt(block, tail.size(), tail.data()));
    if (got != tail.size()) {
      return DataLoss(Where(segment_number_, block) + ": segment shorter than its records (" +
                      std::to_string(block + got) + " bytes, " + std::to_string(end_) + " expected)");
    }
    tail_ = std::move(tail);
    tail_known_ = true;
  }
  return tail_;
}

void SegmentWriter::AdvanceTail(std::string_view prefix, std::span<const std::string_view> pieces,
                                uint64_t new_end) {
  // The new tail is the last (new_end mod block) bytes of prefix + pieces, which always hold
  // that many: they begin at or before the block new_end falls in.
  size_t want = new_end % kDirectIoAlignment;
  std::string tail(want, '\0');
  for (size_t i = pieces.size() + 1; i-- > 0 && want > 0;) {
    std::string_view src = i == 0 ? prefix : pieces[i - 1];
    const size_t take = std::min(want, src.size());
    std::memcpy(tail.data() + want - take, src.data() + src.size() - take, take);
    want -= take;
  }
  tail_ = std::move(tail);
  tail_known_ = true;
}

Result<SegmentWriter::Reservation> SegmentWriter::Reserve(
    std::span<const std::string_view> pieces) {
  Reservation r;
  ASSIGN_OR_RETURN(r.prefix, Tail());
  uint64_t n = 0;
  for (auto p : pieces) n += p.size();
  r.start = end_;
  r.end = end_ + n;
  AdvanceTail(r.prefix, pieces, r.end);
  end_ = r.end;
  return r;
}

DirectBatch::DirectBatch(const SegmentWriter::Reservation& reservation,
                         std::span<const std::string_view> pieces, DirectBuffer* buffer)
    : buffer_(buffer),
      position_(reservation.start - reservation.prefix.size()),
      aligned_end_((reservation.end + kDirectIoAlignment - 1) / kDirectIoAlignment *
                   kDirectIoAlignment) {
  sources_.reserve(pieces.size() + 1);
  sources_.push_back(reservation.prefix);
  sources_.insert(sources_.end(), pieces.begin(), pieces.end());
}

bool DirectBatch::Fill() {
  if (position_ >= aligned_end_) return false;
  chunk_offset_ = position_;
  chunk_size_ = static_cast<size_t>(std::min<uint64_t>(aligned_end_ - position_, kMaxChunk));
  char* out = buffer_->Reserve(chunk_size_);
  size_t filled = 0;
  while (filled < chunk_size_ && source_ < sources_.size()) {
    std::string_view src = sources_[source_];
    const size_t take = std::min(chunk_size_ - filled, src.size() - source_offset_);
    std::memcpy(out + filled, src.data() + source_offset_, take);
    filled += take;
    source_offset_ += take;
    if (source_offset_ == src.size()) {
      ++source_;
      source_offset_ = 0;
    }
  }
  std::memset(out + filled, 0, chunk_size_ - filled);  // after the batch's end
  position_ += chunk_size_;
  return true;
}

Status DirectBatch::Write(File* file) {
  return file->WriteDurable(chunk_offset_, std::string_view(buffer_->Reserve(chunk_size_), chunk_size_));
}

}  // namespace ferry::journal
