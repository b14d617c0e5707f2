// The NBD transmission phase, byte for byte: errors with their exact errno, payload handling,
// pipelining and disconnects, flow control, and views over a replica.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "capture/splitter.h"
#include "env/sim_env.h"
#include "journal/replica.h"
#include "nbd/replica_exports.h"
#include "nbd/session_test_util.h"
#include "nbd/splitter_export.h"

namespace ferry::nbd::test {
namespace {

TEST_F(SessionTest, ReadPastTheEndIsEinval) {
  auto c = Connect();
  c->Go("", /*structured=*/false);
  c->SendRequest(kCmdRead, 1, kDiskSize - 4, 8);
  ReplyMsg r = c->ReadSimpleReply();
  EXPECT_EQ(r.cookie, 1u);
  EXPECT_EQ(r.error, kEinval);
  c->SendRequest(kCmdRead, 2, UINT64_MAX - 2, 8);  // offset + length overflows
  EXPECT_EQ(c->ReadSimpleReply().error, kEinval);
  c->SendRequest(kCmdRead, 3, kDiskSize - 4, 4);  // the last bytes are fine
  ReplyMsg ok = c->ReadSimpleReply(4);
  EXPECT_EQ(ok.error, 0u);
  EXPECT_EQ(ok.data, Pattern(kDiskSize, 1).substr(kDiskSize - 4));
}

TEST_F(SessionTest, StructuredReadErrorIsAnErrorChunkWithAMessage) {
  auto c = Connect();
  c->Go();
  c->SendRequest(kCmdRead, 9, kDiskSize, 1);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.cookie, 9u);
  EXPECT_EQ(r.type, kReplyTypeError);
  EXPECT_EQ(r.flags, kReplyFlagDone);
  EXPECT_EQ(r.error, kEinval);
  EXPECT_NE(r.data.find("past the end"), std::string::npos) << r.data;
  c->SendRequest(kCmdRead, 10, 100, 50, kCmdFlagDf);
  ReplyMsg d = c->ReadChunk();
  EXPECT_EQ(d.type, kReplyTypeOffsetData);
  EXPECT_EQ(d.flags, kReplyFlagDone);
  EXPECT_EQ(c->last_offset(), 100u);
  EXPECT_EQ(d.data, Pattern(kDiskSize, 1).substr(100, 50));
}

TEST_F(SessionTest, WriteToReadOnlyIsEpermAndItsPayloadIsConsumed) {
  auto c = Connect();
  c->Go("ro", /*structured=*/false);
  // The payload looks like a request: if the server did not skip it, the next reply would
  // answer cookie 66 instead of 2.
  std::string payload = RawClient::Request(kCmdRead, 66, 0, 4);
  c->SendRequest(kCmdWrite, 1, 0, static_cast<uint32_t>(payload.size()), 0, payload);
  c->SendRequest(kCmdWriteZeroes, 3, 0, 4096);
  c->SendRequest(kCmdTrim, 4, 0, 4096);
  c->SendRequest(kCmdRead, 2, 0, 4);
  std::map<uint64_t, ReplyMsg> replies;
  for (int i = 0; i < 4; ++i) {
    // Replies may come in any order; only the read has data, and it is the last one sent,
    // but pipelined workers may finish it first.
    uint8_t h[16];
    ASSERT_TRUE(c->socket().ReadFull(h, 16).ok());
    ReplyMsg r;
    r.error = GetBe<uint32_t>(h + 4);
    r.cookie = GetBe<uint64_t>(h + 8);
    if (r.cookie == 2) {
      r.data.resize(4);
      ASSERT_TRUE(c->socket().ReadFull(r.data.data(), 4).ok());
    }
    replies[r.cookie] = r;
  }
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[1].error, kEperm);
  EXPECT_EQ(replies[3].error, kEperm);
  EXPECT_EQ(replies[4].error, kEperm);
  EXPECT_EQ(replies[2].error, 0u);
  EXPECT_EQ(replies[2].data, Pattern(4, 1));
  EXPECT_EQ(FirstDifference(ro_->contents(), rw_->contents()), kNoDifference);  // untouched
}

TEST_F(SessionTest, UnknownCommandIsEinval) {
  auto c = Connect();
  c->Go();
  c->SendRequest(99, 5, 0, 0);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.cookie, 5u);
  EXPECT_EQ(r.error, kEinval);
  EXPECT_NE(r.data.find("99"), std::string::npos) << r.data;
  c->SendRequest(kCmdFlush, 6, 0, 0);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
}

TEST_F(SessionTest, UnknownOrMisplacedFlagsAreEinval) {
  auto c = Connect();
  c->Go("", /*structured=*/false);
  c->SendRequest(kCmdRead, 1, 0, 8, 1 << 9);
  EXPECT_EQ(c->ReadSimpleReply().error, kEinval);
  c->SendRequest(kCmdWriteZeroes, 2, 0, 8, kCmdFlagFastZero);  // fast zero not advertised
  EXPECT_EQ(c->ReadSimpleReply().error, kEinval);
  c->SendRequest(kCmdRead, 3, 0, 8, kCmdFlagDf);  // DF without structured replies
  EXPECT_EQ(c->ReadSimpleReply().error, kEinval);
  c->SendRequest(kCmdWrite, 4, 0, 3, 1 << 12, "abc");  // payload skipped, disk untouched
  EXPECT_EQ(c->ReadSimpleReply().error, kEinval);
  c->SendRequest(kCmdRead, 5, 0, 3);
  EXPECT_EQ(c->ReadSimpleReply(3).data, Pattern(3, 1));
}

