#include "control/groups.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "control/controller.h"
#include "control/errors.h"
#include "control/fields.h"
#include "env/scratch_dir_test_util.h"

namespace ferry::control {
namespace {

// A controller on a fresh SQLite store (not started: no monitor, no point-taking, no jobs),
// with sites primary, recovery and other, a node at each, and machines m1..m4 at primary.
class GroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    auto db = store::OpenSqlite(dir_ + "/ferry.db");
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    auto ctl = Controller::Open(std::move(*db), &clock_);
    ASSERT_TRUE(ctl.ok()) << ctl.status().ToString();
    ctl_ = std::move(*ctl);
    ctl_->jobs().Stop();  // the enable jobs stay queued: the nodes here are not real
    auto& inv = ctl_->inventory();
    for (const char* site : {"primary", "recovery", "other"}) {
      ASSERT_TRUE(inv.CreateSite(json{{"name", site}}).ok());
      auto token = inv.CreateEnrollment(json{{"site", site}});
      ASSERT_TRUE(token.ok());
      ASSERT_TRUE(inv.RegisterNode(json{{"token", (*token)["token"]}, {"name", std::string("n-") + site},
                                        {"api_url", "http://127.0.0.1:1"}, {"link_address", "127.0.0.1:1"}})
                      .ok());
    }
    for (const char* m : {"m1", "m2", "m3", "m4"}) {
      ASSERT_TRUE(inv.CreateMachine(json{{"name", m}, {"site", "primary"}, {"node", "n-primary"},
                                         {"disks", {{{"name", "disk0"}, {"path", "/d"}, {"size", 4096}}}}})
                      .ok());
    }
  }
  // Protects machine m to target (the job is not run): its item's id; the item is Protected.
  int64_t Protect(const std::string& m, const std::string& target = "recovery", const std::string& group = "") {
    json body = {{"machine", m}, {"target_site", target}};
    if (!group.empty()) body["consistency_group"] = group;
    auto r = ctl_->items().Enable(body);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    int64_t id = ParseId("item", ctl_->items().Get(m)->at("id").get<std::string>());
    EXPECT_TRUE(ctl_->db().Exec("UPDATE items SET state = 'Protected', active_job_id = NULL WHERE id = $1", {id}).ok());
    return id;
  }
  void Point(int64_t group, int64_t n, int64_t t, bool app, double hold_ms, const std::vector<int64_t>& items) {
    json members = json::object();
    for (int64_t i : items) members[std::to_string(i)] = n;
    ASSERT_TRUE(ctl_->db()
                    .Exec("INSERT INTO group_points (group_id, marker_id, time_ns, app_consistent, hold_ms, members) "
                          "VALUES ($1, $2, $3, $4, $5, $6)",
                          {group, "cg-" + std::to_string(group) + "-" + std::to_string(n), t, int64_t{app}, hold_ms,
                           members.dump()})
                    .ok());
  }
  void Replicated(int64_t item, int64_t seq, const std::string& label) {
    ASSERT_TRUE(ctl_->db()
                    .Exec("INSERT INTO recovery_points (item_id, seq, time_ns, kind, label) VALUES ($1, $2, 0, "
                          "'group-consistent', $3)",
                          {item, seq, label})
                    .ok());
  }

  test::ScratchDir scratch_{"ferry-groups"};  // removed after every member below
  std::string dir_;
  ManualClock clock_;
  std::unique_ptr<Controller> ctl_;
};

std::string Message(const Status& s) { return Describe(s).message; }

TEST_F(GroupsTest, EnableJoinsAndCreatesTheGroup) {
  int64_t a = Protect("m1", "recovery", "shop");
  Protect("m2", "recovery", "shop");
  auto g = ctl_->groups().Get("shop");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ((*g)["id"], "cg-1");
  EXPECT_EQ((*g)["members"].size(), 2u);
  EXPECT_EQ((*g)["interval_s"], 5);  // the default policy
  EXPECT_TRUE((*g)["last_point"].is_null());
  EXPECT_TRUE((*g)["hold_ms"].is_null());
  EXPECT_TRUE((*g)["latest_common_point"].is_null());
  EXPECT_EQ(ctl_->items().Get(FormatId("item", a))->at("consistency_group"), "shop");
}

