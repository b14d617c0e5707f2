// Journal records and their byte layout (docs/formats/journal.md, version 1).
//
// A Record is one entry of a volume's journal: a write, a write-zeroes, a trim or a marker
// (a named recovery point). This file encodes and decodes records and segment headers and
// nothing else; it is pure (no I/O) and thread-safe.
//
// Decode errors are kDataLoss with a message saying what was wrong; callers add the segment
// and offset.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry::journal {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderSize = 64;
inline constexpr size_t kRecordHeaderSize = 64;
inline constexpr uint64_t kMaxRecordLength = 64ull << 20;
inline constexpr size_t kMarkerBodyFixed = 40;
inline constexpr size_t kMaxLabelLength = 1024;

enum class RecordType : uint8_t { kWrite = 1, kZero = 2, kTrim = 3, kMarker = 4 };
enum class MarkerKind : uint8_t { kCrashConsistent = 1, kAppConsistent = 2, kGroupConsistent = 3 };

std::string_view RecordTypeName(RecordType t);
std::string_view MarkerKindName(MarkerKind k);
// Accepts "crash-consistent" / "app-consistent" / "group-consistent" (or "crash"/"app"/"group").
bool ParseMarkerKind(std::string_view text, MarkerKind* kind);

using Id128 = std::array<uint8_t, 16>;
std::string IdToHex(const Id128& id);
bool IdFromHex(std::string_view hex, Id128* id);
// A history id as its 16 lowercase hex digits (manifests, link messages, node API); parsing
// takes 1 to 16 hex digits, either case.
std::string HistoryIdToHex(uint64_t history_id);
bool HistoryIdFromHex(std::string_view hex, uint64_t* history_id);

struct MarkerInfo {
  MarkerKind kind = MarkerKind::kCrashConsistent;
  Id128 marker_id{};
  Id128 group_id{};  // zeros unless group-consistent
  std::string label;
};

// What a caller appends. seq and timestamp are assigned by the journal when 0.
struct Record {
  RecordType type = RecordType::kWrite;
  uint64_t seq = 0;
  int64_t timestamp_ns = 0;
  uint64_t offset = 0;  // bytes
  uint64_t length = 0;  // bytes
  std::string data;     // write payload (length bytes)
  // Or the payload left in the caller's memory (WriteView): it must stay valid until Append
  // returns, and only Append reads it. payload() is whichever of the two is set.
  std::string_view data_view;
  MarkerInfo marker;    // for markers

  std::string_view payload() const { return data.empty() ? data_view : std::string_view(data); }

  static Record Write(uint64_t offset, std::string data);
  // A write appended without copying its data (the splitter's: the data is written to the
  // disk from the same memory right after).
  static Record WriteView(uint64_t offset, std::string_view data);
  static Record Zero(uint64_t offset, uint64_t length);
  static Record Trim(uint64_t offset, uint64_t length);
  static Record Marker(MarkerKind kind, std::string label = {}, Id128 marker_id = {},
                       Id128 group_id = {});
};

// The fixed header of a stored record, as decoded.
struct RecordHeader {
  RecordType type;
  uint64_t seq;
  int64_t timestamp_ns;
  uint64_t offset;
  uint64_t length;
  uint32_t payload_length;
  uint64_t payload_checksum;
};

struct SegmentHeader {
  uint64_t segment_number = 0;
  uint64_t first_seq = 0;
  uint32_t block_size = 0;
  uint32_t flags = 0;  // bit 0: compacted
  Id128 volume_id{};
};
inline constexpr uint32_t kSegmentCompacted = 1;

// Checks a record's fields against the volume geometry (alignment, range, label size).
Status ValidateRecord(const Record& r, uint64_t volume_size, uint32_t block_size);

// Appends the header of r (seq and timestamp already set) to out; the payload (r.data or the
// encoded marker body) is returned in *payload so callers can write it without a copy.
void EncodeRecordHeader(const Record& r, std::string_view payload, std::string* out);
std::string EncodeMarkerBody(const MarkerInfo& m);
Result<MarkerInfo> DecodeMarkerBody(std::string_view body);

// Decodes and checks a 64-byte record header (magic, header checksum, type, lengths).
Result<RecordHeader> DecodeRecordHeader(const uint8_t* p);
// Whether the header at p has the record magic and a matching header checksum: it was written
// as it reads (whatever its fields say), so it cannot be a torn write.
bool RecordHeaderIsWhole(const uint8_t* p);

std::string EncodeSegmentHeader(const SegmentHeader& h);
Result<SegmentHeader> DecodeSegmentHeader(const uint8_t* p);

}  // namespace ferry::journal
