#include "control/controller.h"

#include <spdlog/spdlog.h>

#include "control/schema.h"

namespace ferry::control {

using store::Sql;

Controller::Controller(std::unique_ptr<store::Database> db, Clock* clock, ControllerOptions options)
    : db_(std::move(db)),
      clock_(clock),
      options_(options),
      inventory_(db_.get(), clock),
      jobs_(db_.get(), this, clock),
      items_(db_.get(), &inventory_, &jobs_, &groups_, clock),
      groups_(db_.get(), &inventory_, &items_, clock),
      plans_(db_.get(), &inventory_, &items_, &jobs_, clock) {}

Result<std::unique_ptr<Controller>> Controller::Open(std::unique_ptr<store::Database> db, Clock* clock,
                                                     ControllerOptions options) {
  RETURN_IF_ERROR(store::Migrate(*db, ControlMigrations()));
  std::unique_ptr<Controller> c(new Controller(std::move(db), clock, options));
  RETURN_IF_ERROR(c->inventory_.Init());
  RegisterWorkflows(c->jobs_);
  return c;
}

Controller::~Controller() { Stop(); }

Status Controller::Start() {
  RETURN_IF_ERROR(jobs_.Start());
  monitor_ = std::thread([this] { MonitorLoop(); });
  group_points_ = std::thread([this] { GroupPointsLoop(); });
  return Status::Ok();
}

void Controller::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  if (monitor_.joinable()) monitor_.join();
  if (group_points_.joinable()) group_points_.join();
  jobs_.Stop();
}

void Controller::MonitorLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    MonitorOnce();
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(options_.monitor_interval_ms), [&] { return stopping_; });
  }
}

// Its own thread: a point must not wait behind a slow monitor pass, nor the monitor behind
// a barrier; 200 ms keeps a 1 s interval on time.
void Controller::GroupPointsLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    try {
      groups_.TakeDuePoints();
    } catch (const std::exception& e) {
      spdlog::warn("group points: unexpected answer from a node: {}", e.what());
    }
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stopping_; });
  }
}

void Controller::MonitorOnce() {
  auto rows = db_->Query("SELECT id FROM items WHERE state <> 'Disabled' ORDER BY id");
  if (!rows.ok()) {
    spdlog::warn("monitor: cannot read items: {}", rows.status().ToString());
    return;
  }
  for (const auto& r : *rows) {
    Status s;
    try {
      s = RefreshItem(r.Int(0));
    } catch (const std::exception& e) {
      s = Internal(std::string("unexpected status from a node: ") + e.what());
    }
    if (!s.ok()) spdlog::debug("monitor: item-{}: {}", r.Int(0), s.ToString());
  }
}

namespace {

const json* FindByName(const json& list, const std::string& name) {
  if (!list.is_array()) return nullptr;
  for (const json& e : list) {
    if (e.is_object() && e.value("name", "") == name) return &e;
  }
  return nullptr;
}

}  // namespace

