#include "cli/cli_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "env/scratch_dir_test_util.h"

namespace ferry::cli {
namespace {

class CliConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
  }

  EnvLookup Env() const {
    return [this](const std::string& name) {
      auto it = env_.find(name);
      return it == env_.end() ? std::string() : it->second;
    };
  }
  void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  test::ScratchDir scratch_{"ferry-cli-config"};  // removed after every member below
  std::string dir_;
  std::map<std::string, std::string> env_;
};

TEST_F(CliConfigTest, PathPrefersFerryConfigThenXdgThenHome) {
  env_["HOME"] = "/home/op";
  EXPECT_EQ(CliConfigPath(Env()), "/home/op/.config/ferry/cli.json");
  env_["XDG_CONFIG_HOME"] = "relative/ignored";
  EXPECT_EQ(CliConfigPath(Env()), "/home/op/.config/ferry/cli.json");
  env_["XDG_CONFIG_HOME"] = "/xdg";
  EXPECT_EQ(CliConfigPath(Env()), "/xdg/ferry/cli.json");
  env_["FERRY_CONFIG"] = "/etc/ferry/cli.json";
  EXPECT_EQ(CliConfigPath(Env()), "/etc/ferry/cli.json");
  env_.clear();
  EXPECT_EQ(CliConfigPath(Env()), "");
}

TEST_F(CliConfigTest, FlagsBeatEnvironmentBeatsFileBeatsDefault) {
  env_["XDG_CONFIG_HOME"] = dir_;
  ::mkdir((dir_ + "/ferry").c_str(), 0700);
  WriteFile(dir_ + "/ferry/cli.json", R"({"server": "http://file:1", "token": "file-token"})");
  const std::string file = dir_ + "/ferry/cli.json";

  auto c = ResolveConnection("", "", Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "http://file:1");
  EXPECT_EQ(c->server_source, file);
  EXPECT_EQ(c->token, "file-token");
  EXPECT_EQ(c->token_source, file);

  env_["FERRY_SERVER"] = "http://env:2";
  env_["FERRY_TOKEN"] = "env-token";
  c = ResolveConnection("", "", Env());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server, "http://env:2");
  EXPECT_EQ(c->server_source, "FERRY_SERVER");
  EXPECT_EQ(c->token, "env-token");
  EXPECT_EQ(c->token_source, "FERRY_TOKEN");

  c = ResolveConnection("http://flag:3", "flag-token", Env());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server, "http://flag:3");
  EXPECT_EQ(c->server_source, "--server");
  EXPECT_EQ(c->token, "flag-token");
  EXPECT_EQ(c->token_source, "--token");

  // Each value on its own: a flag for the server, the file still gives the token.
  env_.erase("FERRY_SERVER");
  env_.erase("FERRY_TOKEN");
  c = ResolveConnection("http://flag:3", "", Env());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server, "http://flag:3");
  EXPECT_EQ(c->token, "file-token");
}

TEST_F(CliConfigTest, NothingConfiguredMeansDefaultServerAndNoToken) {
  env_["HOME"] = dir_;  // no .config/ferry/cli.json there: fine
  auto c = ResolveConnection("", "", Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, kDefaultServer);
  EXPECT_EQ(c->server_source, "default");
  EXPECT_EQ(c->token, "");
  EXPECT_EQ(c->token_source, "");
}

TEST_F(CliConfigTest, FileIsNotReadWhenFlagsAndEnvironmentSetBoth) {
  env_["FERRY_CONFIG"] = dir_ + "/missing.json";
  auto c = ResolveConnection("http://a:1", "t", Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "http://a:1");
}

TEST_F(CliConfigTest, MissingFileNamedByFerryConfigIsNotFound) {
  env_["FERRY_CONFIG"] = dir_ + "/missing.json";
  auto c = ResolveConnection("", "", Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kNotFound);
  EXPECT_NE(c.status().message().find("FERRY_CONFIG names " + dir_ + "/missing.json"), std::string::npos);
}

TEST_F(CliConfigTest, MalformedFileIsInvalidArgumentNamingTheFileAndKey) {
  env_["FERRY_CONFIG"] = dir_ + "/cli.json";
  WriteFile(dir_ + "/cli.json", "server = http://x");
  auto c = ResolveConnection("", "", Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find(dir_ + "/cli.json is not a JSON object"), std::string::npos);

  WriteFile(dir_ + "/cli.json", R"({"server": 7700})");
  c = ResolveConnection("", "", Env());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("\"server\" must be a string"), std::string::npos);

  // Unknown keys are ignored: a newer ferry may add some.
  WriteFile(dir_ + "/cli.json", R"({"token": "t", "portal": "http://x"})");
  c = ResolveConnection("", "", Env());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->token, "t");
}

TEST_F(CliConfigTest, WriteCreatesDirectoriesAndAPrivateFileThatResolveReads) {
  const std::string path = dir_ + "/a/b/cli.json";
  ASSERT_TRUE(WriteCliConfig(path, "http://127.0.0.1:7700", "secret").ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_ + "/a/b").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_FALSE(::access((path + ".tmp").c_str(), F_OK) == 0);
  auto j = nlohmann::json::parse(ReadFile(path));
  EXPECT_EQ(j, (nlohmann::json{{"server", "http://127.0.0.1:7700"}, {"token", "secret"}}));

  env_["FERRY_CONFIG"] = path;
  auto c = ResolveConnection("", "", Env());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->server, "http://127.0.0.1:7700");
  EXPECT_EQ(c->token, "secret");
}

TEST_F(CliConfigTest, WriteReplacesAnOldFileAndALeftoverTemporary) {
  const std::string path = dir_ + "/cli.json";
  WriteFile(path, "old");
  ::chmod(path.c_str(), 0644);
  WriteFile(path + ".tmp", "leftover of a crash");
  ::chmod((path + ".tmp").c_str(), 0666);
  ASSERT_TRUE(WriteCliConfig(path, "http://h:1", "t2").ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(nlohmann::json::parse(ReadFile(path))["token"], "t2");
}

TEST_F(CliConfigTest, WriteIntoAFileInsteadOfADirectoryFails) {
  WriteFile(dir_ + "/plain", "x");
  Status s = WriteCliConfig(dir_ + "/plain/cli.json", "http://h:1", "t");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(WriteCliConfig("", "http://h:1", "t").code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry::cli