TEST_F(SessionTest, WritePayloadOver32MiBIsEoverflowThenDisconnect) {
  auto c = Connect();
  c->Go();
  c->SendRequest(kCmdWrite, 77, 0, kMaxRequestBytes + 1);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.cookie, 77u);
  EXPECT_EQ(r.type, kReplyTypeError);
  EXPECT_EQ(r.error, kEoverflow);
  EXPECT_TRUE(c->ServerClosed());
  EXPECT_EQ(FirstDifference(rw_->contents(), ro_->contents()), kNoDifference);
}

TEST_F(SessionTest, ReadOver32MiBIsEoverflowAndTheSessionContinues) {
  auto c = Connect();
  c->Go("", /*structured=*/false);
  c->SendRequest(kCmdRead, 1, 0, kMaxRequestBytes + 1);
  EXPECT_EQ(c->ReadSimpleReply().error, kEoverflow);
  c->SendRequest(kCmdRead, 2, 0, 1);
  EXPECT_EQ(c->ReadSimpleReply(1).error, 0u);
}

TEST_F(SessionTest, BlockStatusWithoutMetaContextIsEinval) {
  auto c = Connect();
  c->Go();  // structured, but no meta context selected
  c->SendRequest(kCmdBlockStatus, 3, 0, 4096);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.type, kReplyTypeError);
  EXPECT_EQ(r.error, kEinval);
}

TEST_F(SessionTest, BlockStatusDescribesDataAndZeros) {
  auto c = Connect();
  c->Go("", true, /*base_allocation=*/true);
  c->SendRequest(kCmdBlockStatus, 4, 0, 256 * 1024);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.type, kReplyTypeBlockStatus);
  EXPECT_EQ(r.flags, kReplyFlagDone);
  auto want = std::vector<std::pair<uint32_t, uint32_t>>{
      {64 * 1024, 0}, {64 * 1024, kStateHole | kStateZero}, {128 * 1024, 0}};
  EXPECT_EQ(Descriptors(r.data), want);
  c->SendRequest(kCmdBlockStatus, 5, kDiskSize, 1);
  EXPECT_EQ(c->ReadChunk().error, kEinval);
  c->SendRequest(kCmdBlockStatus, 6, 0, 0);
  EXPECT_EQ(c->ReadChunk().error, kEinval);
}

TEST_F(SessionTest, BlockStatusWithReqOneReturnsOneExtent) {
  auto c = Connect();
  c->Go("", true, true);
  c->SendRequest(kCmdBlockStatus, 4, 32 * 1024, 256 * 1024, kCmdFlagReqOne);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.type, kReplyTypeBlockStatus);
  auto want = std::vector<std::pair<uint32_t, uint32_t>>{{32 * 1024, 0}};
  EXPECT_EQ(Descriptors(r.data), want);
}

TEST_F(SessionTest, WritesZeroesAndTrimsChangeTheDisk) {
  auto c = Connect();
  c->Go("", /*structured=*/false);
  std::string data = Pattern(5000, 9);
  c->SendRequest(kCmdWrite, 1, 1000, 5000, kCmdFlagFua, data);
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  c->SendRequest(kCmdWriteZeroes, 2, 2000, 100, kCmdFlagNoHole);
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  c->SendRequest(kCmdTrim, 3, 8192, 4096);
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  c->SendRequest(kCmdWrite, 4, kDiskSize - 2, 4, 0, "tool");
  EXPECT_EQ(c->ReadSimpleReply().error, kEnospc);  // past the end: ENOSPC, payload consumed
  c->SendRequest(kCmdWriteZeroes, 5, kDiskSize - 2, 4);
  EXPECT_EQ(c->ReadSimpleReply().error, kEnospc);
  std::string expect = ro_->contents();  // the disk as it was
  expect.replace(1000, 5000, data);
  std::fill_n(expect.begin() + 2000, 100, '\0');
  std::fill_n(expect.begin() + 8192, 4096, '\0');
  c->SendRequest(kCmdRead, 6, 0, 16384);
  EXPECT_EQ(c->ReadSimpleReply(16384).data, expect.substr(0, 16384));
  EXPECT_EQ(FirstDifference(rw_->contents(), expect), kNoDifference);
}

TEST_F(SessionTest, FlushReachesTheExport) {
  auto c = Connect();
  c->Go();
  uint64_t before = rw_->flushes();
  c->SendRequest(kCmdFlush, 1, 0, 0);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.type, kReplyTypeNone);
  EXPECT_EQ(r.cookie, 1u);
  EXPECT_EQ(rw_->flushes(), before + 1);
}

