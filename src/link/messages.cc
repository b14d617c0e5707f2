#include "link/messages.h"

#include <cinttypes>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <xxhash.h>
#include <stdexcept>
#include <utility>

#include "base/checksum.h"
#include "base/coding.h"
#include "journal/block_runs.h"
#include "link/codec.h"

namespace ferry::link {

using nlohmann::json;

namespace {

Status Corrupt(const std::string& what) { return DataLoss("corrupt frame: " + what); }

// Runs a JSON decoder; any parse or type error becomes a corrupt frame naming the message.
template <typename T, typename Fn>
Result<T> DecodeJson(std::string_view name, std::string_view payload, Fn fn) {
  try {
    json j = json::parse(payload);
    if (!j.is_object()) return Corrupt(std::string(name) + " is not a JSON object");
    return fn(j);
  } catch (const std::exception& e) {
    return Corrupt(std::string(name) + ": " + e.what());
  }
}

// The integer field `key` of j, if T can hold it; throws (DecodeJson makes that a corrupt
// frame) otherwise. get<T>() alone would truncate a float (undefined behaviour when it is out
// of range), read a bool as 0 or 1, and wrap a negative or too large number into a plausible
// value.
template <typename T>
T Integer(const json& j, const char* key) {
  const json& v = j.at(key);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (std::in_range<T>(u)) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (std::in_range<T>(i)) return static_cast<T>(i);
  }
  throw std::invalid_argument(std::string(key) + " must be an integer from " +
                              std::to_string(std::numeric_limits<T>::min()) + " to " +
                              std::to_string(std::numeric_limits<T>::max()));
}

// Checksum of n zero bytes, as the source journal computed it for an all-zero write.
uint64_t ZeroChecksum(uint64_t n) {
  static const std::string zeros(1 << 20, '\0');
  Checksummer c;
  while (n > 0) {
    size_t k = static_cast<size_t>(std::min<uint64_t>(n, zeros.size()));
    c.Update(zeros.data(), k);
    n -= k;
  }
  return c.Digest();
}

// Serializes a control message. Strings may hold bytes that are not UTF-8 — an error message
// quoting a peer's bytes, a name from a file — which become U+FFFD instead of an exception.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

template <typename T>
T Get(const char* p) {
  return DecodeFixed<T>(reinterpret_cast<const uint8_t*>(p));
}

}  // namespace

std::string EncodeHello(const Hello& m) {
  json j = {{"protocol", m.protocol},
            {"volume", m.volume},
            {"volume_id", journal::IdToHex(m.volume_id)},
            {"history_id", journal::HistoryIdToHex(m.history_id)},
            {"volume_size", m.volume_size},
            {"block_size", m.block_size},
            {"source_node", m.source_node},
            {"source_first_seq", m.source_first_seq},
            {"source_last_seq", m.source_last_seq},
            {"codecs", m.codecs},
            {"initial_sync", m.initial_sync}};
  if (m.retention_seconds > 0) j["retention_seconds"] = m.retention_seconds;
  return Dump(j);
}

Result<Hello> DecodeHello(std::string_view payload) {
  return DecodeJson<Hello>("HELLO", payload, [](const json& j) -> Result<Hello> {
    Hello m;
    m.protocol = Integer<int>(j, "protocol");
    m.volume = j.at("volume").get<std::string>();
    if (!journal::IdFromHex(j.at("volume_id").get<std::string>(), &m.volume_id)) {
      return Corrupt("HELLO: volume_id is not 32 hex digits");
    }
    if (!journal::HistoryIdFromHex(j.at("history_id").get<std::string>(), &m.history_id)) {
      return Corrupt("HELLO: history_id is not 1 to 16 hex digits");
    }
    m.volume_size = Integer<uint64_t>(j, "volume_size");
    m.block_size = Integer<uint32_t>(j, "block_size");
    m.source_node = j.value("source_node", std::string());
    m.source_first_seq = Integer<uint64_t>(j, "source_first_seq");
    m.source_last_seq = Integer<uint64_t>(j, "source_last_seq");
    m.codecs = j.value("codecs", std::vector<std::string>{});
    m.initial_sync = j.value("initial_sync", false);
    if (j.contains("retention_seconds")) {
      m.retention_seconds = Integer<int64_t>(j, "retention_seconds");
      if (m.retention_seconds < 1) return Corrupt("HELLO: retention_seconds must be positive");
    }
    return m;
  });
}

