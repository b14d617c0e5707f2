// The node's commands of the failover cycle, in process: promote (with an NBD session of the
// overlay that goes on writing through it), replica removal and fencing. The same run with
// real processes and clients is tests/node_features.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "env/scratch_dir_test_util.h"
#include "journal/replica.h"
#include "node/node.h"

namespace ferry::node {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kSize = 1 << 20;
constexpr uint32_t kBs = 4096;

std::string Block(char c) { return std::string(kBs, c); }

class NodeFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_.path();
    ASSERT_FALSE(dir_.empty());
    fs::create_directories(dir_ + "/data/replicas");
  }
  void StartNode() {
    node_.reset();
    NodeConfig c;
    c.name = "node-b";
    c.site = "recovery";
    c.data_dir = dir_ + "/data";
    c.insecure = true;
    auto n = Node::Start(c);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    node_ = std::move(*n);
  }
  // A replica "r0" as a link would have left it: 'a' in block 0, a marker; and an overlay
  // "o1" over that marker.
  void MakeReplicaWithOverlay() {
    journal::CreateParams p;
    p.size = kSize;
    auto r = journal::Replica::Create(dir_ + "/data/replicas/tmp", p);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    id_ = journal::IdToHex((*r)->volume_id());
    ASSERT_TRUE((*r)->Append(journal::Record::Write(0, Block('a'))).ok());
    auto m = (*r)->Append(journal::Record::Marker(journal::MarkerKind::kCrashConsistent, "m"));
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE((*r)->CreateOverlay("o1", *m).ok());
    r->reset();
    fs::rename(dir_ + "/data/replicas/tmp", dir_ + "/data/replicas/" + id_);
    ASSERT_TRUE(WriteFileAtomically(Env::Posix(), dir_ + "/data/replicas/" + id_ + "/VOLUME_NAME", "r0").ok());
  }
  nlohmann::json Replica(const std::string& name) {
    const nlohmann::json status = node_->StatusJson();
    for (const auto& r : status["replicas"]) {
      if (r["name"] == name) return r;
    }
    return nullptr;
  }
  nlohmann::json Volume(const std::string& name) {
    const nlohmann::json status = node_->StatusJson();
    for (const auto& v : status["volumes"]) {
      if (v["name"] == name) return v;
    }
    return nullptr;
  }
  void CommitAndWait() {
    ASSERT_TRUE(node_->CommitOverlay("r0", "o1").ok());
    for (int i = 0; i < 2000 && Replica("r0").value("commit", nlohmann::json::object()).value("state", "") != "done"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_EQ(Replica("r0")["commit"]["state"], "done") << Replica("r0").dump();
  }
  std::string Read(nbd::Export& e, uint64_t block) {
    std::string out(kBs, '?');
    EXPECT_TRUE(e.Read(block * kBs, kBs, out.data()).ok());
    return out;
  }

  test::ScratchDir scratch_{"ferry-node-failover"};  // removed after every member below
  std::string dir_, id_;
  std::unique_ptr<Node> node_;
};

