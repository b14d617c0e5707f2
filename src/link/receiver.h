// LinkReceiver: the target side of links (docs/protocols/link.md). Serves connections from
// source nodes, one volume per connection: answers HELLO with where to resume, verifies every
// frame and record, appends records durably to the volume's replica and acknowledges them,
// writes the initial sync into the replica's base and records its progress.
//
// A newer connection for a volume replaces the older one (a source that lost its connection
// reconnects before the target noticed). A corrupt frame ends the connection with REFUSE
// corrupt_frame and nothing of that frame applied.
//
// Thread-safety: Serve is called from one thread per connection; Inbound, Close and Stop from
// any.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/clock.h"
#include "env/stream.h"
#include "journal/replica.h"
#include "link/messages.h"

namespace ferry::link {

// Where the receiver finds (or creates) the replica a HELLO names. The node implements it.
class ReplicaDirectory {
 public:
  virtual ~ReplicaDirectory() = default;
  // The replica of hello.volume_id, created for it when there is none. Errors become REFUSE:
  // kFailedPrecondition "history_mismatch"/"volume_mismatch" (message says which), others
  // "unavailable".
  virtual Result<std::shared_ptr<journal::Replica>> ReplicaFor(const Hello& hello) = 0;
};

struct InboundStatus {
  std::string volume;
  std::string volume_id;
  std::string peer;
  bool connected = false;
  uint64_t durable_seq = 0;
  uint64_t frames = 0;
  uint64_t wire_bytes = 0;
  uint64_t records = 0;
  bool initial_sync = false;
  uint64_t sync_offset = 0;
  uint64_t sync_total = 0;  // the volume's allocated bytes, as the source counted them
  uint64_t sync_bytes = 0;  // bytes received by the initial sync so far
  int64_t sync_started_ns = 0;
  std::string last_error;
};

struct ReceiverOptions {
  Clock* clock = SystemClock::Default();
  uint64_t sync_save_bytes = 64ull << 20;  // initial sync: make progress durable this often
};

class LinkReceiver {
 public:
  LinkReceiver(ReplicaDirectory* directory, ReceiverOptions options = {});
  ~LinkReceiver();
  // Serves one connection until it ends; returns why (Ok when the peer closed cleanly).
  Status Serve(std::unique_ptr<Stream> stream);
  // Ends every connection; Serve calls return.
  void Stop();
  // Ends the connection of this volume id (hex), if any, and forgets its status (its replica
  // was removed). The source may connect again.
  void Close(const std::string& volume_id);
  std::vector<InboundStatus> Inbound() const;

 private:
  struct Conn;
  ferry::Status Run(Conn* c);
  // ACK of the newest durable seq and sync_offset (kNoSync once the sync is finished).
  ferry::Status SendAck(Conn* c, uint64_t sync_offset);
  // Writes one verified SYNC_DATA into the base; saves the progress and acknowledges it when
  // due. Runs on the connection's SyncApplier thread.
  ferry::Status ApplySyncData(Conn* c, const SyncData& d);
  ferry::Status Handshake(Conn* c);

  ReplicaDirectory* directory_;
  const ReceiverOptions options_;
  mutable std::mutex mu_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Conn>> by_volume_;  // volume id hex -> current conn
  std::map<std::string, InboundStatus> last_;               // volume id hex -> last status
  std::map<std::string, std::shared_ptr<std::mutex>> volume_mu_;
};

}  // namespace ferry::link
