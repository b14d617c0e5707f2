#include "link/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ferry {
namespace {

// A peer that sends nothing for this long during the handshake is dropped.
constexpr int kHandshakeIdleMillis = 30'000;
// Data-phase waits re-try the SSL call at least this often. Nothing should need it (in TLS
// 1.3 only SSL_read reads the socket), but if the other thread's call ever consumed the
// readiness this one waits for, the cost is a second, never a hang.
constexpr int kDataPollMillis = 1'000;
// Bytes per SSL_write call, so the writer does not hold the lock for long.
constexpr size_t kWriteChunk = 256 * 1024;
// One TLS record: pieces smaller than this are coalesced by WriteAllV.
constexpr size_t kRecordBytes = 16 * 1024;
// TLS 1.3 suites in the order a link prefers them.
constexpr char kLinkCipherSuites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using KeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using CtxPtr = std::unique_ptr<SSL_CTX, Deleter<SSL_CTX, SSL_CTX_free>>;

// Drains this thread's OpenSSL error queue into "reason; reason".
std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    char buf[256];
    if (reason == nullptr) {
      ERR_error_string_n(e, buf, sizeof buf);
      reason = buf;
    }
    if (!out.empty()) out += "; ";
    out += reason;
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

// Alerts by which a peer says it does not accept our certificate (RFC 8446 section 6.2).
bool IsRefusalAlert(int alert) {
  switch (alert) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------- socket BIO
// OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE on a closed
// connection; this one uses send(MSG_NOSIGNAL), like Socket.

struct FdBio {
  int fd;
  bool eof = false;
};

int FdBioWrite(BIO* bio, const char* data, size_t n, size_t* written) {
  BIO_clear_retry_flags(bio);
  auto* s = static_cast<FdBio*>(BIO_get_data(bio));
  for (;;) {
    ssize_t w = ::send(s->fd, data, n, MSG_NOSIGNAL);
    if (w >= 0) {
      *written = static_cast<size_t>(w);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(bio);
    return 0;
  }
}

int FdBioRead(BIO* bio, char* data, size_t n, size_t* read) {
  BIO_clear_retry_flags(bio);
  auto* s = static_cast<FdBio*>(BIO_get_data(bio));
  for (;;) {
    ssize_t r = ::recv(s->fd, data, n, 0);
    if (r > 0) {
      *read = static_cast<size_t>(r);
      return 1;
    }
    if (r == 0) {
      s->eof = true;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(bio);
    return 0;
  }
}

long FdBioCtrl(BIO* bio, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return static_cast<FdBio*>(BIO_get_data(bio))->eof ? 1 : 0;
    default:
      return 0;
  }
}

int FdBioDestroy(BIO* bio) {
  delete static_cast<FdBio*>(BIO_get_data(bio));
  BIO_set_data(bio, nullptr);
  return 1;
}

BIO* NewFdBio(int fd) {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ferry socket");
    BIO_meth_set_write_ex(m, FdBioWrite);
    BIO_meth_set_read_ex(m, FdBioRead);
    BIO_meth_set_ctrl(m, FdBioCtrl);
    BIO_meth_set_destroy(m, FdBioDestroy);
    return m;
  }();
  BIO* bio = BIO_new(method);
  if (bio == nullptr) return nullptr;
  BIO_set_data(bio, new FdBio{fd});
  BIO_set_init(bio, 1);
  return bio;
}

// ---------------------------------------------------------------- loading PEM files

int NoPassword(char*, int, int, void*) { return 0; }  // never prompt on a terminal

Result<BioPtr> ReadPem(Env* env, const std::string& path, std::string_view field,
                       std::string_view what) {
  if (path.empty()) {
    return InvalidArgument("TlsFiles." + std::string(field) + " is empty: mutual TLS needs " +
                           std::string(what));
  }
  Result<std::string> text = ReadFileToString(env, path);
  if (!text.ok()) {
    return InvalidArgument("cannot read " + std::string(what) + " from " + path + " (" +
                           text.status().ToString() +
                           "); check the path and that Ferry may read the file");
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || BIO_write(bio.get(), text->data(), static_cast<int>(text->size())) !=
                            static_cast<int>(text->size())) {
    return Internal("cannot buffer " + path + ": " + OpenSslErrors());
  }
  return bio;
}

Status NotPem(const std::string& path, std::string_view what) {
  return InvalidArgument(path + " does not hold " + std::string(what) + " in PEM (" +
                         OpenSslErrors() + "); give a PEM file (-----BEGIN ...-----)");
}

// Reads every certificate in a PEM file; the end of the file ends the list.
Result<std::vector<X509Ptr>> ReadCerts(Env* env, const std::string& path, std::string_view field,
                                       std::string_view what) {
  ASSIGN_OR_RETURN(BioPtr bio, ReadPem(env, path, field, what));
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  for (;;) {
    X509* x = certs.empty() ? PEM_read_bio_X509_AUX(bio.get(), nullptr, NoPassword, nullptr)
                            : PEM_read_bio_X509(bio.get(), nullptr, NoPassword, nullptr);
    if (x == nullptr) break;
    certs.emplace_back(x);
  }
  unsigned long last = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  if (certs.empty() || (last != 0 && !clean_end)) return NotPem(path, what);
  ERR_clear_error();
  return certs;
}

Status LoadIdentity(SSL_CTX* ctx, const TlsFiles& files, Env* env) {
  ASSIGN_OR_RETURN(std::vector<X509Ptr> chain,
                   ReadCerts(env, files.cert, "cert", "this node's certificate"));
  if (SSL_CTX_use_certificate(ctx, chain[0].get()) != 1) {
    return InvalidArgument("certificate " + files.cert + " is not usable (" + OpenSslErrors() +
                           "); give this node's PEM certificate");
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add1_chain_cert(ctx, chain[i].get()) != 1) {
      return InvalidArgument("intermediate certificate " + std::to_string(i) + " in " +
                             files.cert + " is not usable (" + OpenSslErrors() + ")");
    }
  }
  ASSIGN_OR_RETURN(BioPtr key_bio, ReadPem(env, files.key, "key", "this node's private key"));
  ERR_clear_error();
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, NoPassword, nullptr));
  if (key == nullptr) return NotPem(files.key, "an unencrypted private key");
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return InvalidArgument("private key " + files.key + " does not match certificate " +
                           files.cert + " (" + OpenSslErrors() +
                           "); give the key the certificate was issued for");
  }
  return Status::Ok();
}

