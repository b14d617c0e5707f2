// Link message codecs: round trips, and one regression test per bug the fuzzer found.
#include "link/messages.h"

#include <gtest/gtest.h>

#include <cstring>

#include "base/checksum.h"
#include "base/coding.h"
#include "link/frame.h"
#include "link/link_test_util.h"

namespace ferry::link {
namespace {

using e2e::BufferStream;

Hello SomeHello() {
  Hello h;
  h.volume = "disk0";
  h.volume_id[0] = 1;
  h.history_id = 0xabcdef;
  h.volume_size = 1 << 20;
  h.block_size = 4096;
  h.source_first_seq = 1;
  h.source_last_seq = 9;
  h.codecs = {"zstd"};
  return h;
}

TEST(LinkMessages, HelloCarriesTheRetentionOnlyWhenSaid) {
  Hello said = SomeHello();
  said.retention_seconds = 3600;
  auto h = DecodeHello(EncodeHello(said));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->retention_seconds, 3600);
  const std::string unsaid = EncodeHello(SomeHello());
  EXPECT_EQ(unsaid.find("retention"), std::string::npos);
  h = DecodeHello(unsaid);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->retention_seconds, 0);
  for (const char* bad : {"0", "-5", "1.5", "\"1d\""}) {
    std::string text = EncodeHello(SomeHello());
    text.insert(text.rfind('}'), std::string(",\"retention_seconds\":") + bad);
    auto r = DecodeHello(text);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("retention_seconds"), std::string::npos) << r.status().ToString();
  }
}

TEST(LinkMessages, HelloWelcomeAndAckRoundTrip) {
  auto h = DecodeHello(EncodeHello(SomeHello()));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->history_id, 0xabcdefu);
  EXPECT_EQ(h->volume_id[0], 1);
  Welcome w;
  w.resume_from = 10;
  w.sync_needed = true;
  w.sync_seeded = true;
  w.resync_open = 7;
  auto w2 = DecodeWelcome(EncodeWelcome(w));
  ASSERT_TRUE(w2.ok());
  EXPECT_EQ(w2->resume_from, 10u);
  EXPECT_TRUE(w2->sync_seeded);
  EXPECT_EQ(w2->resync_open, 7u);
  auto a = DecodeAck(EncodeAck({5, kNoSync}));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->sync_offset, kNoSync);
}

TEST(LinkMessages, WelcomeCarriesTheSeedsKnownChanges) {
  Welcome w;
  w.resume_from = 3;
  w.sync_needed = w.sync_seeded = true;
  EXPECT_FALSE(DecodeWelcome(EncodeWelcome(w))->seed.has_value());
  SeedChanges c;
  c.volume_id = std::string(32, 'a');
  c.history_id = "00000000000000ff";
  c.from_seq = 41;
  c.block_size = 4096;
  c.runs = {{0, 2}, {9, 1}};
  w.seed = c;
  auto got = DecodeWelcome(EncodeWelcome(w));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->seed.has_value());
  EXPECT_EQ(got->seed->volume_id, c.volume_id);
  EXPECT_EQ(got->seed->history_id, c.history_id);
  EXPECT_EQ(got->seed->from_seq, 41u);
  EXPECT_EQ(got->seed->runs, c.runs);
  // Runs that overlap, go backwards or are empty are refused.
  for (auto runs : {std::vector<std::pair<uint64_t, uint64_t>>{{0, 2}, {1, 1}},
                    std::vector<std::pair<uint64_t, uint64_t>>{{5, 1}, {0, 1}},
                    std::vector<std::pair<uint64_t, uint64_t>>{{5, 0}}}) {
    nlohmann::json j = SeedChangesToJson(c);
    j["runs"] = nlohmann::json::array();
    for (auto [f, n] : runs) j["runs"].push_back({f, n});
    EXPECT_FALSE(SeedChangesFromJson(j).ok()) << j.dump();
  }
}

// The fuzzer found that a HELLO with bytes that are not UTF-8 made the refusal's encoder
// throw (the parse error quotes them), which ended the node.
TEST(LinkMessages, HelloWithBadUtf8IsRefusedNotThrown) {
  std::string bad = "{\"volume\": \"\xff\xfe\"";
  auto h = DecodeHello(bad);
  ASSERT_EQ(h.status().code(), Code::kDataLoss);
  std::string refuse = EncodeRefuse({"corrupt_frame", std::string(h.status().message()) + "\xff"});
  EXPECT_TRUE(DecodeRefuse(refuse).ok());
}

