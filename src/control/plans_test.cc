#include "control/plans.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "control/controller.h"
#include "control/errors.h"
#include "control/fields.h"
#include "control/plan_actions.h"
#include "env/scratch_dir_test_util.h"

namespace ferry::control {
namespace {

// An in-process control plane on an in-memory SQLite store, with sites primary and recovery,
// node-a (primary) and node-b (recovery) whose command interfaces do not answer (port 1),
// and machines web1, web2, db1 at primary and far1 at recovery.
class PlansTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = store::OpenSqlite(":memory:");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    auto c = Controller::Open(std::move(*db), SystemClock::Default());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    ctl_ = std::move(*c);
    for (const char* s : {"primary", "recovery"}) Must(inv().CreateSite({{"name", s}}));
    node_a_ = AddNode("node-a", "primary");
    node_b_ = AddNode("node-b", "recovery");
    for (const char* m : {"web1", "web2", "db1"}) AddMachine(m, "primary", "node-a");
    AddMachine("far1", "recovery", "node-b");
  }

  Inventory& inv() { return ctl_->inventory(); }
  Plans& plans() { return ctl_->plans(); }

  json Must(Result<json> r) {
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : json();
  }
  int64_t AddNode(const std::string& name, const std::string& site) {
    json token = Must(inv().CreateEnrollment({{"site", site}}));
    json node = Must(inv().RegisterNode({{"token", token["token"]}, {"name", name}, {"site", site},
                                         {"api_url", "http://127.0.0.1:1"}, {"api_token", "t"},
                                         {"link_address", "127.0.0.1:1"}, {"nbd", json::array()}}));
    return ParseId("node", node["node"]["id"].get<std::string>());
  }
  int64_t AddMachine(const std::string& name, const std::string& site, const std::string& node) {
    json m = Must(inv().CreateMachine({{"name", name}, {"site", site}, {"node", node},
                                       {"disks", {{{"name", "disk0"}, {"path", "/dev/null"}, {"size", 1 << 30}}}}}));
    return ParseId("mach", m["id"].get<std::string>());
  }
  int64_t MachineId(const std::string& name) {
    auto id = inv().MachineId(ctl_->db(), name);
    EXPECT_TRUE(id.ok());
    return id.ok() ? *id : 0;
  }
  // An item as the workflows would have left it (the enable job itself needs real nodes).
  int64_t AddItem(const std::string& machine, const std::string& state, const std::string& health = "Healthy",
                  json problems = json::array(), bool reverse = false, json props = nullptr) {
    int64_t id = *store::NextId(ctl_->db(), "items");
    int64_t primary = *inv().SiteId(ctl_->db(), "primary");
    int64_t recovery = *inv().SiteId(ctl_->db(), "recovery");
    if (props.is_null()) {
      props = {{"target_name", machine}, {"cpus", 1}, {"memory_mib", 512}, {"network", "default"}, {"ip_address", ""}};
    }
    json disks = {{{"name", "disk0"}, {"volume", machine + ".disk0"}, {"size", 1 << 30}, {"path", "/dev/null"}}};
    Status s = ctl_->db()
                   .Exec("INSERT INTO items (id, name, machine_id, state, direction, active_site_id, source_site_id, "
                         "target_site_id, source_node_id, target_node_id, policy_id, health, problems, rpo_seconds, "
                         "properties, disks, live, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, "
                         "$8, $9, 1, $10, $11, NULL, $12, $13, '{}', 'now', 'now')",
                         {id, machine, MachineId(machine), state, reverse ? "reverse" : "forward",
                          reverse ? recovery : primary, reverse ? primary : recovery, reverse ? node_b_ : node_a_,
                          reverse ? node_a_ : node_b_, health, problems.dump(), props.dump(), disks.dump()})
                   .status();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return id;
  }
  json Body(json groups) {
    return {{"name", "shop"}, {"source_site", "primary"}, {"target_site", "recovery"}, {"groups", std::move(groups)}};
  }
  int64_t PlanCount() { return (*ctl_->db().Query("SELECT COUNT(*) FROM plans"))[0].Int(0); }

  std::unique_ptr<Controller> ctl_;
  int64_t node_a_ = 0, node_b_ = 0;
};

