// Promotion: the full run, and a crash after each step (node/promotion.h): what Recover makes
// of the directory is always either "before" (the replica intact, the promote can run again)
// or "after" (the volume with its disk, the replica gone).
#include "node/promotion.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "env/scratch_dir_test_util.h"

namespace ferry::node {
namespace {

namespace fs = std::filesystem;
constexpr char kId[] = "0123456789abcdef0123456789abcdef";

class PromotionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    volumes_ = dir_ + "/volumes";
    replica_ = dir_ + "/replicas/" + kId;
    fs::create_directories(volumes_);
    fs::create_directories(replica_ + "/overlays/o1");
    image_ = replica_ + "/overlays/o1/data.img";
    std::ofstream(image_) << std::string(1 << 20, 'i');
    disk_ = volumes_ + "/vol/disk.img";
  }

  Promotion Make() {
    return Promotion(Env::Posix(), volumes_, [this](const std::string& id) -> Status {
      removed_.push_back(id);
      if (!fs::exists(dir_ + "/replicas/" + id)) return NotFound("no replica " + id);
      fs::remove_all(dir_ + "/replicas/" + id);
      return Status::Ok();
    });
  }
  PromotePlan Plan() {
    PromotePlan p;
    p.name = "vol";
    p.image = image_;
    p.replica_id = kId;
    p.size = 1 << 20;
    p.settings = {{"name", "vol"}, {"disk", disk_}, {"capture", "splitter"}, {"aliases", {"r/overlay/o1"}}};
    return p;
  }
  nlohmann::json Settings() {
    std::ifstream in(volumes_ + "/vol/volume.json");
    return nlohmann::json::parse(in);
  }
  void ExpectBefore() {
    EXPECT_TRUE(fs::exists(image_));
    EXPECT_FALSE(fs::exists(volumes_ + "/vol"));
    EXPECT_FALSE(fs::exists(volumes_ + "/.promote-vol"));
    EXPECT_TRUE(removed_.empty());
  }
  void ExpectAfter() {
    EXPECT_FALSE(fs::exists(replica_));
    ASSERT_TRUE(fs::exists(disk_));
    EXPECT_EQ(fs::file_size(disk_), 1u << 20);
    EXPECT_TRUE(fs::exists(volumes_ + "/vol/log/MANIFEST"));
    EXPECT_FALSE(fs::exists(volumes_ + "/.promote-vol"));
    nlohmann::json j = Settings();
    EXPECT_FALSE(j.contains("promote"));
    EXPECT_EQ(j["aliases"], nlohmann::json({"r/overlay/o1"}));
    auto pending = Make().Pending("vol");
    ASSERT_TRUE(pending.ok());
    EXPECT_EQ(*pending, "");
  }

  test::ScratchDir scratch_{"ferry-promotion"};  // removed after every member below
  std::string dir_, volumes_, replica_, image_, disk_;
  std::vector<std::string> removed_;
};

TEST_F(PromotionTest, FullRun) {
  Promotion p = Make();
  ASSERT_TRUE(p.CheckRename(fs::path(image_).parent_path(), volumes_).ok());
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  auto pending = p.Pending("vol");
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(*pending, kId);
  ASSERT_TRUE(p.Finish("vol").ok());
  ExpectAfter();
  EXPECT_EQ(removed_, std::vector<std::string>{kId});
  ASSERT_TRUE(p.Finish("vol").ok());  // idempotent: nothing left to do
  EXPECT_EQ(removed_.size(), 1u);
}

TEST_F(PromotionTest, CrashAfterStageIsBefore) {
  ASSERT_TRUE(Make().Stage(Plan()).ok());
  ASSERT_TRUE(Make().Recover().ok());
  ExpectBefore();
  // And the promote can run again.
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  ASSERT_TRUE(p.Finish("vol").ok());
  ExpectAfter();
}

TEST_F(PromotionTest, StageAgainReplacesWhatAnEarlierAttemptLeft) {
  Promotion p = Make();
  fs::create_directories(volumes_ + "/.promote-vol/log");
  std::ofstream(volumes_ + "/.promote-vol/log/MANIFEST") << "half";
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  ASSERT_TRUE(p.Finish("vol").ok());
  ExpectAfter();
}

TEST_F(PromotionTest, CrashAfterCommitIsAfter) {
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  ASSERT_TRUE(Make().Recover().ok());
  ExpectAfter();
}

TEST_F(PromotionTest, CrashAfterTheMoveIsAfter) {
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  fs::rename(image_, disk_);
  ASSERT_TRUE(Make().Recover().ok());
  ExpectAfter();
}

TEST_F(PromotionTest, CrashAfterTheReplicaWentIsAfter) {
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  fs::rename(image_, disk_);
  fs::remove_all(replica_);
  ASSERT_TRUE(Make().Recover().ok());
  ExpectAfter();
}

TEST_F(PromotionTest, AnotherFileAtTheDiskPathStopsTheMove) {
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  std::ofstream(disk_) << "someone else's";
  Status s = p.Finish("vol");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(fs::exists(image_));
  EXPECT_TRUE(fs::exists(replica_));
  fs::remove(disk_);
  ASSERT_TRUE(p.Finish("vol").ok());
  ExpectAfter();
}

TEST_F(PromotionTest, NeitherImageNorDiskIsDataLoss) {
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  ASSERT_TRUE(p.Commit("vol").ok());
  fs::remove(image_);
  EXPECT_EQ(p.Finish("vol").code(), Code::kDataLoss);
}

TEST_F(PromotionTest, CommitRefusesAnExistingVolumeDirectory) {
  Promotion p = Make();
  ASSERT_TRUE(p.Stage(Plan()).ok());
  fs::create_directories(volumes_ + "/vol");
  EXPECT_EQ(p.Commit("vol").code(), Code::kAlreadyExists);
}

TEST_F(PromotionTest, CheckRenameNamesAnotherFilesystem) {
  struct stat a{}, b{};
  if (::stat("/dev/shm", &b) != 0 || ::stat(dir_.c_str(), &a) != 0 || a.st_dev == b.st_dev) {
    GTEST_SKIP() << "no second filesystem at /dev/shm";
  }
  Status s = Make().CheckRename(fs::path(image_).parent_path(), "/dev/shm");
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("filesystem"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(fs::path(image_).parent_path() / ".ferry-promote-probe"));
}

}  // namespace
}  // namespace ferry::node