json SeedChangesToJson(const SeedChanges& m) {
  return {{"volume_id", m.volume_id}, {"history_id", m.history_id}, {"from_seq", m.from_seq},
          {"block_size", m.block_size}, {"runs", journal::BlockRunsToJson(m.runs)}};
}

Result<SeedChanges> SeedChangesFromJson(const json& j) {
  try {
    SeedChanges m;
    m.volume_id = j.at("volume_id").get<std::string>();
    m.history_id = j.at("history_id").get<std::string>();
    m.from_seq = Integer<uint64_t>(j, "from_seq");
    m.block_size = Integer<uint32_t>(j, "block_size");
    ASSIGN_OR_RETURN(m.runs, journal::BlockRunsFromJson(j.at("runs"), 0, "seed changes"));
    if (m.block_size == 0) return InvalidArgument("seed changes: block_size 0");
    return m;
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("seed changes: ") + e.what());
  }
}

std::string EncodeWelcome(const Welcome& m) {
  json sync = {{"needed", m.sync_needed}, {"offset", m.sync_offset}, {"seeded", m.sync_seeded}};
  if (m.seed) sync["seed"] = SeedChangesToJson(*m.seed);
  json j = {{"protocol", m.protocol},
            {"resume_from", m.resume_from},
            {"codec", m.codec},
            {"initial_sync", std::move(sync)},
            {"resync_open", m.resync_open}};
  if (m.sync_frame_checksums) j["sync_frame_checksums"] = true;
  return Dump(j);
}

Result<Welcome> DecodeWelcome(std::string_view payload) {
  return DecodeJson<Welcome>("WELCOME", payload, [](const json& j) -> Result<Welcome> {
    Welcome m;
    m.protocol = Integer<int>(j, "protocol");
    m.resume_from = Integer<uint64_t>(j, "resume_from");
    m.codec = j.at("codec").get<std::string>();
    const json& s = j.at("initial_sync");
    m.sync_needed = s.at("needed").get<bool>();
    m.sync_offset = Integer<uint64_t>(s, "offset");
    m.sync_seeded = s.contains("seeded") && s.at("seeded").get<bool>();
    m.resync_open = j.contains("resync_open") ? Integer<uint64_t>(j, "resync_open") : 0;
    m.sync_frame_checksums = j.value("sync_frame_checksums", false);
    if (s.contains("seed")) {
      ASSIGN_OR_RETURN(m.seed, SeedChangesFromJson(s.at("seed")));
    }
    return m;
  });
}

std::string EncodeRefuse(const Refuse& m) {
  return Dump(json{{"code", m.code}, {"message", m.message}});
}

Result<Refuse> DecodeRefuse(std::string_view payload) {
  return DecodeJson<Refuse>("REFUSE", payload, [](const json& j) -> Result<Refuse> {
    return Refuse{j.at("code").get<std::string>(), j.value("message", std::string())};
  });
}

std::string EncodeResyncBegin(const ResyncBegin& m) {
  return Dump(json{{"missing_from", m.missing_from}, {"resume_at", m.resume_at}});
}

Result<ResyncBegin> DecodeResyncBegin(std::string_view payload) {
  return DecodeJson<ResyncBegin>("RESYNC_BEGIN", payload, [](const json& j) -> Result<ResyncBegin> {
    ResyncBegin m{Integer<uint64_t>(j, "missing_from"), Integer<uint64_t>(j, "resume_at")};
    if (m.resume_at < m.missing_from) return Corrupt("RESYNC_BEGIN resumes before it starts");
    return m;
  });
}

std::string EncodeSyncDone(const SyncDone& m) {
  return Dump(json{{"consistent_from", m.consistent_from}});
}

Result<SyncDone> DecodeSyncDone(std::string_view payload) {
  return DecodeJson<SyncDone>("SYNC_DONE", payload, [](const json& j) -> Result<SyncDone> {
    return SyncDone{Integer<uint64_t>(j, "consistent_from")};
  });
}

std::string EncodeAck(const Ack& m) {
  std::string out;
  AppendFixed<uint64_t>(&out, m.durable_seq);
  AppendFixed<uint64_t>(&out, m.sync_offset);
  return out;
}

Result<Ack> DecodeAck(std::string_view payload) {
  if (payload.size() != 16) return Corrupt("ACK of " + std::to_string(payload.size()) + " bytes");
  return Ack{Get<uint64_t>(payload.data()), Get<uint64_t>(payload.data() + 8)};
}