TEST_F(GroupsTest, RefusesBadInput) {
  auto bad_name = ctl_->groups().Create(json{{"name", "no spaces"}});
  EXPECT_EQ(bad_name.status().code(), Code::kInvalidArgument);
  auto unknown_field = ctl_->groups().Create(json{{"name", "g"}, {"member", json::array()}});
  EXPECT_EQ(unknown_field.status().code(), Code::kInvalidArgument);
  EXPECT_NE(Message(unknown_field.status()).find("member"), std::string::npos);
  auto members_not_array = ctl_->groups().Create(json{{"name", "g"}, {"members", "m1"}});
  EXPECT_EQ(members_not_array.status().code(), Code::kInvalidArgument);
  auto enable = ctl_->items().Enable(json{{"machine", "m1"}, {"target_site", "recovery"}, {"consistency_group", 3}});
  EXPECT_EQ(enable.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ctl_->groups().Get("nope").status().code(), Code::kNotFound);
  EXPECT_EQ(ctl_->groups().AddMember("nope", json{{"item", "m1"}}).status().code(), Code::kNotFound);
  ASSERT_TRUE(ctl_->groups().Create(json{{"name", "g"}}).ok());
  EXPECT_EQ(ctl_->groups().Create(json{{"name", "g"}}).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(ctl_->groups().AddMember("g", json{{"item", "item-77"}}).status().code(), Code::kNotFound);
}

TEST_F(GroupsTest, AnItemIsInOneGroup) {
  int64_t a = Protect("m1", "recovery", "shop");
  ASSERT_TRUE(ctl_->groups().Create(json{{"name", "other"}}).ok());
  auto twice = ctl_->groups().AddMember("other", json{{"item", FormatId("item", a)}});
  EXPECT_EQ(twice.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(Message(twice.status()).find("already in consistency group 'shop'"), std::string::npos);
  EXPECT_NE(Describe(twice.status()).action.find("ferry group remove shop m1"), std::string::npos);
  // A create that fails on a member creates nothing.
  EXPECT_EQ(ctl_->groups().Create(json{{"name", "third"}, {"members", {"m1"}}}).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(ctl_->groups().Get("third").status().code(), Code::kNotFound);
  // Again in the same group is fine; out and into the other one too.
  EXPECT_TRUE(ctl_->groups().AddMember("shop", json{{"item", "m1"}}).ok());
  EXPECT_EQ(ctl_->groups().RemoveMember("other", "m1").status().code(), Code::kNotFound);
  ASSERT_TRUE(ctl_->groups().RemoveMember("shop", "m1").ok());
  EXPECT_TRUE(ctl_->groups().AddMember("other", json{{"item", "m1"}}).ok());
}

TEST_F(GroupsTest, MembersReplicateAlike) {
  Protect("m1", "recovery", "shop");
  int64_t b = Protect("m2", "other");
  auto r = ctl_->groups().AddMember("shop", json{{"item", FormatId("item", b)}});
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(Message(r.status()).find("does not replicate like the members of group 'shop'"), std::string::npos);
}

TEST_F(GroupsTest, ADisabledItemCannotJoin) {
  int64_t a = Protect("m1");
  ASSERT_TRUE(ctl_->db().Exec("UPDATE items SET state = 'Disabled' WHERE id = $1", {a}).ok());
  ASSERT_TRUE(ctl_->groups().Create(json{{"name", "g"}}).ok());
  auto r = ctl_->groups().AddMember("g", json{{"item", FormatId("item", a)}});
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(Message(r.status()).find("is Disabled"), std::string::npos);
}

TEST_F(GroupsTest, HoldStatisticsAndLastPoint) {
  int64_t a = Protect("m1", "recovery", "g");
  for (int n = 1; n <= 100; ++n) Point(1, n, n * kNanosPerSecond, n % 10 == 0, n, {a});
  auto g = ctl_->groups().Get("g");
  ASSERT_TRUE(g.ok());
  EXPECT_EQ((*g)["hold_ms"]["p50"], 50.0);
  EXPECT_EQ((*g)["hold_ms"]["p99"], 99.0);
  EXPECT_EQ((*g)["hold_ms"]["max"], 100.0);
  EXPECT_EQ((*g)["last_point"]["marker_id"], "cg-1-100");
  EXPECT_EQ((*g)["last_point"]["app_consistent"], true);
}

TEST_F(GroupsTest, LatestCommonPointIsHeldByEveryMember) {
  int64_t a = Protect("m1", "recovery", "g");
  int64_t b = Protect("m2", "recovery", "g");
  EXPECT_EQ(ctl_->groups().LatestCommonPoint(1, false).status().code(), Code::kNotFound);
  Point(1, 1, 10, true, 1, {a, b});
  Point(1, 2, 20, false, 1, {a, b});
  Point(1, 3, 30, false, 1, {a, b});
  Replicated(a, 5, "cg-1-1");
  Replicated(b, 6, "cg-1-1");
  Replicated(a, 7, "cg-1-2");
  Replicated(b, 8, "cg-1-2");
  Replicated(a, 9, "cg-1-3");  // not yet at b's target
  auto p = ctl_->groups().LatestCommonPoint(1, false);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->marker_id, "cg-1-2");
  EXPECT_EQ(p->points[a], "marker:00000000000000010000000000000002");
  EXPECT_EQ(p->points[b], p->points[a]);
  auto app = ctl_->groups().LatestCommonPoint(1, true);
  ASSERT_TRUE(app.ok());
  EXPECT_EQ(app->marker_id, "cg-1-1");
  EXPECT_TRUE(app->app_consistent);
  // A member that joined after a point was taken is not in it.
  int64_t c = Protect("m3", "recovery", "g");
  Replicated(c, 3, "cg-1-2");
  EXPECT_EQ(ctl_->groups().LatestCommonPoint(1, false).status().code(), Code::kNotFound);
}

TEST_F(GroupsTest, DeleteLeavesTheMembersOutsideAnyGroup) {
  int64_t a = Protect("m1", "recovery", "g");
  Point(1, 1, 10, false, 1, {a});
  ASSERT_TRUE(ctl_->groups().Delete("g").ok());
  EXPECT_TRUE(ctl_->items().Get("m1")->at("consistency_group").is_null());
  EXPECT_EQ(ctl_->groups().Get("cg-1").status().code(), Code::kNotFound);
  auto rows = ctl_->db().Query("SELECT COUNT(*) FROM group_points");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].Int(0), 0);
}

}  // namespace
}  // namespace ferry::control
