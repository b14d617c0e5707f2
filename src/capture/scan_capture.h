// ScanCapture: capture for disks that cannot be routed through the splitter (a physical
// server's mounted disks). Each cycle reads the whole disk, hashes it in chunks, compares the
// hashes with those of the previous cycle (the hash map, kept in state_dir across restarts)
// and appends to the volume's pending log only the chunks that changed, then a marker. A link
// ships the pending log like any other. Map format: docs/formats/scan-hashmap.md.
//
// One cycle (RunCycle), in order:
//
//   Plan     read the map's header; learn which chunks have no usable previous hash (below)
//   Freeze   options.freeze, if set (e.g. fsfreeze, or freeze + take a snapshot + thaw)
//   Scan     open disk_path, read it sequentially; each changed chunk becomes a Write record
//            (an all-zero chunk: a Zero record, adjacent ones merged); records are appended
//            in batches of at most about 8 MiB (Durability::kWritten) while the new map is
//            streamed to state_dir/hashmap.tmp
//   Mark     append the marker; log->Sync(): every record of the cycle is durable
//   Thaw     options.thaw — after every successful Freeze, whatever failed in between
//   Save     sync hashmap.tmp, rename it over hashmap, sync state_dir
//
//   Plan/Freeze fail  → nothing appended, map unchanged; thaw not called (a failing freeze
//                       hook must leave nothing frozen).
//   Scan/Mark fail    → thaw; the map is not saved. The records already appended stay in the
//                       log without a marker (points inside a scan are not consistent anyway);
//                       the next cycle sends their chunks again (see "The map's contract").
//   Thaw fails        → the error says the disk may still be frozen (and is logged). After a
//                       successful Mark the map is still saved: the records are durable.
//   Save fails        → error; the marker stands, and the next cycle resends this cycle's
//                       chunks. Every step may simply be repeated: a restart runs a new cycle.
//
// Consistency: the marker is as consistent as the disk was stable during Scan. With a freeze
// hook the filesystem is frozen for the whole read, which on a large disk is long: prefer a
// freeze hook that takes a snapshot (freeze, snapshot, thaw the filesystem) with disk_path
// naming the snapshot, and a thaw hook that drops it. disk_path is opened after Freeze each
// cycle for that reason. Without hooks the marker is fuzzy; the caller picks its kind.
//
// The map's contract, which makes every crash or failure cost a resend, never a skip:
//   - Ordering: the map is saved only after log->Sync() returned for the cycle's marker, so a
//     crash between the two leaves the old map and the next cycle sends the chunks again.
//   - The map records the log sequence it is valid as of (the marker of the cycle that saved
//     it). Records in the log after that seq were appended by a cycle whose map was never
//     saved: the target will apply them, so the chunks they touch have no trustworthy previous
//     hash and are sent again even if the disk went back to its old content. If those records
//     were already discarded from the log, the whole map is unusable. Wire Checkpoint() as the
//     link's checkpoint so the log is never trimmed past the map.
//   - The map is bound to the log's volume id and history id, the disk size and chunk size;
//     any mismatch, a missing file, a bad header or a bad page checksum makes the affected
//     chunks "unknown" (a warning is logged; not an error): they are all sent, and all-zero
//     ones as Zero records too. Zeros are not skipped on a first cycle because "no map" cannot
//     tell a new, zero target from one whose map was lost; merged Zero records cost about 64
//     bytes per 64 MiB, so a full resend of an empty 1 TiB disk adds about 1 MiB to the log.
//
// Chunk hash: XXH3-128 (xxhash, seed 0) of each chunk, 16 bytes per entry. For inputs over
// 240 bytes its low half is exactly XXH3-64 (ferry::Checksum64), so "XXH3-64 plus XXH3-128"
// would add nothing; a second independent 64-bit hash would cost a second pass over every
// byte. One 128-bit pass leaves an unchanged-looking changed chunk at 2^-128 per comparison,
// irrelevant at any disk size and cycle count. It is not cryptographic: the disk's content is
// trusted not to be crafted against it (a writer would need a second preimage of the chunk's
// previous hash, and could corrupt the disk directly anyway). The map file is framed with
// XXH3-64 checksums (header and each page).
//
// Ownership: the ScanCapture holds an exclusive lock on state_dir while it lives, shares the
// log with the link, and must be the only writer of that log. Memory: one read buffer, one
// batch of records and one map page, whatever the disk's size (plus one bit per chunk after
// a failed cycle).
// Thread-safety: all methods may be called from any thread; cycles run one at a time.
// Errors: kInvalidArgument for bad options (Open); kFailedPrecondition when state_dir is
// locked by another holder, or the disk's size is not the log's volume size (resize the
// volume first); the hooks' errors (message prefixed "freeze hook" / "thaw hook"); the disk's
// and the log's errors otherwise (kResourceExhausted: the pending log is full).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "base/clock.h"
#include "env/env.h"
#include "journal/replica.h"

