// `ferry item list|show|update`, `ferry protect`, `ferry recovery-points` and the operations
// on a replicated item (test failover, failover, commit, reprotect, failback, ...). Every
// operation answers 202 with the job that carries it out (ReportStartedJob, --wait).
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/control_verbs.h"
#include "cli/resolve.h"

namespace ferry::cli {

namespace {

// A flag of an operation, sent as body[key] when given.
struct FlagSpec {
  enum Type { kString, kBool, kInt };
  const char* flag;
  const char* key;
  const char* help;
  Type type = kString;
  bool required = false;
  std::vector<std::string> choices = {};
};

// `ferry VERB ITEM [flags]`: METHOD /items/ID[/OPERATION] with the flags given as the body.
struct OperationSpec {
  const char* verb;
  const char* help;
  const char* method;     // "POST", "PATCH", "DELETE"
  const char* operation;  // the path after /items/ID/; nullptr: /items/ID itself
  std::vector<FlagSpec> flags;
  json fixed = json::object();  // body fields every call sends
  bool needs_a_flag = false;    // refuse a call that sets nothing (update)
  // Refuses the call before it is sent, from the item's state (a local kRefused error).
  std::function<std::optional<ApiError>(const json& item)> precheck = nullptr;
};

// Failback is the planned failover of an item that replicates in the reverse direction.
// The server would take a forward item for a plain planned failover, which is not what
// "failback" asks for, so it is refused here.
std::optional<ApiError> FailbackPrecheck(const json& item) {
  if (StringField(item, "direction") != "forward") return std::nullopt;
  std::string name = StringField(item, "name");
  return LocalError(
      "FailedPrecondition",
      name + " replicates forward (" + StringField(item, "source_site") + " -> " +
          StringField(item, "target_site") +
          "); failback is for an item replicating in reverse, after failover, commit and reprotect",
      "for a planned failover in the forward direction: ferry failover " + name + " --planned");
}

std::vector<OperationSpec> Operations() {
  using F = FlagSpec;
  return {
      {"test-failover",
       "Start the machine from a recovery point on an isolated network; replication goes on",
       "POST",
       "test-failover",
       {{"--point", "point", "Recovery point (default: latest-processed)"},
        {"--network", "network", "Network for the test machine (default: isolated)"}}},
      {"cleanup-test-failover",
       "Stop the test machine and discard its changes",
       "POST",
       "cleanup-test-failover",
       {{"--notes", "notes", "What the test showed (kept with the item)"}}},
      {"failover",
       "Start the machine at the target site from a recovery point",
       "POST",
       "failover",
       {{"--point", "point",
         "latest (default), latest-processed, latest-app-consistent, latest-crash-consistent, a point id, "
         "or an RFC 3339 time"},
        {"--shutdown-source", "shutdown_source", "Shut the source machine down first", F::kBool},
        {"--planned", "planned", "Planned failover: replicate everything first, lose nothing", F::kBool}}},
      {"change-recovery-point",
       "Fail over to another recovery point before committing",
       "POST",
       "change-recovery-point",
       {{"--point", "point", "The recovery point", F::kString, true}}},
      {"commit", "Make the failover final; the other recovery points go", "POST", "commit", {}},
      {"reprotect",
       "Replicate back from the failed-over machine to the original site",
       "POST",
       "reprotect",
       {{"--location", "location", "Where to replicate to", F::kString, false, {"original", "alternate"}},
        {"--disk-dir", "disk_dir", "Directory for the disks at an alternate location"}}},
      {"failback",
       "Fail back to the home site: planned failover of an item replicating in reverse",
       "POST",
       "failover",
       {{"--point", "point", "Recovery point (default: latest)"}},
       json{{"planned", true}},
       false,
       FailbackPrecheck},
      {"resync", "Compare source and target and copy what differs", "POST", "resync", {}},
      {"disable", "Stop protecting the machine; the item stays for history", "DELETE", nullptr, {}},
  };
}

// Values of the flags, kept alive for the callback.
struct FlagValues {
  // Indexed like OperationSpec::flags. A kBool flag needs no value: its count says it all.
  std::vector<std::string> strings;
  std::vector<int> ints;
};

void AddOperation(CLI::App* parent, OperationSpec spec) {
  auto* cmd = parent->add_subcommand(spec.verb, spec.help);
  auto o = AddVerbOptions(cmd);
  AddWaitFlag(cmd, o.get());
  auto ref = std::make_shared<std::string>();
  cmd->add_option("item", *ref, "The replicated item's id or name")->required();
  auto values = std::make_shared<FlagValues>();
  values->strings.resize(spec.flags.size());
  values->ints.resize(spec.flags.size());
  std::vector<CLI::Option*> options;
  for (size_t i = 0; i < spec.flags.size(); ++i) {
    const FlagSpec& f = spec.flags[i];
    CLI::Option* opt = nullptr;
    switch (f.type) {
      case FlagSpec::kString: opt = cmd->add_option(f.flag, values->strings[i], f.help); break;
      case FlagSpec::kInt: opt = cmd->add_option(f.flag, values->ints[i], f.help); break;
      case FlagSpec::kBool: opt = cmd->add_flag(f.flag, f.help); break;
    }
    if (f.required) opt->required();
    if (!f.choices.empty()) opt->check(CLI::IsMember(f.choices));
    options.push_back(opt);
  }
  cmd->callback([=] {
    json body = spec.fixed;
    for (size_t i = 0; i < spec.flags.size(); ++i) {
      if (!options[i]->count()) continue;
      const FlagSpec& f = spec.flags[i];
      switch (f.type) {
        case FlagSpec::kString: body[f.key] = values->strings[i]; break;
        case FlagSpec::kInt: body[f.key] = values->ints[i]; break;
        case FlagSpec::kBool: body[f.key] = true; break;
      }
    }
    if (spec.needs_a_flag && body.empty()) {
      std::string flags;
      for (const FlagSpec& f : spec.flags) flags += (flags.empty() ? "" : ", ") + std::string(f.flag);
      throw CLI::ValidationError(std::string(spec.verb) + ": nothing to change; give at least one of " +
                                 flags);
    }
    ApiClient client = Connect(*o);
    json item = OrExit(Resolve(client, *ref, kItemKind), *ref);
    if (spec.precheck) {
      if (auto refused = spec.precheck(item)) FailWith(*refused, std::string(spec.verb) + " " + *ref);
    }
    std::string path = "/items/" + UrlEncode(StringField(item, "id"));
    if (spec.operation) path += std::string("/") + spec.operation;
    const std::string method = spec.method;
    ApiOr<json> answer = method == "DELETE"  ? client.Delete(path)
                         : method == "PATCH" ? client.Patch(path, body)
                                             : client.Post(path, body);
    ReportStartedJob(client, *o, OrExit(std::move(answer), std::string(spec.verb) + " " + *ref));
  });
}

void AddItemNoun(CLI::App& app) {
  auto* item =
      app.add_subcommand("item", "Replicated items: one machine's protection from one site to the other");
  item->require_subcommand(1);
  {
    auto* cmd = item->add_subcommand("list", "List the replicated items");
    auto o = AddVerbOptions(cmd);
    auto state = std::make_shared<std::string>();
    auto site = std::make_shared<std::string>();
    auto limit = std::make_shared<int64_t>(0);
    cmd->add_option("--state", *state, "Only items in this state (Protected, FailedOver, ...)");
    cmd->add_option("--site", *site, "Only items of this site (id or name)");
    cmd->add_option("--limit", *limit, "At most this many (default: all)")->check(CLI::PositiveNumber);
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      std::string site_name;
      if (!site->empty()) site_name = StringField(OrExit(Resolve(client, *site, kSiteKind), *site), "name");
      PrintList(
          *o,
          OrExit(client.List("/items", {{"state", *state}, {"site", site_name}}, *limit), "listing items"),
          ItemsTable);
    });
  }
  {
    auto* cmd = item->add_subcommand("show", "Show a replicated item: state, health, settings, disks");
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    cmd->add_option("item", *ref, "The replicated item's id or name")->required();
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      json found = OrExit(Resolve(client, *ref, kItemKind), *ref);
      // A list entry may be a summary; the item's own resource has everything.
      json full = OrExit(client.Get("/items/" + UrlEncode(StringField(found, "id"))), *ref);
      PrintResource(*o, full, ItemDetails);
    });
  }
  {
    auto* cmd = item->add_subcommand("console", "Show the serial console of the machine a launcher runs for the item");
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    auto test = std::make_shared<bool>(false);
    auto follow = std::make_shared<bool>(false);
    cmd->add_option("item", *ref, "The replicated item's id or name")->required();
    cmd->add_flag("--test", *test, "The test-failover machine instead of the running one");
    cmd->add_flag("--follow,-f", *follow, "Keep printing new lines until interrupted");
    cmd->callback([=] {
      ApiClient client = Connect(*o);
      json found = OrExit(Resolve(client, *ref, kItemKind), *ref);
      const std::string base = "/items/" + UrlEncode(StringField(found, "id")) + "/console?machine=" +
                               (*test ? "test" : "running") + "&offset=";
      int64_t offset = 0;
      for (;;) {
        json page = OrExit(client.Get(base + std::to_string(offset)), "console of " + *ref);
        if (o->json()) {
          std::cout << page.dump(2) << "\n";
          return;
        }
        std::cout << page.value("text", "") << std::flush;
        const int64_t next = page.value("next", offset);
        if (next == offset && !*follow) return;
        if (next == offset) std::this_thread::sleep_for(std::chrono::milliseconds(500));
        offset = next;
      }
    });
  }
  using F = FlagSpec;
  AddOperation(item, {"update",
                      "Change how the machine runs at the target (a job applies it)",
                      "PATCH",
                      nullptr,
                      {{"--target-name", "target_name", "The machine's name at the target"},
                       {"--cpus", "cpus", "CPUs (1 to 64)", F::kInt},
                       {"--memory-mib", "memory_mib", "Memory in MiB (64 to 1048576)", F::kInt},
                       {"--network", "network", "The network at the target"},
                       {"--ip", "ip_address", "IPv4 address at the target"}},
                      json::object(),
                      true});
}

