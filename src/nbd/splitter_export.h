// The source's write-splitting export: an NBD disk whose writes are captured into the
// volume's pending log before they are answered (see capture/splitter.h). Thread-safe.
#pragma once

#include "capture/splitter.h"
#include "nbd/export.h"

namespace ferry::nbd {

class SplitterExport final : public Export {
 public:
  explicit SplitterExport(std::shared_ptr<capture::Splitter> splitter) : s_(std::move(splitter)) {}
  uint64_t size() const override { return s_->size(); }
  bool read_only() const override { return false; }
  uint32_t preferred_block_size() const override { return s_->block_size(); }
  std::string description() const override { return "protected disk (writes are captured)"; }
  Status Read(uint64_t offset, size_t n, void* dst) override { return s_->Read(offset, n, dst); }
  Status Write(uint64_t offset, std::string_view data, bool fua) override {
    return s_->Write(offset, data, fua);
  }
  void WriteMany(std::span<const WriteOp> ops, std::span<Status> results) override {
    std::vector<capture::Splitter::BlockWrite> writes;
    writes.reserve(ops.size());
    for (const WriteOp& op : ops) writes.push_back({op.offset, op.data, op.fua});
    s_->WriteMany(writes, results);
  }
  Status WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) override {
    return s_->WriteZeroes(offset, n, fua, no_hole);
  }
  Status Trim(uint64_t offset, uint64_t n, bool fua) override { return s_->Trim(offset, n, fua); }
  Status Flush() override { return s_->Flush(); }

 private:
  std::shared_ptr<capture::Splitter> s_;
};

}  // namespace ferry::nbd
