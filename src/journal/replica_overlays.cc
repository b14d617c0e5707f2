// Replica: recovery at open, overlays, and commit.
#include <algorithm>
#include <limits>

#include "journal/overlay.h"
#include "journal/replica.h"
#include "journal/segment.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

std::string OverlayPinOwner(const std::string& name) { return "overlay:" + name; }

// An overlay directory being removed (docs/formats/journal.md, "Overlays").
constexpr char kDiscardedFile[] = "DISCARDED";

Status CheckOverlayName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name != "." && name != "..";
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    return InvalidArgument("overlay name '" + name +
                           "' must be 1 to 64 letters, digits, '-', '_' or '.'");
  }
  return Status::Ok();
}

// Removes an overlay's directory. OVERLAY first becomes DISCARDED, durably, and that goes
// last: wherever a crash stops this, Open finds a directory it may finish removing, never an
// overlay that lost its OVERLAY but kept its data (which Open refuses; see Recover).
Status RemoveOverlayFiles(Env* env, const std::string& dir) {
  auto names = env->ListDir(dir);
  if (!names.ok()) return names.status().code() == Code::kNotFound ? Status::Ok() : names.status();
  const std::string discarded = JoinPath(dir, kDiscardedFile);
  if (env->Exists(JoinPath(dir, "OVERLAY"))) {
    RETURN_IF_ERROR(env->Rename(JoinPath(dir, "OVERLAY"), discarded));
    RETURN_IF_ERROR(env->SyncDir(dir));
  }
  for (const std::string& n : *names) {
    if (n != "OVERLAY" && n != kDiscardedFile) RETURN_IF_ERROR(env->RemoveFile(JoinPath(dir, n)));
  }
  RETURN_IF_ERROR(env->SyncDir(dir));
  if (env->Exists(discarded)) {
    RETURN_IF_ERROR(env->RemoveFile(discarded));
    // The removals must be durable before the directory goes: otherwise a crash brings back
    // an overlay whose pin is already gone.
    RETURN_IF_ERROR(env->SyncDir(dir));
  }
  RETURN_IF_ERROR(env->RemoveDir(dir));
  return env->SyncDir(DirName(dir));
}

// What in an overlay directory without OVERLAY shows it may hold a user's writes, or "" if
// nothing does: a directory a crash left while Overlay::Create made it holds only the files
// Create makes before OVERLAY (data.img, blocks.log, intent.0, intent.1) and OVERLAY.tmp,
// each missing or empty (data.img: no byte but zero).
Result<std::string> EvidenceOfWrites(Env* env, const std::string& dir) {
  ASSIGN_OR_RETURN(auto names, env->ListDir(dir));
  for (const std::string& n : names) {
    if (n != "data.img" && n != "blocks.log" && n != "intent.0" && n != "intent.1" &&
        n != "OVERLAY.tmp") {
      return "it holds " + n;
    }
  }
  for (const char* n : {"blocks.log", "intent.0", "intent.1"}) {
    if (!env->Exists(JoinPath(dir, n))) continue;
    ASSIGN_OR_RETURN(auto f, env->OpenFile(JoinPath(dir, n), OpenMode::kRead));
    ASSIGN_OR_RETURN(uint64_t size, f->Size());
    if (size != 0) return std::string(n) + " holds " + std::to_string(size) + " bytes";
  }
  if (!env->Exists(JoinPath(dir, "data.img"))) return std::string();
  ASSIGN_OR_RETURN(auto data, env->OpenFile(JoinPath(dir, "data.img"), OpenMode::kRead));
  ASSIGN_OR_RETURN(uint64_t size, data->Size());
  std::string buf(1 << 20, '\0');
  for (uint64_t pos = 0; pos < size;) {
    ASSIGN_OR_RETURN(pos, data->NextData(pos));
    if (pos >= size) break;
    ASSIGN_OR_RETURN(size_t got,
                     data->ReadAt(pos, std::min<uint64_t>(buf.size(), size - pos), buf.data()));
    if (got == 0) break;
    auto nonzero = std::find_if(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got),
                                [](char c) { return c != 0; });
    if (nonzero != buf.begin() + static_cast<std::ptrdiff_t>(got)) {
      return "data.img holds data at offset " +
             std::to_string(pos + static_cast<uint64_t>(nonzero - buf.begin()));
    }
    pos += got;
  }
  return std::string();
}

}  // namespace

