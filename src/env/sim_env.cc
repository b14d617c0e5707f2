#include "env/sim_env.h"

#include <algorithm>
#include <cstring>
#include <utility>

namespace ferry {
namespace {

// Larger than any test needs, small enough that offset + length never overflows.
constexpr uint64_t kMaxFileSize = uint64_t{1} << 50;

// Deterministic generator for Crash (splitmix64): same seed, same crash.
class CrashRng {
 public:
  explicit CrashRng(uint64_t seed) : state_(seed) {}
  // Uniform in [0, n); n > 0.
  uint64_t Below(uint64_t n) { return Next() % n; }

 private:
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_;
};

// File contents as 4 KiB blocks; a missing block is a hole and reads as zeros. Invariant:
// no block starts at or past size_, and bytes of the last block past size_ are zero, so
// growing the size exposes zeros.
class SparseBytes {
 public:
  uint64_t size() const { return size_; }

  void Write(uint64_t offset, std::string_view data) {
    uint64_t pos = offset;
    while (!data.empty()) {
      size_t in = static_cast<size_t>(pos % kBlock);
      size_t len = std::min<size_t>(kBlock - in, data.size());
      std::string& block = blocks_[pos / kBlock];
      if (block.empty()) block.assign(kBlock, '\0');
      std::memcpy(block.data() + in, data.data(), len);
      data.remove_prefix(len);
      pos += len;
    }
    size_ = std::max(size_, pos);
  }

  void Truncate(uint64_t size) {
    if (size < size_) {
      ZeroRange(size, size_ - size);
      blocks_.erase(blocks_.lower_bound((size + kBlock - 1) / kBlock), blocks_.end());
    }
    size_ = size;
  }

  // Zeros [offset, offset + n) inside the file; whole blocks become holes.
  void ZeroRange(uint64_t offset, uint64_t n) {
    uint64_t end = std::min(size_, offset + std::min(n, kMaxFileSize));
    auto it = blocks_.lower_bound(offset / kBlock);
    while (it != blocks_.end() && it->first * kBlock < end) {
      uint64_t start = it->first * kBlock;
      uint64_t from = std::max(start, offset);
      uint64_t to = std::min(start + kBlock, end);
      if (from == start && to == start + kBlock) {
        it = blocks_.erase(it);
        continue;
      }
      std::memset(it->second.data() + (from - start), 0, to - from);
      ++it;
    }
  }

  size_t Read(uint64_t offset, size_t n, char* dst) const {
    if (offset >= size_) return 0;
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
    std::memset(dst, 0, n);
    uint64_t end = offset + n;
    for (auto it = blocks_.lower_bound(offset / kBlock);
         it != blocks_.end() && it->first * kBlock < end; ++it) {
      uint64_t start = it->first * kBlock;
      uint64_t from = std::max(start, offset);
      uint64_t to = std::min(start + kBlock, end);
      std::memcpy(dst + (from - offset), it->second.data() + (from - start), to - from);
    }
    return n;
  }

  uint64_t NextData(uint64_t offset) const {
    if (offset >= size_) return size_;
    auto it = blocks_.lower_bound(offset / kBlock);
    if (it == blocks_.end()) return size_;
    return std::max(offset, it->first * kBlock);
  }

 private:
  static constexpr uint64_t kBlock = 4096;
  uint64_t size_ = 0;
  std::map<uint64_t, std::string> blocks_;  // block index -> kBlock bytes
};

// One unsynced change to a file's bytes.
struct DataOp {
  enum class Kind { kWrite, kTruncate, kPunch };
  Kind kind;
  uint64_t offset = 0;  // kTruncate: the new size
  uint64_t length = 0;  // kPunch only
  std::string bytes;    // kWrite only

  uint64_t SizeAfter(uint64_t size) const {
    switch (kind) {
      case Kind::kWrite:
        return bytes.empty() ? size : std::max(size, offset + bytes.size());
      case Kind::kTruncate:
        return offset;
      case Kind::kPunch:
        return size;
    }
    return size;
  }

