// Stream sockets (TCP and Unix), blocking, behind a small interface: the only code that calls
// the OS for networking. Used by the NBD server and, later, links.
//
// Thread-safety: one reader and one writer may use a Socket at once; Shutdown may be called
// from any thread to wake both. Errors: kAborted when the peer closed the connection (EOF in
// the middle of a read or EPIPE on write), kIoError otherwise (message has errno text).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"
#include "env/stream.h"

namespace ferry {

class Socket final : public Stream {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() override;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  Status ReadFull(void* dst, size_t n) override;
  // One recv(2): at least one byte and at most n (n > 0), whatever has arrived.
  Result<size_t> ReadSome(void* dst, size_t n);
  Status WriteAll(std::string_view data) override;
  Status WriteAllV(std::span<const std::string_view> pieces) override;
  void Shutdown() override;
  std::string PeerName() const override;
  int fd() const { return fd_; }

 private:
  const int fd_;
};

class Listener {
 public:
  // host "127.0.0.1", "::1", "0.0.0.0"…; port 0 picks a free port (see port()).
  static Result<std::unique_ptr<Listener>> Tcp(const std::string& host, uint16_t port);
  // Removes a stale socket file at path first.
  static Result<std::unique_ptr<Listener>> Unix(const std::string& path);
  ~Listener();

  // Blocks for the next connection; kAborted once Shutdown was called.
  Result<std::unique_ptr<Socket>> Accept();
  void Shutdown();
  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }

 private:
  Listener(int fd, uint16_t port, std::string address, std::string unix_path)
      : fd_(fd), port_(port), address_(std::move(address)), unix_path_(std::move(unix_path)) {}
  const int fd_;
  const uint16_t port_;
  const std::string address_;  // "tcp://127.0.0.1:10809" or "unix:///run/x.sock"
  const std::string unix_path_;
};

Result<std::unique_ptr<Socket>> ConnectTcp(const std::string& host, uint16_t port);
// Listens on "tcp://HOST:PORT", "HOST:PORT", "unix:///PATH" or "unix:PATH".
Result<std::unique_ptr<Listener>> ListenOn(const std::string& address);
// Splits "HOST:PORT" or "[V6]:PORT" (kInvalidArgument naming the address if malformed).
Status SplitHostPort(const std::string& address, std::string* host, uint16_t* port);
Result<std::unique_ptr<Socket>> ConnectUnix(const std::string& path);

}  // namespace ferry
