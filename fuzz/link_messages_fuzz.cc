// Fuzzes every decoder of bytes a link peer sends (docs/protocols/link.md): the frame header
// and payload (src/link/frame.h), the JSON control messages HELLO, WELCOME, REFUSE,
// RESYNC_BEGIN and SYNC_DONE (also RESYNC_DONE's payload), and the binary ACK, RECORDS and
// SYNC_DATA (src/link/messages.h).
//
// The first input byte picks the decoder (bits 0-6 modulo 9: 0 frame, 1 HELLO, 2 WELCOME,
// 3 REFUSE, 4 SYNC_DONE, 5 ACK, 6 RECORDS, 7 SYNC_DATA, 8 RESYNC_BEGIN) and how the rest is
// used (bit 7):
//   raw         the rest is the payload as it is; for frames, a header and payload whose
//               checksums may be fixed up so the checks behind them are reached;
//   structured  the rest describes a message (records, extents, JSON fields, a frame around
//               any message) that the link's own encoder writes; then at most a few mistakes
//               a broken source could make, or damaged bytes. Undamaged, it must decode to
//               exactly what was encoded; an integer JSON field turned into a float, a bool,
//               a string, null or an out-of-range number must be refused.
// The decisions (which mistake, which field, which damage) are taken from the input before
// the values, and an exhausted input reads as zeros, which make a valid message: inputs stay
// short in a CI run (libFuzzer lengthens them slowly), and even a few bytes reach the deep
// paths. RECORDS and SYNC_DATA get their first seq and a valid geometry from the input:
// block size a power of two from 512 to 64 KiB, volume size a multiple of it. A frame that
// decodes has its payload fed to the decoder of its type, as a receiver would.
//
// Whatever the input: a decoder returns its value or kDataLoss "corrupt frame: …" whose message
// can travel back in a REFUSE; what decodes re-encodes to bytes that decode to the same value
// (a write of all zeros comes back as a zero record); no crash, no hang, no sanitizer report.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/checksum.h"
#include "base/coding.h"
#include "link/codec.h"
#include "link/frame.h"
#include "link/messages.h"

using namespace ferry;
using namespace ferry::link;
using journal::Record;
using journal::RecordType;
using journal::StoredRecord;
using nlohmann::json;

namespace {

void Require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "link_messages_fuzz: %s\n", what);
    std::abort();
  }
}

// True when the decoder succeeded. Its errors must be corrupt frames whose message the
// receiver can send back in a REFUSE (the message may quote the peer's bytes).
template <typename T>
bool Check(const Result<T>& r) {
  if (r.ok()) return true;
  Require(r.status().code() == Code::kDataLoss, "decoder failed with a code other than DataLoss");
  const std::string message(r.status().message());
  Require(message.starts_with("corrupt frame: "), "decoder error is not a corrupt frame");
  std::string refuse;
  try {
    refuse = EncodeRefuse({"corrupt_frame", message});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "link_messages_fuzz: EncodeRefuse threw: %s\n", e.what());
    std::abort();
  }
  auto back = DecodeRefuse(refuse);
  Require(back.ok() && back->code == "corrupt_frame", "a REFUSE carrying the error does not decode");
  return false;
}

struct Geometry {
  uint64_t volume_size = 0;
  uint32_t block_size = 0;
};

// One byte: block size 512 << (0..7), 1 to 16 blocks (structured) or more (raw).
Geometry ConsumeGeometry(FuzzedDataProvider& in, uint64_t max_blocks) {
  const uint8_t v = in.ConsumeIntegral<uint8_t>();
  const uint32_t block_size = 512u << (v & 7);
  const uint64_t blocks = max_blocks <= 16 ? (v >> 3) % max_blocks + 1
                                           : in.ConsumeIntegralInRange<uint64_t>(1, max_blocks);
  return {block_size * blocks, block_size};
}

// Data of `length` bytes: all zeros (a zero-flagged write on the wire) or a pattern.
std::string Fill(FuzzedDataProvider& in, size_t length) {
  std::string data(length, '\0');
  if (in.ConsumeBool()) return data;
  std::string pattern = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(1, 64));
  if (pattern.empty()) pattern = "\x5a";
  for (size_t i = 0; i < length; ++i) data[i] = pattern[i % pattern.size()];
  return data;
}