  // Applies the op; a write keeps only its first `keep` bytes (a torn write).
  void ApplyTo(SparseBytes& b, size_t keep = std::string::npos) const {
    switch (kind) {
      case Kind::kWrite:
        b.Write(offset, std::string_view(bytes).substr(0, keep));
        break;
      case Kind::kTruncate:
        b.Truncate(offset);
        break;
      case Kind::kPunch:
        b.ZeroRange(offset, length);
        break;
    }
  }
};

// Paths are used as given, but "a/b/" names the same thing as "a/b".
std::string Normalize(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Status InjectedError() { return IoError("injected I/O error"); }

}  // namespace

struct SimEnv::Inode {
  SparseBytes current;
  SparseBytes durable;
  std::vector<DataOp> unsynced;  // since the last Sync, oldest first
  bool named = true;             // has a name in files_, so its size counts as used
};

// One change to the namespace. It lives in the directory of `path`, and SyncDir of that
// directory makes it durable.
struct SimEnv::NamespaceOp {
  enum class Kind {
    kLink,    // path now names inode (a new file)
    kUnlink,  // path no longer names inode
    kMove,    // inode moved to path from wherever it was (Rename), replacing what was there
  };
  Kind kind;
  std::string path;
  std::shared_ptr<Inode> inode;
  bool synced = false;

  // Robust to earlier ops having been dropped by a crash: each inode keeps at most one name.
  void ApplyTo(std::map<std::string, std::shared_ptr<Inode>>& ns) const {
    switch (kind) {
      case Kind::kLink:
        ns[path] = inode;
        break;
      case Kind::kUnlink: {
        auto it = ns.find(path);
        if (it != ns.end() && it->second == inode) ns.erase(it);
        break;
      }
      case Kind::kMove:
        std::erase_if(ns, [&](const auto& entry) { return entry.second == inode; });
        ns[path] = inode;
        break;
    }
  }
};

class SimEnv::SimFile final : public File {
 public:
  SimFile(SimEnv* env, std::shared_ptr<Inode> inode, uint64_t generation, bool writable)
      : env_(env), inode_(std::move(inode)), generation_(generation), writable_(writable) {}

  Result<size_t> ReadAt(uint64_t offset, size_t n, void* dst) override {
    std::lock_guard lock(env_->mu_);
    RETURN_IF_ERROR(CheckLive());
    return inode_->current.Read(offset, n, static_cast<char*>(dst));
  }

  Status WriteAt(uint64_t offset, std::string_view data) override {
    return Mutate(DataOp{DataOp::Kind::kWrite, offset, 0, std::string(data)});
  }

  Status WriteAtV(uint64_t offset, std::span<const std::string_view> pieces) override {
    std::string joined;
    for (std::string_view piece : pieces) joined += piece;
    return Mutate(DataOp{DataOp::Kind::kWrite, offset, 0, std::move(joined)});
  }

  Status Sync() override {
    std::lock_guard lock(env_->mu_);
    RETURN_IF_ERROR(CheckLive());
    RETURN_IF_ERROR(env_->Gate());
    for (const DataOp& op : inode_->unsynced) op.ApplyTo(inode_->durable);
    inode_->unsynced.clear();
    ++env_->sync_count_;
    return Status::Ok();
  }

  Result<uint64_t> Size() override {
    std::lock_guard lock(env_->mu_);
    RETURN_IF_ERROR(CheckLive());
    return inode_->current.size();
  }

  Status Truncate(uint64_t size) override {
    return Mutate(DataOp{DataOp::Kind::kTruncate, size, 0, {}});
  }

  Status PunchHole(uint64_t offset, uint64_t n) override {
    return Mutate(DataOp{DataOp::Kind::kPunch, offset, n, {}});
  }

  Result<uint64_t> NextData(uint64_t offset) override {
    std::lock_guard lock(env_->mu_);
    RETURN_IF_ERROR(CheckLive());
    return inode_->current.NextData(offset);
  }

 private:
  Status CheckLive() const {
    if (generation_ != env_->generation_) return Aborted("simulated crash: reopen");
    return Status::Ok();
  }

