#include "journal/retention.h"

#include <algorithm>

namespace ferry::journal {
namespace {

int KindRank(MarkerKind k) {
  switch (k) {
    case MarkerKind::kAppConsistent: return 3;
    case MarkerKind::kGroupConsistent: return 2;
    case MarkerKind::kCrashConsistent: return 1;
  }
  return 0;
}

}  // namespace

std::set<uint64_t> MarkersToKeep(const std::vector<MarkerRef>& markers,
                                 const RetentionPolicy& policy, int64_t now,
                                 const std::set<uint64_t>& pinned) {
  std::set<uint64_t> keep;
  // bucket key (tier index, bucket number) -> best marker so far
  std::map<std::pair<size_t, int64_t>, const MarkerRef*> best;
  for (const MarkerRef& m : markers) {
    int64_t age = now - m.timestamp_ns;
    if (age < policy.any_point_ns || pinned.count(m.seq) ||
        (policy.keep_group_markers && m.kind == MarkerKind::kGroupConsistent)) {
      keep.insert(m.seq);
      continue;
    }
    size_t tier = 0;
    bool found = false;
    for (size_t i = 0; i < policy.tiers.size(); ++i) {
      if (age >= policy.tiers[i].older_than_ns) {
        tier = i;
        found = true;
      }
    }
    if (!found) {  // younger than every tier: keep
      keep.insert(m.seq);
      continue;
    }
    int64_t bucket_ns = std::max<int64_t>(policy.tiers[tier].bucket_ns, 1);
    // Buckets are aligned to absolute time so they do not shift as `now` moves.
    int64_t bucket = m.timestamp_ns >= 0 ? m.timestamp_ns / bucket_ns
                                         : -((-m.timestamp_ns + bucket_ns - 1) / bucket_ns);
    auto key = std::make_pair(tier, bucket);
    auto it = best.find(key);
    if (it == best.end()) {
      best[key] = &m;
    } else {
      const MarkerRef* b = it->second;
      if (KindRank(m.kind) > KindRank(b->kind) ||
          (KindRank(m.kind) == KindRank(b->kind) && m.seq > b->seq)) {
        it->second = &m;
      }
    }
  }
  for (const auto& [key, m] : best) keep.insert(m->seq);
  return keep;
}

}  // namespace ferry::journal
