// Link messages (docs/protocols/link.md, "Messages"): the JSON control messages and the binary
// RECORDS, ACK and SYNC_DATA payloads. Pure encoding and decoding, no I/O; thread-safe.
//
// Decoders check everything a damaged or hostile peer could get wrong — layout, lengths,
// alignment, range, seq order, and each record's and extent's checksum — and return
// kDataLoss "corrupt frame: …" so the link resets without applying anything.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "journal/replica.h"

namespace ferry::link {

inline constexpr int kProtocolVersion = 1;
inline constexpr uint64_t kNoSync = UINT64_MAX;

struct Hello {
  int protocol = kProtocolVersion;
  std::string volume;  // the volume's name at the source
  journal::Id128 volume_id{};
  uint64_t history_id = 0;
  uint64_t volume_size = 0;
  uint32_t block_size = 0;
  std::string source_node;
  uint64_t source_first_seq = 0;
  uint64_t source_last_seq = 0;
  std::vector<std::string> codecs;
  bool initial_sync = false;
  // How long the target keeps the volume's recovery points (the protection's retention);
  // 0: not said (the target keeps its own default).
  int64_t retention_seconds = 0;
};
std::string EncodeHello(const Hello& m);
Result<Hello> DecodeHello(std::string_view payload);

// What a seeded target knows about its seed (docs/protocols/link.md, "Known changes"): the
// old disk it was seeded from was capture volume volume_id / history_id, and every block that
// old source wrote with seq >= from_seq is inside runs (more may be). from_seq 0: not known.
struct SeedChanges {
  std::string volume_id;   // 32 hex digits
  std::string history_id;  // hex
  uint64_t from_seq = 0;
  uint32_t block_size = 0;
  std::vector<std::pair<uint64_t, uint64_t>> runs;  // (first block, count), ascending
};
nlohmann::json SeedChangesToJson(const SeedChanges& m);
Result<SeedChanges> SeedChangesFromJson(const nlohmann::json& j);

struct Welcome {
  int protocol = kProtocolVersion;
  uint64_t resume_from = 0;
  std::string codec = "none";
  bool sync_needed = false;
  uint64_t sync_offset = 0;
  bool sync_seeded = false;  // the target's base holds an older version: compare digests first
  uint64_t resync_open = 0;  // missing_from of the target's open resync window, or 0
  std::optional<SeedChanges> seed;  // a seeded sync whose target knows its seed's changes
  // The target accepts SYNC_DATA extents checked by the frame's checksum alone
  // (SyncChecksums::kFrame). Absent (false) from targets older than it.
  bool sync_frame_checksums = false;
};
std::string EncodeWelcome(const Welcome& m);
Result<Welcome> DecodeWelcome(std::string_view payload);

// Refusal codes (docs/protocols/link.md, "Identity and resume").
struct Refuse {
  std::string code;
  std::string message;
};
std::string EncodeRefuse(const Refuse& m);
Result<Refuse> DecodeRefuse(std::string_view payload);

struct ResyncBegin {
  uint64_t missing_from = 0;
  uint64_t resume_at = 0;
};
std::string EncodeResyncBegin(const ResyncBegin& m);
Result<ResyncBegin> DecodeResyncBegin(std::string_view payload);

struct SyncDone {
  uint64_t consistent_from = 0;
};
std::string EncodeSyncDone(const SyncDone& m);
Result<SyncDone> DecodeSyncDone(std::string_view payload);

struct Ack {
  uint64_t durable_seq = 0;
  uint64_t sync_offset = kNoSync;
};
std::string EncodeAck(const Ack& m);
Result<Ack> DecodeAck(std::string_view payload);

// RECORDS. Writes whose data is all zeros travel without payload (flag bit 0).
inline constexpr size_t kWireRecordHeaderSize = 56;
void EncodeRecords(std::span<const journal::StoredRecord> records, std::string* out);
// Decodes a batch whose first seq must be expect_first_seq, checking each record against the
// volume's geometry and its checksum. Zero-flagged writes become zero records.
Result<std::vector<journal::Record>> DecodeRecords(std::string_view payload,
                                                   uint64_t expect_first_seq,
                                                   uint64_t volume_size, uint32_t block_size);

// SYNC_DATA.
// data views the buffer the source read (encoding) or the payload (decoding): it is valid
// as long as that buffer is, and nothing is copied.
struct SyncExtent {
  uint64_t offset = 0;
  std::string_view data;     // empty for a zero extent
  uint32_t zero_length = 0;  // > 0: this range reads as zeros (seeded sync), no data
};
struct SyncData {
  uint64_t scanned_to = 0;
  uint64_t total_bytes = 0;
  std::vector<SyncExtent> extents;
};
inline constexpr size_t kSyncExtentHeaderSize = 24;
// Where an extent's data is checksummed (link.md, "SYNC_DATA"): in the extent itself, or only
// by the frame's payload checksum, which the frame writer computes over the same buffer
// right after. kFrame is for a link whose target offered it in WELCOME and whose codec is
// none (so the frame's checksum covers the raw bytes); it saves a pass over the data at
// each end.
enum class SyncChecksums { kPerExtent, kFrame };
// Checksums are computed here, from the data as the source read it.
void EncodeSyncData(const SyncData& m, std::string* out);
// The same bytes as pieces, without copying the extents' data: *headers receives the fixed
// parts, and *pieces (cleared first) views into *headers and into m's extents, in order.
// Both must outlive the pieces' use.
void EncodeSyncDataPieces(const SyncData& m, std::string* headers,
                          std::vector<std::string_view>* pieces,
                          SyncChecksums sums = SyncChecksums::kPerExtent);
// frame_checked: the payload came in a frame stored uncompressed, whose checksum (already
// verified) covers every byte of it. Only then are extents without a checksum of their own
// accepted; elsewhere they make the frame corrupt.
Result<SyncData> DecodeSyncData(std::string_view payload, uint64_t volume_size,
                                uint32_t block_size, bool frame_checked = false);

// Seeded sync (the target's base starts as a copy of an older version of the volume): the
// source asks for digests of ranges of the target's base and sends only what differs.
// A digest is XXH3-128 of one granule (16 bytes, low 64 bits first).
struct DigestRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};
struct DigestRequest {
  uint32_t granularity = 0;
  std::vector<DigestRange> ranges;
};
void EncodeDigestRequest(const DigestRequest& m, std::string* out);
Result<DigestRequest> DecodeDigestRequest(std::string_view payload, uint64_t volume_size,
                                          uint32_t block_size);
struct Digest128 {
  uint64_t low = 0, high = 0;
  bool operator==(const Digest128&) const = default;
};
Digest128 DigestOf(std::string_view data);
struct Digests {
  uint32_t granularity = 0;
  std::vector<DigestRange> ranges;
  std::vector<Digest128> digests;  // every granule of every range, in order
};
void EncodeDigests(const Digests& m, std::string* out);
Result<Digests> DecodeDigests(std::string_view payload);

}  // namespace ferry::link