// Passes every change on to an inner export and records it with the flags it came with.
class RecordingExport final : public Export {
 public:
  struct Call {
    std::string op;
    uint64_t offset = 0;
    uint64_t length = 0;
    bool fua = false;
    bool no_hole = false;
    bool operator==(const Call&) const = default;
    friend void PrintTo(const Call& c, std::ostream* os) {
      *os << c.op << " " << c.offset << "+" << c.length << (c.fua ? " fua" : "") << (c.no_hole ? " no_hole" : "");
    }
  };
  explicit RecordingExport(std::shared_ptr<Export> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  bool read_only() const override { return false; }
  Status Read(uint64_t o, size_t n, void* dst) override { return inner_->Read(o, n, dst); }
  Status Write(uint64_t o, std::string_view d, bool fua) override {
    Record({"write", o, d.size(), fua, false});
    return inner_->Write(o, d, fua);
  }
  Status WriteZeroes(uint64_t o, uint64_t n, bool fua, bool no_hole) override {
    Record({"zero", o, n, fua, no_hole});
    return inner_->WriteZeroes(o, n, fua, no_hole);
  }
  Status Trim(uint64_t o, uint64_t n, bool fua) override {
    Record({"trim", o, n, fua, false});
    return inner_->Trim(o, n, fua);
  }
  Status Flush() override { return inner_->Flush(); }
  Result<std::vector<Extent>> BlockStatus(uint64_t o, uint64_t n) override { return inner_->BlockStatus(o, n); }
  std::vector<Call> calls() {
    std::lock_guard l(mu_);
    return calls_;
  }

 private:
  void Record(Call c) {
    std::lock_guard l(mu_);
    calls_.push_back(std::move(c));
  }
  std::shared_ptr<Export> inner_;
  std::mutex mu_;
  std::vector<Call> calls_;
};

// FUA and NO_HOLE reach the export with the change they came with: small writes (served in
// batches), large writes (served by the workers), zeroes and trims.
TEST_F(SessionTest, FuaAndNoHoleReachTheExport) {
  auto rec = std::make_shared<RecordingExport>(rw_);
  catalog_->Add("rec", rec);
  auto c = Connect();
  c->Go("rec");
  const std::string small = Pattern(4096, 3), large = Pattern(128 * 1024, 4);
  const std::vector<std::pair<std::string, RecordingExport::Call>> sent = {
      {RawClient::Request(kCmdWrite, 1, 0, 4096, kCmdFlagFua, small), {"write", 0, 4096, true, false}},
      {RawClient::Request(kCmdWrite, 2, 4096, 4096, 0, small), {"write", 4096, 4096, false, false}},
      {RawClient::Request(kCmdWrite, 3, 65536, 128 * 1024, kCmdFlagFua, large), {"write", 65536, 128 * 1024, true, false}},
      {RawClient::Request(kCmdWrite, 4, 262144, 128 * 1024, 0, large), {"write", 262144, 128 * 1024, false, false}},
      {RawClient::Request(kCmdWriteZeroes, 5, 8192, 8192, kCmdFlagFua | kCmdFlagNoHole), {"zero", 8192, 8192, true, true}},
      {RawClient::Request(kCmdWriteZeroes, 6, 16384, 8192, kCmdFlagNoHole), {"zero", 16384, 8192, false, true}},
      {RawClient::Request(kCmdWriteZeroes, 7, 24576, 8192, 0), {"zero", 24576, 8192, false, false}},
      {RawClient::Request(kCmdTrim, 8, 32768, 4096, kCmdFlagFua), {"trim", 32768, 4096, true, false}},
      {RawClient::Request(kCmdTrim, 9, 36864, 4096, 0), {"trim", 36864, 4096, false, false}},
  };
  for (const auto& [request, call] : sent) {
    c->Send(request);  // one at a time: the calls come in the order sent
    ReplyMsg r = c->ReadChunk();
    EXPECT_EQ(r.type, kReplyTypeNone) << call.op << " at " << call.offset << ": " << r.data;
  }
  std::vector<RecordingExport::Call> want;
  for (const auto& [request, call] : sent) want.push_back(call);
  EXPECT_EQ(rec->calls(), want);
}

// The protocol lets FUA ride on any command; NO_HOLE, DF and REQ_ONE each belong to one, and
// on any other command they are EINVAL, and the command is not carried out.
TEST_F(SessionTest, FlagsOnTheWrongCommandAreEinval) {
  auto rec = std::make_shared<RecordingExport>(rw_);
  catalog_->Add("rec", rec);
  auto c = Connect();
  c->Go("rec", /*structured=*/true, /*base_allocation=*/true);
  struct Case {
    uint16_t type;
    uint16_t flags;
    std::string payload;
    const char* says;
  };
  const std::vector<Case> refused = {
      {kCmdWrite, kCmdFlagNoHole, "abcd", "NO_HOLE"},  {kCmdTrim, kCmdFlagNoHole, "", "NO_HOLE"},
      {kCmdRead, kCmdFlagNoHole, "", "NO_HOLE"},       {kCmdWrite, kCmdFlagDf, "abcd", "DF"},
      {kCmdBlockStatus, kCmdFlagDf, "", "DF"},         {kCmdWriteZeroes, kCmdFlagDf, "", "DF"},
      {kCmdRead, kCmdFlagReqOne, "", "REQ_ONE"},       {kCmdWriteZeroes, kCmdFlagReqOne, "", "REQ_ONE"},
      {kCmdTrim, kCmdFlagFua | kCmdFlagReqOne, "", "REQ_ONE"},
  };
  uint64_t cookie = 1;
  for (const Case& k : refused) {
    const uint32_t length = k.payload.empty() ? 4096 : static_cast<uint32_t>(k.payload.size());
    c->SendRequest(k.type, cookie, 0, length, k.flags, k.payload);
    ReplyMsg r = c->ReadChunk();
    EXPECT_EQ(r.cookie, cookie);
    EXPECT_EQ(r.type, kReplyTypeError) << "command " << k.type << " flags " << k.flags;
    EXPECT_EQ(r.error, kEinval) << "command " << k.type << " flags " << k.flags;
    EXPECT_NE(r.data.find(k.says), std::string::npos) << r.data;
    ++cookie;
  }
  EXPECT_TRUE(rec->calls().empty());
  EXPECT_EQ(FirstDifference(rw_->contents(), ro_->contents()), kNoDifference);
  // Accepted: FUA on commands that write nothing, and each flag on its own command.
  c->SendRequest(kCmdRead, 20, 0, 4, kCmdFlagFua | kCmdFlagDf);
  EXPECT_EQ(c->ReadChunk().data, Pattern(4, 1));
  c->SendRequest(kCmdFlush, 21, 0, 0, kCmdFlagFua);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
  c->SendRequest(kCmdBlockStatus, 22, 0, 8192, kCmdFlagFua | kCmdFlagReqOne);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeBlockStatus);
  c->SendRequest(kCmdWriteZeroes, 23, 0, 4096, kCmdFlagNoHole);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
}

