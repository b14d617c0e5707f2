// TLS streams over loopback TCP with a PKI made at test time: data both ways, full duplex,
// who is refused and with which code, config errors, and Shutdown waking a blocked reader.
#include "link/tls.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "link/tls_test_util.h"

namespace ferry {
namespace {

using test::HandshakePair;
using test::TestPki;
using test::TlsPair;

std::string Pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = TestPki::Make().release(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(pki_, nullptr) << "could not make test certificates"; }

  static std::shared_ptr<TlsContext> ServerCtx(TlsFiles files) {
    auto ctx = TlsContext::Server(files);
    EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
    return ctx.ok() ? *ctx : nullptr;
  }
  static std::shared_ptr<TlsContext> ClientCtx(TlsFiles files) {
    auto ctx = TlsContext::Client(files);
    EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
    return ctx.ok() ? *ctx : nullptr;
  }
  // A connected pair that both handshook.
  static void Connected(std::unique_ptr<TlsStream>* server, std::unique_ptr<TlsStream>* client,
                        TlsFiles client_files = pki_->Client()) {
    TlsPair pair = HandshakePair(ServerCtx(pki_->Server()), ClientCtx(client_files));
    ASSERT_TRUE(pair.server && pair.server->ok()) << pair.server->status().ToString();
    ASSERT_TRUE(pair.client && pair.client->ok()) << pair.client->status().ToString();
    *server = std::move(*pair.server).value();
    *client = std::move(*pair.client).value();
  }

