// Splitter: the source side of continuous data protection. It stands between a machine and
// its real disk (an image file or block device): every write, zero and trim is appended to the
// volume's pending log (a journal in the replica format) and then applied to the disk, before
// the caller is answered. Links ship the pending log to the target.
//
// Ordering: a record is appended to the log before the disk is changed, and writes that
// overlap are serialised (per chunk of the volume), so the disk and the log always agree on
// the order of overlapping writes — the replica can never diverge from the disk.
// Durability: an answered write is in the log (written to the file, in the page cache): a
// crash of the process loses nothing answered. Flush (and FUA) make log and disk durable
// against power loss.
//
// Sub-block writes are completed from the disk (read-modify-write) so the log holds whole
// blocks. Whole blocks zeroed or trimmed are logged as zero or trim records and become holes
// on the disk (punched), except zeroes with no_hole, which keep the disk's blocks allocated;
// the log does not record the difference (a redo after a crash punches).
// Thread-safe: all methods may be called concurrently.
// Errors: kOutOfRange past the end; kFailedPrecondition for changes while fenced (the NBD
// server answers EPERM); the log's errors (kResourceExhausted when it is full — the disk is
// then left unchanged) and the disk's I/O errors.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "env/env.h"
#include "journal/replica.h"

namespace ferry::capture {

class Splitter {
 public:
  // disk: opened read-write; its size must equal the log's volume size. Redoes the log onto
  // the disk first: after a crash between a record's append and its disk write, the disk
  // catches up with the log (never the reverse).
  static Result<std::unique_ptr<Splitter>> Open(Env* env, const std::string& disk_path,
                                                std::shared_ptr<journal::Replica> log);

  uint64_t size() const { return size_; }
  uint32_t block_size() const { return block_size_; }
  journal::Replica& log() { return *log_; }

  Status Read(uint64_t offset, size_t n, void* dst);
  Status Write(uint64_t offset, std::string_view data, bool fua);
  // Several writes at once, in no order between them; results[i] answers writes[i]. The
  // whole-block ones are logged in one append and their replies wait once; the others go
  // one by one as Write.
  struct BlockWrite {
    uint64_t offset = 0;
    std::string_view data;
    bool fua = false;
  };
  void WriteMany(std::span<const BlockWrite> writes, std::span<Status> results);
  // no_hole: the disk's blocks stay allocated (NBD_CMD_FLAG_NO_HOLE); else they are punched.
  Status WriteZeroes(uint64_t offset, uint64_t n, bool fua, bool no_hole);
  Status Trim(uint64_t offset, uint64_t n, bool fua);
  Status Flush();
  // Appends a marker (a recovery point) ordered after every write answered so far.
  Result<uint64_t> Mark(journal::MarkerKind kind, const std::string& label,
                        const journal::Id128& marker_id = {}, const journal::Id128& group_id = {});
  // Makes log and disk durable through every record logged so far and returns that seq: a
  // pending log may discard records up to it once the target holds them.
  Result<uint64_t> Checkpoint();
  // Resync: appends the current content of [offset, offset+n) (whole blocks) to the log as
  // writes, ordered with concurrent writes like any write, without touching the disk.
  Status Rewrite(uint64_t offset, uint64_t n);

  // Barrier for consistency groups: while held, writes are still logged and applied but
  // their replies wait, so no write is acknowledged until ReleaseAcks. The caller bounds the
  // hold with a timeout.
  void HoldAcks();
  void ReleaseAcks();
  // Synchronous replication: before a write is answered, waiter(seq of its last record) is
  // called; it returns when the target holds seq durably, or when it gives up (falls back to
  // asynchronous). Null: answer at once.
  void SetAckWaiter(std::function<void(uint64_t seq)> waiter);

  // Fencing (the control plane shuts the source down): once Fence returns, every later
  // Write, WriteZeroes and Trim fails with kFailedPrecondition and changes nothing, and
  // every change admitted before is in the log, so a Mark after Fence follows all of them.
  // Reads, Flush, Mark, Checkpoint and Rewrite still work. Unfence admits changes again.
  void Fence();
  void Unfence();
  bool fenced() const { return fenced_.load(); }

  // Bytes written, zeroed or trimmed since open (for churn rates).
  uint64_t bytes_changed() const { return bytes_changed_.load(); }

 private:
  Splitter(std::unique_ptr<File> disk, std::shared_ptr<journal::Replica> log, uint64_t size);
  // Logs then applies whole blocks [first_block, +data.size()/bs) (data empty: zero/trim,
  // punched unless keep_allocated).
  Status Apply(journal::RecordType type, uint64_t first_block, uint64_t count, std::string_view data,
               bool keep_allocated, uint64_t* seq);
  void HoldReply(uint64_t seq);
  Status Modify(uint64_t offset, uint64_t n, std::string_view data, journal::RecordType type, bool fua,
                bool keep_allocated = false);
  Status LogAndApply(uint64_t offset, uint64_t n, std::string_view data, journal::RecordType type,
                     bool fua, bool keep_allocated, uint64_t* seq);
  std::mutex& Stripe(uint64_t block);
  // Fencing's count of changes in progress: Begin counts one and says whether it may go on
  // (false: fenced); End (after either answer) uncounts it.
  bool BeginChange();
  void EndChange();
  static Status FencedError();
  Status Redo();

  std::unique_ptr<File> disk_;
  std::shared_ptr<journal::Replica> log_;
  const uint64_t size_;
  const uint32_t block_size_;
  std::array<std::mutex, 64> stripes_;
  std::atomic<uint64_t> bytes_changed_{0};
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool held_ = false;
  std::function<void(uint64_t)> ack_waiter_;
  // Fencing: changes in progress are counted so that Fence can wait for them.
  std::atomic<bool> fenced_{false};
  std::atomic<uint64_t> changing_{0};
  std::mutex fence_mu_;
  std::condition_variable fence_cv_;
};

}  // namespace ferry::capture
