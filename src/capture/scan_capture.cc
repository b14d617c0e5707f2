#include "capture/scan_capture.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "base/bytes.h"
#include "base/checksum.h"
#include "base/coding.h"

namespace ferry::capture {

using journal::Record;
using journal::RecordType;

namespace {

// docs/formats/scan-hashmap.md
constexpr char kMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'S', 'H', 'M'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kHeaderSize = 96;
constexpr uint32_t kHashXxh3_128 = 1;  // hash algorithm numbers are never reused
constexpr uint32_t kEntriesPerPage = 4096;
constexpr uint32_t kMaxEntriesPerPage = 1u << 16;
constexpr size_t kEntrySize = 16;
constexpr size_t kPageChecksumSize = 8;

constexpr size_t kBatchBytes = 8u << 20;    // payload per Append call
constexpr size_t kGapReadBytes = 8u << 20;  // payload per ReadRecords call while planning

struct Hash128 {
  uint64_t lo = 0, hi = 0;
  bool operator==(const Hash128&) const = default;
};

Hash128 HashChunk(const char* p, size_t n) {
  XXH128_hash_t h = XXH3_128bits(p, n);
  return {h.low64, h.high64};
}

uint64_t CeilDiv(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

struct MapHeader {
  uint32_t chunk_bytes = 0;
  uint64_t disk_bytes = 0;
  uint64_t entries = 0;
  uint32_t per_page = kEntriesPerPage;
  journal::Id128 volume_id{};
  uint64_t history_id = 0;
  uint64_t log_seq = 0;
};

uint64_t PageStride(uint32_t per_page) { return uint64_t{per_page} * kEntrySize + kPageChecksumSize; }
uint64_t PageOffset(uint64_t page, uint32_t per_page) { return kHeaderSize + page * PageStride(per_page); }

uint64_t PageChecksum(uint64_t page, const char* entries, size_t n) {
  uint8_t number[8];
  EncodeFixed(number, page);  // a page copied to the wrong place fails its check
  Checksummer c;
  c.Update(number, sizeof(number));
  c.Update(entries, n);
  return c.Digest();
}

std::string EncodeHeader(const MapHeader& h) {
  std::string out(kMagic, sizeof(kMagic));
  AppendFixed(&out, kVersion);
  AppendFixed(&out, kHeaderSize);
  AppendFixed(&out, kHashXxh3_128);
  AppendFixed(&out, h.chunk_bytes);
  AppendFixed(&out, h.disk_bytes);
  AppendFixed(&out, h.entries);
  AppendFixed(&out, h.per_page);
  AppendFixed(&out, uint32_t{0});
  out.append(reinterpret_cast<const char*>(h.volume_id.data()), h.volume_id.size());
  AppendFixed(&out, h.history_id);
  AppendFixed(&out, h.log_seq);
  AppendFixed(&out, uint64_t{0});
  AppendFixed(&out, Checksum64(out));
  return out;
}

// kDataLoss naming what is wrong when the header cannot be used at all.
Result<MapHeader> DecodeHeader(std::string_view in) {
  if (in.size() < kHeaderSize) return DataLoss("truncated header");
  const auto* p = reinterpret_cast<const uint8_t*>(in.data());
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) return DataLoss("bad magic");
  if (DecodeFixed<uint64_t>(p + 88) != Checksum64(p, 88)) return DataLoss("header checksum mismatch");
  const uint32_t version = DecodeFixed<uint32_t>(p + 8);
  if (version != kVersion) return DataLoss("unknown version " + std::to_string(version));
  if (DecodeFixed<uint32_t>(p + 12) != kHeaderSize) return DataLoss("bad header size");
  const uint32_t hash = DecodeFixed<uint32_t>(p + 16);
  if (hash != kHashXxh3_128) return DataLoss("unknown hash algorithm " + std::to_string(hash));
  MapHeader h;
  h.chunk_bytes = DecodeFixed<uint32_t>(p + 20);
  h.disk_bytes = DecodeFixed<uint64_t>(p + 24);
  h.entries = DecodeFixed<uint64_t>(p + 32);
  h.per_page = DecodeFixed<uint32_t>(p + 40);
  std::memcpy(h.volume_id.data(), p + 48, h.volume_id.size());
  h.history_id = DecodeFixed<uint64_t>(p + 64);
  h.log_seq = DecodeFixed<uint64_t>(p + 72);
  if (h.chunk_bytes == 0 || h.per_page == 0 || h.per_page > kMaxEntriesPerPage ||
      h.entries != CeilDiv(h.disk_bytes, h.chunk_bytes)) {
    return DataLoss("inconsistent geometry");
  }
  return h;
}

// The header this ScanCapture writes, and the one a usable map must match (log_seq aside).
MapHeader CurrentHeader(const journal::Replica& log, uint32_t chunk_bytes) {
  MapHeader h;
  h.chunk_bytes = chunk_bytes;
  h.disk_bytes = log.size();
  h.entries = CeilDiv(log.size(), chunk_bytes);
  h.volume_id = log.volume_id();
  h.history_id = log.history_id();
  return h;
}

// The map's header if the file at path is usable for this log and geometry; nullopt with
// *why_not otherwise. Fails only for I/O errors other than "no such file".
Result<std::optional<MapHeader>> ReadUsableHeader(File* file, const MapHeader& want,
                                                  std::string* why_not) {
  std::string bytes(kHeaderSize, '\0');
  ASSIGN_OR_RETURN(size_t n, file->ReadAt(0, bytes.size(), bytes.data()));
  bytes.resize(n);
  Result<MapHeader> h = DecodeHeader(bytes);
  if (!h.ok()) {
    *why_not = std::string(h.status().message());
    return std::optional<MapHeader>();
  }
  if (h->chunk_bytes != want.chunk_bytes || h->disk_bytes != want.disk_bytes) {
    *why_not = "made for a " + std::to_string(h->disk_bytes) + "-byte disk in " +
               std::to_string(h->chunk_bytes) + "-byte chunks, not " +
               std::to_string(want.disk_bytes) + " in " + std::to_string(want.chunk_bytes);
    return std::optional<MapHeader>();
  }
  if (h->volume_id != want.volume_id || h->history_id != want.history_id) {
    *why_not = "made for another pending log (volume or history id differs)";
    return std::optional<MapHeader>();
  }
  return std::optional<MapHeader>(*h);
}

}  // namespace

// Streams the previous map's entries, page by page, in chunk order.
class ScanCapture::MapReader {
 public:
  MapReader() = default;  // no usable map: every chunk is unknown
  MapReader(std::unique_ptr<File> file, const MapHeader& h) : file_(std::move(file)), h_(h) {}

