// Corruption and fault tests of the replica engine: damaged segments and metadata give the
// exact errors of docs/formats/journal.md ("Reading, torn tails and bad checksums"), a torn
// tail is recovered, a full disk refuses appends without losing history, and an I/O error in
// the middle of an append loses nothing that was acknowledged.
//
// The files are damaged through the SimEnv's own Env interface (OpenFile + WriteAt /
// Truncate / RemoveFile), as a disk or an operator would.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "base/checksum.h"
#include "base/coding.h"
#include "env/sim_env.h"
#include "journal/block_runs.h"
#include "journal/manifest.h"
#include "journal/record.h"
#include "journal/replica.h"
#include "journal/segment.h"
#include "journal/view.h"

namespace ferry::journal {
namespace {

constexpr uint32_t kBs = 4096;
// 4 KiB writes are 4160-byte records: a 16 KiB target seals a segment every 4 records.
constexpr uint64_t kSegmentTarget = 16 * 1024;
constexpr int kPerSegment = 4;

// A stored record, as found by walking a segment file.
struct StoredRecord {
  uint64_t offset;  // of its header in the file
  uint64_t seq;
  RecordType type;
  uint32_t payload_length;
};

// The content of the write with seq `seq` in these tests.
std::string Content(uint64_t seq) { return std::string(kBs, static_cast<char>('A' + seq % 26)); }

class CorruptionTest : public ::testing::Test {
 protected:
  ReplicaOptions Opts() {
    ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    o.segment_target_bytes = kSegmentTarget;
    o.min_free_bytes = min_free_;
    return o;
  }

  Result<std::shared_ptr<Replica>> Open() { return Replica::Open(dir_, Opts()); }

