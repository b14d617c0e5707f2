#include "node/scripts.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "env/scratch_dir_test_util.h"

namespace ferry::node {
namespace {

class ScriptsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }
  test::ScratchDir scratch_{"ferry-node-scripts"};  // removed after every member below
  std::string dir_;
};

TEST_F(ScriptsTest, RunWritesTheContextUnderTheDataDirAndRemovesIt) {
  json body = {{"command", "echo \"$FERRY_GROUP\"; echo \"$FERRY_CONTEXT\"; cat \"$FERRY_CONTEXT\"; exit 4"},
               {"env", {{"FERRY_GROUP", "db"}}},
               {"context", {{"phase", "pre"}}},
               {"timeout_ms", 10000}};
  auto r = RunScript(dir_, body);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["exit_code"], 4);
  EXPECT_EQ((*r)["signal"], 0);
  EXPECT_EQ((*r)["timed_out"], false);
  const std::string out = (*r)["output"];
  ASSERT_EQ(out.rfind("db\n" + dir_ + "/run/ferry-context-", 0), 0u) << out;
  const std::string file = out.substr(3, out.find('\n', 3) - 3);
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_EQ(json::parse(out.substr(out.find('{'))), json({{"phase", "pre"}}));
}

TEST_F(ScriptsTest, RunTimesOutAndReportsNonUtf8Output) {
  auto r = RunScript(dir_, {{"command", "printf 'a\\377b'; sleep 5"}, {"timeout_ms", 200}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["timed_out"], true);
  EXPECT_EQ((*r)["output"], "a\xEF\xBF\xBD" "b");
}

TEST_F(ScriptsTest, BadBodiesAreRefusedNamingTheField) {
  for (const auto& [body, field] : std::vector<std::pair<json, std::string>>{
           {json::object(), "command"},
           {{{"command", ""}}, "command"},
           {{{"command", "true"}, {"env", {{"A", 1}}}}, "env.A"},
           {{{"command", "true"}, {"env", {{"FERRY_CONTEXT", "x"}}}}, "FERRY_CONTEXT"},
           {{{"command", "true"}, {"timeout_ms", 0}}, "timeout_ms"},
           {{{"command", "true"}, {"shell", "bash"}}, "shell"}}) {
    auto r = RunScript(dir_, body);
    ASSERT_EQ(r.status().code(), Code::kInvalidArgument) << body.dump();
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().ToString();
  }
}

TEST_F(ScriptsTest, CheckFindsPrograms) {
  EXPECT_EQ((*CheckScript({{"command", "sh -c true"}}))["present"], true);
  EXPECT_EQ((*CheckScript({{"command", "/bin/sh"}}))["path"], "/bin/sh");
  json missing = *CheckScript({{"command", "/no/such/script.sh --now"}});
  EXPECT_EQ(missing["present"], false);
  EXPECT_EQ(missing["path"], "");
  EXPECT_NE(missing["message"].get<std::string>().find("/no/such/script.sh"), std::string::npos);
  EXPECT_EQ(CheckScript({{"command", 3}}).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::node
