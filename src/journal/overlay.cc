#include "journal/overlay.h"

#include <algorithm>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/checksum.h"
#include "base/coding.h"
#include "journal/block_runs.h"
#include "journal/index.h"
#include "journal/manifest.h"

namespace ferry::journal {
namespace {

constexpr size_t kLogEntrySize = 32;
constexpr char kLogMagic[4] = {'F', 'O', 'V', 'L'};
constexpr uint8_t kKindWritten = 1;
constexpr uint8_t kKindFilled = 2;
// Intent entries (files intent.0 and intent.1), 40 bytes: magic, flags (1: zero), 3 reserved,
// first block, count, XXH3-64 of the blocks' data (0 for zero), XXH3-64 of bytes 0..31.
constexpr size_t kIntentSize = 40;
constexpr char kIntentMagic[4] = {'F', 'O', 'V', 'I'};
std::string IntentName(int i) { return "intent." + std::to_string(i); }

bool TestBit(const std::vector<uint64_t>& bits, uint64_t i) { return bits[i >> 6] >> (i & 63) & 1; }
void SetBits(std::vector<uint64_t>& bits, uint64_t first, uint64_t count) {
  for (uint64_t i = first; i < first + count; ++i) bits[i >> 6] |= 1ull << (i & 63);
}
uint64_t CountBits(const std::vector<uint64_t>& bits) {
  uint64_t n = 0;
  for (uint64_t w : bits) n += static_cast<uint64_t>(__builtin_popcountll(w));
  return n;
}

}  // namespace

std::string_view OverlayStateName(OverlayState s) {
  switch (s) {
    case OverlayState::kActive: return "active";
    case OverlayState::kCommitting: return "committing";
    case OverlayState::kCommitted: return "committed";
  }
  return "unknown";
}

Overlay::Overlay(Env* env, std::string dir, std::string name, uint64_t point, uint64_t size,
                 uint32_t block_size)
    : env_(env),
      dir_(std::move(dir)),
      name_(std::move(name)),
      point_(point),
      size_(size),
      block_size_(block_size),
      blocks_(size / block_size),
      written_((blocks_ + 63) / 64, 0),
      present_((blocks_ + 63) / 64, 0),
      diverged_((blocks_ + 63) / 64, 0) {}

// A clean close keeps every acknowledged write, as a disk's would: record what is pending.
// (Best effort: a destructor cannot report; after a crash the files are dead anyway.)
Overlay::~Overlay() {
  if (data_ && log_) (void)Flush();
}

std::string Overlay::data_path() const { return JoinPath(dir_, "data.img"); }

OverlayState Overlay::state() const {
  std::lock_guard l(mu_);
  return state_;
}

Status Overlay::StoreMeta(OverlayState state) {
  nlohmann::json j = {{"format", 1},
                      {"name", name_},
                      {"point", point_},
                      {"created_ns", created_ns_},
                      {"state", std::string(OverlayStateName(state))}};
  RETURN_IF_ERROR(WriteFileAtomically(env_, JoinPath(dir_, "OVERLAY"), FrameWithChecksum(j.dump())));
  std::lock_guard l(mu_);
  state_ = state;
  return Status::Ok();
}

Result<std::shared_ptr<Overlay>> Overlay::Create(Env* env, const std::string& dir,
                                                 const std::string& name, uint64_t point,
                                                 uint64_t size, uint32_t block_size,
                                                 int64_t now) {
  RETURN_IF_ERROR(env->CreateDir(dir));
  std::shared_ptr<Overlay> o(new Overlay(env, dir, name, point, size, block_size));
  o->created_ns_ = now;
  ASSIGN_OR_RETURN(o->data_, env->OpenFile(JoinPath(dir, "data.img"), OpenMode::kCreate));
  RETURN_IF_ERROR(o->data_->Truncate(0));
  RETURN_IF_ERROR(o->data_->Truncate(size));
  RETURN_IF_ERROR(o->data_->Sync());
  ASSIGN_OR_RETURN(o->log_, env->OpenFile(JoinPath(dir, "blocks.log"), OpenMode::kCreate));
  RETURN_IF_ERROR(o->log_->Truncate(0));
  RETURN_IF_ERROR(o->log_->Sync());
  for (int i = 0; i < 2; ++i) {
    ASSIGN_OR_RETURN(o->intents_[i], env->OpenFile(JoinPath(dir, IntentName(i)), OpenMode::kCreate));
    RETURN_IF_ERROR(o->intents_[i]->Truncate(0));
  }
  RETURN_IF_ERROR(env->SyncDir(dir));
  // OVERLAY is written last: a directory without it is a half-made overlay.
  RETURN_IF_ERROR(o->StoreMeta(OverlayState::kActive));
  return o;
}

namespace {

// Opens one of an overlay's files; a missing one is damage to the overlay, never "no such
// overlay" (a caller must not take it for a replica or overlay that does not exist).
Result<std::unique_ptr<File>> OpenOverlayFile(Env* env, const std::string& path) {
  auto f = env->OpenFile(path, OpenMode::kReadWrite);
  if (!f.ok() && f.status().code() == Code::kNotFound) {
    return DataLoss(path + ": missing; the overlay cannot be read without it");
  }
  return f;
}

// Why the blocks.log entry at p is not one a flush wrote whole, or "" if it is.
std::string LogEntryProblem(const uint8_t* p) {
  if (std::memcmp(p, kLogMagic, 4) != 0) return "bad entry magic";
  if (DecodeFixed<uint64_t>(p + 24) != Checksum64(p, 24)) return "entry checksum mismatch";
  return "";
}

}  // namespace

Result<std::shared_ptr<Overlay>> Overlay::Load(Env* env, const std::string& dir, uint64_t size,
                                               uint32_t block_size) {
  const std::string meta_path = JoinPath(dir, "OVERLAY");
  auto text = ReadFileToString(env, meta_path);
  if (!text.ok() && text.status().code() == Code::kNotFound) {
    return DataLoss(meta_path + ": missing; the overlay's identity and state are lost");
  }
  if (!text.ok()) return text.status();
  ASSIGN_OR_RETURN(std::string body, UnframeChecksum(*text, meta_path));
  std::string name, state;
  uint64_t point = 0;
  int64_t created = 0;
  try {
    auto j = nlohmann::json::parse(body);
    if (j.at("format").get<int>() != 1) return DataLoss(dir + "/OVERLAY: unsupported format");
    name = j.at("name").get<std::string>();
    point = j.at("point").get<uint64_t>();
    created = j.at("created_ns").get<int64_t>();
    state = j.at("state").get<std::string>();
  } catch (const std::exception& e) {
    return DataLoss(dir + "/OVERLAY: " + e.what());
  }
  std::shared_ptr<Overlay> o(new Overlay(env, dir, name, point, size, block_size));
  o->created_ns_ = created;
  if (state == "active") {
    o->state_ = OverlayState::kActive;
  } else if (state == "committing") {
    o->state_ = OverlayState::kCommitting;
  } else if (state == "committed") {
    o->state_ = OverlayState::kCommitted;
  } else {
    return DataLoss(dir + "/OVERLAY: unknown state " + state);
  }
  const std::string data_path = JoinPath(dir, "data.img"), log_path = JoinPath(dir, "blocks.log");
  ASSIGN_OR_RETURN(o->data_, OpenOverlayFile(env, data_path));
  // Create sizes data.img to the volume before anything can be written: another size is
  // damage (a shorter file would read the blocks past its end as zeros).
  ASSIGN_OR_RETURN(uint64_t data_size, o->data_->Size());
  if (data_size != size) {
    return DataLoss(data_path + ": " + std::to_string(data_size) + " bytes where the volume has " +
                    std::to_string(size));
  }
  ASSIGN_OR_RETURN(o->log_, OpenOverlayFile(env, log_path));
  ASSIGN_OR_RETURN(std::string log, ReadFileToString(env, log_path));
  auto where = [&](uint64_t at) { return log_path + " offset " + std::to_string(at) + ": "; };
  uint64_t off = 0;
  std::string problem;
  for (; off < log.size(); off += kLogEntrySize) {
    if (off + kLogEntrySize > log.size()) {
      problem = "entry incomplete";
      break;
    }
    auto p = reinterpret_cast<const uint8_t*>(log.data() + off);
    problem = LogEntryProblem(p);
    if (!problem.empty()) break;
    // An entry whose checksum holds was written so: wrong fields are not a torn write.
    uint8_t kind = p[4];
    uint64_t first = DecodeFixed<uint64_t>(p + 8), count = DecodeFixed<uint64_t>(p + 16);
    if (kind != kKindWritten && kind != kKindFilled) {
      return DataLoss(where(off) + "unknown entry kind " + std::to_string(kind));
    }
    if (first > o->blocks_ || count > o->blocks_ - first) {
      return DataLoss(where(off) + "blocks " + std::to_string(first) + "+" + std::to_string(count) +
                      " past the volume's " + std::to_string(o->blocks_));
    }
    SetBits(o->present_, first, count);
    if (kind == kKindWritten) SetBits(o->written_, first, count);
  }
  if (!problem.empty()) {
    // A torn tail (an unfinished flush, never acknowledged) only if no whole entry follows:
    // each flush is synced before the next one is written, so one that does was acknowledged,
    // and dropping the entries between would serve the point's data for blocks users wrote.
    for (uint64_t later = off + kLogEntrySize; later + kLogEntrySize <= log.size();
         later += kLogEntrySize) {
      if (LogEntryProblem(reinterpret_cast<const uint8_t*>(log.data() + later)).empty()) {
        return DataLoss(where(off) + problem + ", and a whole entry follows at offset " +
                        std::to_string(later) +
                        ": flushed writes of the overlay are lost; restore the file, or move " +
                        dir + " out of the replica to open it without this overlay");
      }
    }
    // An unflushed tail: those writes were never acknowledged as durable.
    RETURN_IF_ERROR(o->log_->Truncate(off));
  }
  // The entries replayed may come from a flush whose sync failed; the blocks are present
  // from now on, and a later flush will not log them again, so they must be durable.
  RETURN_IF_ERROR(o->log_->Sync());
  RETURN_IF_ERROR(env->SyncDir(dir));
  o->log_end_ = off;
  RETURN_IF_ERROR(o->RecoverIntents());
  const std::string diverged = JoinPath(dir, "DIVERGED");
  if (env->Exists(diverged)) {
    ASSIGN_OR_RETURN(std::string dtext, ReadFileToString(env, diverged));
    ASSIGN_OR_RETURN(std::string dbody, UnframeChecksum(dtext, diverged));
    try {
      auto j = nlohmann::json::parse(dbody);
      o->diverged_through_ = j.at("through").get<uint64_t>();
      auto runs = BlockRunsFromJson(j.at("runs"), o->blocks_, diverged);
      if (!runs.ok()) return DataLoss(std::string(runs.status().message()));
      for (const auto& [first, count] : *runs) SetBits(o->diverged_, first, count);
    } catch (const std::exception& e) {
      return DataLoss(diverged + ": " + e.what());
    }
  }
  return o;
}

Status Overlay::RecoverIntents() {
  std::vector<BlockExtent> found;
  for (int i = 0; i < 2; ++i) {
    // An overlay made before intent files existed has none: they start empty.
    ASSIGN_OR_RETURN(intents_[i], env_->OpenFile(JoinPath(dir_, IntentName(i)), OpenMode::kCreate));
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(env_, JoinPath(dir_, IntentName(i))));
    for (uint64_t off = 0; off + kIntentSize <= text.size(); off += kIntentSize) {
      auto p = reinterpret_cast<const uint8_t*>(text.data() + off);
      if (std::memcmp(p, kIntentMagic, 4) != 0 || DecodeFixed<uint64_t>(p + 32) != Checksum64(p, 32)) break;
      const bool zero = p[4] & 1;
      const uint64_t first = DecodeFixed<uint64_t>(p + 8), count = DecodeFixed<uint64_t>(p + 16);
      if (first > blocks_ || count == 0 || count > blocks_ - first) break;
      bool logged = true;
      for (uint64_t b = first; b < first + count && logged; ++b) logged = Present(b);
      if (logged) continue;
      // Kept only if data.img holds exactly what was written: a power loss may have dropped
      // the data while the intent reached the disk.
      std::string data(count * block_size_, '\0');
      ASSIGN_OR_RETURN(size_t got, data_->ReadAt(first * block_size_, data.size(), data.data()));
      if (got < data.size()) std::fill(data.begin() + static_cast<std::ptrdiff_t>(got), data.end(), '\0');
      const bool holds = zero ? IsAllZero(data) : Checksum64(data.data(), data.size()) == DecodeFixed<uint64_t>(p + 24);
      if (holds) found.push_back({first, count});
    }
  }
  if (!found.empty()) {
    {
      std::lock_guard l(mu_);
      for (const BlockExtent& e : found) {
        SetBits(present_, e.first_block, e.count);
        SetBits(written_, e.first_block, e.count);
        pending_.push_back({e, false});
      }
    }
    // Logged like a flush would (data.img first, then blocks.log).
    RETURN_IF_ERROR(Flush());
  }
  for (int i = 0; i < 2; ++i) {
    RETURN_IF_ERROR(intents_[i]->Truncate(0));
    RETURN_IF_ERROR(intents_[i]->Sync());
    intent_end_[i] = 0;
  }
  return Status::Ok();
}

