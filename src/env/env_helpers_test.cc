#include <gtest/gtest.h>

#include "env/env.h"

namespace ferry {
namespace {

TEST(JoinPathTest, AddsOneSlash) {
  EXPECT_EQ(JoinPath("a/b", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("a/b/", "c"), "a/b/c");
  EXPECT_EQ(JoinPath("/", "c"), "/c");
  EXPECT_EQ(JoinPath("", "c"), "c");
}

TEST(DirNameTest, BehavesLikePosixDirname) {
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("a/b/c/"), "a/b");
  EXPECT_EQ(DirName("/a"), "/");
  EXPECT_EQ(DirName("/"), "/");
  EXPECT_EQ(DirName("c"), ".");
  EXPECT_EQ(DirName(""), ".");
  EXPECT_EQ(DirName("a//b"), "a");
}

}  // namespace
}  // namespace ferry
