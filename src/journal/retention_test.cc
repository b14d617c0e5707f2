#include "journal/retention.h"

#include <gtest/gtest.h>

namespace ferry::journal {
namespace {

constexpr int64_t kMin = 60ll * 1'000'000'000;

// Markers every 10 minutes, 5 minutes past the tens, over the 10 hours before `now` (a whole
// hour): the default tiers keep every point of the last 2 hours and one per hour before, so
// hours 990 to 997 keep one each.
std::vector<MarkerRef> Markers(int64_t now, MarkerKind kind_of_every_third) {
  std::vector<MarkerRef> out;
  uint64_t seq = 1;
  for (int64_t t = now - 595 * kMin; t < now; t += 10 * kMin, ++seq) {
    out.push_back({seq, t, seq % 3 == 0 ? kind_of_every_third : MarkerKind::kCrashConsistent});
  }
  return out;
}

TEST(RetentionTest, OnePerHourPastTwoHoursPreferringAppConsistent) {
  const int64_t now = 1000 * kNanosPerHour;
  const auto markers = Markers(now, MarkerKind::kAppConsistent);
  const std::set<uint64_t> keep = MarkersToKeep(markers, RetentionPolicy{}, now, {});
  std::map<int64_t, int> per_hour;
  for (const MarkerRef& m : markers) {
    const bool kept = keep.count(m.seq) > 0;
    if (now - m.timestamp_ns < 2 * kNanosPerHour) {
      EXPECT_TRUE(kept) << "seq " << m.seq << " is within the any-point window";
      continue;
    }
    if (!kept) continue;
    ++per_hour[m.timestamp_ns / kNanosPerHour];
    EXPECT_EQ(m.kind, MarkerKind::kAppConsistent) << "seq " << m.seq;
  }
  EXPECT_EQ(per_hour.size(), 8u);  // hours 990 to 997
  for (const auto& [hour, n] : per_hour) EXPECT_EQ(n, 1) << "hour " << hour;
}

TEST(RetentionTest, GroupMarkersAreNeverThinned) {
  const int64_t now = 1000 * kNanosPerHour;
  const auto markers = Markers(now, MarkerKind::kGroupConsistent);
  RetentionPolicy policy;
  const std::set<uint64_t> keep = MarkersToKeep(markers, policy, now, {});
  size_t groups = 0;
  for (const MarkerRef& m : markers) {
    if (m.kind != MarkerKind::kGroupConsistent) continue;
    ++groups;
    EXPECT_TRUE(keep.count(m.seq)) << "group marker seq " << m.seq << " was thinned";
  }
  EXPECT_EQ(groups, 20u);  // seqs 3, 6, ... 60
  // Crash-consistent markers are still thinned to one per hour past 2 hours (the group ones
  // do not take their place).
  std::map<int64_t, int> crash_per_hour;
  for (const MarkerRef& m : markers) {
    if (m.kind == MarkerKind::kCrashConsistent && keep.count(m.seq) && now - m.timestamp_ns >= 2 * kNanosPerHour) {
      ++crash_per_hour[m.timestamp_ns / kNanosPerHour];
    }
  }
  EXPECT_EQ(crash_per_hour.size(), 8u);
  for (const auto& [hour, n] : crash_per_hour) EXPECT_EQ(n, 1) << "hour " << hour;
  // With the rule off, group markers compete in their buckets like the others.
  policy.keep_group_markers = false;
  const std::set<uint64_t> thinned = MarkersToKeep(markers, policy, now, {});
  EXPECT_LT(thinned.size(), keep.size());
}

}  // namespace
}  // namespace ferry::journal
