// Retention policy and the pure planning functions behind it (which markers to keep).
// Thread-safe (pure).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "journal/record.h"

namespace ferry::journal {

inline constexpr int64_t kNanosPerHour = 3600ll * 1'000'000'000;

struct RetentionPolicy {
  // History older than this is merged into the base.
  int64_t window_ns = 15 * 24 * kNanosPerHour;
  // Every point (any seq, any time) is kept this long; older history keeps only markers.
  int64_t any_point_ns = 2 * kNanosPerHour;
  // Older than any_point_ns, markers are thinned to one per bucket of the first tier whose
  // age they have reached. Tiers ascend by age.
  struct Tier {
    int64_t older_than_ns;
    int64_t bucket_ns;
  };
  std::vector<Tier> tiers = {{2 * kNanosPerHour, kNanosPerHour},
                             {7 * 24 * kNanosPerHour, 4 * kNanosPerHour}};
  // Group-consistent markers are not thinned, only merged with the rest of the window's
  // history: the members of a consistency group thin their histories each on its own node
  // and clock, and a group point must stay on every member or on none
  // (docs/decisions/0013-group-points-and-thinning.md).
  bool keep_group_markers = true;
};

struct RetentionReport {
  uint64_t merged_to_seq = 0;        // 0: no merge
  uint64_t records_merged = 0;
  uint64_t any_point_from = 0;
  uint64_t markers_thinned = 0;
  uint64_t records_compacted = 0;    // superseded records dropped by compaction
  uint64_t bytes_reclaimed = 0;
  uint64_t held_by_pins = 0;         // seq retention stopped at because of a pin, or 0
};

// Of the markers older than any_point_ns (relative to now), which to keep: one per tier
// bucket, preferring app-consistent, then group-consistent, then crash-consistent, then the
// newest. `pinned` markers are always kept, and so are group-consistent ones when
// policy.keep_group_markers (neither counts in its bucket). Returns the seqs of the kept ones.
struct MarkerRef {
  uint64_t seq;
  int64_t timestamp_ns;
  MarkerKind kind;
};
std::set<uint64_t> MarkersToKeep(const std::vector<MarkerRef>& markers,
                                 const RetentionPolicy& policy, int64_t now,
                                 const std::set<uint64_t>& pinned);

}  // namespace ferry::journal
