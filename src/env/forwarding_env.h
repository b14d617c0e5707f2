// ForwardingEnv and ForwardingFile pass every call on to another Env or File. A test's Env
// derives from them and overrides only what it changes (slow or failing syncs, failing reads,
// recorded cache hints), keeping the wrapped Env's behaviour for the rest. HookEnv is the
// common case of that: hooks on the reads and writes of some files.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "env/env.h"

namespace ferry {

class ForwardingFile : public File {
 public:
  explicit ForwardingFile(std::unique_ptr<File> f) : f_(std::move(f)) {}

  Result<size_t> ReadAt(uint64_t offset, size_t n, void* dst) override {
    return f_->ReadAt(offset, n, dst);
  }
  Status WriteAt(uint64_t offset, std::string_view data) override { return f_->WriteAt(offset, data); }
  Status WriteAtV(uint64_t offset, std::span<const std::string_view> pieces) override {
    return f_->WriteAtV(offset, pieces);
  }
  Status Sync() override { return f_->Sync(); }
  // WriteDurable is not forwarded: File's own (WriteAt, then Sync) goes through this
  // wrapper's WriteAt and Sync, so a test that overrides them sees synced appends too.
  void StartWriteback(uint64_t offset, uint64_t n) override { f_->StartWriteback(offset, n); }
  void DropCache(uint64_t offset, uint64_t n) override { f_->DropCache(offset, n); }
  Result<uint64_t> Size() override { return f_->Size(); }
  Status Truncate(uint64_t size) override { return f_->Truncate(size); }
  Status PunchHole(uint64_t offset, uint64_t n) override { return f_->PunchHole(offset, n); }
  Status ZeroRange(uint64_t offset, uint64_t n) override { return f_->ZeroRange(offset, n); }
  Result<uint64_t> NextData(uint64_t offset) override { return f_->NextData(offset); }

 protected:
  std::unique_ptr<File> f_;
};

class ForwardingEnv : public Env {
 public:
  explicit ForwardingEnv(Env* base) : base_(base) {}

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    return base_->OpenFile(path, mode);
  }
  Status CreateDir(const std::string& path) override { return base_->CreateDir(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  Status RemoveDir(const std::string& path) override { return base_->RemoveDir(path); }
  Status Rename(const std::string& from, const std::string& to) override {
    return base_->Rename(from, to);
  }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  Result<SpaceInfo> GetSpace(const std::string& path) override { return base_->GetSpace(path); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    return base_->LockFile(path);
  }

 protected:
  Env* base_;
};

// Forwards to base, and calls a hook before every read (ReadAt) and every write (WriteAt,
// WriteAtV) of a file whose path `which` accepts (as the path was given to OpenFile). A hook
// that returns an error fails the call with it, and the call does nothing; one that returns
// Ok lets it go on. Either hook may be empty. Tests use it to fail, hold or watch a file's
// I/O. Hooks run on the calling thread; base and the hooks must outlive the files opened.
class HookEnv final : public ForwardingEnv {
 public:
  using Which = std::function<bool(const std::string& path)>;
  using Hook = std::function<Status(uint64_t offset, size_t n)>;
  struct Hooks {
    Hook read = nullptr;
    Hook write = nullptr;
  };
  HookEnv(Env* base, Which which, Hooks hooks)
      : ForwardingEnv(base), which_(std::move(which)), hooks_(std::move(hooks)) {}

  Result<std::unique_ptr<File>> OpenFile(const std::string& path, OpenMode mode) override {
    ASSIGN_OR_RETURN(std::unique_ptr<File> f, base_->OpenFile(path, mode));
    if (!which_(path)) return f;
    return std::unique_ptr<File>(new HookedFile(std::move(f), &hooks_));
  }

 private:
  class HookedFile final : public ForwardingFile {
   public:
    HookedFile(std::unique_ptr<File> f, const Hooks* hooks)
        : ForwardingFile(std::move(f)), hooks_(hooks) {}
    Result<size_t> ReadAt(uint64_t offset, size_t n, void* dst) override {
      if (hooks_->read) RETURN_IF_ERROR(hooks_->read(offset, n));
      return f_->ReadAt(offset, n, dst);
    }
    Status WriteAt(uint64_t offset, std::string_view data) override {
      if (hooks_->write) RETURN_IF_ERROR(hooks_->write(offset, data.size()));
      return f_->WriteAt(offset, data);
    }
    Status WriteAtV(uint64_t offset, std::span<const std::string_view> pieces) override {
      if (hooks_->write) {
        size_t n = 0;
        for (std::string_view p : pieces) n += p.size();
        RETURN_IF_ERROR(hooks_->write(offset, n));
      }
      return f_->WriteAtV(offset, pieces);
    }

   private:
    const Hooks* hooks_;
  };

  Which which_;
  Hooks hooks_;
};

}  // namespace ferry
