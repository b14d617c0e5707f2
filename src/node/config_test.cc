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

}  // namespace
}  // namespace ferry::node