Status Replica::Recover() {
  const std::string overlays_dir = JoinPath(dir_, "overlays");
  if (manifest_.state == "committed") {
    ASSIGN_OR_RETURN(auto o, Overlay::Load(env_, JoinPath(overlays_dir, manifest_.committed_overlay),
                                           manifest_.size, manifest_.block_size));
    overlays_[o->name()] = o;
    return DropJournalAndBase();  // if the commit stopped before it had
  }
  if (manifest_.merge_target != 0) RETURN_IF_ERROR(MergeTo(manifest_.merge_target));

  RETURN_IF_ERROR(env_->CreateDir(overlays_dir));
  ASSIGN_OR_RETURN(auto names, env_->ListDir(overlays_dir));
  std::string finished_commit;
  for (const std::string& name : names) {
    std::string odir = JoinPath(overlays_dir, name);
    if (env_->Exists(JoinPath(odir, kDiscardedFile))) {
      // A discard a crash cut short: finish it.
      RETURN_IF_ERROR(RemoveOverlayFiles(env_, odir));
      continue;
    }
    if (!env_->Exists(JoinPath(odir, "OVERLAY"))) {
      // Overlay::Create writes OVERLAY last, and nothing can be written through an overlay
      // before Create returns: a directory without it whose files hold nothing is a creation
      // a crash cut short. Anything else is an overlay that lost its OVERLAY file.
      ASSIGN_OR_RETURN(std::string found, EvidenceOfWrites(env_, odir));
      if (!found.empty()) {
        return DataLoss("overlay " + name + ": " + JoinPath(odir, "OVERLAY") + " is missing, but " +
                        found + "; restore OVERLAY, or move " + odir +
                        " out of the replica to open it without this overlay");
      }
      RETURN_IF_ERROR(RemoveOverlayFiles(env_, odir));
      continue;
    }
    ASSIGN_OR_RETURN(auto o, Overlay::Load(env_, odir, manifest_.size, manifest_.block_size));
    ASSIGN_OR_RETURN(auto view, OpenViewImpl(o->point(), false));
    o->AttachView(std::move(view));
    if (o->state() == OverlayState::kCommitted) finished_commit = o->name();
    overlays_[o->name()] = std::move(o);
  }
  // Pins of overlays that never finished being created.
  std::vector<std::string> orphans;
  for (const journal::Pin& p : manifest_.pins) {
    if (p.owner.rfind("overlay:", 0) == 0 && !overlays_.count(p.owner.substr(8))) {
      orphans.push_back(p.owner);
    }
  }
  for (const std::string& owner : orphans) RETURN_IF_ERROR(Unpin(owner));
  if (!finished_commit.empty()) {
    std::lock_guard mt(maintenance_mu_);
    RETURN_IF_ERROR(FinishCommitLocked(finished_commit));
  }
  return Status::Ok();
}

Result<std::shared_ptr<Overlay>> Replica::CreateOverlay(const std::string& name, uint64_t seq) {
  RETURN_IF_ERROR(CheckOverlayName(name));
  std::lock_guard mt(maintenance_mu_);
  {
    std::lock_guard ml(meta_mu_);
    if (manifest_.state == "committed") {
      return FailedPrecondition("replica was committed to overlay " + manifest_.committed_overlay +
                                "; it has no points to make overlays of");
    }
    if (overlays_.count(name)) {
      return AlreadyExists("overlay " + name + " exists; discard it or choose another name");
    }
  }
  RETURN_IF_ERROR(Pin(seq, OverlayPinOwner(name), "overlay " + name));
  auto view = OpenViewImpl(seq, false);
  if (!view.ok()) {
    (void)Unpin(OverlayPinOwner(name));
    return view.status();
  }
  auto o = Overlay::Create(env_, JoinPath(JoinPath(dir_, "overlays"), name), name, seq,
                           manifest_.size, manifest_.block_size, options_.clock->NowNanos());
  if (!o.ok()) {
    (void)RemoveOverlayFiles(env_, JoinPath(JoinPath(dir_, "overlays"), name));
    (void)Unpin(OverlayPinOwner(name));
    return o.status();
  }
  (*o)->AttachView(std::move(*view));
  std::lock_guard ml(meta_mu_);
  overlays_[name] = *o;
  return *o;
}