// Damage to an encoded message: 0 none, 1 a flipped bit, 2 cut short, 3 trailing bytes,
// 4 another count (RECORDS, SYNC_DATA). Returns false when it left the bytes as they were.
constexpr int kDamageKinds = 5;
bool Damage(FuzzedDataProvider& in, int kind, std::string* bytes) {
  switch (kind) {
    case 1:
      if (bytes->empty()) return false;
      (*bytes)[in.ConsumeIntegralInRange<size_t>(0, bytes->size() - 1)] ^=
          static_cast<char>(1u << in.ConsumeIntegralInRange(0, 7));
      return true;
    case 2:
      if (bytes->empty()) return false;
      bytes->resize(in.ConsumeIntegralInRange<size_t>(0, bytes->size() - 1));
      return true;
    case 3:
      bytes->push_back(static_cast<char>(in.ConsumeIntegral<uint8_t>()));
      *bytes += in.ConsumeBytesAsString(in.ConsumeIntegralInRange<size_t>(0, 64));
      return true;
    case 4:
      if (bytes->size() < 4) return false;
      EncodeFixed<uint32_t>(reinterpret_cast<uint8_t*>(bytes->data()),
                            DecodeFixed<uint32_t>(reinterpret_cast<const uint8_t*>(bytes->data())) +
                                in.ConsumeIntegralInRange<uint32_t>(1, UINT32_MAX));
      return true;
    default:
      return false;
  }
}

bool IsAscii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// A message built by the structured mode: its payload, the geometry to decode it with, and
// whether it must decode (nothing was damaged).
struct Built {
  std::string payload;
  std::deque<std::string> held;  // what the built message's views point into
  Geometry g;
  uint64_t first = 0;
  bool valid = true;
};

// --- RECORDS -------------------------------------------------------------------------------

bool SameRecord(const Record& a, const Record& b) {
  return a.type == b.type && a.seq == b.seq && a.timestamp_ns == b.timestamp_ns &&
         a.offset == b.offset && a.length == b.length && a.data == b.data &&
         a.marker.kind == b.marker.kind && a.marker.marker_id == b.marker.marker_id &&
         a.marker.group_id == b.marker.group_id && a.marker.label == b.marker.label;
}

// What the decoder returns for a record that was encoded from r.
Record AsDecoded(Record r) {
  if (r.type == RecordType::kWrite && IsAllZero(r.data)) {
    r.type = RecordType::kZero;
    r.data.clear();
  }
  return r;
}

bool SameRecords(const std::vector<Record>& got, const std::vector<Record>& sent) {
  if (got.size() != sent.size()) return false;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!SameRecord(got[i], AsDecoded(sent[i]))) return false;
  }
  return true;
}

// As the source journal stores it: checksum of the write data or of the marker body.
StoredRecord Stored(const Record& r) {
  StoredRecord sr{r, 0};
  if (r.type == RecordType::kWrite) sr.checksum = Checksum64(r.data);
  if (r.type == RecordType::kMarker) sr.checksum = Checksum64(journal::EncodeMarkerBody(r.marker));
  return sr;
}

bool DecodeRecordsAndRoundTrip(std::string_view payload, uint64_t first, const Geometry& g) {
  auto got = DecodeRecords(payload, first, g.volume_size, g.block_size);
  if (!Check(got)) return false;
  std::vector<StoredRecord> stored;
  for (const Record& r : *got) stored.push_back(Stored(r));
  std::string again;
  EncodeRecords(stored, &again);
  auto back = DecodeRecords(again, first, g.volume_size, g.block_size);
  Require(back.ok(), "re-encoded RECORDS do not decode");
  Require(SameRecords(*back, *got), "re-encoded RECORDS decode to other records");
  return true;
}