// The fuzzer found that integer fields accepted floats (an undefined cast for 1e300),
// booleans and negative numbers.
TEST(LinkMessages, JsonIntegerFieldRejectsFloatBoolNegative) {
  for (const char* v : {"1e300", "true", "-1", "1.5", "\"7\"", "4294967296"}) {
    std::string text = EncodeHello(SomeHello());
    const std::string key = "\"block_size\":4096";
    auto at = text.find(key);
    ASSERT_NE(at, std::string::npos) << text;
    text.replace(at, key.size(), std::string("\"block_size\":") + v);
    EXPECT_EQ(DecodeHello(text).status().code(), Code::kDataLoss) << v;
  }
}

// The fuzzer found that a zero-flagged write with a huge length was hashed (as zeros) before
// its length was checked: a few bytes kept the receiver busy for minutes.
TEST(LinkMessages, ZeroFlaggedWriteWithHugeLengthIsRefusedQuickly) {
  std::string p;
  AppendFixed<uint32_t>(&p, 1);
  AppendFixed<uint32_t>(&p, 0);
  p.push_back(1);  // write
  p.push_back(1);  // zero-flagged
  p.append(6, '\0');
  AppendFixed<uint64_t>(&p, 1);                 // seq
  AppendFixed<uint64_t>(&p, 0);                 // timestamp
  AppendFixed<uint64_t>(&p, 0);                 // offset
  AppendFixed<uint64_t>(&p, uint64_t{1} << 62);  // length
  AppendFixed<uint64_t>(&p, 0);                 // checksum
  AppendFixed<uint32_t>(&p, 0);
  AppendFixed<uint32_t>(&p, 0);
  // Before the fix this call hashed 2^62 zero bytes (and the test hit its ctest timeout).
  auto r = DecodeRecords(p, 1, 1 << 20, 4096);
  EXPECT_EQ(r.status().code(), Code::kDataLoss);
}

TEST(LinkMessages, DigestsRoundTripAndRefuseMismatchedCounts) {
  Digests d;
  d.granularity = 4096;
  d.ranges = {{0, 8192}, {65536, 4096}};
  d.digests = {DigestOf("a"), DigestOf("b"), DigestOf("c")};
  std::string payload;
  EncodeDigests(d, &payload);
  auto back = DecodeDigests(payload);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->digests.size(), 3u);
  EXPECT_TRUE(back->digests[2] == DigestOf("c"));
  payload.resize(payload.size() - 16);
  EXPECT_EQ(DecodeDigests(payload).status().code(), Code::kDataLoss);
  DigestRequest q{4096, {{0, 1 << 20}}};
  std::string qp;
  EncodeDigestRequest(q, &qp);
  EXPECT_TRUE(DecodeDigestRequest(qp, 1 << 20, 4096).ok());
  EXPECT_EQ(DecodeDigestRequest(qp, 1 << 19, 4096).status().code(), Code::kDataLoss);  // past the end
}

TEST(LinkMessages, SyncDataZeroExtentsCarryNoData) {
  SyncData d;
  d.scanned_to = 1 << 20;
  SyncExtent z;
  z.offset = 4096;
  z.zero_length = 8192;
  const std::string xs(4096, 'x');
  SyncExtent w;
  w.offset = 65536;
  w.data = xs;
  d.extents = {z, w};
  std::string p;
  EncodeSyncData(d, &p);
  auto back = DecodeSyncData(p, 1 << 20, 4096);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->extents[0].zero_length, 8192u);
  EXPECT_TRUE(back->extents[0].data.empty());
  EXPECT_EQ(back->extents[1].data, w.data);
}


// SYNC_DATA sent in pieces (the extents' data from where it lies) is the same frame, byte
// for byte, as the gathered payload, with or without a codec, and reads back as the message.
TEST(LinkMessages, SyncDataInPiecesIsTheSameFrame) {
  const std::string a(64 << 10, 'a'), b(4096, 'b');
  SyncData d;
  d.scanned_to = 4 << 20;
  d.total_bytes = 8 << 20;
  d.extents = {SyncExtent{0, a}, SyncExtent{1 << 20, {}, 8192}, SyncExtent{2 << 20, b}};
  std::string gathered;
  EncodeSyncData(d, &gathered);
  std::string headers;
  std::vector<std::string_view> pieces;
  EncodeSyncDataPieces(d, &headers, &pieces);
  ASSERT_EQ(pieces.size(), 4u);  // fixed parts, a, the zero extent's and b's headers, b
  EXPECT_EQ(pieces[1].data(), a.data());  // not copied
  EXPECT_EQ(pieces[3].data(), b.data());
  for (Codec codec : {Codec::kNone, Codec::kZstd}) {
    BufferStream whole, split;
    FrameWriter w1(&whole, codec), w2(&split, codec);
    auto n1 = w1.Write(MessageType::kSyncData, gathered);
    auto n2 = w2.WriteV(MessageType::kSyncData, pieces);
    ASSERT_TRUE(n1.ok() && n2.ok());
    EXPECT_EQ(*n1, *n2);
    EXPECT_EQ(whole.bytes, split.bytes) << CodecName(codec);
    FrameReader reader(&split);
    auto f = reader.Read();
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_EQ(f->type, MessageType::kSyncData);
    auto back = DecodeSyncData(f->payload, 8 << 20, 4096);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_EQ(back->extents.size(), 3u);
    EXPECT_EQ(back->extents[0].data, a);
    EXPECT_EQ(back->extents[1].zero_length, 8192u);
    EXPECT_EQ(back->extents[2].data, b);
  }
}