// Zeroes with NO_HOLE leave data that reads as zeros; without it, and after a trim, the
// memory export reports a hole again.
TEST_F(SessionTest, ZeroesWithNoHoleAreNotReportedAsAHole) {
  auto c = Connect();
  c->Go("", /*structured=*/true, /*base_allocation=*/true);
  auto status_of = [&](uint64_t cookie, uint64_t offset, uint32_t length) {
    c->SendRequest(kCmdBlockStatus, cookie, offset, length);
    ReplyMsg r = c->ReadChunk();
    EXPECT_EQ(r.type, kReplyTypeBlockStatus) << r.data;
    return Descriptors(r.data);
  };
  using Extents = std::vector<std::pair<uint32_t, uint32_t>>;
  c->SendRequest(kCmdWriteZeroes, 1, 0, 8192, kCmdFlagNoHole);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
  c->SendRequest(kCmdWriteZeroes, 2, 8192, 8192, 0);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
  EXPECT_EQ(status_of(3, 0, 16384), (Extents{{8192, kStateZero}, {8192, kStateHole | kStateZero}}));
  c->SendRequest(kCmdTrim, 4, 0, 4096);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
  c->SendRequest(kCmdWriteZeroes, 5, 4096, 4096, 0);
  EXPECT_EQ(c->ReadChunk().type, kReplyTypeNone);
  EXPECT_EQ(status_of(6, 0, 16384), (Extents{{16384, kStateHole | kStateZero}}));
  c->SendRequest(kCmdRead, 7, 0, 16384);
  EXPECT_EQ(c->ReadChunk().data, std::string(16384, '\0'));
}

TEST_F(SessionTest, BadRequestMagicCloses) {
  auto c = Connect();
  c->Go();
  std::string req = RawClient::Request(kCmdRead, 1, 0, 8);
  req[0] ^= 1;
  c->Send(req);
  EXPECT_TRUE(c->ServerClosed());
}

TEST_F(SessionTest, DiscClosesAfterTheRepliesInFlight) {
  options_.workers_per_connection = 4;
  auto c = Connect();
  c->Go("", /*structured=*/false);
  std::string batch;
  constexpr int kWrites = 40;
  for (int i = 0; i < kWrites; ++i) {
    batch += RawClient::Request(kCmdWrite, i, i * 4096ull, 4096, 0, Pattern(4096, 100 + i));
  }
  batch += RawClient::Request(kCmdDisc, 999, 0, 0);
  c->Send(batch);
  std::set<uint64_t> cookies;
  for (int i = 0; i < kWrites; ++i) {
    ReplyMsg r = c->ReadSimpleReply();
    EXPECT_EQ(r.error, 0u);
    cookies.insert(r.cookie);
  }
  EXPECT_EQ(cookies.size(), static_cast<size_t>(kWrites));
  EXPECT_TRUE(c->ServerClosed());  // and no reply to the DISC itself
  std::string disk = rw_->contents();
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ(disk.substr(i * 4096, 4096), Pattern(4096, 100 + i)) << i;
  server_->Stop();
  EXPECT_GE(rw_->flushes(), 1u);  // a clean disconnect flushes
}