  // The one path for WriteAt, WriteAtV, Truncate and PunchHole: all checks first, so a
  // refused op changes nothing; then apply now and log it for Sync or Crash.
  Status Mutate(DataOp op) {
    std::lock_guard lock(env_->mu_);
    RETURN_IF_ERROR(CheckLive());
    if (!writable_) return IoError("write to a file opened read-only");
    RETURN_IF_ERROR(env_->Gate());
    uint64_t old_size = inode_->current.size();
    if (op.kind == DataOp::Kind::kWrite && op.offset > kMaxFileSize - op.bytes.size()) {
      return IoError("write past the maximum file size");
    }
    uint64_t new_size = op.SizeAfter(old_size);
    if (new_size > kMaxFileSize) return IoError("file too large");
    if (new_size > old_size) {
      uint64_t growth = new_size - old_size;
      if (env_->used_ > env_->capacity_ || growth > env_->capacity_ - env_->used_) {
        return ResourceExhausted("no space left on device: need " + std::to_string(growth) +
                                 " bytes, " +
                                 std::to_string(env_->capacity_ - std::min(env_->capacity_,
                                                                           env_->used_)) +
                                 " free");
      }
    }
    if (op.kind == DataOp::Kind::kWrite && op.bytes.empty()) return Status::Ok();
    op.ApplyTo(inode_->current);
    if (inode_->named) env_->used_ = env_->used_ + new_size - old_size;
    inode_->unsynced.push_back(std::move(op));
    return Status::Ok();
  }

