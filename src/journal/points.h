// Recovery points: how callers name a point, and what a listed point looks like.
// Pure types and parsing; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "journal/record.h"

namespace ferry::journal {

// How a user asks for a point.
struct PointSpec {
  enum class Kind {
    kLatest,          // the newest durable record
    kLatestOfKind,    // the newest marker of marker_kind
    kSeq,             // exactly this sequence number (custom point)
    kTime,            // the newest record at or before time_ns (custom point)
    kMarkerId,        // the marker with this id
  };
  Kind kind = Kind::kLatest;
  MarkerKind marker_kind = MarkerKind::kCrashConsistent;
  uint64_t seq = 0;
  int64_t time_ns = 0;
  Id128 marker_id{};

  // "latest", "latest-crash-consistent", "latest-app-consistent", "latest-group-consistent",
  // a decimal seq ("1234" or "seq:1234"), a UTC time ("2026-11-26T05:06:18Z" or with
  // fractional seconds), or "marker:<32 hex digits>".
  static Result<PointSpec> Parse(const std::string& text);
  std::string ToString() const;
};

// A point that exists.
struct PointInfo {
  uint64_t seq = 0;
  int64_t timestamp_ns = 0;
  bool is_marker = false;
  MarkerInfo marker;  // when is_marker
};

struct PointFilter {
  std::optional<MarkerKind> kind;
  int64_t from_ns = INT64_MIN;  // inclusive
  int64_t to_ns = INT64_MAX;    // inclusive
  uint64_t before_seq = 0;      // page token: only points with seq < this (0 = no bound)
  size_t limit = 100;
};

// Markers, newest first. next_token is the before_seq for the next page, 0 when done.
struct PointPage {
  std::vector<PointInfo> points;
  uint64_t next_token = 0;
};

}  // namespace ferry::journal
