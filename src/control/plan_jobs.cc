// Plan operations and their workflows (docs/plans.md, "Operations", "The job").
//
// plan-test-failover: preflight/M… → [choose-points] → prepare/M… → per group N: its pre
//                     actions → group-N/M… (start) → group-N (all started) → post actions →
//                     finish
// plan-failover:      preflight/M… → [shutdown/M…] → [choose-points] → prepare/M… → per group
//                     as above → finish   (failover and failback)
// plan-cleanup-test-failover: cleanup/M… (no return) → finish
// plan-commit:        commit/M… (no return) → finish
// plan-reprotect:     reprotect/M… → finish
// undo (every type):  undo/M… (each machine's own undo steps) → finish-undo
//
// M is a machine of the plan; its steps form a batch (jobs.h) and run the item workflow's own
// steps, in order, with the item's spec and data as the job's scope "item-N". So a machine
// of a plan does exactly what a single-machine operation does, and its state survives a
// restart in the job's data like any step's.
#include <spdlog/spdlog.h>

#include "control/fields.h"
#include "control/plan_actions.h"
#include "control/plans.h"
#include "control/step_helpers.h"

namespace ferry::control {

using namespace steps;
using store::Row;
using store::Sql;

namespace {

constexpr const char* kMultiMachine = "latest-multi-machine";
constexpr const char* kMultiMachineApp = "latest-multi-machine-app-consistent";

std::string Key(int64_t item) { return FormatId("item", item); }

// A step of one machine: the item workflow's steps named in `subs` (all when empty), run in
// order; the cursor in the machine's scope says where to go on after a restart.
StepDef MachineStep(const JobEngine* engine, const std::string& item_type, bool undo, std::vector<std::string> subs,
                    const std::string& stage, const std::string& key, const std::string& machine,
                    const std::string& title, double weight, bool keep_going, bool no_return = false) {
  StepDef def;
  def.name = stage + "/" + machine;
  def.title = title + " " + machine;
  def.weight = weight;
  def.point_of_no_return = no_return;
  def.batch = stage;
  def.scope = key;
  def.keep_going = keep_going;
  def.run = [engine, item_type, undo, subs, stage, machine](JobContext& c) -> StepOutcome {
    const Workflow* wf = engine->Find(item_type);
    if (!wf) return StepOutcome::Fail(Internal("no workflow " + item_type));
    std::vector<StepDef> all = undo ? wf->UndoSteps(c.spec()) : wf->Steps(c.spec());
    std::vector<const StepDef*> chosen;
    for (const StepDef& d : all) {
      if (subs.empty() || std::find(subs.begin(), subs.end(), d.name) != subs.end()) chosen.push_back(&d);
    }
    json& cursor = c.data()["cursor"];
    if (!cursor.is_object()) cursor = json::object();
    size_t at = cursor.value(stage, size_t{0});
    std::string last;
    while (at < chosen.size()) {
      StepOutcome out = chosen[at]->run(c);
      if (out.kind == StepOutcome::Kind::kDone) {
        last = out.message;
        cursor[stage] = ++at;
        continue;
      }
      const std::string what = chosen[at]->title;
      switch (out.kind) {
        case StepOutcome::Kind::kWait:
          out.message = what + ": " + out.message;
          out.progress = 100.0 * (static_cast<double>(at) + out.progress / 100.0) / static_cast<double>(chosen.size());
          break;
        case StepOutcome::Kind::kFail: {
          ErrorParts p = Describe(out.error);
          out.error = WithAction(out.error.code(), machine + ": " + what + ": " + p.message, p.action);
          break;
        }
        default:
          break;
      }
      return out;
    }
    if (!undo) {
      // The item's own last step lets go of it; the plan's job keeps it until the plan is done.
      STEP_CHECK(SaveItem(c, [&](ItemRecord& it) { it.active_job = c.id(); }));
    }
    c.data()["done"][stage] = true;
    return StepOutcome::Done(last);
  };
  return def;
}

bool Matches(const json& action, const std::string& type, const std::string& direction) {
  auto has = [](const json& list, const std::string& v) {
    if (!list.is_array()) return true;
    for (const json& e : list) {
      if (e == v) return true;
    }
    return false;
  };
  return has(action.value("types", json()), type) && has(action.value("directions", json()), direction);
}

// The context a script gets: the plan, the operation and the group's machines with their
// recovered disks (docs/plans.md, "Actions").
Result<json> ScriptContext(JobContext& c, int64_t gidx, const std::string& phase, const json& action) {
  const json& spec = c.spec();
  const json& group = spec["groups"][gidx];
  json machines = json::array();
  for (const json& key : group["members"]) {
    json scope = c.data().value("scopes", json::object()).value(key.get<std::string>(), json::object());
    const json& ispec = spec["scopes"][key.get<std::string>()];
    ASSIGN_OR_RETURN(ItemRecord it, c.ctl().items().Load(c.ctl().db(), ispec["item"].get<int64_t>()));
    ASSIGN_OR_RETURN(json node, c.ctl().inventory().GetNode(FormatId("node", it.target_node)));
    json disks = json::array();
    json uris = scope.value("uris", json::object());
    for (const json& d : it.disks) {
      std::string vol = d["volume"];
      disks.push_back({{"name", d["name"]}, {"volume", vol}, {"uri", uris.value(vol, "")}});
    }
    machines.push_back({{"machine", spec["names"][key.get<std::string>()]},
                        {"item", key},
                        {"target_name", it.properties.value("target_name", it.name)},
                        {"network", it.properties.value("network", "")},
                        {"ip_address", it.properties.value("ip_address", "")},
                        {"node", node.value("name", "")},
                        {"recovery_point", {{"point", scope.value("point_override", ispec.value("point", ""))},
                                            {"time", scope.value("point_time", "")},
                                            {"seqs", scope.value("seqs", json::object())}}},
                        {"disks", disks}});
  }
  return json{{"plan", {{"id", FormatId("plan", spec["plan"].get<int64_t>())}, {"name", spec["plan_name"]}}},
              {"job", JobEngine::JobId(c.id())},
              {"operation", spec["operation"]},
              {"failover_type", spec["failover_type"]},
              {"direction", spec["direction"]},
              {"point", spec.value("point", "")},
              {"group", {{"index", gidx + 1}, {"name", group["name"]}}},
              {"phase", phase},
              {"action", action["name"]},
              {"machines", machines}};
}

StepOutcome ActionStep(JobContext& c, int64_t gidx, const std::string& phase, const json& action) {
  const json& spec = c.spec();
  if (action["kind"] == "manual") {
    return StepOutcome::Suspend(action.value("instructions", "") + " — then resume the job (ferry job resume " +
                                JobEngine::JobId(c.id()) + " --comment …) or cancel it");
  }
  std::string type = spec["failover_type"];
  std::string on_failure = action.value("on_failure", "");
  if (on_failure.empty()) on_failure = type == "unplanned" ? "continue" : "stop";
  STEP_ASSIGN(json context, ScriptContext(c, gidx, phase, action));
  std::map<std::string, std::string> env = {
      {"FERRY_PLAN", spec["plan_name"]},
      {"FERRY_PLAN_ID", FormatId("plan", spec["plan"].get<int64_t>())},
      {"FERRY_JOB", JobEngine::JobId(c.id())},
      {"FERRY_OPERATION", spec["operation"]},
      {"FERRY_FAILOVER_TYPE", type},
      {"FERRY_DIRECTION", spec["direction"]},
      {"FERRY_GROUP", spec["groups"][gidx]["name"]},
      {"FERRY_GROUP_INDEX", std::to_string(gidx + 1)},
      {"FERRY_PHASE", phase},
      {"FERRY_ACTION", action["name"]}};
  const int64_t timeout_ms = action.value("timeout_s", int64_t{300}) * 1000;
  auto ran = RunPlanScript(c.ctl(), action, env, context, timeout_ms);
  std::string failure;
  if (!ran.ok()) {
    failure = "could not run: " + std::string(ran.status().message());
  } else if (!ran->succeeded()) {
    failure = ran->Describe(timeout_ms) + ": " + ran->OutputTail();
  }
  const std::string what = "script " + action["name"].get<std::string>() + " (`" + action["command"].get<std::string>() + "`)";
  if (failure.empty()) return StepOutcome::Done(what + " succeeded: " + ran->OutputTail());
  if (on_failure == "continue") return StepOutcome::Done(what + " failed, going on (on_failure: continue): " + failure);
  return StepOutcome::Fail(WithAction(Code::kFailedPrecondition, what + " failed: " + failure,
                                      "fix its cause, then retry the job to run it again (ferry job retry " +
                                          JobEngine::JobId(c.id()) + "), or cancel the job to undo the operation"));
}

// Resolves the multi-machine points: members of a consistency group take the group's newest
// common point, the other machines their own latest.
StepOutcome ChoosePoints(JobContext& c) {
  const json& spec = c.spec();
  const std::string point = spec.value("point", "");
  const bool app = point == kMultiMachineApp;
  const std::string own = app ? "latest-app-consistent" : "latest";
  std::map<int64_t, GroupPoint> group_points;
  size_t in_groups = 0;
  for (const json& key : spec["members"]) {
    int64_t item = spec["scopes"][key.get<std::string>()]["item"];
    STEP_ASSIGN(auto rows, c.ctl().db().Query("SELECT consistency_group_id FROM items WHERE id = $1", {item}));
    std::string chosen = own;
    if (!rows.empty() && !rows[0].IsNull(0) && rows[0].Int(0) > 0) {
      int64_t gid = rows[0].Int(0);
      if (!group_points.count(gid)) {
        auto gp = c.ctl().groups().LatestCommonPoint(gid, app);
        if (!gp.ok()) {
          return StepOutcome::Fail(WithAction(gp.status().code(),
                                              "consistency group " + FormatId("cg", gid) + " of machine " +
                                                  spec["names"][key.get<std::string>()].get<std::string>() +
                                                  " has no common point: " + std::string(gp.status().message()),
                                              "wait for the group's next point (ferry group show), or choose another "
                                              "point"));
        }
        group_points[gid] = *gp;
      }
      auto p = group_points[gid].points.find(item);
      if (p != group_points[gid].points.end()) {
        chosen = p->second;
        ++in_groups;
      }
    }
    c.data()["scopes"][key.get<std::string>()]["point_override"] = chosen;
  }
  std::string msg = std::to_string(in_groups) + " machines at their group's common point";
  for (const auto& [gid, gp] : group_points) msg += "; " + gp.marker_id + " at " + FormatTime(gp.time_ns);
  return StepOutcome::Done(msg);
}

// The group's own step, once its machines' start steps are over: how many started (in an
// unplanned failover some may have failed, and the job goes on with the next group).
StepOutcome GroupStarted(JobContext& c, int64_t gidx, const std::string& stage) {
  const json& members = c.spec()["groups"][gidx]["members"];
  std::vector<std::string> failed;
  for (const json& key : members) {
    json scope = c.data().value("scopes", json::object()).value(key.get<std::string>(), json::object());
    if (!scope.value("done", json::object()).value(stage, false)) {
      failed.push_back(c.spec()["names"][key.get<std::string>()]);
    }
  }
  std::string msg = std::to_string(members.size() - failed.size()) + " of " + std::to_string(members.size()) +
                    " machines started";
  for (size_t i = 0; i < failed.size(); ++i) msg += (i ? ", " : "; not started: ") + failed[i];
  return StepOutcome::Done(msg);
}

StepOutcome FinishPlan(JobContext& c, const std::string& state) {
  const json& spec = c.spec();
  json last = {{"operation", spec["operation"]}, {"job", JobEngine::JobId(c.id())}, {"state", state},
               {"at", FormatTime(c.ctl().clock().NowNanos())}};
  STEP_CHECK(c.ctl().db().Transaction([&](Sql& tx) -> Status {
    RETURN_IF_ERROR(tx.Exec("UPDATE items SET active_job_id = NULL WHERE active_job_id = $1", {c.id()}).status());
    return tx.Exec("UPDATE plans SET active_job_id = NULL, last_operation = $2 WHERE id = $1 AND "
                   "(active_job_id = $3 OR active_job_id IS NULL)",
                   {spec["plan"].get<int64_t>(), last.dump(), c.id()})
        .status();
  }));
  return StepOutcome::Done();
}

// The item workflow a plan operation runs on each machine.
std::string ItemType(const std::string& plan_type) { return plan_type.substr(5); }  // "plan-" + item type

class PlanWorkflow : public Workflow {
 public:
  PlanWorkflow(const JobEngine* engine, std::string type) : engine_(engine), type_(std::move(type)) {}