TEST_F(SessionTest, ManyPipelinedRequestsAllGetTheirReply) {
  options_.max_inflight_per_connection = 8;  // the reader must wait for workers, often
  auto c = Connect();
  c->Go();
  constexpr int kBlocks = 256;
  // Writes first, each to its own block; then, after their replies, reads of every block.
  std::thread writer([&] {
    std::string batch;
    for (int i = 0; i < kBlocks; ++i) {
      batch += RawClient::Request(kCmdWrite, 1000 + i, i * 4096ull, 4096, 0, Pattern(4096, i));
    }
    c->Send(batch);
  });
  std::set<uint64_t> cookies;
  for (int i = 0; i < kBlocks; ++i) {
    ReplyMsg r = c->ReadChunk();
    EXPECT_EQ(r.type, kReplyTypeNone);
    EXPECT_EQ(r.flags, kReplyFlagDone);
    EXPECT_TRUE(cookies.insert(r.cookie).second) << "duplicate reply " << r.cookie;
  }
  writer.join();
  EXPECT_EQ(*cookies.begin(), 1000u);
  EXPECT_EQ(*cookies.rbegin(), 1000u + kBlocks - 1);
  std::thread reader_requests([&] {
    std::string batch;
    for (int i = 0; i < kBlocks; ++i) batch += RawClient::Request(kCmdRead, 5000 + i, i * 4096ull, 4096);
    c->Send(batch);
  });
  std::map<uint64_t, std::string> got;
  for (int i = 0; i < kBlocks; ++i) {
    ReplyMsg r = c->ReadChunk();
    EXPECT_EQ(r.type, kReplyTypeOffsetData);
    EXPECT_EQ(c->last_offset(), (r.cookie - 5000) * 4096);
    EXPECT_TRUE(got.emplace(r.cookie, r.data).second) << "duplicate reply " << r.cookie;
  }
  reader_requests.join();
  ASSERT_EQ(got.size(), static_cast<size_t>(kBlocks));
  for (int i = 0; i < kBlocks; ++i) EXPECT_EQ(got[5000 + i], Pattern(4096, i)) << i;
}

TEST_F(SessionTest, ClientVanishingMidPayloadEndsTheSession) {
  auto c = Connect();
  c->Go();
  c->SendRequest(kCmdWrite, 1, 0, 4096, 0, "only a part");
  c->socket().Shutdown();
  server_->Stop();  // joins the session: it must have ended
  EXPECT_EQ(FirstDifference(rw_->contents(), ro_->contents()), kNoDifference);
}

// Passes every call to an inner export; a gate the test opens lets held calls go on.
class GatedWrapper : public Export {
 public:
  explicit GatedWrapper(std::shared_ptr<Export> inner) : inner_(std::move(inner)) {}
  uint64_t size() const override { return inner_->size(); }
  bool read_only() const override { return false; }
  Status Read(uint64_t o, size_t n, void* dst) override { return inner_->Read(o, n, dst); }
  Status Write(uint64_t o, std::string_view d, bool fua) override { return inner_->Write(o, d, fua); }
  Status WriteZeroes(uint64_t o, uint64_t n, bool fua, bool no_hole) override {
    return inner_->WriteZeroes(o, n, fua, no_hole);
  }
  Status Trim(uint64_t o, uint64_t n, bool fua) override { return inner_->Trim(o, n, fua); }
  Status Flush() override { return inner_->Flush(); }
  Result<std::vector<Extent>> BlockStatus(uint64_t o, uint64_t n) override { return inner_->BlockStatus(o, n); }
  void Open() {
    std::lock_guard l(mu_);
    open_ = true;
    cv_.notify_all();
  }

 protected:
  // With mu_ held: waits for Open.
  void WaitOpen(std::unique_lock<std::mutex>& l) { cv_.wait(l, [&] { return open_; }); }
  std::shared_ptr<Export> inner_;
  std::mutex mu_;
  std::condition_variable cv_;

 private:
  bool open_ = false;
};

// Writes block in the export until the test opens the gate; counts writes in progress.
class GatedExport final : public GatedWrapper {
 public:
  using GatedWrapper::GatedWrapper;
  Status Write(uint64_t o, std::string_view d, bool fua) override {
    std::unique_lock l(mu_);
    max_inside_ = std::max(max_inside_, ++inside_);
    cv_.notify_all();
    WaitOpen(l);
    --inside_;
    l.unlock();
    return inner_->Write(o, d, fua);
  }
  // Waits (up to 10 s) until n writes are inside; returns how many are.
  int WaitInside(int n) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, std::chrono::seconds(10), [&] { return inside_ >= n; });
    return inside_;
  }
  int max_inside() {
    std::lock_guard l(mu_);
    return max_inside_;
  }

 private:
  int inside_ = 0, max_inside_ = 0;
};