void AddProtect(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("protect", "Start replicating a machine to another site (a new replicated item)");
  auto o = AddVerbOptions(cmd);
  AddWaitFlag(cmd, o.get());
  struct Args {
    std::string machine, target_site, target_node, policy, name, group;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("machine", a->machine, "The machine's id or name")->required();
  cmd->add_option("--target-site", a->target_site, "The site to replicate to (id or name)")->required();
  cmd->add_option("--target-node", a->target_node, "The node there (default: the site's healthiest)");
  cmd->add_option("--policy", a->policy, "The replication policy (default: default)");
  cmd->add_option("--name", a->name, "The item's name (default: the machine's)");
  cmd->add_option("--consistency-group", a->group,
                  "Join this consistency group (its name; a new name creates it)");
  cmd->callback([=] {
    ApiClient client = Connect(*o);
    json body = {
        {"machine", StringField(OrExit(Resolve(client, a->machine, kMachineKind), a->machine), "id")},
        {"target_site",
         StringField(OrExit(Resolve(client, a->target_site, kSiteKind), a->target_site), "name")},
    };
    if (!a->target_node.empty()) {
      body["target_node"] =
          StringField(OrExit(Resolve(client, a->target_node, kNodeKind), a->target_node), "id");
    }
    if (!a->policy.empty()) {
      body["policy"] = StringField(OrExit(Resolve(client, a->policy, kPolicyKind), a->policy), "id");
    }
    if (!a->name.empty()) body["name"] = a->name;
    if (!a->group.empty()) body["consistency_group"] = a->group;
    ReportStartedJob(client, *o, OrExit(client.Post("/items", body), "protecting " + a->machine));
  });
}

void AddRecoveryPoints(CLI::App& app) {
  auto* cmd = app.add_subcommand("recovery-points", "List an item's recovery points, newest first");
  auto o = AddVerbOptions(cmd);
  struct Args {
    std::string item, kind, before, after;
    int64_t limit = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("item", a->item, "The replicated item's id or name")->required();
  cmd->add_option("--kind", a->kind, "Only this kind (app-consistent, crash-consistent, ...)");
  cmd->add_option("--limit", a->limit, "At most this many (default: all)")->check(CLI::PositiveNumber);
  cmd->add_option("--before", a->before, "Only points before this RFC 3339 time");
  cmd->add_option("--after", a->after, "Only points after this RFC 3339 time");
  cmd->callback([=] {
    ApiClient client = Connect(*o);
    json item = OrExit(Resolve(client, a->item, kItemKind), a->item);
    std::string path = "/items/" + UrlEncode(StringField(item, "id")) + "/recovery-points";
    json points =
        OrExit(client.List(path, {{"kind", a->kind}, {"before", a->before}, {"after", a->after}}, a->limit),
               "recovery points of " + a->item);
    PrintList(*o, points, RecoveryPointsTable);
  });
}

}  // namespace

void AddItemCommands(CLI::App& app) {
  AddItemNoun(app);
  AddProtect(app);
  AddRecoveryPoints(app);
  for (OperationSpec& spec : Operations()) AddOperation(&app, std::move(spec));
}

}  // namespace ferry::cli
