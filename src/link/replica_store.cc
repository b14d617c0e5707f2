#include "link/replica_store.h"

#include <spdlog/spdlog.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "env/env.h"
#include "journal/manifest.h"

namespace ferry::link {

namespace {

// The volume's name lives beside the replica (the replica format does not carry it).
constexpr char kNameFile[] = "VOLUME_NAME";
constexpr char kSeedChangesFile[] = "SEED-CHANGES";
// {"retention_seconds": N}, from the source's HELLO.
constexpr char kRetentionFile[] = "RETENTION";
constexpr char kDeletedPrefix[] = ".deleted-";

// Deletes a directory tree that is already out of the way (renamed to .deleted-*).
Status RemoveTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return IoError("removing " + dir + ": " + ec.message());
  return Status::Ok();
}

std::string HistoryHex(uint64_t v) {
  char buf[20];
  snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

// The retention recorded beside a replica; 0 when none is (or the file is damaged: the node's
// default applies until the source's next HELLO rewrites it, which is logged).
int64_t ReadRetention(Env* env, const std::string& dir) {
  const std::string path = JoinPath(dir, kRetentionFile);
  if (!env->Exists(path)) return 0;
  auto text = ReadFileToString(env, path);
  if (text.ok()) {
    nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_object() && j.contains("retention_seconds") && j["retention_seconds"].is_number_integer() &&
        j["retention_seconds"].get<int64_t>() > 0) {
      return j["retention_seconds"].get<int64_t>();
    }
  }
  spdlog::warn("{}: unreadable ({}); the node's default retention applies until the source "
               "connects again", path, text.ok() ? "not a retention object" : text.status().ToString());
  return 0;
}

}  // namespace

ReplicaStore::ReplicaStore(std::string root, journal::ReplicaOptions options)
    : root_(std::move(root)), options_(options) {}

Status ReplicaStore::OpenAll() {
  Env* env = options_.env;
  RETURN_IF_ERROR(env->CreateDir(root_));
  ASSIGN_OR_RETURN(auto names, env->ListDir(root_));
  std::lock_guard l(mu_);
  for (const std::string& id : names) {
    if (id.rfind(kDeletedPrefix, 0) == 0) {
      // A removal that a crash interrupted.
      RETURN_IF_ERROR(RemoveTree(JoinPath(root_, id)));
      continue;
    }
    journal::Id128 vid;
    if (!journal::IdFromHex(id, &vid) || by_id_.count(id)) continue;
    const std::string dir = JoinPath(root_, id);
    if (!env->Exists(JoinPath(dir, "MANIFEST"))) continue;
    ASSIGN_OR_RETURN(auto replica, journal::Replica::Open(dir, options_));
    std::string name = id;
    auto text = ReadFileToString(env, JoinPath(dir, kNameFile));
    if (text.ok() && !text->empty()) name = *text;
    by_id_[id] = Entry{name, id, replica, ReadRetention(env, dir)};
  }
  return Status::Ok();
}

Result<std::shared_ptr<journal::Replica>> ReplicaStore::ReplicaFor(const Hello& hello) {
  const std::string id = journal::IdToHex(hello.volume_id);
  std::lock_guard l(mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    const std::string dir = JoinPath(root_, id);
    Env* env = options_.env;
    RETURN_IF_ERROR(env->CreateDir(root_));
    std::shared_ptr<journal::Replica> replica;
    if (env->Exists(JoinPath(dir, "MANIFEST"))) {
      ASSIGN_OR_RETURN(replica, journal::Replica::Open(dir, options_));
    } else {
      journal::CreateParams p;
      p.size = hello.volume_size;
      p.block_size = hello.block_size;
      p.volume_id = hello.volume_id;
      p.history_id = hello.history_id;
      p.first_seq = hello.source_last_seq + 1;
      p.initial_sync = true;
      if (p.history_id == 0) return InvalidArgument("HELLO without a history id");
      auto created = journal::Replica::Create(dir, p, options_);
      if (!created.ok()) return created.status().WithContext("creating the replica of " + hello.volume);
      replica = *created;
      RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(dir, kNameFile), hello.volume));
    }
    it = by_id_.emplace(id, Entry{hello.volume, id, replica}).first;
  }
  const auto& r = it->second.replica;
  if (r->history_id() != hello.history_id) {
    return FailedPrecondition("history " + HistoryHex(hello.history_id) + " of volume " +
                              hello.volume + " is not the replica's history " +
                              HistoryHex(r->history_id()) + "; the replica belongs to another "
                              "history — remove it or reprotect to start a new one");
  }
  if (r->size() != hello.volume_size || r->block_size() != hello.block_size) {
    return FailedPrecondition("volume " + hello.volume + " is " +
                              std::to_string(hello.volume_size) + " bytes in blocks of " +
                              std::to_string(hello.block_size) + " but its replica is " +
                              std::to_string(r->size()) + " in blocks of " +
                              std::to_string(r->block_size()));
  }
  if (hello.retention_seconds > 0 && hello.retention_seconds != it->second.retention_seconds) {
    const nlohmann::json j = {{"retention_seconds", hello.retention_seconds}};
    RETURN_IF_ERROR(WriteFileAtomically(options_.env, JoinPath(JoinPath(root_, id), kRetentionFile),
                                        j.dump() + "\n"));
    it->second.retention_seconds = hello.retention_seconds;
  }
  return r;
}

