#include "launch/timed_socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace ferry::launch {

namespace {

Status Errno(const std::string& what) { return IoError(what + ": " + std::strerror(errno)); }

// poll() for events on fd until the deadline; 0 on timeout, >0 ready, <0 error (errno set).
int PollUntil(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left < 0) left = 0;
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

}  // namespace

Result<std::unique_ptr<Socket>> ConnectTcpWithin(const std::string& host, uint16_t port, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  const std::string where = host + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, res->ai_protocol);
  if (fd < 0) {
    ::freeaddrinfo(res);
    return Errno("socket");
  }
  int r = ::connect(fd, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  if (r != 0 && errno != EINPROGRESS) {
    Status s = Errno("connect " + where);
    ::close(fd);
    return s;
  }
  if (r != 0) {
    int ready = PollUntil(fd, POLLOUT, deadline);
    if (ready <= 0) {
      Status s = ready == 0 ? Unavailable("connect " + where + ": no answer within " + std::to_string(timeout_ms) + " ms")
                            : Errno("poll");
      ::close(fd);
      return s;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      errno = err;
      Status s = Errno("connect " + where);
      ::close(fd);
      return s;
    }
  }
  int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);  // ferry::Socket is blocking
  return std::make_unique<Socket>(fd);
}

Result<std::string> ReadSomeWithin(Socket& socket, size_t max_bytes, int64_t timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int ready = PollUntil(socket.fd(), POLLIN, deadline);
  if (ready == 0) return Unavailable("nothing to read within " + std::to_string(timeout_ms) + " ms");
  if (ready < 0) return Errno("poll");
  std::string buf(max_bytes, '\0');
  for (;;) {
    ssize_t n = ::recv(socket.fd(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return Aborted("connection closed by peer");
    if (n < 0) {
      if (errno == ECONNRESET) return Aborted("connection reset by peer");
      return Errno("recv");
    }
    buf.resize(static_cast<size_t>(n));
    return buf;
  }
}

}  // namespace ferry::launch
