// The node configuration's [server] section.
#include "node/config.h"

#include <gtest/gtest.h>

namespace ferry::node {
namespace {

constexpr char kBase[] = R"(name = "node-a"
site = "primary"
data_dir = "data"
[listen]
api = "127.0.0.1:0"
[tls]
insecure = true
)";

TEST(NodeConfigTest, ServerSectionIsRead) {
  auto c = ParseNodeConfig(std::string(kBase) + R"([server]
url = "http://ferry.example:7443"
enroll_token = "tok"
advertise_host = "10.0.0.5"
)", "node.toml", "/etc/ferry");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server_url, "http://ferry.example:7443");
  EXPECT_EQ(c->enroll_token, "tok");
  EXPECT_EQ(c->advertise_host, "10.0.0.5");
  EXPECT_EQ(c->data_dir, "/etc/ferry/data");
}

TEST(NodeConfigTest, HttpsServerIsRefusedWithTheReason) {
  auto c = ParseNodeConfig(std::string(kBase) + "[server]\nurl = \"https://ferry.example:7443\"\n",
                           "node.toml", "");
  ASSERT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("server.url uses https"), std::string::npos) << c.status().ToString();
  c = ParseNodeConfig(std::string(kBase) + "[server]\nurl = \"ferry.example\"\n", "node.toml", "");
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
}

TEST(NodeConfigTest, NoServerMeansNoRegistration) {
  auto c = ParseNodeConfig(kBase, "node.toml", "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server_url, "");
  EXPECT_EQ(c->enroll_token, "");
}

TEST(NodeConfigTest, RetentionIntervalIsReadAndChecked) {
  auto c = ParseNodeConfig(kBase, "node.toml", "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->retention_interval_ms, 60'000);
  c = ParseNodeConfig(std::string(kBase) + "[retention]\ninterval_ms = 500\n", "node.toml", "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->retention_interval_ms, 500);
  for (const char* bad : {"50", "\"1m\""}) {
    c = ParseNodeConfig(std::string(kBase) + "[retention]\ninterval_ms = " + bad + "\n", "node.toml", "");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_NE(c.status().message().find("retention.interval_ms must be a number >= 100"), std::string::npos)
        << c.status().ToString();
  }
}

TEST(NodeConfigTest, LauncherAndNetworksAreRead) {
  auto c = ParseNodeConfig(std::string(kBase) + R"([launcher]
kind = "qemu"
accelerator = "tcg"
firmware = "qboot.rom"
[networks.prod]
mode = "bridge"
bridge = "br0"
[networks.lab]
subnet = "192.168.7.0/24"
)", "node.toml", "/etc/ferry");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->launcher.kind, "qemu");
  EXPECT_EQ(c->launcher.accelerator, "tcg");
  EXPECT_EQ(c->launcher.firmware, "/etc/ferry/qboot.rom");
  ASSERT_EQ(c->networks.size(), 2u);
  EXPECT_EQ(c->networks.at("prod").mode, "bridge");
  EXPECT_EQ(c->networks.at("prod").bridge, "br0");
  EXPECT_EQ(c->networks.at("lab").mode, "user");
  EXPECT_EQ(c->networks.at("lab").subnet, "192.168.7.0/24");
}

TEST(NodeConfigTest, NoLauncherMeansNoneAndADefaultNetwork) {
  auto c = ParseNodeConfig(kBase, "node.toml", "");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->launcher.kind, "none");
  ASSERT_EQ(c->networks.count("default"), 1u);
  EXPECT_EQ(c->networks.at("default").mode, "user");
}

TEST(NodeConfigTest, BadLauncherSettingsNameTheKey) {
  auto c = ParseNodeConfig(std::string(kBase) + "[launcher]\nkind = \"vmware\"\n", "node.toml", "");
  ASSERT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("launcher.kind 'vmware' is unknown"), std::string::npos) << c.status().ToString();
  c = ParseNodeConfig(std::string(kBase) + "[launcher]\nkind = \"exec\"\n", "node.toml", "");
  ASSERT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("launcher.start_command is missing"), std::string::npos) << c.status().ToString();
  c = ParseNodeConfig(std::string(kBase) + "[networks.isolated]\nmode = \"user\"\n", "node.toml", "");
  ASSERT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("'isolated' is reserved"), std::string::npos) << c.status().ToString();
  c = ParseNodeConfig(std::string(kBase) + "[networks.prod]\nmode = \"bridge\"\n", "node.toml", "");
  ASSERT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("networks.prod.bridge is missing"), std::string::npos) << c.status().ToString();
}

}  // namespace
}  // namespace ferry::node
