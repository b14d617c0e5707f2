// MemoryExport: an Export held in RAM, and MemoryCatalog, a fixed set of named exports. For
// tests, the session fuzzer and demos: the server's behaviour with a disk that cannot fail.
//
// MemoryExport reports block status per preferred block: an all-zero block is a hole reading
// as zeros, unless a zeroing with no_hole provisioned it since (then it is data reading as
// zeros); anything else is data. Trim zeroes the range and, like a zeroing without no_hole,
// unprovisions the blocks it covers wholly. Errors: kOutOfRange for ranges past the end,
// kFailedPrecondition for writes to a read-only export.
// Thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <shared_mutex>

#include "nbd/export.h"

namespace ferry::nbd {

class MemoryExport final : public Export {
 public:
  MemoryExport(std::string contents, bool read_only, std::string description = {})
      : disk_(std::move(contents)),
        provisioned_((disk_.size() + kBlock - 1) / kBlock, false),
        read_only_(read_only),
        description_(std::move(description)) {}
  uint64_t size() const override { return disk_.size(); }
  bool read_only() const override { return read_only_; }
  std::string description() const override { return description_; }
  Status Read(uint64_t offset, size_t n, void* dst) override;
  Status Write(uint64_t offset, std::string_view data, bool fua) override;
  Status WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) override;
  Status Trim(uint64_t offset, uint64_t n, bool fua) override { return WriteZeroes(offset, n, fua, false); }
  Status Flush() override;
  Result<std::vector<Extent>> BlockStatus(uint64_t offset, uint64_t n) override;

  // A copy of the whole disk, and how many flushes it has seen (both for tests).
  std::string contents() const;
  uint64_t flushes() const { return flushes_.load(); }

 private:
  Status CheckRange(uint64_t offset, uint64_t n) const;
  Status CheckWritable(uint64_t offset, uint64_t n) const;

  static constexpr uint64_t kBlock = 4096;  // the preferred block size
  mutable std::shared_mutex mu_;
  std::string disk_;  // size fixed at construction
  std::vector<bool> provisioned_;  // per block: zeroed with no_hole since its last trim
  const bool read_only_;
  const std::string description_;
  std::atomic<uint64_t> flushes_{0};
};

class MemoryCatalog final : public ExportCatalog {
 public:
  void Add(const std::string& name, std::shared_ptr<Export> e) { exports_[name] = std::move(e); }
  Result<std::shared_ptr<Export>> Find(const std::string& name) override;
  std::vector<std::pair<std::string, std::string>> List() override;

 private:
  std::map<std::string, std::shared_ptr<Export>> exports_;  // filled before serving
};

}  // namespace ferry::nbd