Status Overlay::StoreDiverged(const std::vector<std::pair<uint64_t, uint64_t>>& runs, uint64_t through) {
  nlohmann::json j = {{"format", 1}, {"through", through}, {"runs", BlockRunsToJson(runs)}};
  RETURN_IF_ERROR(WriteFileAtomically(env_, JoinPath(dir_, "DIVERGED"), FrameWithChecksum(j.dump())));
  std::lock_guard l(mu_);
  std::fill(diverged_.begin(), diverged_.end(), 0);
  for (auto [first, count] : runs) SetBits(diverged_, first, count);
  diverged_through_ = through;
  return Status::Ok();
}

void Overlay::AttachView(std::shared_ptr<View> view) {
  std::lock_guard l(mu_);
  view_ = std::move(view);
}

void Overlay::DetachView() {
  std::shared_ptr<View> v;
  {
    std::lock_guard l(mu_);
    v.swap(view_);
  }
}

std::mutex& Overlay::StripeFor(uint64_t block) {
  return stripes_[(block / kChunkBlocks) % stripes_.size()];
}

bool Overlay::Present(uint64_t block) const { return TestBit(present_, block); }

uint64_t Overlay::RunEnd(uint64_t block, uint64_t limit, bool* present) const {
  std::lock_guard l(mu_);
  *present = Present(block);
  uint64_t e = block + 1;
  while (e < limit && Present(e) == *present) ++e;
  return e;
}