  std::shared_ptr<Replica> MustOpen() {
    auto r = Open();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // A replica with n 4 KiB writes (seq i writes block i % 64 with Content(i)); `marker_at`
  // seqs are app-consistent markers instead. Closed on return.
  void Make(int n, std::vector<uint64_t> marker_at = {}) {
    CreateParams p;
    p.size = 64 * kBs;
    auto r = Replica::Create(dir_, p, Opts());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (uint64_t seq = 1; seq <= static_cast<uint64_t>(n); ++seq) {
      bool marker = std::find(marker_at.begin(), marker_at.end(), seq) != marker_at.end();
      auto res =
          marker
              ? (*r)->Append(Record::Marker(MarkerKind::kAppConsistent, "m" + std::to_string(seq)))
              : (*r)->Append(Record::Write((seq % 64) * kBs, Content(seq)));
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      ASSERT_EQ(*res, seq);
    }
  }

  std::string SegPath(uint64_t n) const { return dir_ + "/journal/" + SegmentFileName(n); }

  std::vector<uint64_t> Segments() {
    auto names = env_.ListDir(dir_ + "/journal");
    EXPECT_TRUE(names.ok());
    std::vector<uint64_t> out;
    for (const std::string& name : *names) {
      uint64_t n;
      if (ParseSegmentFileName(name, &n)) out.push_back(n);
    }
    return out;
  }

  std::string ReadAll(const std::string& path) {
    auto s = ReadFileToString(&env_, path);
    EXPECT_TRUE(s.ok()) << path << ": " << s.status().ToString();
    return s.ok() ? *s : "";
  }

  // Walks a segment's records by their length fields (no checksums checked).
  std::vector<StoredRecord> Records(uint64_t segment) {
    const std::string bytes = ReadAll(SegPath(segment));
    std::vector<StoredRecord> out;
    for (uint64_t off = kSegmentHeaderSize; off + kRecordHeaderSize <= bytes.size();) {
      auto p = reinterpret_cast<const uint8_t*>(bytes.data() + off);
      StoredRecord r{off, DecodeFixed<uint64_t>(p + 8), static_cast<RecordType>(p[4]),
                     DecodeFixed<uint32_t>(p + 40)};
      out.push_back(r);
      off += kRecordHeaderSize + r.payload_length;
    }
    return out;
  }

  void FlipBit(const std::string& path, uint64_t offset, int bit = 0) {
    auto f = env_.OpenFile(path, OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    char c;
    ASSERT_EQ(*(*f)->ReadAt(offset, 1, &c), 1u);
    c = static_cast<char>(c ^ (1 << bit));
    ASSERT_TRUE((*f)->WriteAt(offset, std::string_view(&c, 1)).ok());
  }

  void TruncateFile(const std::string& path, uint64_t size) {
    auto f = env_.OpenFile(path, OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE((*f)->Truncate(size).ok());
  }

  void AppendBytes(const std::string& path, std::string_view data) {
    auto f = env_.OpenFile(path, OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE((*f)->WriteAt(*(*f)->Size(), data).ok());
  }

  // Every write seq in [1, last] reads back at its own point.
  void ExpectHistory(const std::shared_ptr<Replica>& r, uint64_t last) {
    ASSERT_EQ(r->Stats().last_seq, last);
    for (uint64_t seq = 1; seq <= last; ++seq) {
      auto v = r->OpenView(seq);
      ASSERT_TRUE(v.ok()) << seq << ": " << v.status().ToString();
      std::string got(kBs, '?');
      ASSERT_TRUE((*v)->Read((seq % 64) * kBs, kBs, got.data()).ok());
      ASSERT_TRUE(got == Content(seq)) << "seq " << seq << " does not read back";
    }
  }

  // Opening fails with DataLoss naming exactly this place.
  void ExpectDataLossAt(uint64_t segment, uint64_t offset, std::string_view what = "") {
    auto r = Open();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
    const std::string where =
        "segment " + std::to_string(segment) + " offset " + std::to_string(offset) + ":";
    EXPECT_NE(r.status().message().find(where), std::string_view::npos)
        << r.status().ToString() << " does not name " << where;
    if (!what.empty()) {
      EXPECT_NE(r.status().message().find(what), std::string_view::npos)
          << r.status().ToString() << " does not say " << what;
    }
  }

  SimEnv env_;
  ManualClock clock_;
  std::string dir_ = "/r";
  uint64_t min_free_ = 0;
};

// History ids are written as 16 hex digits; a bad one in a manifest or a request is refused,
// never taken for another id.
TEST(HistoryIdHexTest, RoundTripsAndRefusesWhatIsNotAnId) {
  for (uint64_t id : {uint64_t{0}, uint64_t{1}, uint64_t{0x0123456789abcdef}, ~uint64_t{0}}) {
    const std::string hex = HistoryIdToHex(id);
    EXPECT_EQ(hex.size(), 16u);
    uint64_t back = 7;
    ASSERT_TRUE(HistoryIdFromHex(hex, &back)) << hex;
    EXPECT_EQ(back, id);
  }
  uint64_t v = 0;
  EXPECT_TRUE(HistoryIdFromHex("ABC", &v));
  EXPECT_EQ(v, 0xabcu);
  for (const char* bad : {"", "12345678901234567", "12g4", " 12", "-1", "0x12"}) {
    v = 42;
    EXPECT_FALSE(HistoryIdFromHex(bad, &v)) << bad;
    EXPECT_EQ(v, 42u) << bad;
  }
}

// Runs of blocks as DIVERGED files and seed changes store them: what is not ascending,
// disjoint runs inside the volume is refused, naming the file.
TEST(BlockRunsJsonTest, RoundTripsAndRefusesBadRuns) {
  const std::vector<BlockRun> runs = {{0, 2}, {5, 1}, {9, 7}};
  auto back = BlockRunsFromJson(BlockRunsToJson(runs), 16, "DIVERGED");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, runs);
  EXPECT_TRUE(BlockRunsFromJson(nlohmann::json::array(), 16, "x")->empty());
  for (const char* bad : {R"([[5,1],[0,2]])", R"([[0,3],[2,1]])", R"([[0,0]])", R"([[10,7]])",
                          R"([[1]])", R"({"a":1})", R"([["1",2]])"}) {
    auto r = BlockRunsFromJson(nlohmann::json::parse(bad), 16, "DIVERGED");
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("DIVERGED"), std::string::npos) << r.status().ToString();
  }
}

TEST_F(CorruptionTest, SegmentsHoldFourRecordsEach) {
  Make(13);
  EXPECT_EQ(Segments(), (std::vector<uint64_t>{1, 2, 3, 4}));
  ASSERT_EQ(Records(1).size(), 4u);
  EXPECT_EQ(Records(2)[0].seq, 5u);
  EXPECT_EQ(Records(4).size(), 1u);
}

TEST_F(CorruptionTest, HeaderBitFlipInSealedSegmentIsDataLossNamingSegmentAndOffset) {
  Make(13);
  const StoredRecord rec = Records(2)[1];  // seq 6, inside a sealed segment
  // Every byte of the header is covered: the magic by itself, the rest by the checksum.
  for (uint64_t byte : {0, 4, 8, 16, 24, 32, 40, 44, 48, 56, 63}) {
    SCOPED_TRACE("header byte " + std::to_string(byte));
    FlipBit(SegPath(2), rec.offset + byte, static_cast<int>(byte % 8));
    ExpectDataLossAt(2, rec.offset,
                     byte < 4 ? "bad record magic" : "record header checksum mismatch");
    FlipBit(SegPath(2), rec.offset + byte, static_cast<int>(byte % 8));  // repair
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    ExpectHistory(r, 13);
  }
}

TEST_F(CorruptionTest, MarkerBodyBitFlipInSealedSegmentIsDataLoss) {
  Make(13, {3});
  const StoredRecord rec = Records(1)[2];
  ASSERT_EQ(rec.type, RecordType::kMarker);
  FlipBit(SegPath(1), rec.offset + kRecordHeaderSize + 41);  // in the label
  ExpectDataLossAt(1, rec.offset, "payload checksum mismatch");
}

// Numbers this build does not know (a newer version's record type, marker kind or segment
// format) are refused naming the number, never guessed at: here with their checksums right,
// as a newer writer would have made them.
TEST_F(CorruptionTest, UnknownNumbersAreDataLossNamingThem) {
  Make(13, {6});
  const std::string good = ReadAll(SegPath(2));
  auto rewrite = [&](auto&& change) {
    std::string bytes = good;
    change(reinterpret_cast<uint8_t*>(bytes.data()));
    auto f = env_.OpenFile(SegPath(2), OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAt(0, bytes).ok());
  };
  const StoredRecord write = Records(2)[0], marker = Records(2)[1];
  ASSERT_EQ(marker.type, RecordType::kMarker);
  auto reseal = [](uint8_t* header) { EncodeFixed<uint64_t>(header + 56, Checksum64(header, 56)); };

  rewrite([&](uint8_t* p) {
    p[write.offset + 4] = 9;
    reseal(p + write.offset);
  });
  ExpectDataLossAt(2, write.offset, "unknown record type 9");

  rewrite([&](uint8_t* p) {
    uint8_t* body = p + marker.offset + kRecordHeaderSize;
    body[0] = 7;
    EncodeFixed<uint64_t>(p + marker.offset + 48, Checksum64(body, marker.payload_length));
    reseal(p + marker.offset);
  });
  ExpectDataLossAt(2, marker.offset, "unknown marker kind 7");

  rewrite([&](uint8_t* p) {
    EncodeFixed<uint32_t>(p + 8, 2);
    reseal(p);
  });
  ExpectDataLossAt(2, 0, "segment format version 2 is not supported (this build reads version 1)");

  rewrite([](uint8_t*) {});
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->Stats().last_seq, 13u);
}

// The same at the very end of the journal: a whole header or marker body that says what this
// build cannot read is no torn tail, and is not cut off.
TEST_F(CorruptionTest, UnknownNumbersInTheLastRecordAreDataLossNotATornTail) {
  Make(13, {13});
  const StoredRecord last = Records(4).back();
  ASSERT_EQ(last.type, RecordType::kMarker);
  const std::string good = ReadAll(SegPath(4));
  auto put = [&](const std::string& bytes) {
    auto f = env_.OpenFile(SegPath(4), OpenMode::kReadWrite);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAt(0, bytes).ok());
  };
  std::string bytes = good;
  auto* p = reinterpret_cast<uint8_t*>(bytes.data()) + last.offset;
  p[kRecordHeaderSize] = 7;  // the marker's kind
  EncodeFixed<uint64_t>(p + 48, Checksum64(p + kRecordHeaderSize, last.payload_length));
  EncodeFixed<uint64_t>(p + 56, Checksum64(p, 56));
  put(bytes);
  ExpectDataLossAt(4, last.offset, "unknown marker kind 7");
  bytes = good;
  p = reinterpret_cast<uint8_t*>(bytes.data()) + last.offset;
  p[4] = 9;  // the record's type
  EncodeFixed<uint64_t>(p + 56, Checksum64(p, 56));
  put(bytes);
  ExpectDataLossAt(4, last.offset, "unknown record type 9");
  EXPECT_EQ(ReadAll(SegPath(4)), bytes) << "the segment was cut";
  put(good);
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->Stats().last_seq, 13u);
}

TEST_F(CorruptionTest, PayloadBitFlipInSealedSegmentOpensAndVerifyListsIt) {
  Make(13);
  const StoredRecord rec = Records(1)[1];  // seq 2
  FlipBit(SegPath(1), rec.offset + kRecordHeaderSize + 1000, 3);
  // Open checks only the last segment's payloads: this is found by Verify.
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->Stats().last_seq, 13u);
  auto problems = r->Verify();
  ASSERT_TRUE(problems.ok()) << problems.status().ToString();
  ASSERT_EQ(problems->size(), 1u);
  EXPECT_NE((*problems)[0].find("segment 1 offset " + std::to_string(rec.offset) + ":"),
            std::string::npos)
      << (*problems)[0];
  EXPECT_NE((*problems)[0].find("payload checksum mismatch"), std::string::npos) << (*problems)[0];
}

