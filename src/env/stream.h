// Stream: a reliable, ordered byte stream (a TCP or Unix socket, or TLS over one). Links and
// the NBD server speak through this interface so a test can put a fault-injecting stream, or
// TLS, between two ends without either knowing.
//
// Thread-safety: one reader and one writer may use a Stream at once; Shutdown may be called
// from any thread to wake both. Errors: kAborted when the peer closed the connection (EOF in
// the middle of a read or EPIPE on write), kIoError otherwise (the message says why).
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace ferry {

class Stream {
 public:
  virtual ~Stream() = default;
  // Reads exactly n bytes. kAborted on a clean EOF before the first byte or in between.
  virtual Status ReadFull(void* dst, size_t n) = 0;
  virtual Status WriteAll(std::string_view data) = 0;
  virtual Status WriteAllV(std::span<const std::string_view> pieces) = 0;
  // Stops reads and writes in both directions (wakes blocked calls); idempotent.
  virtual void Shutdown() = 0;
  // Who is at the other end, for logs ("127.0.0.1:4001", "unix socket").
  virtual std::string PeerName() const = 0;
};

}  // namespace ferry