// Mistakes in one record: 1 seq out of order, 2 checksum, 3 offset misaligned or past the
// end, 4 length (anything, a write without data travels zero-flagged), 5 type, marker kind
// or label. 0 and 6..15: none.
Built BuildRecords(FuzzedDataProvider& in, std::vector<Record>* sent) {
  Built b;
  b.g = ConsumeGeometry(in, 16);
  const int damage = in.ConsumeIntegralInRange(0, 2 * kDamageKinds - 1);  // half: none
  const int count = in.ConsumeIntegralInRange(1, 8);
  std::vector<std::pair<int, int>> plan;  // (type 1..4, mistake) per record
  for (int i = 0; i < count; ++i) {
    const uint8_t v = in.ConsumeIntegral<uint8_t>();
    plan.push_back({(v & 3) + 1, v >> 4});
  }
  b.first = in.ConsumeBool() ? in.ConsumeIntegral<uint64_t>() : in.ConsumeIntegralInRange<uint64_t>(1, 1000);
  const uint64_t blocks = b.g.volume_size / b.g.block_size;
  const uint64_t max_write_blocks = std::max<uint64_t>(1, (128 << 10) / b.g.block_size);
  std::vector<StoredRecord> stored;
  for (int i = 0; i < count; ++i) {
    const auto [type, mistake] = plan[static_cast<size_t>(i)];
    Record r;
    r.seq = b.first + static_cast<uint64_t>(i);
    if (type == 4) {
      r.type = RecordType::kMarker;
      r.marker.kind = static_cast<journal::MarkerKind>(in.ConsumeIntegralInRange(1, 3));
      if (in.ConsumeBool()) {
        for (auto& x : r.marker.marker_id) x = in.ConsumeIntegral<uint8_t>();
        for (auto& x : r.marker.group_id) x = in.ConsumeIntegral<uint8_t>();
      }
      r.marker.label = in.ConsumeRandomLengthString(journal::kMaxLabelLength);
    } else {
      r.type = static_cast<RecordType>(type);
      const uint64_t at = in.ConsumeIntegralInRange<uint64_t>(0, blocks - 1);
      const uint64_t n = in.ConsumeIntegralInRange<uint64_t>(1, std::min(blocks - at, max_write_blocks));
      r.offset = at * b.g.block_size;
      r.length = n * b.g.block_size;
      if (r.type == RecordType::kWrite) r.data = Fill(in, r.length);
    }
    r.timestamp_ns = in.ConsumeIntegral<int64_t>();
    StoredRecord sr = Stored(r);
    switch (mistake) {
      case 1:
        sr.record.seq += in.ConsumeIntegralInRange<uint64_t>(1, UINT64_MAX);
        b.valid = false;
        break;
      case 2:  // zero and trim records carry no checksum the target could check
        sr.checksum ^= uint64_t{1} << in.ConsumeIntegralInRange(0, 63);
        b.valid = b.valid && (r.type == RecordType::kZero || r.type == RecordType::kTrim);
        break;
      case 3:  // ignored for markers
        sr.record.offset = in.ConsumeBool() ? r.offset + in.ConsumeIntegralInRange<uint64_t>(1, b.g.block_size - 1)
                                            : b.g.volume_size + b.g.block_size * in.ConsumeIntegral<uint8_t>();
        b.valid = b.valid && r.type == RecordType::kMarker;
        break;
      case 4: {  // ignored for markers
        const uint64_t kLengths[] = {UINT64_MAX - b.g.block_size + 1, journal::kMaxRecordLength + b.g.block_size,
                                     b.g.volume_size + b.g.block_size, 0};
        const int k = in.ConsumeIntegralInRange(0, 4);
        sr.record.length = k < 4 ? kLengths[k] : in.ConsumeIntegral<uint64_t>();
        sr.record.data.clear();
        b.valid = b.valid && r.type == RecordType::kMarker;
        break;
      }
      case 5:
        if (r.type != RecordType::kMarker) {
          const uint8_t t = in.ConsumeIntegral<uint8_t>();
          sr.record.type = static_cast<RecordType>(t >= 1 && t <= 4 ? 0 : t);
        } else if (in.ConsumeBool()) {
          const uint8_t kind = in.ConsumeIntegral<uint8_t>();
          sr.record.marker.kind = static_cast<journal::MarkerKind>(kind >= 1 && kind <= 3 ? 0 : kind);
        } else {
          sr.record.marker.label.resize(journal::kMaxLabelLength + 1 + in.ConsumeIntegral<uint8_t>(), 'L');
        }
        b.valid = false;
        break;
      default:
        break;
    }
    sent->push_back(r);
    stored.push_back(std::move(sr));
  }
  EncodeRecords(stored, &b.payload);
  if (Damage(in, damage, &b.payload)) b.valid = false;
  return b;
}

void StructuredRecords(FuzzedDataProvider& in) {
  std::vector<Record> sent;
  const Built b = BuildRecords(in, &sent);
  if (b.valid) {
    auto got = DecodeRecords(b.payload, b.first, b.g.volume_size, b.g.block_size);
    Require(got.ok(), "a valid RECORDS batch was refused");
    Require(SameRecords(*got, sent), "a valid RECORDS batch decoded to other records");
  }
  DecodeRecordsAndRoundTrip(b.payload, b.first, b.g);
}

// --- SYNC_DATA -----------------------------------------------------------------------------

bool SameSyncData(const SyncData& a, const SyncData& b) {
  if (a.scanned_to != b.scanned_to || a.total_bytes != b.total_bytes ||
      a.extents.size() != b.extents.size()) {
    return false;
  }
  for (size_t i = 0; i < a.extents.size(); ++i) {
    if (a.extents[i].offset != b.extents[i].offset || a.extents[i].data != b.extents[i].data) return false;
  }
  return true;
}

// Decodes as from an uncompressed frame (extents checked by the frame are accepted) and as
// from a compressed one; what the second accepts, the first accepts the same. Re-encoded with
// either kind of checksum, it decodes to the same extents.
bool DecodeSyncDataAndRoundTrip(std::string_view payload, const Geometry& g) {
  auto strict = DecodeSyncData(payload, g.volume_size, g.block_size, false);
  auto got = DecodeSyncData(payload, g.volume_size, g.block_size, true);
  if (strict.ok()) {
    Require(got.ok(), "SYNC_DATA accepted from a compressed frame but not from a plain one");
    Require(SameSyncData(*strict, *got), "SYNC_DATA decodes to other extents from a plain frame");
  }
  Check(strict);
  if (!Check(got)) return false;
  std::string again;
  EncodeSyncData(*got, &again);
  auto back = DecodeSyncData(again, g.volume_size, g.block_size, false);
  Require(back.ok(), "re-encoded SYNC_DATA does not decode");
  Require(SameSyncData(*back, *got), "re-encoded SYNC_DATA decodes to other extents");
  std::string headers, framed;
  std::vector<std::string_view> pieces;
  EncodeSyncDataPieces(*got, &headers, &pieces, SyncChecksums::kFrame);
  for (std::string_view p : pieces) framed.append(p);
  auto by_frame = DecodeSyncData(framed, g.volume_size, g.block_size, true);
  Require(by_frame.ok(), "SYNC_DATA re-encoded for frame checksums does not decode");
  Require(SameSyncData(*by_frame, *got), "SYNC_DATA re-encoded for frame checksums differs");
  bool has_data = false;
  for (const SyncExtent& e : got->extents) has_data |= e.zero_length == 0;
  Require(DecodeSyncData(framed, g.volume_size, g.block_size, false).ok() != has_data,
          "extents checked by the frame were accepted from a compressed frame");
  return true;
}

