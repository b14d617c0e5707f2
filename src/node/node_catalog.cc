// Node::Catalog: what the node's NBD server serves under each export name.
#include "nbd/splitter_export.h"
#include "node/node_internal.h"

namespace ferry::node {

namespace {

Result<std::shared_ptr<nbd::Export>> SplitterExportOf(const std::string& name,
                                                      const std::shared_ptr<capture::Splitter>& s) {
  if (!s) {
    return NotFound("volume " + name + " is scan-captured: it has no NBD export (the machine "
                    "writes to its own disk)");
  }
  return std::shared_ptr<nbd::Export>(std::make_shared<nbd::SplitterExport>(s));
}

}  // namespace

Result<std::shared_ptr<nbd::Export>> Node::Catalog::Find(const std::string& name) {
  if (auto v = node_->FindVolume(name); v.ok()) return SplitterExportOf(name, (*v)->splitter);
  {
    std::lock_guard l(mu_);
    if (auto it = pending_.find(name); it != pending_.end()) {
      return std::shared_ptr<nbd::Export>(it->second);
    }
  }
  if (auto v = node_->FindVolumeByAlias(name)) return SplitterExportOf(v->name, v->splitter);
  size_t at = name.find('@');
  size_t ov = name.find("/overlay/");
  std::string replica, rest;
  if (at != std::string::npos && (ov == std::string::npos || at < ov)) {
    replica = name.substr(0, at);
    rest = name.substr(at);
  } else if (ov != std::string::npos) {
    replica = name.substr(0, ov);
    rest = name.substr(ov + 1);
  } else {
    return NotFound("no export '" + name + "' on node " + node_->config_.name +
                    ": name a capture volume, REPLICA@POINT or REPLICA/overlay/NAME");
  }
  ASSIGN_OR_RETURN(auto r, node_->replicas_.Find(replica));
  if (rest.rfind("overlay/", 0) == 0) {
    ASSIGN_OR_RETURN(auto e, OverlayExport(r, rest.substr(8)));
    return std::shared_ptr<nbd::Export>(e);
  }
  std::shared_ptr<nbd::ReplicaCatalog> cat;
  {
    std::lock_guard l(mu_);
    auto& c = catalogs_[journal::IdToHex(r->volume_id())];
    if (!c) c = std::make_shared<nbd::ReplicaCatalog>(r, nullptr);
    cat = c;
  }
  return cat->Find(rest);
}

std::vector<std::pair<std::string, std::string>> Node::Catalog::List() {
  std::vector<std::pair<std::string, std::string>> out;
  std::lock_guard l(node_->mu_);
  for (const auto& [name, v] : node_->volumes_) {
    if (!v->splitter) continue;
    out.push_back({name, "capture volume " + v->disk});
    for (const std::string& a : v->aliases) out.push_back({a, "capture volume " + name + " (promoted)"});
  }
  return out;
}

Result<std::shared_ptr<nbd::ForwardingExport>> Node::Catalog::OverlayExport(
    const std::shared_ptr<journal::Replica>& replica, const std::string& overlay) {
  ASSIGN_OR_RETURN(auto o, replica->GetOverlay(overlay));
  const std::string key = journal::IdToHex(replica->volume_id()) + "/overlay/" + overlay;
  std::lock_guard l(mu_);
  SharedOverlay& shared = overlays_[key];
  if (auto e = shared.export_.lock(); e && shared.overlay.lock() == o) return e;
  auto e = std::make_shared<nbd::ForwardingExport>(std::make_shared<nbd::OverlayExport>(o));
  shared = SharedOverlay{e, o};
  return e;
}

void Node::Catalog::BeginAliases(const std::vector<std::string>& names,
                                 std::shared_ptr<nbd::ForwardingExport> e) {
  std::lock_guard l(mu_);
  for (const std::string& n : names) pending_[n] = e;
}

void Node::Catalog::EndAliases(const std::vector<std::string>& names) {
  std::lock_guard l(mu_);
  for (const std::string& n : names) pending_.erase(n);
}

void Node::Catalog::ForgetReplica(const std::string& volume_id, const nbd::Export* keep) {
  std::vector<std::shared_ptr<nbd::ForwardingExport>> orphans;
  {
    std::lock_guard l(mu_);
    catalogs_.erase(volume_id);
    const std::string prefix = volume_id + "/overlay/";
    for (auto it = overlays_.lower_bound(prefix);
         it != overlays_.end() && it->first.rfind(prefix, 0) == 0;) {
      if (auto e = it->second.export_.lock(); e && e.get() != keep) orphans.push_back(e);
      it = overlays_.erase(it);
    }
  }
  // Outside the lock: a hold waits for the sessions' calls in progress.
  for (auto& e : orphans) {
    auto hold = e->Hold();
    (void)e->Replace(std::make_shared<nbd::UnavailableExport>(
                         e->size(), "the replica of this overlay was deleted on this node"),
                     hold);
  }
}

Result<std::shared_ptr<nbd::Export>> Node::Export(const std::string& name) {
  return catalog_->Find(name);
}

}  // namespace ferry::node
