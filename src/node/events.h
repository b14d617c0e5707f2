// Events: what happened on a node that an operator or the control plane should know (a link
// blocked, synchronous replication fell back, a hook failed, a barrier expired). Kept in
// memory, the newest 1000, each with an increasing id so a reader can ask for what is new.
// Every event is also logged. Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace ferry::node {

struct Event {
  uint64_t id = 0;
  int64_t time_ns = 0;
  std::string severity;  // "info", "warning", "error"
  std::string volume;    // may be empty
  std::string message;   // what happened and what to do
};

class EventLog {
 public:
  void Add(const std::string& severity, const std::string& volume, const std::string& message);
  // Events with id > after, oldest first, at most limit.
  std::vector<Event> Since(uint64_t after, size_t limit = 1000) const;

 private:
  mutable std::mutex mu_;
  std::deque<Event> events_;
  uint64_t next_id_ = 1;
};

}  // namespace ferry::node