// Mistakes in one extent: 1 misaligned, 2 overlapping the previous one, 3 a partial block or
// none. 0 and 4..7: none. In the message: scanned_to past the volume's end.
Built BuildSyncData(FuzzedDataProvider& in, SyncData* m) {
  Built b;
  b.g = ConsumeGeometry(in, 16);
  const int damage = in.ConsumeIntegralInRange(0, 2 * kDamageKinds - 1);  // half: none
  const uint8_t shape = in.ConsumeIntegral<uint8_t>();
  const int count = shape & 7;
  const bool scanned_past_end = (shape >> 3) == 1;
  std::vector<int> mistakes;
  for (int i = 0; i < count; ++i) mistakes.push_back(in.ConsumeIntegralInRange(0, 7));
  m->scanned_to = b.g.volume_size - in.ConsumeIntegralInRange<uint64_t>(0, b.g.volume_size);
  m->total_bytes = in.ConsumeIntegral<uint64_t>();
  const uint64_t limit = m->scanned_to / b.g.block_size;  // extents end at or below scanned_to
  const uint64_t max_extent_blocks = std::max<uint64_t>(1, (128 << 10) / b.g.block_size);
  uint64_t next = 0;
  for (int mistake : mistakes) {
    const uint64_t at = next + in.ConsumeIntegralInRange<uint64_t>(0, 2);
    if (at >= limit) break;
    const uint64_t n = in.ConsumeIntegralInRange<uint64_t>(1, std::min(limit - at, max_extent_blocks));
    SyncExtent e{at * b.g.block_size, b.held.emplace_back(Fill(in, n * b.g.block_size))};
    next = at + n;
    if (mistake == 1) {
      e.offset += in.ConsumeIntegralInRange<uint64_t>(1, b.g.block_size - 1);
      b.valid = false;
    } else if (mistake == 2 && !m->extents.empty()) {
      e.offset = m->extents.back().offset + m->extents.back().data.size() - b.g.block_size;
      b.valid = false;
    } else if (mistake == 3) {
      e.data = e.data.substr(0, in.ConsumeIntegralInRange<size_t>(0, e.data.size() - 1));
      b.valid = false;
    }
    m->extents.push_back(std::move(e));
  }
  if (scanned_past_end) {
    m->scanned_to = b.g.volume_size + in.ConsumeIntegralInRange<uint64_t>(1, UINT32_MAX);
    b.valid = false;
  }
  if (in.ConsumeBool()) {
    EncodeSyncData(*m, &b.payload);
  } else {  // as a link without compression sends it; decoded as from such a frame below
    std::string headers;
    std::vector<std::string_view> pieces;
    EncodeSyncDataPieces(*m, &headers, &pieces, SyncChecksums::kFrame);
    for (std::string_view p : pieces) b.payload.append(p);
  }
  if (Damage(in, damage, &b.payload)) b.valid = false;
  return b;
}

void StructuredSyncData(FuzzedDataProvider& in) {
  SyncData m;
  const Built b = BuildSyncData(in, &m);
  if (b.valid) {
    auto got = DecodeSyncData(b.payload, b.g.volume_size, b.g.block_size, true);
    Require(got.ok(), "a valid SYNC_DATA was refused");
    Require(SameSyncData(*got, m), "a valid SYNC_DATA decoded to other extents");
  }
  DecodeSyncDataAndRoundTrip(b.payload, b.g);
}

// --- JSON control messages and ACK ---------------------------------------------------------

auto Tie(const Hello& m) {
  return std::tie(m.protocol, m.volume, m.volume_id, m.history_id, m.volume_size, m.block_size,
                  m.source_node, m.source_first_seq, m.source_last_seq, m.codecs, m.initial_sync);
}
auto Tie(const Welcome& m) {
  return std::tie(m.protocol, m.resume_from, m.codec, m.sync_needed, m.sync_offset, m.resync_open,
                  m.sync_frame_checksums);
}
auto Tie(const Refuse& m) { return std::tie(m.code, m.message); }
auto Tie(const ResyncBegin& m) { return std::tie(m.missing_from, m.resume_at); }
auto Tie(const SyncDone& m) { return std::tie(m.consistent_from); }
auto Tie(const Ack& m) { return std::tie(m.durable_seq, m.sync_offset); }

