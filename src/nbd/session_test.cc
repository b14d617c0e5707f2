// The NBD handshake, byte for byte: option haggling as a raw client does it, including the
// malformed and hostile cases real clients (tests/nbd_clients.sh) never send.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "nbd/session_test_util.h"

namespace ferry::nbd::test {
namespace {

// ---------------------------------------------------------------- handshake

TEST_F(SessionTest, BadOptionMagicClosesTheConnection) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptList, "", 0x1122334455667788ull);
  EXPECT_TRUE(c->ServerClosed());
}

TEST_F(SessionTest, OptionLongerThan64KiBClosesTheConnection) {
  auto c = Connect();
  c->Greet();
  std::string h;
  AppendBe<uint64_t>(&h, kMagicOption);
  AppendBe<uint32_t>(&h, kOptGo);
  AppendBe<uint32_t>(&h, kMaxOptionBytes + 1);
  c->Send(h);
  EXPECT_TRUE(c->ServerClosed());
}

TEST_F(SessionTest, OptionOfExactly64KiBIsReadAndAnswered) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptList, std::string(kMaxOptionBytes, 'x'));
  OptionReplyMsg r = c->ReadOptionReply();
  EXPECT_EQ(r.option, kOptList);
  EXPECT_EQ(r.type, kRepErrInvalid);
}

TEST_F(SessionTest, UnknownClientFlagsCloseTheConnection) {
  auto c = Connect();
  c->Greet(kClientFlagFixedNewstyle | 1u << 5);
  EXPECT_TRUE(c->ServerClosed());
}

TEST_F(SessionTest, UnknownOptionIsUnsupportedAndTheSessionContinues) {
  auto c = Connect();
  c->Greet();
  c->SendOption(4242, "whatever");
  OptionReplyMsg r = c->ReadOptionReply();
  EXPECT_EQ(r.option, 4242u);
  EXPECT_EQ(r.type, kRepErrUnsup);
  EXPECT_NE(r.data.find("4242"), std::string::npos) << r.data;
  c->SendOption(kOptGo, RawClient::GoData(""));
  EXPECT_EQ(c->ReadUntilFinal().type, kRepAck);
  c->SendRequest(kCmdRead, 1, 0, 16);
  ReplyMsg rr = c->ReadSimpleReply(16);
  EXPECT_EQ(rr.error, 0u);
  EXPECT_EQ(rr.data, Pattern(16, 1));
}

TEST_F(SessionTest, StartTlsIsRefusedByPolicy) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptStartTls, "");
  EXPECT_EQ(c->ReadOptionReply().type, kRepErrPolicy);
}

TEST_F(SessionTest, GoOnUnknownExportIsUnknownAndARetryWorks) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptGo, RawClient::GoData("nosuch"));
  OptionReplyMsg r = c->ReadOptionReply();
  EXPECT_EQ(r.option, kOptGo);
  EXPECT_EQ(r.type, kRepErrUnknown);
  EXPECT_NE(r.data.find("nosuch"), std::string::npos) << r.data;
  c->SendOption(kOptGo, RawClient::GoData("ro", {kInfoName, kInfoDescription}));
  std::map<uint16_t, std::string> infos;
  EXPECT_EQ(c->ReadUntilFinal(&infos).type, kRepAck);
  ASSERT_EQ(infos[kInfoExport].size(), 12u);
  auto e = reinterpret_cast<const uint8_t*>(infos[kInfoExport].data());
  EXPECT_EQ(GetBe<uint64_t>(e + 2), kDiskSize);
  EXPECT_TRUE(GetBe<uint16_t>(e + 10) & kTransReadOnly);
  EXPECT_EQ(infos[kInfoName].substr(2), "ro");
  EXPECT_EQ(infos[kInfoDescription].substr(2), "a read-only disk");
  ASSERT_EQ(infos[kInfoBlockSize].size(), 14u);
  auto b = reinterpret_cast<const uint8_t*>(infos[kInfoBlockSize].data());
  EXPECT_EQ(GetBe<uint32_t>(b + 2), 1u);
  EXPECT_EQ(GetBe<uint32_t>(b + 6), 4096u);
  EXPECT_EQ(GetBe<uint32_t>(b + 10), kMaxRequestBytes);
}

TEST_F(SessionTest, InfoWithMalformedLengthsIsInvalid) {
  auto c = Connect();
  c->Greet();
  auto expect_invalid = [&](const std::string& data) {
    c->SendOption(kOptInfo, data);
    OptionReplyMsg r = c->ReadOptionReply();
    EXPECT_EQ(r.option, kOptInfo);
    EXPECT_EQ(r.type, kRepErrInvalid) << "option data size " << data.size();
  };
  expect_invalid("");                        // shorter than name length + count
  expect_invalid(std::string("\0\0\0", 3));  // truncated name length
  std::string d;
  AppendBe<uint32_t>(&d, 100);  // name length past the end of the option
  d += "ro";
  AppendBe<uint16_t>(&d, 0);
  expect_invalid(d);
  d.clear();
  AppendBe<uint32_t>(&d, 5000);  // name longer than 4096 bytes
  d += std::string(5000, 'n');
  AppendBe<uint16_t>(&d, 0);
  expect_invalid(d);
  d = RawClient::GoData("ro", {kInfoName});
  d.pop_back();  // count says one info request, half of it is there
  expect_invalid(d);
  d = RawClient::GoData("ro");
  d += "xx";  // trailing bytes after the info requests
  expect_invalid(d);
  // Still negotiating: a good INFO then GO succeed.
  c->SendOption(kOptInfo, RawClient::GoData("ro"));
  EXPECT_EQ(c->ReadUntilFinal().type, kRepAck);
  c->SendOption(kOptGo, RawClient::GoData("ro"));
  EXPECT_EQ(c->ReadUntilFinal().type, kRepAck);
}