  SimEnv* const env_;
  const std::shared_ptr<Inode> inode_;
  const uint64_t generation_;
  const bool writable_;
};

SimEnv::SimEnv() = default;
SimEnv::~SimEnv() = default;

Status SimEnv::Gate() {
  if (fail_after_ < 0) return Status::Ok();
  if (fail_after_ == 0) return InjectedError();
  --fail_after_;
  return Status::Ok();
}

bool SimEnv::IsDir(const std::string& path) const {
  return path == "." || path == "/" || dirs_.count(path) > 0;
}

bool SimEnv::HasChildren(const std::string& dir) const {
  for (const auto& [path, inode] : files_) {
    if (DirName(path) == dir) return true;
  }
  for (const std::string& d : dirs_) {
    if (d != dir && DirName(d) == dir) return true;
  }
  return false;
}

void SimEnv::Unname(Inode& inode) {
  inode.named = false;
  used_ -= std::min(used_, inode.current.size());
}

Result<std::unique_ptr<File>> SimEnv::OpenFile(const std::string& path, OpenMode mode) {
  std::lock_guard lock(mu_);
  const std::string p = Normalize(path);
  bool create = mode == OpenMode::kCreate || mode == OpenMode::kCreateNew;
  if (create) RETURN_IF_ERROR(Gate());
  if (IsDir(p)) return IoError("open " + p + ": is a directory");
  auto it = files_.find(p);
  std::shared_ptr<Inode> inode;
  if (it != files_.end()) {
    if (mode == OpenMode::kCreateNew) return AlreadyExists("open " + p + ": file exists");
    inode = it->second;
  } else {
    if (!create) return NotFound("open " + p + ": no such file");
    if (!IsDir(DirName(p))) return NotFound("open " + p + ": no such directory");
    inode = std::make_shared<Inode>();
    files_[p] = inode;
    ns_log_.push_back({NamespaceOp::Kind::kLink, p, inode});
  }
  return std::unique_ptr<File>(std::make_unique<SimFile>(this, std::move(inode), generation_,
                                                         mode != OpenMode::kRead));
}

Status SimEnv::CreateDir(const std::string& path) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(Gate());
  const std::string p = Normalize(path);
  if (p.empty()) return InvalidArgument("CreateDir: empty path");
  // Every prefix ending before a '/', then the path itself (mkdir -p). Check all first, so
  // a refusal changes nothing.
  std::vector<std::string> chain;
  for (size_t pos = p.find('/', 1); pos != std::string::npos; pos = p.find('/', pos + 1)) {
    if (p[pos - 1] != '/') chain.push_back(p.substr(0, pos));
  }
  chain.push_back(p);
  for (const std::string& d : chain) {
    if (files_.count(d) > 0) return AlreadyExists("mkdir " + d + ": exists and is not a directory");
  }
  for (std::string& d : chain) {
    if (!IsDir(d)) dirs_.insert(std::move(d));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> SimEnv::ListDir(const std::string& path) {
  std::lock_guard lock(mu_);
  const std::string p = Normalize(path);
  if (!IsDir(p)) {
    if (files_.count(p) > 0) return IoError("opendir " + p + ": not a directory");
    return NotFound("opendir " + p + ": no such directory");
  }
  std::vector<std::string> names;
  for (const auto& [file, inode] : files_) {
    if (DirName(file) == p) names.push_back(BaseName(file));
  }
  for (const std::string& d : dirs_) {
    if (d != p && DirName(d) == p) names.push_back(BaseName(d));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Status SimEnv::RemoveFile(const std::string& path) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(Gate());
  const std::string p = Normalize(path);
  if (IsDir(p)) return IoError("unlink " + p + ": is a directory");
  auto it = files_.find(p);
  if (it == files_.end()) return NotFound("unlink " + p + ": no such file");
  Unname(*it->second);
  ns_log_.push_back({NamespaceOp::Kind::kUnlink, p, it->second});
  files_.erase(it);
  return Status::Ok();
}

Status SimEnv::RemoveDir(const std::string& path) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(Gate());
  const std::string p = Normalize(path);
  if (dirs_.count(p) == 0) {
    if (files_.count(p) > 0) return IoError("rmdir " + p + ": not a directory");
    if (IsDir(p)) return IoError("rmdir " + p + ": device or resource busy");
    return NotFound("rmdir " + p + ": no such directory");
  }
  if (HasChildren(p)) return IoError("rmdir " + p + ": directory not empty");
  dirs_.erase(p);
  return Status::Ok();
}

Status SimEnv::Rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(Gate());
  const std::string f = Normalize(from);
  const std::string t = Normalize(to);
  const std::string what = "rename " + f + " -> " + t;
  if (IsDir(f)) return IoError(what + ": SimEnv cannot rename directories");
  auto src = files_.find(f);
  if (src == files_.end()) return NotFound(what + ": no such file");
  if (IsDir(t)) return IoError(what + ": destination is a directory");
  if (!IsDir(DirName(t))) return NotFound(what + ": no such directory");
  if (f == t) return Status::Ok();
  std::shared_ptr<Inode> inode = src->second;
  files_.erase(src);
  auto dst = files_.find(t);
  if (dst != files_.end()) {
    Unname(*dst->second);
    dst->second = inode;
  } else {
    files_[t] = inode;
  }
  ns_log_.push_back({NamespaceOp::Kind::kMove, t, inode});
  return Status::Ok();
}

Status SimEnv::SyncDir(const std::string& path) {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(Gate());
  const std::string p = Normalize(path);
  if (!IsDir(p)) {
    if (files_.count(p) > 0) return IoError("open dir " + p + ": not a directory");
    return NotFound("open dir " + p + ": no such directory");
  }
  for (NamespaceOp& op : ns_log_) {
    if (DirName(op.path) == p) op.synced = true;
  }
  // Fold the synced ops at the front into the durable namespace.
  auto first_unsynced = std::find_if(ns_log_.begin(), ns_log_.end(),
                                     [](const NamespaceOp& op) { return !op.synced; });
  for (auto it = ns_log_.begin(); it != first_unsynced; ++it) it->ApplyTo(durable_files_);
  ns_log_.erase(ns_log_.begin(), first_unsynced);
  return Status::Ok();
}

bool SimEnv::Exists(const std::string& path) {
  std::lock_guard lock(mu_);
  const std::string p = Normalize(path);
  return IsDir(p) || files_.count(p) > 0;
}

Result<SpaceInfo> SimEnv::GetSpace(const std::string& path) {
  std::lock_guard lock(mu_);
  const std::string p = Normalize(path);
  if (!IsDir(p) && files_.count(p) == 0) return NotFound("statvfs " + p + ": no such file");
  SpaceInfo info;
  info.total_bytes = capacity_;
  info.free_bytes = capacity_ - std::min(capacity_, used_);
  return info;
}

class SimFileLock final : public FileLock {
 public:
  SimFileLock(std::mutex* mu, std::shared_ptr<std::set<std::string>> locks, std::string path)
      : mu_(mu), locks_(std::move(locks)), path_(std::move(path)) {}
  ~SimFileLock() override {
    std::lock_guard l(*mu_);
    locks_->erase(path_);
  }