Result<std::shared_ptr<journal::Replica>> ReplicaStore::Prepare(const std::string& name,
                                                               const journal::CreateParams& params) {
  const std::string id = journal::IdToHex(params.volume_id);
  std::lock_guard l(mu_);
  if (by_id_.count(id)) return AlreadyExists("a replica of volume " + id + " exists already");
  for (const auto& [other, e] : by_id_) {
    if (e.name == name) return AlreadyExists("a replica named " + name + " exists already");
  }
  Env* env = options_.env;
  RETURN_IF_ERROR(env->CreateDir(root_));
  const std::string dir = JoinPath(root_, id);
  journal::CreateParams p = params;
  p.initial_sync = true;
  ASSIGN_OR_RETURN(auto replica, journal::Replica::Create(dir, p, options_));
  RETURN_IF_ERROR(WriteFileAtomically(env, JoinPath(dir, kNameFile), name));
  by_id_[id] = Entry{name, id, replica};
  return replica;
}

Status ReplicaStore::WriteSeedChanges(Env* env, const std::string& replica_dir, const SeedChanges& changes) {
  return WriteFileAtomically(env, JoinPath(replica_dir, kSeedChangesFile),
                             journal::FrameWithChecksum(SeedChangesToJson(changes).dump()));
}

std::optional<SeedChanges> ReplicaStore::ReadSeedChanges(Env* env, const std::string& replica_dir) {
  const std::string path = JoinPath(replica_dir, kSeedChangesFile);
  if (!env->Exists(path)) return std::nullopt;
  Result<SeedChanges> got = [&]() -> Result<SeedChanges> {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(env, path));
    ASSIGN_OR_RETURN(std::string body, journal::UnframeChecksum(text, path));
    nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded()) return DataLoss(path + ": not JSON");
    return SeedChangesFromJson(j);
  }();
  if (!got.ok()) {
    spdlog::warn("{}: {}; the seeded sync compares digests instead", path, got.status().ToString());
    return std::nullopt;
  }
  return *got;
}

void ReplicaStore::RemoveSeedChanges(Env* env, const std::string& replica_dir) {
  const std::string path = JoinPath(replica_dir, kSeedChangesFile);
  if (!env->Exists(path)) return;
  Status s = env->RemoveFile(path);
  if (!s.ok()) spdlog::warn("{}: {}", path, s.ToString());
}

Result<ReplicaStore::Entry> ReplicaStore::FindEntry(const std::string& name_or_id) const {
  std::lock_guard l(mu_);
  auto it = by_id_.find(name_or_id);
  if (it != by_id_.end()) return it->second;
  for (const auto& [id, e] : by_id_) {
    if (e.name == name_or_id) return e;
  }
  return NotFound("no replica of volume " + name_or_id + " on this node");
}

Result<std::shared_ptr<journal::Replica>> ReplicaStore::Find(const std::string& name_or_id) const {
  ASSIGN_OR_RETURN(Entry e, FindEntry(name_or_id));
  return e.replica;
}

Status ReplicaStore::Remove(const std::string& volume_id) {
  journal::Id128 vid;
  if (!journal::IdFromHex(volume_id, &vid)) return InvalidArgument("volume id " + volume_id + " is not 32 hex digits");
  Env* env = options_.env;
  const std::string dir = JoinPath(root_, volume_id);
  const std::string trash = JoinPath(root_, kDeletedPrefix + volume_id);
  {
    // Under the lock: a HELLO arriving now finds neither the entry nor the directory, and
    // creates a fresh replica.
    std::lock_guard l(mu_);
    const bool open = by_id_.erase(volume_id) > 0;
    if (!env->Exists(dir)) return open ? Status::Ok() : NotFound("no replica of volume " + volume_id + " on this node");
    if (env->Exists(trash)) RETURN_IF_ERROR(RemoveTree(trash));
    RETURN_IF_ERROR(env->Rename(dir, trash));
    RETURN_IF_ERROR(env->SyncDir(root_));
  }
  Status s = RemoveTree(trash);
  if (!s.ok()) spdlog::warn("replica {} is removed, but deleting its files failed: {}; the next start retries", volume_id, s.ToString());
  return Status::Ok();
}

std::vector<ReplicaStore::Entry> ReplicaStore::List() const {
  std::lock_guard l(mu_);
  std::vector<Entry> out;
  for (const auto& [id, e] : by_id_) out.push_back(e);
  return out;
}

}  // namespace ferry::link