  static TestPki* pki_;
};

TestPki* TlsTest::pki_ = nullptr;

// ---------------------------------------------------------------- data

TEST_F(TlsTest, RoundTripBothWays) {
  std::unique_ptr<TlsStream> server, client;
  ASSERT_NO_FATAL_FAILURE(Connected(&server, &client));
  EXPECT_EQ(server->PeerSubject(), "CN=client");
  EXPECT_EQ(client->PeerSubject(), "CN=server");
  EXPECT_EQ(client->PeerName().rfind("127.0.0.1:", 0), 0u) << client->PeerName();
  EXPECT_EQ(client->Cipher(), "TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(server->Cipher(), "TLS_AES_128_GCM_SHA256");

  ASSERT_TRUE(client->WriteAll("hello server").ok());
  char buf[12];
  ASSERT_TRUE(server->ReadFull(buf, sizeof buf).ok());
  EXPECT_EQ(std::string(buf, sizeof buf), "hello server");

  // Small pieces are coalesced, big ones written directly; the bytes arrive in order.
  std::string big = Pattern(100'000, 7);
  std::vector<std::string_view> pieces = {"head", "", big, "mid", std::string_view(big).substr(5),
                                          "tail"};
  std::string expected;
  for (auto p : pieces) expected += p;
  ASSERT_TRUE(server->WriteAllV(pieces).ok());
  std::string got(expected.size(), '\0');
  ASSERT_TRUE(client->ReadFull(got.data(), got.size()).ok());
  EXPECT_TRUE(got == expected);
}

TEST_F(TlsTest, TenMiBBothWaysAtOnceFromReaderAndWriterThreads) {
  std::unique_ptr<TlsStream> server, client;
  ASSERT_NO_FATAL_FAILURE(Connected(&server, &client));
  const size_t kSize = 10 << 20;
  const std::string to_server = Pattern(kSize, 1), to_client = Pattern(kSize, 2);
  std::string at_server(kSize, '\0'), at_client(kSize, '\0');
  Status w1, w2, r1, r2;
  // Each side writes 10 MiB while reading 10 MiB: with a lock held across a blocking call,
  // both writers would fill the socket buffers and deadlock.
  std::thread threads[] = {
      std::thread([&] { w1 = client->WriteAll(to_server); }),
      std::thread([&] { w2 = server->WriteAll(to_client); }),
      std::thread([&] { r1 = server->ReadFull(at_server.data(), kSize); }),
      std::thread([&] { r2 = client->ReadFull(at_client.data(), kSize); }),
  };
  for (auto& t : threads) t.join();
  EXPECT_TRUE(w1.ok()) << w1.ToString();
  EXPECT_TRUE(w2.ok()) << w2.ToString();
  EXPECT_TRUE(r1.ok()) << r1.ToString();
  EXPECT_TRUE(r2.ok()) << r2.ToString();
  EXPECT_TRUE(at_server == to_server);
  EXPECT_TRUE(at_client == to_client);
}

TEST_F(TlsTest, PeerCloseIsAborted) {
  std::unique_ptr<TlsStream> server, client;
  ASSERT_NO_FATAL_FAILURE(Connected(&server, &client));
  client.reset();
  char c;
  Status s = server->ReadFull(&c, 1);
  EXPECT_EQ(s.code(), Code::kAborted) << s.ToString();
}

TEST_F(TlsTest, ShutdownWakesABlockedReadFull) {
  std::unique_ptr<TlsStream> server, client;
  ASSERT_NO_FATAL_FAILURE(Connected(&server, &client));
  Status read;
  std::thread reader([&] {
    char buf[16];
    read = server->ReadFull(buf, sizeof buf);
  });
  // Not a timing assertion: the result is the same if Shutdown comes first, but this way
  // the reader is usually blocked in poll() when it does.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server->Shutdown();
  reader.join();
  EXPECT_EQ(read.code(), Code::kAborted) << read.ToString();
  server->Shutdown();  // idempotent
  EXPECT_EQ(server->WriteAll("x").code(), Code::kAborted);
  // The peer sees a clean close.
  char c;
  Status s = client->ReadFull(&c, 1);
  EXPECT_EQ(s.code(), Code::kAborted) << s.ToString();
}

// ---------------------------------------------------------------- who is refused

TEST_F(TlsTest, ClientWithCertificateFromAnotherCaIsRefused) {
  TlsPair pair = HandshakePair(ServerCtx(pki_->Server()), ClientCtx(pki_->Rogue()));
  ASSERT_TRUE(pair.server && pair.client);
  ASSERT_FALSE(pair.server->ok());
  Status s = pair.server->status();
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("certificate verify failed"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("127.0.0.1:"), std::string::npos) << s.ToString();
  // With TLS 1.3 the client's handshake ends before the server has judged its certificate;
  // it hears the refusal on its first read.
  Status c = pair.client->status();
  if (pair.client->ok()) {
    char buf;
    c = (**pair.client)->ReadFull(&buf, 1);
  }
  EXPECT_EQ(c.code(), Code::kFailedPrecondition) << c.ToString();
  EXPECT_NE(c.message().find("unknown ca"), std::string::npos) << c.ToString();
}

TEST_F(TlsTest, ServerWithCertificateFromAnotherCaIsRefused) {
  TlsFiles client = pki_->Client();
  client.ca = pki_->Path("other-ca.pem");
  TlsPair pair = HandshakePair(ServerCtx(pki_->Server()), ClientCtx(client));
  ASSERT_TRUE(pair.server && pair.client);
  ASSERT_FALSE(pair.client->ok());
  Status c = pair.client->status();
  EXPECT_EQ(c.code(), Code::kFailedPrecondition) << c.ToString();
  EXPECT_NE(c.message().find("certificate verify failed"), std::string::npos) << c.ToString();
  ASSERT_FALSE(pair.server->ok());
  EXPECT_EQ(pair.server->status().code(), Code::kFailedPrecondition)
      << pair.server->status().ToString();
}

TEST_F(TlsTest, ClientWithoutCertificateIsRefused) {
  auto server_ctx = ServerCtx(pki_->Server());
  auto listener = Listener::Tcp("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  std::optional<Result<std::unique_ptr<TlsStream>>> accepted;
  std::thread server([&] {
    auto sock = (*listener)->Accept();
    if (sock.ok()) accepted.emplace(TlsStream::Accept(server_ctx, std::move(sock).value()));
  });
  // A plain OpenSSL client that trusts our CA but has no certificate of its own.
  auto sock = ConnectTcp("127.0.0.1", (*listener)->port());
  ASSERT_TRUE(sock.ok());
  timeval tv{10, 0};
  setsockopt((*sock)->fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_EQ(SSL_CTX_load_verify_locations(ctx, pki_->Path("ca.pem").c_str(), nullptr), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  // It prefers AES-256-GCM; the server's order (AES-128-GCM first) decides.
  EXPECT_EQ(SSL_CTX_set_ciphersuites(ctx, "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"), 1);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, (*sock)->fd());
  int connected = SSL_connect(ssl);
  EXPECT_EQ(connected, 1);  // the server refuses it only once it saw no certificate
  if (connected == 1) {
    EXPECT_STREQ(SSL_get_cipher_name(ssl), "TLS_AES_128_GCM_SHA256");
  }
  char c;
  int read = connected == 1 ? SSL_read(ssl, &c, 1) : -1;
  server.join();
  SSL_free(ssl);
  SSL_CTX_free(ctx);

  EXPECT_LE(read, 0);
  ASSERT_TRUE(accepted.has_value());
  ASSERT_FALSE(accepted->ok());
  Status s = accepted->status();
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("peer did not return a certificate"), std::string::npos)
      << s.ToString();
}

TEST_F(TlsTest, ExpectedNameMustBeInThePeerCertificate) {
  TlsFiles client = pki_->Client();
  client.expected_name = "localhost";
  TlsPair good = HandshakePair(ServerCtx(pki_->Server()), ClientCtx(client));
  ASSERT_TRUE(good.server && good.client);
  EXPECT_TRUE(good.server->ok()) << good.server->status().ToString();
  EXPECT_TRUE(good.client->ok()) << good.client->status().ToString();

  client.expected_name = "elsewhere.example";
  TlsPair bad = HandshakePair(ServerCtx(pki_->Server()), ClientCtx(client));
  ASSERT_TRUE(bad.server && bad.client);
  ASSERT_FALSE(bad.client->ok());
  Status c = bad.client->status();
  EXPECT_EQ(c.code(), Code::kFailedPrecondition) << c.ToString();
  EXPECT_NE(c.message().find("hostname mismatch"), std::string::npos) << c.ToString();
}

// ---------------------------------------------------------------- configuration errors

TEST_F(TlsTest, MissingKeyFileIsInvalidArgumentNamingTheFile) {
  TlsFiles files = pki_->Server();
  files.key = pki_->Path("no-such.key");
  auto ctx = TlsContext::Server(files);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), Code::kInvalidArgument) << ctx.status().ToString();
  EXPECT_NE(ctx.status().message().find(files.key), std::string::npos) << ctx.status().ToString();
  EXPECT_NE(ctx.status().message().find("private key"), std::string::npos);
}

TEST_F(TlsTest, EmptyPathIsInvalidArgument) {
  TlsFiles files = pki_->Client();
  files.cert.clear();
  auto ctx = TlsContext::Client(files);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), Code::kInvalidArgument);
  EXPECT_NE(ctx.status().message().find("TlsFiles.cert"), std::string::npos)
      << ctx.status().ToString();
}

