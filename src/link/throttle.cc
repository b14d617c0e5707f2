#include "link/throttle.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <vector>

namespace ferry {
namespace {

constexpr int64_t kScale = kNanosPerSecond;  // nano-bytes per byte
// A waiter re-reads the clock at least this often, so a clock that jumps or a delay too
// long for the condition variable's arithmetic cannot strand it.
constexpr int64_t kMaxSleepNanos = 60 * kNanosPerSecond;

uint64_t BurstFor(uint64_t rate) { return std::max(rate / 10, Throttle::kMinBurstBytes); }

}  // namespace

struct Throttle::Shared {
  std::mutex mu;
  std::condition_variable cv;
};

Throttle::Throttle(Clock* clock, uint64_t rate_bytes_per_second, Throttle* parent)
    : clock_(clock),
      parent_(parent),
      shared_(parent ? parent->shared_ : std::make_shared<Shared>()),
      rate_(rate_bytes_per_second),
      burst_(BurstFor(rate_bytes_per_second)),
      credit_(Wide{burst_} * kScale),
      refilled_at_(clock->NowNanos()) {}

Throttle::~Throttle() = default;

Throttle::Wide Throttle::CreditNowLocked() const {
  if (rate_ == 0) return credit_;
  int64_t elapsed = std::max<int64_t>(0, clock_->NowNanos() - refilled_at_);
  Wide full = debit_ + Wide{burst_} * kScale;
  return std::max(credit_, std::min(full, credit_ + Wide{elapsed} * rate_));
}

void Throttle::RefillLocked() {
  credit_ = CreditNowLocked();
  refilled_at_ = clock_->NowNanos();
}

Throttle::Wide Throttle::MarkLocked(uint64_t bytes) const {
  return debit_ + Wide{std::min(bytes, burst_)} * kScale;
}

Throttle::Wide Throttle::WaitLocked(Wide mark) const {
  if (rate_ == 0) return 0;
  Wide credit = CreditNowLocked();
  if (credit >= mark) return 0;
  return (mark - credit + rate_ - 1) / rate_;
}

bool Throttle::CancelledLocked() const {
  for (const Throttle* t = this; t != nullptr; t = t->parent_) {
    if (t->cancelled_) return true;
  }
  return false;
}

Status Throttle::Acquire(uint64_t bytes) {
  std::unique_lock lock(shared_->mu);
  if (CancelledLocked()) return Aborted("throttle cancelled: the link is shutting down");
  if (bytes == 0) return Status::Ok();

  // Reserve at every limited level now, so later requests queue behind this one.
  struct Reservation {
    Throttle* level;
    Wide mark;
  };
  std::vector<Reservation> reserved;
  for (Throttle* t = this; t != nullptr; t = t->parent_) {
    if (t->rate_ == 0) continue;
    t->RefillLocked();
    reserved.push_back({t, t->MarkLocked(bytes)});
    t->debit_ += Wide{bytes} * kScale;
  }

  for (;;) {
    if (CancelledLocked()) {
      for (const Reservation& r : reserved) {
        Throttle* t = r.level;
        t->RefillLocked();
        t->debit_ -= Wide{bytes} * kScale;
        t->credit_ = std::min(t->credit_, t->debit_ + Wide{t->burst_} * kScale);
      }
      return Aborted("throttle cancelled: the link is shutting down");
    }
    Wide wait = 0;
    for (const Reservation& r : reserved) wait = std::max(wait, r.level->WaitLocked(r.mark));
    if (wait == 0) return Status::Ok();
    shared_->cv.wait_for(lock, std::chrono::nanoseconds(static_cast<int64_t>(
                                   std::min<Wide>(wait, kMaxSleepNanos))));
  }
}

void Throttle::SetRate(uint64_t rate_bytes_per_second) {
  std::lock_guard lock(shared_->mu);
  RefillLocked();
  uint64_t burst = BurstFor(rate_bytes_per_second);
  Wide full = debit_ + Wide{burst} * kScale;
  credit_ = rate_ == 0 ? full : std::min(credit_, full);
  rate_ = rate_bytes_per_second;
  burst_ = burst;
  shared_->cv.notify_all();
}

void Throttle::Cancel() {
  std::lock_guard lock(shared_->mu);
  cancelled_ = true;
  shared_->cv.notify_all();
}

uint64_t Throttle::DelayNanosFor(uint64_t bytes) const {
  std::lock_guard lock(shared_->mu);
  if (bytes == 0) return 0;
  Wide wait = 0;
  for (const Throttle* t = this; t != nullptr; t = t->parent_) {
    if (t->rate_ != 0) wait = std::max(wait, t->WaitLocked(t->MarkLocked(bytes)));
  }
  return static_cast<uint64_t>(std::min<Wide>(wait, UINT64_MAX));
}

uint64_t Throttle::rate() const {
  std::lock_guard lock(shared_->mu);
  return rate_;
}

uint64_t Throttle::burst() const {
  std::lock_guard lock(shared_->mu);
  return burst_;
}

}  // namespace ferry
