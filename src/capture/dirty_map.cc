#include "capture/dirty_map.h"

#include <bit>

#include "base/checksum.h"
#include "base/coding.h"
#include "capture/splitter.h"
#include "journal/replica.h"

namespace ferry::capture {

namespace {
constexpr uint32_t kMagic = 0x4D445246;  // "FRDM"
constexpr size_t kHeader = 40;
}  // namespace

DirtyMap::DirtyMap(Env* env, std::string path, uint64_t volume_size, uint64_t chunk)
    : env_(env), path_(std::move(path)), volume_size_(volume_size), chunk_(chunk) {
  chunks_ = (volume_size + chunk_ - 1) / chunk_;
  bits_.assign((chunks_ + 63) / 64, 0);
}

Result<std::unique_ptr<DirtyMap>> DirtyMap::Open(Env* env, const std::string& path, uint64_t volume_size,
                                                 uint64_t chunk) {
  if (!env->Exists(path)) return std::unique_ptr<DirtyMap>(new DirtyMap(env, path, volume_size, chunk));
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(env, path));
  const auto* p = reinterpret_cast<const uint8_t*>(text.data());
  // The file's own chunk size counts (a power of two from 512 bytes to 1 MiB).
  const uint64_t file_chunk = text.size() >= kHeader ? DecodeFixed<uint64_t>(p + 8) : 0;
  if (file_chunk < 512 || file_chunk > (1u << 20) || !std::has_single_bit(file_chunk)) {
    return DataLoss(path + ": damaged dirty map (size, header or checksum)");
  }
  std::unique_ptr<DirtyMap> m(new DirtyMap(env, path, volume_size, file_chunk));
  const size_t want = kHeader + m->bits_.size() * 8 + 8;
  if (text.size() != want || DecodeFixed<uint32_t>(p) != kMagic || DecodeFixed<uint32_t>(p + 4) != 1 ||
      DecodeFixed<uint64_t>(p + 16) != volume_size ||
      DecodeFixed<uint64_t>(p + want - 8) != Checksum64(p, want - 8)) {
    return DataLoss(path + ": damaged dirty map (size, header or checksum)");
  }
  const uint8_t phase = p[24];
  if (phase > 2) return DataLoss(path + ": unknown resync phase");
  m->phase_ = static_cast<Phase>(phase);
  m->consistent_from_ = DecodeFixed<uint64_t>(p + 32);
  for (size_t i = 0; i < m->bits_.size(); ++i) m->bits_[i] = DecodeFixed<uint64_t>(p + kHeader + i * 8);
  return m;
}

void DirtyMap::Set(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  std::lock_guard l(mu_);
  for (uint64_t c = offset / chunk_; c <= (offset + length - 1) / chunk_ && c < chunks_; ++c) {
    bits_[c / 64] |= uint64_t{1} << (c % 64);
  }
}

void DirtyMap::SetAll() { Set(0, volume_size_); }

void DirtyMap::Clear(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  std::lock_guard l(mu_);
  // Only chunks wholly inside the range are clean now.
  uint64_t first = (offset + chunk_ - 1) / chunk_;
  uint64_t end = std::min(chunks_, (offset + length) / chunk_ + ((offset + length) >= volume_size_ ? 1 : 0));
  for (uint64_t c = first; c < end; ++c) bits_[c / 64] &= ~(uint64_t{1} << (c % 64));
}

std::optional<std::pair<uint64_t, uint64_t>> DirtyMap::NextDirty(uint64_t offset, uint64_t max_length) const {
  std::lock_guard l(mu_);
  uint64_t c = offset / chunk_;
  while (c < chunks_ && !(bits_[c / 64] >> (c % 64) & 1)) {
    if (c % 64 == 0 && bits_[c / 64] == 0) {
      c += 64;
    } else {
      ++c;
    }
  }
  if (c >= chunks_) return std::nullopt;
  uint64_t e = c + 1;
  const uint64_t max_chunks = std::max<uint64_t>(1, max_length / chunk_);
  while (e < chunks_ && e - c < max_chunks && (bits_[e / 64] >> (e % 64) & 1)) ++e;
  const uint64_t start = c * chunk_;
  return std::make_pair(start, std::min(e * chunk_, volume_size_) - start);
}

bool DirtyMap::Empty() const {
  std::lock_guard l(mu_);
  for (uint64_t w : bits_) {
    if (w) return false;
  }
  return true;
}

uint64_t DirtyMap::DirtyBytes() const {
  std::lock_guard l(mu_);
  uint64_t n = 0;
  for (uint64_t w : bits_) n += static_cast<uint64_t>(std::popcount(w));
  return n * chunk_;
}

DirtyMap::Phase DirtyMap::phase() const {
  std::lock_guard l(mu_);
  return phase_;
}

uint64_t DirtyMap::consistent_from() const {
  std::lock_guard l(mu_);
  return consistent_from_;
}

void DirtyMap::SetPhase(Phase phase, uint64_t consistent_from) {
  std::lock_guard l(mu_);
  phase_ = phase;
  consistent_from_ = consistent_from;
}

void DirtyMap::SetRuns(const std::vector<std::pair<uint64_t, uint64_t>>& block_runs, uint32_t block_size) {
  for (auto [first, count] : block_runs) Set(first * block_size, count * block_size);
}

Status DirtyMap::Remove() {
  if (!env_->Exists(path_)) return Status::Ok();
  RETURN_IF_ERROR(env_->RemoveFile(path_));
  return env_->SyncDir(DirName(path_));
}

Status DirtyMap::Save() {
  std::string out;
  {
    std::lock_guard l(mu_);
    AppendFixed<uint32_t>(&out, kMagic);
    AppendFixed<uint32_t>(&out, 1);
    AppendFixed<uint64_t>(&out, chunk_);
    AppendFixed<uint64_t>(&out, volume_size_);
    out.push_back(static_cast<char>(phase_));
    out.append(7, '\0');
    AppendFixed<uint64_t>(&out, consistent_from_);
    for (uint64_t w : bits_) AppendFixed<uint64_t>(&out, w);
  }
  AppendFixed<uint64_t>(&out, Checksum64(out.data(), out.size()));
  return WriteFileAtomically(env_, path_, out);
}

Result<uint64_t> DropToDirtyMap(Splitter& splitter, journal::Replica& log, DirtyMap& map, uint64_t acked) {
  const uint64_t before = log.Stats().journal_bytes;
  ASSIGN_OR_RETURN(uint64_t through, splitter.Checkpoint());
  if (acked < through) {
    // Every block a held record touched (a superset of the unacknowledged ones).
    map.SetRuns(log.JournaledBlockRuns(), log.block_size());
    RETURN_IF_ERROR(map.Save());
  }
  RETURN_IF_ERROR(log.DiscardThrough(through));
  return before;
}

}  // namespace ferry::capture
