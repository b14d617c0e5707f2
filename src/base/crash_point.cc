#include "base/crash_point.h"

#include <csignal>
#include <cstdlib>
#include <string>
#include <unistd.h>

namespace ferry {

namespace {

// Whether the comma-separated list names name; an entry "P.*" names every name that starts
// with "P.".
bool Lists(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    if (entry == name) return true;
    if (entry.size() >= 2 && entry.substr(entry.size() - 2) == ".*" &&
        name.substr(0, entry.size() - 1) == entry.substr(0, entry.size() - 1)) {
      return true;
    }
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

void CrashPoint(std::string_view name) {
  static const std::string list = [] {
    const char* v = std::getenv("FERRY_CRASH_AT");
    return v ? std::string(v) : std::string();
  }();
  if (list.empty() || !Lists(list, name)) return;
  // One line for the test that set the point, so that it knows which one fired.
  std::string line = "crash point " + std::string(name) + "\n";
  [[maybe_unused]] ssize_t n = ::write(2, line.data(), line.size());
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

bool HoldPoint(std::string_view name) {
  const char* v = std::getenv("FERRY_HOLD_AT");
  return v != nullptr && *v != '\0' && Lists(v, name);
}

}  // namespace ferry