Status Overlay::Mark(uint64_t first, uint64_t count, bool filled, uint64_t data_checksum, bool zero) {
  std::unique_lock il(intent_mu_, std::defer_lock);
  if (!filled) {
    il.lock();
    uint8_t entry[kIntentSize] = {};
    std::memcpy(entry, kIntentMagic, 4);
    entry[4] = zero ? 1 : 0;
    EncodeFixed<uint64_t>(entry + 8, first);
    EncodeFixed<uint64_t>(entry + 16, count);
    EncodeFixed<uint64_t>(entry + 24, zero ? 0 : data_checksum);
    EncodeFixed<uint64_t>(entry + 32, Checksum64(entry, 32));
    const int i = active_intent_;
    RETURN_IF_ERROR(intents_[i]->WriteAt(intent_end_[i], std::string_view(reinterpret_cast<const char*>(entry), kIntentSize)));
    intent_end_[i] += kIntentSize;
  }
  std::lock_guard l(mu_);
  SetBits(present_, first, count);
  if (!filled) SetBits(written_, first, count);
  if (!pending_.empty()) {
    auto& [last, last_filled] = pending_.back();
    if (last_filled == filled && last.first_block + last.count == first) {
      last.count += count;
      return Status::Ok();
    }
  }
  pending_.push_back({BlockExtent{first, count}, filled});
  return Status::Ok();
}

