#include "env/socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace ferry {
namespace {

Status Errno(const std::string& what) { return IoError(what + ": " + std::strerror(errno)); }

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

Socket::~Socket() { ::close(fd_); }

Result<size_t> Socket::ReadSome(void* dst, size_t n) {
  for (;;) {
    ssize_t r = ::recv(fd_, dst, n, 0);
    if (r > 0) return static_cast<size_t>(r);
    if (r == 0) return Aborted("connection closed by peer");
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return Aborted("connection reset by peer");
    return Errno("recv");
  }
}

Status Socket::ReadFull(void* dst, size_t n) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    ASSIGN_OR_RETURN(size_t got, ReadSome(p, n));
    p += got;
    n -= got;
  }
  return Status::Ok();
}

Status Socket::WriteAll(std::string_view data) {
  std::string_view one[1] = {data};
  return WriteAllV(one);
}

Status Socket::WriteAllV(std::span<const std::string_view> pieces) {
  std::vector<iovec> iov;
  iov.reserve(pieces.size());
  for (auto p : pieces) {
    if (!p.empty()) iov.push_back({const_cast<char*>(p.data()), p.size()});
  }
  size_t i = 0;
  while (i < iov.size()) {
    msghdr msg{};
    msg.msg_iov = iov.data() + i;
    msg.msg_iovlen = std::min<size_t>(iov.size() - i, IOV_MAX);
    ssize_t w = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return Aborted("connection closed by peer");
      return Errno("send");
    }
    size_t left = static_cast<size_t>(w);
    while (i < iov.size() && left >= iov[i].iov_len) {
      left -= iov[i].iov_len;
      ++i;
    }
    if (i < iov.size() && left > 0) {
      iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return Status::Ok();
}

void Socket::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

std::string Socket::PeerName() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown peer";
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  return "unix socket";
}

Listener::~Listener() {
  ::close(fd_);
  if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

Result<std::unique_ptr<Listener>> Listener::Tcp(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) return InvalidArgument("cannot resolve listen address " + host + ": " + gai_strerror(rc));
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0) {
    freeaddrinfo(res);
    return Errno("socket");
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    Status s = errno == EADDRINUSE
                   ? FailedPrecondition("address " + host + ":" + service +
                                        " is in use; choose another port or stop the other server")
                   : Errno("bind " + host + ":" + service);
    freeaddrinfo(res);
    ::close(fd);
    return s;
  }
  freeaddrinfo(res);
  if (::listen(fd, 128) != 0) {
    Status s = Errno("listen");
    ::close(fd);
    return s;
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t bound = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                            : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return std::unique_ptr<Listener>(
      new Listener(fd, bound, "tcp://" + shown + ":" + std::to_string(bound), ""));
}

Result<std::unique_ptr<Listener>> Listener::Unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return InvalidArgument("unix socket path too long (max " +
                           std::to_string(sizeof addr.sun_path - 1) + " bytes): " + path);
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0) {
    Status s = Errno("bind/listen " + path);
    ::close(fd);
    return s;
  }
  return std::unique_ptr<Listener>(new Listener(fd, 0, "unix://" + path, path));
}

Result<std::unique_ptr<Socket>> Listener::Accept() {
  for (;;) {
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) {
      SetNoDelay(fd);
      return std::make_unique<Socket>(fd);
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EINVAL || errno == EBADF) return Aborted("listener shut down");
    return Errno("accept");
  }
}

void Listener::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

Result<std::unique_ptr<Socket>> ConnectTcp(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) return InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
  int fd = ::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
  if (fd < 0 || ::connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    Status s = Errno("connect " + host + ":" + service);
    if (fd >= 0) ::close(fd);
    freeaddrinfo(res);
    return s;
  }
  freeaddrinfo(res);
  SetNoDelay(fd);
  return std::make_unique<Socket>(fd);
}

Result<std::unique_ptr<Socket>> ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return InvalidArgument("unix socket path too long");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    Status s = Errno("connect " + path);
    ::close(fd);
    return s;
  }
  return std::make_unique<Socket>(fd);
}

Status SplitHostPort(const std::string& address, std::string* host, uint16_t* port) {
  std::string hp = address.rfind("tcp://", 0) == 0 ? address.substr(6) : address;
  size_t colon = hp.rfind(':');
  if (colon == std::string::npos) {
    return InvalidArgument("address '" + address + "': use HOST:PORT (or tcp://HOST:PORT)");
  }
  std::string h = hp.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  int p = -1;
  try {
    size_t used = 0;
    p = std::stoi(hp.substr(colon + 1), &used);
    if (used != hp.size() - colon - 1) p = -1;
  } catch (...) {
    p = -1;
  }
  if (p < 0 || p > 65535) return InvalidArgument("address '" + address + "': bad port");
  *host = h.empty() ? "127.0.0.1" : h;
  *port = static_cast<uint16_t>(p);
  return Status::Ok();
}

Result<std::unique_ptr<Listener>> ListenOn(const std::string& address) {
  if (address.rfind("unix://", 0) == 0) return Listener::Unix(address.substr(7));
  if (address.rfind("unix:", 0) == 0) return Listener::Unix(address.substr(5));
  std::string host;
  uint16_t port;
  RETURN_IF_ERROR(SplitHostPort(address, &host, &port));
  return Listener::Tcp(host, port);
}

}  // namespace ferry