TEST_F(TlsTest, FileThatIsNotPemIsInvalidArgumentNamingTheFile) {
  TlsFiles files = pki_->Server();
  files.ca = pki_->Path("server.ext");  // exists, but is no certificate
  auto ctx = TlsContext::Server(files);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), Code::kInvalidArgument) << ctx.status().ToString();
  EXPECT_NE(ctx.status().message().find(files.ca), std::string::npos) << ctx.status().ToString();
  EXPECT_NE(ctx.status().message().find("PEM"), std::string::npos) << ctx.status().ToString();
}

TEST_F(TlsTest, KeyOfAnotherCertificateIsInvalidArgument) {
  TlsFiles files = pki_->Server();
  files.key = pki_->Path("client.key");
  auto ctx = TlsContext::Server(files);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.status().code(), Code::kInvalidArgument) << ctx.status().ToString();
  EXPECT_NE(ctx.status().message().find("does not match"), std::string::npos)
      << ctx.status().ToString();
}

TEST_F(TlsTest, AcceptWithAClientContextIsInvalidArgument) {
  auto listener = Listener::Tcp("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  auto sock = ConnectTcp("127.0.0.1", (*listener)->port());
  ASSERT_TRUE(sock.ok());
  auto stream = TlsStream::Accept(ClientCtx(pki_->Client()), std::move(sock).value());
  ASSERT_FALSE(stream.ok());
  EXPECT_EQ(stream.status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace ferry
