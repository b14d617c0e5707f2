// Plan readiness (docs/plans.md, "Readiness"): every problem that would stop or spoil an
// operation of the plan now, each with what to do. Part of Plans (plans.h); definitions are
// in plans.cc.
#include <future>
#include <map>
#include <set>

#include "control/errors.h"
#include "control/fields.h"
#include "control/plan_actions.h"
#include "control/plans.h"

namespace ferry::control {

using store::Row;

namespace {

// Readiness asks each target node for this share of the plan's disks it serves as free
// space: the overlays of a failover or test failover hold the machines' writes.
constexpr uint64_t kOverlayReserveDivisor = 10;

// What brings an item back to Protected, for readiness.
std::string ToProtected(const std::string& state, const std::string& item) {
  if (state == "Enabling" || state == "InitialSync") return "wait until its initial sync finishes (ferry item show " + item + ")";
  if (state == "TestFailover") return "clean up its test failover (ferry cleanup-test-failover " + item + ")";
  if (state == "FailedOver") return "commit the failover (ferry commit " + item + "), then reprotect it";
  if (state == "Committed") return "reprotect it (ferry reprotect " + item + ")";
  if (state == "Disabled") return "protect the machine again (ferry protect)";
  return "wait for its job to finish (ferry item show " + item + ")";
}

std::string JoinProblems(const json& problems) {
  std::string out;
  if (!problems.is_array()) return out;
  for (const json& p : problems) {
    std::string text = p.is_string() ? p.get<std::string>() : p.is_object() ? p.value("message", p.dump()) : p.dump();
    out += (out.empty() ? "" : "; ") + text;
  }
  return out;
}


}  // namespace

Result<json> Plans::Readiness(const std::string& ref) {
  ASSIGN_OR_RETURN(int64_t id, PlanId(*db_, ref));
  ASSIGN_OR_RETURN(PlanRecord plan, Load(*db_, id));
  json problems = json::array();
  auto problem = [&](const std::string& check, const PlanMember* m, int64_t item, const std::string& message,
                     const std::string& action) {
    json p = {{"check", check}};
    if (m) p["machine"] = m->machine;
    if (item) p["item"] = FormatId("item", item);
    p["message"] = message;
    p["action"] = action;
    problems.push_back(std::move(p));
  };
  ASSIGN_OR_RETURN(std::string source_name, inv_->SiteName(*db_, plan.source_site));
  ASSIGN_OR_RETURN(std::string target_name, inv_->SiteName(*db_, plan.target_site));
  if (plan.active_job) {
    problem("job", nullptr, 0, "the plan runs " + JobEngine::JobId(plan.active_job),
            "wait for it (ferry job watch " + JobEngine::JobId(plan.active_job) + ")");
  }

  // Items: present, Protected, Healthy, between the plan's sites.
  struct Checked {
    const PlanMember* member;
    ItemRecord item;
    std::string direction;  // relative to the plan: forward | reverse | "" (other sites)
  };
  std::vector<Checked> items;
  for (const PlanMember& m : plan.members) {
    if (!m.item_id) {
      problem("item", &m, 0, "machine '" + m.machine + "' has no replicated item",
              "protect it (ferry protect " + m.machine + " --target-site " + target_name + ")");
      continue;
    }
    ASSIGN_OR_RETURN(ItemRecord it, items_->Load(*db_, m.item_id));
    if (it.active_job) {
      problem("state", &m, it.id, "item '" + it.name + "' runs " + JobEngine::JobId(it.active_job),
              "wait for it (ferry job watch " + JobEngine::JobId(it.active_job) + ")");
    } else if (it.state != "Protected") {
      problem("state", &m, it.id, "item '" + it.name + "' is " + it.state + ", not Protected", ToProtected(it.state, it.name));
    }
    if (it.health != "Healthy") {
      std::string why = JoinProblems(it.problems);
      problem("health", &m, it.id, "item '" + it.name + "' is " + it.health + (why.empty() ? "" : ": " + why),
              "look at the item (ferry item show " + it.name + ")");
    }
    std::string direction;
    if (it.source_site == plan.source_site && it.target_site == plan.target_site) direction = "forward";
    if (it.source_site == plan.target_site && it.target_site == plan.source_site) direction = "reverse";
    if (direction.empty()) {
      auto src = inv_->SiteName(*db_, it.source_site);
      auto dst = inv_->SiteName(*db_, it.target_site);
      problem("direction", &m, it.id,
              "item '" + it.name + "' replicates from '" + (src.ok() ? *src : "?") + "' to '" + (dst.ok() ? *dst : "?") +
                  "', not between the plan's sites '" + source_name + "' and '" + target_name + "'",
              "protect the machine to site '" + target_name + "' (disable the item, then ferry protect)");
    }
    items.push_back({&m, std::move(it), direction});
  }
  // The items must agree: the direction most of them have wins (forward on a tie).
  int forward = 0, reverse = 0;
  for (const Checked& c : items) {
    if (c.direction == "forward") ++forward;
    if (c.direction == "reverse") ++reverse;
  }
  const std::string direction = reverse > forward ? "reverse" : "forward";
  if (forward && reverse) {
    for (const Checked& c : items) {
      if (c.direction.empty() || c.direction == direction) continue;
      problem("direction", c.member, c.item.id,
              "item '" + c.item.name + "' replicates " + c.direction + " while the plan's other items replicate " +
                  direction,
              c.direction == "reverse" ? "fail it back (ferry failback " + c.item.name + ") so that all replicate forward"
                                       : "bring it to the same side as the others (failover, commit, reprotect)");
    }
  }

  // Target nodes: heartbeats, answers, free space, networks; one status call per node, in
  // parallel.
  std::map<int64_t, std::vector<const Checked*>> by_node;
  for (const Checked& c : items) by_node[c.item.target_node].push_back(&c);
  struct NodeAnswer {
    std::string name;
    double heartbeat_age = -1;
    Result<json> status = Unavailable("not asked");
  };
  std::map<int64_t, std::future<NodeAnswer>> asked;
  for (const auto& [node_id, list] : by_node) {
    auto client = inv_->Client(node_id);
    auto last = inv_->LastStatus(node_id);
    double age = last.ok() ? last->second : -1;
    if (!client.ok()) {
      asked[node_id] = std::async(std::launch::deferred, [s = client.status(), node_id] {
        return NodeAnswer{FormatId("node", node_id), -1, s};
      });
      continue;
    }
    asked[node_id] = std::async(std::launch::async, [c = *client, age] {
      return NodeAnswer{c.name(), age, c.Get("/v1/status")};
    });
  }
  for (auto& [node_id, fut] : asked) {
    NodeAnswer a = fut.get();
    const auto& list = by_node[node_id];
    const std::string names = [&] {
      std::string s;
      for (size_t i = 0; i < list.size() && i < 5; ++i) s += (s.empty() ? "" : ", ") + list[i]->item.name;
      if (list.size() > 5) s += ", …";
      return s;
    }();
    if (a.heartbeat_age > kHeartbeatWarningSeconds) {
      problem("node", nullptr, 0,
              "target node '" + a.name + "' (of " + names + ") sent no heartbeat for " +
                  std::to_string(static_cast<int64_t>(a.heartbeat_age)) + " s",
              "check that the node runs and can reach the server");
    }
    if (!a.status.ok()) {
      problem("node", nullptr, 0,
              "target node '" + a.name + "' (of " + names + ") does not answer: " + std::string(a.status.status().message()),
              "start the node or restore the network between the server and it");
      continue;
    }
    const json& st = *a.status;
    if (st.contains("data_free_bytes") && st["data_free_bytes"].is_number_unsigned()) {
      uint64_t disks = 0;
      for (const Checked* c : list) {
        for (const json& d : c->item.disks) disks += d.value("size", uint64_t{0});
      }
      const uint64_t need = disks / kOverlayReserveDivisor;
      const uint64_t free = st["data_free_bytes"].get<uint64_t>();
      if (free < need) {
        problem("space", nullptr, 0,
                "target node '" + a.name + "' has " + std::to_string(free >> 20) + " MiB free in its data directory; " +
                    "the overlays of " + names + " need at least " + std::to_string(need >> 20) +
                    " MiB (a tenth of their disks)",
                "free space in the node's data directory");
      }
    }
    const json launcher = st.value("launcher", json());
    if (launcher.is_object() && launcher.contains("networks") && launcher["networks"].is_array()) {
      std::set<std::string> networks;
      for (const json& n : launcher["networks"]) {
        if (n.is_object()) networks.insert(n.value("name", ""));
      }
      for (const Checked* c : list) {
        const std::string net = c->item.properties.value("network", "default");
        if (!networks.count(net)) {
          std::string known;
          for (const auto& n : networks) known += (known.empty() ? "" : ", ") + n;
          problem("network", c->member, c->item.id,
                  "item '" + c->item.name + "' names network '" + net + "', which node '" + a.name +
                      "' does not have (it has: " + (known.empty() ? "none" : known) + ")",
                  "add [networks." + net + "] to the node's configuration, or change the item (ferry item update " +
                      c->item.name + " --network NAME)");
        }
      }
    }
  }

  // IP addresses: unique in each network among the items that are not Disabled.
  {
    ASSIGN_OR_RETURN(auto rows, db_->Query("SELECT id, name, properties FROM items WHERE state <> 'Disabled'"));
    std::map<std::pair<std::string, std::string>, std::vector<std::pair<int64_t, std::string>>> users;
    for (const Row& r : rows) {
      json p = json::parse(r.Text(2), nullptr, false);
      if (!p.is_object()) continue;
      std::string ip = p.value("ip_address", "");
      if (!ip.empty()) users[{p.value("network", "default"), ip}].emplace_back(r.Int(0), r.Text(1));
    }
    for (const Checked& c : items) {
      std::string ip = c.item.properties.value("ip_address", "");
      if (ip.empty()) continue;
      const std::string net = c.item.properties.value("network", "default");
      for (const auto& [other_id, other] : users[{net, ip}]) {
        if (other_id == c.item.id) continue;
        problem("ip_address", c.member, c.item.id,
                "item '" + c.item.name + "' and item '" + other + "' both use " + ip + " in network '" + net + "'",
                "give one of them another address (ferry item update " + c.item.name + " --ip A)");
        break;
      }
    }
  }

  // Scripts: each distinct (node, program) asked once.
  std::map<std::pair<std::string, std::string>, Status> script_checks;
  for (size_t g = 0; g < plan.groups.size(); ++g) {
    const json& group = plan.groups[g];
    for (const char* phase : {"pre", "post"}) {
      for (const json& a : group.value(phase, json::array())) {
        if (a.value("kind", "") != "script") continue;
        const std::string node = a.value("node", "");
        const std::string command = a.value("command", "");
        auto key = std::make_pair(node, command);
        auto found = script_checks.find(key);
        if (found == script_checks.end()) {
          found = script_checks.emplace(key, CheckScriptPresent(*db_, *inv_, a)).first;
        }
        if (found->second.ok()) continue;
        ErrorParts e = Describe(found->second);
        const bool unreachable = found->second.code() == Code::kUnavailable;
        problem("script", nullptr, 0,
                "group " + std::to_string(g + 1) + " '" + group.value("name", "") + "' " + phase + " action '" +
                    a.value("name", "") + "': " + (unreachable ? "cannot check its program: " : "") + e.message,
                unreachable ? "start the node or restore the network between the server and it"
                            : "install the program " + (node.empty() ? std::string("on the server") : "on node '" + node + "'") +
                                  ", or fix the action's command (ferry plan replace " + plan.name + " --file FILE)");
      }
    }
  }

  return json{{"plan", FormatId("plan", plan.id)},
              {"name", plan.name},
              {"ready", problems.empty()},
              {"checked_at", FormatTime(clock_->NowNanos())},
              {"machines", plan.members.size()},
              {"problems", problems}};
}

}  // namespace ferry::control