void EncodeRecords(std::span<const journal::StoredRecord> records, std::string* out) {
  AppendFixed<uint32_t>(out, static_cast<uint32_t>(records.size()));
  AppendFixed<uint32_t>(out, 0);
  std::string body;
  for (const journal::StoredRecord& sr : records) {
    const journal::Record& r = sr.record;
    std::string_view payload;
    uint8_t flags = 0;
    if (r.type == journal::RecordType::kWrite) {
      if (IsAllZero(r.data)) {
        flags = 1;
      } else {
        payload = r.data;
      }
    } else if (r.type == journal::RecordType::kMarker) {
      body = journal::EncodeMarkerBody(r.marker);
      payload = body;
    }
    out->push_back(static_cast<char>(r.type));
    out->push_back(static_cast<char>(flags));
    out->append(6, '\0');
    AppendFixed<uint64_t>(out, r.seq);
    AppendFixed<uint64_t>(out, static_cast<uint64_t>(r.timestamp_ns));
    AppendFixed<uint64_t>(out, r.offset);
    AppendFixed<uint64_t>(out, r.length);
    AppendFixed<uint64_t>(out, sr.checksum);
    AppendFixed<uint32_t>(out, static_cast<uint32_t>(payload.size()));
    AppendFixed<uint32_t>(out, 0);
    out->append(payload);
  }
}

Result<std::vector<journal::Record>> DecodeRecords(std::string_view payload,
                                                   uint64_t expect_first_seq,
                                                   uint64_t volume_size, uint32_t block_size) {
  using journal::Record;
  using journal::RecordType;
  if (payload.size() < 8) return Corrupt("RECORDS batch cut short");
  const uint32_t count = Get<uint32_t>(payload.data());
  if (count == 0) return Corrupt("empty RECORDS batch");
  if (count > payload.size() / kWireRecordHeaderSize) {
    return Corrupt("RECORDS batch claims " + std::to_string(count) + " records");
  }
  std::vector<Record> out;
  out.reserve(count);
  size_t at = 8;
  for (uint32_t i = 0; i < count; ++i) {
    if (payload.size() - at < kWireRecordHeaderSize) return Corrupt("RECORDS record cut short");
    const char* p = payload.data() + at;
    const uint8_t type = static_cast<uint8_t>(p[0]);
    const uint8_t flags = static_cast<uint8_t>(p[1]);
    Record r;
    r.seq = Get<uint64_t>(p + 8);
    r.timestamp_ns = static_cast<int64_t>(Get<uint64_t>(p + 16));
    r.offset = Get<uint64_t>(p + 24);
    r.length = Get<uint64_t>(p + 32);
    const uint64_t checksum = Get<uint64_t>(p + 40);
    const uint32_t plen = Get<uint32_t>(p + 48);
    at += kWireRecordHeaderSize;
    const std::string where = "record seq " + std::to_string(r.seq) + ": ";
    if (r.seq != expect_first_seq + i) {
      return Corrupt(where + "expected seq " + std::to_string(expect_first_seq + i));
    }
    if (type < 1 || type > 4) return Corrupt(where + "unknown type " + std::to_string(type));
    r.type = static_cast<RecordType>(type);
    if (flags & ~1u || (flags && r.type != RecordType::kWrite)) return Corrupt(where + "bad flags");
    if (plen > payload.size() - at) return Corrupt(where + "payload cut short");
    std::string_view data(payload.data() + at, plen);
    at += plen;
    switch (r.type) {
      case RecordType::kWrite:
        if (flags) {
          // Its checksum is taken below, once the geometry has bounded the length it hashes.
          if (plen != 0) return Corrupt(where + "zero-flagged write carries data");
          r.type = RecordType::kZero;
        } else {
          if (plen != r.length) return Corrupt(where + "payload length differs from length");
          if (Checksum64(data) != checksum) return Corrupt(where + "checksum mismatch");
          r.data.assign(data);
        }
        break;
      case RecordType::kZero:
      case RecordType::kTrim:
        if (plen != 0) return Corrupt(where + "zero/trim record carries data");
        break;
      case RecordType::kMarker: {
        if (Checksum64(data) != checksum) return Corrupt(where + "checksum mismatch");
        auto m = journal::DecodeMarkerBody(data);
        if (!m.ok()) return Corrupt(where + std::string(m.status().message()));
        r.marker = std::move(*m);
        r.offset = r.length = 0;
        break;
      }
    }
    Status v = journal::ValidateRecord(r, volume_size, block_size);
    if (!v.ok()) return Corrupt(where + std::string(v.message()));
    if (flags && ZeroChecksum(r.length) != checksum) return Corrupt(where + "checksum mismatch");
    out.push_back(std::move(r));
  }
  if (at != payload.size()) return Corrupt("RECORDS batch has trailing bytes");
  return out;
}