std::string Encode(const Hello& m) { return EncodeHello(m); }
std::string Encode(const Welcome& m) { return EncodeWelcome(m); }
std::string Encode(const Refuse& m) { return EncodeRefuse(m); }
std::string Encode(const ResyncBegin& m) { return EncodeResyncBegin(m); }
std::string Encode(const SyncDone& m) { return EncodeSyncDone(m); }
std::string Encode(const Ack& m) { return EncodeAck(m); }

// Any bytes, not only UTF-8: names come from files, messages may quote a peer.
std::string ConsumeName(FuzzedDataProvider& in) { return in.ConsumeRandomLengthString(24); }

Hello MakeHello(FuzzedDataProvider& in) {
  Hello m;
  m.protocol = in.ConsumeIntegral<int>();
  m.volume = ConsumeName(in);
  for (auto& b : m.volume_id) b = in.ConsumeIntegral<uint8_t>();
  m.history_id = in.ConsumeIntegral<uint64_t>();
  m.volume_size = in.ConsumeIntegral<uint64_t>();
  m.block_size = in.ConsumeIntegral<uint32_t>();
  m.source_node = ConsumeName(in);
  m.source_first_seq = in.ConsumeIntegral<uint64_t>();
  m.source_last_seq = in.ConsumeIntegral<uint64_t>();
  for (int i = in.ConsumeIntegralInRange(0, 3); i > 0; --i) m.codecs.push_back(ConsumeName(in));
  m.initial_sync = in.ConsumeBool();
  return m;
}
Welcome MakeWelcome(FuzzedDataProvider& in) {
  Welcome m;
  m.protocol = in.ConsumeIntegral<int>();
  m.resume_from = in.ConsumeIntegral<uint64_t>();
  m.codec = ConsumeName(in);
  m.sync_needed = in.ConsumeBool();
  m.sync_offset = in.ConsumeIntegral<uint64_t>();
  m.sync_frame_checksums = in.ConsumeBool();
  return m;
}
Refuse MakeRefuse(FuzzedDataProvider& in) {
  Refuse m;
  m.code = ConsumeName(in);
  m.message = in.ConsumeRandomLengthString(200);
  return m;
}
ResyncBegin MakeResyncBegin(FuzzedDataProvider& in) {
  ResyncBegin m;
  m.missing_from = in.ConsumeIntegral<uint64_t>();
  m.resume_at = m.missing_from + in.ConsumeIntegralInRange<uint64_t>(0, UINT64_MAX - m.missing_from);
  return m;
}
SyncDone MakeSyncDone(FuzzedDataProvider& in) { return SyncDone{in.ConsumeIntegral<uint64_t>()}; }
Ack MakeAck(FuzzedDataProvider& in) {
  Ack m;
  m.durable_seq = in.ConsumeIntegral<uint64_t>();
  m.sync_offset = in.ConsumeBool() ? kNoSync : in.ConsumeIntegral<uint64_t>();
  return m;
}

bool Ascii(const Hello& m) {
  bool ascii = IsAscii(m.volume) && IsAscii(m.source_node);
  for (const std::string& c : m.codecs) ascii = ascii && IsAscii(c);
  return ascii;
}
bool Ascii(const Welcome& m) { return IsAscii(m.codec); }
bool Ascii(const Refuse& m) { return IsAscii(m.code) && IsAscii(m.message); }
bool Ascii(const ResyncBegin&) { return true; }
bool Ascii(const SyncDone&) { return true; }

// Decodes a control message or ACK; what decodes must survive encode and decode unchanged.
template <typename T>
bool DecodeAndRoundTrip(Result<T> (*decode)(std::string_view), std::string_view payload, T* out) {
  auto got = decode(payload);
  if (!Check(got)) return false;
  auto back = decode(Encode(*got));
  Require(back.ok(), "a re-encoded message does not decode");
  Require(Tie(*back) == Tie(*got), "a re-encoded message decodes to other fields");
  if (out != nullptr) *out = *got;
  return true;
}

// How a JSON field's value must look for the decoder to accept it.
enum class Want { kInt, kUint32, kUint64, kOther };
struct Field {
  const char* parent;  // nullptr: a top-level field
  const char* name;
  Want want;
};

