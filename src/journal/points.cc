#include "journal/points.h"

#include <charconv>

#include "base/clock.h"

namespace ferry::journal {
namespace {

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

Result<PointSpec> PointSpec::Parse(const std::string& text) {
  PointSpec p;
  if (text == "latest") return p;
  if (text.rfind("latest-", 0) == 0) {
    p.kind = Kind::kLatestOfKind;
    if (!ParseMarkerKind(text.substr(7), &p.marker_kind)) {
      return InvalidArgument("unknown point '" + text +
                             "': use latest-crash-consistent, latest-app-consistent or "
                             "latest-group-consistent");
    }
    return p;
  }
  std::string_view body = text;
  if (body.rfind("seq:", 0) == 0) body.remove_prefix(4);
  if (ParseU64(body, &p.seq)) {
    p.kind = Kind::kSeq;
    return p;
  }
  if (text.rfind("marker:", 0) == 0) {
    p.kind = Kind::kMarkerId;
    if (!IdFromHex(text.substr(7), &p.marker_id)) {
      return InvalidArgument("marker id in '" + text + "' must be 32 hex digits");
    }
    return p;
  }
  if (ParseTime(text, &p.time_ns)) {
    p.kind = Kind::kTime;
    return p;
  }
  return InvalidArgument("cannot read point '" + text +
                         "': use latest, latest-app-consistent, a sequence number, a UTC time "
                         "like 2026-11-26T05:06:18Z, or marker:<id>");
}

std::string PointSpec::ToString() const {
  switch (kind) {
    case Kind::kLatest: return "latest";
    case Kind::kLatestOfKind: return "latest-" + std::string(MarkerKindName(marker_kind));
    case Kind::kSeq: return "seq:" + std::to_string(seq);
    case Kind::kTime: return FormatTime(time_ns);
    case Kind::kMarkerId: return "marker:" + IdToHex(marker_id);
  }
  return "?";
}

}  // namespace ferry::journal