TEST_F(PlansTest, CreateFillsInDefaultsAndShowsMembersInOrder) {
  AddItem("db1", "Protected");
  json body = Body({{{"name", "db"},
                     {"machines", {"db1"}},
                     {"pre", {{{"kind", "script"}, {"name", "stop-app"}, {"command", "/bin/true --fast"}}}},
                     {"post", {{{"kind", "manual"}, {"name", "call-dba"}, {"instructions", "Ask the DBA"},
                                {"types", {"unplanned", "planned"}}, {"directions", {"forward"}}}}}},
                    {{"name", "web"}, {"machines", {"web2", "mach-1"}}}});
  body["description"] = "the shop";
  json p = Must(plans().Create(body));
  EXPECT_EQ(p["id"], "plan-1");
  EXPECT_EQ(p["name"], "shop");
  EXPECT_EQ(p["description"], "the shop");
  EXPECT_EQ(p["source_site"], "primary");
  EXPECT_EQ(p["target_site"], "recovery");
  EXPECT_EQ(p["machine_count"], 3);
  EXPECT_EQ(p["active_job"], nullptr);
  EXPECT_EQ(p["last_operation"], nullptr);
  ASSERT_EQ(p["groups"].size(), 2u);
  EXPECT_EQ(p["groups"][0]["index"], 1);
  EXPECT_EQ(p["groups"][0]["machines"], json::parse(R"([{"machine": "db1", "item": "item-1", "state": "Protected"}])"));
  EXPECT_EQ(p["groups"][1]["index"], 2);
  EXPECT_EQ(p["groups"][1]["machines"], json::parse(R"([{"machine": "web2", "item": null, "state": null},
                                                        {"machine": "web1", "item": null, "state": null}])"));
  EXPECT_EQ(p["groups"][0]["pre"][0],
            json::parse(R"({"kind": "script", "name": "stop-app", "command": "/bin/true --fast", "node": "",
                            "timeout_s": 300, "on_failure": "", "types": ["test", "planned", "unplanned"],
                            "directions": ["forward", "reverse"]})"));
  EXPECT_EQ(p["groups"][0]["post"][0],
            json::parse(R"({"kind": "manual", "name": "call-dba", "instructions": "Ask the DBA",
                            "types": ["planned", "unplanned"], "directions": ["forward"]})"));
  EXPECT_EQ(p["groups"][1]["pre"], json::array());
  EXPECT_EQ(Must(plans().Get("shop")), p);
  EXPECT_EQ(Must(plans().Get("plan-1")), p);
  auto missing = plans().Get("plan-9");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);

  auto rec = plans().Load(ctl_->db(), 1);
  ASSERT_TRUE(rec.ok());
  ASSERT_EQ(rec->members.size(), 3u);
  EXPECT_EQ(rec->members[0].machine, "db1");
  EXPECT_EQ(rec->members[0].item_id, 1);
  EXPECT_EQ(rec->members[1].machine, "web2");
  EXPECT_EQ(rec->members[1].group_idx, 1);
  EXPECT_EQ(rec->members[2].machine, "web1");
  EXPECT_EQ(rec->members[2].item_id, 0);
}

TEST_F(PlansTest, LoadIgnoresDisabledItems) {
  int64_t old = AddItem("web1", "Protected");
  ASSERT_TRUE(ctl_->db().Exec("UPDATE items SET state = 'Disabled' WHERE id = $1", {old}).ok());
  Must(plans().Create(Body({{{"name", "web"}, {"machines", {"web1"}}}})));
  EXPECT_EQ(plans().Load(ctl_->db(), 1)->members[0].item_id, 0);
  int64_t now = AddItem("web1", "InitialSync");
  EXPECT_EQ(plans().Load(ctl_->db(), 1)->members[0].item_id, now);
  EXPECT_EQ(Must(plans().Get("shop"))["groups"][0]["machines"][0]["state"], "InitialSync");
}

TEST_F(PlansTest, ListPages) {
  for (const char* name : {"a1", "a2", "a3"}) {
    json b = Body({{{"name", "g"}, {"machines", {"web1"}}}});
    b["name"] = name;
    Must(plans().Create(b));
  }
  json first = Must(plans().List(Page{2, 0}));
  ASSERT_EQ(first["items"].size(), 2u);
  EXPECT_EQ(first["items"][0]["name"], "a1");
  EXPECT_EQ(first["next_page_token"], "2");
  json second = Must(plans().List(Page{2, 2}));
  ASSERT_EQ(second["items"].size(), 1u);
  EXPECT_EQ(second["items"][0]["name"], "a3");
  EXPECT_EQ(second["next_page_token"], "");
}

