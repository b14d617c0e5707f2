// Manifest: a replica's identity and durable state (docs/formats/journal.md, "MANIFEST").
// Loaded when a replica opens and rewritten atomically (write-temp, sync, rename, sync dir)
// whenever its state changes. Pure data plus load/store; not thread-safe on its own (the
// Replica serialises changes).
//
// Errors: Load returns kNotFound when there is no MANIFEST, kDataLoss when it is corrupt
// (bad checksum, bad JSON, missing field, unknown format version).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "env/env.h"
#include "journal/record.h"

namespace ferry::journal {

struct Pin {
  uint64_t seq = 0;
  std::string owner;   // e.g. "overlay:tfo-1"; one pin per owner
  std::string reason;  // for operators
};

// A resync window (docs/protocols/link.md, "Resync"): records missing_from..resume_at-1 were
// never received (the source dropped them and rewrites the blocks they touched instead), and
// no point from missing_from up to consistent_from (exclusive; 0 while the resync runs) is
// consistent.
struct Gap {
  uint64_t missing_from = 0;
  uint64_t resume_at = 0;
  uint64_t consistent_from = 0;
};

struct Manifest {
  Id128 volume_id{};
  uint64_t history_id = 0;
  uint64_t size = 0;
  uint32_t block_size = 4096;
  int64_t created_ns = 0;
  uint64_t base_seq = 0;
  uint64_t merge_target = 0;
  uint64_t any_point_from = 0;
  std::vector<Pin> pins;
  std::string state = "replica";  // "replica" or "committed"
  std::string committed_overlay;
  // "replica", or "pending-log": a source's log of writes not yet replicated, whose old
  // records are discarded (not merged) once the target has them.
  std::string role = "replica";
  // A link's initial sync is filling the base: no point is consistent until it finishes.
  bool initial_sync = false;
  uint64_t sync_offset = 0;      // bytes of the volume below it are durable in the base
  bool seeded = false;           // the base started as a copy of an older version (digests)
  uint64_t consistent_from = 0;  // points before this seq are not consistent (0: all are)
  std::vector<Gap> gaps;

  std::string Encode() const;
  static Result<Manifest> Decode(std::string_view text);

  static Result<Manifest> Load(Env* env, const std::string& dir);
  Status Store(Env* env, const std::string& dir) const;
};

// The "<json>\n checksum <hex>\n" framing shared by MANIFEST and OVERLAY files.
std::string FrameWithChecksum(const std::string& json);
Result<std::string> UnframeChecksum(std::string_view text, std::string_view file_name);

}  // namespace ferry::journal