namespace ferry::capture {

struct ScanOptions {
  // Bytes per hash-map entry: a multiple of the log's block size, at most 64 MiB.
  uint32_t chunk_bytes = 64u << 10;
  // Bytes read per call; rounded down to a multiple of chunk_bytes (at least one chunk).
  size_t read_buffer_bytes = 4u << 20;
  // Both or neither. The caller bounds their running time.
  std::function<Status()> freeze;
  std::function<Status()> thaw;
  Clock* clock = SystemClock::Default();  // for duration_ns only
};

struct ScanReport {
  uint64_t bytes_read = 0;
  uint64_t chunks = 0;
  uint64_t changed_chunks = 0;  // chunks appended to the log (as data or as zeros)
  uint64_t unknown_chunks = 0;  // of those, chunks with no usable previous hash
  uint64_t bytes_changed = 0;   // bytes of the changed chunks
  uint64_t marker_seq = 0;
  int64_t duration_ns = 0;
};

class ScanCapture {
 public:
  // log: the volume's pending log; the disk's size must equal log->size() at every cycle.
  // Creates state_dir if missing and locks it.
  static Result<std::unique_ptr<ScanCapture>> Open(Env* env, const std::string& disk_path,
                                                   std::shared_ptr<journal::Replica> log,
                                                   const std::string& state_dir,
                                                   ScanOptions options = {});
  ~ScanCapture();
  ScanCapture(const ScanCapture&) = delete;
  ScanCapture& operator=(const ScanCapture&) = delete;

  // Runs one cycle (see the top of this file) and returns what it did.
  Result<ScanReport> RunCycle(journal::MarkerKind kind, const std::string& label);

  // The seq through which the pending log may be discarded as far as scan capture is
  // concerned (the link also needs the target's acknowledgement): the seq the saved map is
  // valid as of, or the log's last seq when there is no usable map (the next cycle then
  // resends everything anyway). Same shape as Splitter::Checkpoint, for the link's callback.
  Result<uint64_t> Checkpoint() const;

  const std::string& map_path() const { return map_path_; }

 private:
  class MapReader;
  class MapWriter;
  class Batch;
  struct Baseline;

  ScanCapture(Env* env, std::string disk_path, std::shared_ptr<journal::Replica> log,
              std::string state_dir, ScanOptions options, std::unique_ptr<FileLock> lock);
  Result<Baseline> Plan();
  Status ScanAndMark(Baseline& base, MapWriter& out, journal::MarkerKind kind,
                     const std::string& label, ScanReport* report);
  Status CheckDiskSize(File& disk) const;

  Env* const env_;
  const std::string disk_path_;
  const std::shared_ptr<journal::Replica> log_;
  const std::string state_dir_;
  const std::string map_path_;
  const ScanOptions options_;
  const std::unique_ptr<FileLock> lock_;
  std::mutex cycle_mu_;                  // one cycle at a time
  std::atomic<uint64_t> saved_seq_{0};   // the usable map's seq; 0: none
};

}  // namespace ferry::capture
