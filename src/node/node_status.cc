// Node: the status JSON (GET /v1/status), docs/protocols/node-api.md.
#include <fmt/format.h>

#include "env/env.h"
#include "journal/overlay.h"
#include "node/node_internal.h"

namespace ferry::node {

std::string Node::ExportUri(const std::string& export_name) const {
  for (const std::string& a : nbd_addresses_) {
    if (a.rfind("unix://", 0) == 0) return "nbd+unix:///" + export_name + "?socket=" + a.substr(7);
  }
  for (const std::string& a : nbd_addresses_) {
    if (a.rfind("tcp://", 0) == 0) return "nbd://" + a.substr(6) + "/" + export_name;
  }
  return "";
}

json VerifyJson(const link::VerifyStatus& v) {
  return {{"id", v.id},
          {"state", v.state},
          {"compared_bytes", v.compared_bytes},
          {"total_bytes", v.total_bytes},
          {"percent", Percent(v.compared_bytes, v.total_bytes)},
          {"differing_bytes", v.differing_bytes},
          {"consistent_from", v.consistent_from},
          {"cancelled", v.cancelled},
          {"started", v.started_ns ? json(FormatTime(v.started_ns)) : json(nullptr)},
          {"finished", v.finished_ns ? json(FormatTime(v.finished_ns)) : json(nullptr)}};
}

json Node::VolumeJson(Volume& v, int64_t now) {
  json j = {{"name", v.name},
            {"role", "source"},
            {"capture", v.capture},
            {"disk", v.disk},
            {"size", v.log->size()},
            {"export", v.splitter ? json(v.name) : json(nullptr)},
            {"uri", v.splitter ? json(ExportUri(v.name)) : json(nullptr)},
            {"volume_id", journal::IdToHex(v.log->volume_id())},
            {"history_id", journal::HistoryIdToHex(v.log->history_id())},
            {"block_size", v.log->block_size()},
            {"log_last_seq", v.log->last_seq()},
            {"churn_bytes_per_second", v.churn},
            {"fenced", v.fenced},
            {"aliases", v.aliases},
            {"promoted_from", v.promoted_from}};
  if (v.scan) {
    j["scan"] = {{"interval_ms", v.scan_interval_ms}, {"last_cycle", v.last_scan}};
  }
  if (!v.protect) {
    j["link"] = nullptr;
    return j;
  }
  json link = {{"target", v.params.target},
               {"setting", v.link_state},
               {"marker_interval_ms", v.params.marker_interval_ms},
               {"app_interval_ms", v.params.app_interval_ms},
               {"mode", v.params.mode},
               {"synchronous", v.params.mode == "sync" && v.sync_active->load()},
               {"retention_seconds", v.params.retention_seconds}};
  if (v.sender) {
    link::LinkStatus s = v.sender->status();
    link["state"] = s.state;
    link["peer"] = s.peer;
    link["codec"] = s.codec;
    link["acked_seq"] = s.acked_seq;
    link["sent_seq"] = s.sent_seq;
    link["log_last_seq"] = s.log_last_seq;
    link["pending_bytes"] = s.pending_bytes;
    link["wire_bytes"] = s.wire_bytes;
    link["raw_bytes"] = s.raw_bytes;
    link["upload_bytes_per_second"] = s.upload_bytes_per_second;
    link["bytes_per_second_limit"] = s.rate_bytes_per_second;
    link["connects"] = s.connects;
    link["newest_acked_marker_seq"] = s.newest_acked_marker_seq;
    link["rpo_seconds"] = s.newest_acked_marker_ns
                              ? json(static_cast<double>(now - s.newest_acked_marker_ns) / kNanosPerSecond)
                              : json(nullptr);
    link["initial_sync"] = {{"running", s.initial_sync},
                            {"method", s.sync_method},
                            {"method_reason", s.sync_method_reason},
                            {"acked_offset", s.sync_offset},
                            {"scanned", s.sync_scanned},
                            {"total", s.sync_total}};
    link["last_error"] = s.last_error;
    link["resync"] = {{"state", s.resync}, {"dirty_bytes", v.dirty->DirtyBytes()}};
    link["verify"] = VerifyJson(s.verify);
  } else {
    link["state"] = "stopped";
  }
  j["link"] = link;
  return j;
}

json Node::ReplicaJson(const link::ReplicaStore::Entry& e, int64_t now) {
  const journal::Replica& r = *e.replica;
  auto stats = r.Stats();
  auto sync = r.GetInitialSync();
  auto health = r.GetHealth();
  json j = {{"name", e.name},
            {"role", "target"},
            {"volume_id", e.volume_id},
            {"size", r.size()},
            {"last_seq", stats.last_seq},
            {"oldest_point", stats.oldest_point},
            {"consistent_from", sync.consistent_from},
            {"markers", stats.markers},
            {"journal_bytes", stats.journal_bytes},
            {"health", std::string(journal::HealthLevelName(health.level))},
            {"problems", health.problems},
            {"export_prefix", e.name + "@"}};
  json in = nullptr;
  for (const auto& s : receiver_.Inbound()) {
    if (s.volume_id != e.volume_id) continue;
    in = {{"connected", s.connected}, {"peer", s.peer}, {"durable_seq", s.durable_seq},
          {"records", s.records}, {"wire_bytes", s.wire_bytes}, {"last_error", s.last_error}};
    if (sync.running) {
      const double secs = static_cast<double>(now - s.sync_started_ns) / kNanosPerSecond;
      const double rate = secs > 0 ? static_cast<double>(s.sync_bytes) / secs : 0;
      const uint64_t left = s.sync_total > s.sync_bytes ? s.sync_total - s.sync_bytes : 0;
      j["initial_sync"] = {{"running", true},
                           {"bytes_done", s.sync_bytes},
                           {"bytes_total", s.sync_total},
                           {"scanned_to", s.sync_offset},
                           {"durable_offset", sync.offset},
                           {"percent", Percent(s.sync_offset, r.size())},
                           {"bytes_per_second", rate},
                           {"eta_seconds", rate > 0 ? json(static_cast<double>(left) / rate) : json(nullptr)}};
    }
  }
  if (!j.contains("initial_sync")) {
    j["initial_sync"] = {{"running", sync.running}, {"durable_offset", sync.offset},
                         {"percent", sync.running ? Percent(sync.offset, r.size()) : 100.0}};
  }
  j["link"] = in;
  {
    json ret = {{"window_seconds", RetentionWindowSeconds(e)}, {"said_by_source", e.retention_seconds > 0},
                {"last_run", nullptr}, {"last_error", ""}};
    std::lock_guard rl(retention_mu_);
    auto it = retention_runs_.find(e.volume_id);
    if (it != retention_runs_.end()) {
      const RetentionRun& run = it->second;
      ret["last_run"] = FormatTime(run.time_ns);
      ret["last_error"] = run.error;
      ret["merged_to_seq"] = run.report.merged_to_seq;
      ret["markers_thinned"] = run.report.markers_thinned;
      ret["held_by_pins"] = run.report.held_by_pins;
    }
    j["retention"] = ret;
  }
  json overlays = json::array();
  std::string committed_overlay;
  for (const std::string& name : e.replica->ListOverlays()) {
    auto o = e.replica->GetOverlay(name);
    if (!o.ok()) continue;  // discarded just now
    const journal::OverlayState state = (*o)->state();
    if (state == journal::OverlayState::kCommitted) committed_overlay = name;
    const std::string exp = e.name + "/overlay/" + name;
    overlays.push_back({{"name", name},
                        {"point", (*o)->point()},
                        {"state", std::string(journal::OverlayStateName(state))},
                        {"changed_bytes", (*o)->changed_blocks() * (*o)->block_size()},
                        {"export", exp},
                        {"uri", ExportUri(exp)}});
  }
  j["overlays"] = overlays;
  const journal::CommitProgress commit = r.GetCommitProgress();
  if (r.committed()) {
    j["commit"] = {{"state", "done"}, {"overlay", committed_overlay}, {"percent", 100.0}, {"error", ""}};
  } else if (commit.running) {
    j["commit"] = {{"state", "running"},
                   {"overlay", commit.overlay},
                   {"percent", Percent(commit.blocks_done, commit.blocks_total)},
                   {"error", ""}};
  } else {
    j["commit"] = {{"state", "none"}, {"overlay", commit.overlay}, {"percent", 0.0},
                   {"error", commit.status.ok() ? "" : commit.status.ToString()}};
  }
  return j;
}

json Node::StatusJson() {
  const int64_t now = SystemClock::Default()->NowNanos();
  std::vector<std::shared_ptr<Volume>> vols;
  {
    std::lock_guard l(mu_);
    for (auto& [n, v] : volumes_) vols.push_back(v);
  }
  json volumes = json::array();
  for (auto& v : vols) {
    std::lock_guard l(mu_);
    volumes.push_back(VolumeJson(*v, now));
  }
  json replicas = json::array();
  for (const auto& e : replicas_.List()) replicas.push_back(ReplicaJson(e, now));
  // Free space of the data directory (replicas and overlays live there); null when unknown.
  auto space = Env::Posix()->GetSpace(config_.data_dir);
  return json{{"node", {{"name", config_.name}, {"site", config_.site}, {"nbd", nbd_addresses_},
                        {"link", link_address()},
                        {"throttle_bytes_per_second", node_throttle_.rate()}}},
              {"data_free_bytes", space.ok() ? json(space->free_bytes) : json(nullptr)},
              {"volumes", volumes},
              {"replicas", replicas},
              {"launcher", machines_ ? machines_->Summary() : json()}};
}

}  // namespace ferry::node