  // The chunk's previous hash, or nullopt when unknown (no map, or its page is bad).
  Result<std::optional<Hash128>> Get(uint64_t chunk) {
    if (!file_) return std::optional<Hash128>();
    const uint64_t page = chunk / h_.per_page;
    if (page != page_) RETURN_IF_ERROR(Load(page));
    if (!page_ok_) return std::optional<Hash128>();
    const auto* e = reinterpret_cast<const uint8_t*>(buf_.data()) + (chunk % h_.per_page) * kEntrySize;
    return std::optional<Hash128>(Hash128{DecodeFixed<uint64_t>(e), DecodeFixed<uint64_t>(e + 8)});
  }
  uint64_t bad_pages() const { return bad_pages_; }

 private:
  Status Load(uint64_t page) {
    page_ = page;
    const uint64_t first = page * h_.per_page;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(h_.per_page, h_.entries - first)) * kEntrySize;
    buf_.resize(n + kPageChecksumSize);
    ASSIGN_OR_RETURN(size_t got, file_->ReadAt(PageOffset(page, h_.per_page), buf_.size(), buf_.data()));
    page_ok_ = got == buf_.size() &&
               DecodeFixed<uint64_t>(reinterpret_cast<const uint8_t*>(buf_.data()) + n) ==
                   PageChecksum(page, buf_.data(), n);
    if (!page_ok_) ++bad_pages_;
    return Status::Ok();
  }

  std::unique_ptr<File> file_;
  MapHeader h_;
  uint64_t page_ = UINT64_MAX;
  bool page_ok_ = false;
  std::string buf_;
  uint64_t bad_pages_ = 0;
};

// Writes the new map to path.tmp as the scan goes; Commit makes it the map.
class ScanCapture::MapWriter {
 public:
  MapWriter(Env* env, std::string path, const MapHeader& h)
      : env_(env), path_(std::move(path)), tmp_(path_ + ".tmp"), h_(h) {}

