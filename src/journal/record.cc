#include "journal/record.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/checksum.h"
#include "base/coding.h"

namespace ferry::journal {
namespace {

constexpr char kRecordMagic[4] = {'F', 'R', 'E', 'C'};
constexpr char kSegmentMagic[8] = {'F', 'E', 'R', 'R', 'Y', 'J', 'N', 'L'};

bool IsPowerOfTwo(uint64_t v) { return v && !(v & (v - 1)); }

}  // namespace

std::string_view RecordTypeName(RecordType t) {
  switch (t) {
    case RecordType::kWrite: return "write";
    case RecordType::kZero: return "zero";
    case RecordType::kTrim: return "trim";
    case RecordType::kMarker: return "marker";
  }
  return "unknown";
}

std::string_view MarkerKindName(MarkerKind k) {
  switch (k) {
    case MarkerKind::kCrashConsistent: return "crash-consistent";
    case MarkerKind::kAppConsistent: return "app-consistent";
    case MarkerKind::kGroupConsistent: return "group-consistent";
  }
  return "unknown";
}

bool ParseMarkerKind(std::string_view text, MarkerKind* kind) {
  if (text == "crash-consistent" || text == "crash") {
    *kind = MarkerKind::kCrashConsistent;
  } else if (text == "app-consistent" || text == "app") {
    *kind = MarkerKind::kAppConsistent;
  } else if (text == "group-consistent" || text == "group") {
    *kind = MarkerKind::kGroupConsistent;
  } else {
    return false;
  }
  return true;
}

std::string IdToHex(const Id128& id) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t b : id) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

namespace {

int Nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string HistoryIdToHex(uint64_t history_id) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, history_id);
  return buf;
}