Result<std::shared_ptr<Overlay>> Replica::GetOverlay(const std::string& name) {
  std::lock_guard ml(meta_mu_);
  auto it = overlays_.find(name);
  if (it == overlays_.end()) return NotFound("no overlay named " + name);
  return it->second;
}

std::vector<std::string> Replica::ListOverlays() const {
  std::lock_guard ml(meta_mu_);
  std::vector<std::string> out;
  for (const auto& [name, o] : overlays_) out.push_back(name);
  return out;
}

Status Replica::DiscardOverlay(const std::string& name) {
  std::lock_guard mt(maintenance_mu_);
  std::shared_ptr<Overlay> o;
  {
    std::lock_guard ml(meta_mu_);
    auto it = overlays_.find(name);
    if (it == overlays_.end()) return NotFound("no overlay named " + name);
    o = it->second;
    if (commit_.running && commit_.overlay == name) {
      return FailedPrecondition("overlay " + name + " is being committed; wait for the commit");
    }
    if (o->state() != OverlayState::kActive) {
      return FailedPrecondition("overlay " + name + " is " +
                                std::string(OverlayStateName(o->state())) +
                                "; a committed disk cannot be discarded");
    }
  }
  {
    std::lock_guard ol(o->mu_);
    o->discarded_ = true;
  }
  o->DetachView();
  RETURN_IF_ERROR(RemoveOverlayFiles(env_, o->dir_));
  RETURN_IF_ERROR(Unpin(OverlayPinOwner(name)));
  std::lock_guard ml(meta_mu_);
  overlays_.erase(name);
  return Status::Ok();
}

Status Replica::StartCommit(const std::string& name) {
  std::lock_guard mt(maintenance_mu_);
  std::shared_ptr<Overlay> o;
  {
    std::lock_guard ml(meta_mu_);
    if (manifest_.state == "committed") {
      return FailedPrecondition("replica is already committed to overlay " +
                                manifest_.committed_overlay);
    }
    auto it = overlays_.find(name);
    if (it == overlays_.end()) return NotFound("no overlay named " + name);
    for (const auto& [other, ov] : overlays_) {
      if (other != name) {
        return FailedPrecondition("overlay " + other +
                                  " also exists; commit drops every other point, so discard it "
                                  "first");
      }
    }
    if (commit_.running) return FailedPrecondition("a commit is already running");
    o = it->second;
  }
  if (commit_thread_.joinable()) commit_thread_.join();
  RETURN_IF_ERROR(o->StoreMeta(OverlayState::kCommitting));
  {
    std::lock_guard ml(meta_mu_);
    commit_ = CommitProgress{};
    commit_.overlay = name;
    commit_.running = true;
    commit_.blocks_total = manifest_.size / manifest_.block_size;
  }
  commit_done_.store(0);
  commit_stop_.store(false);
  commit_thread_ = std::thread([this, o] { RunCommit(o); });
  return Status::Ok();
}