const std::vector<Field>& FieldsOf(const Hello&) {
  static const std::vector<Field> f = {
      {nullptr, "protocol", Want::kInt},          {nullptr, "volume", Want::kOther},
      {nullptr, "volume_id", Want::kOther},       {nullptr, "history_id", Want::kOther},
      {nullptr, "volume_size", Want::kUint64},    {nullptr, "block_size", Want::kUint32},
      {nullptr, "source_node", Want::kOther},     {nullptr, "source_first_seq", Want::kUint64},
      {nullptr, "source_last_seq", Want::kUint64}, {nullptr, "codecs", Want::kOther},
      {nullptr, "initial_sync", Want::kOther}};
  return f;
}
const std::vector<Field>& FieldsOf(const Welcome&) {
  static const std::vector<Field> f = {
      {nullptr, "protocol", Want::kInt},        {nullptr, "resume_from", Want::kUint64},
      {nullptr, "codec", Want::kOther},         {nullptr, "initial_sync", Want::kOther},
      {"initial_sync", "needed", Want::kOther}, {"initial_sync", "offset", Want::kUint64}};
  return f;
}
const std::vector<Field>& FieldsOf(const Refuse&) {
  static const std::vector<Field> f = {{nullptr, "code", Want::kOther}, {nullptr, "message", Want::kOther}};
  return f;
}
const std::vector<Field>& FieldsOf(const ResyncBegin&) {
  static const std::vector<Field> f = {{nullptr, "missing_from", Want::kUint64},
                                       {nullptr, "resume_at", Want::kUint64}};
  return f;
}
const std::vector<Field>& FieldsOf(const SyncDone&) {
  static const std::vector<Field> f = {{nullptr, "consistent_from", Want::kUint64}};
  return f;
}

// Replacement values: the fixed ones, then "remove the field", a string and an integer from
// the input.
const char* const kValues[] = {"1e300", "-1e300", "1.5", "true", "null", "\"7\"", "[]", "{}", "-1",
                               "-9223372036854775808", "2147483648", "4294967296",
                               "18446744073709551615"};
constexpr int kValueCount = sizeof kValues / sizeof kValues[0];
constexpr int kRemove = kValueCount, kString = kValueCount + 1, kInteger = kValueCount + 2;

// Sets (or removes) one field; returns true when the decoder must then refuse the message.
bool Mutate(FuzzedDataProvider& in, const Field& f, int pick, json* j) {
  json* obj = j;
  if (f.parent != nullptr) {
    if (!j->contains(f.parent) || !(*j)[f.parent].is_object()) return false;
    obj = &(*j)[f.parent];
  }
  if (pick == kRemove) {
    obj->erase(f.name);
    return f.want != Want::kOther;  // every integer field is required
  }
  const json v = pick == kString    ? json(in.ConsumeRandomLengthString(16))
                 : pick == kInteger ? json(in.ConsumeIntegral<int64_t>())
                                    : json::parse(kValues[pick]);
  (*obj)[f.name] = v;
  if (f.want == Want::kOther) return false;
  if (!v.is_number_integer()) return true;
  const bool negative = !v.is_number_unsigned() && v.get<int64_t>() < 0;
  switch (f.want) {
    case Want::kInt:
      return negative ? v.get<int64_t>() < INT_MIN : v.get<uint64_t>() > INT_MAX;
    case Want::kUint32:
      return negative || v.get<uint64_t>() > UINT32_MAX;
    default:
      return negative;
  }
}

// Builds a message, then changes up to two of its fields. Unchanged, it must decode to what
// was built (when its strings are ASCII: JSON carries other bytes as U+FFFD at best).
template <typename T>
void StructuredJson(FuzzedDataProvider& in, T (*make)(FuzzedDataProvider&),
                    Result<T> (*decode)(std::string_view)) {
  const std::vector<Field>& fields = FieldsOf(T{});
  const int n = in.ConsumeIntegralInRange(0, 3);
  std::vector<std::pair<size_t, int>> plan;  // (field, value)
  for (int i = 0; i < (n == 0 ? 0 : n == 3 ? 2 : 1); ++i) {
    const size_t k = in.ConsumeIntegralInRange<size_t>(0, fields.size() - 1);
    const int pick = in.ConsumeIntegralInRange(0, kInteger);
    // A second change to the same field would decide whether the first one counts.
    if (plan.empty() || plan[0].first != k) plan.push_back({k, pick});
  }
  const T m = make(in);
  json j = json::parse(Encode(m));
  bool must_fail = false;
  for (const auto& [k, pick] : plan) must_fail = Mutate(in, fields[k], pick, &j) || must_fail;
  T got;
  const bool ok = DecodeAndRoundTrip(decode, j.dump(-1, ' ', false, json::error_handler_t::replace), &got);
  if (must_fail) Require(!ok, "a JSON field of the wrong kind or range was accepted");
  if (plan.empty()) {
    Require(ok, "a valid control message was refused");
    if (Ascii(m)) Require(Tie(got) == Tie(m), "a valid control message decoded to other fields");
  }
}

void StructuredAck(FuzzedDataProvider& in) {
  const int damage = in.ConsumeIntegralInRange(0, 3);  // ACK has no count to change
  const Ack m = MakeAck(in);
  std::string payload = EncodeAck(m);
  const bool damaged = Damage(in, damage, &payload);
  Ack got;
  const bool ok = DecodeAndRoundTrip(DecodeAck, payload, &got);
  if (!damaged) Require(ok && Tie(got) == Tie(m), "a valid ACK decoded to other fields");
}

