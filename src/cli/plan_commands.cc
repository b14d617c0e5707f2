// `ferry plan …`: recovery plans (docs/plans.md): their definitions, the readiness check and
// the plan operations, each a job that ReportStartedJob prints or follows (--wait) exactly as
// for an item's operations.
#include <cstdio>
#include <map>
#include <vector>

#include "cli/commands.h"
#include "cli/control_verbs.h"
#include "cli/exit_codes.h"
#include "cli/resolve.h"
#include "env/env.h"

namespace ferry::cli {

namespace {

constexpr ResourceKind kPlanKind{"plan", "/plans", "plan-", "ferry plan list"};

// ID NAME SOURCE TARGET GROUPS MACHINES JOB
Table PlansTable(const json& items) {
  Table t{{"ID", "NAME", "SOURCE", "TARGET", "GROUPS", "MACHINES", "JOB"}, {}};
  if (!items.is_array()) return t;
  for (const json& p : items) {
    const json& groups = Field(p, "groups");
    t.rows.push_back({Text(p, "id"), Text(p, "name"), Text(p, "source_site"), Text(p, "target_site"),
                      std::to_string(groups.is_array() ? groups.size() : 0), Text(p, "machine_count"),
                      Text(p, "active_job")});
  }
  return t;
}

// "script stop-app: /opt/app/stop.sh --fast (on node-b, 300s, stop; test,planned)".
std::string ActionText(const json& a) {
  auto joined = [&](const char* key) {
    std::string s;
    const json& v = Field(a, key);
    if (v.is_array()) {
      for (const json& e : v) s += (s.empty() ? "" : ",") + (e.is_string() ? e.get<std::string>() : e.dump());
    }
    return s;
  };
  std::string text = StringField(a, "kind") + " " + StringField(a, "name") + ": ";
  std::vector<std::string> details;
  if (StringField(a, "kind") == "script") {
    text += StringField(a, "command");
    std::string node = StringField(a, "node");
    details.push_back(node.empty() ? "on the server" : "on " + node);
    details.push_back(Text(a, "timeout_s") + "s");
    if (std::string f = StringField(a, "on_failure"); !f.empty()) details.push_back("on failure " + f);
  } else {
    std::string instructions = StringField(a, "instructions");
    text += instructions.size() > 60 ? instructions.substr(0, 57) + "..." : instructions;
  }
  if (std::string types = joined("types"); types != "test,planned,unplanned") details.push_back(types);
  if (std::string dirs = joined("directions"); dirs != "forward,reverse") details.push_back(dirs);
  std::string d;
  for (const auto& x : details) d += (d.empty() ? "" : "; ") + x;
  return d.empty() ? text : text + " (" + d + ")";
}

std::string PlanDetails(const json& plan) {
  std::string desc = StringField(plan, "description");
  const json& last = Field(plan, "last_operation");
  std::string last_text = "-";
  if (last.is_object()) {
    last_text = Text(last, "operation") + " " + Text(last, "job") + " " + Text(last, "state") + " at " + Text(last, "at");
  }
  std::string text = KeyValues({
      {"id", Text(plan, "id")},
      {"name", Text(plan, "name")},
      {"description", desc.empty() ? "-" : desc},
      {"sites", Text(plan, "source_site") + " -> " + Text(plan, "target_site")},
      {"machines", Text(plan, "machine_count")},
      {"active job", Text(plan, "active_job")},
      {"last operation", last_text},
      {"created", Text(plan, "created_at")},
      {"updated", Text(plan, "updated_at")},
  });
  // One row per machine and per action, in the order they run.
  Table t{{"GROUP", "STEP", "MACHINE / ACTION", "ITEM", "STATE"}, {}};
  const json& groups = Field(plan, "groups");
  if (groups.is_array()) {
    for (const json& g : groups) {
      const std::string group = Text(g, "index") + " " + Text(g, "name");
      for (const char* phase : {"pre", "machines", "post"}) {
        const json& list = Field(g, phase);
        if (!list.is_array()) continue;
        for (const json& e : list) {
          if (std::string(phase) == "machines") {
            t.rows.push_back({group, "start", Text(e, "machine"), Text(e, "item"), Text(e, "state")});
          } else {
            t.rows.push_back({group, phase, ActionText(e), "", ""});
          }
        }
      }
    }
  }
  if (t.rows.empty()) return text;
  return text + "\ngroups:\n" + t.Format();
}

json ReadJsonFile(const std::string& path) {
  auto text = ReadFileToString(Env::Posix(), path);
  if (!text.ok()) FailWith(LocalError("NotFound", std::string(text.status().message())), path);
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    FailWith(LocalError("InvalidArgument", "not a JSON object (the plan definition, docs/plans.md)"), path);
  }
  return j;
}

std::string PlanPath(ApiClient& client, const std::string& ref) {
  return "/plans/" + UrlEncode(StringField(OrExit(Resolve(client, ref, kPlanKind), ref), "id"));
}

void AddDefinitionVerbs(CLI::App* plan) {
  {
    auto* cmd = plan->add_subcommand("list", "List the recovery plans");
    auto o = AddVerbOptions(cmd);
    auto limit = std::make_shared<int64_t>(0);
    cmd->add_option("--limit", *limit, "At most this many (default: all)")->check(CLI::PositiveNumber);
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      PrintList(*o, OrExit(client.List("/plans", {}, *limit), "listing plans"), PlansTable);
    });
  }
  {
    auto* cmd = plan->add_subcommand("show", "Show a plan: its groups, machines, item states and actions");
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    cmd->add_option("plan", *ref, "The plan's id or name")->required();
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      PrintResource(*o, OrExit(client.Get(PlanPath(client, *ref)), *ref), PlanDetails);
    });
  }
  {
    auto* cmd = plan->add_subcommand(
        "create", "Define a plan from a JSON file (--file), or from flags: NAME --source-site --target-site --group");
    auto o = AddVerbOptions(cmd);
    struct Args {
      std::string name, file, source, target, description;
      std::vector<std::string> groups;
    };
    auto a = std::make_shared<Args>();
    cmd->add_option("name", a->name, "The plan's name (with the flags)");
    auto* file = cmd->add_option("--file,-f", a->file, "The plan's definition (docs/plans.md), as JSON");
    cmd->add_option("--source-site", a->source, "The site the machines run at")->excludes(file);
    cmd->add_option("--target-site", a->target, "The site they fail over to")->excludes(file);
    cmd->add_option("--description", a->description, "What the plan is for")->excludes(file);
    cmd->add_option("--group", a->groups, "NAME:MACHINE,MACHINE,… — once per group, in order (actions: use --file)")
        ->excludes(file);
    cmd->callback([=] {
      json body;
      if (!a->file.empty()) {
        if (!a->name.empty()) throw CLI::ValidationError("plan create: give NAME or --file, not both");
        body = ReadJsonFile(a->file);
      } else {
        if (a->name.empty() || a->source.empty() || a->target.empty() || a->groups.empty()) {
          throw CLI::ValidationError(
              "plan create: give --file FILE, or NAME --source-site S --target-site T --group NAME:m1,m2 …");
        }
        body = {{"name", a->name}, {"source_site", a->source}, {"target_site", a->target}, {"groups", json::array()}};
        if (!a->description.empty()) body["description"] = a->description;
        for (const std::string& g : a->groups) {
          size_t colon = g.find(':');
          json machines = json::array();
          if (colon != std::string::npos) {
            std::string list = g.substr(colon + 1);
            size_t start = 0;
            while (start <= list.size()) {
              size_t comma = list.find(',', start);
              if (comma == std::string::npos) comma = list.size();
              if (comma > start) machines.push_back(list.substr(start, comma - start));
              start = comma + 1;
            }
          }
          body["groups"].push_back({{"name", g.substr(0, colon)}, {"machines", machines}});
        }
      }
      ApiClient client = Connect(*o);
      json created = OrExit(client.Post("/plans", body), "creating plan " + body.value("name", std::string()));
      if (o->json()) return PrintJson(created);
      std::printf("%s\n", StringField(created, "id").c_str());
    });
  }
  {
    auto* cmd = plan->add_subcommand("replace", "Replace a plan's whole definition with a JSON file");
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    cmd->add_option("plan", *ref, "The plan's id or name")->required();
    cmd->add_option("--file,-f", *file, "The new definition (docs/plans.md), as JSON")->required();
    cmd->callback([=] {
      json body = ReadJsonFile(*file);
      ApiClient client = Connect(*o);
      json replaced = OrExit(client.Put(PlanPath(client, *ref), body), "replacing plan " + *ref);
      if (o->json()) return PrintJson(replaced);
      std::printf("%s\n", StringField(replaced, "id").c_str());
    });
  }
  {
    auto* cmd = plan->add_subcommand("delete", "Delete a plan (its machines and items stay)");
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    cmd->add_option("plan", *ref, "The plan's id or name")->required();
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      json answer = OrExit(client.Delete(PlanPath(client, *ref)), "deleting plan " + *ref);
      if (o->json()) PrintJson(answer);
    });
  }
  {
    auto* cmd = plan->add_subcommand(
        "readiness", "Check that the plan can fail over now; exit code 11 when it cannot, with every problem listed");
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    cmd->add_option("plan", *ref, "The plan's id or name")->required();
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      json r = OrExit(client.Get(PlanPath(client, *ref) + "/readiness"), "readiness of " + *ref);
      const bool ready = Field(r, "ready") == true;
      if (o->json()) {
        PrintJson(r);
      } else {
        std::printf("%s: %s (%s machines, checked at %s)\n", StringField(r, "name").c_str(),
                    ready ? "ready" : "NOT READY", Text(r, "machines").c_str(), Text(r, "checked_at").c_str());
        Table t{{"CHECK", "MACHINE", "ITEM", "PROBLEM", "TO DO"}, {}};
        const json& problems = Field(r, "problems");
        if (problems.is_array()) {
          for (const json& p : problems) {
            t.rows.push_back({Text(p, "check"), Text(p, "machine"), Text(p, "item"), Text(p, "message"),
                              Text(p, "action")});
          }
        }
        if (!t.rows.empty()) std::fputs(t.Format().c_str(), stdout);
      }
      std::fflush(stdout);
      if (!ready) throw Exit{exit_code::kNotReady};
    });
  }
}