 private:
  std::mutex* mu_;
  std::shared_ptr<std::set<std::string>> locks_;
  std::string path_;
};

Result<std::unique_ptr<FileLock>> SimEnv::LockFile(const std::string& path) {
  std::lock_guard lock(mu_);
  if (!locks_->insert(path).second) {
    return FailedPrecondition(path + " is locked: another process is using it");
  }
  return std::unique_ptr<FileLock>(new SimFileLock(&mu_, locks_, path));
}

void SimEnv::Crash(uint64_t seed) {
  std::lock_guard lock(mu_);
  // The crashed process's locks die with it; its lock objects release into a dead set.
  locks_ = std::make_shared<std::set<std::string>>();
  ApplyCrash(seed, /*keep_nothing=*/false);
}

void SimEnv::CrashDropAll() {
  std::lock_guard lock(mu_);
  locks_ = std::make_shared<std::set<std::string>>();
  ApplyCrash(0, /*keep_nothing=*/true);
}

void SimEnv::ApplyCrash(uint64_t seed, bool keep_nothing) {
  CrashRng rng(seed);

  // Namespace: the durable entries, the synced ops, and a prefix of the unsynced ones.
  size_t unsynced = static_cast<size_t>(std::count_if(
      ns_log_.begin(), ns_log_.end(), [](const NamespaceOp& op) { return !op.synced; }));
  size_t keep = keep_nothing ? 0 : static_cast<size_t>(rng.Below(unsynced + 1));
  std::map<std::string, std::shared_ptr<Inode>> ns = std::move(durable_files_);
  for (const NamespaceOp& op : ns_log_) {
    if (op.synced) {
      op.ApplyTo(ns);
    } else if (keep > 0) {
      op.ApplyTo(ns);
      --keep;
    }
  }
  ns_log_.clear();

  // Contents: durable bytes and a prefix of the unsynced ops, the last write maybe torn.
  for (auto& old : files_) old.second->named = false;  // handles to these are now dead
  used_ = 0;
  for (auto& [path, inode] : ns) {  // path order: the draws do not depend on addresses
    std::vector<DataOp>& ops = inode->unsynced;
    size_t n = keep_nothing ? 0 : static_cast<size_t>(rng.Below(ops.size() + 1));
    for (size_t i = 0; i < n; ++i) {
      const DataOp& op = ops[i];
      bool last = i + 1 == n;
      if (last && op.kind == DataOp::Kind::kWrite && !op.bytes.empty() && rng.Below(2) == 0) {
        op.ApplyTo(inode->durable, static_cast<size_t>(rng.Below(op.bytes.size())));
      } else {
        op.ApplyTo(inode->durable);
      }
    }
    ops.clear();
    inode->current = inode->durable;
    inode->named = true;
    used_ += inode->current.size();
    // Directories are durable at once; a file whose removal was lost keeps its directory.
    for (std::string d = DirName(path); !IsDir(d); d = DirName(d)) dirs_.insert(d);
  }
  files_ = ns;
  durable_files_ = std::move(ns);
  ++generation_;
}

void SimEnv::SetCapacity(uint64_t bytes) {
  std::lock_guard lock(mu_);
  capacity_ = bytes;
}

void SimEnv::FailAfter(int64_t ops) {
  std::lock_guard lock(mu_);
  fail_after_ = ops;
}

uint64_t SimEnv::sync_count() {
  std::lock_guard lock(mu_);
  return sync_count_;
}

}  // namespace ferry