TEST_F(CorruptionTest, VerifyListsEveryProblem) {
  Make(13);
  const std::vector<StoredRecord> one = Records(1), three = Records(3);
  FlipBit(SegPath(1), one[0].offset + kRecordHeaderSize + 7);
  FlipBit(SegPath(1), one[2].offset + kRecordHeaderSize + 7);
  FlipBit(SegPath(3), three[3].offset + kRecordHeaderSize + 4095);
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  auto problems = r->Verify();
  ASSERT_TRUE(problems.ok()) << problems.status().ToString();
  std::vector<std::string> want = {"segment 1 offset " + std::to_string(one[0].offset) + ":",
                                   "segment 1 offset " + std::to_string(one[2].offset) + ":",
                                   "segment 3 offset " + std::to_string(three[3].offset) + ":"};
  ASSERT_EQ(problems->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NE((*problems)[i].find(want[i]), std::string::npos) << (*problems)[i];
  }
}

TEST_F(CorruptionTest, VerifyOfACleanReplicaFindsNothing) {
  Make(13, {2, 7});
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  auto problems = r->Verify();
  ASSERT_TRUE(problems.ok());
  EXPECT_TRUE(problems->empty()) << (*problems)[0];
}

TEST_F(CorruptionTest, CorruptionInLastSegmentFollowedByValidRecordIsDataLoss) {
  Make(15);  // segment 4 holds seqs 13..15
  const std::vector<StoredRecord> recs = Records(4);
  ASSERT_EQ(recs.size(), 3u);
  // A header flip.
  FlipBit(SegPath(4), recs[1].offset + 20);
  ExpectDataLossAt(4, recs[1].offset, "record header checksum mismatch");
  FlipBit(SegPath(4), recs[1].offset + 20);
  // A payload flip: the last segment's payloads are checked at open.
  FlipBit(SegPath(4), recs[0].offset + kRecordHeaderSize + 17);
  ExpectDataLossAt(4, recs[0].offset, "payload checksum mismatch");
}