Status Controller::RefreshItem(int64_t id) {
  ASSIGN_OR_RETURN(ItemRecord it, items_.Load(*db_, id));
  ASSIGN_OR_RETURN(auto src, inventory_.LastStatus(it.source_node));
  ASSIGN_OR_RETURN(auto dst, inventory_.LastStatus(it.target_node));
  ASSIGN_OR_RETURN(json policy, inventory_.PolicyById(*db_, it.policy_id));
  const double threshold = policy["rpo_threshold_seconds"].get<double>();
  json problems = json::array();
  std::string health = "Healthy";
  auto raise = [&](const std::string& level, const std::string& problem) {
    problems.push_back(problem);
    if (level == "Critical" || health == "Healthy") health = level;
  };
  const bool replicating = it.state == "Protected" || it.state == "TestFailover" || it.state == "InitialSync";
  for (const auto& [status, node_id] : {std::pair{src, it.source_node}, std::pair{dst, it.target_node}}) {
    std::string h = inventory_.NodeHealth(db_->Query("SELECT last_heartbeat_ns FROM nodes WHERE id = $1", {node_id})
                                              .value()[0]
                                              .Int(0));
    if (h != "Healthy") {
      ASSIGN_OR_RETURN(std::string name, inventory_.NodeName(*db_, node_id));
      raise(h, "node " + name + " has not sent a heartbeat for " + std::to_string(static_cast<int64_t>(status.second)) +
                   " s: check that it runs and reaches the server");
    }
  }
  json live = json::object();
  std::optional<double> rpo = 0.0;
  const json src_volumes = src.first.is_object() ? src.first.value("volumes", json::array()) : json::array();
  const json dst_replicas = dst.first.is_object() ? dst.first.value("replicas", json::array()) : json::array();
  for (const json& d : it.disks) {
    std::string vol = d["volume"];
    json l = json::object();
    const json* v = FindByName(src_volumes, vol);
    const json* r = FindByName(dst_replicas, vol);
    if (v && v->contains("link") && (*v)["link"].is_object()) {
      const json& link = (*v)["link"];
      l["pending_bytes"] = link.value("pending_bytes", 0);
      l["link_state"] = link.value("state", "");
      l["rpo_seconds"] = link.value("rpo_seconds", json(nullptr));
      if (replicating && link.value("state", "") == "blocked") {
        raise("Critical", "disk " + d["name"].get<std::string>() + ": replication is blocked: " +
                              link.value("last_error", std::string()));
      }
    }
    if (r && r->contains("initial_sync") && (*r)["initial_sync"].is_object()) {
      const json& is = (*r)["initial_sync"];
      l["initial_sync"] = {{"percent", is.value("percent", 0.0)},
                           {"eta_seconds", is.value("eta_seconds", json(nullptr))}};
    }
    if (!l.contains("rpo_seconds") || l["rpo_seconds"].is_null()) {
      rpo.reset();
    } else if (rpo) {
      rpo = std::max(*rpo, l["rpo_seconds"].get<double>());
    }
    live[vol] = l;
  }
  if (it.state != "Protected" && it.state != "TestFailover") rpo.reset();
  if (rpo && *rpo > 2 * threshold) {
    raise("Critical", "RPO " + std::to_string(static_cast<int64_t>(*rpo)) + " s is more than twice the policy's " +
                          std::to_string(static_cast<int64_t>(threshold)) + " s: check the link and the target node");
  } else if (rpo && *rpo > threshold) {
    raise("Warning", "RPO " + std::to_string(static_cast<int64_t>(*rpo)) + " s is above the policy's " +
                         std::to_string(static_cast<int64_t>(threshold)) + " s");
  }
  store::Value rpo_value;
  if (rpo) rpo_value = *rpo;
  RETURN_IF_ERROR(db_->Exec("UPDATE items SET live = $2, health = $3, problems = $4, rpo_seconds = $5 WHERE id = $1",
                            {id, live.dump(), health, problems.dump(), rpo_value})
                      .status());
  if (it.state == "Protected" || it.state == "TestFailover" || it.state == "FailingOver" || it.state == "FailedOver") {
    if (dst.second < kHeartbeatWarningSeconds) return IngestPoints(it);
  }
  return Status::Ok();
}

// Copies the target replica's new markers (of the item's first disk) into recovery_points and
// drops those that retention removed on the node.
Status Controller::IngestPoints(const ItemRecord& it) {
  if (it.disks.empty()) return Status::Ok();
  std::string vol = it.disks[0]["volume"];
  ASSIGN_OR_RETURN(auto newest, db_->Query("SELECT MAX(seq) FROM recovery_points WHERE item_id = $1", {it.id}));
  int64_t known = newest.empty() ? 0 : newest[0].Int(0);
  ASSIGN_OR_RETURN(NodeClient node, inventory_.Client(it.target_node));
  int64_t before = 0;
  std::vector<json> fresh;
  for (int pages = 0; pages < 100; ++pages) {
    std::string path = "/v1/replicas/" + vol + "/points?limit=1000";
    if (before > 0) path += "&before=" + std::to_string(before);
    ASSIGN_OR_RETURN(json page, node.Get(path));
    bool reached = false;
    for (const json& p : page.value("points", json::array())) {
      if (p.value("seq", int64_t{0}) <= known) {
        reached = true;
        break;
      }
      fresh.push_back(p);
    }
    before = page.value("next_token", int64_t{0});
    if (reached || before == 0) break;
  }
  ASSIGN_OR_RETURN(auto dst, inventory_.LastStatus(it.target_node));
  int64_t oldest = 0;
  const json replicas = dst.first.is_object() ? dst.first.value("replicas", json::array()) : json::array();
  if (const json* r = FindByName(replicas, vol)) {
    oldest = r->value("oldest_point", int64_t{0});
  }
  return db_->Transaction([&](Sql& tx) -> Status {
    for (const json& p : fresh) {
      int64_t t = 0;
      if (!ParseTime(p.value("time", ""), &t)) continue;
      RETURN_IF_ERROR(tx.Exec("INSERT INTO recovery_points (item_id, seq, time_ns, kind, label) VALUES ($1, $2, $3, $4, $5)",
                              {it.id, p["seq"].get<int64_t>(), t, p.value("kind", ""), p.value("label", "")})
                          .status());
    }
    if (oldest > 0) {
      RETURN_IF_ERROR(tx.Exec("DELETE FROM recovery_points WHERE item_id = $1 AND seq < $2", {it.id, oldest}).status());
    }
    return Status::Ok();
  });
}

}  // namespace ferry::control
