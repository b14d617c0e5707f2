// Node: points in time on capture volumes — markers (crash-consistent, app-consistent with
// the freeze and thaw hooks, group-consistent under barriers) — and fencing.
#include <spdlog/spdlog.h>

#include <set>

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

Result<std::vector<Node::HookRun>> Node::Freeze(const std::vector<std::shared_ptr<Volume>>& volumes) {
  std::vector<HookRun> thaws;
  std::set<std::string> seen;
  for (const auto& v : volumes) {
    ProtectParams p;
    {
      std::lock_guard l(mu_);
      p = v->params;
    }
    // A machine's disks share its hooks, and freezing a file system twice fails: a command
    // runs once per request, for the first volume that has it.
    if (!seen.insert(p.freeze_command + '\n' + p.thaw_command).second) continue;
    std::map<std::string, std::string> env = {{"FERRY_VOLUME", v->name}, {"FERRY_DISK", v->disk}};
    HookRun thaw{v->name, p.thaw_command, env, p.hook_timeout_ms};
    thaw.env["FERRY_HOOK"] = "thaw";
    if (!p.freeze_command.empty()) {
      env["FERRY_HOOK"] = "freeze";
      Status frozen = RunHook(p.freeze_command, env, p.hook_timeout_ms);
      if (!frozen.ok()) {
        // Whatever the freeze did, thaw: a machine must never stay frozen.
        thaws.push_back(std::move(thaw));
        Thaw(thaws);
        events_.Add("warning", v->name, "no app-consistent point: the freeze hook failed: " + frozen.ToString());
        return frozen.WithContext("freeze hook");
      }
    }
    thaws.push_back(std::move(thaw));
  }
  return thaws;
}

void Node::Thaw(const std::vector<HookRun>& thaws) {
  for (const HookRun& h : thaws) {
    if (h.command.empty()) continue;
    Status t = RunHook(h.command, h.env, h.timeout_ms);
    if (!t.ok()) {
      events_.Add("error", h.volume, "the thaw hook failed: " + t.ToString() + "; the machine may still be frozen — thaw it by hand");
    }
  }
}

Result<uint64_t> Node::AppConsistentMarker(const std::shared_ptr<Volume>& v, const std::string& label) {
  ASSIGN_OR_RETURN(auto thaws, Freeze({v}));
  auto seq = v->splitter->Mark(journal::MarkerKind::kAppConsistent, label);
  Thaw(thaws);
  if (!seq.ok()) events_.Add("error", v->name, "app-consistent marker failed: " + seq.status().ToString());
  return seq;
}

Result<json> Node::BarrierHold(const std::vector<std::string>& names, int64_t timeout_ms, bool app_consistent) {
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
  if (app_consistent) {
    // app_running keeps the volume's own scheduled app-consistent markers (and their freeze
    // hooks) out until the thaw.
    {
      std::lock_guard l(mu_);
      for (auto& v : b.volumes) {
        if (v->app_running) {
          return Aborted("volume " + v->name + " is taking an app-consistent marker of its own; try again");
        }
      }
      for (auto& v : b.volumes) v->app_running = true;
    }
    b.app_consistent = true;
    auto thaws = Freeze(b.volumes);
    if (!thaws.ok()) {
      std::lock_guard l(mu_);
      for (auto& v : b.volumes) v->app_running = false;
      return thaws.status();
    }
    b.thaws = std::move(*thaws);
  }
  // The timeout counts from the hold: the freeze hooks may take a while.
  b.deadline_ns = SystemClock::Default()->NowNanos() + timeout_ms * 1'000'000;
  std::lock_guard l(mu_);
  for (auto& v : b.volumes) v->splitter->HoldAcks();
  const std::string id = "barrier-" + std::to_string(next_barrier_++);
  barriers_[id] = std::move(b);
  return json{{"id", id}, {"volumes", names}, {"timeout_ms", timeout_ms}, {"app_consistent", app_consistent}};
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
  Barrier b;
  {
    std::lock_guard l(mu_);
    auto it = barriers_.find(id);
    if (it == barriers_.end()) return NotFound("no barrier " + id + " is held");
    for (auto& v : it->second.volumes) v->splitter->ReleaseAcks();
    b = std::move(it->second);
    barriers_.erase(it);
  }
  EndBarrier(b);
  return Status::Ok();
}

void Node::EndBarrier(Barrier& b) {
  if (!b.app_consistent) return;
  Thaw(b.thaws);
  std::lock_guard l(mu_);
  for (auto& v : b.volumes) v->app_running = false;
}

std::vector<Node::Barrier> Node::ExpireBarriers(int64_t now) {
  std::vector<Barrier> expired;
  for (auto it = barriers_.begin(); it != barriers_.end();) {
    if (now < it->second.deadline_ns) {
      ++it;
      continue;
    }
    for (auto& v : it->second.volumes) v->splitter->ReleaseAcks();
    events_.Add("warning", "", "barrier " + it->first + " was not released in time; the node released it" +
                                   (it->second.marked ? "" : " without a marker"));
    expired.push_back(std::move(it->second));
    it = barriers_.erase(it);
  }
  return expired;
}

}  // namespace ferry::node
