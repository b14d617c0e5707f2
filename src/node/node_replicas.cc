// Node: the replica commands (target role): prepare, points, views, overlays, commit,
// promote and removal.
#include <spdlog/spdlog.h>

#include "journal/overlay.h"
#include "journal/points.h"
#include "node/node_internal.h"
#include "nbd/splitter_export.h"
#include "node/promotion.h"

namespace ferry::node {

Result<json> Node::PrepareReplica(const std::string& name, const std::string& volume_id,
                                  const std::string& history_id, uint64_t size,
                                  uint32_t block_size, uint64_t first_seq, const std::string& seed_arg,
                                  const std::string& seed_volume) {
  std::string seed = seed_arg;
  if (!ValidName(name)) return InvalidArgument("replica name '" + name + "': use letters, digits, '-', '_' and '.'");
  journal::CreateParams p;
  if (!journal::IdFromHex(volume_id, &p.volume_id)) return InvalidArgument("volume_id: give 32 hex digits");
  if (!journal::HistoryIdFromHex(history_id, &p.history_id)) {
    return InvalidArgument("history_id: give up to 16 hex digits");
  }
  if (first_seq == 0) return InvalidArgument("first_seq: the source's next seq (its log_last_seq + 1)");
  if (!seed.empty() && seed[0] != '/') return InvalidArgument("seed: give an absolute path");
  // Seeding from a capture volume of this node (reprotect, failback): its disk is the seed,
  // and what it wrote that the other side may lack becomes the seed's known changes
  // (docs/protocols/link.md, "Known changes"). The volume is fenced first, so nothing it
  // writes afterwards is missed, and removed once the replica holds the seed.
  std::shared_ptr<Volume> old;
  bool fenced_here = false;  // to undo on failure (a volume fenced before stays fenced)
  std::optional<link::SeedChanges> changes;
  if (!seed_volume.empty()) {
    auto found = FindVolume(seed_volume);
    if (!found.ok()) {
      // Removed by an earlier attempt that did not finish: its disk is still a good seed.
      if (seed.empty()) {
        return NotFound("seed_volume " + seed_volume + " is not on this node; give its disk as seed");
      }
      spdlog::info("replica {}: seed volume {} is gone already; the seeded sync will compare digests",
                   name, seed_volume);
    } else {
      old = *found;
      if (seed.empty()) seed = old->disk;
      if (seed != old->disk) {
        return InvalidArgument("seed " + seed + " is not the disk of seed_volume " + seed_volume + " (" +
                               old->disk + ")");
      }
      if (old->protect && old->link_state != "stopped") {
        return FailedPrecondition("seed_volume " + seed_volume + " is protected; stop its link first");
      }
      if (old->splitter) {
        fenced_here = !old->splitter->fenced();
        old->splitter->Fence();
        link::SeedChanges c;
        c.volume_id = journal::IdToHex(old->log->volume_id());
        c.history_id = journal::HistoryIdToHex(old->log->history_id());
        // Every write with seq >= from_seq is in runs: the records the target has not
        // acknowledged (those it has are in its history, where the other side's known changes
        // find them). Records dropped to the changed-block map leave a gap whose start is not
        // kept (its bits are cleared only once rewritten as records): then coverage is unknown (0).
        const bool dropped = !old->dirty->Empty();
        const uint64_t acked = old->sender ? old->sender->status().acked_seq : old->acked_at_stop;
        const uint64_t from = std::max(old->log->Stats().oldest_point + 1, acked + 1);
        c.from_seq = dropped ? 0 : from;
        c.block_size = old->log->block_size();
        c.runs = old->log->JournaledBlockRuns(from - 1);
        changes = std::move(c);
      }  // a scan-captured disk changes between scans, unlogged: no known changes
    }
  }
  p.size = size;
  p.block_size = block_size;
  p.first_seq = first_seq;
  p.seed_path = seed;
  auto prepared = replicas_.Prepare(name, p);
  if (!prepared.ok()) {
    if (fenced_here) old->splitter->Unfence();
    return prepared.status();
  }
  const std::shared_ptr<journal::Replica> r = *prepared;
  if (changes) {
    Status w = link::ReplicaStore::WriteSeedChanges(r->env(), r->dir(), *changes);
    if (!w.ok()) {
      spdlog::warn("replica {}: keeping the seed's known changes failed ({}); the seeded sync will "
                   "compare digests", name, w.ToString());
      changes.reset();
    }
  }
  if (old) {
    Status removed = RemoveVolume(seed_volume);
    if (!removed.ok()) {
      return removed.WithContext("replica " + name + " was prepared from the disk of volume " + seed_volume +
                                 ", but removing the volume failed; remove it (DELETE /v1/volumes/" +
                                 seed_volume + ")");
    }
    spdlog::info("volume {} removed: its disk {} seeds replica {}", seed_volume, seed, name);
  }
  json out = {{"name", name}, {"volume_id", volume_id}, {"seeded", !seed.empty()},
              {"initial_sync", r->GetInitialSync().running}};
  if (changes) {
    uint64_t blocks = 0;
    for (auto [first, count] : changes->runs) blocks += count;
    out["seed_changes"] = {{"from_seq", changes->from_seq}, {"bytes", blocks * changes->block_size}};
  }
  return out;
}

Result<json> Node::ListPoints(const std::string& replica, const std::string& kind, size_t limit,
                              uint64_t before_seq) {
  ASSIGN_OR_RETURN(auto r, replicas_.Find(replica));
  journal::PointFilter f;
  f.limit = limit;
  f.before_seq = before_seq;
  if (!kind.empty()) {
    journal::MarkerKind k;
    if (!journal::ParseMarkerKind(kind, &k)) {
      return InvalidArgument("kind '" + kind + "': use crash-consistent, app-consistent or group-consistent");
    }
    f.kind = k;
  }
  ASSIGN_OR_RETURN(auto page, r->ListPoints(f));
  json points = json::array();
  for (const auto& p : page.points) {
    points.push_back({{"seq", p.seq},
                      {"time", FormatTime(p.timestamp_ns)},
                      {"kind", std::string(journal::MarkerKindName(p.marker.kind))},
                      {"label", p.marker.label}});
  }
  return json{{"points", points}, {"next_token", page.next_token}};
}

Result<json> Node::OpenView(const std::string& replica, const std::string& point) {
  ASSIGN_OR_RETURN(auto r, replicas_.Find(replica));
  ASSIGN_OR_RETURN(auto spec, journal::PointSpec::Parse(point.empty() ? "latest" : point));
  ASSIGN_OR_RETURN(auto p, r->ResolvePoint(spec));
  const std::string name = replica + "@" + std::to_string(p.seq);
  // Opening through the catalog keeps the view for the NBD clients that come.
  ASSIGN_OR_RETURN(auto e, catalog_->Find(name));
  (void)e;
  return json{{"export", name}, {"seq", p.seq}, {"time", FormatTime(p.timestamp_ns)},
              {"uri", ExportUri(name)}};
}

Result<json> Node::CreateOverlay(const std::string& replica, const std::string& overlay,
                                 const std::string& point) {
  ASSIGN_OR_RETURN(auto r, replicas_.Find(replica));
  ASSIGN_OR_RETURN(auto spec, journal::PointSpec::Parse(point.empty() ? "latest" : point));
  ASSIGN_OR_RETURN(auto p, r->ResolvePoint(spec));
  ASSIGN_OR_RETURN(auto o, r->CreateOverlay(overlay, p.seq));
  (void)o;
  const std::string name = replica + "/overlay/" + overlay;
  return json{{"export", name}, {"seq", p.seq}, {"uri", ExportUri(name)}};
}

Status Node::DiscardOverlay(const std::string& replica, const std::string& overlay) {
  ASSIGN_OR_RETURN(auto r, replicas_.Find(replica));
  return r->DiscardOverlay(overlay);
}

Status Node::CommitOverlay(const std::string& replica, const std::string& overlay) {
  ASSIGN_OR_RETURN(auto r, replicas_.Find(replica));
  return r->StartCommit(overlay);
}

Status Node::RemoveReplicaFiles(const std::string& volume_id) {
  // The files first: a source that reconnects from now on gets a fresh replica, never this one.
  Status s = replicas_.Remove(volume_id);
  receiver_.Close(volume_id);
  std::lock_guard rl(retention_mu_);
  retention_runs_.erase(volume_id);
  return s;
}

Status Node::DeleteReplica(const std::string& replica, bool force) {
  std::lock_guard pl(promote_mu_);
  ASSIGN_OR_RETURN(auto r, replicas_.Find(replica));
  const std::string id = journal::IdToHex(r->volume_id());
  std::vector<std::string> in_use;
  std::string names;
  for (const std::string& name : r->ListOverlays()) {
    auto o = r->GetOverlay(name);
    if (!o.ok() || (*o)->state() == journal::OverlayState::kCommitted) continue;
    in_use.push_back(name);
    names += (names.empty() ? "" : ", ") + name + " (" +
             std::string(journal::OverlayStateName((*o)->state())) + ")";
  }
  if (!in_use.empty() && !force) {
    return FailedPrecondition("replica " + replica + " has overlays in use: " + names +
                              "; discard them first, or delete the replica with force=true");
  }
  // Active overlays are discarded; a committing one goes with the files (its commit ends
  // when the last user lets go of the replica).
  for (const std::string& name : in_use) (void)r->DiscardOverlay(name);
  RETURN_IF_ERROR(RemoveReplicaFiles(id));
  catalog_->ForgetReplica(id, nullptr);
  spdlog::info("replica {} ({}) deleted{}", replica, id, in_use.empty() ? "" : " with its overlays " + names);
  return Status::Ok();
}

// The steps on disk and their crash states are in node/promotion.h. Around them, for the NBD
// sessions of the overlay:
//   1. the sessions' shared export is held: calls wait from here on, and new sessions for
//      the overlay's names get the same export (BeginAliases);
//   2. the overlay is flushed: every write answered is in the image;
//   3. Stage, Commit (the commit point), Finish: the image is the volume's disk, the
//      replica is gone;
//   4. the volume opens; the held export switches to its splitter and is released: the
//      waiting calls run on the splitter, and are captured.
// An error before the commit point releases the export on the overlay (nothing changed); an
// error after it makes the sessions' calls fail until a retry (or a restart) finishes.
Result<json> Node::Promote(const std::string& replica, const std::string& name, const std::string& disk) {
  if (!ValidName(name)) {
    return InvalidArgument("volume '" + name + "': use 1 to 128 letters, digits, '-', '_' or '.', "
                           "not starting with '.'");
  }
  if (!disk.empty() && (disk[0] != '/' || disk.back() == '/')) {
    return InvalidArgument("disk '" + disk + "': give an absolute file path, or none");
  }
  std::lock_guard pl(promote_mu_);
  Env* env = Env::Posix();
  const std::string volumes_root = JoinPath(config_.data_dir, "volumes");
  Promotion promotion(env, volumes_root, [this](const std::string& id) { return RemoveReplicaFiles(id); });
  auto from_this = [&](const json& from) {
    return from.is_object() &&
           (from.value("replica", "") == replica || from.value("volume_id", "") == replica);
  };
  if (auto v = FindVolume(name); v.ok()) {
    std::lock_guard l(mu_);
    // A retry whose answer was lost: the same result.
    if (from_this((*v)->promoted_from)) return VolumeJson(**v, SystemClock::Default()->NowNanos());
    return AlreadyExists("volume " + name + " exists on node " + config_.name + "; choose another name");
  }
  auto found = replicas_.FindEntry(replica);
  if (!found.ok()) {
    std::lock_guard l(mu_);
    for (const auto& [n, v] : volumes_) {
      if (from_this(v->promoted_from)) {
        return AlreadyExists("replica " + replica + " was promoted to volume " + n + " already");
      }
    }
    if (env->Exists(JoinPath(promotion.VolumeDir(name), "volume.json"))) {
      return FailedPrecondition("a promote to volume " + name + " stopped part way; restart the "
                                "node to finish it");
    }
    return found.status();
  }
  const std::shared_ptr<journal::Replica> r = found->replica;
  const std::string id = found->volume_id;
  const std::string rname = found->name;
  if (auto other = replicas_.Find(name); other.ok() && *other != r) {
    return AlreadyExists(name + " names another replica on this node; choose another volume name");
  }
  if (!r->committed()) {
    const journal::CommitProgress p = r->GetCommitProgress();
    if (p.running) {
      return FailedPrecondition("the commit of overlay " + p.overlay + " is still running (" +
                                fmt::format("{:.1f}", Percent(p.blocks_done, p.blocks_total)) +
                                "% done); retry promote when it is done");
    }
    if (!p.status.ok()) {
      return FailedPrecondition("the commit of overlay " + p.overlay + " failed: " +
                                p.status.ToString() + "; commit it again, then promote");
    }
    return FailedPrecondition("replica " + replica + " is not committed: commit an overlay first "
                              "(POST /v1/replicas/" + replica + "/overlays/NAME/commit), then promote");
  }
  std::shared_ptr<journal::Overlay> overlay;
  for (const std::string& o : r->ListOverlays()) {
    auto got = r->GetOverlay(o);
    if (got.ok() && (*got)->state() == journal::OverlayState::kCommitted) overlay = *got;
  }
  if (!overlay) return Internal("replica " + replica + " is committed but has no committed overlay");

  ASSIGN_OR_RETURN(std::string pending, promotion.Pending(name));
  const std::string target = disk.empty() ? JoinPath(promotion.VolumeDir(name), "disk.img") : disk;
  if (pending.empty()) {
    if (env->Exists(promotion.VolumeDir(name))) {
      return AlreadyExists(promotion.VolumeDir(name) + " exists (what a removed volume left?); "
                           "move it away or choose another name");
    }
    if (!disk.empty()) {
      if (env->Exists(disk)) {
        return AlreadyExists("disk " + disk + " exists; promote does not overwrite a file: "
                             "remove it or give another path");
      }
      if (!env->Exists(DirName(disk))) {
        return InvalidArgument("disk " + disk + ": the directory " + DirName(disk) + " does not exist");
      }
    }
    RETURN_IF_ERROR(promotion.CheckRename(DirName(overlay->data_path()),
                                          disk.empty() ? volumes_root : DirName(disk)));
  } else if (pending != id) {
    return AlreadyExists("volume " + name + " holds an unfinished promote of another replica; "
                         "restart the node to finish it");
  }

  std::vector<std::string> aliases = {rname + "/overlay/" + overlay->name()};
  if (rname != id) aliases.push_back(id + "/overlay/" + overlay->name());
  ASSIGN_OR_RETURN(auto sessions, catalog_->OverlayExport(r, overlay->name()));
  catalog_->BeginAliases(aliases, sessions);
  auto hold = sessions->Hold();
  Status s = overlay->Flush();
  if (s.ok() && pending.empty()) {
    Volume v;
    v.name = name;
    v.disk = target;
    v.aliases = aliases;
    v.promoted_from = {{"replica", rname}, {"volume_id", id}, {"overlay", overlay->name()}};
    PromotePlan plan;
    plan.name = name;
    plan.image = overlay->data_path();
    plan.replica_id = id;
    plan.size = r->size();
    plan.block_size = r->block_size();
    if (overlay->diverged_through() != 0) {
      // What may differ from the old source's disk: a reprotect seeded with that disk sends
      // only these blocks (docs/protocols/link.md, "Known changes").
      v.diverged = {{"volume_id", id},
                    {"history_id", journal::HistoryIdToHex(r->history_id())},
                    {"through", overlay->diverged_through()}};
      plan.has_delta = true;
      for (const journal::BlockExtent& e : overlay->DifferingExtents()) {
        plan.delta_runs.push_back({e.first_block, e.count});
      }
    }
    plan.settings = VolumeSettings(v);
    s = promotion.Stage(plan);
    if (s.ok()) s = promotion.Commit(name);
  }
  if (!s.ok()) {
    hold.unlock();
    catalog_->EndAliases(aliases);
    return s.WithContext("promote of replica " + replica + " (nothing changed)");
  }
  // Past the commit point.
  s = promotion.Finish(name);
  if (s.ok()) s = OpenVolume(name);
  std::shared_ptr<Volume> vol;
  if (s.ok()) {
    auto v = FindVolume(name);
    s = v.status();
    if (v.ok()) vol = *v;
  }
  if (!s.ok()) {
    (void)sessions->Replace(std::make_shared<nbd::UnavailableExport>(
                                sessions->size(), "promote to volume " + name +
                                                      " stopped part way; it finishes on retry or restart"),
                            hold);
    return s.WithContext("promote of replica " + replica + " to volume " + name +
                         " passed its commit point; retry it, or restart the node, to finish");
  }
  (void)sessions->Replace(std::make_shared<nbd::SplitterExport>(vol->splitter), hold);
  hold.unlock();
  catalog_->EndAliases(aliases);
  catalog_->ForgetReplica(id, sessions.get());
  spdlog::info("replica {} promoted to volume {} (disk {}); NBD name {} now serves the volume",
               rname, name, target, aliases[0]);
  std::lock_guard l(mu_);
  return VolumeJson(*vol, SystemClock::Default()->NowNanos());
}

// Retention (docs/protocols/node-api.md, "Retention"). Under promote_mu_: a replica being
// promoted or deleted is not merged into at the same time (its files are going away).
Result<journal::RetentionReport> Node::RunRetention(const link::ReplicaStore::Entry& e) {
  std::lock_guard pl(promote_mu_);
  const int64_t window_s = RetentionWindowSeconds(e);
  journal::RetentionPolicy policy;
  policy.window_ns = window_s * kNanosPerSecond;
  // Every point stays for 2 hours (or the whole window, if shorter); older markers are thinned
  // to one per hour, then one per 4 hours after 7 days (journal/retention.h).
  policy.any_point_ns = std::min(policy.any_point_ns, policy.window_ns);
  // Deleted or promoted meanwhile: nothing to keep, nothing to report.
  if (!replicas_.Find(e.volume_id).ok()) return NotFound("no replica of volume " + e.name + " on this node");
  if (e.replica->committed()) {
    return FailedPrecondition("replica " + e.name + " was committed to an overlay; it keeps no "
                              "recovery points");
  }
  const Result<journal::RetentionReport> report = e.replica->ApplyRetention(policy);
  std::string previous_error;
  {
    std::lock_guard rl(retention_mu_);
    RetentionRun& run = retention_runs_[e.volume_id];
    previous_error = run.error;
    run.time_ns = SystemClock::Default()->NowNanos();
    run.error = report.ok() ? "" : report.status().ToString();
    if (report.ok()) run.report = *report;
  }
  if (!report.ok() && previous_error.empty()) {
    events_.Add("error", e.name, "retention of the replica failed: " + report.status().ToString() +
                                     "; its history keeps growing until this is fixed");
  } else if (report.ok() && !previous_error.empty()) {
    events_.Add("info", e.name, "retention of the replica works again");
  }
  if (report.ok() && report->merged_to_seq != 0) {
    spdlog::debug("retention of replica {} ({} s): merged through seq {} ({} records), {} markers "
                  "thinned{}", e.name, window_s, report->merged_to_seq, report->records_merged,
                  report->markers_thinned,
                  report->held_by_pins ? ", held at seq " + std::to_string(report->held_by_pins) + " by pins" : "");
  }
  return report;
}

Result<json> Node::ApplyRetention(const std::string& replica) {
  ASSIGN_OR_RETURN(const link::ReplicaStore::Entry e, replicas_.FindEntry(replica));
  ASSIGN_OR_RETURN(journal::RetentionReport rep, RunRetention(e));
  return json{{"replica", e.name},
              {"window_seconds", RetentionWindowSeconds(e)},
              {"merged_to_seq", rep.merged_to_seq},
              {"records_merged", rep.records_merged},
              {"markers_thinned", rep.markers_thinned},
              {"records_compacted", rep.records_compacted},
              {"bytes_reclaimed", rep.bytes_reclaimed},
              {"held_by_pins", rep.held_by_pins},
              {"oldest_point", e.replica->Stats().oldest_point}};
}

void Node::RetentionLoop() {
  std::unique_lock l(mu_);
  while (!stopping_) {
    cv_.wait_for(l, std::chrono::milliseconds(config_.retention_interval_ms));
    if (stopping_) return;
    l.unlock();
    for (const auto& e : replicas_.List()) {
      {
        std::lock_guard sl(mu_);
        if (stopping_) return;
      }
      if (!e.replica->committed()) (void)RunRetention(e);
    }
    l.lock();
  }
}

}  // namespace ferry::node