TEST_F(PlansTest, ReplaceAndDelete) {
  Must(plans().Create(Body({{{"name", "db"}, {"machines", {"db1", "web1"}}}})));
  json b = Body({{{"name", "web"}, {"machines", {"web1"}}}, {{"name", "db"}, {"machines", {"db1", "web2"}}}});
  b["name"] = "shop2";
  json p = Must(plans().Replace("shop", b));
  EXPECT_EQ(p["id"], "plan-1");
  EXPECT_EQ(p["name"], "shop2");
  EXPECT_EQ(p["machine_count"], 3);
  EXPECT_EQ(p["groups"][0]["machines"][0]["machine"], "web1");
  EXPECT_EQ(p["groups"][1]["machines"][1]["machine"], "web2");
  // A refused replacement changes nothing.
  json bad = Body({{{"name", "db"}, {"machines", {"far1"}}}});
  EXPECT_EQ(plans().Replace("plan-1", bad).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Must(plans().Get("plan-1")), p);
  // Another plan's name is taken.
  json other = Body({{{"name", "g"}, {"machines", {"web1"}}}});
  other["name"] = "other";
  Must(plans().Create(other));
  EXPECT_EQ(plans().Replace("other", b).status().code(), Code::kAlreadyExists);

  ASSERT_TRUE(plans().Delete("shop2").ok());
  EXPECT_EQ(plans().Get("shop2").status().code(), Code::kNotFound);
  EXPECT_EQ(plans().Delete("shop2").code(), Code::kNotFound);
  EXPECT_EQ((*ctl_->db().Query("SELECT COUNT(*) FROM plan_members WHERE plan_id = 1"))[0].Int(0), 0);
}

TEST_F(PlansTest, ReplaceAndDeleteRefusedWhileAJobRuns) {
  Must(plans().Create(Body({{{"name", "db"}, {"machines", {"db1"}}}})));
  ASSERT_TRUE(ctl_->db().Exec("UPDATE plans SET active_job_id = 7 WHERE id = 1").ok());
  EXPECT_EQ(Must(plans().Get("shop"))["active_job"], "job-7");
  auto r = plans().Replace("shop", Body({{{"name", "web"}, {"machines", {"web1"}}}}));
  ASSERT_EQ(r.status().code(), Code::kFailedPrecondition);
  ErrorParts e = Describe(r.status());
  EXPECT_EQ(e.message, "plan 'shop' has a job running: job-7; it cannot be replaced");
  EXPECT_NE(e.action.find("ferry job watch job-7"), std::string::npos) << e.action;
  Status d = plans().Delete("shop");
  ASSERT_EQ(d.code(), Code::kFailedPrecondition);
  EXPECT_EQ(Describe(d).message, "plan 'shop' has a job running: job-7; it cannot be deleted");
  EXPECT_EQ(Must(plans().Get("shop"))["groups"][0]["machines"][0]["machine"], "db1");
}

struct BadCase {
  const char* what;
  std::function<void(json&)> change;
  Code code;
  std::string message;  // a substring of the error message
};