Status LoadTrust(SSL_CTX* ctx, const TlsFiles& files, Env* env, bool server) {
  ASSIGN_OR_RETURN(std::vector<X509Ptr> cas,
                   ReadCerts(env, files.ca, "ca", "the CA certificate peers must chain to"));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const X509Ptr& ca : cas) {
    if (X509_STORE_add_cert(store, ca.get()) != 1) {
      return InvalidArgument("CA certificate in " + files.ca + " is not usable (" +
                             OpenSslErrors() + ")");
    }
    // Tells clients which CAs the server accepts, so they can pick a certificate.
    if (server) SSL_CTX_add_client_CA(ctx, ca.get());
  }
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------- TlsContext

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

Result<std::shared_ptr<TlsContext>> TlsContext::Server(const TlsFiles& files, Env* env) {
  return Make(files, env, true);
}

Result<std::shared_ptr<TlsContext>> TlsContext::Client(const TlsFiles& files, Env* env) {
  return Make(files, env, false);
}

Result<std::shared_ptr<TlsContext>> TlsContext::Make(const TlsFiles& files, Env* env,
                                                     bool server) {
  ERR_clear_error();
  CtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (ctx == nullptr) return Internal("SSL_CTX_new: " + OpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  // AES-128-GCM first: a link encrypts every byte it carries, and on AES-NI it costs about a
  // tenth less CPU than AES-256-GCM (`openssl speed`, bench/RESULTS.md) with the same
  // authenticity. The server's order decides, so a node talking to an older one still picks it.
  if (SSL_CTX_set_ciphersuites(ctx.get(), kLinkCipherSuites) != 1) {
    return Internal("SSL_CTX_set_ciphersuites: " + OpenSslErrors());
  }
  if (server) SSL_CTX_set_options(ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // Read-ahead: one recv(2) fills a 256 KiB buffer with many records, instead of two calls
  // (header, then body) per 16 KiB record. Run() calls SSL_read before it polls, so records
  // already buffered are never waited for.
  SSL_CTX_set_read_ahead(ctx.get(), 1);
  SSL_CTX_set_default_read_buffer_len(ctx.get(), 256 * 1024);
  // Links are long-lived; resumption would only add post-handshake traffic.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  if (server) SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_verify(ctx.get(),
                     SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
  RETURN_IF_ERROR(LoadIdentity(ctx.get(), files, env));
  RETURN_IF_ERROR(LoadTrust(ctx.get(), files, env, server));
  return std::shared_ptr<TlsContext>(new TlsContext(ctx.release(), server, files.expected_name));
}

// ---------------------------------------------------------------- TlsStream

std::string TlsStream::Cipher() const { return SSL_get_cipher_name(ssl_); }

TlsStream::TlsStream(std::shared_ptr<TlsContext> context, std::unique_ptr<Socket> socket,
                     SSL* ssl)
    : context_(std::move(context)),
      socket_(std::move(socket)),
      peer_(socket_->PeerName()),
      ssl_(ssl) {}

TlsStream::~TlsStream() {
  if (!shut_down_.load() && SSL_is_init_finished(ssl_)) {
    SSL_shutdown(ssl_);  // best effort: tells the peer this was a clean close
  }
  SSL_free(ssl_);
  ERR_clear_error();
}

Result<std::unique_ptr<TlsStream>> TlsStream::Accept(std::shared_ptr<TlsContext> context,
                                                     std::unique_ptr<Socket> socket) {
  return Handshake(std::move(context), std::move(socket), true);
}

Result<std::unique_ptr<TlsStream>> TlsStream::Connect(std::shared_ptr<TlsContext> context,
                                                      std::unique_ptr<Socket> socket) {
  return Handshake(std::move(context), std::move(socket), false);
}

Result<std::unique_ptr<TlsStream>> TlsStream::Handshake(std::shared_ptr<TlsContext> context,
                                                        std::unique_ptr<Socket> socket,
                                                        bool server) {
  if (context->server_ != server) {
    return InvalidArgument(server ? "TlsStream::Accept needs a context from TlsContext::Server"
                                  : "TlsStream::Connect needs a context from TlsContext::Client");
  }
  int fd = socket->fd();
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return IoError("cannot make the socket non-blocking: " + std::string(std::strerror(errno)));
  }
  ERR_clear_error();
  SSL* ssl = SSL_new(context->ctx_);
  BIO* bio = ssl ? NewFdBio(fd) : nullptr;
  if (bio == nullptr) {
    SSL_free(ssl);
    return Internal("cannot set up TLS: " + OpenSslErrors());
  }
  SSL_set_bio(ssl, bio, bio);
  const std::string& name = context->expected_name_;
  if (!name.empty()) {
    if (SSL_set1_host(ssl, name.c_str()) != 1 ||
        (!server && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1)) {
      SSL_free(ssl);
      return InvalidArgument("TlsFiles.expected_name \"" + name +
                             "\" is not a usable host name: " + OpenSslErrors());
    }
  }
  if (server) {
    SSL_set_accept_state(ssl);
  } else {
    SSL_set_connect_state(ssl);
  }
  std::unique_ptr<TlsStream> stream(new TlsStream(std::move(context), std::move(socket), ssl));
  Result<size_t> done = stream->Run(Phase::kHandshake, "handshake", [](SSL* s, size_t* n) {
    *n = 0;
    return SSL_do_handshake(s);
  });
  if (!done.ok()) {
    // Read what the peer already sent, so closing sends FIN rather than RST and the peer
    // gets to read our alert.
    char sink[4096];
    while (::recv(fd, sink, sizeof sink, 0) > 0) {
    }
    return done.status();
  }
  if (X509* cert = SSL_get0_peer_certificate(ssl)) {
    BioPtr out(BIO_new(BIO_s_mem()));
    if (out != nullptr &&
        X509_NAME_print_ex(out.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
      char* text = nullptr;
      long len = BIO_get_mem_data(out.get(), &text);
      stream->peer_subject_.assign(text, static_cast<size_t>(len));
    }
  }
  ERR_clear_error();
  return stream;
}

template <typename Op>
Result<size_t> TlsStream::Run(Phase phase, std::string_view what, Op op) {
  for (;;) {
    if (shut_down_.load()) return Aborted("TLS stream to " + peer_ + " was shut down");
    int ssl_error;
    {
      std::lock_guard lock(mu_);
      ERR_clear_error();
      errno = 0;
      size_t done = 0;
      int rc = op(ssl_, &done);
      if (rc > 0) return done;
      int saved_errno = errno;
      ssl_error = SSL_get_error(ssl_, rc);
      if (ssl_error != SSL_ERROR_WANT_READ && ssl_error != SSL_ERROR_WANT_WRITE) {
        return ErrorLocked(phase, what, ssl_error, saved_errno);
      }
    }
    RETURN_IF_ERROR(Wait(phase, ssl_error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT));
  }
}

Status TlsStream::Wait(Phase phase, short events) {
  pollfd p{socket_->fd(), events, 0};
  int timeout = phase == Phase::kHandshake ? kHandshakeIdleMillis : kDataPollMillis;
  for (;;) {
    if (shut_down_.load()) return Aborted("TLS stream to " + peer_ + " was shut down");
    int r = ::poll(&p, 1, timeout);
    if (r > 0) return Status::Ok();  // ready, or an error the next SSL call will report
    if (r == 0) {
      if (phase == Phase::kData) return Status::Ok();
      return IoError("TLS handshake with " + peer_ + ": no progress for " +
                     std::to_string(kHandshakeIdleMillis / 1000) +
                     " s; check that the peer speaks TLS to this port");
    }
    if (errno == EINTR) continue;
    return IoError("poll: " + std::string(std::strerror(errno)));
  }
}

Status TlsStream::ErrorLocked(Phase phase, std::string_view what, int ssl_error,
                              int saved_errno) {
  std::string during = phase == Phase::kHandshake ? " during the TLS handshake" : "";
  if (shut_down_.load()) return Aborted("TLS stream to " + peer_ + " was shut down");
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      return Aborted("connection closed by peer " + peer_);
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (saved_errno == 0 || saved_errno == EPIPE || saved_errno == ECONNRESET) {
        return Aborted("connection closed by peer " + peer_ + during);
      }
      return IoError("TLS " + std::string(what) + " with " + peer_ + ": " +
                     std::strerror(saved_errno));
    case SSL_ERROR_SSL:
      break;
    default:
      ERR_clear_error();
      return IoError("TLS " + std::string(what) + " with " + peer_ + ": SSL error " +
                     std::to_string(ssl_error));
  }
  unsigned long first = ERR_peek_error();
  int reason = ERR_GET_LIB(first) == ERR_LIB_SSL ? ERR_GET_REASON(first) : 0;
  if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
    ERR_clear_error();
    return Aborted("connection closed by peer " + peer_ + during);
  }
  std::string reasons = OpenSslErrors();
  if (phase == Phase::kHandshake) {
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      reasons += std::string("; peer certificate: ") + X509_verify_cert_error_string(verify);
    }
    return FailedPrecondition("TLS handshake with " + peer_ + " failed: " + reasons +
                              "; check that each node's certificate is current, signed by the "
                              "CA the other trusts, and names the expected host");
  }
  if (reason > SSL_AD_REASON_OFFSET && IsRefusalAlert(reason - SSL_AD_REASON_OFFSET)) {
    return FailedPrecondition("peer " + peer_ + " refused this node's certificate: " + reasons +
                              "; check that it is current and signed by the CA the peer trusts");
  }
  return IoError("TLS " + std::string(what) + " with " + peer_ + ": " + reasons);
}

