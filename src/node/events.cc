#include "node/events.h"

#include <spdlog/spdlog.h>

#include "base/clock.h"

namespace ferry::node {

void EventLog::Add(const std::string& severity, const std::string& volume, const std::string& message) {
  const std::string who = volume.empty() ? "" : "volume " + volume + ": ";
  if (severity == "error") {
    spdlog::error("{}{}", who, message);
  } else if (severity == "warning") {
    spdlog::warn("{}{}", who, message);
  } else {
    spdlog::info("{}{}", who, message);
  }
  std::lock_guard l(mu_);
  events_.push_back(Event{next_id_++, SystemClock::Default()->NowNanos(), severity, volume, message});
  while (events_.size() > 1000) events_.pop_front();
}

std::vector<Event> EventLog::Since(uint64_t after, size_t limit) const {
  std::lock_guard l(mu_);
  std::vector<Event> out;
  for (const Event& e : events_) {
    if (e.id > after && out.size() < limit) out.push_back(e);
  }
  return out;
}

}  // namespace ferry::node