Status Overlay::Read(uint64_t offset, size_t n, void* dst) {
  if (offset > size_ || n > size_ - offset) {
    return OutOfRange("read at " + std::to_string(offset) + "+" + std::to_string(n) +
                      " past the end of overlay " + name_);
  }
  char* out = static_cast<char*>(dst);
  std::shared_ptr<View> view;
  {
    std::lock_guard l(mu_);
    if (discarded_) return FailedPrecondition("overlay " + name_ + " was discarded");
    view = view_;
  }
  uint64_t pos = offset, end = offset + n;
  while (pos < end) {
    uint64_t b = pos / block_size_;
    bool present;
    uint64_t end_block = RunEnd(b, (end + block_size_ - 1) / block_size_, &present);
    uint64_t run_end = std::min<uint64_t>(end, end_block * block_size_);
    size_t len = run_end - pos;
    if (present) {
      ASSIGN_OR_RETURN(size_t got, data_->ReadAt(pos, len, out + (pos - offset)));
      if (got < len) std::memset(out + (pos - offset) + got, 0, len - got);
    } else if (view) {
      RETURN_IF_ERROR(view->Read(pos, len, out + (pos - offset)));
    } else {
      return Internal("overlay " + name_ + " has no point to read block " + std::to_string(b));
    }
    pos = run_end;
  }
  return Status::Ok();
}

