#include "node/promotion.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "capture/dirty_map.h"
#include "journal/replica.h"

namespace ferry::node {

namespace {

constexpr char kStagingPrefix[] = ".promote-";
constexpr char kSettings[] = "volume.json";
constexpr char kProbe[] = ".ferry-promote-probe";

Status RemoveTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return IoError("removing " + dir + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

Promotion::Promotion(Env* env, std::string volumes_root, RemoveReplica remove_replica)
    : env_(env), root_(std::move(volumes_root)), remove_replica_(std::move(remove_replica)) {}

std::string Promotion::VolumeDir(const std::string& name) const { return JoinPath(root_, name); }

std::string Promotion::StagingDir(const std::string& name) const {
  return JoinPath(root_, kStagingPrefix + name);
}

Status Promotion::CheckRename(const std::string& from_dir, const std::string& to_dir) const {
  const std::string from = JoinPath(from_dir, kProbe), to = JoinPath(to_dir, kProbe);
  {
    ASSIGN_OR_RETURN(auto f, env_->OpenFile(from, OpenMode::kCreate));
  }
  Status moved = env_->Rename(from, to);
  if (!moved.ok()) {
    (void)env_->RemoveFile(from);
    return FailedPrecondition("the image cannot be moved from " + from_dir + " to " + to_dir +
                              " by renaming it (" + std::string(moved.message()) +
                              "): give a disk path on the filesystem of the node's data "
                              "directory, or no disk path");
  }
  return env_->RemoveFile(to);
}

Result<nlohmann::json> Promotion::ReadSettings(const std::string& dir) const {
  const std::string path = JoinPath(dir, kSettings);
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(env_, path));
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) return DataLoss(path + ": not a JSON object");
    return j;
  } catch (const std::exception& e) {
    return DataLoss(path + ": " + e.what());
  }
}

Status Promotion::Stage(const PromotePlan& plan) {
  const std::string dir = StagingDir(plan.name);
  RETURN_IF_ERROR(RemoveTree(dir));
  RETURN_IF_ERROR(env_->CreateDir(dir));
  journal::CreateParams p;
  p.size = plan.size;
  p.block_size = plan.block_size;
  p.pending_log = true;  // volume id and history id: new ones
  journal::ReplicaOptions o;
  o.env = env_;
  {
    ASSIGN_OR_RETURN(auto log, journal::Replica::Create(JoinPath(dir, "log"), p, o));
  }  // closed: the volume opens it again
  if (plan.has_delta) {
    ASSIGN_OR_RETURN(auto delta, capture::DirtyMap::Open(env_, JoinPath(dir, kDeltaMapFile), plan.size,
                                                         plan.block_size));
    delta->SetRuns(plan.delta_runs, plan.block_size);
    RETURN_IF_ERROR(delta->Save());
  }
  nlohmann::json j = plan.settings;
  j["promote"] = {{"replica_id", plan.replica_id}, {"image", plan.image}};
  RETURN_IF_ERROR(WriteFileAtomically(env_, JoinPath(dir, kSettings), j.dump(2) + "\n"));
  return env_->SyncDir(root_);
}

Status Promotion::Commit(const std::string& name) {
  if (env_->Exists(VolumeDir(name))) {
    return AlreadyExists(VolumeDir(name) + " exists (a removed volume's disk?); move it away");
  }
  RETURN_IF_ERROR(env_->Rename(StagingDir(name), VolumeDir(name)));
  return env_->SyncDir(root_);
}

Result<std::string> Promotion::Pending(const std::string& name) const {
  if (!env_->Exists(JoinPath(VolumeDir(name), kSettings))) return std::string();
  ASSIGN_OR_RETURN(nlohmann::json j, ReadSettings(VolumeDir(name)));
  if (!j.contains("promote")) return std::string();
  return j["promote"].value("replica_id", std::string());
}

Status Promotion::Finish(const std::string& name) {
  const std::string dir = VolumeDir(name);
  ASSIGN_OR_RETURN(nlohmann::json j, ReadSettings(dir));
  if (!j.contains("promote")) return Status::Ok();
  std::string image, replica_id, disk;
  try {
    image = j["promote"].at("image").get<std::string>();
    replica_id = j["promote"].at("replica_id").get<std::string>();
    disk = j.at("disk").get<std::string>();
  } catch (const std::exception& e) {
    return DataLoss(JoinPath(dir, kSettings) + ": " + e.what());
  }
  if (env_->Exists(image)) {
    if (env_->Exists(disk)) {
      return FailedPrecondition("promote of volume " + name + " cannot move the image " + image +
                                " to " + disk + ": another file is there; move it away, then "
                                "retry the promote or restart the node");
    }
    RETURN_IF_ERROR(env_->Rename(image, disk));
    RETURN_IF_ERROR(env_->SyncDir(DirName(disk)));
    RETURN_IF_ERROR(env_->SyncDir(DirName(image)));
  } else if (!env_->Exists(disk)) {
    return DataLoss("promote of volume " + name + ": neither the image " + image +
                    " nor the disk " + disk + " exists");
  }
  Status removed = remove_replica_(replica_id);
  if (!removed.ok() && removed.code() != Code::kNotFound) return removed;
  j.erase("promote");
  return WriteFileAtomically(env_, JoinPath(dir, kSettings), j.dump(2) + "\n");
}

Status Promotion::Recover() {
  if (!env_->Exists(root_)) return Status::Ok();
  ASSIGN_OR_RETURN(auto names, env_->ListDir(root_));
  for (const std::string& name : names) {
    if (name.rfind(kStagingPrefix, 0) == 0) {
      RETURN_IF_ERROR(RemoveTree(JoinPath(root_, name)));
      spdlog::info("a promote to volume {} was interrupted before its commit point: undone; "
                   "the replica is unchanged, promote it again", name.substr(sizeof kStagingPrefix - 1));
      continue;
    }
    if (name.empty() || name[0] == '.' || !env_->Exists(JoinPath(VolumeDir(name), kSettings))) continue;
    ASSIGN_OR_RETURN(std::string pending, Pending(name));
    if (pending.empty()) continue;
    Status s = Finish(name);
    if (!s.ok()) return s.WithContext("finishing the promote of volume " + name);
    spdlog::info("a promote to volume {} was interrupted after its commit point: finished", name);
  }
  return Status::Ok();
}

}  // namespace ferry::node