TEST_F(CorruptionTest, TornTailMidRecordDropsOnlyThatRecordAndAppendsContinue) {
  Make(15);
  const StoredRecord last = Records(4).back();
  ASSERT_EQ(last.seq, 15u);
  // Cut inside the header, at its end, and inside the payload.
  for (uint64_t cut : {uint64_t{1}, uint64_t{40}, kRecordHeaderSize, kRecordHeaderSize + 2000,
                       kRecordHeaderSize + kBs - 1}) {
    SCOPED_TRACE("cut at +" + std::to_string(cut));
    dir_ = "/cut" + std::to_string(cut);
    Make(15);
    TruncateFile(SegPath(4), last.offset + cut);
    auto r = MustOpen();
    ASSERT_NE(r, nullptr);
    ExpectHistory(r, 14);
    EXPECT_EQ(*env_.OpenFile(SegPath(4), OpenMode::kRead).value()->Size(), last.offset);
    // The torn record's seq is given to the next append.
    auto res = r->Append(Record::Write((16 % 64) * kBs, Content(16)));
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    EXPECT_EQ(*res, 15u);
    r.reset();
    r = MustOpen();
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->Stats().last_seq, 15u);
  }
}

TEST_F(CorruptionTest, GarbageAfterLastRecordIsDroppedAndAppendsContinue) {
  Make(15);
  const StoredRecord last = Records(4).back();
  const uint64_t end = last.offset + kRecordHeaderSize + kBs;
  // Noise, then what starts like the next record but never got its checksums right.
  std::string fake(kRecordHeaderSize, '\0');
  std::memcpy(fake.data(), "FREC", 4);
  fake[4] = static_cast<char>(RecordType::kWrite);
  EncodeFixed<uint64_t>(reinterpret_cast<uint8_t*>(fake.data()) + 8, 16);
  AppendBytes(SegPath(4), std::string("\x13\x37 half a write", 16) + fake + std::string(300, 'x'));
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  ExpectHistory(r, 15);
  EXPECT_EQ(*env_.OpenFile(SegPath(4), OpenMode::kRead).value()->Size(), end);
  auto res = r->Append(Record::Write((16 % 64) * kBs, Content(16)));
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(*res, 16u);
  r.reset();
  r = MustOpen();
  ASSERT_NE(r, nullptr);
  ExpectHistory(r, 16);
}

