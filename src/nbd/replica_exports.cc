#include "nbd/replica_exports.h"

#include "base/clock.h"

namespace ferry::nbd {

Result<std::vector<Extent>> ViewExport::BlockStatus(uint64_t offset, uint64_t n) {
  ASSIGN_OR_RETURN(auto extents, view_->Extents(offset, n));
  std::vector<Extent> out;
  out.reserve(extents.size());
  for (const auto& e : extents) out.push_back(Extent{e.length, e.hole, e.zero});
  return out;
}

Result<std::shared_ptr<Export>> ReplicaCatalog::Find(const std::string& name) {
  if (name.empty()) {
    if (default_) return default_;
    return NotFound("no default export; name a point as @latest, @SEQ, @TIME or an overlay as overlay/NAME");
  }
  if (name.rfind("overlay/", 0) == 0) {
    ASSIGN_OR_RETURN(auto overlay, replica_->GetOverlay(name.substr(8)));
    return std::shared_ptr<Export>(std::make_shared<OverlayExport>(overlay));
  }
  if (name[0] == '@') {
    ASSIGN_OR_RETURN(auto spec, journal::PointSpec::Parse(name.substr(1)));
    ASSIGN_OR_RETURN(auto point, replica_->ResolvePoint(spec));
    std::lock_guard l(mu_);
    if (auto existing = views_[point.seq].lock()) return existing;
    ASSIGN_OR_RETURN(auto view, replica_->OpenView(point.seq));
    auto e = std::shared_ptr<Export>(std::make_shared<ViewExport>(
        view, "recovery point seq " + std::to_string(point.seq) + " (" + FormatTime(point.timestamp_ns) + ")"));
    views_[point.seq] = e;
    return e;
  }
  return NotFound("unknown export '" + name +
                  "': use '' (default), @POINT (e.g. @latest, @latest-app-consistent, @1234) or "
                  "overlay/NAME");
}

std::vector<std::pair<std::string, std::string>> ReplicaCatalog::List() {
  std::vector<std::pair<std::string, std::string>> out;
  if (default_) out.push_back({"", default_->description()});
  out.push_back({"@latest", "the newest recovery point"});
  for (const auto& name : replica_->ListOverlays()) out.push_back({"overlay/" + name, "overlay " + name});
  return out;
}

}  // namespace ferry::nbd