TEST_F(PlansTest, ValidationErrorsNameTheFieldAndStoreNothing) {
  Must(plans().Create([&] {
    json b = Body({{{"name", "g"}, {"machines", json::array()}}});
    b["name"] = "taken";
    return b;
  }()));
  auto script = [](json a = json::object()) {
    json s = {{"kind", "script"}, {"name", "s1"}, {"command", "/bin/true"}};
    s.update(a);
    return s;
  };
  const std::vector<BadCase> cases = {
      {"bad name", [](json& b) { b["name"] = "9lives"; }, Code::kInvalidArgument, "plan name '9lives' is not valid"},
      {"name taken", [](json& b) { b["name"] = "taken"; }, Code::kAlreadyExists, "named 'taken' exists"},
      {"unknown field", [](json& b) { b["colour"] = "red"; }, Code::kInvalidArgument, "unknown field 'colour'"},
      {"no name", [](json& b) { b.erase("name"); }, Code::kInvalidArgument, "field 'name' is required"},
      {"long description", [](json& b) { b["description"] = std::string(4097, 'x'); }, Code::kInvalidArgument,
       "field 'description'"},
      {"same sites", [](json& b) { b["target_site"] = "site-1"; }, Code::kInvalidArgument,
       "field 'target_site' must differ"},
      {"unknown site", [](json& b) { b["target_site"] = "mars"; }, Code::kNotFound, "no site 'mars'"},
      {"no groups", [](json& b) { b["groups"] = json::array(); }, Code::kInvalidArgument, "field 'groups'"},
      {"group not object", [](json& b) { b["groups"][0] = "db"; }, Code::kInvalidArgument, "groups[0] must be"},
      {"group name", [](json& b) { b["groups"][0]["name"] = "a b"; }, Code::kInvalidArgument,
       "groups[0]: group name 'a b' is not valid"},
      {"group field", [](json& b) { b["groups"][0]["order"] = 1; }, Code::kInvalidArgument,
       "groups[0]: unknown field 'order'"},
      {"same group names", [](json& b) { b["groups"][1]["name"] = "db"; }, Code::kInvalidArgument,
       "two groups are named 'db'"},
      {"machines not array", [](json& b) { b["groups"][0]["machines"] = "db1"; }, Code::kInvalidArgument,
       "group 'db': field 'machines' must be an array"},
      {"unknown machine", [](json& b) { b["groups"][0]["machines"].push_back("nope"); }, Code::kNotFound,
       "group 'db': field 'machines': no machine 'nope'"},
      {"wrong site", [](json& b) { b["groups"][0]["machines"].push_back("far1"); }, Code::kInvalidArgument,
       "group 'db': machine 'far1' is at site 'recovery', not at the plan's source site 'primary'"},
      {"two groups", [](json& b) { b["groups"][1]["machines"].push_back("mach-3"); }, Code::kInvalidArgument,
       "machine 'db1' is in group 'db' and in group 'web'; a machine may be in one group of a plan"},
      {"twice in a group", [](json& b) { b["groups"][0]["machines"].push_back("db1"); }, Code::kInvalidArgument,
       "group 'db': machine 'db1' is listed twice"},
      {"pre not array", [](json& b) { b["groups"][0]["pre"] = json::object(); }, Code::kInvalidArgument,
       "group 'db': field 'pre' must be an array"},
      {"action kind", [&](json& b) { b["groups"][0]["pre"] = {script({{"kind", "robot"}})}; }, Code::kInvalidArgument,
       "group 'db' pre[0]: field 'kind' must be 'script' or 'manual'"},
      {"action name", [&](json& b) { b["groups"][0]["pre"] = {script({{"name", ""}})}; }, Code::kInvalidArgument,
       "group 'db' pre[0]: action name '' is not valid"},
      {"no command", [&](json& b) { b["groups"][0]["pre"] = {script({{"command", nullptr}})}; }, Code::kInvalidArgument,
       "group 'db' pre action 's1': field 'command' is required"},
      {"blank command", [&](json& b) { b["groups"][0]["pre"] = {script({{"command", "  "}})}; }, Code::kInvalidArgument,
       "group 'db' pre action 's1': field 'command' must not be empty"},
      {"timeout 0", [&](json& b) { b["groups"][0]["post"] = {script({{"timeout_s", 0}})}; }, Code::kInvalidArgument,
       "group 'db' post action 's1': field 'timeout_s' must be from 1 to 86400, not 0"},
      {"timeout type", [&](json& b) { b["groups"][0]["post"] = {script({{"timeout_s", "5"}})}; },
       Code::kInvalidArgument, "field 'timeout_s' must be an integer"},
      {"on_failure", [&](json& b) { b["groups"][0]["pre"] = {script({{"on_failure", "retry"}})}; },
       Code::kInvalidArgument, "field 'on_failure' must be 'continue' or 'stop'"},
      {"types", [&](json& b) { b["groups"][0]["pre"] = {script({{"types", {"test", "drill"}}})}; },
       Code::kInvalidArgument, "group 'db' pre action 's1': field 'types' holds \"drill\""},
      {"no types", [&](json& b) { b["groups"][0]["pre"] = {script({{"types", json::array()}})}; },
       Code::kInvalidArgument, "field 'types' must be a non-empty array"},
      {"directions", [&](json& b) { b["groups"][0]["pre"] = {script({{"directions", {"sideways"}}})}; },
       Code::kInvalidArgument, "field 'directions' holds \"sideways\""},
      {"unknown node", [&](json& b) { b["groups"][0]["pre"] = {script({{"node", "node-z"}})}; }, Code::kNotFound,
       "group 'db' pre action 's1': field 'node': no node 'node-z'"},
      {"unknown action field", [&](json& b) { b["groups"][0]["pre"] = {script({{"retries", 3}})}; },
       Code::kInvalidArgument, "group 'db' pre action 's1': unknown field 'retries'"},
      {"command on manual",
       [&](json& b) {
         b["groups"][0]["pre"] = {{{"kind", "manual"}, {"name", "m"}, {"instructions", "x"}, {"command", "/bin/true"}}};
       },
       Code::kInvalidArgument, "group 'db' pre action 'm': unknown field 'command'"},
      {"no instructions", [&](json& b) { b["groups"][0]["pre"] = {{{"kind", "manual"}, {"name", "m"}}}; },
       Code::kInvalidArgument, "group 'db' pre action 'm': field 'instructions' is required"},
      {"long instructions",
       [&](json& b) {
         b["groups"][0]["pre"] = {{{"kind", "manual"}, {"name", "m"}, {"instructions", std::string(4097, 'i')}}};
       },
       Code::kInvalidArgument, "field 'instructions' must hold 1 to 4096 bytes"},
      {"same action names", [&](json& b) { b["groups"][0]["pre"] = {script(), script()}; }, Code::kInvalidArgument,
       "group 'db': two pre actions are named 's1'"},
  };
  for (const BadCase& c : cases) {
    json body = Body({{{"name", "db"}, {"machines", {"db1"}}}, {{"name", "web"}, {"machines", {"web1"}}}});
    c.change(body);
    auto r = plans().Create(body);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), c.code) << c.what << ": " << r.status().ToString();
    EXPECT_NE(Describe(r.status()).message.find(c.message), std::string::npos)
        << c.what << ": " << Describe(r.status()).message;
    EXPECT_EQ(PlanCount(), 1) << c.what;
  }
  // The same action name may be used once in pre and once in post, and in other groups.
  json ok = Body({{{"name", "db"}, {"machines", {"db1"}}, {"pre", {script()}}, {"post", {script()}}},
                  {{"name", "web"}, {"pre", {script({{"node", "node-b"}, {"on_failure", "stop"}})}}}});
  json p = Must(plans().Create(ok));
  EXPECT_EQ(p["groups"][1]["pre"][0]["node"], "node-b");
  EXPECT_EQ(p["groups"][1]["pre"][0]["on_failure"], "stop");
  EXPECT_EQ(p["groups"][1]["machines"], json::array());
}