// The spec's rule, shown: a damaged final record cannot be told from a torn write.
TEST_F(CorruptionTest, DamagedFinalRecordOfTheJournalIsATornTail) {
  Make(15);
  const StoredRecord last = Records(4).back();
  FlipBit(SegPath(4), last.offset + kRecordHeaderSize + 9);
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  ExpectHistory(r, 14);
}

TEST_F(CorruptionTest, TruncatedSealedSegmentIsDataLoss) {
  Make(13);
  const StoredRecord rec = Records(2)[2];
  TruncateFile(SegPath(2), rec.offset + 100);
  ExpectDataLossAt(2, rec.offset, "record payload incomplete");
}

// A segment cut short under an open replica: the retention merge that reads it fails with
// DataLoss naming the segment, the offset and the record, and neither removes a segment nor
// forgets a record.
TEST_F(CorruptionTest, SegmentCutShortUnderAMergeFailsItAndDropsNothing) {
  Make(13);
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  const StoredRecord rec = Records(2)[2];  // seq 7
  TruncateFile(SegPath(2), rec.offset + kRecordHeaderSize + 100);
  const std::vector<uint64_t> before = Segments();
  const ReplicaStats stats = r->Stats();
  clock_.Advance(kNanosPerHour);
  RetentionPolicy policy;
  policy.window_ns = 1;
  policy.any_point_ns = 0;
  auto report = r->ApplyRetention(policy);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.status().code(), Code::kDataLoss) << report.status().ToString();
  const std::string where = "segment 2 offset " + std::to_string(rec.offset + kRecordHeaderSize) +
                            ": record seq 7 is cut short";
  EXPECT_NE(report.status().message().find(where), std::string_view::npos)
      << report.status().ToString() << " does not say " << where;
  EXPECT_EQ(Segments(), before);
  EXPECT_EQ(r->Stats().records, stats.records);
}

