#include "cli/resolve.h"

#include <gtest/gtest.h>

#include "cli/exit_codes.h"

namespace ferry::cli {
namespace {

json Items() {
  return json::parse(R"([
    {"id": "item-1", "name": "web1", "state": "Disabled"},
    {"id": "item-2", "name": "web1", "state": "Protected"},
    {"id": "item-3", "name": "db1", "state": "Protected"},
    {"id": "item-4", "name": "db1", "state": "FailedOver"},
    {"id": "item-5", "name": "item-3", "state": "Protected"}
  ])");
}

TEST(FindByRefTest, ExactIdWins) {
  auto r = FindByRef(Items(), "item-3", kItemKind);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["name"], "db1");  // not item-5, which is merely named "item-3"
}

TEST(FindByRefTest, UniqueNameMatches) {
  auto r =
      FindByRef(json::parse(R"([{"id": "site-1", "name": "primary"}, {"id": "site-2", "name": "recovery"}])"),
                "recovery", kSiteKind);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["id"], "site-2");
}

TEST(FindByRefTest, NameSharedWithADisabledItemMeansTheLiveOne) {
  auto r = FindByRef(Items(), "web1", kItemKind);
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ((*r)["id"], "item-2");
}

TEST(FindByRefTest, AmbiguousNameListsTheIds) {
  auto r = FindByRef(Items(), "db1", kItemKind);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "InvalidArgument");
  EXPECT_EQ(r.error().message, "2 items are named 'db1' (item-3, item-4)");
  EXPECT_EQ(r.error().action, "give the id instead of the name");
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kBadRequest);
}

TEST(FindByRefTest, UnknownIsNotFoundAndPointsAtTheListVerb) {
  auto r = FindByRef(Items(), "Web1", kItemKind);  // names are case-sensitive
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "NotFound");
  EXPECT_EQ(r.error().ToString(),
            "NotFound: no item has the id or name 'Web1'; `ferry item list` shows them");
  EXPECT_EQ(ExitCodeFor(r.error()), exit_code::kNotFound);
  EXPECT_FALSE(FindByRef(json::array(), "x", kPolicyKind).ok());
  EXPECT_FALSE(FindByRef(json(), "x", kPolicyKind).ok());
}

}  // namespace
}  // namespace ferry::cli