  Status Open() {
    ASSIGN_OR_RETURN(file_, env_->OpenFile(tmp_, OpenMode::kCreate));
    return file_->Truncate(0);  // a failed earlier cycle may have left bytes
  }
  Status Add(Hash128 h) {
    AppendFixed(&page_, h.lo);
    AppendFixed(&page_, h.hi);
    ++added_;
    return page_.size() == size_t{h_.per_page} * kEntrySize ? WritePage() : Status::Ok();
  }
  // Only after the log holds every record of the cycle durably (see the header).
  Status Commit(uint64_t log_seq) {
    if (added_ != h_.entries) return Internal("hash map has " + std::to_string(added_) + " entries");
    if (!page_.empty()) RETURN_IF_ERROR(WritePage());
    h_.log_seq = log_seq;
    RETURN_IF_ERROR(file_->WriteAt(0, EncodeHeader(h_)));
    RETURN_IF_ERROR(file_->Sync());
    file_.reset();
    RETURN_IF_ERROR(env_->Rename(tmp_, path_));
    return env_->SyncDir(DirName(path_));
  }

 private:
  Status WritePage() {
    AppendFixed(&page_, PageChecksum(pages_, page_.data(), page_.size()));
    RETURN_IF_ERROR(file_->WriteAt(PageOffset(pages_, h_.per_page), page_));
    ++pages_;
    page_.clear();
    return Status::Ok();
  }

  Env* const env_;
  const std::string path_, tmp_;
  MapHeader h_;
  std::unique_ptr<File> file_;
  std::string page_;
  uint64_t pages_ = 0;
  uint64_t added_ = 0;
};

// Collects a cycle's records and appends them in bounded batches; adjacent zero chunks merge.
class ScanCapture::Batch {
 public:
  explicit Batch(journal::Replica* log) : log_(log) {}

  void AddWrite(uint64_t offset, const char* p, size_t n) {
    EndZeroRun();
    records_.push_back(Record::Write(offset, std::string(p, n)));
    bytes_ += n + journal::kRecordHeaderSize;
  }
  void AddZero(uint64_t offset, uint64_t n) {
    if (zero_len_ > 0 && zero_off_ + zero_len_ == offset && zero_len_ + n <= journal::kMaxRecordLength) {
      zero_len_ += n;
      return;
    }
    EndZeroRun();
    zero_off_ = offset;
    zero_len_ = n;
  }
  void AddMarker(journal::MarkerKind kind, const std::string& label) {
    EndZeroRun();
    records_.push_back(Record::Marker(kind, label));
  }
  bool full() const { return bytes_ >= kBatchBytes; }
  // Appends what was collected (written, not synced); returns the last seq, 0 if nothing.
  Result<uint64_t> Flush() {
    EndZeroRun();
    if (records_.empty()) return uint64_t{0};
    ASSIGN_OR_RETURN(uint64_t last, log_->Append(records_, journal::Durability::kWritten));
    records_.clear();
    bytes_ = 0;
    return last;
  }

 private:
  void EndZeroRun() {
    if (zero_len_ == 0) return;
    records_.push_back(Record::Zero(zero_off_, zero_len_));
    bytes_ += journal::kRecordHeaderSize;
    zero_len_ = 0;
  }

  journal::Replica* const log_;
  std::vector<Record> records_;
  size_t bytes_ = 0;
  uint64_t zero_off_ = 0, zero_len_ = 0;
};

// What the previous cycles left: the old map and the chunks it cannot vouch for.
struct ScanCapture::Baseline {
  MapReader map;
  uint64_t seq = 0;            // the map's log seq; 0: no usable map
  std::vector<bool> unknown;   // chunks touched by records after seq; empty: none

  Result<std::optional<Hash128>> Previous(uint64_t chunk) {
    if (!unknown.empty() && unknown[chunk]) return std::optional<Hash128>();
    return map.Get(chunk);
  }
};

