#include "nbd/memory_export.h"

#include <algorithm>
#include <cstring>
#include <mutex>

namespace ferry::nbd {

Status MemoryExport::CheckRange(uint64_t offset, uint64_t n) const {
  if (offset > disk_.size() || n > disk_.size() - offset) {
    return OutOfRange("range " + std::to_string(offset) + "+" + std::to_string(n) + " is past the end (" +
                      std::to_string(disk_.size()) + " bytes)");
  }
  return Status::Ok();
}

Status MemoryExport::CheckWritable(uint64_t offset, uint64_t n) const {
  if (read_only_) return FailedPrecondition("export is read-only");
  return CheckRange(offset, n);
}

Status MemoryExport::Read(uint64_t offset, size_t n, void* dst) {
  RETURN_IF_ERROR(CheckRange(offset, n));
  std::shared_lock l(mu_);
  if (n) std::memcpy(dst, disk_.data() + offset, n);
  return Status::Ok();
}

Status MemoryExport::Write(uint64_t offset, std::string_view data, bool fua) {
  RETURN_IF_ERROR(CheckWritable(offset, data.size()));
  std::unique_lock l(mu_);
  disk_.replace(offset, data.size(), data);
  return Status::Ok();
}

Status MemoryExport::WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) {
  RETURN_IF_ERROR(CheckWritable(offset, n));
  std::unique_lock l(mu_);
  std::fill_n(disk_.begin() + static_cast<ptrdiff_t>(offset), n, '\0');
  if (n == 0) return Status::Ok();
  if (no_hole) {
    std::fill(provisioned_.begin() + static_cast<ptrdiff_t>(offset / kBlock),
              provisioned_.begin() + static_cast<ptrdiff_t>((offset + n - 1) / kBlock + 1), true);
  } else if (const uint64_t first = (offset + kBlock - 1) / kBlock, end = (offset + n) / kBlock; first < end) {
    std::fill(provisioned_.begin() + static_cast<ptrdiff_t>(first),
              provisioned_.begin() + static_cast<ptrdiff_t>(end), false);
  }
  return Status::Ok();
}

Status MemoryExport::Flush() {
  flushes_.fetch_add(1);
  return Status::Ok();
}

Result<std::vector<Extent>> MemoryExport::BlockStatus(uint64_t offset, uint64_t n) {
  RETURN_IF_ERROR(CheckRange(offset, n));
  const uint64_t bs = preferred_block_size();
  std::vector<Extent> out;
  std::shared_lock l(mu_);
  for (uint64_t at = offset, end = offset + n; at < end;) {
    uint64_t next = std::min(end, (at / bs + 1) * bs);
    bool zero = std::all_of(disk_.begin() + static_cast<ptrdiff_t>(at),
                            disk_.begin() + static_cast<ptrdiff_t>(next), [](char c) { return c == 0; });
    bool hole = zero && !provisioned_[at / bs];
    if (!out.empty() && out.back().zero == zero && out.back().hole == hole) {
      out.back().length += next - at;
    } else {
      out.push_back(Extent{next - at, hole, zero});
    }
    at = next;
  }
  return out;
}

std::string MemoryExport::contents() const {
  std::shared_lock l(mu_);
  return disk_;
}

Result<std::shared_ptr<Export>> MemoryCatalog::Find(const std::string& name) {
  auto it = exports_.find(name);
  if (it == exports_.end()) return NotFound("no export named '" + name + "'");
  return it->second;
}

std::vector<std::pair<std::string, std::string>> MemoryCatalog::List() {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, e] : exports_) out.push_back({name, e->description()});
  return out;
}

}  // namespace ferry::nbd