TEST_F(CorruptionTest, SealedSegmentCutAtARecordBoundaryIsMissingRecords) {
  Make(13);
  TruncateFile(SegPath(2), Records(2)[2].offset);  // loses seqs 7 and 8
  auto r = Open();
  ASSERT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("missing records 7..8"), std::string_view::npos)
      << r.status().ToString();
}

TEST_F(CorruptionTest, MissingSegmentInTheMiddleIsDataLoss) {
  Make(13);
  ASSERT_TRUE(env_.RemoveFile(SegPath(2)).ok());
  auto r = Open();
  ASSERT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("missing records 5..8"), std::string_view::npos)
      << r.status().ToString();
}

TEST_F(CorruptionTest, MissingFirstSegmentIsDataLoss) {
  Make(13);
  ASSERT_TRUE(env_.RemoveFile(SegPath(1)).ok());
  auto r = Open();
  ASSERT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("missing records 1..4"), std::string_view::npos)
      << r.status().ToString();
}

TEST_F(CorruptionTest, SealedSegmentHeaderDamageIsDataLoss) {
  Make(13);
  FlipBit(SegPath(2), 27);  // first_seq
  ExpectDataLossAt(2, 0, "segment header checksum mismatch");
}

TEST_F(CorruptionTest, SegmentOfAnotherVolumeIsDataLoss) {
  Make(13);
  std::string bytes = ReadAll(SegPath(2));
  auto h = DecodeSegmentHeader(reinterpret_cast<const uint8_t*>(bytes.data()));
  ASSERT_TRUE(h.ok());
  h->volume_id[3] ^= 0x40;
  auto f = env_.OpenFile(SegPath(2), OpenMode::kReadWrite);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->WriteAt(0, EncodeSegmentHeader(*h)).ok());
  auto r = Open();
  ASSERT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("segment 2: belongs to another volume"),
            std::string_view::npos)
      << r.status().ToString();
}

TEST_F(CorruptionTest, RenamedSegmentIsDataLoss) {
  Make(13);
  ASSERT_TRUE(env_.Rename(SegPath(4), SegPath(7)).ok());
  ExpectDataLossAt(7, 0, "header says segment 4");
}

TEST_F(CorruptionTest, MissingManifestIsNotFound) {
  Make(3);
  ASSERT_TRUE(env_.RemoveFile(dir_ + "/MANIFEST").ok());
  EXPECT_EQ(Open().status().code(), Code::kNotFound) << Open().status().ToString();
  dir_ = "/never";
  ASSERT_TRUE(env_.CreateDir(dir_).ok());
  EXPECT_EQ(Open().status().code(), Code::kNotFound);
}

TEST_F(CorruptionTest, CorruptManifestIsDataLoss) {
  Make(3);
  const std::string path = dir_ + "/MANIFEST";
  const std::string good = ReadAll(path);
  auto put = [&](const std::string& text) {
    ASSERT_TRUE(env_.RemoveFile(path).ok());
    auto f = env_.OpenFile(path, OpenMode::kCreateNew);
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE((*f)->WriteAt(0, text).ok());
  };
  auto expect = [&](std::string_view what) {
    auto r = Open();
    ASSERT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
    EXPECT_NE(r.status().message().find(what), std::string_view::npos) << r.status().ToString();
  };
  std::string flipped = good;
  flipped[good.find("base_seq") + 2] ^= 0x20;
  put(flipped);
  expect("MANIFEST: checksum mismatch");
  put(good.substr(0, good.find('\n')));
  expect("MANIFEST");
  const std::string json = good.substr(0, good.find('\n'));
  std::string v2 = json;
  v2.replace(v2.find("\"format\":1"), 10, "\"format\":2");
  put(FrameWithChecksum(v2));
  expect("format 2");
  std::string no_size = json;
  no_size.replace(no_size.find("\"size\""), 6, "\"sizf\"");
  put(FrameWithChecksum(no_size));
  expect("MANIFEST");
  put(good);
  EXPECT_TRUE(Open().ok());
}