  std::vector<StepDef> Steps(const json& spec) const override {
    std::vector<StepDef> out;
    const std::string item_type = ItemType(type_);
    const bool unplanned = spec.value("failover_type", "") == "unplanned";
    auto each = [&](const std::string& stage, const std::string& title, double w, std::vector<std::string> subs,
                    bool no_return = false) {
      for (const json& key : spec["members"]) {
        std::string k = key;
        out.push_back(MachineStep(engine_, item_type, false, subs, stage, k, spec["names"][k], title, w, unplanned,
                                  no_return));
      }
    };
    if (type_ == "plan-test-failover" || type_ == "plan-failover") {
      const bool test = type_ == "plan-test-failover";
      each("preflight", "Pre-flight checks of", 0.2, {"preflight"});
      if (!test && spec.value("shutdown_source", false)) {
        each("shutdown", "Shut down the source of", 1, {"power-off-source", "shutdown-source"});
      }
      std::string point = spec.value("point", "");
      if (point == kMultiMachine || point == kMultiMachineApp) {
        out.push_back({"choose-points", "Choose the consistency groups' common points", 0.2, ChoosePoints});
      }
      if (test) {
        each("prepare", "Prepare the disks of", 1, {"resolve-point", "create-overlays"});
      } else {
        each("prepare", "Prepare the disks of", 2, {"sync-final", "pause-replication", "resolve-point", "create-overlays"});
      }
      const std::string type = spec.value("failover_type", "");
      const std::string direction = spec.value("direction", "forward");
      for (size_t g = 0; g < spec["groups"].size(); ++g) {
        const json& group = spec["groups"][g];
        const std::string gname = "group-" + std::to_string(g + 1);
        const std::string gtitle = "Group " + std::to_string(g + 1) + " (" + group["name"].get<std::string>() + ")";
        auto actions = [&](const std::string& phase) {
          for (const json& a : group.value(phase, json::array())) {
            if (!Matches(a, type, direction)) continue;
            out.push_back({gname + "-" + phase + "/" + a["name"].get<std::string>(),
                           gtitle + ": " + phase + " action " + a["name"].get<std::string>() + " (" +
                               a["kind"].get<std::string>() + ")",
                           0.5, [g, phase, a](JobContext& c) { return ActionStep(c, static_cast<int64_t>(g), phase, a); }});
          }
        };
        actions("pre");
        for (const json& key : group["members"]) {
          std::string k = key;
          out.push_back(MachineStep(engine_, item_type, false, {"launch", "boot", "finish"}, gname, k, spec["names"][k],
                                    gtitle + ": start", 3, unplanned));
        }
        out.push_back({gname, gtitle + ": every machine started", 0.1,
                       [g, gname](JobContext& c) { return GroupStarted(c, static_cast<int64_t>(g), gname); }});
        actions("post");
      }
    } else if (type_ == "plan-cleanup-test-failover") {
      each("cleanup", "Clean up the test of", 1, {}, true);
    } else if (type_ == "plan-commit") {
      each("commit", "Commit", 1, {}, true);
    } else if (type_ == "plan-reprotect") {
      each("reprotect", "Reprotect", 1, {});
    }
    out.push_back({"finish", "Record the plan's operation", 0.1,
                   [](JobContext& c) { return FinishPlan(c, "Succeeded"); }});
    return out;
  }

