// `ferry site|node|policy|machine ...`: the inventory the replicated items are built from.
// Creating these needs no work at the nodes, so the server answers at once (201).
#include <unistd.h>

#include <cstdio>

#include "cli/arguments.h"
#include "cli/commands.h"
#include "cli/control_verbs.h"
#include "cli/resolve.h"

namespace ferry::cli {

namespace {

// `ferry NOUN list [--limit N]` and `ferry NOUN show ID|NAME`.
void AddListAndShow(CLI::App* noun, const ResourceKind& kind, Table (*table)(const json&),
                    std::string (*details)(const json&)) {
  {
    auto* cmd = noun->add_subcommand("list", std::string("List the ") + kind.noun + "s");
    auto o = AddVerbOptions(cmd);
    auto limit = std::make_shared<int64_t>(0);
    cmd->add_option("--limit", *limit, "At most this many (default: all)")->check(CLI::PositiveNumber);
    cmd->callback([=, &kind] {
      ApiClient client = Connect(*o);
      PrintList(*o,
                OrExit(client.List(kind.collection, {}, *limit), std::string("listing ") + kind.noun + "s"),
                table);
    });
  }
  {
    auto* cmd = noun->add_subcommand("show", std::string("Show one ") + kind.noun);
    auto o = AddVerbOptions(cmd);
    auto ref = std::make_shared<std::string>();
    cmd->add_option("ref", *ref, std::string("The ") + kind.noun + "'s id or name")->required();
    cmd->callback([=, &kind] {
      ApiClient client = Connect(*o);
      PrintResource(*o, OrExit(Resolve(client, *ref, kind), *ref), details);
    });
  }
}

// Flag values checked at parse time, so that a malformed one is a usage error (exit 2).
const CLI::Validator kSeconds(
    [](std::string& text) {
      auto s = ParseSeconds(text);
      return s.ok() ? std::string() : std::string(s.status().message());
    },
    "SECONDS");
const CLI::Validator kDiskSpec(
    [](std::string& text) {
      auto d = ParseDiskSpec(text);
      return d.ok() ? std::string() : std::string(d.status().message());
    },
    "NAME=PATH[,size=BYTES]");

// Prints a created resource: its id (table) or the server's JSON.
void PrintCreated(const VerbOptions& o, const json& created) {
  if (o.json()) return PrintJson(created);
  std::printf("%s\n", StringField(created, "id").c_str());
}

void AddSiteCommands(CLI::App& app) {
  auto* site = app.add_subcommand("site", "Sites: the locations machines run at");
  site->require_subcommand(1);
  AddListAndShow(site, kSiteKind, SitesTable, SiteDetails);
  auto* cmd = site->add_subcommand("create", "Create a site");
  auto o = AddVerbOptions(cmd);
  auto name = std::make_shared<std::string>();
  cmd->add_option("name", *name, "The site's name (letters, digits, '-')")->required();
  cmd->callback([=] {
    ApiClient client = Connect(*o);
    PrintCreated(*o, OrExit(client.Post("/sites", json{{"name", *name}}), "creating site " + *name));
  });
}

// The `node` subcommand runs the node daemon (node_command.cc); list, show and enroll sit
// under it.
CLI::App* NodeCommand(CLI::App& app) {
  auto found = app.get_subcommands([](CLI::App* sub) { return sub->get_name() == "node"; });
  if (!found.empty()) return found.front();
  auto* node = app.add_subcommand("node", "Nodes");
  node->require_subcommand(1);
  return node;
}

void AddNodeCommands(CLI::App& app) {
  CLI::App* node = NodeCommand(app);
  AddListAndShow(node, kNodeKind, NodesTable, NodeDetails);
  auto* cmd = node->add_subcommand("enroll", "Make a one-time token for a new node of a site");
  auto o = AddVerbOptions(cmd);
  auto site = std::make_shared<std::string>();
  cmd->add_option("--site", *site, "The site the node belongs to (id or name)")->required();
  cmd->callback([=] {
    ApiClient client = Connect(*o);
    json s = OrExit(Resolve(client, *site, kSiteKind), *site);
    json answer = OrExit(client.Post("/nodes/enrollments", json{{"site", StringField(s, "name")}}),
                         "enrolling a node at " + *site);
    if (o->json()) return PrintJson(answer);
    std::printf("%s\n", StringField(answer, "token").c_str());
    if (isatty(STDERR_FILENO)) {
      std::fprintf(stderr,
                   "valid once, until %s: set it as [server] enroll_token in the node's configuration\n",
                   Text(answer, "expires_at").c_str());
    }
  });
}

void AddPolicyCommands(CLI::App& app) {
  auto* policy = app.add_subcommand("policy", "Replication policies: RPO threshold, retention, markers");
  policy->require_subcommand(1);
  AddListAndShow(policy, kPolicyKind, PoliciesTable, PolicyDetails);
  auto* cmd = policy->add_subcommand("create", "Create a policy (unset values take the server's defaults)");
  auto o = AddVerbOptions(cmd);
  struct Args {
    std::string name, rpo, app_interval, crash_interval, failback;
    int64_t retention_hours = 0;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("name", a->name, "The policy's name")->required();
  auto* rpo =
      cmd->add_option("--rpo-threshold", a->rpo, "RPO above which the item is unhealthy (60, 90s, 5m)")
          ->check(kSeconds);
  auto* retention =
      cmd->add_option("--retention-hours", a->retention_hours, "How long recovery points are kept")
          ->check(CLI::PositiveNumber);
  auto* app_interval =
      cmd->add_option("--app-interval", a->app_interval, "How often to take app-consistent points (3600, 1h)")
          ->check(kSeconds);
  auto* crash_interval = cmd->add_option("--crash-interval", a->crash_interval,
                                         "How often to mark crash-consistent points (5, 5s)")
                             ->check(kSeconds);
  auto* failback = cmd->add_option("--failback-policy", a->failback, "The policy for the reverse direction");
  cmd->callback([=] {
    json body = {{"name", a->name}};
    auto seconds = [](const std::string& text) { return *ParseSeconds(text); };  // checked by kSeconds
    if (rpo->count()) body["rpo_threshold_seconds"] = seconds(a->rpo);
    if (retention->count()) body["retention_hours"] = a->retention_hours;
    if (app_interval->count()) body["app_consistent_interval_seconds"] = seconds(a->app_interval);
    if (crash_interval->count()) body["crash_consistent_interval_seconds"] = seconds(a->crash_interval);
    ApiClient client = Connect(*o);
    if (failback->count()) {
      body["failback_policy"] =
          StringField(OrExit(Resolve(client, a->failback, kPolicyKind), a->failback), "id");
    }
    PrintCreated(*o, OrExit(client.Post("/policies", body), "creating policy " + a->name));
  });
}

void AddMachineCommands(CLI::App& app) {
  auto* machine = app.add_subcommand("machine", "Machines: the servers to protect and their disks");
  machine->require_subcommand(1);
  AddListAndShow(machine, kMachineKind, MachinesTable, MachineDetails);
  auto* cmd = machine->add_subcommand("create",
                                      "Describe a machine: its site, the node serving its disks, the disks");
  auto o = AddVerbOptions(cmd);
  struct Args {
    std::string name, site, node;
    std::vector<std::string> disks;
    std::string kernel, initrd, cmdline, probe_console, shutdown_qmp, shutdown_command, freeze, thaw;
    int64_t probe_tcp = 0, probe_timeout = 0, shutdown_timeout = -1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("name", a->name, "The machine's name")->required();
  cmd->add_option("--kernel", a->kernel, "Boot this kernel (a path on the nodes) instead of from the first disk");
  cmd->add_option("--initrd", a->initrd, "The initrd for --kernel");
  cmd->add_option("--cmdline", a->cmdline, "The kernel command line for --kernel");
  cmd->add_option("--probe-tcp", a->probe_tcp, "Started when this TCP port of the machine answers with a banner")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--probe-console", a->probe_console, "Started when a console line matches this ERE");
  cmd->add_option("--probe-timeout", a->probe_timeout, "Seconds a boot may take (default 600)")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--shutdown-qmp", a->shutdown_qmp,
                  "Power the machine off at its site through this QMP socket (before a failover)");
  cmd->add_option("--shutdown-command", a->shutdown_command,
                  "Power the machine off at its site with this command, run by its node (a physical server)");
  cmd->add_option("--freeze-command", a->freeze,
                  "Run by its node before an app-consistent point (quiesce the application)");
  cmd->add_option("--thaw-command", a->thaw, "Run by its node after an app-consistent point");
  cmd->add_option("--shutdown-timeout", a->shutdown_timeout, "Seconds a graceful power-off may take (default 60)")
      ->check(CLI::Range(0, 3600));
  cmd->add_option("--site", a->site, "The site it runs at (id or name)")->required();
  cmd->add_option("--node", a->node, "The node at that site that serves its disks (id or name)")->required();
  cmd->add_option("--disk", a->disks, "A disk: NAME=PATH[,size=BYTES] (size only to create the file); repeat")
      ->required()
      ->allow_extra_args(false)  // one disk per --disk, so that NAME may follow
      ->check(kDiskSpec);
  cmd->callback([=] {
    json disks = json::array();
    for (const std::string& text : a->disks) {
      auto d = ParseDiskSpec(text);  // checked by kDiskSpec
      json disk = {{"name", d->name}, {"path", d->path}};
      if (d->size) disk["size"] = d->size;
      disks.push_back(std::move(disk));
    }
    ApiClient client = Connect(*o);
    json site = OrExit(Resolve(client, a->site, kSiteKind), a->site);
    json node = OrExit(Resolve(client, a->node, kNodeKind), a->node);
    json body = {{"name", a->name},
                 {"site", StringField(site, "name")},
                 {"node", StringField(node, "id")},
                 {"disks", std::move(disks)}};
    json run = json::object();
    if (!a->kernel.empty()) run["boot"]["kernel"] = a->kernel;
    if (!a->initrd.empty()) run["boot"]["initrd"] = a->initrd;
    if (!a->cmdline.empty()) run["boot"]["cmdline"] = a->cmdline;
    if (a->probe_tcp) run["probe"]["tcp_port"] = a->probe_tcp;
    if (!a->probe_console.empty()) run["probe"]["console"] = a->probe_console;
    if (a->probe_timeout) run["probe"]["timeout_s"] = a->probe_timeout;
    if (!a->shutdown_qmp.empty()) run["shutdown"]["qmp"] = a->shutdown_qmp;
    if (!a->shutdown_command.empty()) run["shutdown"]["command"] = a->shutdown_command;
    if (a->shutdown_timeout >= 0) run["shutdown"]["timeout_s"] = a->shutdown_timeout;
    if (!a->freeze.empty()) run["hooks"]["freeze"] = a->freeze;
    if (!a->thaw.empty()) run["hooks"]["thaw"] = a->thaw;
    if (!run.empty()) body["run"] = std::move(run);
    PrintCreated(*o, OrExit(client.Post("/machines", body), "creating machine " + a->name));
  });
}

}  // namespace

void AddInventoryCommands(CLI::App& app) {
  AddSiteCommands(app);
  AddNodeCommands(app);
  AddPolicyCommands(app);
  AddMachineCommands(app);
}

}  // namespace ferry::cli