// --- frames --------------------------------------------------------------------------------

// What the receiver does with a frame's payload: the decoder of its type. True when it decoded.
bool DecodeMessage(MessageType type, std::string_view payload, uint64_t first, const Geometry& g) {
  switch (type) {
    case MessageType::kHello: return DecodeAndRoundTrip<Hello>(DecodeHello, payload, nullptr);
    case MessageType::kWelcome: return DecodeAndRoundTrip<Welcome>(DecodeWelcome, payload, nullptr);
    case MessageType::kRefuse: return DecodeAndRoundTrip<Refuse>(DecodeRefuse, payload, nullptr);
    case MessageType::kResyncBegin: return DecodeAndRoundTrip<ResyncBegin>(DecodeResyncBegin, payload, nullptr);
    case MessageType::kSyncDone:
    case MessageType::kResyncDone: return DecodeAndRoundTrip<SyncDone>(DecodeSyncDone, payload, nullptr);
    case MessageType::kAck: return DecodeAndRoundTrip<Ack>(DecodeAck, payload, nullptr);
    case MessageType::kRecords: return DecodeRecordsAndRoundTrip(payload, first, g);
    case MessageType::kSyncData: return DecodeSyncDataAndRoundTrip(payload, g);
    case MessageType::kPing: return true;  // nothing to decode
    case MessageType::kDigestRequest:
    case MessageType::kVerifyRequest: {  // the same layout
      auto got = DecodeDigestRequest(payload, g.volume_size, g.block_size);
      if (!Check(got)) return false;
      std::string again;
      EncodeDigestRequest(*got, &again);
      Require(again == payload, "a DIGEST_REQUEST did not re-encode to its bytes");
      return true;
    }
    case MessageType::kDigests: {
      auto got = DecodeDigests(payload);
      if (!Check(got)) return false;
      std::string again;
      EncodeDigests(*got, &again);
      Require(again == payload, "DIGESTS did not re-encode to their bytes");
      return true;
    }
  }
  return false;
}

// Decodes a header and the payload after it, as FrameReader does.
bool DecodeFrame(std::string_view bytes, MessageType* type, std::string* raw) {
  auto h = DecodeFrameHeader(bytes);
  if (!Check(h)) return false;
  Require(bytes.size() >= kFrameHeaderSize, "a header shorter than 32 bytes decoded");
  std::string_view stored = bytes.substr(kFrameHeaderSize);
  std::string buf;
  auto payload = DecodeFramePayload(
      *h, stored.substr(0, std::min<size_t>(stored.size(), h->stored_length)), &buf);
  if (!Check(payload)) return false;
  Require(payload->size() == h->raw_length, "a frame payload decoded to the wrong length");
  *type = h->type;
  *raw = std::string(*payload);
  return true;
}

// Recomputes the payload and/or header checksum, so the checks behind them see the bytes.
void FixChecksums(bool payload, bool header, std::string* bytes) {
  if (bytes->size() < kFrameHeaderSize) return;
  auto* p = reinterpret_cast<uint8_t*>(bytes->data());
  if (payload) EncodeFixed<uint64_t>(p + 16, Checksum64(std::string_view(*bytes).substr(kFrameHeaderSize)));
  if (header) EncodeFixed<uint64_t>(p + 24, Checksum64(p, 24));
}

