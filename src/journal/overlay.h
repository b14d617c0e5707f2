// Overlay: a writable layer over a recovery point (failover, test failover).
//
// Reads return the overlay's own data for blocks it holds, else the point's data (through a
// View). Writes of any alignment go to the overlay's data.img; partial blocks are completed
// from the point first. The overlay records exactly which blocks its users changed
// (ChangedExtents, for delta failback) apart from blocks it merely copied in during commit.
// Durability is that of a disk: acknowledged writes are durable after Flush (or a write with
// fua=true); blocks.log (docs/formats/journal.md) records them after their data is synced.
//
// Lifecycle: active -> committing -> committed (Replica::StartCommit), or discarded
// (Replica::DiscardOverlay). A committed overlay's data.img is a plain raw image of the disk.
//
// Thread-safety: all methods may be called concurrently; writes to overlapping ranges from
// different threads land in some order, as on a disk.
// Errors: kOutOfRange for ranges past the end; kFailedPrecondition once discarded.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "env/env.h"
#include "journal/view.h"

namespace ferry::journal {

enum class OverlayState { kActive, kCommitting, kCommitted };
std::string_view OverlayStateName(OverlayState s);

struct BlockExtent {
  uint64_t first_block;
  uint64_t count;
  bool operator==(const BlockExtent&) const = default;
};

class Overlay {
 public:
  ~Overlay();
  Overlay(const Overlay&) = delete;
  Overlay& operator=(const Overlay&) = delete;

  const std::string& name() const { return name_; }
  uint64_t point() const { return point_; }
  uint64_t size() const { return size_; }
  uint32_t block_size() const { return block_size_; }
  OverlayState state() const;
  // Path of the raw image; a plain disk once committed.
  std::string data_path() const;

  Status Read(uint64_t offset, size_t n, void* dst);
  Status Write(uint64_t offset, std::string_view data, bool fua = false);
  // Whole blocks zeroed become holes in data.img, unless no_hole: then they are written
  // (allocated), as NBD_CMD_FLAG_NO_HOLE asks.
  Status WriteZeroes(uint64_t offset, uint64_t n, bool fua = false, bool no_hole = false);
  Status Trim(uint64_t offset, uint64_t n, bool fua = false) { return WriteZeroes(offset, n, fua); }
  Status Flush();

  // Blocks changed by users since the overlay was created, as ascending extents.
  std::vector<BlockExtent> ChangedExtents() const;
  uint64_t changed_blocks() const;
  // Blocks where this overlay may differ from the source's own history at any seq after the
  // point: those users changed, and those the journal's records after the point wrote
  // (recorded at the commit point, file DIVERGED). Ascending extents. What a delta resync
  // back to the source's old disk must send (docs/protocols/link.md, "Known changes").
  std::vector<BlockExtent> DifferingExtents() const;
  // The newest seq of the source's history the journal held when the commit recorded its
  // diverged blocks; 0 when not recorded (not committed, or committed by an older version).
  uint64_t diverged_through() const;
  uint64_t present_blocks() const;

 private:
  friend class Replica;
  struct Meta;
  Overlay(Env* env, std::string dir, std::string name, uint64_t point, uint64_t size,
          uint32_t block_size);
  static Result<std::shared_ptr<Overlay>> Create(Env* env, const std::string& dir,
                                                 const std::string& name, uint64_t point,
                                                 uint64_t size, uint32_t block_size,
                                                 int64_t now);
  static Result<std::shared_ptr<Overlay>> Load(Env* env, const std::string& dir,
                                               uint64_t size, uint32_t block_size);
  Status StoreMeta(OverlayState state);
  // Writes DIVERGED (atomically): the block runs records after the point wrote, and the
  // journal's newest seq. Called before the replica's commit point drops the journal.
  Status StoreDiverged(const std::vector<std::pair<uint64_t, uint64_t>>& runs, uint64_t through);
  void AttachView(std::shared_ptr<View> view);
  void DetachView();
  // Copies every block not yet present from the point; progress in *done. Stops early with
  // kAborted when *stop becomes true.
  Status Fill(std::atomic<uint64_t>* done, const std::atomic<bool>* stop);
  // Blocks of zeros are punched in data.img unless keep_allocated.
  Status WriteBlocks(uint64_t first_block, std::string_view data, bool filled, bool keep_allocated = false);
  // Write without its FUA: any alignment, partial blocks completed from what the disk holds.
  Status WriteRange(uint64_t offset, std::string_view data, bool keep_allocated);
  // Marks blocks present (and, unless filled, written). A user write (filled false) is first
  // named in the active intent file, with a checksum of its data (zero: the blocks read as
  // zeros), before it is answered: see Load.
  Status Mark(uint64_t first, uint64_t count, bool filled, uint64_t data_checksum = 0, bool zero = false);
  // Load's second half: user writes named in the intent files but not in blocks.log, whose
  // data data.img holds (checksum), become written blocks, logged and synced.
  Status RecoverIntents();
  bool Present(uint64_t block) const;
  // With one lock: whether block is present, and the end of the run of blocks in
  // [block, limit) that are alike.
  uint64_t RunEnd(uint64_t block, uint64_t limit, bool* present) const;
  std::mutex& StripeFor(uint64_t block);

  Env* const env_;
  const std::string dir_;
  const std::string name_;
  const uint64_t point_;
  const uint64_t size_;
  const uint32_t block_size_;
  const uint64_t blocks_;
  int64_t created_ns_ = 0;

  std::unique_ptr<File> data_;
  std::unique_ptr<File> log_;
  uint64_t log_end_ = 0;
  // Intent files (intent.0, intent.1): user writes not yet in blocks.log, so that a node
  // killed between a write's answer and the next flush does not forget it (its data is in
  // the page cache). Writes go to intents_[active_intent_]; a flush switches to the other
  // file and, once blocks.log is synced, empties the one it switched from.
  // intent_mu_ (before mu_) guards these: a user write's intent and its pending_ entry go in
  // together, and a flush switches files and takes pending_ together, without making reads
  // (which take only mu_) wait for the intent's write.
  std::mutex intent_mu_;
  std::array<std::unique_ptr<File>, 2> intents_;
  std::array<uint64_t, 2> intent_end_ = {0, 0};
  int active_intent_ = 0;

  mutable std::mutex mu_;  // guards the bitmaps, pending_, state_, view_
  std::vector<uint64_t> written_;  // bit per block: changed by a user
  std::vector<uint64_t> present_;  // bit per block: data.img holds it
  std::vector<uint64_t> diverged_;  // bit per block: a journal record after the point wrote it
  uint64_t diverged_through_ = 0;
  std::vector<std::pair<BlockExtent, bool>> pending_;  // not yet in blocks.log; bool = filled
  OverlayState state_ = OverlayState::kActive;
  std::shared_ptr<View> view_;
  bool discarded_ = false;

  std::mutex flush_mu_;  // one flush at a time
  std::array<std::mutex, 64> stripes_;  // per chunk: read-modify-write and fill vs write
};

}  // namespace ferry::journal