bool HistoryIdFromHex(std::string_view hex, uint64_t* history_id) {
  if (hex.empty() || hex.size() > 16) return false;
  uint64_t v = 0;
  for (char c : hex) {
    const int d = Nibble(c);
    if (d < 0) return false;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  *history_id = v;
  return true;
}

bool IdFromHex(std::string_view hex, Id128* id) {
  if (hex.size() != 32) return false;
  for (size_t i = 0; i < 16; ++i) {
    int hi = Nibble(hex[2 * i]), lo = Nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*id)[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

Record Record::Write(uint64_t offset, std::string data) {
  Record r;
  r.type = RecordType::kWrite;
  r.offset = offset;
  r.length = data.size();
  r.data = std::move(data);
  return r;
}

Record Record::WriteView(uint64_t offset, std::string_view data) {
  Record r;
  r.type = RecordType::kWrite;
  r.offset = offset;
  r.length = data.size();
  r.data_view = data;
  return r;
}

Record Record::Zero(uint64_t offset, uint64_t length) {
  Record r;
  r.type = RecordType::kZero;
  r.offset = offset;
  r.length = length;
  return r;
}

Record Record::Trim(uint64_t offset, uint64_t length) {
  Record r = Zero(offset, length);
  r.type = RecordType::kTrim;
  return r;
}

Record Record::Marker(MarkerKind kind, std::string label, Id128 marker_id, Id128 group_id) {
  Record r;
  r.type = RecordType::kMarker;
  r.marker.kind = kind;
  r.marker.label = std::move(label);
  r.marker.marker_id = marker_id;
  r.marker.group_id = group_id;
  return r;
}

Status ValidateRecord(const Record& r, uint64_t volume_size, uint32_t block_size) {
  if (r.type == RecordType::kMarker) {
    if (r.marker.label.size() > kMaxLabelLength) {
      return InvalidArgument("marker label is " + std::to_string(r.marker.label.size()) +
                             " bytes; the limit is 1024");
    }
    if (r.marker.kind < MarkerKind::kCrashConsistent ||
        r.marker.kind > MarkerKind::kGroupConsistent) {
      return InvalidArgument("unknown marker kind");
    }
    return Status::Ok();
  }
  if (r.type < RecordType::kWrite || r.type > RecordType::kTrim) {
    return InvalidArgument("unknown record type");
  }
  std::string what(RecordTypeName(r.type));
  if (r.length == 0) return InvalidArgument(what + " of length 0");
  if (r.length > kMaxRecordLength) {
    return InvalidArgument(what + " of " + std::to_string(r.length) +
                           " bytes exceeds the 64 MiB record limit; split it");
  }
  if (r.offset % block_size || r.length % block_size) {
    return InvalidArgument(what + " at offset " + std::to_string(r.offset) + " length " +
                           std::to_string(r.length) + " is not aligned to the block size " +
                           std::to_string(block_size));
  }
  if (r.offset > volume_size || r.length > volume_size - r.offset) {
    return OutOfRange(what + " at offset " + std::to_string(r.offset) + " length " +
                      std::to_string(r.length) + " ends past the volume size " +
                      std::to_string(volume_size));
  }
  if (r.type == RecordType::kWrite && r.payload().size() != r.length) {
    return InvalidArgument("write length " + std::to_string(r.length) + " but " +
                           std::to_string(r.payload().size()) + " bytes of data");
  }
  return Status::Ok();
}

std::string EncodeMarkerBody(const MarkerInfo& m) {
  std::string out;
  out.reserve(kMarkerBodyFixed + m.label.size());
  out += static_cast<char>(m.kind);
  out += '\0';
  AppendFixed<uint16_t>(&out, static_cast<uint16_t>(m.label.size()));
  AppendFixed<uint32_t>(&out, 0);
  out.append(reinterpret_cast<const char*>(m.marker_id.data()), 16);
  out.append(reinterpret_cast<const char*>(m.group_id.data()), 16);
  out += m.label;
  return out;
}

Result<MarkerInfo> DecodeMarkerBody(std::string_view body) {
  if (body.size() < kMarkerBodyFixed) return DataLoss("marker body shorter than 40 bytes");
  auto p = reinterpret_cast<const uint8_t*>(body.data());
  MarkerInfo m;
  if (p[0] < 1 || p[0] > 3) return DataLoss("unknown marker kind " + std::to_string(p[0]));
  m.kind = static_cast<MarkerKind>(p[0]);
  uint16_t label_len = DecodeFixed<uint16_t>(p + 2);
  if (label_len > kMaxLabelLength || kMarkerBodyFixed + label_len != body.size()) {
    return DataLoss("marker label length " + std::to_string(label_len) +
                    " does not match the body size");
  }
  std::memcpy(m.marker_id.data(), p + 8, 16);
  std::memcpy(m.group_id.data(), p + 24, 16);
  m.label.assign(body.substr(kMarkerBodyFixed));
  return m;
}

void EncodeRecordHeader(const Record& r, std::string_view payload, std::string* out) {
  uint8_t h[kRecordHeaderSize] = {};
  std::memcpy(h, kRecordMagic, 4);
  h[4] = static_cast<uint8_t>(r.type);
  EncodeFixed<uint64_t>(h + 8, r.seq);
  EncodeFixed<uint64_t>(h + 16, static_cast<uint64_t>(r.timestamp_ns));
  EncodeFixed<uint64_t>(h + 24, r.offset);
  EncodeFixed<uint64_t>(h + 32, r.length);
  EncodeFixed<uint32_t>(h + 40, static_cast<uint32_t>(payload.size()));
  EncodeFixed<uint64_t>(h + 48, Checksum64(payload));
  EncodeFixed<uint64_t>(h + 56, Checksum64(h, 56));
  out->append(reinterpret_cast<const char*>(h), kRecordHeaderSize);
}

bool RecordHeaderIsWhole(const uint8_t* p) {
  return std::memcmp(p, kRecordMagic, 4) == 0 && DecodeFixed<uint64_t>(p + 56) == Checksum64(p, 56);
}

Result<RecordHeader> DecodeRecordHeader(const uint8_t* p) {
  if (!RecordHeaderIsWhole(p)) {
    return DataLoss(std::memcmp(p, kRecordMagic, 4) != 0 ? "bad record magic"
                                                         : "record header checksum mismatch");
  }
  RecordHeader h;
  if (p[4] < 1 || p[4] > 4) return DataLoss("unknown record type " + std::to_string(p[4]));
  h.type = static_cast<RecordType>(p[4]);
  h.seq = DecodeFixed<uint64_t>(p + 8);
  h.timestamp_ns = static_cast<int64_t>(DecodeFixed<uint64_t>(p + 16));
  h.offset = DecodeFixed<uint64_t>(p + 24);
  h.length = DecodeFixed<uint64_t>(p + 32);
  h.payload_length = DecodeFixed<uint32_t>(p + 40);
  h.payload_checksum = DecodeFixed<uint64_t>(p + 48);
  if (h.seq == 0) return DataLoss("record with seq 0");
  switch (h.type) {
    case RecordType::kWrite:
      if (h.payload_length != h.length || h.length == 0 || h.length > kMaxRecordLength) {
        return DataLoss("write record with inconsistent length");
      }
      break;
    case RecordType::kZero:
    case RecordType::kTrim:
      if (h.payload_length != 0 || h.length == 0 || h.length > kMaxRecordLength) {
        return DataLoss("zero/trim record with inconsistent length");
      }
      break;
    case RecordType::kMarker:
      if (h.length != 0 || h.offset != 0 || h.payload_length < kMarkerBodyFixed ||
          h.payload_length > kMarkerBodyFixed + kMaxLabelLength) {
        return DataLoss("marker record with inconsistent length");
      }
      break;
  }
  return h;
}

std::string EncodeSegmentHeader(const SegmentHeader& sh) {
  uint8_t h[kSegmentHeaderSize] = {};
  std::memcpy(h, kSegmentMagic, 8);
  EncodeFixed<uint32_t>(h + 8, kFormatVersion);
  EncodeFixed<uint32_t>(h + 12, kSegmentHeaderSize);
  EncodeFixed<uint64_t>(h + 16, sh.segment_number);
  EncodeFixed<uint64_t>(h + 24, sh.first_seq);
  EncodeFixed<uint32_t>(h + 32, sh.block_size);
  EncodeFixed<uint32_t>(h + 36, sh.flags);
  std::memcpy(h + 40, sh.volume_id.data(), 16);
  EncodeFixed<uint64_t>(h + 56, Checksum64(h, 56));
  return std::string(reinterpret_cast<const char*>(h), kSegmentHeaderSize);
}

Result<SegmentHeader> DecodeSegmentHeader(const uint8_t* p) {
  if (std::memcmp(p, kSegmentMagic, 8) != 0) return DataLoss("bad segment magic");
  if (DecodeFixed<uint64_t>(p + 56) != Checksum64(p, 56)) {
    return DataLoss("segment header checksum mismatch");
  }
  uint32_t version = DecodeFixed<uint32_t>(p + 8);
  if (version != kFormatVersion) {
    return DataLoss("segment format version " + std::to_string(version) +
                    " is not supported (this build reads version 1)");
  }
  if (DecodeFixed<uint32_t>(p + 12) != kSegmentHeaderSize) {
    return DataLoss("segment header size is not 64");
  }
  SegmentHeader sh;
  sh.segment_number = DecodeFixed<uint64_t>(p + 16);
  sh.first_seq = DecodeFixed<uint64_t>(p + 24);
  sh.block_size = DecodeFixed<uint32_t>(p + 32);
  sh.flags = DecodeFixed<uint32_t>(p + 36);
  if (!IsPowerOfTwo(sh.block_size) || sh.block_size < 512 || sh.block_size > 65536) {
    return DataLoss("segment block size " + std::to_string(sh.block_size) + " is invalid");
  }
  if (sh.flags & ~kSegmentCompacted) return DataLoss("unknown segment flags");
  std::memcpy(sh.volume_id.data(), p + 40, 16);
  return sh;
}

}  // namespace ferry::journal