namespace {
constexpr uint32_t kSyncExtentZero = 1;          // no data: the range reads as zeros
constexpr uint32_t kSyncExtentFrameChecked = 2;  // checksum 0: the frame's covers the data
}  // namespace

void EncodeSyncDataPieces(const SyncData& m, std::string* headers,
                          std::vector<std::string_view>* pieces, SyncChecksums sums) {
  headers->clear();
  headers->reserve(24 + m.extents.size() * kSyncExtentHeaderSize);  // views stay valid
  pieces->clear();
  AppendFixed<uint32_t>(headers, static_cast<uint32_t>(m.extents.size()));
  AppendFixed<uint32_t>(headers, 0);
  AppendFixed<uint64_t>(headers, m.scanned_to);
  AppendFixed<uint64_t>(headers, m.total_bytes);
  size_t from = 0;  // headers not yet in a piece
  auto cut = [&] {
    if (headers->size() > from) pieces->push_back(std::string_view(*headers).substr(from));
    from = headers->size();
  };
  for (const SyncExtent& e : m.extents) {
    AppendFixed<uint64_t>(headers, e.offset);
    if (e.zero_length) {
      AppendFixed<uint32_t>(headers, e.zero_length);
      AppendFixed<uint32_t>(headers, kSyncExtentZero);
      AppendFixed<uint64_t>(headers, 0);
      continue;
    }
    AppendFixed<uint32_t>(headers, static_cast<uint32_t>(e.data.size()));
    if (sums == SyncChecksums::kFrame) {
      AppendFixed<uint32_t>(headers, kSyncExtentFrameChecked);
      AppendFixed<uint64_t>(headers, 0);
    } else {
      AppendFixed<uint32_t>(headers, 0);
      AppendFixed<uint64_t>(headers, Checksum64(e.data));
    }
    cut();
    pieces->push_back(e.data);
  }
  cut();
}

void EncodeSyncData(const SyncData& m, std::string* out) {
  std::string headers;
  std::vector<std::string_view> pieces;
  EncodeSyncDataPieces(m, &headers, &pieces);
  size_t bytes = 0;
  for (std::string_view p : pieces) bytes += p.size();
  out->reserve(out->size() + bytes);
  for (std::string_view p : pieces) out->append(p);
}

Result<SyncData> DecodeSyncData(std::string_view payload, uint64_t volume_size,
                                uint32_t block_size, bool frame_checked) {
  if (payload.size() < 24) return Corrupt("SYNC_DATA cut short");
  SyncData m;
  const uint32_t count = Get<uint32_t>(payload.data());
  m.scanned_to = Get<uint64_t>(payload.data() + 8);
  m.total_bytes = Get<uint64_t>(payload.data() + 16);
  if (m.scanned_to > volume_size) return Corrupt("SYNC_DATA scanned past the volume's end");
  if (count > payload.size() / kSyncExtentHeaderSize) return Corrupt("SYNC_DATA extent count");
  size_t at = 24;
  uint64_t prev_end = 0;
  for (uint32_t i = 0; i < count; ++i) {
    if (payload.size() - at < kSyncExtentHeaderSize) return Corrupt("SYNC_DATA extent cut short");
    const char* p = payload.data() + at;
    SyncExtent e;
    e.offset = Get<uint64_t>(p);
    const uint32_t len = Get<uint32_t>(p + 8);
    const uint32_t flags = Get<uint32_t>(p + 12);
    const uint64_t checksum = Get<uint64_t>(p + 16);
    at += kSyncExtentHeaderSize;
    if (flags != 0 && flags != kSyncExtentZero && flags != kSyncExtentFrameChecked) {
      return Corrupt("SYNC_DATA extent with unknown flags");
    }
    const bool zero = flags == kSyncExtentZero;
    const bool by_frame = flags == kSyncExtentFrameChecked;
    if ((zero || by_frame) && checksum != 0) {
      return Corrupt("SYNC_DATA extent with both a flag and a checksum");
    }
    if (by_frame && !frame_checked) {
      return Corrupt("SYNC_DATA extent without a checksum in a compressed frame");
    }
    if (!zero && len > payload.size() - at) return Corrupt("SYNC_DATA extent data cut short");
    if (e.offset % block_size || len % block_size || len == 0 || e.offset > volume_size ||
        len > volume_size - e.offset || e.offset < prev_end || e.offset + len > m.scanned_to) {
      return Corrupt("SYNC_DATA extent at " + std::to_string(e.offset) + " of " +
                     std::to_string(len) + " bytes is misplaced");
    }
    prev_end = e.offset + len;
    if (zero) {
      e.zero_length = len;
      m.extents.push_back(std::move(e));
      continue;
    }
    std::string_view data(payload.data() + at, len);
    if (!by_frame && Checksum64(data) != checksum) {
      return Corrupt("SYNC_DATA extent at " + std::to_string(e.offset) + ": checksum mismatch");
    }
    e.data = data;
    at += len;
    m.extents.push_back(std::move(e));
  }
  if (at != payload.size()) return Corrupt("SYNC_DATA has trailing bytes");
  return m;
}