TEST_F(CorruptionTest, MissingBaseImageIsDataLoss) {
  Make(3);
  ASSERT_TRUE(env_.RemoveFile(dir_ + "/base.img").ok());
  auto r = Open();
  ASSERT_EQ(r.status().code(), Code::kDataLoss) << r.status().ToString();
  EXPECT_NE(r.status().message().find("base.img"), std::string_view::npos) << r.status().ToString();
}

// The disk fills: appends are refused with kResourceExhausted, health says so, nothing
// acknowledged is lost and history is not shrunk; with space again, appends resume.
TEST_F(CorruptionTest, FullDiskRefusesAppendsKeepsHistoryAndRecovers) {
  min_free_ = 64 * 1024;
  Make(6);
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  auto space = env_.GetSpace(dir_);
  ASSERT_TRUE(space.ok());
  const uint64_t used = space->total_bytes - space->free_bytes;
  env_.SetCapacity(used + min_free_ + 3 * (kRecordHeaderSize + kBs) + 100);
  uint64_t acked = 6;
  Status refused;
  for (int i = 0; i < 10 && refused.ok(); ++i) {
    auto res = r->Append(Record::Write(((acked + 1) % 64) * kBs, Content(acked + 1)));
    if (res.ok()) {
      acked = *res;
    } else {
      refused = res.status();
    }
  }
  ASSERT_EQ(refused.code(), Code::kResourceExhausted) << refused.ToString();
  EXPECT_NE(refused.message().find("free space"), std::string_view::npos) << refused.ToString();
  EXPECT_GE(acked, 7u);
  // Refused again, the same way: nothing is stuck.
  EXPECT_EQ(r->Append(Record::Write(0, Content(0))).status().code(), Code::kResourceExhausted);
  Health h = r->GetHealth();
  EXPECT_EQ(h.level, Health::Level::kCritical) << HealthLevelName(h.level);
  ASSERT_FALSE(h.problems.empty());
  EXPECT_NE(h.problems[0].find("space"), std::string::npos) << h.problems[0];
  ExpectHistory(r, acked);
  EXPECT_EQ(r->Stats().oldest_point, 0u);

  env_.SetCapacity(SimEnv::kDefaultCapacity);
  auto res = r->Append(Record::Write(((acked + 1) % 64) * kBs, Content(acked + 1)));
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_EQ(*res, acked + 1);
  EXPECT_EQ(r->GetHealth().level, Health::Level::kHealthy);
  ExpectHistory(r, acked + 1);
  r.reset();
  r = MustOpen();
  ASSERT_NE(r, nullptr);
  ExpectHistory(r, acked + 1);
}

TEST_F(CorruptionTest, LowSpaceIsAWarningWhileAppendsStillWork) {
  min_free_ = 4096;
  Make(6);
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  auto space = env_.GetSpace(dir_);
  const uint64_t used = space->total_bytes - space->free_bytes;
  env_.SetCapacity(used + used / 20);  // about 5% free
  Health h = r->GetHealth();
  EXPECT_EQ(h.level, Health::Level::kWarning) << HealthLevelName(h.level);
  ASSERT_FALSE(h.problems.empty());
  EXPECT_NE(h.problems[0].find("space low"), std::string::npos) << h.problems[0];
  EXPECT_TRUE(r->Append(Record::Write(7 * kBs, Content(7))).ok());
}

