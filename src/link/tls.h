// TLS for links: mutual TLS 1.3 over a Socket, with OpenSSL 3.
//
// TlsContext holds what a node proves and trusts: its certificate and key, and the CA that
// every peer's certificate must chain to. Both ends present a certificate and both verify
// the other's (a server refuses clients without one). If TlsFiles::expected_name is set, the
// peer's certificate must also carry that name (subjectAltName DNS, else CN); empty means the
// chain check alone decides. Contexts are immutable once made and shared by any number of
// streams (shared_ptr; each stream keeps its context alive).
//
// TlsStream is a Stream over one connection after a completed handshake. It owns the Socket
// (set non-blocking: waits happen in poll() without holding the stream's lock, so one reader
// and one writer can run at once, each SSL call being serialised by a mutex). Shutdown, from
// any thread, sends close_notify where it can and shuts the socket down, which wakes blocked
// reads and writes. The handshake gives up if the peer makes no progress for 30 s, so a
// silent client cannot hold an acceptor forever.
//
// Errors:
//   kInvalidArgument    a TlsFiles path is empty, unreadable, not PEM, or the key does not
//                       match the certificate (the message names the file); or Accept was
//                       given a client context (or Connect a server one). Fix the config.
//   kFailedPrecondition the peer was refused or refused us: certificate not from the trusted
//                       CA, missing, expired, or not naming expected_name (the message has
//                       OpenSSL's reason and the peer). Retrying is useless until the
//                       certificates change. With TLS 1.3 a client learns that the server
//                       refused its certificate only on its first read, which then fails
//                       with this code.
//   kAborted            the peer closed the connection, or Shutdown was called (as Socket).
//   kIoError            anything else: the OS or the TLS layer failed (message says which);
//                       reconnecting may help.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "env/env.h"
#include "env/socket.h"
#include "env/stream.h"

struct ssl_ctx_st;
struct ssl_st;

namespace ferry {

// PEM file paths.
struct TlsFiles {
  std::string cert;  // this node's certificate, optionally followed by intermediates
  std::string key;   // its private key (unencrypted)
  std::string ca;    // the CA certificate(s) a peer's certificate must chain to
  std::string expected_name;  // if set, the peer's certificate must name this host
};

class TlsContext {
 public:
  // Files are read through env, so tests may serve them from a SimEnv.
  static Result<std::shared_ptr<TlsContext>> Server(const TlsFiles& files,
                                                    Env* env = Env::Posix());
  static Result<std::shared_ptr<TlsContext>> Client(const TlsFiles& files,
                                                    Env* env = Env::Posix());
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

 private:
  friend class TlsStream;
  TlsContext(ssl_ctx_st* ctx, bool server, std::string expected_name)
      : ctx_(ctx), server_(server), expected_name_(std::move(expected_name)) {}
  static Result<std::shared_ptr<TlsContext>> Make(const TlsFiles& files, Env* env, bool server);

  ssl_ctx_st* const ctx_;
  const bool server_;
  const std::string expected_name_;
};

class TlsStream final : public Stream {
 public:
  // Server side of the handshake on an accepted socket.
  static Result<std::unique_ptr<TlsStream>> Accept(std::shared_ptr<TlsContext> context,
                                                   std::unique_ptr<Socket> socket);
  // Client side of the handshake on a connected socket.
  static Result<std::unique_ptr<TlsStream>> Connect(std::shared_ptr<TlsContext> context,
                                                    std::unique_ptr<Socket> socket);
  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  Status ReadFull(void* dst, size_t n) override;
  Status WriteAll(std::string_view data) override;
  // Coalesces small pieces into records of up to 16 KiB; large pieces go out directly.
  Status WriteAllV(std::span<const std::string_view> pieces) override;
  void Shutdown() override;
  std::string PeerName() const override { return peer_; }
  // The verified peer certificate's subject ("CN=node-b"), to tell nodes apart in logs and
  // checks.
  const std::string& PeerSubject() const { return peer_subject_; }
  // The negotiated cipher suite ("TLS_AES_128_GCM_SHA256").
  std::string Cipher() const;

 private:
  enum class Phase { kHandshake, kData };

  TlsStream(std::shared_ptr<TlsContext> context, std::unique_ptr<Socket> socket, ssl_st* ssl);
  static Result<std::unique_ptr<TlsStream>> Handshake(std::shared_ptr<TlsContext> context,
                                                      std::unique_ptr<Socket> socket,
                                                      bool server);
  // Runs op(ssl, &done) (an SSL_*_ex call) under mu_ until it succeeds, waiting in poll()
  // with mu_ released whenever OpenSSL wants the socket. Returns the bytes done.
  template <typename Op>
  Result<size_t> Run(Phase phase, std::string_view what, Op op);
  Status Wait(Phase phase, short events);
  // Turns a failed SSL call into a Status; call with mu_ held, right after the call.
  Status ErrorLocked(Phase phase, std::string_view what, int ssl_error, int saved_errno);

  const std::shared_ptr<TlsContext> context_;
  const std::unique_ptr<Socket> socket_;
  const std::string peer_;
  std::string peer_subject_;  // set once, after the handshake
  std::mutex mu_;             // guards every SSL_* call on ssl_
  ssl_st* const ssl_;
  std::atomic<bool> shut_down_{false};
};

}  // namespace ferry