TEST_F(PlansTest, AThousandMachinesAreQuickToCreateAndLoad) {
  // 1,000 machines (the inventory's own calls), in 10 groups of 100.
  std::vector<std::string> names;
  for (int i = 0; i < 1000; ++i) {
    names.push_back("m" + std::to_string(i));
    AddMachine(names.back(), "primary", "node-a");
  }
  json groups = json::array();
  for (int g = 0; g < 10; ++g) {
    json machines = json::array();
    for (int i = 0; i < 100; ++i) machines.push_back(names[g * 100 + (99 - i)]);  // reverse order in the group
    groups.push_back({{"name", "g" + std::to_string(g)}, {"machines", machines}});
  }
  auto t0 = std::chrono::steady_clock::now();
  json created = Must(plans().Create(Body(groups)));
  auto t1 = std::chrono::steady_clock::now();
  json got = Must(plans().Get("shop"));
  auto t2 = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("1,000-machine plan: create %.1f ms, get %.1f ms\n", ms(t1 - t0), ms(t2 - t1));
  EXPECT_EQ(got, created);
  EXPECT_EQ(got["machine_count"], 1000);
  EXPECT_EQ(got["groups"][3]["machines"][0]["machine"], "m399");
  EXPECT_EQ(got["groups"][3]["machines"][99]["machine"], "m300");
  // Generous bounds (a loaded CI machine); a per-member round trip design takes far longer
  // with PostgreSQL, and these catch an accidental quadratic one here.
  EXPECT_LT(ms(t1 - t0), 3000);
  EXPECT_LT(ms(t2 - t1), 3000);
  auto rec = plans().Load(ctl_->db(), 1);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->members.size(), 1000u);
  EXPECT_EQ(rec->members.back().group_idx, 9);
}