// `ferry plan OPERATION PLAN [flags]` → POST /plans/ID/OPERATION with the flags given.
struct PlanFlag {
  const char* flag;
  const char* key;  // the body's field; "!planned": a flag that sends planned = false
  const char* help;
  bool is_bool = false;
};

struct PlanOperation {
  const char* verb;
  const char* help;
  std::vector<PlanFlag> flags;
};

void AddPlanOperation(CLI::App* plan, const PlanOperation& op) {
  auto* cmd = plan->add_subcommand(op.verb, op.help);
  auto o = AddVerbOptions(cmd);
  AddWaitFlag(cmd, o.get());
  auto ref = std::make_shared<std::string>();
  cmd->add_option("plan", *ref, "The plan's id or name")->required();
  auto strings = std::make_shared<std::map<std::string, std::string>>();
  std::vector<std::pair<std::string, CLI::Option*>> given;
  for (const PlanFlag& f : op.flags) {
    const std::string help = f.help;
    given.emplace_back(f.key, f.is_bool ? cmd->add_flag(f.flag, help) : cmd->add_option(f.flag, (*strings)[f.key], help));
  }
  const std::string verb = op.verb;
  cmd->callback([=] {
    json body = json::object();
    for (const auto& [key, opt] : given) {
      if (!opt->count()) continue;
      if (key[0] == '!') {
        body[key.substr(1)] = false;
      } else if (strings->count(key)) {
        body[key] = strings->at(key);
      } else {
        body[key] = true;
      }
    }
    ApiClient client = Connect(*o);
    const std::string path = PlanPath(client, *ref) + "/" + verb;
    ReportStartedJob(client, *o, OrExit(client.Post(path, body), verb + " " + *ref));
  });
}

}  // namespace