Status Overlay::WriteBlocks(uint64_t first_block, std::string_view data, bool filled, bool keep_allocated) {
  uint64_t count = data.size() / block_size_;
  const bool zero = IsAllZero(data);
  const uint64_t offset = first_block * block_size_;
  if (zero && !keep_allocated) {
    RETURN_IF_ERROR(data_->PunchHole(offset, data.size()));
  } else if (filled && IsDirectWritable(offset, data)) {
    // A commit's fill writes the whole disk once and nobody waits for one block of it: past
    // the page cache, durable at once (docs/decisions/0015). The periodic Flush then has
    // only the log to make durable.
    RETURN_IF_ERROR(data_->WriteDurable(offset, data));
  } else {
    RETURN_IF_ERROR(data_->WriteAt(offset, data));
  }
  return Mark(first_block, count, filled, filled || zero ? 0 : Checksum64(data.data(), data.size()), zero);
}

Status Overlay::Write(uint64_t offset, std::string_view data, bool fua) {
  RETURN_IF_ERROR(WriteRange(offset, data, false));
  return fua ? Flush() : Status::Ok();
}

Status Overlay::WriteRange(uint64_t offset, std::string_view data, bool keep_allocated) {
  if (offset > size_ || data.size() > size_ - offset) {
    return OutOfRange("write at " + std::to_string(offset) + "+" + std::to_string(data.size()) +
                      " past the end of overlay " + name_ + " (" + std::to_string(size_) +
                      " bytes)");
  }
  {
    std::lock_guard l(mu_);
    if (discarded_) return FailedPrecondition("overlay " + name_ + " was discarded");
  }
  uint64_t pos = offset, end = offset + data.size();
  std::string block(block_size_, '\0');
  while (pos < end) {
    uint64_t b = pos / block_size_;
    uint64_t chunk_end_byte = (b / kChunkBlocks + 1) * kChunkBlocks * uint64_t{block_size_};
    std::lock_guard stripe(StripeFor(b));
    if (pos % block_size_ != 0 || end - pos < block_size_) {
      // Partial block: complete it from what the disk holds now.
      RETURN_IF_ERROR(Read(b * block_size_, block_size_, block.data()));
      uint64_t in_block = pos % block_size_;
      size_t len = std::min<uint64_t>(block_size_ - in_block, end - pos);
      std::memcpy(block.data() + in_block, data.data() + (pos - offset), len);
      RETURN_IF_ERROR(WriteBlocks(b, block, false, keep_allocated));
      pos += len;
      continue;
    }
    uint64_t run_end = std::min(chunk_end_byte, end - (end % block_size_));
    RETURN_IF_ERROR(WriteBlocks(b, data.substr(pos - offset, run_end - pos), false, keep_allocated));
    pos = run_end;
  }
  return Status::Ok();
}