Digest128 DigestOf(std::string_view data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  return {h.low64, h.high64};
}

void EncodeDigestRequest(const DigestRequest& m, std::string* out) {
  AppendFixed<uint32_t>(out, static_cast<uint32_t>(m.ranges.size()));
  AppendFixed<uint32_t>(out, m.granularity);
  for (const DigestRange& r : m.ranges) {
    AppendFixed<uint64_t>(out, r.offset);
    AppendFixed<uint64_t>(out, r.length);
  }
}

Result<DigestRequest> DecodeDigestRequest(std::string_view payload, uint64_t volume_size,
                                          uint32_t block_size) {
  if (payload.size() < 8) return Corrupt("DIGEST_REQUEST cut short");
  DigestRequest m;
  const uint32_t count = Get<uint32_t>(payload.data());
  m.granularity = Get<uint32_t>(payload.data() + 4);
  if (payload.size() != 8 + uint64_t{count} * 16) return Corrupt("DIGEST_REQUEST length");
  if (m.granularity < block_size || m.granularity % block_size || m.granularity > (64u << 20)) {
    return Corrupt("DIGEST_REQUEST granularity " + std::to_string(m.granularity));
  }
  uint64_t granules = 0;
  for (uint32_t i = 0; i < count; ++i) {
    DigestRange r{Get<uint64_t>(payload.data() + 8 + i * 16), Get<uint64_t>(payload.data() + 16 + i * 16)};
    if (r.offset % block_size || r.length == 0 || r.offset > volume_size ||
        r.length > volume_size - r.offset) {
      return Corrupt("DIGEST_REQUEST range outside the volume");
    }
    granules += (r.length + m.granularity - 1) / m.granularity;
    m.ranges.push_back(r);
  }
  if (granules > (1u << 20)) return Corrupt("DIGEST_REQUEST asks for too many digests");
  return m;
}

void EncodeDigests(const Digests& m, std::string* out) {
  AppendFixed<uint32_t>(out, static_cast<uint32_t>(m.ranges.size()));
  AppendFixed<uint32_t>(out, m.granularity);
  for (const DigestRange& r : m.ranges) {
    AppendFixed<uint64_t>(out, r.offset);
    AppendFixed<uint64_t>(out, r.length);
  }
  for (const Digest128& d : m.digests) {
    AppendFixed<uint64_t>(out, d.low);
    AppendFixed<uint64_t>(out, d.high);
  }
}

Result<Digests> DecodeDigests(std::string_view payload) {
  if (payload.size() < 8) return Corrupt("DIGESTS cut short");
  Digests m;
  const uint32_t count = Get<uint32_t>(payload.data());
  m.granularity = Get<uint32_t>(payload.data() + 4);
  if (m.granularity == 0 || count > payload.size() / 16) return Corrupt("DIGESTS header");
  size_t at = 8;
  uint64_t granules = 0;
  for (uint32_t i = 0; i < count; ++i) {
    DigestRange r{Get<uint64_t>(payload.data() + at), Get<uint64_t>(payload.data() + at + 8)};
    at += 16;
    granules += (r.length + m.granularity - 1) / m.granularity;
    if (granules > (1u << 20)) return Corrupt("DIGESTS holds too many digests");
    m.ranges.push_back(r);
  }
  if (payload.size() - at != granules * 16) return Corrupt("DIGESTS length");
  for (uint64_t i = 0; i < granules; ++i, at += 16) {
    m.digests.push_back({Get<uint64_t>(payload.data() + at), Get<uint64_t>(payload.data() + at + 8)});
  }
  return m;
}

}  // namespace ferry::link