// Regression: a connection could hold max_inflight_per_connection (64) write payloads of up
// to 32 MiB each — 2 GiB of memory from one client that pipelines large writes. Now the
// reader stops taking payloads once max_inflight_bytes_per_connection are held.
TEST_F(SessionTest, WritePayloadsHeldPerConnectionAreBounded) {
  auto gated = std::make_shared<GatedExport>(rw_);
  catalog_->Add("gated", gated);
  options_.workers_per_connection = 4;
  // Writes above 64 KiB go to the workers (smaller ones are served by the reading thread).
  constexpr uint32_t kLen = 96 * 1024;
  options_.max_inflight_bytes_per_connection = 2 * kLen;
  auto c = Connect();
  c->Go("gated", /*structured=*/false);
  std::string batch;
  for (int i = 0; i < 4; ++i) batch += RawClient::Request(kCmdWrite, i, i * uint64_t{kLen}, kLen, 0, Pattern(kLen, i));
  std::thread sender([&] { c->Send(batch); });
  EXPECT_EQ(gated->WaitInside(2), 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // room for a third, if let in
  EXPECT_EQ(gated->max_inside(), 2);
  gated->Open();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  sender.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(rw_->contents().substr(i * kLen, kLen), Pattern(kLen, i)) << i;
}

// Records the sizes of the batches of writes it is given; the first waits until Open.
class BatchCountingExport final : public GatedWrapper {
 public:
  using GatedWrapper::GatedWrapper;
  void WriteMany(std::span<const WriteOp> ops, std::span<Status> results) override {
    {
      std::unique_lock l(mu_);
      sizes_.push_back(ops.size());
      WaitOpen(l);
    }
    Export::WriteMany(ops, results);
  }
  std::vector<size_t> sizes() {
    std::lock_guard l(mu_);
    return sizes_;
  }

 private:
  std::vector<size_t> sizes_;
};

// Small writes already received are served together and each gets its own answer: an error
// for the one past the end, data for the read sent among them.
TEST_F(SessionTest, SmallWritesReceivedTogetherAreServedTogether) {
  auto counting = std::make_shared<BatchCountingExport>(rw_);
  catalog_->Add("counting", counting);
  auto c = Connect();
  c->Go("counting", /*structured=*/true);
  std::string burst;
  constexpr int kWrites = 12;
  for (int i = 0; i < kWrites; ++i) burst += RawClient::Request(kCmdWrite, i, i * 4096ull, 4096, 0, Pattern(4096, i));
  burst += RawClient::Request(kCmdWrite, 100, kDiskSize - 2048, 4096, 0, Pattern(4096, 100));
  burst += RawClient::Request(kCmdWrite, 101, 64 * 4096ull, 4096, kCmdFlagFua, Pattern(4096, 101));
  burst += RawClient::Request(kCmdRead, 200, 0, 4096);
  c->Send(burst);  // all of it waits in the socket while the first batch is held
  counting->Open();
  std::map<uint64_t, ReplyMsg> replies;
  for (int i = 0; i < kWrites + 3; ++i) {
    ReplyMsg r = c->ReadChunk();
    replies[r.cookie] = r;
  }
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ(replies[i].type, kReplyTypeNone) << i;
  EXPECT_EQ(replies[100].type, kReplyTypeError);
  EXPECT_EQ(replies[100].error, kEnospc);
  EXPECT_EQ(replies[101].type, kReplyTypeNone);
  EXPECT_EQ(replies[200].type, kReplyTypeOffsetData);
  for (int i = 0; i < kWrites; ++i) EXPECT_EQ(rw_->contents().substr(i * 4096, 4096), Pattern(4096, i)) << i;
  EXPECT_EQ(rw_->contents().substr(64 * 4096, 4096), Pattern(4096, 101));
  // The first batch was whatever one recv brought; everything else was waiting by then.
  std::vector<size_t> sizes = counting->sizes();
  ASSERT_GE(sizes.size(), 1u);
  size_t served = 0, largest = 0;
  for (size_t n : sizes) {
    served += n;
    largest = std::max(largest, n);
  }
  EXPECT_EQ(served, size_t{kWrites + 1});  // the one past the end is refused before the export
  EXPECT_GT(largest, 1u);
}

TEST_F(SessionTest, AWriteLargerThanTheBudgetIsAdmittedAlone) {
  options_.max_inflight_bytes_per_connection = 1;  // below any payload: each write goes alone
  auto c = Connect();
  c->Go();
  std::string data = Pattern(kDiskSize, 5);
  std::thread sender([&] {
    c->SendRequest(kCmdWrite, 1, 0, kDiskSize, 0, data);
    c->SendRequest(kCmdWrite, 2, 0, 4, 0, "abcd");
  });
  ReplyMsg first = c->ReadChunk();
  ReplyMsg second = c->ReadChunk();
  sender.join();
  EXPECT_EQ(first.cookie + second.cookie, 3u);
  EXPECT_EQ(first.type, kReplyTypeNone);
  EXPECT_EQ(second.type, kReplyTypeNone);
  EXPECT_EQ(rw_->contents().substr(0, 8), "abcd" + data.substr(4, 4));
}

// An export that describes nothing: the server must not send a block status reply without
// descriptors (a protocol violation clients reject), but an error.
class NoExtentsExport final : public Export {
 public:
  uint64_t size() const override { return 4096; }
  bool read_only() const override { return true; }
  Status Read(uint64_t, size_t, void*) override { return Status::Ok(); }
  Status Write(uint64_t, std::string_view, bool) override { return FailedPrecondition("read-only"); }
  Status WriteZeroes(uint64_t, uint64_t, bool, bool) override { return FailedPrecondition("read-only"); }
  Status Trim(uint64_t, uint64_t, bool) override { return FailedPrecondition("read-only"); }
  Status Flush() override { return Status::Ok(); }
  Result<std::vector<Extent>> BlockStatus(uint64_t, uint64_t) override { return std::vector<Extent>{{0, false, false}}; }
};

TEST_F(SessionTest, BlockStatusWithNoExtentsIsEio) {
  catalog_->Add("none", std::make_shared<NoExtentsExport>());
  auto c = Connect();
  c->Go("none", true, true);
  c->SendRequest(kCmdBlockStatus, 1, 0, 4096);
  ReplyMsg r = c->ReadChunk();
  EXPECT_EQ(r.type, kReplyTypeError);
  EXPECT_EQ(r.error, kEio);
}

// ---------------------------------------------------------------- views over a replica

class ViewSessionTest : public SessionTest {
 protected:
  void SetUp() override {
    journal::ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    journal::CreateParams p;
    p.size = kDiskSize;
    auto r = journal::Replica::Create("/r", p, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    replica_ = *r;
    ASSERT_TRUE(replica_->Append(journal::Record::Write(0, Pattern(16384, 3))).ok());                  // seq 1
    ASSERT_TRUE(replica_->Append(journal::Record::Marker(journal::MarkerKind::kAppConsistent)).ok());  // 2
    ASSERT_TRUE(replica_->Append(journal::Record::Zero(4096, 4096)).ok());                             // 3
    auto info = replica_->ResolvePoint(journal::PointSpec{});
    ASSERT_TRUE(info.ok());
    auto view = replica_->OpenView(info->seq);
    ASSERT_TRUE(view.ok());
    auto def = std::make_shared<ViewExport>(*view, "latest");
    replica_catalog_ = std::make_shared<ReplicaCatalog>(replica_, def);
  }
  SimEnv env_;
  ManualClock clock_;
  std::shared_ptr<journal::Replica> replica_;
  std::shared_ptr<ReplicaCatalog> replica_catalog_;
};

TEST_F(ViewSessionTest, ServesEachPointReadOnlyWithItsExtents) {
  auto c = Connect(replica_catalog_);
  uint16_t flags = c->Go("@latest", true, true);
  EXPECT_TRUE(flags & kTransReadOnly);
  std::string want = Pattern(16384, 3);
  std::fill_n(want.begin() + 4096, 4096, '\0');
  c->SendRequest(kCmdRead, 1, 0, 16384);
  EXPECT_EQ(c->ReadChunk().data, want);
  c->SendRequest(kCmdBlockStatus, 2, 0, 64 * 1024);
  auto want_extents = std::vector<std::pair<uint32_t, uint32_t>>{
      {4096, 0}, {4096, kStateZero}, {8192, 0}, {48 * 1024, kStateHole | kStateZero}};
  ReplyMsg bs = c->ReadChunk();
  ASSERT_EQ(bs.type, kReplyTypeBlockStatus) << bs.data;
  // The view may describe the zeroed block as zero or as data; everything else is exact.
  auto got = Descriptors(bs.data);
  if (got.size() == 3) want_extents = {{16384, 0}, {48 * 1024, kStateHole | kStateZero}};
  if (got.size() == 4 && got[1].second == (kStateHole | kStateZero)) want_extents[1].second = got[1].second;
  EXPECT_EQ(got, want_extents);
  c->SendRequest(kCmdWrite, 3, 0, 4, 0, "nope");
  ReplyMsg w = c->ReadChunk();
  EXPECT_EQ(w.error, kEperm);

  auto app = Connect(replica_catalog_);
  app->Go("@latest-app-consistent");
  app->SendRequest(kCmdRead, 1, 4096, 4096);
  EXPECT_EQ(app->ReadChunk().data, Pattern(16384, 3).substr(4096, 4096));  // before the zeroing
}

TEST_F(ViewSessionTest, OverlayTakesWritesOfAnyAlignmentAndLeavesThePointAlone) {
  ASSERT_TRUE(replica_->CreateOverlay("o", 3).ok());
  auto c = Connect(replica_catalog_);
  uint16_t flags = c->Go("overlay/o", /*structured=*/false);
  EXPECT_EQ(flags & kTransReadOnly, 0);
  c->SendRequest(kCmdWrite, 1, 4000, 200, kCmdFlagFua, std::string(200, 'w'));  // across a block edge
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  c->SendRequest(kCmdWriteZeroes, 2, 10, 20);
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  c->SendRequest(kCmdWrite, 3, 0, 0);  // empty: nothing to do, still answered
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  c->SendRequest(kCmdWrite, 4, kDiskSize - 3, 4, 0, "past");
  EXPECT_EQ(c->ReadSimpleReply().error, kEnospc);
  c->SendRequest(kCmdFlush, 5, 0, 0);
  EXPECT_EQ(c->ReadSimpleReply().error, 0u);
  std::string want = Pattern(16384, 3);
  std::fill_n(want.begin() + 4096, 4096, '\0');  // seq 3 zeroed the second block
  std::fill_n(want.begin() + 10, 20, '\0');
  std::fill_n(want.begin() + 4000, 200, 'w');
  c->SendRequest(kCmdRead, 6, 0, 16384);
  EXPECT_EQ(FirstDifference(c->ReadSimpleReply(16384).data, want), kNoDifference);

  auto v = Connect(replica_catalog_);
  v->Go("@3", /*structured=*/false);
  v->SendRequest(kCmdRead, 1, 0, 8192);
  std::string point = Pattern(8192, 3);
  std::fill_n(point.begin() + 4096, 4096, '\0');
  EXPECT_EQ(FirstDifference(v->ReadSimpleReply(8192).data, point), kNoDifference);
}

// Regression: a name that is not a point (or a point that does not exist) was answered with
// NBD_REP_ERR_PLATFORM, which qemu reports as "Server lacks support for option 7 (go)" and
// libnbd as "Operation not supported". It is an unknown export.
TEST_F(ViewSessionTest, BadPointNamesAreUnknownExportsNamingTheProblem) {
  auto c = Connect(replica_catalog_);
  c->Greet();
  for (std::string name : {"@yesterday", "@99", "@", "overlay/nosuch", "plain"}) {
    c->SendOption(kOptGo, RawClient::GoData(name));
    OptionReplyMsg r = c->ReadOptionReply();
    EXPECT_EQ(r.type, kRepErrUnknown) << name << ": " << r.data;
    EXPECT_FALSE(r.data.empty()) << name;
  }
  c->SendOption(kOptGo, RawClient::GoData("@2"));
  EXPECT_EQ(c->ReadUntilFinal().type, kRepAck);
}

// The splitter served over NBD, on a disk and pending log that lose what was not synced.
class SplitterSessionTest : public SessionTest {
 protected:
  void SetUp() override {
    auto disk = env_.OpenFile("/disk.img", OpenMode::kCreate);
    ASSERT_TRUE(disk.ok());
    ASSERT_TRUE((*disk)->Truncate(kDiskSize).ok());
    ASSERT_TRUE((*disk)->Sync().ok());
    ASSERT_TRUE(env_.SyncDir("/").ok());
    journal::CreateParams p;
    p.size = kDiskSize;
    auto log = journal::Replica::Create("/pending", p, Opts());
    ASSERT_TRUE(log.ok()) << log.status().ToString();
    auto splitter = capture::Splitter::Open(&env_, "/disk.img", *log);
    ASSERT_TRUE(splitter.ok()) << splitter.status().ToString();
    splitter_catalog_->Add("", std::make_shared<SplitterExport>(std::move(*splitter)));
  }
  journal::ReplicaOptions Opts() {
    journal::ReplicaOptions o;
    o.env = &env_;
    o.clock = &clock_;
    return o;
  }
  std::string DiskBytes(uint64_t offset, size_t n) {
    auto f = env_.OpenFile("/disk.img", OpenMode::kRead);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    std::string out(n, '?');
    if (f.ok()) {
      EXPECT_TRUE((*f)->ReadAt(offset, n, out.data()).ok());
    }
    return out;
  }
  SimEnv env_;
  ManualClock clock_;
  std::shared_ptr<MemoryCatalog> splitter_catalog_ = std::make_shared<MemoryCatalog>();
};

// Multi-conn: a FLUSH answered on one connection makes durable every write answered before
// it on another, on the disk and in the pending log. A write answered after the flush is not
// durable until a flush of its own (power loss keeping only what was synced drops it).
TEST_F(SplitterSessionTest, FlushOnOneConnectionCoversWritesAnsweredOnAnother) {
  auto writer = Connect(splitter_catalog_);
  auto flusher = Connect(splitter_catalog_);
  EXPECT_TRUE(writer->Go() & kTransCanMultiConn);
  EXPECT_TRUE(flusher->Go() & kTransCanMultiConn);
  const std::string small = Pattern(8192, 5), large = Pattern(256 * 1024, 6), late = Pattern(4096, 7);
  writer->SendRequest(kCmdWrite, 1, 0, 8192, 0, small);  // served in a batch by the reader
  EXPECT_EQ(writer->ReadChunk().type, kReplyTypeNone);
  writer->SendRequest(kCmdWrite, 2, 65536, 256 * 1024, 0, large);  // served by a worker
  EXPECT_EQ(writer->ReadChunk().type, kReplyTypeNone);
  writer->SendRequest(kCmdWriteZeroes, 3, 8192, 4096, 0);
  EXPECT_EQ(writer->ReadChunk().type, kReplyTypeNone);
  flusher->SendRequest(kCmdFlush, 4, 0, 0);
  EXPECT_EQ(flusher->ReadChunk().type, kReplyTypeNone);
  writer->SendRequest(kCmdWrite, 5, 512 * 1024, 4096, 0, late);
  EXPECT_EQ(writer->ReadChunk().type, kReplyTypeNone);

  env_.CrashDropAll();  // power loss while both connections are open
  EXPECT_EQ(DiskBytes(0, 8192), small);
  EXPECT_EQ(DiskBytes(65536, large.size()), large);
  EXPECT_EQ(DiskBytes(512 * 1024, 4096), std::string(4096, '\0')) << "the late write survived unsynced";
  auto log = journal::Replica::Open("/pending", Opts());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  ASSERT_EQ((*log)->last_seq(), 3u) << "the log lost a flushed write or kept an unsynced one";
  auto view = (*log)->OpenView(3);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  std::string logged(65536 + large.size(), '?');
  ASSERT_TRUE((*view)->Read(0, logged.size(), logged.data()).ok());
  EXPECT_EQ(logged.substr(0, 8192), small);
  EXPECT_EQ(logged.substr(8192, 4096), std::string(4096, '\0'));
  EXPECT_EQ(logged.substr(65536), large);
}

}  // namespace
}  // namespace ferry::nbd::test