Status Overlay::WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) {
  if (offset > size_ || n > size_ - offset) {
    return OutOfRange("zero at " + std::to_string(offset) + "+" + std::to_string(n) +
                      " past the end of overlay " + name_);
  }
  uint64_t pos = offset, end = offset + n;
  std::string zeros;
  while (pos < end) {
    uint64_t b = pos / block_size_;
    if (pos % block_size_ != 0 || end - pos < block_size_) {
      size_t len = std::min<uint64_t>(block_size_ - pos % block_size_, end - pos);
      RETURN_IF_ERROR(WriteRange(pos, std::string(len, '\0'), no_hole));
      pos += len;
      continue;
    }
    uint64_t chunk_end_byte = (b / kChunkBlocks + 1) * kChunkBlocks * uint64_t{block_size_};
    uint64_t run_end = std::min(chunk_end_byte, end - (end % block_size_));
    {
      std::lock_guard stripe(StripeFor(b));
      {
        std::lock_guard l(mu_);
        if (discarded_) return FailedPrecondition("overlay " + name_ + " was discarded");
      }
      const uint64_t len = run_end - pos;
      RETURN_IF_ERROR(no_hole ? data_->ZeroRange(pos, len) : data_->PunchHole(pos, len));
      RETURN_IF_ERROR(Mark(b, (run_end - pos) / block_size_, false, 0, true));
    }
    pos = run_end;
  }
  return fua ? Flush() : Status::Ok();
}

Status Overlay::Flush() {
  std::lock_guard fl(flush_mu_);
  std::vector<std::pair<BlockExtent, bool>> pending;
  int intents_taken;  // the intent file of the writes in `pending`
  {
    std::lock_guard il(intent_mu_);
    std::lock_guard l(mu_);
    if (discarded_) return FailedPrecondition("overlay " + name_ + " was discarded");
    pending.swap(pending_);
    intents_taken = active_intent_;
    active_intent_ ^= 1;
  }
  // On a failure the extents go back, so that a later flush records them.
  auto put_back = [&](const Status& s) {
    std::lock_guard l(mu_);
    pending_.insert(pending_.begin(), pending.begin(), pending.end());
    return s;
  };
  if (Status s = data_->Sync(); !s.ok()) return put_back(s);
  if (pending.empty()) return Status::Ok();
  std::string buf;
  buf.reserve(pending.size() * kLogEntrySize);
  for (const auto& [e, filled] : pending) {
    uint8_t entry[kLogEntrySize] = {};
    std::memcpy(entry, kLogMagic, 4);
    entry[4] = filled ? kKindFilled : kKindWritten;
    EncodeFixed<uint64_t>(entry + 8, e.first_block);
    EncodeFixed<uint64_t>(entry + 16, e.count);
    EncodeFixed<uint64_t>(entry + 24, Checksum64(entry, 24));
    buf.append(reinterpret_cast<const char*>(entry), kLogEntrySize);
  }
  Status s = log_->WriteAt(log_end_, buf);
  if (s.ok()) s = log_->Sync();
  if (!s.ok()) return put_back(s);
  log_end_ += buf.size();
  // Those writes are in blocks.log now: their intents can go (not synced: intents of
  // logged blocks are skipped on open).
  if (intent_end_[intents_taken] != 0) {
    RETURN_IF_ERROR(intents_[intents_taken]->Truncate(0));
    intent_end_[intents_taken] = 0;
  }
  return Status::Ok();
}

