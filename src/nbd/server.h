// NBD server: fixed-newstyle handshake and transmission over TCP or Unix sockets, serving the
// exports an ExportCatalog names. Spoken to by qemu, qemu-img, qemu-io, nbdcopy, nbdinfo,
// fio's nbd engine and the kernel's nbd-client.
//
// Supported: NBD_OPT_EXPORT_NAME, INFO, GO (with NBD_INFO_EXPORT/NAME/DESCRIPTION/BLOCK_SIZE),
// LIST, ABORT, STRUCTURED_REPLY, LIST/SET_META_CONTEXT (base:allocation); commands READ, WRITE,
// FLUSH, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS, DISC; command flags FUA (on any command:
// the reply waits until what the command wrote is durable), NO_HOLE (WRITE_ZEROES only: the
// range stays allocated and is not reported as a hole), DF (READ only), REQ_ONE (BLOCK_STATUS
// only). A flag on a command it does not belong to, or an unknown one, is EINVAL, and the
// command is not carried out. Unsupported options get NBD_REP_ERR_UNSUP; malformed options
// NBD_REP_ERR_INVALID; anything that leaves the stream unparseable (bad magic, oversized
// option or write payload) closes the connection. Never crashes or hangs on bad input (see
// fuzz/nbd_session_fuzz.cc).
//
// Each connection has a reading thread and a few workers, so requests complete out of order
// as the protocol allows. The reading thread serves small writes itself, a batch at a time
// (docs/decisions/0010); the workers serve the rest. Thread-safety: Listen and Stop may be
// called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "env/socket.h"
#include "nbd/export.h"

namespace ferry::nbd {

struct ServerOptions {
  size_t workers_per_connection = 16;
  size_t max_inflight_per_connection = 64;
  // Write payloads one connection may hold at once; beyond it the server stops reading until
  // replies go out (one write of up to kMaxRequestBytes is always admitted).
  size_t max_inflight_bytes_per_connection = 64u << 20;
};

struct ServerStats {
  uint64_t connections = 0;
  uint64_t requests = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t errors = 0;
};

class Session;

class Server {
 public:
  explicit Server(std::shared_ptr<ExportCatalog> catalog, ServerOptions options = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Starts accepting on the listener (any number of listeners).
  void Listen(std::unique_ptr<Listener> listener);
  // Serves one already-connected socket (tests, socket activation).
  void ServeConnection(std::unique_ptr<Socket> socket);
  // Stops accepting, disconnects every client, waits for all threads.
  void Stop();
  ServerStats stats() const;

 private:
  friend class Session;
  void AcceptLoop(Listener* listener);
  void Reap();

  std::shared_ptr<ExportCatalog> catalog_;
  const ServerOptions options_;
  std::mutex mu_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::thread> accept_threads_;
  struct Conn {
    std::shared_ptr<Session> session;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<std::unique_ptr<Conn>> conns_;

  std::atomic<uint64_t> connections_{0}, requests_{0}, bytes_read_{0}, bytes_written_{0},
      errors_{0};
};

}  // namespace ferry::nbd
