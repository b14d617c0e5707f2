#include "nbd/server.h"

#include "nbd/session.h"

namespace ferry::nbd {

Server::Server(std::shared_ptr<ExportCatalog> catalog, ServerOptions options)
    : catalog_(std::move(catalog)), options_(options) {}

Server::~Server() { Stop(); }

void Server::Listen(std::unique_ptr<Listener> listener) {
  std::lock_guard l(mu_);
  if (stopping_) return;
  Listener* raw = listener.get();
  listeners_.push_back(std::move(listener));
  accept_threads_.emplace_back([this, raw] { AcceptLoop(raw); });
}

void Server::AcceptLoop(Listener* listener) {
  for (;;) {
    auto socket = listener->Accept();
    if (!socket.ok()) {
      std::lock_guard l(mu_);
      if (stopping_ || socket.status().code() == Code::kAborted) return;
      continue;
    }
    ServeConnection(std::move(*socket));
  }
}

void Server::ServeConnection(std::unique_ptr<Socket> socket) {
  std::lock_guard l(mu_);
  if (stopping_) return;
  Reap();
  connections_.fetch_add(1);
  auto conn = std::make_unique<Conn>();
  conn->session = std::make_shared<Session>(this, catalog_.get(), std::move(socket), options_);
  Conn* raw = conn.get();
  conn->thread = std::thread([raw] {
    (void)raw->session->Run();
    raw->done.store(true);
  });
  conns_.push_back(std::move(conn));
}

// Joins finished connections' threads. Caller holds mu_.
void Server::Reap() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::Stop() {
  std::list<std::unique_ptr<Conn>> conns;
  std::vector<std::thread> accepts;
  {
    std::lock_guard l(mu_);
    if (stopping_ && listeners_.empty() && conns_.empty()) return;
    stopping_ = true;
    for (auto& listener : listeners_) listener->Shutdown();
    for (auto& c : conns_) c->session->Shutdown();
    conns.swap(conns_);
    accepts.swap(accept_threads_);
  }
  for (auto& t : accepts) t.join();
  for (auto& c : conns) c->thread.join();
  std::lock_guard l(mu_);
  listeners_.clear();
}

ServerStats Server::stats() const {
  return ServerStats{connections_.load(), requests_.load(), bytes_read_.load(),
                     bytes_written_.load(), errors_.load()};
}

}  // namespace ferry::nbd
