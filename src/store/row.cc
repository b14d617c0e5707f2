// Row's typed accessors. A backend hands back each column in the type it stored (SQLite keeps a
// value's own type; PostgreSQL returns some aggregates such as SUM as numeric text), so the
// accessors convert between the three kinds instead of failing.
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <system_error>

#include "store/database.h"

namespace ferry::store {
namespace {

// Truncates toward zero and clamps to the int64 range; NaN reads as 0.
int64_t ToInt(double d) {
  if (std::isnan(d)) return 0;
  // 2^63 is exactly representable; every double below it converts without overflow.
  constexpr double kLimit = 9223372036854775808.0;
  if (d >= kLimit) return std::numeric_limits<int64_t>::max();
  if (d < -kLimit) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(d);
}

// Parses the whole of `s` as T; false if any of it is not part of the number.
template <typename T>
bool ParseAll(const std::string& s, T* out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, *out);
  return ec == std::errc() && ptr == end;
}

}  // namespace

int64_t Row::Int(size_t i) const {
  const Value& v = values.at(i);
  if (const auto* n = std::get_if<int64_t>(&v)) return *n;
  if (const auto* d = std::get_if<double>(&v)) return ToInt(*d);
  if (const auto* s = std::get_if<std::string>(&v)) {
    int64_t n = 0;
    if (ParseAll(*s, &n)) return n;
    double d = 0;
    if (ParseAll(*s, &d)) return ToInt(d);  // "12.0" from a numeric column
  }
  return 0;
}

double Row::Real(size_t i) const {
  const Value& v = values.at(i);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* n = std::get_if<int64_t>(&v)) return static_cast<double>(*n);
  if (const auto* s = std::get_if<std::string>(&v)) {
    double d = 0;
    if (ParseAll(*s, &d)) return d;
  }
  return 0.0;
}

std::string Row::Text(size_t i) const {
  const Value& v = values.at(i);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  if (const auto* d = std::get_if<double>(&v)) {
    // Shortest text that reads back as the same double.
    char buf[32];
    auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), *d);
    return ec == std::errc() ? std::string(buf, ptr) : std::string();
  }
  return std::string();
}

}  // namespace ferry::store
