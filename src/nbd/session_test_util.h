// Test helpers for the NBD session: RawClient, a byte-exact client that sends exactly what a
// test asks for and parses the replies, and SessionTest, a fixture serving two in-memory
// exports ("" writable, "ro" read-only) over socketpairs. Test-only; not thread-safe except
// that one thread may send while another reads.
#pragma once

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nbd/memory_export.h"
#include "nbd/protocol.h"
#include "nbd/server.h"

namespace ferry::nbd::test {

inline constexpr uint64_t kDiskSize = 1 << 20;

struct OptionReplyMsg {
  uint32_t option = 0;
  uint32_t type = 0;
  std::string data;
};

// One structured reply chunk, or a simple reply (then type is kReplyTypeNone or
// kReplyTypeError, and flags has kReplyFlagDone).
struct ReplyMsg {
  uint64_t cookie = 0;
  uint16_t flags = 0;
  uint16_t type = 0;
  uint32_t error = 0;  // simple replies and error chunks
  std::string data;    // read data, block status body, or error message
};

// A deliberately dumb NBD client: sends exactly the bytes a test asks for and parses replies.
// Every read times out (a hung server fails the test instead of blocking it).
class RawClient {
 public:
  explicit RawClient(std::unique_ptr<Socket> socket) : socket_(std::move(socket)) {
    timeval tv{10, 0};
    setsockopt(socket_->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(socket_->fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  // Reads the greeting and answers with client flags.
  void Greet(uint32_t client_flags = kClientFlagFixedNewstyle | kClientFlagNoZeroes) {
    uint8_t hello[18];
    ASSERT_TRUE(socket_->ReadFull(hello, 18).ok());
    ASSERT_EQ(GetBe<uint64_t>(hello), kMagicNbd);
    ASSERT_EQ(GetBe<uint64_t>(hello + 8), kMagicOption);
    ASSERT_EQ(GetBe<uint16_t>(hello + 16), kFlagFixedNewstyle | kFlagNoZeroes);
    std::string f;
    AppendBe<uint32_t>(&f, client_flags);
    Send(f);
  }

  void Send(std::string_view bytes) { ASSERT_TRUE(socket_->WriteAll(bytes).ok()); }

  void SendOption(uint32_t option, std::string_view data, uint64_t magic = kMagicOption) {
    std::string m;
    AppendBe<uint64_t>(&m, magic);
    AppendBe<uint32_t>(&m, option);
    AppendBe<uint32_t>(&m, static_cast<uint32_t>(data.size()));
    m += data;
    Send(m);
  }

  OptionReplyMsg ReadOptionReply() {
    OptionReplyMsg r;
    uint8_t h[20];
    Status s = socket_->ReadFull(h, 20);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return r;
    EXPECT_EQ(GetBe<uint64_t>(h), kMagicOptionReply);
    r.option = GetBe<uint32_t>(h + 8);
    r.type = GetBe<uint32_t>(h + 12);
    r.data.resize(GetBe<uint32_t>(h + 16));
    EXPECT_TRUE(socket_->ReadFull(r.data.data(), r.data.size()).ok());
    return r;
  }

  // Option data for NBD_OPT_INFO / NBD_OPT_GO.
  static std::string GoData(const std::string& name, std::vector<uint16_t> infos = {}) {
    std::string d;
    AppendBe<uint32_t>(&d, static_cast<uint32_t>(name.size()));
    d += name;
    AppendBe<uint16_t>(&d, static_cast<uint16_t>(infos.size()));
    for (uint16_t i : infos) AppendBe<uint16_t>(&d, i);
    return d;
  }
  // Option data for NBD_OPT_LIST/SET_META_CONTEXT.
  static std::string MetaData(const std::string& name, const std::vector<std::string>& queries) {
    std::string d;
    AppendBe<uint32_t>(&d, static_cast<uint32_t>(name.size()));
    d += name;
    AppendBe<uint32_t>(&d, static_cast<uint32_t>(queries.size()));
    for (const auto& q : queries) {
      AppendBe<uint32_t>(&d, static_cast<uint32_t>(q.size()));
      d += q;
    }
    return d;
  }

  // Replies to NBD_OPT_GO/INFO up to the final one; returns the final one and, in *infos,
  // the NBD_REP_INFO payloads by info type.
  OptionReplyMsg ReadUntilFinal(std::map<uint16_t, std::string>* infos = nullptr) {
    for (;;) {
      OptionReplyMsg r = ReadOptionReply();
      if (r.type != kRepInfo) return r;
      EXPECT_GE(r.data.size(), 2u);
      if (infos && r.data.size() >= 2) (*infos)[GetBe<uint16_t>(reinterpret_cast<const uint8_t*>(r.data.data()))] = r.data;
    }
  }

  // Negotiates up to transmission; returns the transmission flags.
  uint16_t Go(const std::string& name = "", bool structured = true, bool base_allocation = false) {
    Greet();
    if (structured) {
      SendOption(kOptStructuredReply, "");
      EXPECT_EQ(ReadOptionReply().type, kRepAck);
    }
    if (base_allocation) {
      SendOption(kOptSetMetaContext, MetaData(name, {kMetaBaseAllocation}));
      OptionReplyMsg m = ReadOptionReply();
      EXPECT_EQ(m.type, kRepMetaContext);
      EXPECT_EQ(ReadOptionReply().type, kRepAck);
    }
    SendOption(kOptGo, GoData(name));
    std::map<uint16_t, std::string> infos;
    OptionReplyMsg fin = ReadUntilFinal(&infos);
    EXPECT_EQ(fin.type, kRepAck) << fin.data;
    const std::string& e = infos[kInfoExport];
    EXPECT_EQ(e.size(), 12u);
    if (e.size() != 12) return 0;
    return GetBe<uint16_t>(reinterpret_cast<const uint8_t*>(e.data()) + 10);
  }

  void SendRequest(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length, uint16_t flags = 0,
                   std::string_view payload = {}) {
    Send(Request(type, cookie, offset, length, flags, payload));
  }
  static std::string Request(uint16_t type, uint64_t cookie, uint64_t offset, uint32_t length,
                             uint16_t flags = 0, std::string_view payload = {}) {
    std::string m;
    AppendBe<uint32_t>(&m, kMagicRequest);
    AppendBe<uint16_t>(&m, flags);
    AppendBe<uint16_t>(&m, type);
    AppendBe<uint64_t>(&m, cookie);
    AppendBe<uint64_t>(&m, offset);
    AppendBe<uint32_t>(&m, length);
    m += payload;
    return m;
  }

  // A simple reply; read_length is the data that follows a successful read (0 otherwise).
  ReplyMsg ReadSimpleReply(size_t read_length = 0) {
    ReplyMsg r;
    uint8_t h[16];
    Status s = socket_->ReadFull(h, 16);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return r;
    EXPECT_EQ(GetBe<uint32_t>(h), kMagicSimpleReply);
    r.error = GetBe<uint32_t>(h + 4);
    r.cookie = GetBe<uint64_t>(h + 8);
    r.flags = kReplyFlagDone;
    r.type = r.error ? kReplyTypeError : kReplyTypeNone;
    if (r.error == 0 && read_length) {
      r.data.resize(read_length);
      EXPECT_TRUE(socket_->ReadFull(r.data.data(), read_length).ok());
    }
    return r;
  }

  // One structured reply chunk. Read data chunks lose their offset (checked to be `offset`
  // when given); error chunks are split into error and message.
  ReplyMsg ReadChunk() {
    ReplyMsg r;
    uint8_t h[20];
    Status s = socket_->ReadFull(h, 20);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return r;
    EXPECT_EQ(GetBe<uint32_t>(h), kMagicStructuredReply);
    r.flags = GetBe<uint16_t>(h + 4);
    r.type = GetBe<uint16_t>(h + 6);
    r.cookie = GetBe<uint64_t>(h + 8);
    std::string body(GetBe<uint32_t>(h + 16), '\0');
    EXPECT_TRUE(socket_->ReadFull(body.data(), body.size()).ok());
    auto p = reinterpret_cast<const uint8_t*>(body.data());
    if (r.type == kReplyTypeError && body.size() >= 6) {
      r.error = GetBe<uint32_t>(p);
      uint16_t len = GetBe<uint16_t>(p + 4);
      EXPECT_EQ(6u + len, body.size());
      r.data = body.substr(6);
    } else if (r.type == kReplyTypeOffsetData && body.size() >= 8) {
      r.data = body.substr(8);
      last_offset_ = GetBe<uint64_t>(p);
    } else {
      r.data = body;
    }
    return r;
  }
  uint64_t last_offset() const { return last_offset_; }

  // True once the server has closed the connection (EOF); false if it still sends or is silent.
  bool ServerClosed() {
    char c;
    return socket_->ReadFull(&c, 1).code() == Code::kAborted;
  }

  Socket& socket() { return *socket_; }

 private:
  std::unique_ptr<Socket> socket_;
  uint64_t last_offset_ = 0;
};

inline std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7919 + (i >> 8)) & 0xff);
  return s;
}

// Where two disks differ (kNoDifference if they do not): readable failures for big strings.
inline constexpr size_t kNoDifference = SIZE_MAX;
inline size_t FirstDifference(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return std::min(a.size(), b.size());
  auto m = std::mismatch(a.begin(), a.end(), b.begin());
  return m.first == a.end() ? kNoDifference : static_cast<size_t>(m.first - a.begin());
}

// Extents of a base:allocation reply body: (length, flags) pairs after the context id.
inline std::vector<std::pair<uint32_t, uint32_t>> Descriptors(const std::string& body) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  auto p = reinterpret_cast<const uint8_t*>(body.data());
  EXPECT_EQ(body.size() % 8, 4u);
  for (size_t i = 4; i + 8 <= body.size(); i += 8) out.push_back({GetBe<uint32_t>(p + i), GetBe<uint32_t>(p + i + 4)});
  return out;
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() {
    std::string disk = Pattern(kDiskSize, 1);
    std::fill(disk.begin() + 64 * 1024, disk.begin() + 128 * 1024, '\0');  // a zero run
    rw_ = std::make_shared<MemoryExport>(disk, false, "a writable disk");
    ro_ = std::make_shared<MemoryExport>(disk, true, "a read-only disk");
    catalog_->Add("", rw_);
    catalog_->Add("ro", ro_);
  }
  // Before any fixture member goes away: sessions may still be flushing their exports, and
  // the server holds its catalog (and so, in derived fixtures, a replica on their SimEnv).
  void TearDown() override { server_.reset(); }

  // A client connected to a fresh session of the server (started on first use).
  std::unique_ptr<RawClient> Connect(std::shared_ptr<ExportCatalog> catalog = nullptr) {
    if (!server_) server_ = std::make_unique<Server>(catalog ? catalog : catalog_, options_);
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    server_->ServeConnection(std::make_unique<Socket>(fds[0]));
    return std::make_unique<RawClient>(std::make_unique<Socket>(fds[1]));
  }

  std::shared_ptr<MemoryCatalog> catalog_ = std::make_shared<MemoryCatalog>();
  std::shared_ptr<MemoryExport> rw_, ro_;
  ServerOptions options_;
  std::unique_ptr<Server> server_;
};

}  // namespace ferry::nbd::test
