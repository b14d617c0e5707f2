// Node: points in time on capture volumes — markers (crash-consistent, app-consistent with
// the freeze and thaw hooks, group-consistent under barriers) — and fencing.
#include <spdlog/spdlog.h>

#include "node/hooks.h"
#include "node/node_internal.h"

namespace ferry::node {

Result<json> Node::Mark(const std::string& name, const std::string& kind, const std::string& label) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  journal::MarkerKind k = journal::MarkerKind::kCrashConsistent;
  if (!kind.empty() && !journal::ParseMarkerKind(kind, &k)) {
    return InvalidArgument("marker kind '" + kind + "': use crash-consistent, app-consistent or group-consistent");
  }
  uint64_t seq;
  if (v->scan) {
    // A marker between cycles stands for the last cycle's state; an app-consistent one is a
    // cycle run inside the freeze and thaw hooks.
    if (k == journal::MarkerKind::kAppConsistent) return RunScan(v);
    ASSIGN_OR_RETURN(seq, v->log->Append(journal::Record::Marker(k, label)));
  } else if (k == journal::MarkerKind::kAppConsistent) {
    ASSIGN_OR_RETURN(seq, AppConsistentMarker(v, label));
  } else {
    ASSIGN_OR_RETURN(seq, v->splitter->Mark(k, label));
  }
  return json{{"volume", name}, {"seq", seq}, {"kind", std::string(journal::MarkerKindName(k))}};
}

Result<json> Node::Fence(const std::string& name) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  if (!v->splitter) {
    return FailedPrecondition("volume " + name + " is scan-captured: the node is not in its "
                              "write path and cannot fence it; shut the machine down another way");
  }
  v->splitter->Fence();
  {
    std::lock_guard l(mu_);
    if (!v->fenced) {
      v->fenced = true;
      Status stored = StoreVolume(*v);
      if (!stored.ok()) {
        v->fenced = false;
        v->splitter->Unfence();
        return stored;
      }
      spdlog::info("volume {} fenced: writes are refused", name);
    }
  }
  // After the fence: it follows every write that was answered.
  ASSIGN_OR_RETURN(uint64_t seq, v->splitter->Mark(journal::MarkerKind::kCrashConsistent, "fence"));
  return json{{"volume", name}, {"seq", seq}};
}

Status Node::Unfence(const std::string& name) {
  ASSIGN_OR_RETURN(auto v, FindVolume(name));
  if (!v->splitter) return FailedPrecondition("volume " + name + " is scan-captured: it is never fenced");
  std::lock_guard l(mu_);
  if (v->fenced) {
    v->fenced = false;
    Status stored = StoreVolume(*v);
    if (!stored.ok()) {
      v->fenced = true;
      return stored;
    }
    spdlog::info("volume {} unfenced: writes are accepted again", name);
  }
  v->splitter->Unfence();
  return Status::Ok();
}

Result<uint64_t> Node::AppConsistentMarker(const std::shared_ptr<Volume>& v, const std::string& label) {
  ProtectParams p;
  {
    std::lock_guard l(mu_);
    p = v->params;
  }
  const std::map<std::string, std::string> env = {{"FERRY_VOLUME", v->name}, {"FERRY_DISK", v->disk}};
  if (!p.freeze_command.empty()) {
    std::map<std::string, std::string> e = env;
    e["FERRY_HOOK"] = "freeze";
    Status frozen = RunHook(p.freeze_command, e, p.hook_timeout_ms);
    if (!frozen.ok()) {
      // Whatever the freeze did, thaw: a machine must never stay frozen.
      if (!p.thaw_command.empty()) {
        e["FERRY_HOOK"] = "thaw";
        Status t = RunHook(p.thaw_command, e, p.hook_timeout_ms);
        if (!t.ok()) events_.Add("error", v->name, "thaw after a failed freeze failed too: " + t.ToString() + "; check the machine and thaw it by hand");
      }
      events_.Add("warning", v->name, "no app-consistent point: the freeze hook failed: " + frozen.ToString());
      return frozen.WithContext("freeze hook");
    }
  }
  auto seq = v->splitter->Mark(journal::MarkerKind::kAppConsistent, label);
  if (!p.thaw_command.empty()) {
    std::map<std::string, std::string> e = env;
    e["FERRY_HOOK"] = "thaw";
    Status t = RunHook(p.thaw_command, e, p.hook_timeout_ms);
    if (!t.ok()) {
      events_.Add("error", v->name, "the thaw hook failed: " + t.ToString() + "; the machine may still be frozen — thaw it by hand");
    }
  }
  if (!seq.ok()) events_.Add("error", v->name, "app-consistent marker failed: " + seq.status().ToString());
  return seq;
}

Result<json> Node::BarrierHold(const std::vector<std::string>& names, int64_t timeout_ms) {
  if (names.empty()) return InvalidArgument("a barrier needs at least one volume");
  if (timeout_ms < 1 || timeout_ms > 60'000) {
    return InvalidArgument("timeout_ms " + std::to_string(timeout_ms) + " must be 1..60000");
  }
  Barrier b;
  for (const std::string& n : names) {
    ASSIGN_OR_RETURN(auto v, FindVolume(n));
    if (!v->splitter) {
      return FailedPrecondition("volume " + n + " is scan-captured: its writes cannot be held; "
                                "consistency groups need splitter volumes");
    }
    b.volumes.push_back(v);
  }
  b.deadline_ns = SystemClock::Default()->NowNanos() + timeout_ms * 1'000'000;
  std::lock_guard l(mu_);
  for (auto& v : b.volumes) v->splitter->HoldAcks();
  const std::string id = "barrier-" + std::to_string(next_barrier_++);
  barriers_[id] = std::move(b);
  return json{{"id", id}, {"volumes", names}, {"timeout_ms", timeout_ms}};
}

Result<json> Node::BarrierMark(const std::string& id, const std::string& marker_id,
                               const std::string& group_id, const std::string& label) {
  journal::Id128 mid{}, gid{};
  if (!journal::IdFromHex(marker_id, &mid)) return InvalidArgument("marker_id: give 32 hex digits");
  if (!journal::IdFromHex(group_id, &gid)) return InvalidArgument("group_id: give 32 hex digits");
  std::lock_guard l(mu_);
  auto it = barriers_.find(id);
  if (it == barriers_.end()) {
    return NotFound("no barrier " + id + " is held (it expired or was released); hold a new one");
  }
  json seqs = json::object();
  for (auto& v : it->second.volumes) {
    ASSIGN_OR_RETURN(uint64_t seq, v->splitter->Mark(journal::MarkerKind::kGroupConsistent, label, mid, gid));
    seqs[v->name] = seq;
  }
  it->second.marked = true;
  return json{{"id", id}, {"seqs", seqs}};
}

Status Node::BarrierRelease(const std::string& id) {
  std::lock_guard l(mu_);
  auto it = barriers_.find(id);
  if (it == barriers_.end()) return NotFound("no barrier " + id + " is held");
  for (auto& v : it->second.volumes) v->splitter->ReleaseAcks();
  barriers_.erase(it);
  return Status::Ok();
}

void Node::ExpireBarriers(int64_t now) {
  for (auto it = barriers_.begin(); it != barriers_.end();) {
    if (now < it->second.deadline_ns) {
      ++it;
      continue;
    }
    for (auto& v : it->second.volumes) v->splitter->ReleaseAcks();
    events_.Add("warning", "", "barrier " + it->first + " was not released in time; the node released it" +
                                   (it->second.marked ? "" : " without a marker"));
    it = barriers_.erase(it);
  }
}

}  // namespace ferry::node
