#include "cli/arguments.h"

#include <gtest/gtest.h>

namespace ferry::cli {
namespace {

TEST(ParseDiskSpecTest, NameAndPathWithOptionalSize) {
  auto d = ParseDiskSpec("disk0=/srv/web1-disk0.img");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->name, "disk0");
  EXPECT_EQ(d->path, "/srv/web1-disk0.img");
  EXPECT_EQ(d->size, 0u);
  d = ParseDiskSpec("data=/dev/vdb,size=10G");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->path, "/dev/vdb");
  EXPECT_EQ(d->size, 10ull << 30);
  d = ParseDiskSpec("d=/x=y,size=1073741824");  // '=' may appear in a path
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->path, "/x=y");
  EXPECT_EQ(d->size, 1073741824u);
}

TEST(ParseDiskSpecTest, MalformedSpecsShowTheExpectedForm) {
  for (const char* bad : {"disk0", "=/srv/a.img", "disk0=", "disk0=/a,size=", "disk0=/a,size=lots",
                          "disk0=/a,size=0", "disk0=/a,mode=ro"}) {
    auto d = ParseDiskSpec(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), Code::kInvalidArgument);
    EXPECT_NE(d.status().message().find("expected NAME=PATH[,size=BYTES]"), std::string::npos) << bad;
  }
}

TEST(ParseSecondsTest, PlainNumbersAndUnits) {
  EXPECT_EQ(*ParseSeconds("60"), 60);
  EXPECT_EQ(*ParseSeconds("0"), 0);
  EXPECT_EQ(*ParseSeconds("90s"), 90);
  EXPECT_EQ(*ParseSeconds("15m"), 900);
  EXPECT_EQ(*ParseSeconds("2h"), 7200);
  EXPECT_EQ(*ParseSeconds("1d"), 86400);
  for (const char* bad : {"", "-5", "1.5", "5 m", "m", "1w", "99999999999999999999"}) {
    EXPECT_EQ(ParseSeconds(bad).status().code(), Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace ferry::cli