void AddPlanCommands(CLI::App& app) {
  auto* plan = app.add_subcommand("plan", "Recovery plans: ordered groups of machines with actions between them");
  plan->require_subcommand(1);
  AddDefinitionVerbs(plan);
  const PlanFlag point = {"--point", "point",
                          "latest, latest-processed, latest-app-consistent, latest-multi-machine, "
                          "latest-multi-machine-app-consistent, a point id or an RFC 3339 time"};
  const PlanFlag shutdown = {"--shutdown-source", "shutdown_source", "Shut the source machines down first", true};
  for (const PlanOperation& op : std::vector<PlanOperation>{
           {"test-failover",
            "Test-fail the plan over: every machine from a point, on an isolated network",
            {point, {"--network", "network", "Network for the test machines (default: isolated)"}}},
           {"cleanup-test-failover",
            "End the plan's test failover, discard its changes",
            {{"--notes", "notes", "What the test showed (kept with each item)"}}},
           {"failover",
            "Fail the plan over to its target site, group by group",
            {point, {"--planned", "planned", "Planned failover: replicate everything first, lose nothing", true},
             shutdown}},
           {"failback",
            "Fail the plan back (its items replicate in reverse); planned unless --unplanned",
            {point, {"--unplanned", "!planned", "An unplanned failback (from the latest point)", true}, shutdown}},
           {"commit", "Make the plan's failover final", {}},
           {"reprotect",
            "Replicate every machine of the plan back",
            {{"--location", "location", "original (delta only) or alternate (full copy)"}}},
       }) {
    AddPlanOperation(plan, op);
  }
}

}  // namespace ferry::cli
