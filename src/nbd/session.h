// One NBD connection: the handshake, then the transmission phase until the client
// disconnects or the server stops. Internal to the server (and its fuzzer).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "env/socket.h"
#include "nbd/export.h"
#include "nbd/protocol.h"
#include "nbd/server.h"

namespace ferry::nbd {

class Session {
 public:
  Session(Server* server, ExportCatalog* catalog, std::unique_ptr<Socket> socket,
          const ServerOptions& options);
  // Runs the connection to its end. Returns why it ended (ok for a clean NBD_CMD_DISC/ABORT).
  Status Run();
  // Wakes a blocked Run so it ends soon.
  void Shutdown() { socket_->Shutdown(); }

 private:
  struct Job {
    Request req;
    std::string payload;  // write data
  };

  // Handshake; sets export_ when the client moved to transmission. Returns Aborted/ok when
  // the client went away or aborted (export_ stays null).
  Status Handshake();
  Status HandleInfoOrGo(uint32_t option, const std::string& data, bool* done);
  Status HandleMetaContext(uint32_t option, const std::string& data);
  Status OptionReply(uint32_t option, uint32_t type, std::string_view data = {});
  Status OptionError(uint32_t option, uint32_t type, const std::string& message);
  // The NBD_FLAG_* an export is offered with, given what was negotiated so far.
  uint16_t TransmissionFlags(const Export& e) const;

  Status Transmission();
  Status ReadPayload(size_t length, std::string* out);
  // Transmission reads go through rbuf_: one recv(2) takes in many queued small requests.
  Status Receive(void* dst, size_t n);
  // Payload buffers are reused (their bytes are overwritten, never zeroed first).
  std::string TakeBuffer();
  void GiveBack(std::string buf);
  void Worker();
  // Serves writes together (the reading thread's small ones) and empties the vector.
  void ServeSmallWrites(std::vector<Job>* writes);
  void Handle(Job& job);
  // Serves writes and answers them with one send.
  void HandleWrites(std::vector<Job>& batch);
  // Why a request's flags are refused (err 0: they are not).
  std::pair<uint32_t, std::string> FlagsRefusal(const Request& r) const;
  // Why a write, zero or trim with acceptable flags may not be served (err 0: it may).
  std::pair<uint32_t, std::string> ChangeRefusal(const Request& r) const;
  // Ends admitted requests: frees their slots and their payload bytes.
  void Release(size_t requests, size_t payload_bytes);
  // Sends a reply already encoded; a failed send ends the connection.
  void Send(std::string_view reply);
  // A reply could not be sent: the connection ends (the reading thread stops).
  void SendFailed();
  void AppendReplyOk(const Request& req, std::string* out) const;
  void AppendReplyError(const Request& req, uint32_t error, const std::string& message,
                        std::string* out) const;
  Status ReplyOk(const Request& req);
  Status ReplyError(const Request& req, uint32_t error, const std::string& message);
  Status ReplyRead(const Request& req, const std::string& data);
  // base:allocation descriptors for the requested range (one only with REQ_ONE); empty when
  // the extents describe nothing.
  static std::string ExtentDescriptors(const Request& req, const std::vector<Extent>& extents);
  Status ReplyBlockStatus(const Request& req, const std::string& descriptors);
  static uint32_t ErrorFor(const Status& s, bool write);

  Server* server_;
  ExportCatalog* catalog_;
  std::unique_ptr<Socket> socket_;
  const ServerOptions options_;

  bool no_zeroes_ = false;
  bool structured_ = false;
  bool base_allocation_ = false;
  std::shared_ptr<Export> export_;
  uint16_t trans_flags_ = 0;

  std::mutex write_mu_;  // one reply on the wire at a time
  std::mutex mu_;  // guards queue_, spare_, inflight_, inflight_bytes_, stopping_, write_failed_
  std::condition_variable work_cv_;   // workers wait for jobs
  std::condition_variable admit_cv_;  // the reading thread waits for a free slot
  bool reader_waiting_ = false;
  std::deque<Job> queue_;
  std::vector<std::string> spare_;  // buffers for GiveBack/TakeBuffer
  size_t spare_bytes_ = 0;          // their capacity
  std::string rbuf_;                // Receive's buffer (the reading thread's alone)
  size_t rbuf_pos_ = 0, rbuf_end_ = 0;
  size_t inflight_ = 0;        // admitted and not yet replied
  size_t inflight_bytes_ = 0;  // their write payloads
  bool stopping_ = false;
  bool write_failed_ = false;
};

}  // namespace ferry::nbd