// With SyncChecksums::kFrame the extents carry no checksum of their own (flag 2, checksum 0):
// they are accepted from a frame stored uncompressed, whose checksum covers their bytes, and
// refused from a compressed one; damage to their data on the way is caught by the frame.
TEST(LinkMessages, SyncDataCheckedByTheFrameOnlyInAnUncompressedFrame) {
  const std::string a(64 << 10, 'a');
  SyncData d;
  d.scanned_to = 4 << 20;
  d.extents = {SyncExtent{0, a}, SyncExtent{1 << 20, {}, 8192}};
  std::string headers;
  std::vector<std::string_view> pieces;
  EncodeSyncDataPieces(d, &headers, &pieces, SyncChecksums::kFrame);
  std::string payload;
  for (std::string_view p : pieces) payload.append(p);
  auto at = [&](size_t i) { return reinterpret_cast<const uint8_t*>(payload.data()) + i; };
  EXPECT_EQ(DecodeFixed<uint32_t>(at(24 + 12)), 2u);  // the data extent's flags
  EXPECT_EQ(DecodeFixed<uint64_t>(at(24 + 16)), 0u);  // and its checksum

  BufferStream plain;
  ASSERT_TRUE(FrameWriter(&plain, Codec::kNone).WriteV(MessageType::kSyncData, pieces).ok());
  std::string damaged = plain.bytes;
  FrameReader reader(&plain);
  auto f = reader.Read();
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_TRUE(f->raw_checked);
  auto back = DecodeSyncData(f->payload, 8 << 20, 4096, f->raw_checked);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->extents.size(), 2u);
  EXPECT_EQ(back->extents[0].data, a);
  EXPECT_EQ(back->extents[1].zero_length, 8192u);

  // Not covered by a frame's checksum of the raw bytes: refused.
  auto unchecked = DecodeSyncData(payload, 8 << 20, 4096, false);
  ASSERT_FALSE(unchecked.ok());
  EXPECT_NE(unchecked.status().message().find("without a checksum in a compressed frame"),
            std::string::npos) << unchecked.status().ToString();
  BufferStream zstd;
  ASSERT_TRUE(FrameWriter(&zstd, Codec::kZstd).Write(MessageType::kSyncData, payload).ok());
  FrameReader zreader(&zstd);
  auto z = zreader.Read();
  ASSERT_TRUE(z.ok()) << z.status().ToString();
  EXPECT_FALSE(z->raw_checked);
  EXPECT_FALSE(DecodeSyncData(z->payload, 8 << 20, 4096, z->raw_checked).ok());

  // A bit of the data flipped after the frame was made: the frame's checksum catches it.
  damaged[kFrameHeaderSize + 24 + kSyncExtentHeaderSize + 100] ^= 1;
  BufferStream wire;
  wire.bytes = damaged;
  auto bad = FrameReader(&wire).Read();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kDataLoss) << bad.status().ToString();

  // Both flags, or the flag with a checksum, are refused.
  std::string both = payload;
  both[24 + 12] = 3;
  EXPECT_FALSE(DecodeSyncData(both, 8 << 20, 4096, true).ok());
  std::string summed = payload;
  summed[24 + 16] = 1;
  EXPECT_FALSE(DecodeSyncData(summed, 8 << 20, 4096, true).ok());
}

TEST(LinkMessages, WelcomeOffersFrameChecksumsOnlyWhenItSaysSo) {
  Welcome w;
  auto old = DecodeWelcome(EncodeWelcome(w));
  ASSERT_TRUE(old.ok());
  EXPECT_FALSE(old->sync_frame_checksums);
  EXPECT_EQ(EncodeWelcome(w).find("sync_frame_checksums"), std::string::npos);
  w.sync_frame_checksums = true;
  auto now = DecodeWelcome(EncodeWelcome(w));
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->sync_frame_checksums);
}

}  // namespace
}  // namespace ferry::link
