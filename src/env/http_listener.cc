#include "env/http_listener.h"

#include <httplib.h>
#include <sys/socket.h>

#include "env/socket.h"

namespace ferry {

HttpListener::HttpListener() : http_(std::make_unique<httplib::Server>()) {
  http_->set_tcp_nodelay(true);
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

HttpListener::~HttpListener() { Stop(); }

void HttpListener::Stop() {
  http_->stop();
  if (thread_.joinable()) thread_.join();
}

Status HttpListener::Listen(const std::string& address, std::string_view what) {
  std::string host;
  uint16_t port;
  RETURN_IF_ERROR(SplitHostPort(address, &host, &port));
  if (port == 0) {
    port_ = http_->bind_to_any_port(host);
  } else {
    port_ = http_->bind_to_port(host, port) ? port : -1;
  }
  if (port_ <= 0) return IoError("cannot listen on " + address + " for " + std::string(what));
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  return Status::Ok();
}

}  // namespace ferry