TEST_F(SessionTest, MetaContextBeforeStructuredRepliesIsInvalid) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptSetMetaContext, RawClient::MetaData("", {kMetaBaseAllocation}));
  OptionReplyMsg r = c->ReadOptionReply();
  EXPECT_EQ(r.option, kOptSetMetaContext);
  EXPECT_EQ(r.type, kRepErrInvalid);
  c->SendOption(kOptListMetaContext, RawClient::MetaData("", {}));
  EXPECT_EQ(c->ReadOptionReply().type, kRepErrInvalid);
}

TEST_F(SessionTest, MetaContextsAreListedAndSelected) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptStructuredReply, "");
  EXPECT_EQ(c->ReadOptionReply().type, kRepAck);
  c->SendOption(kOptStructuredReply, "");
  EXPECT_EQ(c->ReadOptionReply().type, kRepErrInvalid);  // twice
  c->SendOption(kOptListMetaContext, RawClient::MetaData("", {}));
  OptionReplyMsg r = c->ReadOptionReply();
  EXPECT_EQ(r.type, kRepMetaContext);
  EXPECT_EQ(r.data.substr(4), kMetaBaseAllocation);
  EXPECT_EQ(c->ReadOptionReply().type, kRepAck);
  // A query that matches nothing: just the ack.
  c->SendOption(kOptSetMetaContext, RawClient::MetaData("", {"x-other:thing"}));
  EXPECT_EQ(c->ReadOptionReply().type, kRepAck);
  c->SendOption(kOptSetMetaContext, RawClient::MetaData("nosuch", {kMetaBaseAllocation}));
  EXPECT_EQ(c->ReadOptionReply().type, kRepErrUnknown);
  std::string bad = RawClient::MetaData("", {kMetaBaseAllocation});
  bad.pop_back();  // the query runs past the option
  c->SendOption(kOptSetMetaContext, bad);
  EXPECT_EQ(c->ReadOptionReply().type, kRepErrInvalid);
}

TEST_F(SessionTest, AbortIsAcknowledgedThenTheServerCloses) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptAbort, "");
  OptionReplyMsg r = c->ReadOptionReply();
  EXPECT_EQ(r.option, kOptAbort);
  EXPECT_EQ(r.type, kRepAck);
  EXPECT_TRUE(c->ServerClosed());
}

TEST_F(SessionTest, ListNamesEveryExportWithItsDescription) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptList, "");
  std::vector<std::string> seen;
  for (;;) {
    OptionReplyMsg r = c->ReadOptionReply();
    if (r.type != kRepServer) {
      EXPECT_EQ(r.type, kRepAck);
      break;
    }
    auto p = reinterpret_cast<const uint8_t*>(r.data.data());
    uint32_t len = GetBe<uint32_t>(p);
    seen.push_back(r.data.substr(4, len) + "=" + r.data.substr(4 + len));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"=a writable disk", "ro=a read-only disk"}));
}

TEST_F(SessionTest, ExportNameOptionEntersTransmissionWithZeroPadding) {
  auto c = Connect();
  c->Greet(kClientFlagFixedNewstyle);  // no NO_ZEROES: 124 zero bytes follow
  c->SendOption(kOptExportName, "ro");
  std::string reply(10 + 124, '\1');
  ASSERT_TRUE(c->socket().ReadFull(reply.data(), reply.size()).ok());
  auto p = reinterpret_cast<const uint8_t*>(reply.data());
  EXPECT_EQ(GetBe<uint64_t>(p), kDiskSize);
  EXPECT_EQ(reply.substr(10), std::string(124, '\0'));
  c->SendRequest(kCmdRead, 7, 4096, 8);
  ReplyMsg r = c->ReadSimpleReply(8);
  EXPECT_EQ(r.cookie, 7u);
  EXPECT_EQ(r.data, Pattern(kDiskSize, 1).substr(4096, 8));
}

TEST_F(SessionTest, ExportNameOptionOnUnknownExportCloses) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptExportName, "nosuch");
  EXPECT_TRUE(c->ServerClosed());
}

// Regression: NBD_OPT_EXPORT_NAME advertised NBD_FLAG_SEND_DF without structured replies,
// which the protocol forbids (a client would then send DF and get EINVAL).
TEST_F(SessionTest, ExportNameWithoutStructuredRepliesDoesNotAdvertiseDf) {
  auto c = Connect();
  c->Greet();
  c->SendOption(kOptExportName, "");
  uint8_t reply[10];
  ASSERT_TRUE(c->socket().ReadFull(reply, 10).ok());
  uint16_t flags = GetBe<uint16_t>(reply + 8);
  EXPECT_EQ(flags & kTransSendDf, 0);
  EXPECT_EQ(flags & kTransReadOnly, 0);
  EXPECT_TRUE(flags & kTransSendWriteZeroes);
}

TEST_F(SessionTest, GoAdvertisesDfOnlyWithStructuredReplies) {
  EXPECT_EQ(Connect()->Go("", /*structured=*/false) & kTransSendDf, 0);
  EXPECT_TRUE(Connect()->Go("", /*structured=*/true) & kTransSendDf);
  uint16_t ro = Connect()->Go("ro");
  EXPECT_TRUE(ro & kTransReadOnly);
  EXPECT_EQ(ro & (kTransSendTrim | kTransSendWriteZeroes | kTransSendFua), 0);
}

}  // namespace
}  // namespace ferry::nbd::test