namespace {
std::vector<BlockExtent> ExtentsOf(const std::vector<uint64_t>& a, const std::vector<uint64_t>* b,
                                   uint64_t blocks) {
  std::vector<BlockExtent> out;
  for (uint64_t i = 0; i < blocks; ++i) {
    const uint64_t word = a[i >> 6] | (b ? (*b)[i >> 6] : 0);
    if ((i & 63) == 0 && word == 0) {
      i += 63;
      continue;
    }
    if (!(word >> (i & 63) & 1)) continue;
    if (!out.empty() && out.back().first_block + out.back().count == i) {
      ++out.back().count;
    } else {
      out.push_back({i, 1});
    }
  }
  return out;
}
}  // namespace

std::vector<BlockExtent> Overlay::ChangedExtents() const {
  std::lock_guard l(mu_);
  return ExtentsOf(written_, nullptr, blocks_);
}

std::vector<BlockExtent> Overlay::DifferingExtents() const {
  std::lock_guard l(mu_);
  return ExtentsOf(written_, &diverged_, blocks_);
}

uint64_t Overlay::diverged_through() const {
  std::lock_guard l(mu_);
  return diverged_through_;
}

uint64_t Overlay::changed_blocks() const {
  std::lock_guard l(mu_);
  return CountBits(written_);
}

uint64_t Overlay::present_blocks() const {
  std::lock_guard l(mu_);
  return CountBits(present_);
}

Status Overlay::Fill(std::atomic<uint64_t>* done, const std::atomic<bool>* stop) {
  const uint64_t chunks = (blocks_ + kChunkBlocks - 1) / kChunkBlocks;
  DirectBuffer buffer;
  char* const buf = buffer.Reserve(uint64_t{kChunkBlocks} * block_size_);
  uint64_t since_flush = 0;
  // Each periodic Flush runs on a helper thread while filling goes on: it waits for the disk,
  // not for the CPU. Flush takes the pending extents before it syncs, so what is filled
  // meanwhile goes to the next one. At most one runs; leaving (even on an error) waits for it.
  std::future<Status> flushing;
  auto flushed = [&]() -> Status { return flushing.valid() ? flushing.get() : Status::Ok(); };
  for (uint64_t c = 0; c < chunks; ++c) {
    if (stop->load()) return Aborted("commit of overlay " + name_ + " stopped");
    uint64_t first = c * kChunkBlocks;
    uint64_t last = std::min<uint64_t>(first + kChunkBlocks, blocks_);
    std::lock_guard stripe(StripeFor(first));
    uint64_t b = first;
    while (b < last) {
      bool present;
      const uint64_t e = RunEnd(b, last, &present);
      if (present) {
        b = e;
        continue;
      }
      std::shared_ptr<View> view;
      {
        std::lock_guard l(mu_);
        view = view_;
      }
      if (!view) return Internal("overlay " + name_ + " lost its point during commit");
      // Zero runs of the point become holes without being read.
      ASSIGN_OR_RETURN(auto extents, view->Extents(b * block_size_, (e - b) * block_size_));
      uint64_t at = b;
      for (const ViewExtent& x : extents) {
        uint64_t count = x.length / block_size_;
        if (x.zero) {
          RETURN_IF_ERROR(data_->PunchHole(at * block_size_, x.length));
          RETURN_IF_ERROR(Mark(at, count, true));
        } else {
          RETURN_IF_ERROR(view->Read(at * block_size_, x.length, buf));
          RETURN_IF_ERROR(WriteBlocks(at, std::string_view(buf, x.length), true));
          since_flush += x.length;
        }
        at += count;
      }
      b = e;
    }
    done->fetch_add(last - first);
    // Writeback of each chunk starts now, so the periodic Flush finds little left to wait for.
    data_->StartWriteback(first * block_size_, (last - first) * block_size_);
    if (since_flush >= (64u << 20)) {
      RETURN_IF_ERROR(flushed());
      flushing = std::async(std::launch::async, [this] { return Flush(); });
      since_flush = 0;
    }
  }
  RETURN_IF_ERROR(flushed());
  return Flush();
}

}  // namespace ferry::journal