const json* FindProblem(const json& r, const std::string& check, const std::string& machine = "") {
  for (const json& p : r["problems"]) {
    if (p["check"] == check && (machine.empty() || p.value("machine", "") == machine)) return &p;
  }
  return nullptr;
}

TEST_F(PlansTest, ReadinessListsEveryProblem) {
  AddMachine("app1", "primary", "node-a");
  AddItem("web2", "TestFailover");
  AddItem("db1", "Protected", "Warning", {"RPO 140 s over the policy's 120 s"});
  AddItem("app1", "Protected", "Healthy", json::array(), /*reverse=*/true,
          {{"network", "default"}, {"ip_address", "10.0.2.15"}});
  AddItem("web1", "Protected", "Healthy", json::array(), false, {{"network", "default"}, {"ip_address", "10.0.2.15"}});
  // app1 and web1 use the same address in the same network.
  const std::string missing = "/nonexistent/ferry-test/stop.sh";
  json body = Body({{{"name", "db"},
                     {"machines", {"db1", "app1"}},
                     {"pre", {{{"kind", "script"}, {"name", "stop-app"}, {"command", missing + " --fast"}},
                              {{"kind", "script"}, {"name", "present"}, {"command", "FOO=1 sh -c true"}},
                              {{"kind", "manual"}, {"name", "call"}, {"instructions", "call"}}}}},
                    {{"name", "web"},
                     {"machines", {"web1", "web2"}},
                     {"post", {{{"kind", "script"}, {"name", "remote"}, {"command", "/bin/true"}, {"node", "node-a"}}}}}});
  Must(plans().Create(body));
  AddMachine("lonely", "primary", "node-a");
  json b2 = Body({{{"name", "g"}, {"machines", {"lonely"}}}});
  b2["name"] = "lonely";
  Must(plans().Create(b2));

  json r = Must(plans().Readiness("shop"));
  EXPECT_EQ(r["plan"], "plan-1");
  EXPECT_EQ(r["ready"], false);
  EXPECT_EQ(r["machines"], 4);
  const json* p = FindProblem(r, "state", "web2");
  ASSERT_TRUE(p) << r.dump(2);
  EXPECT_EQ((*p)["message"], "item 'web2' is TestFailover, not Protected");
  EXPECT_EQ((*p)["item"], "item-1");
  EXPECT_NE((*p)["action"].get<std::string>().find("ferry cleanup-test-failover web2"), std::string::npos);
  p = FindProblem(r, "health", "db1");
  ASSERT_TRUE(p) << r.dump(2);
  EXPECT_EQ((*p)["message"], "item 'db1' is Warning: RPO 140 s over the policy's 120 s");
  EXPECT_EQ((*p)["action"], "look at the item (ferry item show db1)");
  // Three items forward, one reverse: the reverse one is named.
  p = FindProblem(r, "direction", "app1");
  ASSERT_TRUE(p) << r.dump(2);
  EXPECT_EQ((*p)["message"], "item 'app1' replicates reverse while the plan's other items replicate forward");
  EXPECT_FALSE(FindProblem(r, "direction", "web1"));
  p = FindProblem(r, "ip_address", "web1");
  ASSERT_TRUE(p) << r.dump(2);
  EXPECT_NE((*p)["message"].get<std::string>().find("both use 10.0.2.15 in network 'default'"), std::string::npos);
  // Both target nodes (node-b for the forward items, node-a for the reverse one) do not answer.
  int unreachable = 0;
  for (const json& q : r["problems"]) {
    if (q["check"] == "node" && q["message"].get<std::string>().find("does not answer") != std::string::npos) {
      ++unreachable;
    }
  }
  EXPECT_EQ(unreachable, 2) << r.dump(2);
  // The missing program is named; the present one (after FOO=1, found in PATH) is not; the
  // one on an unreachable node could not be checked.
  int scripts = 0;
  for (const json& q : r["problems"]) {
    if (q["check"] != "script") continue;
    ++scripts;
    const std::string m = q["message"];
    if (m.find("stop-app") != std::string::npos) {
      EXPECT_NE(m.find("group 1 'db' pre action 'stop-app'"), std::string::npos) << m;
      EXPECT_NE(m.find(missing), std::string::npos) << m;
      EXPECT_NE(m.find("is not on the server"), std::string::npos) << m;
    } else {
      EXPECT_NE(m.find("group 2 'web' post action 'remote': cannot check its program"), std::string::npos) << m;
    }
  }
  EXPECT_EQ(scripts, 2) << r.dump(2);

  json lonely = Must(plans().Readiness("lonely"));
  ASSERT_EQ(lonely["problems"].size(), 1u) << lonely.dump(2);
  EXPECT_EQ(lonely["problems"][0]["check"], "item");
  EXPECT_EQ(lonely["problems"][0]["machine"], "lonely");
  EXPECT_EQ(lonely["problems"][0]["message"], "machine 'lonely' has no replicated item");
  EXPECT_EQ(lonely["problems"][0]["action"], "protect it (ferry protect lonely --target-site recovery)");
}