// The Env itself runs out of space in the middle of an append (here: the room checked for
// the record does not cover the header of the segment it rolls to). The tail of the journal
// is then uncertain: appends stop, health says to reopen, and reopening after freeing space
// recovers every acknowledged record.
TEST_F(CorruptionTest, FullDiskInsideTheEnvStopsAppendsUntilReopened) {
  Make(4);  // segment 1 is full: the next append rolls to segment 2
  auto r = MustOpen();
  ASSERT_NE(r, nullptr);
  auto space = env_.GetSpace(dir_);
  const uint64_t used = space->total_bytes - space->free_bytes;
  env_.SetCapacity(used + kRecordHeaderSize + kBs);
  auto res = r->Append(Record::Write((5 % 64) * kBs, Content(5)));
  ASSERT_EQ(res.status().code(), Code::kResourceExhausted) << res.status().ToString();
  EXPECT_EQ(r->Append(Record::Write(0, Content(0))).status().code(), Code::kResourceExhausted);
  Health h = r->GetHealth();
  EXPECT_EQ(h.level, Health::Level::kCritical);
  ASSERT_FALSE(h.problems.empty());
  EXPECT_NE(h.problems.back().find("reopen"), std::string::npos) << h.problems.back();
  ExpectHistory(r, 4);
  env_.SetCapacity(SimEnv::kDefaultCapacity);
  r.reset();
  r = MustOpen();
  ASSERT_NE(r, nullptr);
  ExpectHistory(r, 4);
  res = r->Append(Record::Write((5 % 64) * kBs, Content(5)));
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ExpectHistory(r, 5);
}

// An I/O error at every possible point of an append (and of the segment rolls it causes):
// the error is returned, appends stop until the replica is reopened, and the reopened
// replica - after a clean close or a power loss - has every acknowledged record.
TEST_F(CorruptionTest, IoErrorDuringAppendLosesNothingAcknowledged) {
  for (int after = 0; after < 14; ++after) {
    for (int how = 0; how < 3; ++how) {
      SCOPED_TRACE("fail after " + std::to_string(after) + " calls, close " + std::to_string(how));
      dir_ = "/io-" + std::to_string(after) + "-" + std::to_string(how);
      Make(5);
      auto r = MustOpen();
      ASSERT_NE(r, nullptr);
      env_.FailAfter(after);
      uint64_t acked = 5;
      Status failed;
      for (int i = 0; i < 20 && failed.ok(); ++i) {
        std::vector<Record> batch = {Record::Write(((acked + 1) % 64) * kBs, Content(acked + 1)),
                                     Record::Write(((acked + 2) % 64) * kBs, Content(acked + 2))};
        auto res = r->Append(std::span<Record>(batch));
        if (res.ok()) {
          acked = *res;
        } else {
          failed = res.status();
        }
      }
      env_.FailAfter(-1);
      ASSERT_EQ(failed.code(), Code::kIoError) << failed.ToString();
      EXPECT_EQ(r->Append(Record::Write(0, Content(0))).status().code(), Code::kIoError);
      Health h = r->GetHealth();
      EXPECT_EQ(h.level, Health::Level::kCritical);
      ASSERT_FALSE(h.problems.empty());
      EXPECT_NE(h.problems.back().find("reopen"), std::string::npos) << h.problems.back();
      ExpectHistory(r, acked);

      if (how == 1) env_.Crash(static_cast<uint64_t>(after));
      if (how == 2) env_.CrashDropAll();
      r.reset();
      r = MustOpen();
      ASSERT_NE(r, nullptr);
      const uint64_t last = r->Stats().last_seq;
      ASSERT_GE(last, acked);
      ASSERT_LE(last, acked + 2);
      ExpectHistory(r, last);  // the failed batch's records, if there, are whole
      auto res = r->Append(Record::Write(((last + 1) % 64) * kBs, Content(last + 1)));
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      ASSERT_EQ(*res, last + 1);
      r.reset();
      env_.CrashDropAll();
      r = MustOpen();
      ASSERT_NE(r, nullptr);
      ExpectHistory(r, last + 1);
    }
  }
}

}  // namespace
}  // namespace ferry::journal