Result<std::unique_ptr<ScanCapture>> ScanCapture::Open(Env* env, const std::string& disk_path,
                                                       std::shared_ptr<journal::Replica> log,
                                                       const std::string& state_dir,
                                                       ScanOptions options) {
  if (!log) return InvalidArgument("scan capture needs a pending log");
  if (options.chunk_bytes == 0 || options.chunk_bytes % log->block_size() != 0 ||
      options.chunk_bytes > journal::kMaxRecordLength) {
    return InvalidArgument("chunk size " + std::to_string(options.chunk_bytes) +
                           " must be a multiple of the log's block size " +
                           std::to_string(log->block_size()) + " and at most 64 MiB");
  }
  if (static_cast<bool>(options.freeze) != static_cast<bool>(options.thaw)) {
    return InvalidArgument("freeze and thaw hooks come as a pair");
  }
  if (!options.clock) return InvalidArgument("scan capture needs a clock");
  options.read_buffer_bytes =
      std::max<size_t>(options.read_buffer_bytes / options.chunk_bytes, 1) * options.chunk_bytes;

  RETURN_IF_ERROR(env->CreateDir(state_dir));
  ASSIGN_OR_RETURN(std::unique_ptr<FileLock> lock, env->LockFile(JoinPath(state_dir, "LOCK")));
  std::unique_ptr<ScanCapture> s(new ScanCapture(env, disk_path, std::move(log), state_dir,
                                                 std::move(options), std::move(lock)));
  // Only to answer Checkpoint before the first cycle; the cycle checks the map itself.
  auto file = env->OpenFile(s->map_path_, OpenMode::kRead);
  if (file.ok()) {
    std::string why_not;
    ASSIGN_OR_RETURN(auto h, ReadUsableHeader(file->get(), CurrentHeader(*s->log_, s->options_.chunk_bytes),
                                              &why_not));
    if (h) s->saved_seq_ = h->log_seq;
  } else if (file.status().code() != Code::kNotFound) {
    return file.status();
  }
  return s;
}

ScanCapture::ScanCapture(Env* env, std::string disk_path, std::shared_ptr<journal::Replica> log,
                         std::string state_dir, ScanOptions options, std::unique_ptr<FileLock> lock)
    : env_(env),
      disk_path_(std::move(disk_path)),
      log_(std::move(log)),
      state_dir_(std::move(state_dir)),
      map_path_(JoinPath(state_dir_, "hashmap")),
      options_(std::move(options)),
      lock_(std::move(lock)) {}

ScanCapture::~ScanCapture() = default;

Result<uint64_t> ScanCapture::Checkpoint() const {
  const uint64_t saved = saved_seq_.load();
  return saved != 0 ? saved : log_->last_seq();
}

Result<ScanCapture::Baseline> ScanCapture::Plan() {
  Baseline none;
  auto unusable = [&](const std::string& why) {
    spdlog::warn("scan capture of {}: hash map {} not used ({}); this cycle resends the whole disk",
                 disk_path_, map_path_, why);
    return Result<Baseline>(std::move(none));
  };
  auto file = env_->OpenFile(map_path_, OpenMode::kRead);
  if (!file.ok()) {
    if (file.status().code() == Code::kNotFound) return none;  // first cycle
    return file.status();
  }
  std::string why_not;
  const MapHeader want = CurrentHeader(*log_, options_.chunk_bytes);
  ASSIGN_OR_RETURN(std::optional<MapHeader> h, ReadUsableHeader(file->get(), want, &why_not));
  if (!h) return unusable(why_not);

  Baseline b;
  b.seq = h->log_seq;
  const uint64_t last = log_->last_seq();
  if (h->log_seq > last) {
    return unusable("it is as of seq " + std::to_string(h->log_seq) +
                    " but the pending log ends at " + std::to_string(last));
  }
  // Records after the map's seq come from cycles that never saved a map: the target will
  // apply them, so the chunks they touch have no trustworthy previous hash.
  for (uint64_t next = h->log_seq + 1; next <= last;) {
    auto batch = log_->ReadRecords(next, last, kGapReadBytes);
    if (!batch.ok() && batch.status().code() == Code::kOutOfRange) {
      return unusable("records after its seq " + std::to_string(h->log_seq) +
                      " were discarded from the pending log");
    }
    if (!batch.ok()) return batch.status().WithContext("reading the pending log after the hash map's seq");
    if (batch->empty()) break;
    if (b.unknown.empty()) b.unknown.assign(want.entries, false);
    for (const journal::StoredRecord& sr : *batch) {
      const Record& r = sr.record;
      if (r.type == RecordType::kMarker || r.length == 0) continue;
      const uint64_t end = std::min<uint64_t>(CeilDiv(r.offset + r.length, want.chunk_bytes), want.entries);
      for (uint64_t c = r.offset / want.chunk_bytes; c < end; ++c) b.unknown[c] = true;
    }
    next = batch->back().record.seq + 1;
  }
  b.map = MapReader(std::move(*file), *h);
  return b;
}