TEST_F(PlansTest, ServerScriptsGetTheirContextFile) {
  test::ScratchDir scratch("ferry-plan-script");
  const std::string& dir = scratch.path();
  ASSERT_FALSE(dir.empty());
  const std::string out = dir + "/out";
  json action = {{"kind", "script"}, {"name", "s"}, {"node", ""},
                 {"command", "cat \"$FERRY_CONTEXT\" > " + out + "; echo \"$FERRY_PLAN $FERRY_CONTEXT\"; exit 3"}};
  json context = {{"plan", {{"id", "plan-1"}, {"name", "shop"}}}, {"phase", "pre"}};
  auto r = RunPlanScript(*ctl_, action, {{"FERRY_PLAN", "shop"}}, context, 10000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_FALSE(r->timed_out);
  std::ifstream in(out);
  json seen = json::parse(in, nullptr, false);
  EXPECT_EQ(seen, context);
  ASSERT_EQ(r->output.rfind("shop /", 0), 0u) << r->output;
  std::string file = r->output.substr(5, r->output.find('\n') - 5);
  EXPECT_NE(file.find("ferry-context-"), std::string::npos) << file;
  EXPECT_FALSE(std::filesystem::exists(file)) << "the context file stays: " << file;

  json slow = {{"kind", "script"}, {"name", "s"}, {"command", "sleep 5"}};
  auto t0 = std::chrono::steady_clock::now();
  auto s = RunPlanScript(*ctl_, slow, {}, json::object(), 200);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));

  // On a node that does not answer: an error, not a result.
  json remote = {{"kind", "script"}, {"name", "s"}, {"command", "/bin/true"}, {"node", "node-a"}};
  EXPECT_EQ(RunPlanScript(*ctl_, remote, {}, json::object(), 1000).status().code(), Code::kUnavailable);
  EXPECT_EQ(CheckScriptPresent(*ctl_, remote).code(), Code::kUnavailable);
  remote["node"] = "node-q";
  EXPECT_EQ(RunPlanScript(*ctl_, remote, {}, json::object(), 1000).status().code(), Code::kNotFound);
}

TEST_F(PlansTest, CheckScriptPresentOnTheServer) {
  auto script = [](const std::string& command) { return json{{"kind", "script"}, {"name", "s"}, {"command", command}}; };
  EXPECT_TRUE(CheckScriptPresent(*ctl_, script("/bin/sh -c true")).ok());
  EXPECT_TRUE(CheckScriptPresent(*ctl_, script("  A=1 B=2 sh -c true")).ok());
  EXPECT_TRUE(CheckScriptPresent(*ctl_, json{{"kind", "manual"}, {"name", "m"}, {"instructions", "x"}}).ok());
  Status missing = CheckScriptPresent(*ctl_, script("/no/such/program arg"));
  EXPECT_EQ(missing.code(), Code::kNotFound);
  EXPECT_NE(missing.message().find("/no/such/program"), std::string::npos) << missing.ToString();
  EXPECT_EQ(CheckScriptPresent(*ctl_, script("no-such-program-anywhere-42")).code(), Code::kNotFound);
  EXPECT_EQ(CheckScriptPresent(*ctl_, script("/tmp")).code(), Code::kNotFound);  // a directory
}

}  // namespace
}  // namespace ferry::control
