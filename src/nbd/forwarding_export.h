// ForwardingExport: an export that passes every call on to a backend export which can be
// replaced while NBD sessions use it. Promote uses it to turn an overlay's export into the
// splitter of a new capture volume without the connected clients noticing (node-api.md,
// "promote").
//
// Every call runs under a shared lock and wholly on one backend. Hold() takes the lock
// exclusively: while it is held no call runs (calls wait), so the holder can flush the old
// backend, move its files and Replace it. A Hold waiting for the calls in progress stops new
// calls from starting, so a busy export cannot starve it. The properties (size, writability, block size,
// multi-conn, description) are those of the first backend and never change: a replacement
// must have the same size and writability (kInvalidArgument otherwise).
//
// Thread-safety: all methods may be called from any thread.
// Errors: those of the current backend.
#pragma once

#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "nbd/export.h"

namespace ferry::nbd {

class ForwardingExport final : public Export {
 public:
  explicit ForwardingExport(std::shared_ptr<Export> backend);

  // While a Held lives (until unlock()), no call runs.
  class Held {
   public:
    void unlock() {
      if (exclusive_.owns_lock()) exclusive_.unlock();
      if (gate_.owns_lock()) gate_.unlock();
    }

   private:
    friend class ForwardingExport;
    std::unique_lock<std::mutex> gate_;
    std::unique_lock<std::shared_mutex> exclusive_;  // released first
  };
  // Waits for the calls in progress; calls that come wait until the Held is released.
  Held Hold();
  // Replaces the backend; held must come from this export's Hold() and be held still.
  Status Replace(std::shared_ptr<Export> backend, const Held& held);
  std::shared_ptr<Export> backend() const;

  uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }
  uint32_t preferred_block_size() const override { return block_size_; }
  bool multi_conn() const override { return multi_conn_; }
  std::string description() const override { return description_; }

  Status Read(uint64_t offset, size_t n, void* dst) override;
  Status Write(uint64_t offset, std::string_view data, bool fua) override;
  void WriteMany(std::span<const WriteOp> ops, std::span<Status> results) override;
  Status WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole) override;
  Status Trim(uint64_t offset, uint64_t n, bool fua) override;
  Status Flush() override;
  Result<std::vector<Extent>> BlockStatus(uint64_t offset, uint64_t n) override;

 private:
  const uint64_t size_;
  const bool read_only_;
  const uint32_t block_size_;
  const bool multi_conn_;
  const std::string description_;
  // A call passes gate_ (held by a pending or granted Hold) before it takes mu_ shared.
  mutable std::mutex gate_;
  mutable std::shared_mutex mu_;
  std::shared_ptr<Export> backend_;
};

// An export whose every call fails with kUnavailable (NBD EIO) and the given message: what
// the sessions of a deleted replica's overlay see.
class UnavailableExport final : public Export {
 public:
  UnavailableExport(uint64_t size, std::string why) : size_(size), why_(std::move(why)) {}
  uint64_t size() const override { return size_; }
  bool read_only() const override { return false; }
  Status Read(uint64_t, size_t, void*) override { return Unavailable(why_); }
  Status Write(uint64_t, std::string_view, bool) override { return Unavailable(why_); }
  Status WriteZeroes(uint64_t, uint64_t, bool, bool) override { return Unavailable(why_); }
  Status Trim(uint64_t, uint64_t, bool) override { return Unavailable(why_); }
  Status Flush() override { return Unavailable(why_); }

 private:
  const uint64_t size_;
  const std::string why_;
};

}  // namespace ferry::nbd
