// `ferry group list|show|create|add|remove|delete`: consistency groups, the items that
// recover to the same instant (docs/plans.md). The server answers at once; its group points
// are taken in the background, and `show` tells how they go (last point, hold times,
// problems).
#include <cstdio>

#include "cli/commands.h"
#include "cli/control_verbs.h"
#include "cli/resolve.h"

namespace ferry::cli {

namespace {

constexpr ResourceKind kGroupKind{"consistency group", "/consistency-groups", "cg-", "ferry group list"};

std::string HoldText(const json& group) {
  const json& h = Field(group, "hold_ms");
  if (!h.is_object()) return "-";
  auto ms = [&](const char* k) { return Field(h, k).is_number() ? std::to_string(Field(h, k).get<double>()).substr(0, 6) : "-"; };
  return "p50 " + ms("p50") + " ms, p99 " + ms("p99") + " ms, max " + ms("max") + " ms (last " + Text(h, "points") +
         " points)";
}

std::string LastPointText(const json& group) {
  const json& p = Field(group, "last_point");
  if (!p.is_object()) return "-";
  const json& app = Field(p, "app_consistent");
  return Text(p, "marker_id") + " at " + Text(p, "time") + (app.is_boolean() && app.get<bool>() ? " (app-consistent)" : "");
}

Table GroupsTable(const json& items) {
  Table t{{"ID", "NAME", "MEMBERS", "INTERVAL", "LAST-POINT", "PROBLEMS"}, {}};
  if (!items.is_array()) return t;
  for (const json& g : items) {
    const json& members = Field(g, "members");
    const json& problems = Field(g, "problems");
    t.rows.push_back({Text(g, "id"), Text(g, "name"), std::to_string(members.is_array() ? members.size() : 0),
                      FormatSeconds(Field(g, "interval_s")), Text(Field(g, "last_point"), "marker_id"),
                      std::to_string(problems.is_array() ? problems.size() : 0)});
  }
  return t;
}

std::string GroupDetails(const json& group) {
  const json& common = Field(group, "latest_common_point");
  std::string text = KeyValues({
      {"id", Text(group, "id")},
      {"name", Text(group, "name")},
      {"interval", FormatSeconds(Field(group, "interval_s"))},
      {"app-consistent interval", FormatSeconds(Field(group, "app_interval_s"))},
      {"last point", LastPointText(group)},
      {"hold", HoldText(group)},
      {"latest common point", common.is_object() ? Text(common, "marker_id") + " at " + Text(common, "time") : "-"},
      {"problems", Text(group, "problems")},
      {"created", Text(group, "created_at")},
  });
  Table members{{"ITEM", "NAME", "STATE"}, {}};
  const json& ms = Field(group, "members");
  if (ms.is_array()) {
    for (const json& m : ms) members.rows.push_back({Text(m, "item"), Text(m, "name"), Text(m, "state")});
  }
  if (!members.rows.empty()) text += "\n" + members.Format();
  return text;
}

std::string ItemId(ApiClient& client, const std::string& ref) {
  return StringField(OrExit(Resolve(client, ref, kItemKind), ref), "id");
}

std::string GroupPath(ApiClient& client, const std::string& ref) {
  return "/consistency-groups/" + UrlEncode(StringField(OrExit(Resolve(client, ref, kGroupKind), ref), "id"));
}

void AddListAndShow(CLI::App* group) {
  auto* list = group->add_subcommand("list", "List the consistency groups");
  auto lo = AddVerbOptions(list);
  list->callback([lo] {
    ApiClient client = Connect(*lo);
    PrintList(*lo, OrExit(client.List("/consistency-groups"), "listing consistency groups"), GroupsTable);
  });
  auto* show = group->add_subcommand("show", "Show a group: members, last point, hold times, problems");
  auto so = AddVerbOptions(show);
  auto ref = std::make_shared<std::string>();
  show->add_option("group", *ref, "The group's id or name")->required();
  show->callback([so, ref] {
    ApiClient client = Connect(*so);
    PrintResource(*so, OrExit(Resolve(client, *ref, kGroupKind), *ref), GroupDetails);
  });
}

void AddCreate(CLI::App* group) {
  auto* cmd = group->add_subcommand("create", "Create a group, with members or empty");
  auto o = AddVerbOptions(cmd);
  auto name = std::make_shared<std::string>();
  auto members = std::make_shared<std::vector<std::string>>();
  cmd->add_option("name", *name, "The group's name (letters, digits, '-')")->required();
  cmd->add_option("--member", *members, "A replicated item (id or name) that joins; repeat")->allow_extra_args(false);
  cmd->callback([o, name, members] {
    ApiClient client = Connect(*o);
    json ids = json::array();
    for (const std::string& m : *members) ids.push_back(ItemId(client, m));
    json created = OrExit(client.Post("/consistency-groups", json{{"name", *name}, {"members", ids}}),
                          "creating consistency group " + *name);
    if (o->json()) return PrintJson(created);
    std::printf("%s\n", StringField(created, "id").c_str());
  });
}

void AddMembership(CLI::App* group) {
  struct Args {
    std::string group, item;
  };
  for (bool add : {true, false}) {
    auto* cmd = group->add_subcommand(add ? "add" : "remove",
                                      add ? "Add a replicated item to a group" : "Take an item out of a group");
    auto o = AddVerbOptions(cmd);
    auto a = std::make_shared<Args>();
    cmd->add_option("group", a->group, "The group's id or name")->required();
    cmd->add_option("item", a->item, "The replicated item's id or name")->required();
    cmd->callback([o, a, add] {
      ApiClient client = Connect(*o);
      const std::string path = GroupPath(client, a->group) + "/members";
      const std::string item = ItemId(client, a->item);
      json g = add ? OrExit(client.Post(path, json{{"item", item}}), "adding " + a->item + " to " + a->group)
                   : OrExit(client.Delete(path + "/" + UrlEncode(item)), "removing " + a->item + " from " + a->group);
      PrintResource(*o, g, GroupDetails);
    });
  }
}

void AddDelete(CLI::App* group) {
  auto* cmd = group->add_subcommand("delete", "Delete a group; its members stay protected, outside any group");
  auto o = AddVerbOptions(cmd);
  auto ref = std::make_shared<std::string>();
  cmd->add_option("group", *ref, "The group's id or name")->required();
  cmd->callback([o, ref] {
    ApiClient client = Connect(*o);
    json answer = OrExit(client.Delete(GroupPath(client, *ref)), "deleting " + *ref);
    if (o->json()) PrintJson(answer);
  });
}

}  // namespace

void AddGroupCommands(CLI::App& app) {
  auto* group = app.add_subcommand("group", "Consistency groups: items that recover to the same instant");
  group->require_subcommand(1);
  AddListAndShow(group);
  AddCreate(group);
  AddMembership(group);
  AddDelete(group);
}

}  // namespace ferry::cli