TEST_F(NodeFailoverTest, PromoteMovesTheOverlaysSessionsToTheNewVolume) {
  MakeReplicaWithOverlay();
  StartNode();
  auto session = node_->Export("r0/overlay/o1");  // what a connected NBD client holds
  ASSERT_TRUE(session.ok()) << session.status().ToString();
  ASSERT_TRUE((*session)->Write(kBs, Block('b'), false).ok());
  nlohmann::json r = Replica("r0");
  ASSERT_EQ(r["overlays"].size(), 1u);
  EXPECT_EQ(r["overlays"][0]["name"], "o1");
  EXPECT_EQ(r["overlays"][0]["state"], "active");
  EXPECT_EQ(r["overlays"][0]["changed_bytes"], kBs);
  EXPECT_EQ(r["overlays"][0]["export"], "r0/overlay/o1");
  EXPECT_EQ(r["commit"], (nlohmann::json{{"state", "none"}, {"overlay", ""}, {"percent", 0.0}, {"error", ""}}));

  auto early = node_->Promote("r0", "vol", "");
  ASSERT_EQ(early.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(early.status().message().find("commit an overlay first"), std::string::npos);
  CommitAndWait();
  EXPECT_EQ(Replica("r0")["overlays"][0]["state"], "committed");
  EXPECT_EQ(Replica("r0")["commit"]["overlay"], "o1");

  EXPECT_EQ(node_->Promote("nope", "vol", "").status().code(), Code::kNotFound);
  EXPECT_EQ(node_->Promote("r0", "a/b", "").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(node_->Promote("r0", "vol", "rel/disk.img").status().code(), Code::kInvalidArgument);
  auto promoted = node_->Promote("r0", "r0", "");  // the replica's own name is free for it
  ASSERT_TRUE(promoted.ok()) << promoted.status().ToString();
  EXPECT_EQ((*promoted)["name"], "r0");
  EXPECT_EQ((*promoted)["disk"], dir_ + "/data/volumes/r0/disk.img");
  EXPECT_NE((*promoted)["volume_id"], id_);
  EXPECT_EQ((*promoted)["aliases"], (nlohmann::json{"r0/overlay/o1", id_ + "/overlay/o1"}));
  EXPECT_EQ(Replica("r0"), nullptr);
  EXPECT_FALSE(fs::exists(dir_ + "/data/replicas/" + id_));

  // The session goes on: its writes are captured by the volume's splitter.
  EXPECT_EQ(Volume("r0")["log_last_seq"], 0u);
  ASSERT_TRUE((*session)->Write(2 * kBs, Block('c'), false).ok());
  EXPECT_EQ(Volume("r0")["log_last_seq"], 1u);
  auto vol = node_->Export("r0");
  ASSERT_TRUE(vol.ok());
  EXPECT_EQ(Read(**vol, 0), Block('a'));
  EXPECT_EQ(Read(**vol, 1), Block('b'));
  EXPECT_EQ(Read(**vol, 2), Block('c'));
  auto alias = node_->Export(id_ + "/overlay/o1");
  ASSERT_TRUE(alias.ok());
  EXPECT_EQ(Read(**alias, 2), Block('c'));

  // Again: the same result; under another name: refused.
  auto again = node_->Promote("r0", "r0", "");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ((*again)["volume_id"], (*promoted)["volume_id"]);
  EXPECT_EQ(node_->Promote("r0", "other", "").status().code(), Code::kAlreadyExists);

  // A restart keeps the alias.
  session->reset();
  vol->reset();
  alias->reset();
  StartNode();
  auto after = node_->Export("r0/overlay/o1");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(Read(**after, 2), Block('c'));
  ASSERT_TRUE((*after)->Write(3 * kBs, Block('d'), false).ok());
  EXPECT_EQ(Volume("r0")["log_last_seq"], 2u);
}

TEST_F(NodeFailoverTest, PromoteToAGivenDiskPath) {
  MakeReplicaWithOverlay();
  StartNode();
  CommitAndWait();
  std::ofstream(dir_ + "/taken.img") << "x";
  EXPECT_EQ(node_->Promote("r0", "vol", dir_ + "/taken.img").status().code(), Code::kAlreadyExists);
  EXPECT_EQ(node_->Promote("r0", "vol", dir_ + "/missing/disk.img").status().code(), Code::kInvalidArgument);
  ASSERT_TRUE(node_->AddVolume("busy", dir_ + "/busy.img", kSize).ok());
  EXPECT_EQ(node_->Promote("r0", "busy", "").status().code(), Code::kAlreadyExists);
  auto promoted = node_->Promote("r0", "vol", dir_ + "/vol.img");
  ASSERT_TRUE(promoted.ok()) << promoted.status().ToString();
  EXPECT_EQ((*promoted)["disk"], dir_ + "/vol.img");
  EXPECT_EQ(fs::file_size(dir_ + "/vol.img"), kSize);
  EXPECT_EQ(node_->Promote("r0", "vol2", "").status().code(), Code::kAlreadyExists);
}

TEST_F(NodeFailoverTest, DeleteReplicaRefusesOverlaysInUseUnlessForced) {
  MakeReplicaWithOverlay();
  StartNode();
  auto session = node_->Export("r0/overlay/o1");
  ASSERT_TRUE(session.ok());
  Status s = node_->DeleteReplica("r0", false);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("o1 (active)"), std::string::npos) << s.ToString();
  ASSERT_TRUE(node_->DeleteReplica("r0", true).ok());
  EXPECT_EQ(Replica("r0"), nullptr);
  EXPECT_FALSE(fs::exists(dir_ + "/data/replicas/" + id_));
  EXPECT_EQ((*session)->Write(0, Block('x'), false).code(), Code::kUnavailable);
  EXPECT_EQ(node_->DeleteReplica("r0", false).code(), Code::kNotFound);
  StartNode();  // nothing left behind that a restart trips over
  EXPECT_EQ(Replica("r0"), nullptr);
}

TEST_F(NodeFailoverTest, DeleteCommittedReplicaNeedsNoForce) {
  MakeReplicaWithOverlay();
  StartNode();
  CommitAndWait();
  ASSERT_TRUE(node_->DeleteReplica(id_, false).ok());
  EXPECT_EQ(Replica("r0"), nullptr);
}

TEST_F(NodeFailoverTest, FencedVolumeRefusesWritesAcrossRestarts) {
  StartNode();
  ASSERT_TRUE(node_->AddVolume("v", dir_ + "/v.img", kSize).ok());
  auto e = node_->Export("v");
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE((*e)->Write(0, Block('a'), false).ok());
  EXPECT_EQ(Volume("v")["fenced"], false);
  auto f = node_->Fence("v");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(*f, (nlohmann::json{{"volume", "v"}, {"seq", 2}}));
  EXPECT_EQ((*e)->Write(0, Block('b'), false).code(), Code::kFailedPrecondition);
  EXPECT_EQ((*e)->Trim(0, kBs, false).code(), Code::kFailedPrecondition);
  EXPECT_EQ(Read(**e, 0), Block('a'));
  auto again = node_->Fence("v");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["seq"], 3);
  EXPECT_EQ(Volume("v")["fenced"], true);
  e->reset();
  StartNode();
  EXPECT_EQ(Volume("v")["fenced"], true);
  e = node_->Export("v");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ((*e)->Write(0, Block('b'), false).code(), Code::kFailedPrecondition);
  ASSERT_TRUE(node_->Unfence("v").ok());
  ASSERT_TRUE((*e)->Write(0, Block('b'), false).ok());
  EXPECT_EQ(Volume("v")["fenced"], false);
  EXPECT_EQ(node_->Fence("nope").status().code(), Code::kNotFound);
}

TEST_F(NodeFailoverTest, ScanVolumesCannotBeFenced) {
  StartNode();
  ASSERT_TRUE(node_->AddVolume("s", dir_ + "/s.img", kSize, "scan", 60'000).ok());
  EXPECT_EQ(node_->Fence("s").status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace ferry::node