void Replica::RunCommit(std::shared_ptr<Overlay> o) {
  PrefetchSegments(&commit_stop_);
  Status s = o->Fill(&commit_done_, &commit_stop_);
  if (s.ok()) s = o->StoreMeta(OverlayState::kCommitted);
  std::unique_lock mt(maintenance_mu_, std::defer_lock);
  if (s.ok()) {
    mt.lock();
    s = SwitchToCommittedLocked(o->name());
  }
  {
    std::lock_guard ml(meta_mu_);
    commit_.running = false;
    commit_.done = manifest_.state == "committed";
    commit_.cleaning = s.ok();
    commit_.status = s;
  }
  commit_cv_.notify_all();
  if (!s.ok()) return;
  // The commit is done: the overlay is the volume. Removing the old journal and base (a few
  // hundred ms per GiB) is cleanup nobody waits for; Open repeats it if it is cut short.
  Status d = DropJournalAndBaseOf(o->name());
  {
    std::lock_guard ml(meta_mu_);
    commit_.cleaning = false;
    commit_.status = d;
  }
  commit_cv_.notify_all();
}

Status Replica::FinishCommitLocked(const std::string& name) {
  RETURN_IF_ERROR(SwitchToCommittedLocked(name));
  return DropJournalAndBaseOf(name);
}

Status Replica::DropJournalAndBaseOf(const std::string& name) {
  Status s = DropJournalAndBase();
  if (!s.ok()) {
    return s.WithContext("overlay " + name + " is committed, but dropping the journal and base " +
                         "failed; opening the replica drops them");
  }
  return Status::Ok();
}

Status Replica::SwitchToCommittedLocked(const std::string& name) {
  std::shared_ptr<Overlay> o;
  {
    std::lock_guard wl(write_mu_);
    std::lock_guard ml(meta_mu_);
    o = overlays_.at(name);
    {
      // What the source wrote after the point, before the journal goes: a delta resync back
      // to the source's old disk needs it (Overlay::DifferingExtents). Recorded again if a
      // crash comes before the manifest below.
      std::shared_lock il(index_mu_);
      RETURN_IF_ERROR(o->StoreDiverged(JournaledBlockRunsLocked(o->point()),
                                       std::max(published_seq_.load(), manifest_.base_seq)));
    }
    Manifest next = manifest_;
    next.state = "committed";
    next.committed_overlay = name;
    next.pins.clear();
    RETURN_IF_ERROR(next.Store(env_, dir_));
    manifest_ = std::move(next);
    std::unique_lock il(index_mu_);
    index_.Retain(std::vector<bool>(index_.size(), false));
    markers_.clear();
    segments_.clear();
    segment_bytes_.clear();
    base_.reset();
    active_.reset();
  }
  o->DetachView();
  return Status::Ok();
}

// Idempotent: Open repeats it for a committed replica, so an error or a crash part way leaves
// nothing behind for good.
Status Replica::DropJournalAndBase() {
  auto names = env_->ListDir(journal_dir_);
  if (!names.ok() && names.status().code() != Code::kNotFound) return names.status();
  if (names.ok()) {
    for (const std::string& n : *names) {
      RETURN_IF_ERROR(env_->RemoveFile(JoinPath(journal_dir_, n)));
    }
    RETURN_IF_ERROR(env_->SyncDir(journal_dir_));
  }
  if (env_->Exists(JoinPath(dir_, "base.img"))) {
    RETURN_IF_ERROR(env_->RemoveFile(JoinPath(dir_, "base.img")));
  }
  return env_->SyncDir(dir_);
}

CommitProgress Replica::GetCommitProgress() const {
  std::lock_guard ml(meta_mu_);
  CommitProgress p = commit_;
  p.blocks_done = commit_done_.load();
  return p;
}

Status Replica::WaitForCommit() {
  std::unique_lock ml(meta_mu_);
  if (commit_.overlay.empty()) return FailedPrecondition("no commit was started");
  commit_cv_.wait(ml, [this] { return !commit_.running; });
  return commit_.status;
}

Status Replica::WaitForCommitCleanup() {
  std::unique_lock ml(meta_mu_);
  if (commit_.overlay.empty()) return FailedPrecondition("no commit was started");
  commit_cv_.wait(ml, [this] { return !commit_.running && !commit_.cleaning; });
  return commit_.status;
}

}  // namespace ferry::journal
