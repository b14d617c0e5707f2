// Time behind an interface so tests can run on a clock they move by hand.
// All timestamps in Ferry are nanoseconds since the Unix epoch (UTC).
// SystemClock is thread-safe; ManualClock is thread-safe (atomic).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace ferry {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNanos() const = 0;
};

class SystemClock final : public Clock {
 public:
  int64_t NowNanos() const override;
  static SystemClock* Default();
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 1'700'000'000'000'000'000) : now_(start_nanos) {}
  int64_t NowNanos() const override { return now_.load(); }
  void Advance(int64_t nanos) { now_.fetch_add(nanos); }
  void Set(int64_t nanos) { now_.store(nanos); }

 private:
  std::atomic<int64_t> now_;
};

inline constexpr int64_t kNanosPerSecond = 1'000'000'000;

// "2026-11-26T05:06:18.123456789Z": full precision, so a printed time names its record exactly.
std::string FormatTime(int64_t unix_nanos);
// Accepts "2026-11-26T05:06:18Z", with optional fractional seconds; returns false if malformed.
bool ParseTime(const std::string& text, int64_t* unix_nanos);

}  // namespace ferry
