#include "control/step_helpers.h"

#include "control/fields.h"

namespace ferry::control::steps {

Result<ItemRecord> LoadItem(JobContext& c) {
  return c.ctl().items().Load(c.ctl().db(), c.spec()["item"].get<int64_t>());
}

Status SaveItem(JobContext& c, const std::function<void(ItemRecord&)>& change) {
  return c.ctl().db().Transaction([&](store::Sql& tx) -> Status {
    ASSIGN_OR_RETURN(ItemRecord it, c.ctl().items().Load(tx, c.spec()["item"].get<int64_t>()));
    change(it);
    return c.ctl().items().Store(tx, it);
  });
}

Result<NodeClient> Node(JobContext& c, int64_t node_id) { return c.ctl().inventory().Client(node_id); }

Result<json> NodeStatus(const NodeClient& node) { return node.Get("/v1/status"); }

const json* Find(const json& status, const std::string& list, const std::string& name) {
  if (!status.contains(list) || !status[list].is_array()) return nullptr;
  for (const json& e : status[list]) {
    if (e.is_object() && e.value("name", "") == name) return &e;
  }
  return nullptr;
}

Result<std::string> LinkAddress(JobContext& c, int64_t node_id) {
  ASSIGN_OR_RETURN(auto rows, c.ctl().db().Query("SELECT link_address FROM nodes WHERE id = $1", {node_id}));
  if (rows.empty()) return NotFound("no node " + FormatId("node", node_id));
  return rows[0].Text(0);
}

bool IsCode(const Status& s, Code code) { return !s.ok() && s.code() == code; }

StepOutcome FromError(const Status& s) {
  if (s.code() == Code::kUnavailable) {
    return StepOutcome::Wait(std::string(s.message()) + "; trying again", 0, 2000);
  }
  return StepOutcome::Fail(s);
}

namespace {

bool NamedPoint(const std::string& p) { return p.rfind("latest", 0) == 0; }

std::string NodePoint(const std::string& p) { return p == "latest-processed" ? "latest" : p; }

}  // namespace

Status ResolvePoint(JobContext& c, const ItemRecord& item, const NodeClient& target, const std::string& point) {
  json seqs = json::object();
  std::string first_time;
  for (size_t i = 0; i < item.disks.size(); ++i) {
    std::string vol = item.disks[i]["volume"];
    std::string p = (i == 0 || NamedPoint(point)) ? NodePoint(point) : first_time;
    ASSIGN_OR_RETURN(json view, target.Post("/v1/replicas/" + vol + "/views", json{{"point", p}}));
    seqs[vol] = view["seq"];
    if (i == 0) first_time = view.value("time", "");
  }
  c.data()["seqs"] = seqs;
  c.data()["point_time"] = first_time;
  return Status::Ok();
}

Status CreateOverlays(JobContext& c, const ItemRecord& item, const NodeClient& target, const std::string& name) {
  json uris = c.data().value("uris", json::object());
  for (const json& d : item.disks) {
    std::string vol = d["volume"];
    if (uris.contains(vol)) continue;
    int64_t seq = c.data()["seqs"][vol];
    auto made = target.Post("/v1/replicas/" + vol + "/overlays",
                            json{{"name", name}, {"point", "seq:" + std::to_string(seq)}});
    if (made.ok()) {
      uris[vol] = made->value("uri", "");
    } else if (IsCode(made.status(), Code::kAlreadyExists)) {
      // Made by an earlier run of this step: its address is in the node's status.
      ASSIGN_OR_RETURN(json st, NodeStatus(target));
      std::string uri;
      if (const json* r = Find(st, "replicas", vol)) {
        for (const json& o : r->value("overlays", json::array())) {
          if (o.value("name", "") == name) uri = o.value("uri", "");
        }
      }
      uris[vol] = uri;
    } else {
      return made.status();
    }
    c.data()["uris"] = uris;
  }
  c.data()["overlay"] = name;
  return Status::Ok();
}

Status DiscardOverlays(const ItemRecord& item, const NodeClient& target, const std::string& name) {
  if (name.empty()) return Status::Ok();
  for (const json& d : item.disks) {
    auto r = target.Delete("/v1/replicas/" + d["volume"].get<std::string>() + "/overlays/" + name);
    if (!r.ok() && !IsCode(r.status(), Code::kNotFound)) return r.status();
  }
  return Status::Ok();
}

Result<json> ProtectBody(JobContext& c, const ItemRecord& item, const std::string& target_link) {
  ASSIGN_OR_RETURN(json policy, c.ctl().inventory().PolicyById(c.ctl().db(), item.policy_id));
  if (item.direction == "reverse") {
    ASSIGN_OR_RETURN(policy, c.ctl().inventory().PolicyById(c.ctl().db(), ParseId("pol", policy["failback_policy"])));
  }
  int64_t crash = policy["crash_consistent_interval_seconds"].get<int64_t>() * 1000;
  int64_t app = policy["app_consistent_interval_seconds"].get<int64_t>() * 1000;
  json body = {{"target", target_link}, {"marker_interval_ms", std::max<int64_t>(crash, 1000)},
               {"app_interval_ms", app == 0 ? 0 : std::max<int64_t>(app, 1000)},
               {"retention_seconds", policy["retention_hours"].get<int64_t>() * 3600}};
  // The machine's freeze and thaw hooks describe it at its home site: the way back (a
  // machine a launcher runs at the recovery site) takes crash-consistent points only.
  if (item.direction != "reverse") {
    ASSIGN_OR_RETURN(json machine, c.ctl().inventory().MachineById(c.ctl().db(), item.machine_id));
    json hooks = machine.value("run", json::object()).value("hooks", json::object());
    if (!hooks.value("freeze", "").empty()) body["freeze_command"] = hooks["freeze"];
    if (!hooks.value("thaw", "").empty()) body["thaw_command"] = hooks["thaw"];
  }
  return body;
}

}  // namespace ferry::control::steps