Status TlsStream::ReadFull(void* dst, size_t n) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    ASSIGN_OR_RETURN(size_t got, Run(Phase::kData, "read", [p, n](SSL* s, size_t* done) {
                       return SSL_read_ex(s, p, n, done);
                     }));
    p += got;
    n -= got;
  }
  return Status::Ok();
}

Status TlsStream::WriteAll(std::string_view data) {
  while (!data.empty()) {
    size_t chunk = std::min(data.size(), kWriteChunk);
    ASSIGN_OR_RETURN(size_t put, Run(Phase::kData, "write", [&data, chunk](SSL* s, size_t* done) {
                       return SSL_write_ex(s, data.data(), chunk, done);
                     }));
    data.remove_prefix(put);
  }
  return Status::Ok();
}

Status TlsStream::WriteAllV(std::span<const std::string_view> pieces) {
  std::string batch;
  for (std::string_view piece : pieces) {
    if (piece.size() < kRecordBytes) {
      batch.append(piece);
      if (batch.size() < kRecordBytes) continue;
    }
    if (!batch.empty()) {
      RETURN_IF_ERROR(WriteAll(batch));
      batch.clear();
    }
    if (piece.size() >= kRecordBytes) RETURN_IF_ERROR(WriteAll(piece));
  }
  return WriteAll(batch);
}

void TlsStream::Shutdown() {
  if (shut_down_.exchange(true)) return;
  {
    std::lock_guard lock(mu_);
    SSL_shutdown(ssl_);  // close_notify, if the socket takes it now; never waits
    ERR_clear_error();
  }
  socket_->Shutdown();
}

}  // namespace ferry
