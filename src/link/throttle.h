// Throttle: a token bucket that caps a link's bandwidth, optionally under a parent bucket
// (the node's cap shared by all its links), so Acquire takes from both levels.
//
// Model: the bucket holds up to burst() bytes and refills at rate() bytes per second, read
// from the Clock. Acquire(n) reserves n bytes at every limited level at once, in arrival
// order, and returns when every level has earned them back: a request is let through when
// the level holds min(n, burst) tokens, so a request larger than the burst goes into debt
// instead of waiting forever, and later requests wait the debt off. Reservations are FIFO,
// so a stream of small frames cannot starve a big one. Rate 0 means unlimited (that level
// neither waits nor counts).
//
// Time: the bucket reads time only through the Clock; Acquire waits with a condition
// variable on real time, so with a ManualClock tests check DelayNanosFor (exact integer
// arithmetic, no rounding drift) rather than block. SetRate and Cancel wake every waiter,
// which then recomputes its delay, so a new rate applies to requests already waiting.
//
// Ownership and threads: all methods are thread-safe; a parent and its children share one
// mutex. The clock and the parent must outlive the throttle.
//
// Errors: Acquire returns kAborted once Cancel was called on this throttle or an ancestor
// (the link or node is shutting down; stop sending). Cancel is final: later Acquire calls
// fail at once. Bytes of a cancelled request are given back to every level.
#pragma once

#include <cstdint>
#include <memory>

#include "base/clock.h"
#include "base/status.h"

namespace ferry {

class Throttle {
 public:
  // The burst is max(rate / 10, kMinBurstBytes): a tenth of a second of traffic, but never
  // less than one large frame.
  static constexpr uint64_t kMinBurstBytes = 256 * 1024;

  Throttle(Clock* clock, uint64_t rate_bytes_per_second, Throttle* parent = nullptr);
  ~Throttle();
  Throttle(const Throttle&) = delete;
  Throttle& operator=(const Throttle&) = delete;

  // Blocks until n bytes may be sent at this level and every ancestor; kAborted if
  // cancelled before or while waiting.
  Status Acquire(uint64_t bytes);
  // Changes the rate (0 = unlimited) now; waiters recompute their delay at once. Tokens
  // above the new burst are dropped; debt is kept. From limited to unlimited and back, the
  // bucket starts full.
  void SetRate(uint64_t rate_bytes_per_second);
  // Wakes all waiters with kAborted and makes every later Acquire fail. Idempotent.
  void Cancel();

  // How long Acquire(bytes) would wait if called now, in nanoseconds (0 = at once), given
  // the requests already reserved at this level and its ancestors.
  uint64_t DelayNanosFor(uint64_t bytes) const;
  uint64_t rate() const;
  uint64_t burst() const;

 private:
  struct Shared;
  using Wide = __int128;

  // All of these require shared_->mu.
  // Credit as of now: what was earned since the last refill, capped at a full bucket.
  Wide CreditNowLocked() const;
  void RefillLocked();
  // The credit at which a request of n bytes, queued behind everything reserved so far,
  // may go (it needs min(n, burst) tokens).
  Wide MarkLocked(uint64_t bytes) const;
  // Nanoseconds until this level's credit reaches mark; 0 when unlimited.
  Wide WaitLocked(Wide mark) const;
  bool CancelledLocked() const;

  Clock* const clock_;
  Throttle* const parent_;
  const std::shared_ptr<Shared> shared_;
  uint64_t rate_;
  uint64_t burst_;
  // Cumulative counters in nano-bytes (bytes * 1e9), so refill (ns * bytes/s) stays exact.
  // credit_ - debit_ is the token count; it is at most burst_ (scaled) and negative in debt.
  Wide credit_ = 0;
  Wide debit_ = 0;
  int64_t refilled_at_;
  bool cancelled_ = false;
};

}  // namespace ferry