  std::vector<StepDef> UndoSteps(const json& spec) const override {
    std::vector<StepDef> out;
    for (const json& key : spec["members"]) {
      std::string k = key;
      out.push_back(MachineStep(engine_, ItemType(type_), true, {}, "undo", k, spec["names"][k], "Undo", 1, false));
    }
    out.push_back({"finish-undo", "Record the cancelled operation", 0.1,
                   [](JobContext& c) { return FinishPlan(c, "Cancelled"); }});
    return out;
  }

 private:
  const JobEngine* engine_;
  std::string type_;
};

// The item operation each plan operation runs, and the state it moves items to.
struct OpInfo {
  std::string item_op, job_type, transitional, failover_type;
};

Result<OpInfo> Info(const std::string& op, const json& body, json* spec) {
  ASSIGN_OR_RETURN(OperationSpec o, ParseOperation(op, body, true));
  *spec = o.spec;
  OpInfo i;
  i.item_op = op == "failback" ? "failover" : op;
  i.job_type = "plan-" + i.item_op;
  i.transitional = o.transitional;
  if (op == "test-failover") i.failover_type = "test";
  if (i.item_op == "failover") i.failover_type = o.spec.value("planned", false) ? "planned" : "unplanned";
  return i;
}

}  // namespace

Result<json> Plans::Operate(const std::string& ref, const std::string& op, const json& body) {
  if (!body.is_object()) return InvalidArgument("the request body must be a JSON object");
  json item_spec;
  ASSIGN_OR_RETURN(OpInfo info, Info(op, body, &item_spec));
  int64_t job = 0;
  RETURN_IF_ERROR(db_->Transaction([&](Sql& tx) -> Status {
    ASSIGN_OR_RETURN(int64_t id, PlanId(tx, ref));
    ASSIGN_OR_RETURN(PlanRecord plan, Load(tx, id));
    if (plan.active_job) {
      return WithAction(Code::kFailedPrecondition,
                        "plan '" + plan.name + "' has a job running: " + JobEngine::JobId(plan.active_job),
                        "wait for it (ferry job watch " + JobEngine::JobId(plan.active_job) +
                            "), retry it if it failed, or cancel it");
    }
    if (plan.members.empty()) {
      return WithAction(Code::kFailedPrecondition, "plan '" + plan.name + "' has no machines",
                        "add machines to its groups (ferry plan replace)");
    }
    // Every machine must be able to take part; otherwise nothing starts and every problem is
    // listed.
    std::vector<std::string> problems;
    std::vector<ItemRecord> items;
    std::set<std::string> directions;
    for (const PlanMember& m : plan.members) {
      if (m.item_id == 0) {
        problems.push_back(m.machine + " has no replicated item (protect it: ferry protect " + m.machine + ")");
        continue;
      }
      ASSIGN_OR_RETURN(ItemRecord it, items_->Load(tx, m.item_id));
      if (it.active_job) {
        problems.push_back(m.machine + ": item '" + it.name + "' has a job running (" + JobEngine::JobId(it.active_job) + ")");
      } else {
        auto allowed = AllowedOperations(it.state);
        if (std::find(allowed.begin(), allowed.end(), info.item_op) == allowed.end()) {
          problems.push_back(m.machine + ": item '" + it.name + "' is " + it.state + ", where " + info.item_op +
                             " is not allowed");
        }
      }
      if (it.source_site == plan.source_site && it.target_site == plan.target_site) {
        directions.insert("forward");
      } else if (it.source_site == plan.target_site && it.target_site == plan.source_site) {
        directions.insert("reverse");
      } else {
        problems.push_back(m.machine + ": item '" + it.name + "' replicates between other sites than the plan's");
      }
      items.push_back(std::move(it));
    }
    std::string direction = directions.size() == 1 ? *directions.begin() : "";
    if (directions.size() > 1) {
      problems.push_back("some items replicate forward and others back (reverse): a plan moves them all one way");
    }
    if (op == "failback" && direction == "forward") {
      problems.push_back("the items replicate forward, from the plan's source site: fail back only after a failover, "
                         "commit and reprotect (use failover to move them to the target site)");
    }
    if (!problems.empty()) {
      std::string msg = "plan '" + plan.name + "' cannot " + op + ": " + std::to_string(problems.size()) + " problem" +
                        (problems.size() > 1 ? "s" : "") + ": ";
      for (size_t i = 0; i < problems.size() && i < 20; ++i) msg += (i ? "; " : "") + problems[i];
      if (problems.size() > 20) msg += "; and " + std::to_string(problems.size() - 20) + " more";
      return WithAction(Code::kFailedPrecondition, msg,
                        "fix them and try again (ferry plan readiness " + plan.name + " lists every problem)");
    }
    json spec = item_spec;
    spec["plan"] = plan.id;
    spec["plan_name"] = plan.name;
    spec["operation"] = op;
    spec["failover_type"] = info.failover_type;
    spec["direction"] = direction;
    spec["members"] = json::array();
    spec["names"] = json::object();
    spec["scopes"] = json::object();
    spec["groups"] = json::array();
    for (const json& g : plan.groups) {
      spec["groups"].push_back({{"name", g["name"]}, {"pre", g.value("pre", json::array())},
                                {"post", g.value("post", json::array())}, {"members", json::array()}});
    }
    for (size_t i = 0; i < plan.members.size(); ++i) {
      const PlanMember& m = plan.members[i];
      std::string key = Key(m.item_id);
      json s = item_spec;
      s["item"] = m.item_id;
      spec["members"].push_back(key);
      spec["names"][key] = m.machine;
      spec["scopes"][key] = s;
      spec["groups"][m.group_idx]["members"].push_back(key);
    }
    json data = {{"scopes", json::object()}};
    for (const ItemRecord& it : items) data["scopes"][Key(it.id)] = {{"prev_state", it.state}};
    ASSIGN_OR_RETURN(job, jobs_->Create(tx, info.job_type, "plan", plan.id, plan.name, spec, data));
    for (ItemRecord& it : items) {
      it.active_job = job;
      if (!info.transitional.empty()) it.state = info.transitional;
      RETURN_IF_ERROR(items_->Store(tx, it));
    }
    return tx.Exec("UPDATE plans SET active_job_id = $2 WHERE id = $1", {plan.id, job}).status();
  }));
  jobs_->Kick(job);
  ASSIGN_OR_RETURN(json j, jobs_->Get(job));
  return json{{"job", j}};
}

void RegisterPlanWorkflows(JobEngine& engine) {
  for (const char* type : {"plan-test-failover", "plan-cleanup-test-failover", "plan-failover", "plan-commit",
                           "plan-reprotect"}) {
    engine.Register(type, std::make_unique<PlanWorkflow>(&engine, type));
  }
}

}  // namespace ferry::control
