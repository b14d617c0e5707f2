// Exports over the replica engine: a read-only View at a recovery point, and a read-write
// Overlay (failover, test failover). And a catalog that serves one replica:
//   ""               the default export chosen when serving (a point or an overlay)
//   "@POINT"         a view at POINT: latest, latest-app-consistent, SEQ, TIME, marker:ID
//   "overlay/NAME"   an existing overlay, read-write
// Thread-safe.
#pragma once

#include <map>
#include <mutex>

#include "journal/overlay.h"
#include "journal/replica.h"
#include "journal/view.h"
#include "nbd/export.h"

namespace ferry::nbd {

class ViewExport final : public Export {
 public:
  explicit ViewExport(std::shared_ptr<journal::View> view, std::string description = {})
      : view_(std::move(view)), description_(std::move(description)) {}
  uint64_t size() const override { return view_->size(); }
  bool read_only() const override { return true; }
  uint32_t preferred_block_size() const override { return view_->block_size(); }
  std::string description() const override { return description_; }
  Status Read(uint64_t offset, size_t n, void* dst) override { return view_->Read(offset, n, dst); }
  Status Write(uint64_t, std::string_view, bool) override { return ReadOnly(); }
  Status WriteZeroes(uint64_t, uint64_t, bool, bool) override { return ReadOnly(); }
  Status Trim(uint64_t, uint64_t, bool) override { return ReadOnly(); }
  Status Flush() override { return Status::Ok(); }
  Result<std::vector<Extent>> BlockStatus(uint64_t offset, uint64_t n) override;

 private:
  static Status ReadOnly() { return FailedPrecondition("a recovery point is read-only"); }
  std::shared_ptr<journal::View> view_;
  std::string description_;
};

class OverlayExport final : public Export {
 public:
  explicit OverlayExport(std::shared_ptr<journal::Overlay> overlay) : overlay_(std::move(overlay)) {}
  uint64_t size() const override { return overlay_->size(); }
  bool read_only() const override { return false; }
  uint32_t preferred_block_size() const override { return overlay_->block_size(); }
  std::string description() const override {
    return "overlay " + overlay_->name() + " over seq " + std::to_string(overlay_->point());
  }
  Status Read(uint64_t offset, size_t n, void* dst) override { return overlay_->Read(offset, n, dst); }
  Status Write(uint64_t offset, std::string_view data, bool fua) override {
    return overlay_->Write(offset, data, fua);
  }
  Status WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) override {
    return overlay_->WriteZeroes(offset, n, fua, no_hole);
  }
  Status Trim(uint64_t offset, uint64_t n, bool fua) override { return overlay_->Trim(offset, n, fua); }
  Status Flush() override { return overlay_->Flush(); }

 private:
  std::shared_ptr<journal::Overlay> overlay_;
};

class ReplicaCatalog final : public ExportCatalog {
 public:
  // default_export: the export "" serves (may be null: then "" is unknown).
  ReplicaCatalog(std::shared_ptr<journal::Replica> replica, std::shared_ptr<Export> default_export)
      : replica_(std::move(replica)), default_(std::move(default_export)) {}
  Result<std::shared_ptr<Export>> Find(const std::string& name) override;
  std::vector<std::pair<std::string, std::string>> List() override;

 private:
  std::shared_ptr<journal::Replica> replica_;
  std::shared_ptr<Export> default_;
  std::mutex mu_;
  std::map<uint64_t, std::weak_ptr<Export>> views_;  // reuse open views by seq
};

}  // namespace ferry::nbd