// A frame around a message of any type (built as above), a compressible pattern or any bytes,
// stored with any codec; then at most one damaged header field or byte range, with the
// checksums fixed up or not.
void StructuredFrame(FuzzedDataProvider& in) {
  FrameHeader h;
  h.type = static_cast<MessageType>(in.ConsumeIntegralInRange(1, 13));
  h.codec = static_cast<Codec>(in.ConsumeIntegralInRange(0, 2));
  const int damage = in.ConsumeIntegralInRange(0, 11);  // 0..5: none
  const int fix = in.ConsumeIntegralInRange(0, 3);
  const int source = in.ConsumeIntegralInRange(0, 3);  // 0, 1: a message of the type
  Built b;
  switch (source) {
    case 2:
      b.payload = Fill(in, in.ConsumeIntegralInRange<size_t>(0, 8192));
      b.valid = false;
      break;
    case 3:
      b.payload = in.ConsumeRandomLengthString(2048);
      b.valid = false;
      break;
    default:
      switch (h.type) {
        case MessageType::kHello: b.payload = Encode(MakeHello(in)); break;
        case MessageType::kWelcome: b.payload = Encode(MakeWelcome(in)); break;
        case MessageType::kRefuse: b.payload = Encode(MakeRefuse(in)); break;
        case MessageType::kResyncBegin: b.payload = Encode(MakeResyncBegin(in)); break;
        case MessageType::kSyncDone:
        case MessageType::kResyncDone: b.payload = Encode(MakeSyncDone(in)); break;
        case MessageType::kAck: b.payload = Encode(MakeAck(in)); break;
        case MessageType::kRecords: {
          std::vector<Record> sent;
          b = BuildRecords(in, &sent);
          break;
        }
        case MessageType::kSyncData: {
          SyncData m;
          b = BuildSyncData(in, &m);
          break;
        }
        case MessageType::kPing: break;
        case MessageType::kDigestRequest:
        case MessageType::kVerifyRequest:
        case MessageType::kDigests:
          // Not built structurally yet: arbitrary bytes exercise the decoders' checks.
          b.payload = in.ConsumeRandomLengthString(512);
          b.valid = false;
          break;
      }
      break;
  }
  std::string stored;
  if (h.codec == Codec::kNone) {
    stored = b.payload;
  } else {
    CompressOptions options;
    options.zstd_level = in.ConsumeIntegralInRange(-5, 9);
    options.lz4_acceleration = in.ConsumeIntegralInRange(1, 64);
    Require(Compress(h.codec, b.payload, options, &stored).ok(), "Compress failed");
  }
  h.stored_length = static_cast<uint32_t>(stored.size());
  h.raw_length = static_cast<uint32_t>(b.payload.size());
  h.payload_checksum = Checksum64(stored);
  std::string bytes = EncodeFrameHeader(h) + stored;
  bool damaged = true;
  auto* p = reinterpret_cast<uint8_t*>(bytes.data());
  switch (damage) {
    case 6: p[4] = in.ConsumeIntegral<uint8_t>(); break;  // type
    case 7: p[5] = in.ConsumeIntegral<uint8_t>(); break;  // codec
    case 8: p[6 + in.ConsumeIntegralInRange(0, 1)] = in.ConsumeIntegralInRange<uint8_t>(1, 255); break;
    case 9:  // a length: near the real one, or past the limits
      EncodeFixed<uint32_t>(p + 8 + 4 * in.ConsumeIntegralInRange(0, 1),
                            in.ConsumeBool() ? in.ConsumeIntegralInRange<uint32_t>(0, 1 << 20)
                                             : static_cast<uint32_t>(kMaxFramePayload) + in.ConsumeIntegral<uint16_t>() + 1);
      break;
    case 10:
    case 11:
      damaged = Damage(in, in.ConsumeIntegralInRange(1, 3), &bytes);
      break;
    default:
      damaged = false;
      break;
  }
  if (damaged) FixChecksums(fix & 1, fix & 2, &bytes);
  MessageType type;
  std::string payload;
  const bool ok = DecodeFrame(bytes, &type, &payload);
  if (!damaged) Require(ok && type == h.type && payload == b.payload, "a valid frame decoded to another one");
  if (!ok) return;
  const bool decoded = DecodeMessage(type, payload, b.first, b.g);
  if (!damaged && b.valid) Require(decoded, "a valid message in a valid frame was refused");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t target = (data[0] & 0x7f) % 9;
  const bool structured = data[0] & 0x80;
  FuzzedDataProvider in(data + 1, size - 1);
  if (structured) {
    switch (target) {
      case 0: StructuredFrame(in); break;
      case 1: StructuredJson<Hello>(in, MakeHello, DecodeHello); break;
      case 2: StructuredJson<Welcome>(in, MakeWelcome, DecodeWelcome); break;
      case 3: StructuredJson<Refuse>(in, MakeRefuse, DecodeRefuse); break;
      case 4: StructuredJson<SyncDone>(in, MakeSyncDone, DecodeSyncDone); break;
      case 5: StructuredAck(in); break;
      case 6: StructuredRecords(in); break;
      case 7: StructuredSyncData(in); break;
      default: StructuredJson<ResyncBegin>(in, MakeResyncBegin, DecodeResyncBegin); break;
    }
    return 0;
  }
  if (target != 0 && target != 6 && target != 7) {
    static constexpr MessageType kTypes[] = {
        MessageType::kPing,     MessageType::kHello, MessageType::kWelcome,
        MessageType::kRefuse,   MessageType::kSyncDone, MessageType::kAck,
        MessageType::kRecords,  MessageType::kSyncData, MessageType::kResyncBegin};
    DecodeMessage(kTypes[target], in.ConsumeRemainingBytesAsString(), 0, Geometry{});
    return 0;
  }
  // Parameters from the end of the input; the payload is the rest.
  const uint64_t first =
      in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, 255) : in.ConsumeIntegral<uint64_t>();
  const Geometry g = ConsumeGeometry(in, 1024);
  if (target == 0) {
    const int fix = in.ConsumeIntegralInRange(0, 3);
    std::string bytes = in.ConsumeRemainingBytesAsString();
    FixChecksums(fix & 1, fix & 2, &bytes);
    MessageType type;
    std::string payload;
    if (DecodeFrame(bytes, &type, &payload)) DecodeMessage(type, payload, first, g);
  } else {
    DecodeMessage(target == 6 ? MessageType::kRecords : MessageType::kSyncData,
                  in.ConsumeRemainingBytesAsString(), first, g);
  }
  return 0;
}