Status ScanCapture::CheckDiskSize(File& disk) const {
  const uint64_t size = log_->size();
  ASSIGN_OR_RETURN(uint64_t disk_size, disk.Size());
  if (disk_size == size) return Status::Ok();
  return FailedPrecondition("disk " + disk_path_ + " is " + std::to_string(disk_size) + " bytes, " +
                            (disk_size < size ? "smaller" : "larger") +
                            " than its pending log's volume (" + std::to_string(size) +
                            " bytes); resize the volume to match, then retry");
}

Status ScanCapture::ScanAndMark(Baseline& base, MapWriter& out, journal::MarkerKind kind,
                                const std::string& label, ScanReport* report) {
  ASSIGN_OR_RETURN(std::unique_ptr<File> disk, env_->OpenFile(disk_path_, OpenMode::kRead));
  RETURN_IF_ERROR(CheckDiskSize(*disk));
  const uint64_t size = log_->size();
  const uint32_t chunk = options_.chunk_bytes;
  // A buffer larger than the disk reads it whole in one call, so chunks stay aligned.
  std::string buf(static_cast<size_t>(std::min<uint64_t>(options_.read_buffer_bytes, size)), '\0');
  Batch batch(log_.get());
  for (uint64_t offset = 0; offset < size;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - offset));
    ASSIGN_OR_RETURN(size_t got, disk->ReadAt(offset, n, buf.data()));
    if (got != n) {
      return FailedPrecondition("disk " + disk_path_ + " ended at byte " +
                                std::to_string(offset + got) + " during the scan");
    }
    report->bytes_read += n;
    for (size_t at = 0; at < n; at += chunk) {
      const size_t len = std::min<size_t>(chunk, n - at);
      const char* p = buf.data() + at;
      const uint64_t index = (offset + at) / chunk;
      const Hash128 h = HashChunk(p, len);
      RETURN_IF_ERROR(out.Add(h));
      ASSIGN_OR_RETURN(std::optional<Hash128> prev, base.Previous(index));
      ++report->chunks;
      if (prev && *prev == h) continue;
      if (!prev) ++report->unknown_chunks;
      ++report->changed_chunks;
      report->bytes_changed += len;
      if (IsAllZero(std::string_view(p, len))) {
        batch.AddZero(offset + at, len);
      } else {
        batch.AddWrite(offset + at, p, len);
      }
      if (batch.full()) RETURN_IF_ERROR(batch.Flush().status());
    }
    offset += n;
  }
  if (base.map.bad_pages() > 0) {
    spdlog::warn("scan capture of {}: hash map {}: {} page(s) failed their checksum; their "
                 "chunks were resent", disk_path_, map_path_, base.map.bad_pages());
  }
  batch.AddMarker(kind, label);
  ASSIGN_OR_RETURN(report->marker_seq, batch.Flush());
  return log_->Sync();
}

Result<ScanReport> ScanCapture::RunCycle(journal::MarkerKind kind, const std::string& label) {
  std::lock_guard l(cycle_mu_);
  const int64_t start = options_.clock->NowNanos();
  ASSIGN_OR_RETURN(Baseline base, Plan());
  saved_seq_ = base.seq;
  MapWriter out(env_, map_path_, CurrentHeader(*log_, options_.chunk_bytes));
  RETURN_IF_ERROR(out.Open());

  if (options_.freeze) RETURN_IF_ERROR(options_.freeze().WithContext("freeze hook"));
  ScanReport report;
  const Status scan = ScanAndMark(base, out, kind, label, &report);
  const Status thaw = options_.thaw ? options_.thaw() : Status::Ok();
  if (!thaw.ok()) {
    spdlog::error("scan capture of {}: thaw hook failed: {}; the disk may still be frozen: "
                  "thaw it by hand", disk_path_, thaw.ToString());
  }
  if (!scan.ok()) {
    if (thaw.ok()) return scan;
    return Status(scan.code(), std::string(scan.message()) + "; then the thaw hook failed too (" +
                                   thaw.ToString() + "): the disk may still be frozen");
  }

  const std::string at = "marker seq " + std::to_string(report.marker_seq);
  Status saved = out.Commit(report.marker_seq);
  if (!saved.ok()) {
    return saved.WithContext("saving the hash map after " + at +
                             " (the next cycle resends this cycle's chunks)");
  }
  saved_seq_ = report.marker_seq;
  if (!thaw.ok()) {
    return thaw.WithContext("thaw hook (the cycle captured through " + at +
                            "); the disk may still be frozen");
  }
  report.duration_ns = options_.clock->NowNanos() - start;
  return report;
}

}  // namespace ferry::capture
